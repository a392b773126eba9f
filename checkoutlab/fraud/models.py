from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, utcnow


class Outcome(Base):
    """A label for a payment, reported after the fact (fraud report, dispute, refund).

    Labels arrive late (disputes take weeks), which is why training applies a label delay;
    ``reported_at`` is when the platform learned it, ``occurred_at`` when it happened.
    """

    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("merchant_id", "payment_id", "type", "external_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    type: Mapped[str] = mapped_column(String(20))  # fraud_report | dispute | refund
    reason: Mapped[str | None] = mapped_column(String(200))
    amount: Mapped[int | None]
    external_id: Mapped[str] = mapped_column(String(100), default="")
    occurred_at: Mapped[datetime]
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)
