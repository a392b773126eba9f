from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, BigIntPK, utcnow


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    publishable_key: Mapped[str] = mapped_column(String(80), unique=True)
    # sha256 of the secret key: enough for a 192-bit random key, and indexable for lookup.
    secret_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_key_last4: Mapped[str] = mapped_column(String(4))
    config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PreviousSecretKey(Base):
    """A rolled-out secret key: valid until ``expires_at`` unless revoked earlier.

    The merchant's current key stays in ``merchants.secret_key_hash``; rolling moves it here.
    """

    __tablename__ = "previous_secret_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # key_id(hash)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    secret_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_key_last4: Mapped[str] = mapped_column(String(4))
    rolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEntry(Base):
    """One request authenticated by a secret key (append-only)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_merchant_id_id", "merchant_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    key_id: Mapped[str] = mapped_column(String(40))
    key_last4: Mapped[str] = mapped_column(String(4))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    status_code: Mapped[int | None] = mapped_column(default=None)
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
