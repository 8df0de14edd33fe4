"""loyalty: points transfers between members (family sharing, gifts) -- one row per
transfer, referenced by the entries on both sides

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-24 04:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.core.models

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('points_transfers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('from_account_id', sa.Uuid(), nullable=False),
    sa.Column('to_account_id', sa.Uuid(), nullable=False),
    sa.Column('points', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('occurred_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('from_account_id <> to_account_id', name=op.f('ck_points_transfers_two_accounts')),
    sa.CheckConstraint('points > 0', name=op.f('ck_points_transfers_points')),
    sa.ForeignKeyConstraint(['from_account_id'], ['points_accounts.id'], name=op.f('fk_points_transfers_from_account_id_points_accounts')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_points_transfers_store_id_stores')),
    sa.ForeignKeyConstraint(['to_account_id'], ['points_accounts.id'], name=op.f('fk_points_transfers_to_account_id_points_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_transfers'))
    )
    with op.batch_alter_table('points_transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_points_transfers_from_account_id'),
                              ['from_account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_points_transfers_to_account_id'),
                              ['to_account_id'], unique=False)

    with op.batch_alter_table('points_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transfer_id', sa.Uuid(), nullable=True))
        batch_op.create_index('ix_points_entries_transfer', ['transfer_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_points_entries_transfer_id_points_transfers'),
            'points_transfers', ['transfer_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('points_entries', schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f('fk_points_entries_transfer_id_points_transfers'), type_='foreignkey')
        batch_op.drop_index('ix_points_entries_transfer')
        batch_op.drop_column('transfer_id')

    with op.batch_alter_table('points_transfers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_points_transfers_to_account_id'))
        batch_op.drop_index(batch_op.f('ix_points_transfers_from_account_id'))
    op.drop_table('points_transfers')
