"""A customer's purchase history with this merchant, aggregated in SQL."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from checkoutlab.fraud.models import Outcome
from checkoutlab.fraud.outcomes import FRAUD_TYPES
from checkoutlab.payments.models import Payment


@dataclass(frozen=True)
class PurchaseHistory:
    payments_count: int = 0
    average_amount: float | None = None
    last_method: str | None = None
    disputes: int = 0

    def as_context(self) -> dict[str, object]:
        return {
            "returning": self.payments_count > 0,
            "payments_count": self.payments_count,
            "average_amount": self.average_amount,
            "last_method": self.last_method,
            "disputes": self.disputes,
        }


def purchase_history(
    *, db: Session, merchant_id: str, customer_ref: str | None, currency: str | None = None
) -> PurchaseHistory:
    """``average_amount`` only over payments in ``currency``: minor units of different
    currencies do not average."""
    if not customer_ref:
        return PurchaseHistory()
    scope = (Payment.merchant_id == merchant_id, Payment.customer_ref == customer_ref)
    succeeded = Payment.status == "succeeded"
    same_currency = succeeded if currency is None else succeeded & (Payment.currency == currency)
    count, average = db.execute(
        select(
            func.count(case((succeeded, 1))), func.avg(case((same_currency, Payment.amount)))
        ).where(*scope)
    ).one()
    disputes = db.scalar(
        select(func.count(func.distinct(Outcome.payment_id)))
        .join(Payment, Payment.id == Outcome.payment_id)
        .where(*scope, Outcome.type.in_(FRAUD_TYPES))
    )
    last_method = db.scalar(
        select(Payment.method_type)
        .where(*scope, succeeded)
        .order_by(Payment.created_at.desc())
        .limit(1)
    )
    return PurchaseHistory(
        payments_count=int(count or 0),
        average_amount=float(average) if average is not None else None,
        last_method=last_method,
        disputes=int(disputes or 0),
    )
