"""Merchant keys and configuration.

Secret keys are shown once and stored as SHA-256: they are 192-bit random strings, so a
slow password hash adds nothing, and an indexed hash makes lookup a single query whose
comparison happens in the database rather than in timing-sensitive Python.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkoutlab.db import new_id
from checkoutlab.errors import NotFound
from checkoutlab.merchants.models import Merchant
from checkoutlab.merchants.schemas import MerchantConfig


@dataclass(frozen=True)
class NewMerchant:
    merchant_id: str
    publishable_key: str
    secret_key: str


def hash_secret(secret_key: str) -> str:
    return hashlib.sha256(secret_key.encode()).hexdigest()


def create(*, db: Session, name: str, config: MerchantConfig | None = None) -> NewMerchant:
    secret = f"sk_test_{secrets.token_urlsafe(24)}"
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


def by_secret_key(*, db: Session, secret_key: str) -> Merchant | None:
    return db.scalar(select(Merchant).where(Merchant.secret_key_hash == hash_secret(secret_key)))


def by_publishable_key(*, db: Session, publishable_key: str) -> Merchant | None:
    return db.scalar(select(Merchant).where(Merchant.publishable_key == publishable_key))


def config_of(merchant: Merchant) -> MerchantConfig:
    return MerchantConfig.model_validate(merchant.config)


def set_config(*, db: Session, merchant_id: str, config: MerchantConfig) -> Merchant:
    merchant = get(db=db, merchant_id=merchant_id)
    merchant.config = config.model_dump(mode="json")
    db.commit()
    return merchant
