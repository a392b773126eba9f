"""The feedback loop: rewards from the event log → bandit updates → versioned snapshots.

:class:`Learner` reads the append-only event log by cursor (``read_since``, id > last seen):

- ``profile_served`` registers the decision as *pending* (:class:`PendingDecision`);
- ``payment_succeeded`` gives its decision (joined by decision id) reward 1 when the payment
  succeeded within the attribution window after the decision (default 30 minutes);
- a pending decision whose window has closed gets reward 1 if a success within the window is
  in the log (also one the cursor has not reached yet), else reward 0.

A decision served by a bandit updates that bandit's chain with
``policy.update(decision.context, decision.ordering[0], reward)`` (the logged context, so
the features are the ones served: no train/serve skew). Every decision's reward is recorded
in :class:`DecisionReward` (the decision log for off-policy evaluation, :func:`decision_log`),
bandit or not.

Exactly once: one batch is one transaction: the new snapshot of every chain it touched, its
reward rows (unique per decision), the pending-row changes and the advanced cursor commit
together. A learner killed mid-batch leaves nothing behind, and its rerun reads the same
events again from the stored cursor; a concurrent second learner waits on the cursor row
(PostgreSQL) or fails on the unique constraints and retries.

Events younger than ``settle`` (default 2 s) are left for the next run, and a window is
closed only ``settle`` after it ends, so a transaction that committed an event a moment
after a later id was read is not skipped by the cursor.

Revenue reward (``reward="revenue"``): the payment amount in major units of its currency (0
without a payment) for the bandits that accept real-valued rewards (epsilon-greedy, UCB,
LinUCB); Thompson sampling and the logistic policy need 0/1 and keep the conversion.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd
from babel.numbers import get_currency_precision
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from checkoutlab.bandits.models import (
    DecisionReward,
    LearnerCursor,
    PendingDecision,
    PolicySnapshot,
)
from checkoutlab.bandits.policies import POLICY_CLASSES, BanditPolicy, make_policy
from checkoutlab.bandits.serving import (
    ChainKey,
    config_id_of_version,
    newest_snapshot,
    policy_config_id,
    restore,
)
from checkoutlab.db import Database, utcnow
from checkoutlab.events.models import Event
from checkoutlab.events.service import read_since
from checkoutlab.merchants.models import Merchant
from checkoutlab.merchants.schemas import MerchantConfig, MethodType
from checkoutlab.observability import metrics
from checkoutlab.observability.request_id import bind_request_id
from checkoutlab.profile.models import Decision

log = logging.getLogger(__name__)

EVENT_TYPES = ("profile_served", "payment_succeeded")
#: Policies whose river objects only accept 0/1 rewards: they learn conversion, never revenue.
BINARY_REWARD_POLICIES = frozenset({"thompson", "logistic_softmax"})
_IN_CHUNK = 500  # ids per IN (...) list
#: Lag counts stop here: past it the number only says "far behind", and counting costs.
LAG_CAP = 100_000

RewardKind = Literal["conversion", "revenue"]


@dataclass
class LearnerStats:
    """What one :meth:`Learner.run_once` did."""

    events: int = 0  # events consumed (the cursor moved past them)
    cursor: int = 0  # the cursor after the batch
    registered: int = 0  # decisions now waiting for an outcome
    succeeded: int = 0  # rewards of 1
    window_closed: int = 0  # rewards of 0: no success within the window
    applied: int = 0  # bandit updates
    logged: int = 0  # non-bandit decisions' rewards, kept for evaluation only
    skipped: int = 0  # orphaned or rejected rewards (recorded, not learned)
    snapshots: dict[str, str] = field(default_factory=dict)  # chain -> new version

    @property
    def rewards(self) -> int:
        return self.succeeded + self.window_closed

    @property
    def idle(self) -> bool:
        return not (self.events or self.rewards)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "cursor": self.cursor,
            "registered": self.registered,
            "succeeded": self.succeeded,
            "window_closed": self.window_closed,
            "applied": self.applied,
            "logged": self.logged,
            "skipped": self.skipped,
            "snapshots": dict(self.snapshots),
        }


@dataclass(frozen=True)
class LearnerLag:
    """How far the learner is behind the event log (``checkoutlab_learner_lag_*``)."""

    cursor: int  # the last event id consumed
    events: int  # learner events after the cursor, at most LAG_CAP
    seconds: float  # age of the oldest of them (0 when caught up)


@dataclass
class _Chain:
    key: ChainKey
    policy: BanditPolicy
    seq: int  # the snapshot it was loaded from (0: fresh)
    rewards: list[DecisionReward] = field(default_factory=list)


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    ids = list(ids)
    for start in range(0, len(ids), _IN_CHUNK):
        yield ids[start : start + _IN_CHUNK]


def _major(amount_minor: int | None, currency: str | None) -> float:
    if not amount_minor:
        return 0.0
    try:
        precision = int(get_currency_precision((currency or "").upper()))
    except Exception:
        precision = 2
    return float(amount_minor) / 10**precision


class _Batch:
    """One transaction's state: the chains it loaded and the stats it gathers."""

    def __init__(self, learner: Learner, db: Session, now: datetime) -> None:
        self.learner = learner
        self.db = db
        self.now = now
        self.stats = LearnerStats()
        self.chains: dict[ChainKey, _Chain | None] = {}
        self.configs: dict[str, MerchantConfig | None] = {}

    def config(self, merchant_id: str) -> MerchantConfig | None:
        if merchant_id not in self.configs:
            merchant = self.db.get(Merchant, merchant_id)
            try:
                self.configs[merchant_id] = (
                    MerchantConfig.model_validate(merchant.config) if merchant else None
                )
            except ValueError:
                self.configs[merchant_id] = None
        return self.configs[merchant_id]

    def chain(self, decision: Decision) -> _Chain | None:
        key = ChainKey(
            decision.merchant_id, decision.policy, config_id_of_version(decision.policy_version)
        )
        if key not in self.chains:
            self.chains[key] = self._load(key)
        return self.chains[key]

    def _load(self, key: ChainKey) -> _Chain | None:
        snapshot = newest_snapshot(
            self.db, merchant_id=key.merchant_id, policy=key.policy, config_id=key.config_id
        )
        if snapshot is not None:
            try:
                return _Chain(key, restore(snapshot), snapshot.seq)
            except Exception as exc:  # e.g. river upgraded: restart the chain, keep its seq
                log.error(
                    "snapshot %s of %s cannot be restored (%s); the chain restarts untrained",
                    snapshot.seq,
                    key,
                    exc,
                )
                return _Chain(key, make_policy(key.policy, **snapshot.params), snapshot.seq)
        config = self.config(key.merchant_id)
        if config is not None and config.ordering_policy == key.policy:
            params = config.ordering_params
            if policy_config_id(key.policy, params) == key.config_id:
                return _Chain(key, make_policy(key.policy, **params), 0)
        log.warning("no snapshot and no matching configuration for chain %s", key)
        return None


