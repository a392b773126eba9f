"""Checkout sessions: created by the merchant's server, read by the browser via client_secret.

The client secret is ``<session id>_secret_<random>`` (as in Stripe) so a browser call can
find its session from the secret alone; the random part is compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import NoReturn

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkoutlab.db import new_id, utcnow
from checkoutlab.errors import InvalidRequest, NotFound
from checkoutlab.payments.models import CheckoutSession, InventoryItem, Payment
from checkoutlab.payments.schemas import (
    CheckoutSessionCreate,
    CheckoutSessionRead,
    InventoryLevel,
    LineItem,
    PaymentRead,
)

OPEN, SUCCEEDED, EXPIRED = "open", "succeeded", "expired"


def create(
    *, db: Session, merchant_id: str, data: CheckoutSessionCreate, default_ttl_seconds: int
) -> CheckoutSession:
    session_id = new_id("cs")
    now = utcnow()
    checkout = CheckoutSession(
        id=session_id,
        merchant_id=merchant_id,
        client_secret=f"{session_id}_secret_{secrets.token_urlsafe(18)}",
        amount=data.amount,
        currency=data.currency,
        line_items=[item.model_dump(exclude_none=True) for item in data.line_items],
        customer_ref=data.customer,
        loyalty_balance=data.loyalty_balance,
        metadata_=data.metadata,
        created_at=now,
        expires_at=now + timedelta(seconds=data.expires_in or default_ttl_seconds),
    )
    db.add(checkout)
    db.commit()
    return checkout


def get(
    *, db: Session, merchant_id: str, session_id: str, for_update: bool = False
) -> CheckoutSession:
    """One of the merchant's sessions; ``for_update`` locks it until the transaction ends.

    PostgreSQL locks the row (``SELECT ... FOR UPDATE``). SQLite has no row locks and
    ignores ``FOR UPDATE``, so concurrent confirms would all pass the "still open" check
    and all reach the gateway; there a no-op write first takes SQLite's database write
    lock, which queues them the same way.
    """
    mine = (CheckoutSession.id == session_id, CheckoutSession.merchant_id == merchant_id)
    query = select(CheckoutSession).where(*mine)
    if for_update:
        if db.get_bind().dialect.name == "sqlite":
            db.execute(
                update(CheckoutSession)
                .where(*mine)
                .values(status=CheckoutSession.status)
                .execution_options(synchronize_session=False)
            )
        # refresh a copy already in the identity map: what was read before the lock is stale
        query = query.with_for_update().execution_options(populate_existing=True)
    checkout = db.scalar(query)
    if checkout is None:
        raise NotFound(f"No such checkout session: '{session_id}'", param="id")
    return checkout


def by_client_secret(*, db: Session, merchant_id: str, client_secret: str) -> CheckoutSession:
    """Resolve a browser's client secret; wrong or foreign secrets are indistinguishable."""
    session_id, sep, _ = client_secret.partition("_secret_")
    checkout = db.scalar(
        select(CheckoutSession).where(
            CheckoutSession.id == session_id, CheckoutSession.merchant_id == merchant_id
        )
    )
    if not sep or checkout is None:
        _wrong_client_secret()
    check_client_secret(checkout, client_secret)
    return checkout


def check_client_secret(checkout: CheckoutSession, client_secret: str) -> None:
    """Constant-time comparison; the one place a browser's client secret is checked."""
    if not hmac.compare_digest(checkout.client_secret.encode(), client_secret.encode()):
        _wrong_client_secret()


def _wrong_client_secret() -> NoReturn:
    raise InvalidRequest(
        "The client_secret does not match any checkout session of this merchant. Pass the "
        "client_secret returned when your server created the session.",
        code="invalid_client_secret",
        param="client_secret",
    )


def status_of(checkout: CheckoutSession) -> str:
    if checkout.status == OPEN and checkout.expires_at <= utcnow():
        return EXPIRED
    return checkout.status


def ensure_open(checkout: CheckoutSession) -> None:
    status = status_of(checkout)
    if status == EXPIRED:
        raise InvalidRequest(
            f"Checkout session {checkout.id} expired at {checkout.expires_at.isoformat()}; "
            "create a new session from your server.",
            code="session_expired",
        )
    if status == SUCCEEDED:
        raise InvalidRequest(
            f"Checkout session {checkout.id} is already paid.", code="session_already_succeeded"
        )


