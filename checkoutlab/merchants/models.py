from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, utcnow


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
