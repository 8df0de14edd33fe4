"""loyalty perks: a birthday coupon per tier, plan perks included in tiers, and covering
indexes for the daily care selection

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 01:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tiers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birthday_coupon_template_id', sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_tiers_birthday_coupon_template_id_coupon_templates'),
            'coupon_templates', ['birthday_coupon_template_id'], ['id'])

    op.create_table('tier_plan_perks',
    sa.Column('tier_id', sa.Uuid(), nullable=False),
    sa.Column('plan_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['membership_plans.id'], name=op.f('fk_tier_plan_perks_plan_id_membership_plans')),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_tier_plan_perks_tier_id_tiers')),
    sa.PrimaryKeyConstraint('tier_id', 'plan_id', name=op.f('pk_tier_plan_perks'))
    )

    # Covering indexes for the care selection (bench/care_jobs.py): rebuilt in place.
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_index('ix_sales_member_occurred')
        batch_op.create_index('ix_sales_member_occurred', ['member_id', 'occurred_at', 'id',
                                                           'total_minor', 'refunded_minor'],
                              unique=False)
    with op.batch_alter_table('sale_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_sale_lines_sale_id')
        batch_op.create_index('ix_sale_lines_sale_id', ['sale_id', 'quantity',
                                                        'refunded_quantity', 'product_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sale_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_sale_lines_sale_id')
        batch_op.create_index('ix_sale_lines_sale_id', ['sale_id'], unique=False)
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_index('ix_sales_member_occurred')
        batch_op.create_index('ix_sales_member_occurred', ['member_id', 'occurred_at'],
                              unique=False)

    op.drop_table('tier_plan_perks')
    with op.batch_alter_table('tiers', schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f('fk_tiers_birthday_coupon_template_id_coupon_templates'),
            type_='foreignkey')
        batch_op.drop_column('birthday_coupon_template_id')
