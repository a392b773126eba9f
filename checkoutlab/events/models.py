from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, BigIntPK, utcnow


class Event(Base):
    """Append-only: writers insert, never update. Readers page by ``id > cursor``."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_merchant_type_id", "merchant_id", "type", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    type: Mapped[str] = mapped_column(String(40))
    session_id: Mapped[str | None] = mapped_column(String(40), index=True)
    decision_id: Mapped[str | None] = mapped_column(String(40), index=True)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(10))  # "client" or "server"
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
