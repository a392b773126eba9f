"""Kill the learner mid-batch: after a restart every reward is applied exactly once.

Checkouts go through the real API (profiles served by a Thompson-sampling merchant, a
third of them paid), so the event log holds ``profile_served`` and ``payment_succeeded``
rows written by the product. The learner (``_learner_proc.py``: the product's
:class:`Learner`, in a subprocess) is SIGKILLed inside a batch, restarted and
SIGKILLed again in the middle of its recovery, then run to the end, and the policy it
leaves behind must have learnt each decision exactly once: one reward row
per decision, ``updates`` and pulls equal to the number of decisions, and the Beta posterior
counting exactly the successes and the failures.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from checkoutlab.api.app import create_app
from checkoutlab.bandits.learner import Learner
from checkoutlab.bandits.models import DecisionReward, LearnerCursor, PolicySnapshot
from checkoutlab.bandits.policies import ThompsonSamplingPolicy
from checkoutlab.config import Settings
from checkoutlab.db import Database, utcnow
from checkoutlab.events.models import Event

from .conftest import HERE, TEST_SECRET, confirm_body, create_merchant, new_checkout

CHECKOUTS = 45
PAID_EVERY = 3  # checkouts 0, 3, 6, ... are paid


def _serve_and_pay(db_url: str, merchant) -> tuple[list[str], int]:
    """Serve ``CHECKOUTS`` profiles and pay every third one; (decision ids, payments)."""
    settings = Settings(
        environment="test",
        database_url=db_url,
        secret_key=TEST_SECRET,
        risk_scorer="rules",
        rate_limit_enabled=False,
    )
    database = Database(db_url)
    decisions, paid = [], 0
    try:
        with TestClient(create_app(settings, database=database)) as client:
            for i in range(CHECKOUTS):
                checkout = new_checkout(client, merchant)
                decisions.append(checkout["profile"]["id"])
                if i % PAID_EVERY:
                    continue
                body = confirm_body(checkout)  # a card: reward goes to the method placed first
                response = client.post(
                    f"/v1/checkout_sessions/{checkout['session']['id']}/confirm",
                    json=body,
                    headers=merchant.public_headers | {"Idempotency-Key": str(uuid.uuid4())},
                )
                assert response.status_code == 200, response.text
                paid += response.json()["status"] == "succeeded"
    finally:
        database.dispose()
    return decisions, paid


def _learn(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HERE / "_learner_proc.py"), db_url, "--limit", "10", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _state(db_url: str, merchant_id: str):
    database = Database(db_url)
    try:
        with database.session() as db:
            rewards = list(db.scalars(select(DecisionReward)))
            snapshot = db.scalars(
                select(PolicySnapshot)
                .where(PolicySnapshot.merchant_id == merchant_id)
                .order_by(PolicySnapshot.seq.desc())
            ).first()
            cursor = db.scalar(select(LearnerCursor.last_event_id)) or 0
            head = db.scalar(
                select(func.max(Event.id)).where(
                    Event.type.in_(("profile_served", "payment_succeeded"))
                )
            )
    finally:
        database.dispose()
    return rewards, snapshot, cursor, head


def test_learner_killed_mid_batch_applies_every_reward_exactly_once(db_url: str) -> None:
    merchant = create_merchant(
        db_url, {"ordering_policy": "thompson", "ordering_params": {"seed": 7}}
    )
    decisions, paid = _serve_and_pay(db_url, merchant)
    assert paid == len(range(0, CHECKOUTS, PAID_EVERY))

    # 1. SIGKILL inside the 23rd policy update (the 3rd batch of 10 events)
    killed = _learn(db_url, "--kill-at-update", "23")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rewards, snapshot, cursor, head = _state(db_url, merchant.id)
    # it died inside a batch, after committing earlier ones: a restart has work to redo
    assert 0 < len(rewards) < CHECKOUTS
    assert snapshot is not None and snapshot.updates == len(rewards)
    assert 0 < cursor < head
    first = len(rewards)

    # 2. restarted, and SIGKILLed again: its 2nd batch is flushed, uncommitted, when it dies
    killed = _learn(db_url, "--kill-before-commit", "2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rewards, snapshot, cursor, head = _state(db_url, merchant.id)
    assert first < len(rewards) < CHECKOUTS  # its 1st batch committed, the 2nd did not
    assert snapshot.updates == len(rewards)
    assert cursor < head

    # 3. restarted for good: it applies exactly what is left
    restarted = _learn(db_url)
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["applied"] == CHECKOUTS - len(rewards)
    database = Database(db_url)
    try:  # and once more: nothing is left to apply twice
        again = Learner(database, now=utcnow() + timedelta(hours=2), settle=timedelta(0))
        assert again.run_once(limit=1000).idle
    finally:
        database.dispose()

    rewards, snapshot, cursor, head = _state(db_url, merchant.id)
    assert sorted(r.decision_id for r in rewards) == sorted(decisions)  # one row each
    assert {r.status for r in rewards} == {"applied"}
    assert sum(r.converted for r in rewards) == paid
    assert snapshot.updates == CHECKOUTS
    assert sum(snapshot.pulls.values()) == CHECKOUTS
    policy = ThompsonSamplingPolicy.from_state(snapshot.state)
    arms = list(snapshot.pulls)
    alpha = sum(policy.posterior(arm)[0] - 1 for arm in arms)
    beta = sum(policy.posterior(arm)[1] - 1 for arm in arms)
    assert (alpha, beta) == (paid, CHECKOUTS - paid)
    assert cursor == head
