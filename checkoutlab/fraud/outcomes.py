"""Fraud labels from the merchant's server: fraud reports, disputes and refunds per payment.

A fraud report or a dispute makes the payment a positive example for retraining; a refund
alone does not (most refunds are returns, not fraud).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkoutlab.db import new_id, utcnow
from checkoutlab.errors import InvalidRequest, NotFound
from checkoutlab.fraud.models import Outcome
from checkoutlab.payments.models import Payment

OutcomeType = Literal["fraud_report", "dispute", "refund"]
FRAUD_TYPES = ("fraud_report", "dispute")


class OutcomeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    payment_id: str = Field(max_length=40)
    type: OutcomeType
    reason: str | None = Field(default=None, max_length=200)
    amount: int | None = Field(default=None, gt=0, strict=True, description="minor units")
    external_id: str = Field(
        default="", max_length=100, description="your or the network's id; repeats are ignored"
    )
    occurred_at: datetime | None = None

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("occurred_at needs a UTC offset, e.g. 2026-11-26T10:00:00Z")
        return value


class OutcomeRead(BaseModel):
    id: str
    object: Literal["outcome"] = "outcome"
    payment_id: str
    type: OutcomeType
    reason: str | None
    amount: int | None
    external_id: str
    occurred_at: datetime
    reported_at: datetime


def _read(outcome: Outcome) -> OutcomeRead:
    return OutcomeRead.model_validate(outcome, from_attributes=True)


def record(*, db: Session, merchant_id: str, data: OutcomeCreate) -> tuple[OutcomeRead, bool]:
    """Store a label; returns (outcome, created). A repeat (same payment, type, id) is a no-op."""
    payment = db.get(Payment, data.payment_id)
    if payment is None or payment.merchant_id != merchant_id:
        raise NotFound(f"No such payment: '{data.payment_id}'", param="payment_id")
    if data.amount is not None and data.amount > payment.amount:
        raise InvalidRequest(
            f"amount {data.amount} exceeds the payment's amount {payment.amount}", param="amount"
        )
    outcome = Outcome(
        id=new_id("out"),
        merchant_id=merchant_id,
        payment_id=payment.id,
        type=data.type,
        reason=data.reason,
        amount=data.amount,
        external_id=data.external_id,
        occurred_at=data.occurred_at or utcnow(),
        reported_at=utcnow(),
    )
    db.add(outcome)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        existing = db.scalar(
            select(Outcome).where(
                Outcome.merchant_id == merchant_id,
                Outcome.payment_id == payment.id,
                Outcome.type == data.type,
                Outcome.external_id == data.external_id,
            )
        )
        assert existing is not None
        return _read(existing), False
    return _read(outcome), True


def list_for_payment(*, db: Session, merchant_id: str, payment_id: str) -> list[OutcomeRead]:
    rows = db.scalars(
        select(Outcome)
        .where(Outcome.merchant_id == merchant_id, Outcome.payment_id == payment_id)
        .order_by(Outcome.reported_at)
    )
    return [_read(o) for o in rows]
