"""offers: coupon templates, coupons, redemptions, restorations and referrals

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:46:50.827070

UNIQUE(coupon_redemptions.coupon_id) is the database's guarantee that a coupon is redeemed
at most once; UNIQUE(referral_rewards.referred_member_id) that a referral is settled once.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.core.models

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('coupon_templates',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('amount_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('percent', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('cap_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('min_spend_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('validity', sa.String(length=8), nullable=False),
    sa.Column('starts_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ends_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('valid_days', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('per_member_limit', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('total_limit', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('restore_on_refund', sa.Boolean(), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'fixed' AND amount_minor > 0 AND percent IS NULL AND cap_minor IS NULL) OR (kind = 'percent' AND amount_minor IS NULL AND percent BETWEEN 1 AND 100 AND (cap_minor IS NULL OR cap_minor > 0))", name=op.f('ck_coupon_templates_terms')),
    sa.CheckConstraint("(validity = 'fixed' AND ends_at IS NOT NULL AND valid_days IS NULL AND (starts_at IS NULL OR starts_at < ends_at)) OR (validity = 'days' AND valid_days > 0 AND starts_at IS NULL AND ends_at IS NULL)", name=op.f('ck_coupon_templates_validity')),
    sa.CheckConstraint("kind IN ('fixed','percent')", name=op.f('ck_coupon_templates_kind')),
    sa.CheckConstraint("scope IN ('all','categories','products')", name=op.f('ck_coupon_templates_scope')),
    sa.CheckConstraint('(per_member_limit IS NULL OR per_member_limit > 0) AND (total_limit IS NULL OR total_limit > 0)', name=op.f('ck_coupon_templates_limits')),
    sa.CheckConstraint('min_spend_minor >= 0', name=op.f('ck_coupon_templates_min_spend')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_templates'))
    )
    op.create_table('referral_rule',
    sa.Column('id', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('referrer_template_id', sa.Uuid(), nullable=True),
    sa.Column('referred_template_id', sa.Uuid(), nullable=True),
    sa.Column('min_purchase_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_referral_rule_single_row')),
    sa.CheckConstraint('min_purchase_minor >= 0', name=op.f('ck_referral_rule_min_purchase')),
    sa.ForeignKeyConstraint(['referred_template_id'], ['coupon_templates.id'], name=op.f('fk_referral_rule_referred_template_id_coupon_templates')),
    sa.ForeignKeyConstraint(['referrer_template_id'], ['coupon_templates.id'], name=op.f('fk_referral_rule_referrer_template_id_coupon_templates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_rule'))
    )
    op.create_table('coupon_template_targets',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('category_id', sa.Uuid(), nullable=True),
    sa.Column('product_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint('(category_id IS NULL) <> (product_id IS NULL)', name=op.f('ck_coupon_template_targets_one_target')),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], name=op.f('fk_coupon_template_targets_category_id_categories')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_coupon_template_targets_product_id_products')),
    sa.ForeignKeyConstraint(['template_id'], ['coupon_templates.id'], name=op.f('fk_coupon_template_targets_template_id_coupon_templates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_template_targets'))
    )
    with op.batch_alter_table('coupon_template_targets', schema=None) as batch_op:
        batch_op.create_index('uq_coupon_template_targets_category', ['template_id', 'category_id'], unique=True)
        batch_op.create_index('uq_coupon_template_targets_product', ['template_id', 'product_id'], unique=True)

    op.create_table('coupons',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('source_ref', sa.String(length=64), nullable=True),
    sa.Column('issued_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('issued_by', sa.String(length=200), nullable=False),
    sa.Column('valid_from', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('valid_until', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('replaces_coupon_id', sa.Uuid(), nullable=True),
    sa.Column('voided_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('voided_by', sa.String(length=200), nullable=True),
    sa.Column('void_reason', sa.String(length=500), nullable=False),
    sa.CheckConstraint("status IN ('issued','redeemed','void','expired')", name=op.f('ck_coupons_status')),
    sa.CheckConstraint('valid_until > valid_from', name=op.f('ck_coupons_window')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_coupons_member_id_members')),
    sa.ForeignKeyConstraint(['replaces_coupon_id'], ['coupons.id'], name=op.f('fk_coupons_replaces_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['template_id'], ['coupon_templates.id'], name=op.f('fk_coupons_template_id_coupon_templates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupons')),
    sa.UniqueConstraint('code', name=op.f('uq_coupons_code')),
    sa.UniqueConstraint('replaces_coupon_id', name=op.f('uq_coupons_replaces_coupon_id'))
    )
    with op.batch_alter_table('coupons', schema=None) as batch_op:
        batch_op.create_index('ix_coupons_member_status', ['member_id', 'status'], unique=False)
        batch_op.create_index('ix_coupons_status_valid_until', ['status', 'valid_until'], unique=False)
        batch_op.create_index('ix_coupons_template_member', ['template_id', 'member_id'], unique=False)

    op.create_table('referral_attributions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('referred_member_id', sa.Uuid(), nullable=False),
    sa.Column('referrer_member_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('attributed_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['referred_member_id'], ['members.id'], name=op.f('fk_referral_attributions_referred_member_id_members')),
    sa.ForeignKeyConstraint(['referrer_member_id'], ['members.id'], name=op.f('fk_referral_attributions_referrer_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_attributions')),
    sa.UniqueConstraint('referred_member_id', name=op.f('uq_referral_attributions_referred_member_id'))
    )
    with op.batch_alter_table('referral_attributions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_referral_attributions_referrer_member_id'), ['referrer_member_id'], unique=False)

    op.create_table('referral_codes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_referral_codes_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_codes')),
    sa.UniqueConstraint('code', name=op.f('uq_referral_codes_code')),
    sa.UniqueConstraint('member_id', name=op.f('uq_referral_codes_member_id'))
    )
    op.create_table('coupon_redemptions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('coupon_id', sa.Uuid(), nullable=False),
    sa.Column('template_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('sale_id', sa.Uuid(), nullable=True),
    sa.Column('reference', sa.String(length=64), nullable=True),
    sa.Column('eligible_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('discount_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('redeemed_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('discount_minor > 0 AND discount_minor <= eligible_minor', name=op.f('ck_coupon_redemptions_discount')),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], name=op.f('fk_coupon_redemptions_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_coupon_redemptions_member_id_members')),
    sa.ForeignKeyConstraint(['sale_id'], ['sales.id'], name=op.f('fk_coupon_redemptions_sale_id_sales')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_coupon_redemptions_store_id_stores')),
    sa.ForeignKeyConstraint(['template_id'], ['coupon_templates.id'], name=op.f('fk_coupon_redemptions_template_id_coupon_templates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_redemptions')),
    sa.UniqueConstraint('coupon_id', name=op.f('uq_coupon_redemptions_coupon_id'))
    )
    with op.batch_alter_table('coupon_redemptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coupon_redemptions_sale_id'), ['sale_id'], unique=False)
        batch_op.create_index('ix_coupon_redemptions_template_member', ['template_id', 'member_id'], unique=False)

    op.create_table('referral_rewards',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('referred_member_id', sa.Uuid(), nullable=False),
    sa.Column('referrer_member_id', sa.Uuid(), nullable=False),
    sa.Column('sale_id', sa.Uuid(), nullable=True),
    sa.Column('purchase_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('referrer_coupon_id', sa.Uuid(), nullable=True),
    sa.Column('referred_coupon_id', sa.Uuid(), nullable=True),
    sa.Column('occurred_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("outcome IN ('rewarded','below_minimum')", name=op.f('ck_referral_rewards_outcome')),
    sa.ForeignKeyConstraint(['referred_coupon_id'], ['coupons.id'], name=op.f('fk_referral_rewards_referred_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['referred_member_id'], ['members.id'], name=op.f('fk_referral_rewards_referred_member_id_members')),
    sa.ForeignKeyConstraint(['referrer_coupon_id'], ['coupons.id'], name=op.f('fk_referral_rewards_referrer_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['referrer_member_id'], ['members.id'], name=op.f('fk_referral_rewards_referrer_member_id_members')),
    sa.ForeignKeyConstraint(['sale_id'], ['sales.id'], name=op.f('fk_referral_rewards_sale_id_sales')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_rewards')),
    sa.UniqueConstraint('referred_member_id', name=op.f('uq_referral_rewards_referred_member_id'))
    )
    with op.batch_alter_table('referral_rewards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_referral_rewards_referrer_member_id'), ['referrer_member_id'], unique=False)

    op.create_table('coupon_restorations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('redemption_id', sa.Uuid(), nullable=False),
    sa.Column('original_coupon_id', sa.Uuid(), nullable=False),
    sa.Column('replacement_coupon_id', sa.Uuid(), nullable=False),
    sa.Column('refund_id', sa.Uuid(), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('restored_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['original_coupon_id'], ['coupons.id'], name=op.f('fk_coupon_restorations_original_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['redemption_id'], ['coupon_redemptions.id'], name=op.f('fk_coupon_restorations_redemption_id_coupon_redemptions')),
    sa.ForeignKeyConstraint(['refund_id'], ['refunds.id'], name=op.f('fk_coupon_restorations_refund_id_refunds')),
    sa.ForeignKeyConstraint(['replacement_coupon_id'], ['coupons.id'], name=op.f('fk_coupon_restorations_replacement_coupon_id_coupons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_restorations')),
    sa.UniqueConstraint('redemption_id', name=op.f('uq_coupon_restorations_redemption_id')),
    sa.UniqueConstraint('replacement_coupon_id', name=op.f('uq_coupon_restorations_replacement_coupon_id'))
    )


def downgrade() -> None:
    op.drop_table('coupon_restorations')
    with op.batch_alter_table('referral_rewards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referral_rewards_referrer_member_id'))

    op.drop_table('referral_rewards')
    with op.batch_alter_table('coupon_redemptions', schema=None) as batch_op:
        batch_op.drop_index('ix_coupon_redemptions_template_member')
        batch_op.drop_index(batch_op.f('ix_coupon_redemptions_sale_id'))

    op.drop_table('coupon_redemptions')
    op.drop_table('referral_codes')
    with op.batch_alter_table('referral_attributions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referral_attributions_referrer_member_id'))

    op.drop_table('referral_attributions')
    with op.batch_alter_table('coupons', schema=None) as batch_op:
        batch_op.drop_index('ix_coupons_template_member')
        batch_op.drop_index('ix_coupons_status_valid_until')
        batch_op.drop_index('ix_coupons_member_status')

    op.drop_table('coupons')
    with op.batch_alter_table('coupon_template_targets', schema=None) as batch_op:
        batch_op.drop_index('uq_coupon_template_targets_product')
        batch_op.drop_index('uq_coupon_template_targets_category')

    op.drop_table('coupon_template_targets')
    op.drop_table('referral_rule')
    op.drop_table('coupon_templates')
