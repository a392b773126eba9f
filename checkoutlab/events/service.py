"""Writing and reading the append-only event log.

Writers only insert. Readers page by ``id > cursor`` so a learner that restarts neither
loses nor double-counts events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkoutlab.db import utcnow
from checkoutlab.events.models import Event
from checkoutlab.observability.request_id import current_request_id
from checkoutlab.payments.cards import redact_card_numbers

CLIENT_TYPES = frozenset({"exposure", "interaction", "abandon"})
SERVER_TYPES = frozenset(
    {
        "profile_served",
        "elements_rendered",
        "payment_succeeded",
        "payment_failed",
        "payment_requires_action",
    }
)


def server_event_row(
    *,
    merchant_id: str,
    type: str,
    session_id: str | None,
    decision_id: str | None = None,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values of a server event (see :func:`add_server_event`).

    The current request id is stamped here, once for every server event (profile served,
    payment results), so the learner and webhooks can log the checkout they belong to.
    """
    assert type in SERVER_TYPES, type
    properties = dict(properties or {})
    request_id = current_request_id()
    if request_id is not None:
        properties.setdefault("request_id", request_id)
    return {
        "merchant_id": merchant_id,
        "type": type,
        "session_id": session_id,
        "decision_id": decision_id,
        "occurred_at": utcnow(),
        "source": "server",
        "properties": properties,
    }


def add_server_event(
    *,
    db: Session,
    merchant_id: str,
    type: str,
    session_id: str | None,
    decision_id: str | None = None,
    properties: dict[str, Any] | None = None,
) -> Event:
    """Stage a server event in the caller's transaction: it commits with what it records."""
    event = Event(
        **server_event_row(
            merchant_id=merchant_id,
            type=type,
            session_id=session_id,
            decision_id=decision_id,
            properties=properties,
        )
    )
    db.add(event)
    return event


_INSERT = Event.__table__.insert()


def insert_server_event(*, db: Session, row: dict[str, Any]) -> None:
    """Insert a :func:`server_event_row` now, in the caller's transaction, with one Core
    statement (no ORM object: the hot path's writers do not read it back)."""
    db.connection().execute(_INSERT, row)


def add_client_events(*, db: Session, merchant_id: str, events: Sequence[dict[str, Any]]) -> int:
    """Insert a validated batch in one transaction; durable when this returns."""
    now = utcnow()
    rows = [
        {
            "merchant_id": merchant_id,
            "type": e["type"],
            "session_id": e.get("session_id"),
            "decision_id": e.get("decision_id"),
            "occurred_at": e.get("occurred_at") or now,
            "received_at": now,
            "source": "client",
            "properties": redact_card_numbers(e.get("properties") or {}),
        }
        for e in events
    ]
    if rows:
        db.execute(Event.__table__.insert(), rows)
    db.commit()
    return len(rows)


def read_since(
    *,
    db: Session,
    merchant_id: str | None = None,
    cursor: int = 0,
    limit: int = 1000,
    types: Sequence[str] | None = None,
) -> list[Event]:
    query = select(Event).where(Event.id > cursor)
    if merchant_id is not None:
        query = query.where(Event.merchant_id == merchant_id)
    if types:
        query = query.where(Event.type.in_(list(types)))
    return list(db.scalars(query.order_by(Event.id).limit(limit)))
