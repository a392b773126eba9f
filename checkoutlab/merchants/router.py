"""Secret-key management and the audit log (secret key; the current key for key changes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from checkoutlab.deps import SecretKey, SessionDep, SettingsDep
from checkoutlab.errors import PermissionDenied
from checkoutlab.merchants import audit
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.service import KeyInfo, SecretKeyMatch

router = APIRouter(tags=["keys and audit"])


class RollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_period_hours: float | None = Field(
        default=None,
        ge=0,
        le=24 * 30,
        description="how long the current key keeps working (default: the platform's, 24 h); "
        "0 ends it now",
    )


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_id: str | None = Field(default=None, max_length=40, description="a rolled-out key's id")
    all_previous: bool = Field(default=False, description="revoke every rolled-out key")

    @model_validator(mode="after")
    def _one(self) -> RevokeRequest:
        if (self.key_id is None) == (not self.all_previous):
            raise ValueError("send either key_id or all_previous: true")
        return self


class KeyRead(BaseModel):
    object: str = "secret_key"
    id: str
    last4: str
    status: str
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyRead:
        return cls(
            id=info.key_id,
            last4=info.last4,
            status=info.status,
            created_at=info.created_at,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
        )


class RollRead(BaseModel):
    object: str = "secret_key_roll"
    secret_key: str = Field(description="the new secret key: shown once, store it now")
    key: KeyRead
    previous: KeyRead


def _current(key: SecretKeyMatch) -> None:
    if not key.current:
        raise PermissionDenied(
            "Rolling or revoking keys needs your current secret key, not a rolled-out one.",
            code="current_key_required",
        )


@router.post("/v1/keys/roll", response_model=RollRead)
def roll_key(
    key: SecretKey, db: SessionDep, settings: SettingsDep, body: RollRequest | None = None
) -> RollRead:
    """Issue a new secret key; the one used for this call stays valid for the grace period."""
    _current(key)
    hours = settings.key_grace_hours
    if body is not None and body.grace_period_hours is not None:
        hours = body.grace_period_hours
    secret, new, previous = merchants.roll_secret_key(
        db=db, merchant_id=key.merchant.id, grace=timedelta(hours=hours)
    )
    return RollRead(secret_key=secret, key=KeyRead.of(new), previous=KeyRead.of(previous))


@router.post("/v1/keys/revoke")
def revoke_keys(body: RevokeRequest, key: SecretKey, db: SessionDep) -> dict[str, Any]:
    """Revoke a rolled-out key (key_id) or all of them (all_previous); they answer 401 after."""
    _current(key)
    revoked = merchants.revoke_secret_keys(db=db, merchant_id=key.merchant.id, key_id=body.key_id)
    return {"object": "list", "data": [KeyRead.of(k).model_dump(mode="json") for k in revoked]}


@router.get("/v1/keys")
def list_keys(key: SecretKey, db: SessionDep) -> dict[str, Any]:
    """The current secret key and the rolled-out ones, with their status (no secrets)."""
    keys = merchants.list_secret_keys(db=db, merchant_id=key.merchant.id)
    return {"object": "list", "data": [KeyRead.of(k).model_dump(mode="json") for k in keys]}


@router.get("/v1/audit_log")
def audit_log(
    key: SecretKey,
    db: SessionDep,
    limit: int = Query(default=100, ge=1, le=1000),
    before: int | None = Query(
        default=None, ge=1, le=2**63 - 1, description="an entry id, to page back"
    ),
) -> dict[str, Any]:
    """Recent secret-key requests, newest first."""
    entries = audit.recent(db=db, merchant_id=key.merchant.id, limit=limit, before=before)
    return {"object": "list", "data": [audit.as_dict(e) for e in entries]}
