"""Shared set-up of the benchmark scripts: machine facts, a seeded database, a champion model.

* :func:`machine_facts` / :func:`machine_line`: ``nproc``, CPU model, RAM, load average, date.
* :func:`prepare_champion`: trains a fraud spec (default ``models/rf.yaml``, the spec the worker
  retrains) on a small simulation, registers it in a throw-away MLflow store and moves the
  ``champion`` alias to it, as ``tests/fraud/test_serving.py`` does.
* :func:`seed_database`: one merchant with a contextual bandit ordering policy (a
  ``logistic_softmax`` snapshot trained on the bandit simulator's stream), a payment history
  for the online fraud features, and open checkout sessions to build profiles for.
* :func:`database_url`: a migrated SQLite file or the PostgreSQL database ``bench_tmp``
  (emptied first; created with ``createdb`` when missing). Never the database ``test``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ROOT / "models"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/bench_tmp"
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"  # noqa: S105 - throw-away


# --------------------------------------------------------------------------------------------
# Machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def machine_facts() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "ram_gib": ram_gib(),
        "python": platform.python_version(),
        "load": load,
        "date": datetime.now(UTC),
    }


def machine_line(facts: dict[str, Any] | None = None) -> str:
    f = facts or machine_facts()
    load = f["load"]
    return (
        f"{f['nproc']} CPUs (`nproc`), {f['cpu']}, {f['ram_gib']:.0f} GiB RAM, "
        f"Python {f['python']}; load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        f"(1/5/15 min) at start; {f['date']:%Y-%m-%d %H:%M} UTC"
    )


def load_now() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def percentiles(samples: Any, qs: tuple[float, ...] = (50, 99)) -> list[float]:
    return [float(v) for v in np.percentile(np.asarray(samples, dtype=np.float64), qs)]


# --------------------------------------------------------------------------------------------
# Databases


def database_url(kind: str, workdir: Path, pg_url: str = PG_DEFAULT) -> str:
    """A migrated, empty database of ``kind`` (``sqlite`` or ``postgresql``)."""
    from sqlalchemy import text

    from checkoutlab.db import Database

    if kind == "sqlite":
        path = workdir / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    elif kind == "postgresql":
        if pg_url.rsplit("/", 1)[-1].split("?")[0] == "test":
            raise SystemExit("refusing to use the database named 'test'")
        _ensure_pg_database(pg_url)
        url = pg_url
    else:
        raise ValueError(f"unknown database kind {kind!r}")
    database = Database(url)
    if kind == "postgresql":
        with database.engine.begin() as conn:  # start from nothing
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    database.upgrade()
    database.dispose()
    return url


def _ensure_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[-1].split("?")[0]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
    if shutil.which("createdb") is None:
        raise SystemExit(f"database {name} missing and `createdb` not found")
    host = url.split("@", 1)[-1].split("/", 1)[0].split(":")[0]
    subprocess.run(["createdb", "-h", host, "-U", "postgres", name], check=True)  # noqa: S603,S607


# --------------------------------------------------------------------------------------------
# Fraud champion


def prepare_champion(workdir: Path, *, spec: str = "rf", seed: int = 0) -> dict[str, Any]:
    """Train ``models/{spec}.yaml`` on a small simulation into ``workdir``'s MLflow store."""
    import logging
    import warnings

    from checkoutlab.fraud import registry
    from checkoutlab.fraud.data import save_transactions
    from checkoutlab.fraud.simulate import simulate
    from checkoutlab.fraud.train import train_from_spec

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    mlflow_dir = workdir / "mlflow"
    shutil.rmtree(mlflow_dir, ignore_errors=True)
    mlflow_dir.mkdir(parents=True)
    data = save_transactions(
        simulate(n_customers=300, n_terminals=600, n_days=90, start="2018-06-01", seed=seed),
        mlflow_dir / "tx.parquet",
    )
    uri = f"sqlite:///{mlflow_dir}/mlflow.db"
    result = train_from_spec(MODELS / f"{spec}.yaml", data)
    registry.register(result, tracking_uri=uri)
    decision = registry.promote(data=data, force=True, tracking_uri=uri)
    if not decision.promoted:
        raise RuntimeError(f"champion not promoted: {decision}")
    return {"uri": uri, "spec": spec, "rows": result.rows}


# --------------------------------------------------------------------------------------------
# Seeded merchant

POLICY = "logistic_softmax"
CONTEXTS: list[dict[str, Any]] = [
    {"device": {"type": "mobile", "os": "ios", "biometric": True, "apple_pay": True},
     "country": "NL", "locale": "nl-NL"},
    {"device": {"type": "desktop", "os": "windows"}, "country": "DE", "locale": "de-DE"},
    {"device": {"type": "mobile", "os": "android", "google_pay": True}, "country": "FR",
     "locale": "fr-FR"},
    {"device": {"type": "desktop", "os": "macos", "apple_pay": True}, "country": "US",
     "locale": "en-US"},
    {"device": {"type": "tablet", "os": "ios"}, "country": "ES", "locale": "es-ES"},
    {"device": {"type": "desktop", "os": "linux"}, "country": "JP", "locale": "ja-JP",
     "network": {"proxy": True}},
]  # fmt: skip


@dataclass
class Seeded:
    merchant_id: str
    publishable_key: str
    secret_key: str
    session_ids: list[str] = field(default_factory=list)
    client_secrets: list[str] = field(default_factory=list)
    policy_updates: int = 0


