"""A failing gateway under load: failover keeps confirms succeeding through the next one.

The merchant routes card payments to Stripe first, then the sandbox
(``{"gateways": ["stripe", "sandbox"]}``); the platform's Stripe adapter (the official SDK)
points at a local stand-in (``CHECKOUTLAB_STRIPE_API_BASE``) that fails in one of two ways:

- ``503``: every request answers HTTP 503 (Stripe overloaded, or a proxy in front of it
  failing);
- ``unreachable``: the port hangs at connect (its accept queue is full, so the kernel
  drops the SYNs, like a blackholed route): the call times out before anything was sent.

Under a few threads of checkouts (token ``pm_card_visa``, which both gateways accept):

- ``unreachable``: nothing ever reached Stripe, so every confirm must succeed through the
  sandbox within the time budget;
- ``503``: a 5xx may come after the provider processed the request, so the platform does
  not fail such a payment over; it reconciles it with the same idempotency key and, still
  in doubt, answers 503 ``gateway_timeout`` and keeps the payment ``processing``. That
  happens at most ``THRESHOLD`` times: then Stripe's circuit breaker opens and every later
  confirm goes straight to the sandbox and succeeds.

Either way each session has one payment (nobody is charged twice), the breaker is open at
the end, and most payments skipped Stripe instead of waiting for it.

Not covered here, by the platform's design: a gateway that *received* the request and then
hangs may have charged, so the platform reconciles with it instead of failing over; see
tests/payments/test_gateway_routing_api.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import select

from checkoutlab.db import Database
from checkoutlab.payments.models import Payment, PaymentAttempt

from .conftest import create_merchant, migrated_database, new_checkout, server_env

LOAD_SECONDS = 4.0
GATEWAY_TIMEOUT = 1.0
BUDGET = 6.0
THRESHOLD = 3  # consecutive failures that open Stripe's breaker


class _Unavailable(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps(
            {"error": {"type": "api_error", "message": "Stripe is temporarily unavailable."}}
        ).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def failing_stripe(mode: str) -> Iterator[tuple[str, list[int]]]:
    """(base URL, request counter) of a Stripe stand-in that fails in ``mode``."""
    if mode == "503":
        seen: list[int] = []

        class Handler(_Unavailable):
            def _answer(self) -> None:
                seen.append(1)
                super()._answer()

            do_GET = do_POST = _answer

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", seen
        finally:
            server.shutdown()
            server.server_close()
        return
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once the queue is full, SYNs are dropped
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}", []
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def _confirms(base: str, merchant, stop: threading.Event, answers: list, errors: list) -> None:
    with httpx.Client(base_url=base, timeout=BUDGET + 10) as client:
        while not stop.is_set():
            try:
                checkout = new_checkout(client, merchant)
                session = checkout["session"]
                started = time.monotonic()
                response = client.post(
                    f"/v1/checkout_sessions/{session['id']}/confirm",
                    json={
                        "client_secret": session["client_secret"],
                        "profile_token": checkout["profile"]["token"],
                        "payment_method": {"type": "card", "token": "pm_card_visa"},
                    },
                    headers=merchant.public_headers | {"Idempotency-Key": str(uuid.uuid4())},
                )
                answers.append(
                    (
                        session["id"],
                        response.status_code,
                        response.json(),
                        time.monotonic() - started,
                    )
                )
            except (httpx.HTTPError, AssertionError, ValueError) as exc:
                errors.append(repr(exc))


@pytest.mark.parametrize("mode", ["503", "unreachable"])
def test_failing_gateway_under_load_fails_over_to_the_next(mode, tmp_path, start_server) -> None:
    with (
        failing_stripe(mode) as (stripe_base, stripe_hits),
        migrated_database("sqlite", tmp_path) as db_url,
    ):
        merchant = create_merchant(db_url, {"gateways": ["stripe", "sandbox"]})
        env = server_env(
            db_url,
            stripe_api_key="sk_test_reliability",
            stripe_api_base=stripe_base,
            gateway_timeout_seconds=str(GATEWAY_TIMEOUT),
            confirm_budget_seconds=str(BUDGET),
            breaker_failure_threshold=str(THRESHOLD),
            breaker_reset_seconds="60",  # no half-open probe during the load
        )
        server = start_server(env)
        answers: list = []
        errors: list = []
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_confirms, args=(server.base_url, merchant, stop, answers, errors)
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(LOAD_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        health = httpx.get(
            f"{server.base_url}/v1/gateways/health", headers=merchant.secret_headers, timeout=10
        ).json()
        database = Database(db_url)
        try:
            with database.session() as db:
                payments = list(db.scalars(select(Payment)))
                attempts = list(db.scalars(select(PaymentAttempt)))
        finally:
            database.dispose()

    assert not errors, errors[:3]
    assert max(a[3] for a in answers) < BUDGET, "a confirm overran its time budget"
    succeeded = [a for a in answers if a[1] == 200 and a[2].get("status") == "succeeded"]
    in_doubt = [a for a in answers if a not in succeeded]
    if mode == "unreachable":
        # Nothing ever reached Stripe, so nothing is in doubt: every confirm fails over.
        assert not in_doubt, in_doubt[:3]
    else:
        # A 5xx may come after Stripe processed the request: until the breaker opens, such a
        # payment is reconciled (same key), not sent elsewhere, and answered 503 clearly.
        assert len(in_doubt) <= THRESHOLD, in_doubt
        for _, status, body, _ in in_doubt:
            assert status == 503 and body["error"]["code"] == "gateway_timeout", body
            assert body["error"]["message"], body
    assert len(succeeded) >= 6, answers

    in_doubt_sessions = {a[0] for a in in_doubt}
    by_session: dict[str, list[Payment]] = {}
    for payment in payments:
        by_session.setdefault(payment.session_id, []).append(payment)
    assert {a[0] for a in answers} <= set(by_session)
    for session_id, rows in by_session.items():
        assert len(rows) == 1, session_id  # one attempt, one payment: never charged twice
        if session_id in in_doubt_sessions:
            assert (rows[0].status, rows[0].gateway) == ("processing", "stripe"), session_id
        else:
            assert (rows[0].status, rows[0].gateway) == ("succeeded", "sandbox"), session_id

    stripe_attempts = [a for a in attempts if a.gateway == "stripe"]
    tried = [a for a in stripe_attempts if a.result != "skipped" and a.operation == "charge"]
    skipped = [a for a in stripe_attempts if a.result == "skipped"]
    assert tried, "Stripe was never tried: the test did not exercise failover"
    assert len(tried) <= THRESHOLD, [(a.result, a.decline_code) for a in tried]
    # the breaker opened: later payments skipped Stripe instead of waiting for it
    assert len(skipped) >= len(succeeded) - THRESHOLD, (len(skipped), len(succeeded))
    if mode == "503":
        assert stripe_hits, "the Stripe stand-in was never called"
    stripe_health = next(g for g in health["data"] if g["gateway"] == "stripe")
    assert stripe_health["state"] == "open", stripe_health
