"""Idempotency-Key handling backed by a unique (merchant, key) row.

The row is claimed before any work in its own transaction, so two concurrent requests with
the same key cannot both charge: the loser sees the claim and waits (bounded) for the
first one's answer, which it then returns as its own. The request fingerprint is an HMAC (keyed
with the server secret) of the canonical body: it can tell bodies apart without storing a
recoverable card number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkoutlab.errors import Conflict
from checkoutlab.payments.models import IdempotencyRecord


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(v) for v in value]
    return value


def fingerprint(payload: Any, *, secret: str) -> str:
    canonical = json.dumps(_reveal(payload), sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def claim(
    *, db: Session, merchant_id: str, key: str, request_hash: str, wait_seconds: float = 0.0
) -> int | StoredResponse:
    """Claim ``key`` for this request (returns the record id) or return the stored answer.

    A request that finds the key claimed but unanswered waits up to ``wait_seconds`` for the
    answer (a double click, a retry after a client timeout), polling the database row, so it
    works across workers and machines; after that it is 409 as before.
    """
    deadline = time.monotonic() + wait_seconds
    delay = 0.02
    answer: StoredResponse | bool = False  # False: no record (first try, or released)
    while True:
        if answer is False:
            record = IdempotencyRecord(merchant_id=merchant_id, key=key, request_hash=request_hash)
            db.add(record)
            try:
                db.commit()
                return record.id
            except IntegrityError:
                db.rollback()
        answer = _stored(db, merchant_id=merchant_id, key=key, request_hash=request_hash)
        if isinstance(answer, StoredResponse):
            return answer
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Conflict(
                "A request with this Idempotency-Key is still in progress; retry shortly.",
                code="idempotency_request_in_progress",
            )
        db.rollback()  # end the read transaction: the next poll must see new commits
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 0.25)


def _stored(db: Session, *, merchant_id: str, key: str, request_hash: str) -> StoredResponse | bool:
    """The stored answer for ``key``; True while it is in progress, False when released."""
    existing = db.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.merchant_id == merchant_id, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )
    if existing is None:  # the claimant released it (crashed): the next loop claims it
        return False
    if not hmac.compare_digest(existing.request_hash, request_hash):
        raise Conflict(
            "This Idempotency-Key was already used with a different request body. "
            "Use a new key for a new request.",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    if existing.status_code is None or existing.response is None:
        return True
    return StoredResponse(existing.status_code, existing.response)


def complete(*, db: Session, record_id: int, status_code: int, body: dict[str, Any]) -> None:
    record = db.get(IdempotencyRecord, record_id)
    assert record is not None
    record.status_code = status_code
    record.response = body
    db.commit()


def release(*, db: Session, record_id: int) -> None:
    """Forget a claim whose request crashed, so that a retry can run instead of 409 forever."""
    db.rollback()
    db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
    db.commit()
