"""``checkoutlab webhooks list|replay`` through typer's runner on the test databases."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from checkoutlab.cli import app as cli
from checkoutlab.config import Settings, get_settings
from checkoutlab.db import Database
from checkoutlab.webhooks import verify_signature
from checkoutlab.webhooks.dispatcher import Dispatcher

from .conftest import Clock, Receiver, stripe_event, stripe_headers

runner = CliRunner()


@pytest.fixture
def cli_env(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The CLI reads the same database and platform secret as the app under test."""
    monkeypatch.setenv("CHECKOUTLAB_DATABASE_URL", database.url)
    monkeypatch.setenv("CHECKOUTLAB_ENVIRONMENT", "test")
    monkeypatch.setenv("CHECKOUTLAB_SECRET_KEY", settings.secret_key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def delivered(
    client: TestClient,
    merchant: Any,
    make_payment: Callable[..., Any],
    receiver: Receiver,
    database: Database,
    settings: Settings,
    clock: Clock,
) -> dict[str, Any]:
    """Two payment events an hour apart, each delivered once to one endpoint."""
    endpoint = client.post(
        "/v1/webhook_endpoints", json={"url": receiver.url}, headers=merchant.secret_headers
    ).json()
    dispatcher = Dispatcher(database, settings, clock=clock, rng=random.Random(1))
    started = clock()
    for reference in ("pi_cli_1", "pi_cli_2"):
        make_payment(merchant.id, reference=reference)
        intent = {"id": reference, "amount": 2599, "currency": "eur"}
        payload = stripe_event("payment_intent.succeeded", intent)
        client.post("/v1/webhooks/stripe", content=payload, headers=stripe_headers(payload))
        dispatcher.tick()
        clock.advance(3600)
    assert len(receiver.requests) == 2
    events = [r.json()["id"] for r in receiver.requests]
    return {"endpoint": endpoint, "events": events, "started": started}


def test_list_shows_deliveries(cli_env: None, delivered: dict[str, Any]) -> None:
    result = runner.invoke(cli, ["webhooks", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["event_id"] for r in rows) == sorted(delivered["events"])
    assert {(r["status"], r["attempts"], r["last_status_code"]) for r in rows} == {
        ("succeeded", 1, 200)
    }

    table = runner.invoke(cli, ["webhooks", "list", "--event", delivered["events"][0]])
    assert table.exit_code == 0
    assert delivered["events"][0] in table.stdout and delivered["events"][1] not in table.stdout


def test_replay_by_event_resends_it_signed(
    cli_env: None, delivered: dict[str, Any], receiver: Receiver
) -> None:
    event_id = delivered["events"][0]
    result = runner.invoke(cli, ["webhooks", "replay", "--event", event_id])

    assert result.exit_code == 0, result.output
    assert "replayed 1 deliveries: 1 delivered" in result.stdout
    assert len(receiver.requests) == 3
    again = receiver.requests[-1]
    assert again.json()["id"] == event_id
    assert again.body == receiver.requests[0].body  # the same event, byte for byte
    verify_signature(
        again.body, again.headers["checkoutlab-signature"], delivered["endpoint"]["secret"]
    )


def test_replay_by_endpoint_and_time_range(
    cli_env: None, delivered: dict[str, Any], receiver: Receiver
) -> None:
    started = delivered["started"]  # first event at started, second an hour later
    args = ["webhooks", "replay", "--endpoint", delivered["endpoint"]["id"]]

    before = runner.invoke(
        cli, [*args, "--since", "2000-01-01T00:00:00Z", "--until", _iso(started)]
    )
    assert before.exit_code == 0, before.output
    assert "replayed 0 deliveries" in before.stdout

    second = runner.invoke(cli, [*args, "--since", _iso(started + timedelta(minutes=30))])
    assert second.exit_code == 0, second.output
    assert "replayed 1 deliveries: 1 delivered" in second.stdout
    assert receiver.requests[-1].json()["id"] == delivered["events"][1]

    both = runner.invoke(
        cli, [*args, "--since", _iso(started), "--until", _iso(started + timedelta(hours=2))]
    )
    assert "replayed 2 deliveries: 2 delivered" in both.stdout
    assert len(receiver.requests) == 5


def test_replay_can_leave_sending_to_the_worker(
    cli_env: None, delivered: dict[str, Any], receiver: Receiver
) -> None:
    result = runner.invoke(
        cli, ["webhooks", "replay", "--event", delivered["events"][1], "--schedule"]
    )
    assert result.exit_code == 0, result.output
    assert "scheduled 1 deliveries" in result.stdout
    assert len(receiver.requests) == 2
    listed = runner.invoke(cli, ["webhooks", "list", "--status", "pending", "--json"])
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["event_id"], row["attempts"]) == (delivered["events"][1], 0)


def test_replay_needs_a_selection_and_a_known_event(cli_env: None) -> None:
    assert runner.invoke(cli, ["webhooks", "replay"]).exit_code == 2
    unknown = runner.invoke(cli, ["webhooks", "replay", "--event", "evt_nope"])
    assert unknown.exit_code == 1
    bad_time = runner.invoke(cli, ["webhooks", "replay", "--endpoint", "we_x", "--since", "soon"])
    assert bad_time.exit_code == 2


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
