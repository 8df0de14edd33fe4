"""dashboard aggregates and next-best products, precomputed by the nightly refresh

``dashboard_groups``: the snapshot's scored members grouped by home store, R and FM score,
RFM segment and lifecycle stage, with their sums (the dashboard's snapshot figures);
``dashboard_history``: the dashboard's history figures of the default period per scope;
``next_best_products``: each member's top next-best products. All three are derived data
of one snapshot day, rewritten by each refresh and pruned with the scores.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-24 04:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INT = sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite')


def upgrade() -> None:
    op.create_table('dashboard_groups',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('seq', INT, nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('r_score', sa.SmallInteger(), nullable=True),
    sa.Column('fm_score', sa.SmallInteger(), nullable=True),
    sa.Column('rfm_segment', sa.String(length=24), nullable=True),
    sa.Column('lifecycle_stage', sa.String(length=16), nullable=False),
    sa.Column('members', INT, nullable=False),
    sa.Column('revenue_365_minor', INT, nullable=False),
    sa.Column('clv_minor', INT, nullable=False),
    sa.Column('scored', INT, nullable=False),
    sa.Column('at_risk', INT, nullable=False),
    sa.Column('clv_scored_minor', INT, nullable=False),
    sa.Column('clv_at_risk_minor', INT, nullable=False),
    sa.CheckConstraint('members >= 1 AND scored >= at_risk AND at_risk >= 0', name=op.f('ck_dashboard_groups_counts')),
    sa.PrimaryKeyConstraint('as_of', 'seq', name=op.f('pk_dashboard_groups'))
    )
    op.create_table('dashboard_history',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('first_on', sa.Date(), nullable=False),
    sa.Column('figures', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('as_of', 'scope', name=op.f('pk_dashboard_history'))
    )
    op.create_table('next_best_products',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('rank', sa.SmallInteger(), nullable=False),
    sa.Column('product_id', sa.Uuid(), nullable=False),
    sa.Column('because_id', sa.Uuid(), nullable=True),
    sa.Column('score', sa.Float(), nullable=False),
    sa.CheckConstraint('rank >= 1', name=op.f('ck_next_best_products_rank')),
    sa.PrimaryKeyConstraint('as_of', 'member_id', 'rank', name=op.f('pk_next_best_products'))
    )


def downgrade() -> None:
    op.drop_table('next_best_products')
    op.drop_table('dashboard_history')
    op.drop_table('dashboard_groups')
