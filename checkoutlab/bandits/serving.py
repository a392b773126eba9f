"""Serving the learned ordering policies inside an API worker, with bounded staleness.

:class:`PolicyProvider` answers the profile builder's ``policy_for(config, merchant_id)``:
``merchant_order`` and ``context_rules`` come from :func:`~checkoutlab.bandits.policy.get_policy`;
a bandit comes from the newest snapshot of the merchant's *chain* (merchant, policy name,
``config_id`` of its ``ordering_params``; :mod:`checkoutlab.bandits.models`), or is a fresh
policy when the learner has written none yet.

A background thread checks the snapshot table every ``staleness_seconds / 2`` (one grouped
query for every chain this worker serves) and swaps in newer snapshots, so a snapshot the
learner commits is served within the staleness bound (default 5 s). A chain is loaded
synchronously the first time a worker needs it. Snapshots are read-only here: only the
learner calls ``update``. Every ``rank`` draws from a per-thread generator seeded from OS
entropy, so workers that load the same snapshot do not explore in lockstep.

Fail safe (DESIGN.md): when a chain cannot be loaded (database error, a snapshot from an
incompatible river version) the merchant's own order is served (``merchant_order``,
propensity 1), which the learner does not learn from; a failed background refresh keeps the
last snapshot and the growing staleness shows in ``/v1/bandits/{policy}``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from checkoutlab.background import PeriodicTask
from checkoutlab.bandits.models import PolicySnapshot
from checkoutlab.bandits.policies import (
    POLICY_CLASSES,
    BanditPolicy,
    ThompsonSamplingPolicy,
    make_policy,
)
from checkoutlab.bandits.policy import MerchantOrderPolicy, OrderingPolicy, Ranking, get_policy
from checkoutlab.db import Database, utcnow
from checkoutlab.merchants.schemas import MethodType
from checkoutlab.observability import metrics

if TYPE_CHECKING:
    from checkoutlab.merchants.schemas import MerchantConfig

log = logging.getLogger(__name__)


class ChainKey(NamedTuple):
    merchant_id: str
    policy: str
    config_id: str


@lru_cache(maxsize=1024)
def _config_id(name: str, params_json: str) -> str:
    return make_policy(name, **json.loads(params_json)).config_id


def policy_config_id(name: str, params: dict[str, Any] | None = None) -> str:
    """``config_id`` of the bandit ``name`` built with ``params`` (validates them; cached).

    Raises ``ValueError`` (unknown policy, bad value) or ``TypeError`` (unknown parameter).
    """
    return _config_id(name, json.dumps(params or {}, sort_keys=True, default=str))


def config_id_of_version(policy_version: str) -> str:
    """The chain's ``config_id`` from a logged ``policy_version`` (``<config_id>.<updates>``)."""
    return policy_version.split(".", 1)[0]


def newest_snapshot(
    db: Session, *, merchant_id: str, policy: str, config_id: str | None = None
) -> PolicySnapshot | None:
    """The newest snapshot of a chain; with no ``config_id``, of any chain of ``policy``."""
    query = select(PolicySnapshot).where(
        PolicySnapshot.merchant_id == merchant_id, PolicySnapshot.policy == policy
    )
    if config_id is not None:
        query = query.where(PolicySnapshot.config_id == config_id).order_by(
            PolicySnapshot.seq.desc()
        )
    else:
        query = query.order_by(PolicySnapshot.created_at.desc(), PolicySnapshot.id.desc())
    return db.scalars(query.limit(1)).first()


def restore(snapshot: PolicySnapshot) -> BanditPolicy:
    """The policy held by ``snapshot`` (raises ``SnapshotError`` when it cannot be restored)."""
    return POLICY_CLASSES[snapshot.policy].from_state(snapshot.state)


_local = threading.local()


def _thread_rng() -> np.random.Generator:
    gen = getattr(_local, "rng", None)
    if gen is None:
        gen = _local.rng = np.random.default_rng()
    return gen


class ServedPolicy:
    """A snapshot's policy as served: read-only, fresh per-thread randomness per decision."""

    def __init__(self, policy: BanditPolicy, *, seq: int, created_at: datetime | None) -> None:
        self.policy = policy
        self.seq = seq
        self.created_at = created_at
        self.name = policy.name

    @property
    def version(self) -> str:
        return self.policy.version

    def rank(self, methods: list[MethodType], context: dict[str, Any]) -> Ranking:
        return self.policy.rank(methods, context, rng=_thread_rng())

    def probabilities(
        self, methods: list[MethodType], context: dict[str, Any]
    ) -> dict[MethodType, float]:
        return self.policy.probabilities(methods, context, rng=_thread_rng())

    def __repr__(self) -> str:
        return f"ServedPolicy({self.policy!r}, seq={self.seq})"


@dataclass
class _Entry:
    served: OrderingPolicy  # a ServedPolicy, or MerchantOrderPolicy when the chain is broken
    seq: int  # snapshot seq this entry reflects (0: no snapshot yet)
    checked: float  # monotonic time at which ``seq`` was last known to be the newest
    checked_at: datetime
    used: float
    error: str | None = None


