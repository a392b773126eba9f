"""Everything the decision path reads from the database, in one statement.

A profile needs the session's failed attempts, the customer's purchase history, whether the
merchant runs an experiment and the stock of the cart's SKUs. Each is a small indexed lookup,
so the cost was never the database but the round trips and SQLAlchemy's per-statement work:
here they are scalar subqueries of a single ``SELECT``, prepared once per shape (guest or
customer, number of SKUs) with bound parameters and executed on the session's connection
(same transaction, no ORM objects). The SQL of the history aggregates is
:func:`checkoutlab.profile.history.history_columns`, shared with ``purchase_history``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from checkoutlab.experiments.models import Experiment
from checkoutlab.experiments.schemas import Status
from checkoutlab.payments import sessions
from checkoutlab.payments.models import CheckoutSession, InventoryItem, Payment
from checkoutlab.profile.history import (
    HISTORY_COLUMNS,
    PurchaseHistory,
    history_columns,
    history_from_row,
)

MAX_SKUS_INLINE = 32
"""Carts with more distinct SKUs read their stock with a second statement."""


@dataclass(frozen=True)
class CheckoutReads:
    history: PurchaseHistory
    failed_attempts: int
    experiments_running: bool
    requested: dict[str, int] = field(default_factory=dict)  # sku -> quantity in the cart
    stock: dict[str, int] = field(default_factory=dict)  # tracked SKUs only

    def stock_lines(self) -> list[tuple[str, int, int | None]]:
        """(sku, requested, available) per SKU, as ``payments.sessions.stock_lines``."""
        return [(sku, qty, self.stock.get(sku)) for sku, qty in self.requested.items()]


_STATEMENTS: dict[tuple[bool, int], Select[Any]] = {}


def _statement(customer: bool, skus: int) -> Select[Any]:
    key = (customer, skus)
    statement = _STATEMENTS.get(key)
    if statement is not None:
        return statement
    merchant_id = bindparam("merchant_id")
    columns: list[Any] = [
        select(func.count())
        .select_from(Payment)
        .where(
            Payment.session_id == bindparam("session_id"),
            Payment.merchant_id == merchant_id,
            Payment.status == "failed",
        )
        .scalar_subquery()
        .label("failed_attempts"),
        select(Experiment.id)
        .where(Experiment.merchant_id == merchant_id, Experiment.status == Status.running)
        .exists()
        .label("experiments_running"),
    ]
    if customer:
        columns += history_columns(
            merchant_id=merchant_id,
            customer_ref=bindparam("customer_ref"),
            currency=bindparam("currency"),
        )
    columns += [
        select(InventoryItem.quantity)
        .where(InventoryItem.merchant_id == merchant_id, InventoryItem.sku == bindparam(f"sku_{i}"))
        .scalar_subquery()
        .label(f"stock_{i}")
        for i in range(skus)
    ]
    statement = _STATEMENTS[key] = select(*columns)
    return statement


def checkout_reads(*, db: Session, checkout: CheckoutSession) -> CheckoutReads:
    """The reads of one profile build, in the caller's transaction."""
    requested = sessions.requested_quantities(checkout)
    skus = list(requested)
    inline = len(skus) <= MAX_SKUS_INLINE
    customer = bool(checkout.customer_ref)
    params: dict[str, Any] = {"merchant_id": checkout.merchant_id, "session_id": checkout.id}
    if customer:
        params["customer_ref"] = checkout.customer_ref
        params["currency"] = checkout.currency
    if inline:
        params.update({f"sku_{i}": sku for i, sku in enumerate(skus)})
    row = db.connection().execute(_statement(customer, len(skus) if inline else 0), params).one()
    history = PurchaseHistory()
    if customer:
        history = history_from_row(*(row._mapping[name] for name in HISTORY_COLUMNS))
    if inline:
        values = row[len(row) - len(skus) :] if skus else ()
        stock = {sku: qty for sku, qty in zip(skus, values, strict=True) if qty is not None}
    else:
        stock = sessions.inventory(db=db, merchant_id=checkout.merchant_id, skus=skus)
    return CheckoutReads(
        history=history,
        failed_attempts=int(row.failed_attempts or 0),
        experiments_running=bool(row.experiments_running),
        requested=requested,
        stock=stock,
    )
