"""Request-scoped dependencies shared by the domain routers.

They live outside ``api/`` because domain routers use them and nothing may import ``api``.
Aliases (``SessionDep``, ``SecretMerchant``) make route signatures read like documentation.

``SecretMerchant`` accepts only ``sk_`` keys (server-to-server routes), ``PublicMerchant``
only ``pk_`` keys (browser routes). A publishable key on a secret route is 403, not 401,
so the merchant learns that the key is valid but used in the wrong place.

A secret key is the merchant's current key or a rolled-out one within its grace period; a
revoked or expired one is 401. Every request a secret key authenticates (and every attempt
with a revoked or expired one) lands in the audit log (``checkoutlab.merchants.audit``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.types import Scope

from checkoutlab.config import Settings
from checkoutlab.errors import AuthenticationError, PermissionDenied
from checkoutlab.merchants import audit
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.models import Merchant

log = logging.getLogger(__name__)


def get_db(request: Request) -> Iterator[Session]:
    """One session per request; a connection lost during cleanup is logged, not raised.

    The cleanup runs after the response has started. An error raised there (the rollback
    of a connection that died during a database outage) can no longer become a 503; it
    would only make the server drop the connection, so the client got no answer at all.
    """
    session = request.app.state.db.sessionmaker()
    try:
        yield session
    finally:
        try:
            session.close()
        except DBAPIError as exc:
            log.warning("database session cleanup failed: %s", exc.__class__.__name__)
            session.invalidate()


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError(
            "No API key provided. Send 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    return key.strip()


def client_ip(scope: Scope, *, trust_proxy: bool) -> str | None:
    """The peer address, or with a trusted proxy the last X-Forwarded-For hop it appended.

    Only the right-most entry is the proxy's own observation; entries left of it are
    whatever the client chose to send, so they never identify a client for rate limits.
    """
    if trust_proxy:
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                last = value.decode("latin-1").rsplit(",", 1)[-1].strip()
                if last:
                    return last[:64]
    client = scope.get("client")
    return client[0] if client else None


def is_https(scope: Scope, *, trust_proxy: bool) -> bool:
    """Whether the client reached us over TLS; behind a TLS-terminating proxy that is known
    only from ``X-Forwarded-Proto``, trusted with ``CHECKOUTLAB_TRUST_PROXY`` (HSTS, CORS,
    the dashboard's cookies and origin check)."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    if trust_proxy:
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-proto":
                return value.split(b",")[0].strip().lower() == b"https"
    return False


def _audit(
    request: Request, db: Session, match: merchants.SecretKeyMatch, settings: Settings
) -> None:
    ip = client_ip(request.scope, trust_proxy=settings.trust_proxy)
    slot = request.scope.get(audit.SCOPE_KEY)
    if isinstance(slot, audit.AuditSlot):  # AuditMiddleware writes it with the status
        slot.merchant_id, slot.key_id, slot.key_last4 = match.merchant.id, match.key_id, match.last4
        slot.client_ip = ip
        return
    audit.record(
        db=db,
        merchant_id=match.merchant.id,
        key_id=match.key_id,
        key_last4=match.last4,
        method=request.method,
        path=request.url.path,
        status_code=None if match.usable else 401,
        client_ip=ip,
    )


def secret_key(request: Request, db: SessionDep, settings: SettingsDep) -> merchants.SecretKeyMatch:
    """The recognised, usable secret key of the request (audited)."""
    key = _bearer(request)
    if key.startswith("pk_") and merchants.by_publishable_key(db=db, publishable_key=key):
        raise PermissionDenied(
            "This endpoint needs your secret key (sk_...); publishable keys are for the browser.",
            code="secret_key_required",
        )
    match = merchants.match_secret_key(db=db, secret_key=key) if key.startswith("sk_") else None
    if match is None:
        raise AuthenticationError("Invalid API key provided.", code="invalid_api_key")
    _audit(request, db, match, settings)
    if not match.usable:
        raise AuthenticationError(
            f"This secret key (ending in {match.last4}) was rolled and has expired or been "
            "revoked. Use your current secret key.",
            code="api_key_expired",
        )
    request.state.secret_key = match
    return match


SecretKey = Annotated[merchants.SecretKeyMatch, Depends(secret_key)]


def secret_merchant(key: SecretKey) -> Merchant:
    return key.merchant


def public_merchant(request: Request, db: SessionDep) -> Merchant:
    key = _bearer(request)
    if key.startswith("sk_"):
        # Refused whether or not it is valid: a secret key must never travel from a browser.
        raise PermissionDenied(
            "Never send a secret key from the browser; use your publishable key (pk_...). "
            "Roll this secret key if it was exposed.",
            code="publishable_key_required",
        )
    merchant = merchants.by_publishable_key(db=db, publishable_key=key)
    if merchant is None:
        raise AuthenticationError("Invalid API key provided.", code="invalid_api_key")
    return merchant


SecretMerchant = Annotated[Merchant, Depends(secret_merchant)]
PublicMerchant = Annotated[Merchant, Depends(public_merchant)]
