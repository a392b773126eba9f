"""Dashboard tables: a merchant's team members and their server-side login sessions.

Sessions live in the database (not only in a signed cookie) so that logging out, or removing a
member, ends a session on every API worker at once. The cookie carries a random token; the
table keeps only its SHA-256, so a leaked database backup cannot be replayed as a login.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from checkoutlab.db import Base, utcnow


class DashboardUser(Base):
    __tablename__ = "dashboard_users"
    __table_args__ = (UniqueConstraint("merchant_id", "email"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, self-describing
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class DashboardSession(Base):
    __tablename__ = "dashboard_sessions"

    # sha256 hex of the cookie's token
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("dashboard_users.id", ondelete="CASCADE"), index=True
    )
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
