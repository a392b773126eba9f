"""Tables of the bandit feedback loop: policy snapshots, the learner's cursor and bookkeeping.

A *chain* is one merchant's learning policy for one configuration: ``(merchant_id, policy,
config_id)``, where ``config_id`` is :attr:`BanditPolicy.config_id` (a hash of the class and
its constructor arguments). Changing a merchant's ``ordering_params`` starts a new chain.

Exactly once: the learner writes a batch's snapshots, :class:`DecisionReward` rows (unique per
decision), :class:`PendingDecision` changes and its :class:`LearnerCursor` in one transaction.
A crash before the commit leaves none of them; a rerun sees the same events again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, BigIntPK, utcnow


class PolicySnapshot(Base):
    """One version of a chain's learned state, written by the learner after a batch."""

    __tablename__ = "bandit_snapshots"
    __table_args__ = (UniqueConstraint("merchant_id", "policy", "config_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    policy: Mapped[str] = mapped_column(String(40))  # thompson, ucb, linucb, ...
    config_id: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]]
    seq: Mapped[int]  # 1, 2, ... within the chain; a unique constraint refuses a concurrent twin
    version: Mapped[str] = mapped_column(String(100))  # the policy's "<config_id>.<updates>"
    updates: Mapped[int]
    pulls: Mapped[dict[str, Any]]  # {method: pulls}
    state: Mapped[dict[str, Any]]  # BanditPolicy.state_dict()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DecisionReward(Base):
    """The reward of one decision; the unique decision id makes it count exactly once.

    ``status``: ``applied`` (its bandit chain learned from it), ``logged`` (a non-bandit
    decision, kept for off-policy evaluation), ``orphaned`` (a bandit chain whose parameters
    are no longer known), ``rejected`` (the policy refused the reward or method).
    """

    __tablename__ = "bandit_rewards"
    __table_args__ = (UniqueConstraint("decision_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"))
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    policy: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[str] = mapped_column(String(100))
    first_method: Mapped[str] = mapped_column(String(30))
    converted: Mapped[bool]
    reward: Mapped[float]  # the value the policy learned from (conversion or revenue)
    revenue: Mapped[int | None]  # minor units of ``currency`` when converted
    currency: Mapped[str | None] = mapped_column(String(3))
    outcome: Mapped[str] = mapped_column(String(20))  # succeeded | window_closed
    event_id: Mapped[int | None] = mapped_column(BigInteger)  # the payment_succeeded event
    status: Mapped[str] = mapped_column(String(20))
    snapshot_seq: Mapped[int | None]  # the chain snapshot that first includes it
    decided_at: Mapped[datetime] = mapped_column(index=True)
    outcome_at: Mapped[datetime]
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)


class PendingDecision(Base):
    """A served decision waiting for a success or for its attribution window to close."""

    __tablename__ = "bandit_pending"

    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    decided_at: Mapped[datetime] = mapped_column(index=True)  # due at + attribution window


class LearnerCursor(Base):
    """The id of the last event a learner has consumed (``read_since`` cursor)."""

    __tablename__ = "bandit_cursors"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
