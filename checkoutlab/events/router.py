from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from checkoutlab.deps import PublicMerchant, SessionDep
from checkoutlab.errors import InvalidRequest
from checkoutlab.events.service import add_client_events
from checkoutlab.payments.models import CheckoutSession
from checkoutlab.profile.models import Decision

router = APIRouter(tags=["events"])
MAX_CLOCK_SKEW = timedelta(days=7)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["exposure", "interaction", "abandon"]
    session_id: str | None = Field(default=None, max_length=40)
    decision_id: str | None = Field(default=None, max_length=40)
    occurred_at: AwareDatetime | None = Field(
        default=None, description="ISO 8601 with offset, e.g. 2026-01-01T12:00:00Z"
    )
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _recent(cls, value: datetime | None) -> datetime | None:
        """Browser clocks drift, but not by years; bounds also keep UTC conversion in range."""
        if value is None:
            return None
        try:
            offset = abs(value.astimezone(UTC) - datetime.now(UTC))
        except OverflowError:
            offset = timedelta.max
        if offset > MAX_CLOCK_SKEW:
            raise ValueError("must be within 7 days of the server's time")
        return value

    @field_validator("properties")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError as exc:
            raise ValueError("must be plain JSON (no NaN or Infinity)") from exc
        return value


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=500)


@router.post("/v1/events", status_code=202)
def ingest_events(batch: EventBatch, merchant: PublicMerchant, db: SessionDep) -> JSONResponse:
    """Store a batch of browser events; 202 only once they are committed."""
    session_ids = {e.session_id for e in batch.events if e.session_id}
    if session_ids:
        known = set(
            db.scalars(
                select(CheckoutSession.id).where(
                    CheckoutSession.merchant_id == merchant.id, CheckoutSession.id.in_(session_ids)
                )
            )
        )
        unknown = sorted(session_ids - known)
        if unknown:
            raise InvalidRequest(
                f"Unknown checkout session id(s): {', '.join(unknown)}", param="events.session_id"
            )
    _check_decisions(db, merchant.id, batch.events)
    for index, event in enumerate(batch.events):
        if len(str(event.properties)) > 4096:
            raise InvalidRequest(
                "Event properties must stay under 4 KB", param=f"events.{index}.properties"
            )
    count = add_client_events(
        db=db,
        merchant_id=merchant.id,
        events=[e.model_dump() for e in batch.events],
    )
    return JSONResponse({"object": "event_batch", "accepted": count}, status_code=202)


def _check_decisions(db: Session, merchant_id: str, events: list[EventIn]) -> None:
    """Decision ids must be this merchant's, and of the event's session when it names one.

    Learners join rewards to decisions by id, so a foreign or mistyped id would credit an
    outcome to someone else's decision.
    """
    decision_ids = {e.decision_id for e in events if e.decision_id}
    if not decision_ids:
        return
    rows = db.execute(
        select(Decision.id, Decision.session_id).where(
            Decision.merchant_id == merchant_id, Decision.id.in_(decision_ids)
        )
    )
    sessions_of = {decision_id: session_id for decision_id, session_id in rows}
    unknown = sorted(decision_ids - set(sessions_of))
    if unknown:
        raise InvalidRequest(
            f"Unknown payment profile id(s) in decision_id: {', '.join(unknown)}. "
            "Send the id of a payment profile served to this merchant.",
            param="events.decision_id",
        )
    for index, event in enumerate(events):
        if (
            event.decision_id
            and event.session_id
            and sessions_of[event.decision_id] != event.session_id
        ):
            raise InvalidRequest(
                f"decision_id {event.decision_id} belongs to another checkout session than "
                f"{event.session_id}.",
                param=f"events.{index}.decision_id",
            )
