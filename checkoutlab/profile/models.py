from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, utcnow


class Decision(Base):
    """One served payment profile, with what is needed to replay and evaluate it offline."""

    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("checkout_sessions.id"), index=True)
    customer_ref: Mapped[str | None] = mapped_column(String(200))
    context: Mapped[dict[str, Any]]
    features: Mapped[dict[str, Any]]
    risk_score: Mapped[float]
    risk_level: Mapped[str] = mapped_column(String(20))
    model: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(100))
    policy: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[str] = mapped_column(String(100))
    propensity: Mapped[float]
    ordering: Mapped[list[Any]]
    experiment_key: Mapped[str | None] = mapped_column(String(100))
    variant: Mapped[str | None] = mapped_column(String(100))
    assignment_probability: Mapped[float | None]
    verification: Mapped[dict[str, Any]]
    profile: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
