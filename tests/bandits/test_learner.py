"""The feedback loop: rewards from the event log, exactly once, into versioned snapshots.

Decisions and events are written straight into the tables the profile builder and confirm
write (same columns), so the attribution window can be tested with exact timestamps.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from checkoutlab.bandits.cli import app as bandits_app
from checkoutlab.bandits.cli import build_candidate, parse_spec
from checkoutlab.bandits.learner import Learner, decision_log
from checkoutlab.bandits.models import (
    DecisionReward,
    LearnerCursor,
    PendingDecision,
    PolicySnapshot,
)
from checkoutlab.bandits.ope import evaluate
from checkoutlab.bandits.policies import EpsilonGreedyPolicy, ThompsonSamplingPolicy
from checkoutlab.bandits.policy import ContextRulesPolicy, MerchantOrderPolicy
from checkoutlab.bandits.serving import PolicyProvider, ServedPolicy, policy_config_id
from checkoutlab.config import get_settings
from checkoutlab.db import Database, new_id, utcnow
from checkoutlab.events.models import Event
from checkoutlab.merchants.schemas import MerchantConfig
from checkoutlab.payments.models import CheckoutSession
from checkoutlab.profile.models import Decision

WINDOW = timedelta(minutes=30)
CONTEXT = {
    "device": {"type": "mobile", "os": "ios", "apple_pay": True},
    "location": {"country": "NL"},
    "currency": "EUR",
    "amount": {"value": 2599, "currency": "EUR"},
    "customer": {"returning": False},
}


class Log:
    """Writes decisions and events as the builder and confirm do, at chosen times."""

    def __init__(self, database: Database, merchant_id: str, config: dict[str, Any]) -> None:
        self.database = database
        self.merchant_id = merchant_id
        self.config = MerchantConfig.model_validate(config)
        policy = self.config.ordering_policy
        self.version = (
            f"{policy_config_id(policy, self.config.ordering_params)}.0"
            if policy not in ("merchant_order", "context_rules")
            else "1"
        )

    def serve(
        self, at, *, ordering: list[str] | None = None, propensity: float = 0.5, context=None
    ) -> str:
        decision_id = new_id("prof")
        session_id = new_id("cs")
        ordering = ordering or ["card", "ideal", "klarna"]
        with self.database.session() as db:
            db.add(
                CheckoutSession(
                    id=session_id,
                    merchant_id=self.merchant_id,
                    client_secret=f"{session_id}_secret",
                    amount=2599,
                    currency="EUR",
                    line_items=[],
                    created_at=at,
                    expires_at=at + timedelta(hours=1),
                )
            )
            db.flush()
            db.add(
                Decision(
                    id=decision_id,
                    merchant_id=self.merchant_id,
                    session_id=session_id,
                    customer_ref=None,
                    context=context or CONTEXT,
                    features={},
                    risk_score=0.01,
                    risk_level="normal",
                    model="rules",
                    model_version="1",
                    policy=self.config.ordering_policy,
                    policy_version=self.version,
                    propensity=propensity,
                    ordering=ordering,
                    experiment_key=None,
                    variant=None,
                    assignment_probability=None,
                    verification={},
                    profile={},
                    created_at=at,
                    expires_at=at + timedelta(hours=1),
                )
            )
            db.flush()
            self._event(db, "profile_served", session_id, decision_id, at, {})
            db.commit()
        return decision_id

    def succeed(self, decision_id: str, at, amount: int = 2599) -> None:
        with self.database.session() as db:
            decision = db.get(Decision, decision_id)
            properties = {"amount": amount, "currency": "EUR", "method": decision.ordering[0]}
            self._event(db, "payment_succeeded", decision.session_id, decision_id, at, properties)
            db.commit()

    def _event(self, db, type_, session_id, decision_id, at, properties) -> None:
        db.add(
            Event(
                merchant_id=self.merchant_id,
                type=type_,
                session_id=session_id,
                decision_id=decision_id,
                occurred_at=at,
                received_at=at,
                source="server",
                properties=properties,
            )
        )


@pytest.fixture
def thompson(make_merchant, database) -> Log:
    config = {"ordering_policy": "thompson", "ordering_params": {"seed": 1}}
    return Log(database, make_merchant("Bandit Shop", config).id, config)


def rewards(database: Database) -> dict[str, DecisionReward]:
    with database.session() as db:
        return {r.decision_id: r for r in db.scalars(select(DecisionReward))}


def newest(database: Database, merchant_id: str) -> PolicySnapshot | None:
    with database.session() as db:
        return db.scalars(
            select(PolicySnapshot)
            .where(PolicySnapshot.merchant_id == merchant_id)
            .order_by(PolicySnapshot.seq.desc())
        ).first()


def learn_until_idle(learner: Learner, limit: int = 1000) -> int:
    batches = 0
    while not learner.run_once(limit=limit).idle:
        batches += 1
        assert batches < 1000
    return batches


# -- attribution -------------------------------------------------------------------------------


def test_success_inside_window_is_1_after_it_or_without_success_0(database, thompson) -> None:
    t0 = utcnow() - timedelta(hours=2)
    inside = thompson.serve(t0, ordering=["ideal", "card"])
    late = thompson.serve(t0, ordering=["card", "ideal"])
    never = thompson.serve(t0, ordering=["klarna", "card"])
    thompson.succeed(inside, t0 + timedelta(minutes=10))
    thompson.succeed(late, t0 + timedelta(minutes=31))

    # 15 minutes in: the success is applied at once, the other two wait for their window.
    stats = Learner(database, attribution_window=WINDOW, now=t0 + timedelta(minutes=15)).run_once()
    assert (stats.succeeded, stats.window_closed, stats.applied) == (1, 0, 1)
    assert set(rewards(database)) == {inside}
    with database.session() as db:
        assert set(db.scalars(select(PendingDecision.decision_id))) == {late, never}

    # After the window (and the late success): both close with 0.
    stats = Learner(database, attribution_window=WINDOW, now=t0 + timedelta(minutes=45)).run_once()
    assert (stats.succeeded, stats.window_closed) == (0, 2)
    got = rewards(database)
    assert {d: (r.reward, r.outcome) for d, r in got.items()} == {
        inside: (1.0, "succeeded"),
        late: (0.0, "window_closed"),
        never: (0.0, "window_closed"),
    }
    assert got[inside].revenue == 2599 and got[inside].currency == "EUR"
    assert got[late].revenue is None
    assert {r.status for r in got.values()} == {"applied"}
    with database.session() as db:
        assert db.scalar(select(func.count()).select_from(PendingDecision)) == 0

    policy = ThompsonSamplingPolicy.from_state(newest(database, thompson.merchant_id).state)
    assert policy.posterior("ideal") == (2.0, 1.0)  # Beta(1, 1) + one success
    assert policy.posterior("card") == (1.0, 2.0)  # the late success counts as a failure
    assert policy.posterior("klarna") == (1.0, 2.0)
    assert policy.n_updates == 3

    # Nothing left: a rerun changes nothing.
    assert Learner(database, now=t0 + timedelta(hours=1)).run_once().idle
    assert newest(database, thompson.merchant_id).updates == 3


def test_attribution_window_is_configurable(database, thompson) -> None:
    t0 = utcnow() - timedelta(hours=3)
    decision = thompson.serve(t0)
    thompson.succeed(decision, t0 + timedelta(minutes=31))
    learner = Learner(database, attribution_window=timedelta(hours=1), now=t0 + timedelta(hours=2))
    learner.run_once()
    assert rewards(database)[decision].reward == 1.0


def test_window_close_finds_a_success_the_cursor_has_not_reached(database, thompson) -> None:
    """Catching up on an old log in small batches: the success lies beyond this batch."""
    t0 = utcnow() - timedelta(hours=3)
    first = thompson.serve(t0)
    filler = [thompson.serve(t0 + timedelta(seconds=i + 1)) for i in range(3)]
    thompson.succeed(first, t0 + timedelta(minutes=5))
    learner = Learner(database, attribution_window=WINDOW, now=t0 + timedelta(hours=2))
    stats = learner.run_once(limit=2)  # reads two profile_served events, closes their windows
    assert stats.succeeded == 1 and rewards(database)[first].reward == 1.0
    learn_until_idle(learner, limit=2)
    got = rewards(database)
    assert set(got) == {first, *filler}
    assert got[first].reward == 1.0 and sum(r.reward for r in got.values()) == 1.0
    assert newest(database, thompson.merchant_id).updates == 4


def test_events_younger_than_settle_wait_for_the_next_run(database, thompson) -> None:
    now = utcnow()
    thompson.serve(now - timedelta(seconds=1))
    learner = Learner(database, now=now, settle=timedelta(seconds=5))
    assert learner.run_once().events == 0
    assert Learner(database, now=now + timedelta(seconds=10)).run_once().events == 1


# -- exactly once ---------------------------------------------------------------------------------


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("crash_at", [1, 5, 11])
def test_each_reward_is_applied_exactly_once_across_a_crash(
    database, thompson, make_merchant, monkeypatch, crash_at
) -> None:
    config = {"ordering_policy": "epsilon_greedy", "ordering_params": {"epsilon": 0.2}}
    other = Log(database, make_merchant("Other", config).id, config)
    t0 = utcnow() - timedelta(hours=2)
    served: list[str] = []
    for i in range(8):
        for log in (thompson, other):
            decision = log.serve(t0 + timedelta(seconds=i), ordering=[["card", "ideal"][i % 2]])
            served.append(decision)
            if i % 3 == 0:
                log.succeed(decision, t0 + timedelta(minutes=1, seconds=i))
    learner = Learner(database, attribution_window=WINDOW, now=t0 + timedelta(hours=1))

    calls = {"n": 0}
    original = Learner._update

    def crashing(self, policy, context, first_method, reward):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise Crash(f"killed at update {crash_at}")
        original(self, policy, context, first_method, reward)

    monkeypatch.setattr(Learner, "_update", crashing)
    with pytest.raises(Crash):
        learn_until_idle(learner, limit=5)  # small batches: the crash hits a later batch too
    applied_before_crash = len(rewards(database))
    assert applied_before_crash < len(served)

    monkeypatch.setattr(Learner, "_update", original)  # restart the learner
    learn_until_idle(learner, limit=5)
    learn_until_idle(learner, limit=5)  # and once more: nothing is applied twice

    got = rewards(database)
    assert sorted(got) == sorted(served)  # one row per decision (unique constraint)
    for log in (thompson, other):
        snapshot = newest(database, log.merchant_id)
        assert snapshot.updates == 8  # pulls across arms == decisions of this merchant
        assert sum(snapshot.pulls.values()) == 8
        mine = [r for r in got.values() if r.merchant_id == log.merchant_id]
        assert sum(r.reward for r in mine) == 3  # i = 0, 3, 6 succeeded
    policy = ThompsonSamplingPolicy.from_state(newest(database, thompson.merchant_id).state)
    alpha = sum(policy.posterior(arm)[0] - 1 for arm in ("card", "ideal"))
    beta = sum(policy.posterior(arm)[1] - 1 for arm in ("card", "ideal"))
    assert (alpha, beta) == (3, 5)
    with database.session() as db:
        assert db.scalar(select(func.count()).select_from(PendingDecision)) == 0
        cursor = db.scalar(select(LearnerCursor.last_event_id))
        assert cursor == db.scalar(select(func.max(Event.id)))


def test_a_crash_leaves_no_partial_batch(database, thompson, monkeypatch) -> None:
    t0 = utcnow() - timedelta(hours=2)
    for i in range(4):
        thompson.serve(t0 + timedelta(seconds=i))

    def crash(self, batch):
        raise Crash("killed before commit")

    monkeypatch.setattr(Learner, "_snapshot", crash)
    with pytest.raises(Crash):
        Learner(database, now=t0 + timedelta(hours=1)).run_once()
    with database.session() as db:
        for table in (DecisionReward, PolicySnapshot, PendingDecision, LearnerCursor):
            assert db.scalar(select(func.count()).select_from(table)) == 0, table


# -- snapshots and serving -------------------------------------------------------------------------


def test_snapshot_version_increments_and_serving_picks_it_up(database, thompson) -> None:
    config = thompson.config
    cid = policy_config_id("thompson", config.ordering_params)
    provider = PolicyProvider(database, staleness_seconds=5.0)
    served = provider.policy_for(config, thompson.merchant_id)
    assert isinstance(served, ServedPolicy) and served.version == f"{cid}.0"
    ranking = served.rank(["card", "ideal", "klarna"], CONTEXT)
    assert ranking.policy == "thompson" and 0 < ranking.propensity <= 1

    t0 = utcnow() - timedelta(hours=2)
    for i in range(3):
        thompson.succeed(thompson.serve(t0 + timedelta(seconds=i), ordering=["ideal"]), t0)
    learner = Learner(database, now=t0 + timedelta(hours=1))
    learner.run_once()
    first = newest(database, thompson.merchant_id)
    assert (first.seq, first.version, first.updates) == (1, f"{cid}.3", 3)
    assert first.pulls == {"ideal": 3}

    # Cached until the refresh (the background thread runs it every staleness/2).
    assert provider.policy_for(config, thompson.merchant_id).version == f"{cid}.0"
    assert provider.refresh() == 1
    assert provider.policy_for(config, thompson.merchant_id).version == f"{cid}.3"
    status = provider.status(thompson.merchant_id, "thompson", cid)
    assert status["snapshot"] == 1 and not status["degraded"]
    assert 0 <= status["staleness_seconds"] < status["max_staleness_seconds"] == 5.0

    thompson.serve(t0 + timedelta(seconds=10), ordering=["card"])
    learner.run_once()
    second = newest(database, thompson.merchant_id)
    assert (second.seq, second.version) == (2, f"{cid}.4")
    assert provider.refresh() == 1 and provider.refresh() == 0
    assert provider.policy_for(config, thompson.merchant_id).version == f"{cid}.4"


def test_background_refresh_bounds_staleness(database, thompson) -> None:
    provider = PolicyProvider(database, staleness_seconds=0.4)
    provider.policy_for(thompson.config, thompson.merchant_id)
    provider.start()
    try:
        t0 = utcnow() - timedelta(hours=2)
        thompson.serve(t0)
        Learner(database, now=t0 + timedelta(hours=1)).run_once()
        committed = time.monotonic()
        version = newest(database, thompson.merchant_id).version
        while provider.policy_for(thompson.config, thompson.merchant_id).version != version:
            assert time.monotonic() - committed < 5.0, "snapshot not picked up"
            time.sleep(0.02)
        # generous for a loaded CI machine; the bound itself is 0.4 s plus one query
        assert time.monotonic() - committed < 2.0
    finally:
        provider.stop()


def test_static_policies_and_unrestorable_snapshots(database, thompson) -> None:
    provider = PolicyProvider(database)
    static = (("merchant_order", MerchantOrderPolicy), ("context_rules", ContextRulesPolicy))
    for name, cls in static:
        config = MerchantConfig(ordering_policy=name)
        assert isinstance(provider.policy_for(config, thompson.merchant_id), cls)

    t0 = utcnow() - timedelta(hours=2)
    thompson.serve(t0)
    Learner(database, now=t0 + timedelta(hours=1)).run_once()
    with database.session() as db:  # a snapshot written by another river version
        snapshot = db.scalars(select(PolicySnapshot)).one()
        snapshot.state = {**snapshot.state, "river_version": "0.1.0"}
        db.commit()
    served = provider.policy_for(thompson.config, thompson.merchant_id)
    assert isinstance(served, MerchantOrderPolicy)  # fail safe: the merchant's own order
    cid = policy_config_id("thompson", thompson.config.ordering_params)
    assert provider.status(thompson.merchant_id, "thompson", cid)["degraded"]

    # The learner restarts the chain untrained instead of stopping, and serving recovers.
    thompson.serve(t0 + timedelta(seconds=1))
    Learner(database, now=t0 + timedelta(hours=1)).run_once()
    assert newest(database, thompson.merchant_id).seq == 2
    provider.refresh()
    assert isinstance(provider.policy_for(thompson.config, thompson.merchant_id), ServedPolicy)


def test_old_snapshots_are_pruned(database, thompson) -> None:
    t0 = utcnow() - timedelta(hours=2)
    learner = Learner(database, now=t0 + timedelta(hours=1), keep_snapshots=2)
    for i in range(4):
        thompson.serve(t0 + timedelta(seconds=i))
        learner.run_once()
    with database.session() as db:
        assert list(db.scalars(select(PolicySnapshot.seq).order_by(PolicySnapshot.seq))) == [3, 4]


# -- which decisions train what -----------------------------------------------------------------


def test_non_bandit_decisions_are_logged_not_learned(database, make_merchant) -> None:
    config = {"ordering_policy": "context_rules"}
    log = Log(database, make_merchant("Static", config).id, config)
    t0 = utcnow() - timedelta(hours=2)
    decision = log.serve(t0, propensity=1.0)
    log.succeed(decision, t0 + timedelta(minutes=2))
    stats = Learner(database, now=t0 + timedelta(hours=1)).run_once()
    assert (stats.logged, stats.applied, stats.snapshots) == (1, 0, {})
    assert rewards(database)[decision].status == "logged"
    assert newest(database, log.merchant_id) is None


def test_decisions_of_an_unknown_chain_are_orphaned(database, thompson) -> None:
    """Served under parameters the merchant has since changed, before any snapshot."""
    t0 = utcnow() - timedelta(hours=2)
    decision = thompson.serve(t0)
    with database.session() as db:
        db.execute(
            update(Decision).where(Decision.id == decision).values(policy_version="deadbeef.0")
        )
        db.commit()
    stats = Learner(database, now=t0 + timedelta(hours=1)).run_once()
    assert stats.skipped == 1 and rewards(database)[decision].status == "orphaned"


def test_revenue_reward(database, make_merchant) -> None:
    config = {"ordering_policy": "epsilon_greedy"}
    log = Log(database, make_merchant("Revenue", config).id, config)
    t0 = utcnow() - timedelta(hours=2)
    paid = log.serve(t0, ordering=["card"])
    log.succeed(paid, t0 + timedelta(minutes=1), amount=12050)
    unpaid = log.serve(t0, ordering=["ideal"])
    Learner(database, now=t0 + timedelta(hours=1), reward="revenue").run_once()
    got = rewards(database)
    assert (got[paid].reward, got[paid].converted, got[paid].revenue) == (120.5, True, 12050)
    assert (got[unpaid].reward, got[unpaid].converted) == (0.0, False)
    policy = EpsilonGreedyPolicy.from_state(newest(database, log.merchant_id).state)
    assert policy.arm_estimates()["card"] == pytest.approx(120.5)


def test_revenue_mode_keeps_conversion_for_binary_policies(database, thompson) -> None:
    t0 = utcnow() - timedelta(hours=2)
    paid = thompson.serve(t0)
    thompson.succeed(paid, t0 + timedelta(minutes=1), amount=12050)
    Learner(database, now=t0 + timedelta(hours=1), reward="revenue").run_once()
    assert rewards(database)[paid].reward == 1.0 and rewards(database)[paid].status == "applied"


def test_learner_arguments_are_checked(database) -> None:
    with pytest.raises(ValueError, match="attribution_window"):
        Learner(database, attribution_window=timedelta(0))
    with pytest.raises(ValueError, match="reward"):
        Learner(database, reward="profit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        Learner(database).run_once(limit=0)


# -- the decision log and offline evaluation ------------------------------------------------------


def test_decision_log_feeds_ope(database, thompson) -> None:
    t0 = utcnow() - timedelta(hours=3)
    for i in range(40):
        first = ["ideal", "card"][i % 2]
        decision = thompson.serve(
            t0 + timedelta(seconds=i), ordering=[first, "card" if first == "ideal" else "ideal"]
        )
        if first == "ideal" or i % 4 == 1:
            thompson.succeed(decision, t0 + timedelta(minutes=1, seconds=i))
    thompson.serve(utcnow())  # still inside its window: no reward, not in the log
    Learner(database, now=utcnow()).run_once()

    with database.session() as db:
        log = decision_log(db, since=t0, merchant_id=thompson.merchant_id)
        assert decision_log(db, since=utcnow()).empty
    assert len(log) == 40
    assert set(log.columns) >= {"context", "methods", "first_method", "propensity", "reward"}
    assert log["reward"].sum() == 30
    # The merchant's configured order (all methods enabled: card before ideal), not the served one.
    assert all(methods == ["card", "ideal"] for methods in log["methods"])
    table = evaluate(log, build_candidate("epsilon_greedy:epsilon=0.2"), n_boot=50)
    assert set(table["estimator"]) == {"ipw", "snipw", "dm", "dr", "logged"}
    assert table.set_index("estimator").loc["logged", "estimate"] == pytest.approx(0.75)


def test_policy_specs() -> None:
    assert parse_spec("logistic_softmax") == ("logistic_softmax", {})
    assert parse_spec("epsilon_greedy:epsilon=0.2,decay=0") == (
        "epsilon_greedy",
        {"epsilon": 0.2, "decay": 0},
    )
    assert build_candidate("epsilon_greedy:epsilon=0.2").epsilon == 0.2
    assert isinstance(build_candidate("merchant_order"), MerchantOrderPolicy)
    for bad, message in (
        ("nope", "unknown policy"),
        ("thompson:eps=1", "accepts"),
        ("epsilon_greedy:epsilon=2", "epsilon must be"),
        ("thompson:alpha", "key=value"),
        ("merchant_order:x=1", "no parameters"),
    ):
        with pytest.raises(ValueError, match=message):
            build_candidate(bad)


@pytest.fixture
def cli_env(database, monkeypatch):
    monkeypatch.setenv("CHECKOUTLAB_DATABASE_URL", database.url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_learn_and_evaluate(database, thompson, cli_env) -> None:
    t0 = utcnow() - timedelta(hours=3)
    for i in range(20):
        decision = thompson.serve(t0 + timedelta(seconds=i), ordering=[["card", "ideal"][i % 2]])
        if i % 2:
            thompson.succeed(decision, t0 + timedelta(minutes=1))

    result = cli_env.invoke(bandits_app, ["learn", "--once", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["window_closed"] == 10 and stats["succeeded"] == 10 and stats["applied"] == 20

    since = t0.date().isoformat()
    args = ["evaluate", "--since", since, "--policy", "logistic_softmax"]
    args += ["--policy", "epsilon_greedy:epsilon=0.2", "--n-boot", "50"]
    result = cli_env.invoke(bandits_app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["decisions"] == 20 and payload["logged"]["estimate"] == pytest.approx(0.5)
    assert payload["logged"]["policies"] == {"thompson": 20}
    assert [c["policy"] for c in payload["candidates"]] == [
        "logistic_softmax",
        "epsilon_greedy:epsilon=0.2",
    ]
    row = payload["candidates"][0]["estimates"][0]
    assert set(row) == {"estimator", "estimate", "low", "high", "ess"}

    result = cli_env.invoke(bandits_app, [*args, "--merchant", thompson.merchant_id])
    assert result.exit_code == 0, result.output
    assert "logged (thompson: 20)" in result.stdout and "snipw" in result.stdout

    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    result = cli_env.invoke(bandits_app, ["evaluate", "--since", tomorrow, "--policy", "ucb"])
    assert result.exit_code == 1 and "No rewarded decisions" in result.output
    result = cli_env.invoke(bandits_app, ["evaluate", "--since", "x", "--policy", "ucb"])
    assert result.exit_code == 2
    result = cli_env.invoke(bandits_app, ["evaluate", "--since", since, "--policy", "nope"])
    assert result.exit_code == 2 and "unknown policy" in result.output
