"""Demo data for ``make demo``: a merchant with catalogue, stock, loyalty and returning customers.

The demo merchant's keys, and the growth dashboard login of its team, are kept in
``var/demo_keys.json`` (development only) because the secret key and the password are stored
hashed and could not be shown again on the next start.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from checkoutlab.config import VAR_DIR
from checkoutlab.db import new_id, utcnow
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.models import Merchant
from checkoutlab.merchants.schemas import MerchantConfig
from checkoutlab.payments.models import CheckoutSession, Payment
from checkoutlab.payments.schemas import InventoryLevel
from checkoutlab.payments.sessions import set_inventory

KEYS_FILE = VAR_DIR / "demo_keys.json"

CATALOGUE: list[dict[str, Any]] = [
    {"sku": "MUG-CLASSIC", "name": "Classic mug", "unit_amount": 1490, "stock": 120},
    {"sku": "TEE-ORGANIC", "name": "Organic T-shirt", "unit_amount": 2990, "stock": 40},
    {"sku": "BAG-CANVAS", "name": "Canvas tote bag", "unit_amount": 1990, "stock": 0},
    {"sku": "LAMP-DESK", "name": "Desk lamp", "unit_amount": 8900, "stock": 8},
]

# customer -> (number of past purchases, method, typical amount in cents)
RETURNING_CUSTOMERS = {
    "cus_demo_anna": (6, "klarna", 3500),
    "cus_demo_ben": (3, "card", 5200),
    "cus_demo_chloe": (12, "ideal", 2100),
}

DEMO_CONFIG: dict[str, Any] = {
    "enabled_methods": [
        "card",
        "apple_pay",
        "google_pay",
        "ideal",
        "sepa_debit",
        "klarna",
        "bank_transfer",
    ],
    "loyalty": {
        "enabled": True,
        "name": "Demo Rewards",
        "points_per_unit": 1,
        "redemption_value": 1,
    },
    "rules": [
        {"when": "risk.risk_score >= 65", "then": {"require": ["cvv", "avs"]}},
        {"when": "context.network.proxy", "then": {"require": ["cvv", "avs"]}},
        {
            "when": "context.device.type == 'mobile' && context.device.biometric",
            "then": {"prioritize": "apple_pay"},
        },
        {"when": "amount.value < 1000", "then": {"hide": "bank_transfer"}},
        {"when": "context.location.country == 'NL'", "then": {"set_layout": "list"}},
        {"when": "context.location.country == 'FR'", "then": {"set_layout": "accordion"}},
    ],
}


def seed(*, db: Session, keys_file: Path = KEYS_FILE) -> dict[str, str]:
    """Create the demo merchant once; later calls return the stored keys."""
    if keys_file.exists():
        keys = json.loads(keys_file.read_text())
        if db.get(Merchant, keys["merchant_id"]) is not None:
            if "dashboard_email" not in keys:  # a demo seeded before the dashboard existed
                keys |= _seed_dashboard_user(db, keys["merchant_id"])
                _write_keys(keys_file, keys)
            return keys
    created = merchants.create(
        db=db, name="Demo Store", config=MerchantConfig.model_validate(DEMO_CONFIG)
    )
    set_inventory(
        db=db,
        merchant_id=created.merchant_id,
        levels=[InventoryLevel(sku=p["sku"], quantity=p["stock"]) for p in CATALOGUE],
    )
    _seed_history(db, created.merchant_id)
    _seed_experiment(db, created.merchant_id)
    keys = {
        "merchant_id": created.merchant_id,
        "publishable_key": created.publishable_key,
        "secret_key": created.secret_key,
    } | _seed_dashboard_user(db, created.merchant_id)
    _write_keys(keys_file, keys)
    return keys


def _write_keys(keys_file: Path, keys: dict[str, str]) -> None:
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text(json.dumps(keys, indent=2))
    keys_file.chmod(0o600)


DASHBOARD_EMAIL = "growth@demo.example"


def _seed_dashboard_user(db: Session, merchant_id: str) -> dict[str, str]:
    """A growth-team login for the demo merchant. Its password is random per demo database
    and kept, like the secret key, only in the development keys file."""
    from checkoutlab.dashboard import auth

    password = secrets.token_urlsafe(12)
    auth.add_user(db=db, merchant_id=merchant_id, email=DASHBOARD_EMAIL, password=password)
    return {"dashboard_email": DASHBOARD_EMAIL, "dashboard_password": password}


DEMO_EXPERIMENT: dict[str, Any] = {
    "key": "list_vs_tabs",
    "hypothesis": "A single list of methods converts better than tabs.",
    "variants": [
        {"key": "control", "control": True, "weight": 1},
        {"key": "list", "weight": 1, "config": {"layout": "list"}},
    ],
}


def _seed_experiment(db: Session, merchant_id: str) -> None:
    """One running experiment, so the demo's results page has something to show."""
    from checkoutlab.experiments import service
    from checkoutlab.experiments.schemas import ExperimentCreate

    experiment = service.create(
        db=db, merchant_id=merchant_id, data=ExperimentCreate.model_validate(DEMO_EXPERIMENT)
    )
    service.start(db=db, experiment=experiment)


def _seed_history(db: Session, merchant_id: str) -> None:
    now = utcnow()
    for customer, (count, method, amount) in RETURNING_CUSTOMERS.items():
        for i in range(count):
            when = now - timedelta(days=7 * (i + 1))
            session = CheckoutSession(
                id=new_id("cs"),
                merchant_id=merchant_id,
                client_secret=new_id("seed"),
                amount=amount,
                currency="EUR",
                line_items=[],
                customer_ref=customer,
                loyalty_balance=0,
                status="succeeded",
                metadata_={"seed": "demo"},
                created_at=when,
                expires_at=when + timedelta(minutes=30),
            )
            db.add(session)
            db.add(
                Payment(
                    id=new_id("pay"),
                    merchant_id=merchant_id,
                    session_id=session.id,
                    customer_ref=customer,
                    status="succeeded",
                    amount=amount,
                    currency="EUR",
                    method_type=method,
                    card_brand="visa" if method == "card" else None,
                    card_last4="4242" if method == "card" else None,
                    gateway="sandbox",
                    created_at=when,
                    updated_at=when,
                )
            )
    db.commit()


def ensure_champion(tracking_uri: str, spec: Path | None = None) -> str:
    """Give a fresh demo a fraud champion: train one on simulated data if the registry has none.

    The model learns from the Handbook simulator, not from the demo store's few payments, so
    the demo shows the learned scorer's plumbing (versions, degraded fallback), not a
    model fitted to this shop. Returns the champion's version.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from checkoutlab.fraud import registry
    from checkoutlab.fraud.simulate import simulate
    from checkoutlab.fraud.train import train_from_spec

    uri = registry.resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        return str(client.get_model_version_by_alias(registry.MODEL_NAME, "champion").version)
    except MlflowException:
        pass
    spec = spec or Path(__file__).resolve().parents[2] / "models" / "logreg.yaml"
    data = simulate(n_customers=500, n_terminals=1000, n_days=90, start="2018-06-01", seed=0)
    result = train_from_spec(spec, data)
    logged = registry.register(result, tracking_uri=uri, run_name="demo-bootstrap")
    registry.promote(data=data, version=logged.version, force=True, tracking_uri=uri)
    return str(logged.version)
