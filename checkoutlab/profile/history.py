"""A customer's purchase history with this merchant, aggregated in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import Label

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


HISTORY_COLUMNS = ("payments_count", "average_amount", "disputes", "last_method")


def history_columns(*, merchant_id: Any, customer_ref: Any, currency: Any = None) -> list[Label]:
    """The aggregates of :func:`purchase_history` as labelled scalar subqueries
    (:data:`HISTORY_COLUMNS`), so that they can share one statement with other reads.

    The arguments are values or SQL expressions (bound parameters of a prepared statement);
    ``currency=None`` averages over every currency.
    """
    # Look the customer up by ``customer_ref`` (a few rows) and only then check the merchant:
    # with both single-column indexes and no statistics, SQLite picks ``merchant_id`` and
    # scans every payment of the merchant. ``|| ''`` (same value, merchant ids are never
    # NULL) keeps the merchant term out of index selection on every backend. A composite
    # (merchant_id, customer_ref) index on payments would make this unnecessary.
    scope = (Payment.merchant_id + "" == merchant_id, Payment.customer_ref == customer_ref)
    succeeded = Payment.status == "succeeded"
    same_currency = succeeded if currency is None else succeeded & (Payment.currency == currency)
    return [
        select(func.count(case((succeeded, 1))))
        .where(*scope)
        .scalar_subquery()
        .label("payments_count"),
        select(func.avg(case((same_currency, Payment.amount))))
        .where(*scope)
        .scalar_subquery()
        .label("average_amount"),
        select(func.count(func.distinct(Outcome.payment_id)))
        .join(Payment, Payment.id == Outcome.payment_id)
        # OR of equalities, not IN: an IN list is an "expanding" parameter that SQLAlchemy
        # re-renders into the SQL string on every execution
        .where(*scope, or_(*(Outcome.type == fraud_type for fraud_type in FRAUD_TYPES)))
        .scalar_subquery()
        .label("disputes"),
        select(Payment.method_type)
        .where(*scope, succeeded)
        .order_by(Payment.created_at.desc())
        .limit(1)
        .scalar_subquery()
        .label("last_method"),
    ]


def history_from_row(
    payments_count: Any, average_amount: Any, disputes: Any, last_method: Any
) -> PurchaseHistory:
    """A :class:`PurchaseHistory` from the values of :func:`history_columns`, in that order."""
    return PurchaseHistory(
        payments_count=int(payments_count or 0),
        average_amount=float(average_amount) if average_amount is not None else None,
        last_method=last_method,
        disputes=int(disputes or 0),
    )


def purchase_history(
    *, db: Session, merchant_id: str, customer_ref: str | None, currency: str | None = None
) -> PurchaseHistory:
    """``average_amount`` only over payments in ``currency``: minor units of different
    currencies do not average."""
    if not customer_ref:
        return PurchaseHistory()
    row = db.execute(
        select(
            *history_columns(merchant_id=merchant_id, customer_ref=customer_ref, currency=currency)
        )
    ).one()
    return history_from_row(*row)
