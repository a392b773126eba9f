"""Profile tokens: HS256 JWTs (PyJWT) that bind a profile to its merchant and session.

Confirm trusts only what is inside a valid token (required steps, methods, amount), never
the browser's copy of the profile. PyJWT checks the signature in constant time and the
expiry, which is the session's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import jwt

from checkoutlab.errors import InvalidRequest

_ALGORITHM = "HS256"
_AUDIENCE = "checkoutlab:profile"


@dataclass(frozen=True)
class ProfileClaims:
    decision_id: str
    merchant_id: str
    session_id: str
    required: list[str]
    methods: list[str]
    amount: int
    currency: str


def sign(claims: ProfileClaims, *, secret: str, expires_at: datetime) -> str:
    payload = {
        "sub": claims.decision_id,
        "mid": claims.merchant_id,
        "sid": claims.session_id,
        "req": claims.required,
        "mth": claims.methods,
        "amt": claims.amount,
        "cur": claims.currency,
        "aud": _AUDIENCE,
        "exp": int(expires_at.timestamp()),
    }
    return jwt.encode(payload, secret, algorithm=_ALGORITHM)


def verify(
    token: str, *, secret: str, merchant_id: str, session_id: str | None = None
) -> ProfileClaims:
    """Decode and check the token; every failure is a 400 that says what to do."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            options={"require": ["exp", "sub", "mid", "sid"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidRequest(
            "The payment profile has expired; request a new one.",
            code="profile_token_expired",
            param="token",
        ) from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidRequest(
            "The payment profile token is invalid or was modified; request a new profile.",
            code="profile_token_invalid",
            param="token",
        ) from exc
    if payload["mid"] != merchant_id or (session_id is not None and payload["sid"] != session_id):
        raise InvalidRequest(
            "The payment profile token belongs to another checkout session.",
            code="profile_token_mismatch",
            param="token",
        )
    return ProfileClaims(
        decision_id=payload["sub"],
        merchant_id=payload["mid"],
        session_id=payload["sid"],
        required=list(payload.get("req", [])),
        methods=list(payload.get("mth", [])),
        amount=int(payload.get("amt", 0)),
        currency=str(payload.get("cur", "")),
    )
