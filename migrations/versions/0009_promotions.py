"""promotions: definitions, usage counters, sale_promotions, gift lines

Promotions at the till: ``promotions`` (the definitions), ``promotion_usage`` and
``promotion_member_usage`` (counters of limited promotions, each with its limit copied for
the CHECKs), ``sale_promotions`` (what each promotion gave a sale, with the definition it
was priced with), the category and gift promotion of each sale line, and the cashback a
refund took back (or could not).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 22:41:45
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import patron.core.models

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('promotions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('priority', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('exclusive', sa.Boolean(), nullable=False),
    sa.Column('stackable_with_coupons', sa.Boolean(), nullable=False),
    sa.Column('config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('schedule', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('audience', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('per_member_limit', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('total_limit', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('budget_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('version', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('member_price','nth_item','volume','buy_x_get_y','bundle','category_discount','spend_discount','spend_gift','cashback')", name=op.f('ck_promotions_kind')),
    sa.CheckConstraint('(per_member_limit IS NULL OR per_member_limit > 0) AND (total_limit IS NULL OR total_limit > 0) AND (budget_minor IS NULL OR budget_minor > 0)', name=op.f('ck_promotions_limits')),
    sa.CheckConstraint('priority >= 0', name=op.f('ck_promotions_priority')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_promotions_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promotions'))
    )
    with op.batch_alter_table('promotions', schema=None) as batch_op:
        batch_op.create_index('ix_promotions_active', ['active'], unique=False)

    op.create_table('promotion_usage',
    sa.Column('promotion_id', sa.Uuid(), nullable=False),
    sa.Column('uses', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('budget_spent_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('total_limit', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('budget_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.CheckConstraint('budget_minor IS NULL OR budget_spent_minor <= budget_minor', name=op.f('ck_promotion_usage_within_budget')),
    sa.CheckConstraint('total_limit IS NULL OR uses <= total_limit', name=op.f('ck_promotion_usage_within_total')),
    sa.CheckConstraint('uses >= 0 AND budget_spent_minor >= 0', name=op.f('ck_promotion_usage_non_negative')),
    sa.ForeignKeyConstraint(['promotion_id'], ['promotions.id'], name=op.f('fk_promotion_usage_promotion_id_promotions')),
    sa.PrimaryKeyConstraint('promotion_id', name=op.f('pk_promotion_usage'))
    )
    op.create_table('promotion_member_usage',
    sa.Column('promotion_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('uses', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('per_member_limit', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.CheckConstraint('per_member_limit IS NULL OR uses <= per_member_limit', name=op.f('ck_promotion_member_usage_within_limit')),
    sa.CheckConstraint('uses >= 0', name=op.f('ck_promotion_member_usage_non_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_promotion_member_usage_member_id_members')),
    sa.ForeignKeyConstraint(['promotion_id'], ['promotions.id'], name=op.f('fk_promotion_member_usage_promotion_id_promotions')),
    sa.PrimaryKeyConstraint('promotion_id', 'member_id', name=op.f('pk_promotion_member_usage'))
    )
    with op.batch_alter_table('promotion_member_usage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promotion_member_usage_member_id'), ['member_id'], unique=False)

    op.create_table('sale_promotions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('sale_id', sa.Uuid(), nullable=False),
    sa.Column('promotion_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('promotion_version', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('tier_code', sa.String(length=32), nullable=True),
    sa.Column('applications', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('saving_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('gift_value_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('cashback_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('value_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('allocation', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('discount_returned_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('cashback_reclaimed_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('cashback_unrecovered_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.CheckConstraint('cashback_reclaimed_minor >= 0 AND cashback_unrecovered_minor >= 0 AND cashback_reclaimed_minor + cashback_unrecovered_minor <= cashback_minor', name=op.f('ck_sale_promotions_cashback_within_award')),
    sa.CheckConstraint('discount_returned_minor >= 0 AND discount_returned_minor <= saving_minor + gift_value_minor', name=op.f('ck_sale_promotions_returned_within_discount')),
    sa.CheckConstraint('saving_minor >= 0 AND gift_value_minor >= 0 AND cashback_minor >= 0', name=op.f('ck_sale_promotions_non_negative')),
    sa.CheckConstraint('value_minor = saving_minor + gift_value_minor + cashback_minor', name=op.f('ck_sale_promotions_value_adds_up')),
    sa.ForeignKeyConstraint(['promotion_id'], ['promotions.id'], name=op.f('fk_sale_promotions_promotion_id_promotions')),
    sa.ForeignKeyConstraint(['sale_id'], ['sales.id'], name=op.f('fk_sale_promotions_sale_id_sales')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sale_promotions')),
    sa.UniqueConstraint('sale_id', 'promotion_id', name=op.f('uq_sale_promotions_sale_id'))
    )
    with op.batch_alter_table('sale_promotions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sale_promotions_promotion_id'), ['promotion_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sale_promotions_sale_id'), ['sale_id'], unique=False)

    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cashback_reclaimed_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('cashback_unrecovered_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False, server_default='0'))

    with op.batch_alter_table('sale_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('category_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('gift_promotion_id', sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_sale_lines_category_id_categories'), 'categories', ['category_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_sale_lines_gift_promotion_id_promotions'), 'promotions', ['gift_promotion_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('sale_lines', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sale_lines_gift_promotion_id_promotions'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_sale_lines_category_id_categories'), type_='foreignkey')
        batch_op.drop_column('gift_promotion_id')
        batch_op.drop_column('category_id')

    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_column('cashback_unrecovered_minor')
        batch_op.drop_column('cashback_reclaimed_minor')

    with op.batch_alter_table('sale_promotions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sale_promotions_sale_id'))
        batch_op.drop_index(batch_op.f('ix_sale_promotions_promotion_id'))

    op.drop_table('sale_promotions')
    with op.batch_alter_table('promotion_member_usage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promotion_member_usage_member_id'))

    op.drop_table('promotion_member_usage')
    op.drop_table('promotion_usage')
    with op.batch_alter_table('promotions', schema=None) as batch_op:
        batch_op.drop_index('ix_promotions_active')

    op.drop_table('promotions')
