"""analytics: dated member score snapshots, category repurchase cycles, refresh runs

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import patron.core.models

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('analytics_runs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('started_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stages', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('params', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('members', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('error', sa.String(length=2000), nullable=False),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'superseded')", name=op.f('ck_analytics_runs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analytics_runs'))
    )
    with op.batch_alter_table('analytics_runs', schema=None) as batch_op:
        batch_op.create_index('ix_analytics_runs_started_at', ['started_at'], unique=False)

    op.create_table('category_cycles',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('category_id', sa.Uuid(), nullable=False),
    sa.Column('intervals', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('own_median_days', sa.Float(), nullable=False),
    sa.Column('category_median_days', sa.Float(), nullable=False),
    sa.Column('interval_days', sa.Float(), nullable=False),
    sa.Column('last_purchase_on', sa.Date(), nullable=False),
    sa.Column('next_due_on', sa.Date(), nullable=False),
    sa.CheckConstraint('intervals >= 1', name=op.f('ck_category_cycles_intervals')),
    sa.PrimaryKeyConstraint('as_of', 'member_id', 'category_id', name=op.f('pk_category_cycles'))
    )

    op.create_table('member_scores',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('purchases', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('frequency', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('first_purchase_on', sa.Date(), nullable=True),
    sa.Column('last_purchase_on', sa.Date(), nullable=True),
    sa.Column('recency_days', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('tenure_days', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('t_x_days', sa.Float(), nullable=True),
    sa.Column('age_days', sa.Float(), nullable=True),
    sa.Column('monetary_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('total_net_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('net_90_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('net_prev_90_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('net_365_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('r_score', sa.SmallInteger(), nullable=True),
    sa.Column('f_score', sa.SmallInteger(), nullable=True),
    sa.Column('m_score', sa.SmallInteger(), nullable=True),
    sa.Column('fm_score', sa.SmallInteger(), nullable=True),
    sa.Column('rfm_segment', sa.String(length=24), nullable=True),
    sa.Column('p_alive', sa.Float(), nullable=True),
    sa.Column('expected_30', sa.Float(), nullable=True),
    sa.Column('expected_90', sa.Float(), nullable=True),
    sa.Column('expected_365', sa.Float(), nullable=True),
    sa.Column('expected_spend_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('clv_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('lifecycle_stage', sa.String(length=16), nullable=False),
    sa.Column('next_purchase_on', sa.Date(), nullable=True),
    sa.Column('satisfaction', sa.String(length=16), nullable=False),
    sa.Column('loyalty_type', sa.String(length=16), nullable=False),
    sa.Column('replenishment_categories', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('bond_financial', sa.Float(), nullable=False),
    sa.Column('bond_social', sa.Float(), nullable=False),
    sa.Column('bond_structural', sa.Float(), nullable=False),
    sa.Column('next_bond', sa.String(length=32), nullable=True),
    sa.CheckConstraint("lifecycle_stage IN ('new', 'growing', 'mature', 'declining', 'lapsed', 'lost')", name=op.f('ck_member_scores_stage')),
    sa.CheckConstraint("loyalty_type IN ('trust', 'inertia', 'latent', 'none')", name=op.f('ck_member_scores_loyalty_type')),
    sa.CheckConstraint("rfm_segment IS NULL OR rfm_segment IN ('champions', 'loyal', 'potential_loyalist', 'new', 'promising', 'needs_attention', 'about_to_sleep', 'at_risk', 'cant_lose', 'hibernating', 'lost')", name=op.f('ck_member_scores_segment')),
    sa.CheckConstraint("satisfaction IN ('satisfied', 'dissatisfied', 'unknown')", name=op.f('ck_member_scores_satisfaction')),
    sa.CheckConstraint('bond_financial BETWEEN 0 AND 1 AND bond_social BETWEEN 0 AND 1 AND bond_structural BETWEEN 0 AND 1', name=op.f('ck_member_scores_bonds')),
    sa.CheckConstraint('p_alive IS NULL OR p_alive BETWEEN 0 AND 1', name=op.f('ck_member_scores_p_alive')),
    sa.CheckConstraint('purchases >= 0', name=op.f('ck_member_scores_purchases')),
    sa.CheckConstraint('r_score IS NULL OR (r_score BETWEEN 1 AND 5 AND f_score BETWEEN 1 AND 5 AND m_score BETWEEN 1 AND 5 AND fm_score BETWEEN 1 AND 5)', name=op.f('ck_member_scores_rfm_scores')),
    sa.PrimaryKeyConstraint('as_of', 'member_id', name=op.f('pk_member_scores'))
    )


def downgrade() -> None:
    op.drop_table('member_scores')
    op.drop_table('category_cycles')
    with op.batch_alter_table('analytics_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_analytics_runs_started_at')

    op.drop_table('analytics_runs')
