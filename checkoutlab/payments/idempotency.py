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
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkoutlab.db import utcnow
from checkoutlab.errors import Conflict
from checkoutlab.payments.models import IdempotencyRecord

# created_at of a released claim: older than any live one, so the next request takes it over.
_RELEASED_AT = datetime(2000, 1, 1, tzinfo=UTC)


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
    *,
    db: Session,
    merchant_id: str,
    key: str,
    request_hash: str,
    wait_seconds: float = 0.0,
    stale_after_seconds: float | None = None,
) -> int | StoredResponse:
    """Claim ``key`` for this request (returns the record id) or return the stored answer.

    A request that finds the key claimed but unanswered waits up to ``wait_seconds`` for the
    answer (a double click, a retry after a client timeout), polling the database row, so it
    works across workers and machines; after that it is 409 as before.

    A claim that was released (see :func:`release`), or is older than
    ``stale_after_seconds`` (its request crashed, was killed or lost its commit), is taken
    over: the caller runs again under the same key. That is safe for confirm because the
    gateway key derives from this key, so the rerun reconciles whatever the first run may
    have charged instead of charging again; without the takeover the key would answer 409
    forever and the shopper's next key would charge a second time.
    """
    deadline = time.monotonic() + wait_seconds
    delay = 0.02
    answer: StoredResponse | IdempotencyRecord | bool = False  # False: no record
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
        if isinstance(answer, IdempotencyRecord):
            taken = _take_over(db, answer.id, stale_after_seconds)
            if taken is not None:
                return taken
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Conflict(
                "A request with this Idempotency-Key is still in progress; retry shortly.",
                code="idempotency_request_in_progress",
            )
        db.rollback()  # end the read transaction: the next poll must see new commits
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 0.25)


def _take_over(db: Session, record_id: int, stale_after_seconds: float | None) -> int | None:
    """Claim an unanswered record that was released or went stale; None if still live.

    One conditional UPDATE, so of several requests that find the same stale claim exactly
    one takes it over (the others see the fresh ``created_at`` and keep waiting).
    """
    threshold = _RELEASED_AT  # released claims only
    if stale_after_seconds is not None:  # and claims older than any live request
        threshold = max(_RELEASED_AT, utcnow() - timedelta(seconds=stale_after_seconds))
    taken = db.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == record_id,
            IdempotencyRecord.status_code.is_(None),
            IdempotencyRecord.created_at <= threshold,
        )
        .values(created_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return record_id if taken.rowcount == 1 else None


def _stored(
    db: Session, *, merchant_id: str, key: str, request_hash: str
) -> StoredResponse | IdempotencyRecord | bool:
    """The stored answer for ``key``; the unanswered record while it is in progress (or
    released), False when there is none."""
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
        return existing
    return StoredResponse(existing.status_code, existing.response)


def complete(*, db: Session, record_id: int, status_code: int, body: dict[str, Any]) -> None:
    record = db.get(IdempotencyRecord, record_id)
    assert record is not None
    record.status_code = status_code
    record.response = body
    db.commit()


def release(*, db: Session, record_id: int) -> None:
    """Give up a claim without storing an answer, so that a retry runs again.

    For a request that crashed, and for answers that must not be replayed forever (confirm's
    503s: the outcome is still being reconciled, or no gateway could be reached). The record
    keeps its request fingerprint, so a retry with another body is still 409; it is marked
    released by moving ``created_at`` back to a fixed past instant, which the next request
    with this key takes over at once (:func:`claim`).
    """
    db.rollback()
    db.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.status_code.is_(None))
        .values(created_at=_RELEASED_AT)
        .execution_options(synchronize_session=False)
    )
    db.commit()
