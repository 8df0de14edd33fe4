"""sales: index on recorded_at for the analytics warehouse's nightly catch-up

The warehouse (analytics.warehouse) keeps the sales history in a DuckDB file between
refreshes and each night reads only what changed: the sales of the new day and those
recorded since the last sync whatever day they happened (offline tills, imports). Without
this index the second query scans every sale.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-24 13:15:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.create_index('ix_sales_recorded_at', ['recorded_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_index('ix_sales_recorded_at')