class PolicyProvider(PeriodicTask):
    """Per-merchant ordering policies from the newest snapshots, refreshed in the background.

    ``policy_for(config, merchant_id)`` is what ``ProfileServices.policy_for`` calls;
    ``start()``/``stop()`` run the refresh thread (the app's lifespan); tests call
    :meth:`refresh` directly. Chains not served for ``idle_seconds`` are forgotten.
    """

    def __init__(
        self,
        database: Database,
        *,
        staleness_seconds: float = 5.0,
        idle_seconds: float = 3600.0,
    ) -> None:
        if staleness_seconds <= 0:
            raise ValueError(f"staleness_seconds must be > 0, got {staleness_seconds!r}")
        self.database = database
        self.staleness_seconds = staleness_seconds
        self.interval_seconds = staleness_seconds / 2
        self.idle_seconds = idle_seconds
        self.last_error: str | None = None
        self.refreshed_at: datetime | None = None
        self._entries: dict[ChainKey, _Entry] = {}
        self._lock = threading.Lock()  # serialises loads and swaps; readers never wait

    # -- the request path --------------------------------------------------------------------

    def policy_for(self, config: MerchantConfig, merchant_id: str) -> OrderingPolicy:
        name = config.ordering_policy
        if name not in POLICY_CLASSES:
            return get_policy(name)
        key = ChainKey(merchant_id, name, policy_config_id(name, config.ordering_params))
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = self._load(key, config.ordering_params)
            except Exception as exc:  # fail safe: the merchant's own order, not learned from
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("bandit %s for %s unavailable; serving merchant order", name, key)
                return MerchantOrderPolicy()
        entry.used = time.monotonic()
        return entry.served

    # -- loading and refreshing ----------------------------------------------------------------

    def _entry(
        self, key: ChainKey, snapshot: PolicySnapshot | None, params: dict[str, Any], started: float
    ) -> _Entry:
        now = utcnow()
        if snapshot is None:
            served = ServedPolicy(make_policy(key.policy, **params), seq=0, created_at=None)
            return _Entry(served, 0, started, now, time.monotonic())
        try:
            policy = restore(snapshot)
        except Exception as exc:
            log.error("snapshot %s of %s cannot be restored: %s", snapshot.seq, key, exc)
            error = f"{type(exc).__name__}: {exc}"
            return _Entry(
                MerchantOrderPolicy(), snapshot.seq, started, now, time.monotonic(), error
            )
        served = ServedPolicy(policy, seq=snapshot.seq, created_at=snapshot.created_at)
        return _Entry(served, snapshot.seq, started, now, time.monotonic())

    def _load(self, key: ChainKey, params: dict[str, Any]) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                return entry
            started = time.monotonic()
            with self.database.session() as db:
                snapshot = newest_snapshot(
                    db, merchant_id=key.merchant_id, policy=key.policy, config_id=key.config_id
                )
                entry = self._entry(key, snapshot, params, started)
            self._entries[key] = entry
            return entry

    def refresh(self) -> int:
        """Check every served chain for a newer snapshot and swap it in; returns how many."""
        started = time.monotonic()
        with self._lock:
            for key in [
                k for k, e in self._entries.items() if started - e.used > self.idle_seconds
            ]:
                del self._entries[key]
            keys = list(self._entries)
            if not keys:
                self.refreshed_at = utcnow()
                return 0
            try:
                swapped = self._refresh(keys, started)
            except Exception as exc:  # keep serving the last snapshots; staleness grows
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("bandit snapshot refresh failed: %s", self.last_error)
                return 0
            self.last_error = None
            self.refreshed_at = utcnow()
            return swapped

    def _refresh(self, keys: list[ChainKey], started: float) -> int:
        swapped = 0
        with self.database.session() as db:
            rows = db.execute(
                select(
                    PolicySnapshot.merchant_id,
                    PolicySnapshot.policy,
                    PolicySnapshot.config_id,
                    func.max(PolicySnapshot.seq),
                )
                .where(PolicySnapshot.merchant_id.in_({k.merchant_id for k in keys}))
                .group_by(
                    PolicySnapshot.merchant_id, PolicySnapshot.policy, PolicySnapshot.config_id
                )
            ).all()
            newest = {ChainKey(m, p, c): seq for m, p, c, seq in rows}
            now = utcnow()
            for key in keys:
                entry = self._entries[key]
                seq = newest.get(key, 0)
                if seq == entry.seq:
                    entry.checked, entry.checked_at = started, now
                    continue
                snapshot = db.scalars(
                    select(PolicySnapshot).where(
                        PolicySnapshot.merchant_id == key.merchant_id,
                        PolicySnapshot.policy == key.policy,
                        PolicySnapshot.config_id == key.config_id,
                        PolicySnapshot.seq == seq,
                    )
                ).first()
                if snapshot is None and seq:  # pruned meanwhile: the next round sees a newer one
                    continue
                params = (
                    entry.served.policy.params() if isinstance(entry.served, ServedPolicy) else {}
                )
                if snapshot is None and not params:
                    del self._entries[key]  # chain deleted and params unknown: reload on demand
                    continue
                fresh = self._entry(key, snapshot, params, started)
                fresh.used = entry.used
                self._entries[key] = fresh  # one reference swap: atomic for readers
                swapped += 1
        return swapped

    def status(self, merchant_id: str, policy: str, config_id: str) -> dict[str, Any] | None:
        """What this worker serves for the chain, with its staleness; None when not loaded."""
        entry = self._entries.get(ChainKey(merchant_id, policy, config_id))
        if entry is None:
            return None
        served = entry.served
        return {
            "policy": served.name,
            "version": served.version,
            "snapshot": entry.seq,
            "degraded": not isinstance(served, ServedPolicy),
            "error": entry.error,
            "checked_at": entry.checked_at,
            "staleness_seconds": round(time.monotonic() - entry.checked, 3),
            "max_staleness_seconds": self.staleness_seconds,
            "refresh_error": self.last_error,
        }

    # -- the background thread (checkoutlab.background.PeriodicTask) --------------------------

    thread_name = "bandit-snapshots"
    run_immediately = False

    def tick(self) -> None:
        try:
            self.refresh()
        finally:  # a failed refresh is exactly when the staleness gauge must move
            metrics.set_bandit_snapshots(self.served())

    def served(self) -> list[tuple[str, str, int, float]]:
        """(merchant, policy, snapshot seq, staleness seconds) of every chain served here."""
        now = time.monotonic()
        return [
            (key.merchant_id, key.policy, entry.seq, round(now - entry.checked, 3))
            for key, entry in list(self._entries.items())
        ]


