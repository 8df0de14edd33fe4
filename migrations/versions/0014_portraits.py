"""portraits - inferred member profiles, tags and behaviour clusters

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24 01:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('member_profiles',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('home_store_id', sa.Uuid(), nullable=True),
    sa.Column('sales', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('sales_365', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('spend_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('avg_basket_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('categories', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('stores', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('top_category_id', sa.Uuid(), nullable=True),
    sa.Column('top_category_share', sa.Float(), nullable=True),
    sa.Column('favourite_categories', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('top_product_id', sa.Uuid(), nullable=True),
    sa.Column('favourite_products', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('preferred_store_id', sa.Uuid(), nullable=True),
    sa.Column('preferred_store_share', sa.Float(), nullable=True),
    sa.Column('preferred_weekday', sa.SmallInteger(), nullable=True),
    sa.Column('preferred_hour', sa.SmallInteger(), nullable=True),
    sa.Column('weekend_share', sa.Float(), nullable=True),
    sa.Column('evening_share', sa.Float(), nullable=True),
    sa.Column('promo_share', sa.Float(), nullable=True),
    sa.Column('coupon_share', sa.Float(), nullable=True),
    sa.Column('discount_rate', sa.Float(), nullable=True),
    sa.Column('sms_messages', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('sms_acted', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('email_messages', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('email_acted', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('response_rate', sa.Float(), nullable=True),
    sa.Column('best_channel', sa.String(length=8), nullable=True),
    sa.Column('best_template', sa.String(length=64), nullable=True),
    sa.Column('family_signals', sa.String(length=200), nullable=False),
    sa.Column('family_share', sa.Float(), nullable=True),
    sa.Column('baby_first_on', sa.Date(), nullable=True),
    sa.Column('baby_days', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('tag_bits', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('portrait_code', sa.String(length=8), nullable=True),
    sa.CheckConstraint("best_channel IS NULL OR best_channel IN ('sms', 'email')", name=op.f('ck_member_profiles_best_channel')),
    sa.CheckConstraint('preferred_hour IS NULL OR preferred_hour BETWEEN 0 AND 23', name=op.f('ck_member_profiles_hour')),
    sa.CheckConstraint('preferred_weekday IS NULL OR preferred_weekday BETWEEN 0 AND 6', name=op.f('ck_member_profiles_weekday')),
    sa.CheckConstraint('sales >= 0 AND sales_365 >= 0 AND categories >= 0 AND stores >= 0', name=op.f('ck_member_profiles_counts')),
    sa.CheckConstraint('tag_bits >= 0', name=op.f('ck_member_profiles_tag_bits')),
    sa.PrimaryKeyConstraint('as_of', 'member_id', name=op.f('pk_member_profiles'))
    )
    op.create_table('portraits',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('code', sa.String(length=8), nullable=False),
    sa.Column('name_en', sa.String(length=200), nullable=False),
    sa.Column('name_zh', sa.String(length=200), nullable=False),
    sa.Column('description_en', sa.String(length=1000), nullable=False),
    sa.Column('description_zh', sa.String(length=1000), nullable=False),
    sa.Column('centroid', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('traits', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('top_category_id', sa.Uuid(), nullable=True),
    sa.Column('members', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('member_share', sa.Float(), nullable=False),
    sa.Column('revenue_365_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('revenue_share', sa.Float(), nullable=False),
    sa.Column('retention', sa.Float(), nullable=True),
    sa.Column('mean_p_alive', sa.Float(), nullable=True),
    sa.Column('clv_total_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('clv_mean_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('median_basket_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('median_interval_days', sa.Float(), nullable=True),
    sa.Column('moved', sa.Float(), nullable=True),
    sa.CheckConstraint('members >= 0', name=op.f('ck_portraits_members')),
    sa.CheckConstraint('retention IS NULL OR retention BETWEEN 0 AND 1', name=op.f('ck_portraits_retention')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portraits')),
    sa.UniqueConstraint('as_of', 'code', name=op.f('uq_portraits_as_of_code'))
    )


def downgrade() -> None:
    op.drop_table('portraits')
    op.drop_table('member_profiles')
