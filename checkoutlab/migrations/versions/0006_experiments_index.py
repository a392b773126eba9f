"""experiments index: decisions by (merchant_id, experiment_key, variant)

Every results query (``experiments.analysis``) and the bandit allocation
(``experiments.assignment.thompson_shares``) filter decisions on merchant and experiment key
and group by variant; without this index they scan all of a merchant's decisions.

Revision ID: 0006_experiments_index
Revises: 0005
Create Date: 2026-11-26 18:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_experiments_index"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_decisions_merchant_experiment_variant"


def upgrade() -> None:
    op.create_index(INDEX, "decisions", ["merchant_id", "experiment_key", "variant"], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="decisions")
