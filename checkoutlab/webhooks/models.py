"""Tables of the webhooks domain: provider notifications in, merchant events out.

``inbound_webhooks`` remembers every provider event by ``(provider, event_id)``: the
unique constraint, not an in-process check, is what makes a provider's retry (or two
concurrent deliveries of one event) apply once.

Outbound, ``webhook_events`` is an outbox: a merchant-facing event is written in the same
transaction as the change it reports, and ``webhook_deliveries`` holds one row per
(event, endpoint) that the dispatcher works through with retries. Payment events written
by confirm reach the outbox from the event log by cursor (``webhook_cursors``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, BigIntPK, utcnow


class InboundWebhook(Base):
    """One provider event, stored whether it was applied or ignored."""

    __tablename__ = "inbound_webhooks"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(30))
    event_id: Mapped[str] = mapped_column(String(255))
    provider_type: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(30))
    reference: Mapped[str | None] = mapped_column(String(100))
    # Null for an event that matched no payment: there is no merchant to scope it to.
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # processed | ignored | unmatched
    note: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    """A merchant's HTTPS receiver. Its signing secret is derived, never stored."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200))
    enabled_events: Mapped[list[Any]]
    secret_salt: Mapped[str] = mapped_column(String(64))
    secret_last4: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(20), default="enabled")  # enabled | deleted
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class OutboundEvent(Base):
    """A merchant-facing event (the outbox); its ``payload`` is exactly what is sent."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("merchant_id", "dedupe_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    # What makes two writes the same event: "log:<event id>", "dispute:<gateway>:<id>", ...
    dedupe_key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event to one endpoint, retried with backoff until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|succeeded|failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookCursor(Base):
    """How far the event log has been turned into outbox events (``read_since`` cursor)."""

    __tablename__ = "webhook_cursors"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
