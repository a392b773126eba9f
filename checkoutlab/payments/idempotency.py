"""Idempotency-Key handling backed by a unique (merchant, key) row.

The row is claimed before any work in its own transaction, so two concurrent requests with
the same key cannot both charge: the loser sees the claim and gets 409 while the first is
running, or the stored answer once it is done. The request fingerprint is an HMAC (keyed
with the server secret) of the canonical body: it can tell bodies apart without storing a
recoverable card number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
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


def claim(*, db: Session, merchant_id: str, key: str, request_hash: str) -> int | StoredResponse:
    """Claim ``key`` for this request (returns the record id) or return the stored answer."""
    record = IdempotencyRecord(merchant_id=merchant_id, key=key, request_hash=request_hash)
    db.add(record)
    try:
        db.commit()
        return record.id
    except IntegrityError:
        db.rollback()
    existing = db.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.merchant_id == merchant_id, IdempotencyRecord.key == key
        )
    )
    if existing is None:  # claimant released it in between: let the client retry
        raise Conflict(
            "A request with this Idempotency-Key was just abandoned; retry.",
            code="idempotency_retry",
        )
    if not hmac.compare_digest(existing.request_hash, request_hash):
        raise Conflict(
            "This Idempotency-Key was already used with a different request body. "
            "Use a new key for a new request.",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    if existing.status_code is None or existing.response is None:
        raise Conflict(
            "A request with this Idempotency-Key is still in progress; retry shortly.",
            code="idempotency_request_in_progress",
        )
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