def fresh_policy_for(config: MerchantConfig, merchant_id: str | None = None) -> OrderingPolicy:
    """Without a provider (scripts, tests): static policies, or an untrained bandit."""
    if config.ordering_policy in POLICY_CLASSES:
        return make_policy(config.ordering_policy, **config.ordering_params)
    return get_policy(config.ordering_policy)


# -- /v1/bandits/{policy} -------------------------------------------------------------------------


def describe(
    *,
    db: Session,
    merchant_id: str,
    config: MerchantConfig,
    policy: str,
    provider: PolicyProvider | None = None,
) -> dict[str, Any] | None:
    """The merchant's ``policy`` bandit: arms, pulls, estimates, version, serving staleness.

    The chain shown is the configured one when ``policy`` is the merchant's
    ``ordering_policy`` (a fresh policy before the first snapshot), otherwise the merchant's
    newest chain of that policy. None when the merchant has neither.
    """
    configured = config.ordering_policy == policy
    if configured:
        config_id = policy_config_id(policy, config.ordering_params)
        snapshot = newest_snapshot(db, merchant_id=merchant_id, policy=policy, config_id=config_id)
        if provider is not None:
            provider.policy_for(config, merchant_id)  # load it in this worker if not yet served
    else:
        snapshot = newest_snapshot(db, merchant_id=merchant_id, policy=policy)
        if snapshot is None:
            return None
        config_id = snapshot.config_id

    learned: BanditPolicy | None = None
    error = None
    if snapshot is None:
        learned = make_policy(policy, **config.ordering_params)
    else:
        try:
            learned = restore(snapshot)
        except Exception as exc:  # still show what the snapshot row records
            error = f"{type(exc).__name__}: {exc}"

    recorded_pulls = snapshot.pulls if snapshot is not None else {}
    arms = list(dict.fromkeys([*config.ordered_methods(), *map(MethodType, recorded_pulls)]))
    rows = [_arm_row(learned, arm, recorded_pulls) for arm in arms]
    status = provider.status(merchant_id, policy, config_id) if provider is not None else None
    if learned is not None:
        params, version, updates = learned.params(), learned.version, learned.n_updates
    else:
        params, version, updates = snapshot.params, snapshot.version, snapshot.updates
    return {
        "object": "bandit",
        "policy": policy,
        "configured": configured,
        "config_id": config_id,
        "params": params,
        "version": version,
        "snapshot": snapshot.seq if snapshot is not None else 0,
        "updates": updates,
        "updated_at": snapshot.created_at if snapshot is not None else None,
        "arms": rows,
        "error": error,
        "serving": status,
        "max_staleness_seconds": provider.staleness_seconds if provider is not None else None,
    }


def _arm_row(
    learned: BanditPolicy | None, arm: MethodType, recorded_pulls: dict[str, Any]
) -> dict[str, Any]:
    if learned is None:
        pulls = int(recorded_pulls.get(arm.value, 0))
        return {
            "method": arm.value,
            "pulls": pulls,
            "mean_reward": None,
            "estimate": None,
            "posterior": None,
        }
    means = learned.summary()["arms"].get(arm.value, {})
    row: dict[str, Any] = {
        "method": arm.value,
        "pulls": int(learned.pulls[arm]),
        "mean_reward": means.get("mean_reward"),
        "estimate": learned.arm_estimates().get(arm),
        "posterior": None,
    }
    if isinstance(learned, ThompsonSamplingPolicy):
        a, b = learned.posterior(arm)
        row["posterior"] = {"alpha": a, "beta": b, "mean": a / (a + b)}
        row["estimate"] = a / (a + b)
    return row
