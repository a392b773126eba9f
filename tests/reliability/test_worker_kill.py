"""SIGKILL an API worker under load: no acknowledged event is lost, no payment is duplicated.

Two uvicorn worker processes share one database (PostgreSQL when
``CHECKOUTLAB_TEST_DATABASE_URL`` is set, as in production and CI, else SQLite; one backend
keeps the run short). Threads post event batches (each event carries a unique marker) and
drive checkouts to a confirm with an Idempotency-Key, while the test SIGKILLs one worker at
random, then (once uvicorn's master has replaced it) one that is inside a gateway charge:
the gateway has charged, the platform has not recorded it yet (``_instrumented_app``).
Clients behave like the widget: a failed request (connection reset, 5xx, "still in
progress" 409) is retried with the same body and key; after a few seconds of that the
shopper presses "try again", which is a new attempt with a new key.

Afterwards, from the database and the gateway's own record of charges:
- every event whose batch was answered 2xx is stored;
- no session has more than one succeeded payment, and the gateway charged no session under
  two different attempts (a charge the platform lost to the kill, then charged again);
- every charge the gateway made is a stored payment (succeeded, or processing while in
  doubt), and every confirm answered 200 "succeeded" is the session's stored payment.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from checkoutlab.db import Database
from checkoutlab.events.models import Event
from checkoutlab.payments.models import Payment

from .conftest import (
    BACKENDS,
    Server,
    confirm_body,
    create_merchant,
    migrated_database,
    new_checkout,
    server_env,
)

LOAD_AFTER_KILLS = 1.5  # seconds of load after the second kill
KILL_RANDOM_AT = 1.5  # seconds into the load: whichever worker, whatever it is doing
KILL_MID_CHARGE_AFTER = 3.0  # then a worker the gateway has charged for, before it records
SAME_KEY_SECONDS = 3.0  # how long a client retries one attempt before a new one
RETRYABLE_409 = {"idempotency_request_in_progress", "idempotency_retry"}


def _retryable(response: httpx.Response) -> bool:
    if response.status_code >= 500:
        return True
    if response.status_code == 409:
        try:
            return response.json()["error"]["code"] in RETRYABLE_409
        except (ValueError, KeyError, TypeError):
            return False
    return False


@dataclass
class Results:
    acked_markers: set[str] = field(default_factory=set)
    # session id -> [(idempotency key, status code, body)] final answers per attempt
    confirms: dict[str, list[tuple[str, int, Any]]] = field(default_factory=dict)
    abandoned_keys: list[tuple[str, str]] = field(default_factory=list)  # (session, key)
    transport_errors: int = 0
    server_errors: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _events_loop(base: str, merchant, stop: threading.Event, results: Results, n: int) -> None:
    with httpx.Client(base_url=base, timeout=10, headers=merchant.public_headers) as client:
        batch_no = 0
        while not stop.is_set():
            batch_no += 1
            markers = [f"e{n}-{batch_no}-{i}" for i in range(20)]
            body = {
                "events": [{"type": "interaction", "properties": {"marker": m}} for m in markers]
            }
            for _ in range(200):
                try:
                    response = client.post("/v1/events", json=body)
                except httpx.TransportError:
                    with results.lock:
                        results.transport_errors += 1
                    time.sleep(0.02)
                    continue
                if response.status_code == 202:
                    with results.lock:
                        results.acked_markers.update(markers)
                    break
                if response.status_code >= 500:
                    with results.lock:
                        results.server_errors += 1
                    time.sleep(0.02)
                    continue
                results.errors.append(f"events: {response.status_code} {response.text}")
                break


def _retry(call, results: Results, seconds: float) -> httpx.Response | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            response = call()
        except httpx.TransportError:
            with results.lock:
                results.transport_errors += 1
            time.sleep(0.05)
            continue
        if not _retryable(response):
            return response
        with results.lock:
            results.server_errors += response.status_code >= 500
        time.sleep(0.05 + random.random() * 0.1)
    return None


def _checkout_loop(base: str, merchant, stop: threading.Event, results: Results) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stop.is_set():
            try:
                checkout = new_checkout(client, merchant)
            except (httpx.TransportError, AssertionError):
                time.sleep(0.05)  # a killed worker: this shopper starts over
                continue
            session_id = checkout["session"]["id"]
            body = confirm_body(checkout)
            answers: list[tuple[str, int, Any]] = []
            for _attempt in range(5):  # "try again" presses
                key = f"attempt-{uuid.uuid4()}"
                url = f"/v1/checkout_sessions/{session_id}/confirm"
                response = _retry(
                    lambda url=url, key=key: client.post(
                        url,
                        json=body,
                        headers=merchant.public_headers | {"Idempotency-Key": key},
                    ),
                    results,
                    SAME_KEY_SECONDS,
                )
                if response is None:
                    with results.lock:
                        results.abandoned_keys.append((session_id, key))
                    continue
                answers.append((key, response.status_code, response.json()))
                break
            with results.lock:
                results.confirms[session_id] = answers


@dataclass
class KillRun:
    merchant: Any
    results: Results
    killed: list[int]
    killed_mid_charge: bool
    stored_markers: set[str]
    payments: list[Payment]
    charges: list[dict[str, Any]]
    timings: tuple[float, float] = (0.0, 0.0)


def _kill_mid_charge(inflight: Path, exclude: list[int], timeout: float = 8.0) -> int | None:
    """SIGKILL a worker that the gateway has charged for and that has not recorded it yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for marker in inflight.iterdir():
            pid = int(marker.name)
            if pid not in exclude:
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.002)
    return None


