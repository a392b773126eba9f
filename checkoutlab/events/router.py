from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from checkoutlab.deps import PublicMerchant, SessionDep
from checkoutlab.errors import InvalidRequest
from checkoutlab.events.service import add_client_events
from checkoutlab.payments.models import CheckoutSession

router = APIRouter(tags=["events"])


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["exposure", "interaction", "abandon"]
    session_id: str | None = Field(default=None, max_length=40)
    decision_id: str | None = Field(default=None, max_length=40)
    occurred_at: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


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