def payments_of(*, db: Session, checkout: CheckoutSession) -> list[Payment]:
    return list(
        db.scalars(
            select(Payment)
            .where(Payment.session_id == checkout.id, Payment.merchant_id == checkout.merchant_id)
            .order_by(Payment.created_at)
        )
    )


def payment_read(payment: Payment) -> PaymentRead:
    card = None
    if payment.card_last4:
        card = {"brand": payment.card_brand, "last4": payment.card_last4}
    return PaymentRead(
        id=payment.id,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        method_type=payment.method_type,
        card=card,
        gateway=payment.gateway,
        decline_code=payment.decline_code,
        message=payment.failure_message,
        next_action=payment.next_action,
        created_at=payment.created_at,
    )


def read(
    *, db: Session, checkout: CheckoutSession, include_secret: bool = False
) -> CheckoutSessionRead:
    return CheckoutSessionRead(
        id=checkout.id,
        client_secret=checkout.client_secret if include_secret else None,
        status=status_of(checkout),
        amount=checkout.amount,
        currency=checkout.currency,
        line_items=[LineItem.model_validate(item) for item in checkout.line_items],
        customer=checkout.customer_ref,
        loyalty_balance=checkout.loyalty_balance,
        metadata=checkout.metadata_,
        created_at=checkout.created_at,
        expires_at=checkout.expires_at,
        payments=[payment_read(p) for p in payments_of(db=db, checkout=checkout)],
    )


def set_inventory(*, db: Session, merchant_id: str, levels: list[InventoryLevel]) -> None:
    """Upsert stock levels. Two requests adding the same new SKU at once race on the unique
    (merchant, sku) row; the loser retries once as an update instead of answering 500."""
    skus = [level.sku for level in levels]
    if len(set(skus)) != len(skus):
        raise InvalidRequest("items lists the same sku twice", param="items")
    try:
        _write_inventory(db, merchant_id, levels, skus)
    except IntegrityError:
        db.rollback()
        _write_inventory(db, merchant_id, levels, skus)


def _write_inventory(
    db: Session, merchant_id: str, levels: list[InventoryLevel], skus: list[str]
) -> None:
    existing = {
        item.sku: item
        for item in db.scalars(
            select(InventoryItem).where(
                InventoryItem.merchant_id == merchant_id, InventoryItem.sku.in_(skus)
            )
        )
    }
    for level in levels:
        if level.sku in existing:
            existing[level.sku].quantity = level.quantity
        else:
            db.add(InventoryItem(merchant_id=merchant_id, sku=level.sku, quantity=level.quantity))
    db.commit()


def inventory(*, db: Session, merchant_id: str, skus: list[str] | None = None) -> dict[str, int]:
    query = select(InventoryItem.sku, InventoryItem.quantity).where(
        InventoryItem.merchant_id == merchant_id
    )
    if skus is not None:
        query = query.where(InventoryItem.sku.in_(skus))
    return {sku: qty for sku, qty in db.execute(query.order_by(InventoryItem.sku))}


def requested_quantities(checkout: CheckoutSession) -> dict[str, int]:
    wanted: dict[str, int] = {}
    for item in checkout.line_items:
        wanted[item["sku"]] = wanted.get(item["sku"], 0) + int(item["quantity"])
    return wanted


def stock_lines(*, db: Session, checkout: CheckoutSession) -> list[tuple[str, int, int | None]]:
    """(sku, requested, available) per SKU; ``available`` is None for untracked SKUs."""
    wanted = requested_quantities(checkout)
    stock = inventory(db=db, merchant_id=checkout.merchant_id, skus=list(wanted))
    return [(sku, qty, stock.get(sku)) for sku, qty in wanted.items()]


def take_stock(*, db: Session, checkout: CheckoutSession) -> None:
    """Decrement tracked stock for a paid session, in the payment's transaction.

    An atomic ``quantity = quantity - n`` so concurrent sales of different sessions do not
    lose updates. Stock is not reserved while a shopper pays, so the last item can still be
    sold twice by two sessions confirming at the same moment (known limit).
    """
    # SKUs in a fixed order, so two sales of the same items cannot deadlock each other
    for sku, quantity in sorted(requested_quantities(checkout).items()):
        db.execute(
            update(InventoryItem)
            .where(InventoryItem.merchant_id == checkout.merchant_id, InventoryItem.sku == sku)
            .values(quantity=InventoryItem.quantity - quantity, updated_at=utcnow())
        )
