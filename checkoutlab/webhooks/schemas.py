"""Pydantic shapes at the edge of the webhooks domain (merchant endpoints, deliveries)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

EventType = Literal[
    "payment.succeeded",
    "payment.failed",
    "dispute.created",
    "refund.succeeded",
    "refund.failed",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="where events are POSTed; https, and a public address outside development",
    )
    description: str | None = Field(default=None, max_length=200)
    enabled_events: list[EventType | Literal["*"]] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description='event types to receive; ["*"] for all, including types added later',
    )

    @field_validator("enabled_events")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class EndpointRead(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    description: str | None
    enabled_events: list[str]
    status: str
    secret_last4: str = Field(description="the end of the signing secret, to tell secrets apart")
    created_at: datetime


class EndpointCreated(EndpointRead):
    secret: str = Field(
        description="signing secret (whsec_...) for verify_signature; shown only in this answer"
    )


class EndpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EndpointRead]


class EndpointDeleted(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    deleted: bool = True


class DeliveryRead(BaseModel):
    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    event_id: str
    event_type: str
    endpoint_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeliveryRead]
