"""Merchant keys and configuration.

Secret keys are shown once and stored as SHA-256: they are 192-bit random strings, so a
slow password hash adds nothing, and an indexed hash makes lookup a single query whose
comparison happens in the database rather than in timing-sensitive Python.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkoutlab.db import new_id, utcnow
from checkoutlab.errors import InvalidRequest, NotFound
from checkoutlab.merchants.models import Merchant, PreviousSecretKey
from checkoutlab.merchants.schemas import MerchantConfig


@dataclass(frozen=True)
class NewMerchant:
    merchant_id: str
    publishable_key: str
    secret_key: str


def hash_secret(secret_key: str) -> str:
    return hashlib.sha256(secret_key.encode()).hexdigest()


def secret_key_id(secret_key_hash: str) -> str:
    """A key's public id: part of its hash, so it needs no column and reveals nothing."""
    return f"key_{secret_key_hash[:16]}"


def _new_secret() -> str:
    return f"sk_test_{secrets.token_urlsafe(24)}"


def create(*, db: Session, name: str, config: MerchantConfig | None = None) -> NewMerchant:
    secret = _new_secret()
    merchant = Merchant(
        id=new_id("mer"),
        name=name,
        publishable_key=f"pk_test_{secrets.token_urlsafe(24)}",
        secret_key_hash=hash_secret(secret),
        secret_key_last4=secret[-4:],
        config=(config or MerchantConfig()).model_dump(mode="json"),
    )
    db.add(merchant)
    db.commit()
    return NewMerchant(merchant.id, merchant.publishable_key, secret)


def get(*, db: Session, merchant_id: str) -> Merchant:
    merchant = db.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound(f"No such merchant: '{merchant_id}'", param="merchant")
    return merchant


@dataclass(frozen=True)
class SecretKeyMatch:
    """Who a secret key belongs to, and whether it may still be used."""

    merchant: Merchant
    key_id: str
    last4: str
    current: bool
    usable: bool  # False: revoked, or rolled and past its grace period


def match_secret_key(*, db: Session, secret_key: str) -> SecretKeyMatch | None:
    """The merchant's current key, or a rolled-out one (usable until it expires or is revoked)."""
    digest = hash_secret(secret_key)
    merchant = db.scalar(select(Merchant).where(Merchant.secret_key_hash == digest))
    if merchant is not None:
        last4 = merchant.secret_key_last4
        return SecretKeyMatch(merchant, secret_key_id(digest), last4, current=True, usable=True)
    old = db.scalar(select(PreviousSecretKey).where(PreviousSecretKey.secret_key_hash == digest))
    if old is None:
        return None
    usable = old.revoked_at is None and old.expires_at > utcnow()
    owner = get(db=db, merchant_id=old.merchant_id)
    return SecretKeyMatch(owner, old.id, old.secret_key_last4, False, usable)


def by_secret_key(*, db: Session, secret_key: str) -> Merchant | None:
    """The merchant a usable secret key (current, or rolled and within its grace) belongs to."""
    found = match_secret_key(db=db, secret_key=secret_key)
    return found.merchant if found is not None and found.usable else None


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    last4: str
    status: str  # current | active (rolled, in grace) | expired | revoked
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


def _info(old: PreviousSecretKey, now: datetime) -> KeyInfo:
    status = (
        "revoked" if old.revoked_at is not None else "active" if old.expires_at > now else "expired"
    )
    return KeyInfo(
        old.id, old.secret_key_last4, status, old.rolled_at, old.expires_at, old.revoked_at
    )


def roll_secret_key(
    *, db: Session, merchant_id: str, grace: timedelta
) -> tuple[str, KeyInfo, KeyInfo]:
    """Issue a new secret key; the current one stays valid for ``grace`` (0: ends now).

    Returns the new secret (shown once), the new key's info and the rolled-out key's info.
    """
    merchant = get(db=db, merchant_id=merchant_id)
    now = utcnow()
    old = PreviousSecretKey(
        id=secret_key_id(merchant.secret_key_hash),
        merchant_id=merchant.id,
        secret_key_hash=merchant.secret_key_hash,
        secret_key_last4=merchant.secret_key_last4,
        rolled_at=now,
        expires_at=now + grace,
    )
    secret = _new_secret()
    merchant.secret_key_hash = hash_secret(secret)
    merchant.secret_key_last4 = secret[-4:]
    db.add(old)
    db.commit()
    new = KeyInfo(secret_key_id(merchant.secret_key_hash), merchant.secret_key_last4, "current")
    return secret, new, _info(old, now)


