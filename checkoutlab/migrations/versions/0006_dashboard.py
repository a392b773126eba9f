"""dashboard users and sessions

Revision ID: 0006_dashboard
Revises: 0005
Create Date: 2026-11-26 17:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import checkoutlab.db

revision: str = "0006_dashboard"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", checkoutlab.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", checkoutlab.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("merchant_id", "email"),
    )
    with op.batch_alter_table("dashboard_users", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dashboard_users_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", checkoutlab.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", checkoutlab.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
        ),
        sa.ForeignKeyConstraint(["user_id"], ["dashboard_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dashboard_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dashboard_sessions_user_id"), ["user_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dashboard_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dashboard_sessions_user_id"))

    op.drop_table("dashboard_sessions")
    with op.batch_alter_table("dashboard_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dashboard_users_merchant_id"))

    op.drop_table("dashboard_users")