class Learner:
    """Applies each decision's reward exactly once and snapshots the updated bandits.

    Parameters
    ----------
    database
        The platform database.
    attribution_window
        A success counts when it happens within this time after the decision.
    now
        Clock: a callable returning an aware datetime, a fixed datetime, or None (UTC now).
    reward
        ``"conversion"`` (1/0) or ``"revenue"`` (module docstring).
    settle
        Events younger than this, and windows that closed less than this ago, wait.
    keep_snapshots
        Snapshots kept per chain (older ones are deleted in the same transaction).
    cursor_name
        The cursor row; two learners with different names would each apply every reward.
    """

    def __init__(
        self,
        database: Database,
        *,
        attribution_window: timedelta = timedelta(minutes=30),
        now: Callable[[], datetime] | datetime | None = None,
        reward: RewardKind = "conversion",
        settle: timedelta = timedelta(seconds=2),
        keep_snapshots: int = 100,
        cursor_name: str = "bandits",
    ) -> None:
        if attribution_window <= timedelta(0):
            raise ValueError(f"attribution_window must be positive, got {attribution_window}")
        if reward not in ("conversion", "revenue"):
            raise ValueError(f"reward must be 'conversion' or 'revenue', got {reward!r}")
        if keep_snapshots < 1:
            raise ValueError(f"keep_snapshots must be at least 1, got {keep_snapshots!r}")
        self.database = database
        self.attribution_window = attribution_window
        self.now = now
        self.reward = reward
        self.settle = settle
        self.keep_snapshots = keep_snapshots
        self.cursor_name = cursor_name

    def _now(self) -> datetime:
        if self.now is None:
            return utcnow()
        value = self.now() if callable(self.now) else self.now
        if value.tzinfo is None:
            raise ValueError("the learner's clock must return timezone-aware datetimes")
        return value

    # -- one batch ---------------------------------------------------------------------------

    def run_once(self, limit: int = 1000) -> LearnerStats:
        """Consume up to ``limit`` events and close up to ``limit`` windows, in one transaction."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        now = self._now()
        with self.database.session() as db:
            batch = _Batch(self, db, now)
            cursor = self._cursor(db)
            events = self._settled(
                read_since(db=db, cursor=cursor.last_event_id, limit=limit, types=EVENT_TYPES), now
            )
            self._consume(batch, events)
            self._close_windows(batch, limit)
            self._snapshot(batch)
            if events:
                cursor.last_event_id = events[-1].id
                cursor.updated_at = now
            batch.stats.events = len(events)
            batch.stats.cursor = cursor.last_event_id
            db.commit()
        return batch.stats

    def _cursor(self, db: Session) -> LearnerCursor:
        query = select(LearnerCursor).where(LearnerCursor.name == self.cursor_name)
        cursor = db.scalars(query.with_for_update()).first()
        if cursor is None:
            db.add(LearnerCursor(name=self.cursor_name, last_event_id=0, updated_at=utcnow()))
            db.flush()
            cursor = db.scalars(query.with_for_update()).one()
        return cursor

    def _settled(self, events: list[Event], now: datetime) -> list[Event]:
        """The prefix of ``events`` older than ``settle`` (the cursor never jumps a gap)."""
        cutoff = now - self.settle
        for i, event in enumerate(events):
            if event.received_at > cutoff:
                return events[:i]
        return events

    def _consume(self, batch: _Batch, events: list[Event]) -> None:
        db = batch.db
        ids = {e.decision_id for e in events if e.decision_id}
        decisions: dict[str, Decision] = {}
        rewarded: set[str] = set()
        pending: set[str] = set()
        for chunk in _chunks(ids):
            decisions.update(
                (d.id, d) for d in db.scalars(select(Decision).where(Decision.id.in_(chunk)))
            )
            rewarded.update(
                db.scalars(
                    select(DecisionReward.decision_id).where(DecisionReward.decision_id.in_(chunk))
                )
            )
            pending.update(
                db.scalars(
                    select(PendingDecision.decision_id).where(
                        PendingDecision.decision_id.in_(chunk)
                    )
                )
            )
        resolved: list[str] = []
        for event in events:
            decision = decisions.get(event.decision_id or "")
            if decision is None or decision.id in rewarded:
                continue
            if event.type == "profile_served":
                if decision.id not in pending:
                    db.add(
                        PendingDecision(
                            decision_id=decision.id,
                            merchant_id=decision.merchant_id,
                            decided_at=decision.created_at,
                        )
                    )
                    pending.add(decision.id)
                    batch.stats.registered += 1
            elif self._in_window(decision, event):
                self._apply(batch, decision, event=event, outcome_at=event.occurred_at)
                rewarded.add(decision.id)
                if decision.id in pending:
                    resolved.append(decision.id)
        if resolved:
            db.flush()
            for chunk in _chunks(resolved):
                db.execute(delete(PendingDecision).where(PendingDecision.decision_id.in_(chunk)))

    def _in_window(self, decision: Decision, event: Event) -> bool:
        return (
            decision.created_at
            <= event.occurred_at
            <= (decision.created_at + self.attribution_window)
        )

    def _close_windows(self, batch: _Batch, limit: int) -> None:
        db = batch.db
        cutoff = batch.now - self.attribution_window - self.settle
        due = list(
            db.scalars(
                select(PendingDecision.decision_id)
                .where(PendingDecision.decided_at <= cutoff)
                .order_by(PendingDecision.decided_at, PendingDecision.decision_id)
                .limit(limit)
            )
        )
        if not due:
            return
        decisions: dict[str, Decision] = {}
        successes: dict[str, list[Event]] = {}
        for chunk in _chunks(due):
            decisions.update(
                (d.id, d) for d in db.scalars(select(Decision).where(Decision.id.in_(chunk)))
            )
            for event in db.scalars(
                select(Event)
                .where(Event.type == "payment_succeeded", Event.decision_id.in_(chunk))
                .order_by(Event.id)
            ):
                successes.setdefault(event.decision_id, []).append(event)
        for decision_id in due:
            decision = decisions.get(decision_id)
            if decision is None:
                continue
            success = next(
                (e for e in successes.get(decision_id, []) if self._in_window(decision, e)), None
            )
            if success is not None:  # one the cursor has not reached yet
                self._apply(batch, decision, event=success, outcome_at=success.occurred_at)
            else:
                closed = decision.created_at + self.attribution_window
                self._apply(batch, decision, event=None, outcome_at=closed)
        db.flush()
        for chunk in _chunks(due):
            db.execute(delete(PendingDecision).where(PendingDecision.decision_id.in_(chunk)))

    # -- one reward ----------------------------------------------------------------------------

    def _apply(
        self, batch: _Batch, decision: Decision, *, event: Event | None, outcome_at: datetime
    ) -> None:
        converted = event is not None
        properties = event.properties if event is not None else {}
        revenue = properties.get("amount") if converted else None
        currency = properties.get("currency") if converted else None
        first = str(decision.ordering[0]) if decision.ordering else ""
        row = DecisionReward(
            decision_id=decision.id,
            merchant_id=decision.merchant_id,
            policy=decision.policy,
            policy_version=decision.policy_version,
            first_method=first,
            converted=converted,
            reward=float(converted),
            revenue=revenue,
            currency=currency,
            outcome="succeeded" if converted else "window_closed",
            event_id=event.id if event is not None else None,
            status="logged",
            snapshot_seq=None,
            decided_at=decision.created_at,
            outcome_at=outcome_at,
            applied_at=batch.now,
        )
        if converted:
            batch.stats.succeeded += 1
        else:
            batch.stats.window_closed += 1
        request_id = properties.get("request_id") if isinstance(properties, dict) else None
        with bind_request_id(request_id if isinstance(request_id, str) else None):
            log.info(
                "reward %s for decision %s (%s)",
                int(converted),
                decision.id,
                row.outcome,
                extra={"decision_id": decision.id, "session_id": decision.session_id},
            )
        if decision.policy not in POLICY_CLASSES:
            batch.stats.logged += 1
        else:
            chain = batch.chain(decision)
            if chain is None:
                row.status = "orphaned"
                batch.stats.skipped += 1
            else:
                row.reward = self._reward_value(chain.policy, converted, revenue, currency)
                try:
                    self._update(chain.policy, decision.context, first, row.reward)
                except ValueError as exc:  # a method or reward the policy refuses
                    log.warning("decision %s not learned: %s", decision.id, exc)
                    row.status = "rejected"
                    batch.stats.skipped += 1
                else:
                    row.status = "applied"
                    chain.rewards.append(row)
                    batch.stats.applied += 1
        batch.db.add(row)

    def _reward_value(
        self, policy: BanditPolicy, converted: bool, revenue: int | None, currency: str | None
    ) -> float:
        if self.reward == "revenue" and policy.name not in BINARY_REWARD_POLICIES:
            return _major(revenue, currency) if converted else 0.0
        return float(converted)

    def _update(
        self, policy: BanditPolicy, context: dict[str, Any], first_method: str, reward: float
    ) -> None:
        """The one place a policy learns (tests interrupt a batch here)."""
        policy.update(context, first_method, reward)

    def _snapshot(self, batch: _Batch) -> None:
        db = batch.db
        for chain in batch.chains.values():
            if chain is None or not chain.rewards:
                continue
            policy, key = chain.policy, chain.key
            seq = chain.seq + 1
            state = policy.state_dict()
            db.add(
                PolicySnapshot(
                    merchant_id=key.merchant_id,
                    policy=key.policy,
                    config_id=key.config_id,
                    params=state["params"],
                    seq=seq,
                    version=policy.version,
                    updates=policy.n_updates,
                    pulls={arm.value: n for arm, n in sorted(policy.pulls.items())},
                    state=state,
                    created_at=batch.now,
                )
            )
            for row in chain.rewards:
                row.snapshot_seq = seq
            db.execute(
                delete(PolicySnapshot).where(
                    PolicySnapshot.merchant_id == key.merchant_id,
                    PolicySnapshot.policy == key.policy,
                    PolicySnapshot.config_id == key.config_id,
                    PolicySnapshot.seq <= seq - self.keep_snapshots,
                )
            )
            batch.stats.snapshots["/".join(key)] = policy.version

    # -- the worker loop -----------------------------------------------------------------------

    def run(
        self,
        *,
        interval_seconds: float = 1.0,
        limit: int = 1000,
        stop: threading.Event | None = None,
        on_batch: Callable[[LearnerStats], None] | None = None,
    ) -> None:
        """Run batches until ``stop`` is set: at once while there is work, else every interval.

        A failed batch (database down, a concurrent learner) is logged and retried: it
        committed nothing, so the retry starts from the same cursor.
        """
        stop = stop or threading.Event()
        lag_checked = 0.0
        while not stop.is_set():
            try:
                stats = self.run_once(limit=limit)
            except Exception:
                log.exception("learner batch failed; retrying from the stored cursor")
                metrics.observe_learner_failure()
                stop.wait(interval_seconds)
                continue
            metrics.observe_learner_batch(
                succeeded=stats.succeeded, window_closed=stats.window_closed
            )
            if time.monotonic() - lag_checked >= 1.0:  # bounded cost while catching up
                lag_checked = time.monotonic()
                self._report_lag()
            if on_batch is not None and not stats.idle:
                on_batch(stats)
            if stats.events < limit and stats.rewards < limit:
                stop.wait(interval_seconds)

    def lag(self) -> LearnerLag:
        """Events of the learner's types after its cursor, and the age of the oldest."""
        with self.database.session() as db:
            found = db.scalars(
                select(LearnerCursor.last_event_id).where(LearnerCursor.name == self.cursor_name)
            ).first()
            cursor = found or 0
            after = select(Event.id).where(Event.id > cursor, Event.type.in_(EVENT_TYPES))
            events = db.scalar(select(func.count()).select_from(after.limit(LAG_CAP).subquery()))
            oldest = db.scalar(
                select(Event.received_at)
                .where(Event.id > cursor, Event.type.in_(EVENT_TYPES))
                .order_by(Event.id)
                .limit(1)
            )
        seconds = max((self._now() - _aware(oldest)).total_seconds(), 0.0) if oldest else 0.0
        return LearnerLag(cursor=cursor, events=int(events or 0), seconds=round(seconds, 3))

    def _report_lag(self) -> None:
        try:
            lag = self.lag()
        except Exception:  # the next batch reports the database's failure
            log.warning("learner lag not measured", exc_info=True)
            return
        metrics.set_learner_lag(events=lag.events, seconds=lag.seconds, cursor=lag.cursor)