def revoke_secret_keys(
    *, db: Session, merchant_id: str, key_id: str | None = None
) -> list[KeyInfo]:
    """Revoke one rolled-out key (``key_id``) or, with ``key_id=None``, all of them.

    The current key cannot be revoked: roll it (with a zero grace period) instead.
    """
    merchant = get(db=db, merchant_id=merchant_id)
    now = utcnow()
    query = select(PreviousSecretKey).where(
        PreviousSecretKey.merchant_id == merchant.id, PreviousSecretKey.revoked_at.is_(None)
    )
    if key_id is not None:
        if key_id == secret_key_id(merchant.secret_key_hash):
            raise InvalidRequest(
                "This is your current secret key: roll it first (POST /v1/keys/roll), then "
                "revoke the rolled-out key.",
                code="current_key",
                param="key_id",
            )
        exists = db.scalar(
            select(PreviousSecretKey).where(
                PreviousSecretKey.merchant_id == merchant.id, PreviousSecretKey.id == key_id
            )
        )
        if exists is None:
            raise NotFound(f"No such secret key: '{key_id}'", param="key_id")
        query = query.where(PreviousSecretKey.id == key_id)
    revoked = list(db.scalars(query))
    for old in revoked:
        old.revoked_at = now
    db.commit()
    return [_info(old, now) for old in revoked]


def list_secret_keys(*, db: Session, merchant_id: str) -> list[KeyInfo]:
    """The current key first, then rolled-out keys, newest first."""
    merchant = get(db=db, merchant_id=merchant_id)
    now = utcnow()
    previous = db.scalars(
        select(PreviousSecretKey)
        .where(PreviousSecretKey.merchant_id == merchant.id)
        .order_by(PreviousSecretKey.rolled_at.desc(), PreviousSecretKey.id)
    )
    current = KeyInfo(secret_key_id(merchant.secret_key_hash), merchant.secret_key_last4, "current")
    return [current, *(_info(old, now) for old in previous)]


def by_publishable_key(*, db: Session, publishable_key: str) -> Merchant | None:
    return db.scalar(select(Merchant).where(Merchant.publishable_key == publishable_key))


def config_of(merchant: Merchant) -> MerchantConfig:
    return MerchantConfig.model_validate(merchant.config)


_CONFIG_CACHE: dict[str, tuple[dict[str, Any], MerchantConfig]] = {}
_CONFIG_CACHE_SIZE = 4096


def cached_config_of(merchant: Merchant) -> MerchantConfig:
    """``config_of`` for the hot path: the validated config is kept per merchant and reused
    while the stored JSON is equal to the one it was validated from (a dict comparison
    instead of validation, which compiles every CEL rule). A changed config is validated
    again on its first use, so there is nothing to invalidate.

    The instance is shared between requests: treat it as read-only (``model_copy`` to
    change a field), which is how the profile builder uses it.
    """
    raw = merchant.config
    hit = _CONFIG_CACHE.get(merchant.id)
    if hit is not None and hit[0] == raw:
        return hit[1]
    config = MerchantConfig.model_validate(raw)
    if len(_CONFIG_CACHE) >= _CONFIG_CACHE_SIZE:
        _CONFIG_CACHE.clear()
    _CONFIG_CACHE[merchant.id] = (copy.deepcopy(raw), config)
    return config


def set_config(*, db: Session, merchant_id: str, config: MerchantConfig) -> Merchant:
    merchant = get(db=db, merchant_id=merchant_id)
    merchant.config = config.model_dump(mode="json")
    db.commit()
    return merchant