def seed_database(
    url: str,
    *,
    sessions: int = 200,
    history: int = 2000,
    customers: int = 200,
    policy_rounds: int = 5000,
    seed: int = 0,
) -> Seeded:
    """A merchant with a trained contextual policy, a payment history and open sessions."""
    from checkoutlab.bandits.models import PolicySnapshot
    from checkoutlab.bandits.policies import make_policy
    from checkoutlab.bandits.simulate import generate_stream
    from checkoutlab.db import Database, new_id, utcnow
    from checkoutlab.fraud.models import Outcome
    from checkoutlab.merchants import service as merchants
    from checkoutlab.merchants.schemas import MerchantConfig
    from checkoutlab.payments import sessions as checkout_sessions
    from checkoutlab.payments.models import CheckoutSession, Payment
    from checkoutlab.payments.schemas import CheckoutSessionCreate

    rng = np.random.default_rng(seed)
    database = Database(url)
    config = MerchantConfig(ordering_policy=POLICY)
    with database.session() as db:
        created = merchants.create(db=db, name="Bench Shop", config=config)
    out = Seeded(created.merchant_id, created.publishable_key, created.secret_key)

    # The contextual policy, trained on the simulator's stream, stored as the learner would.
    policy = make_policy(POLICY, **config.ordering_params)
    stream = generate_stream(policy_rounds, seed=seed)
    for t in range(len(stream)):
        ranking = policy.rank(stream.methods[t], stream.contexts[t], rng=rng)
        reward, _ = stream.outcome(t, ranking.order)
        policy.update(stream.contexts[t], ranking.order[0], reward)
    state = policy.state_dict()
    out.policy_updates = policy.n_updates

    now = utcnow()
    with database.session() as db:
        db.add(
            PolicySnapshot(
                merchant_id=out.merchant_id,
                policy=POLICY,
                config_id=policy.config_id,
                params=state["params"],
                seq=1,
                version=policy.version,
                updates=policy.n_updates,
                pulls={arm.value: n for arm, n in sorted(policy.pulls.items())},
                state=state,
                created_at=now,
            )
        )
        # Payment history (last 45 days) for the online fraud features; big amounts are
        # fraud more often, labels reported two days later.
        for i in range(history):
            at = now - timedelta(seconds=float(rng.uniform(60, 45 * 86400)))
            amount = int(rng.integers(100, 30000))
            checkout = CheckoutSession(
                id=new_id("cs"), merchant_id=out.merchant_id, client_secret=new_id("s"),
                amount=amount, currency="EUR", line_items=[],
                customer_ref=f"cus_{int(rng.integers(customers))}", loyalty_balance=0,
                status="succeeded", metadata_={}, created_at=at, expires_at=at,
            )  # fmt: skip
            payment = Payment(
                id=new_id("pay"), merchant_id=out.merchant_id, session_id=checkout.id,
                customer_ref=checkout.customer_ref,
                status="succeeded" if rng.random() < 0.9 else "failed", amount=amount,
                currency="EUR", method_type="card", gateway="sandbox", created_at=at,
                updated_at=at + timedelta(seconds=1),
            )  # fmt: skip
            db.add_all([checkout, payment])
            if rng.random() < (0.35 if amount > 20000 else 0.02):
                db.flush()
                db.add(
                    Outcome(
                        id=new_id("out"), merchant_id=out.merchant_id, payment_id=payment.id,
                        type="dispute", external_id=str(i), occurred_at=at,
                        reported_at=at + timedelta(days=2),
                    )
                )  # fmt: skip
            if i % 500 == 499:
                db.flush()
        db.commit()
        for i in range(sessions):
            data = CheckoutSessionCreate(
                amount=int(rng.integers(500, 40000)),
                currency="EUR",
                customer=f"cus_{int(rng.integers(customers))}" if i % 4 else None,
                line_items=[{"sku": f"sku-{i % 20}", "quantity": 1 + i % 3}],
                loyalty_balance=int(rng.integers(0, 500)),
                expires_in=24 * 3600,
            )
            checkout = checkout_sessions.create(
                db=db, merchant_id=out.merchant_id, data=data, default_ttl_seconds=24 * 3600
            )
            out.session_ids.append(checkout.id)
            out.client_secrets.append(checkout.client_secret)
    database.dispose()
    return out


def server_env(url: str, tracking_uri: str, **extra: str) -> dict[str, str]:
    """``CHECKOUTLAB_*`` settings of a benchmark server (rate limits off: one client IP)."""
    env = dict(os.environ)
    env.update(
        {
            "CHECKOUTLAB_ENVIRONMENT": "test",  # production refuses the sandbox gateway
            "CHECKOUTLAB_SECRET_KEY": SECRET,
            "CHECKOUTLAB_DATABASE_URL": url,
            "CHECKOUTLAB_MLFLOW_TRACKING_URI": tracking_uri,
            "CHECKOUTLAB_RISK_SCORER": "champion",
            "CHECKOUTLAB_RATE_LIMIT_ENABLED": "false",
            "CHECKOUTLAB_LOG_LEVEL": "WARNING",
            "CHECKOUTLAB_CHAMPION_POLL_SECONDS": "3600",
            "CHECKOUTLAB_FEATURE_SYNC_SECONDS": "2",
            "CHECKOUTLAB_RETRAIN_INTERVAL_HOURS": "0",
        }
    )
    env.update(extra)
    return env
