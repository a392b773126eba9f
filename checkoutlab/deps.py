"""Request-scoped dependencies shared by the domain routers.

They live outside ``api/`` because domain routers use them and nothing may import ``api``.
Aliases (``SessionDep``, ``SecretMerchant``) make route signatures read like documentation.

``SecretMerchant`` accepts only ``sk_`` keys (server-to-server routes), ``PublicMerchant``
only ``pk_`` keys (browser routes). A publishable key on a secret route is 403, not 401,
so the merchant learns that the key is valid but used in the wrong place.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from checkoutlab.config import Settings
from checkoutlab.errors import AuthenticationError, PermissionDenied
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.models import Merchant


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


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


def secret_merchant(request: Request, db: SessionDep) -> Merchant:
    key = _bearer(request)
    if key.startswith("pk_") and merchants.by_publishable_key(db=db, publishable_key=key):
        raise PermissionDenied(
            "This endpoint needs your secret key (sk_...); publishable keys are for the browser.",
            code="secret_key_required",
        )
    merchant = merchants.by_secret_key(db=db, secret_key=key) if key.startswith("sk_") else None
    if merchant is None:
        raise AuthenticationError("Invalid API key provided.", code="invalid_api_key")
    return merchant


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
