"""Experiment tables: definitions and sticky assignments.

An assignment row is written the first time a unit is enrolled and reused afterwards, so
changing the weights of a running experiment never moves a unit that already has a variant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, utcnow
from checkoutlab.profile.models import Decision


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("merchant_id", "key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    key: Mapped[str] = mapped_column(String(100))
    hypothesis: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="draft")
    variants: Mapped[list[Any]]
    targeting: Mapped[str | None] = mapped_column(Text)
    namespace: Mapped[dict[str, Any] | None]
    metrics: Mapped[dict[str, Any]]
    allocation: Mapped[dict[str, Any]]
    seed: Mapped[str] = mapped_column(String(64))
    shipped_variant: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]


class AssignmentRecord(Base):
    """The variant a unit (customer reference, or session id for guests) got, first time."""

    __tablename__ = "experiment_assignments"
    __table_args__ = (UniqueConstraint("experiment_id", "unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(String(200))
    variant: Mapped[str] = mapped_column(String(100))
    probability: Mapped[float]
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


# Declared here, with the queries that need it (results and bandit allocation filter decisions
# by merchant and experiment key and group by variant); migration 0006_experiments_index.
DECISIONS_BY_EXPERIMENT = Index(
    "ix_decisions_merchant_experiment_variant",
    Decision.__table__.c.merchant_id,
    Decision.__table__.c.experiment_key,
    Decision.__table__.c.variant,
)
