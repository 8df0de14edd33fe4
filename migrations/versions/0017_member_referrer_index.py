"""members: index the referrer, so a member's referral tree is not a table scan

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24 02:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.create_index('ix_members_referred_by_id', ['referred_by_id'], unique=False,
                              sqlite_where=sa.text('referred_by_id IS NOT NULL'),
                              postgresql_where=sa.text('referred_by_id IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_index('ix_members_referred_by_id',
                            sqlite_where=sa.text('referred_by_id IS NOT NULL'),
                            postgresql_where=sa.text('referred_by_id IS NOT NULL'))
