"""The platform's own payments as a labelled dataset in the Handbook's format.

Mapping: a payment attempt is a transaction; ``CUSTOMER_ID`` is the merchant's customer
reference scoped by the merchant (a guest is keyed by its session); ``TERMINAL_ID`` is the
merchant (the checkout the payment went through); ``TX_FRAUD`` is 1 when a fraud report or
dispute was recorded for it. Context columns come from the decision the payment was confirmed under.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from checkoutlab.fraud.models import Outcome
from checkoutlab.fraud.outcomes import FRAUD_TYPES
from checkoutlab.money import to_major
from checkoutlab.payments.models import Payment
from checkoutlab.profile.models import Decision

COLUMNS = [
    "TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD",
    "LABEL_REPORTED_AT", "DEVICE_TYPE", "COUNTRY", "METHOD", "VERIFICATION_PASSED",
    "CURRENCY",
]  # fmt: skip


def platform_transactions(
    *,
    db: Session,
    merchant_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Payment attempts that reached a gateway, oldest first, with their fraud labels."""
    query = (
        select(Payment, Decision.context)
        .outerjoin(Decision, Decision.id == Payment.decision_id)
        .where(Payment.status.in_(("succeeded", "failed")))
        .order_by(Payment.created_at, Payment.id)
    )
    if merchant_id is not None:
        query = query.where(Payment.merchant_id == merchant_id)
    if since is not None:
        query = query.where(Payment.created_at >= since)
    if until is not None:
        query = query.where(Payment.created_at < until)
    rows = db.execute(query).all()
    labels = _fraud_labels(db, [payment.id for payment, _ in rows])
    records = [
        transaction_row(payment, context, label_reported_at=labels.get(payment.id))
        for payment, context in rows
    ]
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"]).astype("datetime64[ns]")
    frame["LABEL_REPORTED_AT"] = pd.to_datetime(frame["LABEL_REPORTED_AT"]).astype("datetime64[ns]")
    return frame


def customer_key(merchant_id: str, customer_ref: str | None, session_id: str) -> str:
    """Customer references are each merchant's own ids: scope them, or merchant A's "42"
    and merchant B's "42" would share fraud history. Guests are keyed by their session."""
    return f"{merchant_id}:{customer_ref}" if customer_ref else f"{merchant_id}:guest:{session_id}"


def transaction_row(
    payment: Payment, context: dict[str, Any] | None, *, label_reported_at: datetime | None
) -> dict[str, Any]:
    """One payment as one Handbook row: the single definition export and serving share."""
    context = context or {}
    required = (payment.verification or {}).get("required") or []
    return {
        "TRANSACTION_ID": payment.id,
        "TX_DATETIME": payment.created_at.replace(tzinfo=None),
        "CUSTOMER_ID": customer_key(payment.merchant_id, payment.customer_ref, payment.session_id),
        "TERMINAL_ID": payment.merchant_id,
        "TX_AMOUNT": to_major(payment.amount, payment.currency),
        "TX_FRAUD": int(label_reported_at is not None),
        "LABEL_REPORTED_AT": label_reported_at.replace(tzinfo=None)
        if label_reported_at
        else pd.NaT,
        "DEVICE_TYPE": context.get("device", {}).get("type"),
        "COUNTRY": context.get("location", {}).get("country"),
        "METHOD": payment.method_type,
        "VERIFICATION_PASSED": int(bool(required) and payment.status == "succeeded"),
        "CURRENCY": payment.currency,
    }


def _fraud_labels(db: Session, payment_ids: list[str]) -> dict[str, datetime]:
    """payment id → when the platform first learned it was fraud."""
    labels: dict[str, datetime] = {}
    for start in range(0, len(payment_ids), 1000):
        chunk = payment_ids[start : start + 1000]
        query = select(Outcome.payment_id, Outcome.reported_at).where(
            Outcome.payment_id.in_(chunk), Outcome.type.in_(FRAUD_TYPES)
        )
        for payment_id, reported_at in db.execute(query):
            if payment_id not in labels or reported_at < labels[payment_id]:
                labels[payment_id] = reported_at
    return labels
