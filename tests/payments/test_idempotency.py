"""Idempotency-Key claims: a concurrent request waits for the first one's answer (bounded)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from checkoutlab.errors import Conflict
from checkoutlab.payments import idempotency


def test_waiter_gets_the_first_answer_once_it_is_stored(database: Any, merchant: Any) -> None:
    with database.session() as db:
        first = idempotency.claim(db=db, merchant_id=merchant.id, key="k", request_hash="h")
    assert isinstance(first, int)

    def finish() -> None:
        time.sleep(0.3)
        with database.session() as db:
            idempotency.complete(db=db, record_id=first, status_code=200, body={"id": "pay_1"})

    thread = threading.Thread(target=finish)
    thread.start()
    started = time.monotonic()
    with database.session() as db:
        answer = idempotency.claim(
            db=db, merchant_id=merchant.id, key="k", request_hash="h", wait_seconds=5
        )
    thread.join()
    assert answer == idempotency.StoredResponse(200, {"id": "pay_1"})
    assert 0.25 < time.monotonic() - started < 3


def test_waiting_is_bounded_then_409(database: Any, merchant: Any) -> None:
    with database.session() as db:
        idempotency.claim(db=db, merchant_id=merchant.id, key="k", request_hash="h")
    started = time.monotonic()
    with database.session() as db, pytest.raises(Conflict) as info:
        idempotency.claim(
            db=db, merchant_id=merchant.id, key="k", request_hash="h", wait_seconds=0.4
        )
    assert info.value.code == "idempotency_request_in_progress"
    assert 0.4 <= time.monotonic() - started < 2


def test_other_body_is_refused_without_waiting(database: Any, merchant: Any) -> None:
    with database.session() as db:
        idempotency.claim(db=db, merchant_id=merchant.id, key="k", request_hash="h")
    started = time.monotonic()
    with database.session() as db, pytest.raises(Conflict) as info:
        idempotency.claim(
            db=db, merchant_id=merchant.id, key="k", request_hash="other", wait_seconds=5
        )
    assert info.value.code == "idempotency_key_reused"
    assert time.monotonic() - started < 1


def test_a_released_claim_is_taken_over_by_the_waiter(database: Any, merchant: Any) -> None:
    with database.session() as db:
        first = idempotency.claim(db=db, merchant_id=merchant.id, key="k", request_hash="h")

    def crash() -> None:
        time.sleep(0.2)
        with database.session() as db:
            idempotency.release(db=db, record_id=first)

    thread = threading.Thread(target=crash)
    thread.start()
    with database.session() as db:
        second = idempotency.claim(
            db=db, merchant_id=merchant.id, key="k", request_hash="h", wait_seconds=5
        )
    thread.join()
    assert isinstance(second, int)  # the waiter now owns the key: a third request waits on it
    with database.session() as db, pytest.raises(Conflict, match="in progress"):
        idempotency.claim(db=db, merchant_id=merchant.id, key="k", request_hash="h")
