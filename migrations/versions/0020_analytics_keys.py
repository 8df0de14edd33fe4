"""portraits: per (snapshot, home store, portrait) sums for store-scoped summaries

A manager's dashboard and the store filter summarised portraits by grouping a million
profiles joined to their scores at request time (1.2 s CPU at 1M members). The refresh
now writes these sums once; a scoped summary adds up a few rows.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-24 06:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite')


def upgrade() -> None:
    op.create_table('portrait_store_figures',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('home_store_id', sa.Uuid(), nullable=True),
    sa.Column('portrait_code', sa.String(length=8), nullable=True),
    sa.Column('members', BIG, nullable=False),
    sa.Column('net_365_minor', BIG, nullable=False),
    sa.Column('active_before', BIG, nullable=False),
    sa.Column('kept', BIG, nullable=False),
    sa.Column('p_alive_sum', sa.Float(), nullable=False),
    sa.Column('p_alive_count', BIG, nullable=False),
    sa.Column('clv_sum_minor', BIG, nullable=False),
    sa.Column('clv_count', BIG, nullable=False),
    sa.CheckConstraint('members >= 0', name=op.f('ck_portrait_store_figures_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portrait_store_figures'))
    )
    with op.batch_alter_table('portrait_store_figures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portrait_store_figures_as_of'), ['as_of'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('portrait_store_figures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portrait_store_figures_as_of'))
    op.drop_table('portrait_store_figures')
