"""Join the four 0006 branches developed in parallel; index payments by gateway reference

Revision ID: 0007
Revises: 0006_dashboard, 0006_experiments_index, 0006_payment_attempts, 0006_webhooks
Create Date: 2026-11-26 19:13:11.354141
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | tuple[str, ...] | None = (
    "0006_dashboard",
    "0006_experiments_index",
    "0006_payment_attempts",
    "0006_webhooks",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_payments_gateway_reference", "payments", ["gateway", "gateway_reference"])


def downgrade() -> None:
    op.drop_index("ix_payments_gateway_reference", table_name="payments")