@pytest.fixture(scope="module", params=BACKENDS[-1:])  # PostgreSQL when configured
def kill_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> KillRun:
    """Load two workers, SIGKILL one at random, then one in the middle of a gateway charge."""
    tmp = tmp_path_factory.mktemp(f"kill-{request.param}")
    with migrated_database(request.param, tmp) as db_url:
        merchant = create_merchant(db_url)
        charges_log, inflight = tmp / "charges.jsonl", tmp / "inflight"
        inflight.mkdir()
        # a short confirm budget: a retry waits at most budget + 2 s for a claimed key
        env = server_env(db_url, confirm_budget_seconds="2") | {
            "CL_TEST_GATEWAY_LOG": str(charges_log),
            "CL_TEST_GATEWAY_LATENCY": "0.03",
            "CL_TEST_GATEWAY_INFLIGHT": str(inflight),
        }
        server = Server(env=env, cwd=tmp, workers=2, factory="_instrumented_app:create_app")
        try:
            t0 = time.monotonic()
            server.start()
            t1 = time.monotonic()
            run = _load_and_kill(server, merchant, inflight)
            run.timings = (round(t1 - t0, 1), round(time.monotonic() - t1, 1))
            # The master replaced the killed workers and the server still answers.
            assert len(server.worker_pids()) == 2, server.log()
            assert not set(server.worker_pids()) & set(run.killed)
            assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
        finally:
            server.stop()
        database = Database(db_url)
        try:
            with database.session() as db:
                run.stored_markers = {
                    props.get("marker")
                    for props in db.scalars(
                        select(Event.properties).where(
                            Event.merchant_id == merchant.id, Event.source == "client"
                        )
                    )
                }
                run.payments = list(
                    db.scalars(select(Payment).where(Payment.merchant_id == merchant.id))
                )
        finally:
            database.dispose()
        if charges_log.exists():
            run.charges = [json.loads(line) for line in charges_log.read_text().splitlines()]
    print(  # with -s: what the kills did
        f"[{request.param}] acked events {len(run.results.acked_markers)}, "
        f"checkouts {len(run.results.confirms)}, transport errors "
        f"{run.results.transport_errors}, 5xx {run.results.server_errors}, abandoned attempts "
        f"{len(run.results.abandoned_keys)}, killed {run.killed} "
        f"(mid-charge: {run.killed_mid_charge}); start, load+join seconds {run.timings}"
    )
    return run


