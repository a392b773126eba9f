"""Outbound merchant webhooks: outbox, signed delivery to a local receiver, retries."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from checkoutlab.config import Settings
from checkoutlab.db import Database, utcnow
from checkoutlab.webhooks import verify_signature
from checkoutlab.webhooks.dispatcher import Dispatcher
from checkoutlab.webhooks.models import OutboundEvent, WebhookDelivery
from checkoutlab.webhooks.signing import SignatureVerificationError

from .conftest import Clock, Receiver, stripe_event, stripe_headers


def _endpoint(client: TestClient, owner: Any, url: str, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/webhook_endpoints", json={"url": url} | body, headers=owner.secret_headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def _succeed(client: TestClient, reference: str) -> None:
    intent = {"id": reference, "object": "payment_intent", "amount": 2599, "currency": "eur"}
    payload = stripe_event("payment_intent.succeeded", intent)
    response = client.post("/v1/webhooks/stripe", content=payload, headers=stripe_headers(payload))
    assert response.status_code == 200, response.text


def _deliveries(database: Database) -> list[WebhookDelivery]:
    with database.session() as db:
        return list(db.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))


@pytest.fixture
def dispatcher(database: Database, settings: Settings, clock: Clock) -> Dispatcher:
    task = Dispatcher(database, settings, clock=clock, rng=random.Random(7))
    yield task
    task.stop()


def test_payment_event_is_delivered_signed_to_the_merchant(
    client: TestClient,
    merchant: Any,
    make_payment: Callable[..., Any],
    receiver: Receiver,
    dispatcher: Dispatcher,
    clock: Clock,
    database: Database,
) -> None:
    endpoint = _endpoint(client, merchant, receiver.url)
    payment = make_payment(merchant.id, reference="pi_out")
    _succeed(client, "pi_out")

    assert dispatcher.collect() == 1
    [attempt] = dispatcher.deliver_due()

    assert (attempt.status, attempt.status_code) == ("succeeded", 200)
    [request] = receiver.requests
    signed_at = verify_signature(
        request.body,
        request.headers["checkoutlab-signature"],
        endpoint["secret"],
        now=clock().timestamp(),
    )
    assert signed_at == int(clock().timestamp())
    event = request.json()
    assert (event["object"], event["type"]) == ("event", "payment.succeeded")
    data = event["data"]["object"]
    assert (data["id"], data["status"], data["amount"], data["currency"]) == (
        payment.id,
        "succeeded",
        2599,
        "EUR",
    )
    assert data["card"] == {"brand": "visa", "last4": "4242"}
    with pytest.raises(SignatureVerificationError):
        verify_signature(request.body, request.headers["checkoutlab-signature"], "whsec_other")
    [delivery] = _deliveries(database)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    listed = client.get(
        f"/v1/webhook_endpoints/{endpoint['id']}/deliveries", headers=merchant.secret_headers
    ).json()
    [row] = listed["data"]
    assert (row["id"], row["event_id"], row["event_type"], row["status"]) == (
        delivery.id,
        event["id"],
        "payment.succeeded",
        "succeeded",
    )

    # The cursor moved on: running again neither re-creates nor re-sends anything.
    assert dispatcher.collect() == 0
    assert dispatcher.deliver_due() == []
    assert len(receiver.requests) == 1


def test_payments_confirmed_through_the_api_reach_the_merchant(
    new_checkout: Callable[..., Any],
    client: TestClient,
    merchant: Any,
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    endpoint = _endpoint(client, merchant, receiver.url)
    checkout = new_checkout()
    token = checkout.profile()["token"]
    paid = checkout.confirm(token, key="attempt-1")
    assert paid.status_code == 200, paid.text

    dispatcher.tick()

    [request] = receiver.requests
    verify_signature(request.body, request.headers["checkoutlab-signature"], endpoint["secret"])
    event = request.json()
    assert event["type"] == "payment.succeeded"
    assert event["data"]["object"]["id"] == paid.json()["id"]
    assert event["data"]["object"]["session_id"] == checkout.id
    assert "4242424242424242" not in request.body.decode()


def test_disputes_and_refunds_reach_subscribed_endpoints_only(
    client: TestClient,
    merchant: Any,
    make_payment: Callable[..., Any],
    receiver: Receiver,
    dispatcher: Dispatcher,
    database: Database,
) -> None:
    _endpoint(client, merchant, receiver.url, enabled_events=["dispute.created"])
    make_payment(merchant.id, reference="pi_dsp", status="succeeded")
    dispute = {"id": "dp_9", "payment_intent": "pi_dsp", "amount": 2599, "currency": "eur"}
    refund = {"id": "ch_9", "payment_intent": "pi_dsp", "amount_refunded": 500, "currency": "eur"}
    for payload in (
        stripe_event("charge.dispute.created", dispute),
        stripe_event("charge.refunded", refund),
    ):
        response = client.post(
            "/v1/webhooks/stripe", content=payload, headers=stripe_headers(payload)
        )
        assert response.status_code == 200

    dispatcher.tick()

    assert [r.json()["type"] for r in receiver.requests] == ["dispute.created"]
    assert receiver.requests[0].json()["data"]["object"]["payment_id"]
    with database.session() as db:  # nobody wanted the refund: no outbox row at all
        assert list(db.scalars(select(OutboundEvent.type))) == ["dispute.created"]


def test_other_merchants_endpoints_receive_nothing(
    client: TestClient,
    make_merchant: Callable[..., Any],
    make_payment: Callable[..., Any],
    receiver: Receiver,
    dispatcher: Dispatcher,
) -> None:
    alice, bob = make_merchant("Alice"), make_merchant("Bob")
    _endpoint(client, bob, receiver.url)
    make_payment(alice.id, reference="pi_alice_only")
    _succeed(client, "pi_alice_only")

    dispatcher.tick()

    assert receiver.requests == []


def test_failed_attempts_back_off_exponentially_then_succeed(
    client: TestClient,
    merchant: Any,
    make_payment: Callable[..., Any],
    receiver: Receiver,
    dispatcher: Dispatcher,
    clock: Clock,
    database: Database,
) -> None:
    _endpoint(client, merchant, receiver.url)
    make_payment(merchant.id, reference="pi_retry")
    _succeed(client, "pi_retry")
    receiver.statuses = [500, 503, 500]
    dispatcher.collect()

    delays = []
    for attempt_number, answered in ((1, 500), (2, 503), (3, 500)):
        [attempt] = dispatcher.deliver_due()
        assert (attempt.status, attempt.status_code) == ("pending", answered)
        assert attempt.error == f"HTTP {answered}"
        delay = (attempt.next_attempt_at - clock()).total_seconds()
        ceiling = 60 * 2 ** (attempt_number - 1)  # base 60 s, doubling
        assert ceiling / 2 <= delay <= ceiling
        delays.append(delay)
        # Not due yet: nothing is sent, however often the dispatcher runs.
        clock.advance(delay - 1)
        assert dispatcher.deliver_due() == []
        clock.advance(1)
    assert delays == sorted(delays)

    [attempt] = dispatcher.deliver_due()
    assert attempt.status == "succeeded"
    assert len(receiver.requests) == 4
    [delivery] = _deliveries(database)
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (4, 200, None)
    # Every attempt is signed afresh with the time it was sent.
    stamps = [r.headers["checkoutlab-signature"].split(",")[0] for r in receiver.requests]
    assert len(set(stamps)) == 4


def test_delivery_gives_up_after_the_maximum_attempts(
    client: TestClient,
    merchant: Any,
    make_payment: Callable[..., Any],
    receiver: Receiver,
    dispatcher: Dispatcher,
    clock: Clock,
    database: Database,
) -> None:
    _endpoint(client, merchant, receiver.url)
    make_payment(merchant.id, reference="pi_down")
    _succeed(client, "pi_down")
    receiver.statuses = [500] * 10
    dispatcher.collect()

    for _ in range(4):  # webhook_max_attempts in these tests
        [attempt] = dispatcher.deliver_due()
        clock.advance(3600)
    assert attempt.status == "failed" and attempt.next_attempt_at is None
    assert dispatcher.deliver_due() == []
    [delivery] = _deliveries(database)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 4, "HTTP 500")


def test_connection_errors_are_retried(
    client: TestClient,
    merchant: Any,
    make_payment: Callable[..., Any],
    dispatcher: Dispatcher,
    database: Database,
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _endpoint(client, merchant, f"http://127.0.0.1:{port}/hooks")
    make_payment(merchant.id, reference="pi_refused")
    _succeed(client, "pi_refused")

    dispatcher.tick()

    [delivery] = _deliveries(database)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error and "ConnectError" in delivery.last_error


def test_deleting_an_endpoint_cancels_its_pending_deliveries(
    client: TestClient,
    merchant: Any,
    make_payment: Callable[..., Any],
    receiver: Receiver,
    dispatcher: Dispatcher,
    database: Database,
) -> None:
    endpoint = _endpoint(client, merchant, receiver.url)
    make_payment(merchant.id, reference="pi_gone")
    _succeed(client, "pi_gone")
    dispatcher.collect()

    client.delete(f"/v1/webhook_endpoints/{endpoint['id']}", headers=merchant.secret_headers)

    assert dispatcher.deliver_due() == []
    assert receiver.requests == []
    assert [d.status for d in _deliveries(database)] == ["canceled"]


def test_events_younger_than_the_settle_time_wait(
    client: TestClient,
    merchant: Any,
    make_payment: Callable[..., Any],
    receiver: Receiver,
    database: Database,
    settings: Settings,
) -> None:
    _endpoint(client, merchant, receiver.url)
    make_payment(merchant.id, reference="pi_young")
    _succeed(client, "pi_young")
    now = utcnow()
    early = Dispatcher(database, settings, clock=lambda: now - timedelta(seconds=5))
    assert early.collect() == 0
    later = Dispatcher(database, settings, clock=lambda: now + timedelta(seconds=5))
    assert later.collect() == 1


def test_concurrent_dispatchers_send_a_delivery_once(
    client: TestClient,
    merchant: Any,
    make_payment: Callable[..., Any],
    receiver: Receiver,
    database: Database,
    settings: Settings,
    clock: Clock,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _endpoint(client, merchant, receiver.url)
    for n in range(6):
        make_payment(merchant.id, reference=f"pi_many_{n}")
        _succeed(client, f"pi_many_{n}")
    workers = [Dispatcher(database, settings, clock=clock) for _ in range(4)]
    workers[0].collect()

    with ThreadPoolExecutor(max_workers=4) as pool:
        attempts = [a for batch in pool.map(lambda d: d.deliver_due(), workers) for a in batch]

    assert len(attempts) == 6
    assert len(receiver.requests) == 6
    assert len({r.json()["id"] for r in receiver.requests}) == 6


def test_api_workers_deliver_when_configured(
    settings: Settings,
    database: Database,
    merchant: Any,
    make_payment: Callable[..., Any],
    receiver: Receiver,
) -> None:
    import time

    from checkoutlab.api.app import create_app

    configured = settings.model_copy(
        update={"webhook_dispatch_in_api": True, "webhook_dispatch_interval_seconds": 0.05}
    )
    with TestClient(create_app(configured, database=database)) as api:
        endpoint = _endpoint(api, merchant, receiver.url)
        make_payment(merchant.id, reference="pi_in_api")
        _succeed(api, "pi_in_api")
        deadline = time.monotonic() + 10  # the collector waits out its 2 s settle first
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)

    [request] = receiver.requests
    verify_signature(request.body, request.headers["checkoutlab-signature"], endpoint["secret"])
    assert request.json()["type"] == "payment.succeeded"
