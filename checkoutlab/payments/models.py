from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, BigIntPK, utcnow


class CheckoutSession(Base):
    __tablename__ = "checkout_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    client_secret: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    line_items: Mapped[list[Any]]
    customer_ref: Mapped[str | None] = mapped_column(String(200), index=True)
    loyalty_balance: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(20), default="open")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        # At most one succeeded payment per session, enforced by the database itself.
        Index(
            "uq_payments_one_success_per_session",
            "session_id",
            unique=True,
            sqlite_where=text("status = 'succeeded'"),
            postgresql_where=text("status = 'succeeded'"),
        ),
        # Provider webhooks and reconciliation find a payment by the gateway's own id.
        Index("ix_payments_gateway_reference", "gateway", "gateway_reference"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("checkout_sessions.id"), index=True)
    decision_id: Mapped[str | None] = mapped_column(String(40))
    customer_ref: Mapped[str | None] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    method_type: Mapped[str] = mapped_column(String(30))
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    gateway: Mapped[str] = mapped_column(String(30))
    gateway_reference: Mapped[str | None] = mapped_column(String(100))
    payment_method_ref: Mapped[str | None] = mapped_column(String(100))
    decline_code: Mapped[str | None] = mapped_column(String(50))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    next_action: Mapped[dict[str, Any] | None]
    verification: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IdempotencyRecord(Base):
    """The stored answer to a request with an Idempotency-Key, scoped to its merchant."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("merchant_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InventoryItem(Base):
    __tablename__ = "inventory"
    __table_args__ = (UniqueConstraint("merchant_id", "sku"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    sku: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaymentAttempt(Base):
    """One call to a gateway for a payment: failover tries several, reconciliation adds one.

    Kept apart from ``payments`` so a payment has one row whatever its route, while gateway
    health, latency and decline mix per gateway stay queryable (and scoped per merchant).
    """

    __tablename__ = "payment_attempts"
    __table_args__ = (UniqueConstraint("payment_id", "attempt_number"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(30))
    attempt_number: Mapped[int]
    operation: Mapped[str] = mapped_column(String(20))  # charge | retrieve | complete
    started_at: Mapped[datetime]
    latency_ms: Mapped[int]
    # succeeded | failed | requires_action | processing | unknown | skipped
    result: Mapped[str] = mapped_column(String(20))
    decline_code: Mapped[str | None] = mapped_column(String(50))
    retryable: Mapped[bool] = mapped_column(default=False)
    reconciled: Mapped[bool] = mapped_column(default=False)
    gateway_reference: Mapped[str | None] = mapped_column(String(100))