def _load_and_kill(server: Server, merchant: Any, inflight: Path) -> KillRun:
    results = Results()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_events_loop, args=(server.base_url, merchant, stop, results, i))
        for i in range(2)
    ] + [
        threading.Thread(target=_checkout_loop, args=(server.base_url, merchant, stop, results))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    killed: list[int] = []
    mid_charge = False
    started = time.monotonic()
    try:
        time.sleep(KILL_RANDOM_AT)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        time.sleep(max(0.0, started + KILL_MID_CHARGE_AFTER - time.monotonic()))
        victim = _kill_mid_charge(inflight, exclude=killed)
        if victim is not None:
            killed.append(victim)
            mid_charge = True
        time.sleep(LOAD_AFTER_KILLS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "load threads did not finish"
    return KillRun(merchant, results, killed, mid_charge, set(), [], [])


def test_sigkill_loses_no_acknowledged_event(kill_run: KillRun) -> None:
    results = kill_run.results
    assert not results.errors, results.errors[:5]
    # the kills must have hit traffic, or this test proved nothing
    assert results.transport_errors + results.server_errors > 0, "the kills hit no request"
    assert len(results.acked_markers) >= 200
    lost = results.acked_markers - kill_run.stored_markers
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:5]}"


def test_sigkill_duplicates_no_payment(kill_run: KillRun) -> None:
    results = kill_run.results
    assert kill_run.killed_mid_charge, "no worker was caught inside a gateway charge"
    assert len(results.confirms) >= 10

    succeeded: dict[str, list[Payment]] = defaultdict(list)
    for payment in kill_run.payments:
        if payment.status == "succeeded":
            succeeded[payment.session_id].append(payment)
    assert all(len(p) == 1 for p in succeeded.values())

    charged_keys: dict[str, set[str]] = defaultdict(set)
    for charge in kill_run.charges:
        if charge["status"] == "succeeded":
            charged_keys[charge["session"]].add(charge["key"])
    duplicated = {s: keys for s, keys in charged_keys.items() if len(keys) > 1}
    assert not duplicated, (
        f"{len(duplicated)} session(s) charged at the gateway under two attempts "
        f"(a charge lost by the kill was charged again): {duplicated}"
    )
    # Every charge the gateway made is a stored payment (not lost with the kill): settled as
    # succeeded, or kept as an in-doubt "processing" payment with the charge's gateway key.
    stored_keys = {
        (p.session_id, (p.verification or {}).get("gateway_idempotency_key"))
        for p in kill_run.payments
        if p.status in ("succeeded", "processing")
    }
    unrecorded = {
        (session, key)
        for session, keys in charged_keys.items()
        for key in keys
        if (session, key) not in stored_keys
    }
    assert not unrecorded, (
        f"the gateway charged {sorted(unrecorded)} but no payment is stored; abandoned "
        f"attempts (no answer until the client gave up): {results.abandoned_keys}"
    )

    for session_id, answers in results.confirms.items():
        for _key, status, body in answers:
            if status == 200 and body.get("status") == "succeeded":
                assert [p.id for p in succeeded[session_id]] == [body["id"]], session_id
            elif status == 400 and body["error"]["code"] == "session_already_succeeded":
                # a later attempt after a lost answer: the session was paid by an earlier one
                assert len(succeeded[session_id]) == 1, session_id
            elif status == 400 and body["error"]["code"] == "payment_in_progress":
                # an earlier attempt's charge is in doubt and being reconciled: not paid twice
                assert len(succeeded.get(session_id, [])) <= 1, session_id
            else:
                raise AssertionError(f"unexpected confirm answer {status}: {body}")