# -- the decision log for off-policy evaluation ---------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def decision_log(
    db: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    merchant_id: str | None = None,
    reward: RewardKind = "conversion",
) -> pd.DataFrame:
    """Decisions joined to their rewards, one row per decision, ready for ``ope.evaluate``.

    Columns: ``decision_id``, ``merchant_id``, ``session_id``, ``created_at``, ``policy``,
    ``policy_version``, ``context``, ``methods`` (the eligible methods in the merchant's
    configured order, as the policy saw them), ``first_method``, ``propensity``, ``reward``
    (1/0 conversion, or revenue in major units with ``reward="revenue"``), ``converted``,
    ``revenue`` (minor units), ``currency``, ``outcome``. Naive datetimes are UTC. Decisions
    still inside their attribution window have no reward yet and are left out.
    """
    query = (
        select(Decision, DecisionReward)
        .join(DecisionReward, DecisionReward.decision_id == Decision.id)
        .order_by(Decision.created_at, Decision.id)
    )
    if since is not None:
        query = query.where(Decision.created_at >= _aware(since))
    if until is not None:
        query = query.where(Decision.created_at < _aware(until))
    if merchant_id is not None:
        query = query.where(Decision.merchant_id == merchant_id)
    orders: dict[str, list[MethodType]] = {}

    def merchant_order(mid: str) -> list[MethodType]:
        if mid not in orders:
            merchant = db.get(Merchant, mid)
            try:
                orders[mid] = MerchantConfig.model_validate(merchant.config).ordered_methods()
            except (AttributeError, ValueError):
                orders[mid] = []
        return orders[mid]

    rows = []
    for decision, outcome in db.execute(query).tuples():
        served = [MethodType(m) for m in decision.ordering]
        order = merchant_order(decision.merchant_id)
        methods = [m for m in order if m in served] + [m for m in served if m not in order]
        value = float(outcome.converted)
        if reward == "revenue":
            value = _major(outcome.revenue, outcome.currency) if outcome.converted else 0.0
        rows.append(
            {
                "decision_id": decision.id,
                "merchant_id": decision.merchant_id,
                "session_id": decision.session_id,
                "created_at": decision.created_at,
                "policy": decision.policy,
                "policy_version": decision.policy_version,
                "context": decision.context,
                "methods": methods,
                "first_method": served[0] if served else None,
                "propensity": decision.propensity,
                "reward": value,
                "converted": outcome.converted,
                "revenue": outcome.revenue,
                "currency": outcome.currency,
                "outcome": outcome.outcome,
            }
        )
    columns = [
        "decision_id",
        "merchant_id",
        "session_id",
        "created_at",
        "policy",
        "policy_version",
        "context",
        "methods",
        "first_method",
        "propensity",
        "reward",
        "converted",
        "revenue",
        "currency",
        "outcome",
    ]
    return pd.DataFrame(rows, columns=columns)
