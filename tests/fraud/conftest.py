"""Platform payment histories written straight into the database, for fraud tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np
import pytest

from checkoutlab.db import Database, new_id
from checkoutlab.fraud.models import Outcome
from checkoutlab.payments.models import CheckoutSession, Payment


def add_platform_history(
    database: Database,
    merchants: Sequence[str],
    *,
    now: datetime,
    n: int = 400,
    days: float = 45,
    customers: int = 12,
    seed: int = 0,
    label_delay: timedelta = timedelta(days=2),
) -> int:
    """``n`` payments over the ``days`` before ``now``; large amounts are fraud more often.

    Returns the number of fraud labels written (reported ``label_delay`` after the payment).
    """
    rng = np.random.default_rng(seed)
    frauds = 0
    with database.session() as db:
        for i in range(n):
            merchant = merchants[int(rng.integers(len(merchants)))]
            at = now - timedelta(seconds=float(rng.uniform(60, days * 86400)))
            amount = int(rng.integers(100, 30000))
            session = CheckoutSession(
                id=new_id("cs"), merchant_id=merchant, client_secret=new_id("s"), amount=amount,
                currency="EUR", line_items=[], customer_ref=f"cus_{int(rng.integers(customers))}",
                loyalty_balance=0, status="open", metadata_={}, created_at=at, expires_at=at,
            )  # fmt: skip
            payment = Payment(
                id=new_id("pay"), merchant_id=merchant, session_id=session.id,
                customer_ref=session.customer_ref,
                status="succeeded" if rng.random() < 0.9 else "failed", amount=amount,
                currency="EUR", method_type="card", gateway="sandbox", created_at=at,
                updated_at=at + timedelta(seconds=1),
            )  # fmt: skip
            db.add_all([session, payment])
            db.flush()
            if rng.random() < (0.35 if amount > 20000 else 0.02):
                frauds += 1
                db.add(
                    Outcome(
                        id=new_id("out"),
                        merchant_id=merchant,
                        payment_id=payment.id,
                        type="dispute",
                        external_id=str(i),
                        occurred_at=at,
                        reported_at=at + label_delay,
                    )
                )
        db.commit()
    return frauds


@pytest.fixture
def platform_history() -> Callable[..., int]:
    return add_platform_history
