"""paid membership plans and periods

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 20:25:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.core.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "membership_plans",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("duration_days", sa.BigInteger().with_variant(sa.INTEGER(), "sqlite"),
                  nullable=False),
        sa.Column("tier_id", sa.Uuid(), nullable=True),
        sa.Column("benefits", sa.String(length=1000), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.CheckConstraint("duration_days BETWEEN 1 AND 3660",
                           name=op.f("ck_membership_plans_duration")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"],
                                name=op.f("fk_membership_plans_product_id_products")),
        sa.ForeignKeyConstraint(["tier_id"], ["tiers.id"],
                                name=op.f("fk_membership_plans_tier_id_tiers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_membership_plans")),
        sa.UniqueConstraint("code", name=op.f("uq_membership_plans_code")),
        sa.UniqueConstraint("product_id", name=op.f("uq_membership_plans_product_id")),
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("sale_id", sa.Uuid(), nullable=True),
        sa.Column("starts_at", patron.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", patron.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("expiring_notified_at", patron.core.models.UTCDateTime(timezone=True),
                  nullable=True),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_memberships_period")),
        sa.CheckConstraint("status IN ('active','expired','cancelled')",
                           name=op.f("ck_memberships_status")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name=op.f("fk_memberships_member_id_members")),
        sa.ForeignKeyConstraint(["plan_id"], ["membership_plans.id"],
                                name=op.f("fk_memberships_plan_id_membership_plans")),
        sa.ForeignKeyConstraint(["sale_id"], ["sales.id"],
                                name=op.f("fk_memberships_sale_id_sales")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
    )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_memberships_member_id"), ["member_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_memberships_sale_id"), ["sale_id"], unique=False)
        batch_op.create_index("ix_memberships_ends_at", ["status", "ends_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index("ix_memberships_ends_at")
        batch_op.drop_index(batch_op.f("ix_memberships_sale_id"))
        batch_op.drop_index(batch_op.f("ix_memberships_member_id"))
    op.drop_table("memberships")
    op.drop_table("membership_plans")
