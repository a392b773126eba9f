"""No train/serve skew on platform data: the serving store and the batch features agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select

from checkoutlab.db import new_id
from checkoutlab.fraud.export import platform_transactions
from checkoutlab.fraud.features import FeatureSpec, add_features
from checkoutlab.fraud.models import Outcome
from checkoutlab.fraud.platform_store import PlatformFeatureStore
from checkoutlab.payments.models import CheckoutSession, Payment

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_serving_store_matches_batch_features_on_platform_history(
    database, make_merchant, platform_history
) -> None:
    merchants = [make_merchant("A").id, make_merchant("B").id]
    platform_history(database, merchants, now=NOW)
    store = PlatformFeatureStore(database, FeatureSpec())
    assert store.sync(now=NOW) > 0

    with database.session() as db:
        frame = platform_transactions(db=db)
    probes = [
        {
            "customer": f"{merchants[c % 2]}:cus_{c}",
            "merchant": merchants[c % 2],
            "amount": 1000 + 37 * c,
            "at": NOW + timedelta(minutes=c),
        }
        for c in range(8)
    ]
    for probe in probes:
        served = store.features(
            customer_id=probe["customer"],
            terminal_id=probe["merchant"],
            amount=probe["amount"],
            currency="EUR",
            at=probe["at"],
        )
        history = frame[frame["TX_DATETIME"] <= probe["at"].replace(tzinfo=None)]
        row = pd.DataFrame(
            [
                {
                    "TRANSACTION_ID": "probe",
                    "TX_DATETIME": probe["at"].replace(tzinfo=None),
                    "CUSTOMER_ID": probe["customer"],
                    "TERMINAL_ID": probe["merchant"],
                    "TX_AMOUNT": probe["amount"] / 100,
                    "TX_FRAUD": 0,
                }
            ]
        )
        batch = add_features(pd.concat([history, row], ignore_index=True))
        expected = batch[batch["TRANSACTION_ID"] == "probe"].iloc[0]
        for name, value in served.items():
            np.testing.assert_allclose(value, float(expected[name]), rtol=1e-9, err_msg=name)


def test_refresh_picks_up_new_payments_and_labels(
    database, make_merchant, platform_history
) -> None:
    merchant = make_merchant().id
    platform_history(database, [merchant], now=NOW, n=50, seed=1)
    store = PlatformFeatureStore(database)
    store.sync(now=NOW)
    kwargs = {
        "customer_id": f"{merchant}:cus_new",
        "terminal_id": merchant,
        "amount": 500,
        "currency": "EUR",
        "at": NOW + timedelta(days=8),
    }
    assert store.features(**kwargs)["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 1.0
    before_risk = store.features(**kwargs)["TERMINAL_ID_RISK_7DAY_WINDOW"]
    with database.session() as db:
        session = CheckoutSession(
            id=new_id("cs"),
            merchant_id=merchant,
            client_secret="x",
            amount=1,
            currency="EUR",
            line_items=[],
            customer_ref="cus_new",
            loyalty_balance=0,
            status="succeeded",
            metadata_={},
            created_at=NOW,
            expires_at=NOW,
        )
        payment = Payment(
            id=new_id("pay"),
            merchant_id=merchant,
            session_id=session.id,
            customer_ref="cus_new",
            status="succeeded",
            amount=900,
            currency="EUR",
            method_type="card",
            gateway="sandbox",
            created_at=NOW + timedelta(days=7, hours=23),
            updated_at=NOW + timedelta(days=8),
        )
        db.add_all([session, payment])
        db.commit()
    assert store.sync(now=NOW + timedelta(days=8)) == 1
    assert store.features(**kwargs)["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 2.0
    with database.session() as db:
        labelled = select(Outcome.payment_id)
        old = db.scalars(
            select(Payment)
            .where(
                Payment.merchant_id == merchant,
                Payment.created_at > NOW - timedelta(days=6),  # inside the 7-day terminal window
                Payment.created_at < NOW,
                Payment.id.not_in(labelled),
            )
            .order_by(Payment.created_at.desc())
        ).first()
        assert old is not None
        db.add(
            Outcome(
                id=new_id("out"),
                merchant_id=merchant,
                payment_id=old.id,
                type="fraud_report",
                external_id="late",
                occurred_at=old.created_at,
                reported_at=NOW + timedelta(days=8),
            )
        )
        db.commit()
    store.sync(now=NOW + timedelta(days=8, seconds=1))
    assert store.features(**kwargs)["TERMINAL_ID_RISK_7DAY_WINDOW"] > before_risk
