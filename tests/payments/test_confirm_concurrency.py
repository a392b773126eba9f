"""Concurrent confirms against a real server: 50 threads, one live uvicorn on a free port,
the Stripe test double counting the charges it actually received (issue 7, "Idempotency
and concurrency"). Runs on SQLite and, with CHECKOUTLAB_TEST_DATABASE_URL, PostgreSQL: what
holds is the database (unique idempotency key, session row lock, one-success index), not an
in-process lock, since the waiting happens in database polls and row locks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import select

from checkoutlab.api.app import create_app
from checkoutlab.payments.models import Payment

from .doubles import StripeDouble

CONCURRENCY = 50


@pytest.fixture
def double() -> Iterator[StripeDouble]:
    with StripeDouble() as server:
        server.latency_seconds = 0.3  # a real round trip: keeps the race window open
        yield server


@pytest.fixture
def base_url(settings: Any, database: Any, double: StripeDouble) -> Iterator[str]:
    settings = settings.model_copy(
        update={
            "stripe_api_key": SecretStr(double.api_key),
            "stripe_api_base": double.url,
            "confirm_budget_seconds": 15.0,
        }
    )
    app = create_app(settings, database=database)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


def _session(http: httpx.Client, keys: Any) -> dict[str, Any]:
    created = http.post(
        "/v1/checkout_sessions",
        json={"amount": 4200, "currency": "EUR"},
        headers=keys.secret_headers,
    )
    assert created.status_code == 201, created.text
    session = created.json()
    profile = http.post(
        "/v1/payment_profile",
        json={"client_secret": session["client_secret"], "context": {}},
        headers=keys.public_headers,
    )
    assert profile.status_code == 200, profile.text
    return session | {"token": profile.json()["token"]}


def _race(base_url: str, send: Callable[[httpx.Client, int], httpx.Response]) -> list[Any]:
    responses: list[Any] = [None] * CONCURRENCY
    barrier = threading.Barrier(CONCURRENCY)

    def one(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            barrier.wait()
            responses[index] = send(http, index)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in responses), "a request never answered"
    return responses


def _confirm(http: httpx.Client, keys: Any, session: dict[str, Any], key: str) -> httpx.Response:
    return http.post(
        f"/v1/checkout_sessions/{session['id']}/confirm",
        json={
            "client_secret": session["client_secret"],
            "profile_token": session["token"],
            "payment_method": {"type": "card", "token": "pm_card_visa"},
        },
        headers=keys.public_headers | {"Idempotency-Key": key},
    )


def _payments(database: Any, session_id: str) -> list[str]:
    with database.session() as db:
        return list(db.scalars(select(Payment.status).where(Payment.session_id == session_id)))


def test_same_idempotency_key_fifty_times_charges_once(
    base_url: str, make_merchant: Callable[..., Any], double: StripeDouble, database: Any
) -> None:
    keys = make_merchant("Race", config={"gateways": ["stripe"]})
    with httpx.Client(base_url=base_url, timeout=30) as http:
        session = _session(http, keys)

    responses = _race(base_url, lambda http, _: _confirm(http, keys, session, "double-click"))

    assert [r.status_code for r in responses] == [200] * CONCURRENCY, {
        r.status_code: r.text for r in responses
    }
    bodies = [r.json() for r in responses]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["status"] == "succeeded" and bodies[0]["gateway"] == "stripe"
    originals = [r for r in responses if "idempotent-replayed" not in r.headers]
    assert len(originals) == 1  # the others waited for it and replayed its answer
    assert len(double.requests_to("POST", "/v1/payment_intents")) == 1
    assert double.charges_created == 1
    assert _payments(database, session["id"]) == ["succeeded"]


def test_fifty_keys_on_one_session_pay_it_at_most_once(
    base_url: str, make_merchant: Callable[..., Any], double: StripeDouble, database: Any
) -> None:
    keys = make_merchant("Race", config={"gateways": ["stripe"]})
    with httpx.Client(base_url=base_url, timeout=30) as http:
        session = _session(http, keys)

    responses = _race(base_url, lambda http, i: _confirm(http, keys, session, f"tab-{i}"))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1, statuses
    for response in responses:
        if response.status_code != 200:
            assert response.status_code == 400, response.text
            # paid already, or refused while the winner's payment was being charged
            assert response.json()["error"]["code"] in (
                "session_already_succeeded",
                "payment_in_progress",
            )
    assert double.charges_created == 1
    assert _payments(database, session["id"]) == ["succeeded"]
