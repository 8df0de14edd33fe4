"""campaigns: saved segments, campaigns with a holdout, per-member arm assignments

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24 12:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import patron.core.models

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('segments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=False),
    sa.Column('rules', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('store_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('archived_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segments'))
    )
    op.create_table('campaigns',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('segment_id', sa.Uuid(), nullable=False),
    sa.Column('rules', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('store_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('messages', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('coupon_template_id', sa.Uuid(), nullable=True),
    sa.Column('schedule', sa.String(length=8), nullable=False),
    sa.Column('send_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('weekday', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('send_time', sa.Time(), nullable=False),
    sa.Column('holdout_pct', sa.Float(), nullable=False),
    sa.Column('seed', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('attribution_days', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('margin_pct', sa.Float(), nullable=False),
    sa.Column('sms_cost_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('email_cost_minor', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resumes', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('last_run_on', sa.Date(), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('launched_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paused_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(schedule = 'at') = (send_at IS NOT NULL)", name=op.f('ck_campaigns_send_at')),
    sa.CheckConstraint("(schedule = 'weekly') = (weekday IS NOT NULL) AND (weekday IS NULL OR weekday BETWEEN 0 AND 6)", name=op.f('ck_campaigns_weekday')),
    sa.CheckConstraint("channel IN ('sms', 'email')", name=op.f('ck_campaigns_channel')),
    sa.CheckConstraint("kind IN ('message', 'referral')", name=op.f('ck_campaigns_kind')),
    sa.CheckConstraint("schedule IN ('now', 'at', 'weekly')", name=op.f('ck_campaigns_schedule')),
    sa.CheckConstraint("status IN ('draft', 'scheduled', 'sending', 'sent', 'recurring', 'paused', 'cancelled')", name=op.f('ck_campaigns_status')),
    sa.CheckConstraint('attribution_days BETWEEN 1 AND 365', name=op.f('ck_campaigns_attribution_days')),
    sa.CheckConstraint('holdout_pct >= 0 AND holdout_pct <= 50', name=op.f('ck_campaigns_holdout')),
    sa.CheckConstraint('margin_pct >= 0 AND margin_pct <= 100', name=op.f('ck_campaigns_margin')),
    sa.CheckConstraint('sms_cost_minor >= 0 AND email_cost_minor >= 0', name=op.f('ck_campaigns_costs')),
    sa.ForeignKeyConstraint(['coupon_template_id'], ['coupon_templates.id'], name=op.f('fk_campaigns_coupon_template_id_coupon_templates')),
    sa.ForeignKeyConstraint(['segment_id'], ['segments.id'], name=op.f('fk_campaigns_segment_id_segments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns'))
    )
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaigns_segment_id'), ['segment_id'], unique=False)
        batch_op.create_index('ix_campaigns_status', ['status'], unique=False)

    op.create_table('campaign_members',
    sa.Column('campaign_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('arm', sa.String(length=10), nullable=False),
    sa.Column('draw', sa.Float(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('message_id', sa.Uuid(), nullable=True),
    sa.Column('coupon_code', sa.String(length=16), nullable=True),
    sa.Column('run_on', sa.Date(), nullable=False),
    sa.Column('assigned_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('starts_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("arm = 'treatment' OR (message_id IS NULL AND coupon_code IS NULL)", name=op.f('ck_campaign_members_only_treatment_is_sent')),
    sa.CheckConstraint("arm IN ('treatment', 'control', 'excluded')", name=op.f('ck_campaign_members_arm')),
    sa.CheckConstraint('draw >= 0 AND draw < 1', name=op.f('ck_campaign_members_draw')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_campaign_members_window')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_members_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_campaign_members_member_id_members')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_campaign_members_message_id_messages')),
    sa.PrimaryKeyConstraint('campaign_id', 'member_id', name=op.f('pk_campaign_members'))
    )
    with op.batch_alter_table('campaign_members', schema=None) as batch_op:
        batch_op.create_index('ix_campaign_members_campaign_arm', ['campaign_id', 'arm'], unique=False)
        batch_op.create_index('ix_campaign_members_member_id', ['member_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('campaign_members', schema=None) as batch_op:
        batch_op.drop_index('ix_campaign_members_member_id')
        batch_op.drop_index('ix_campaign_members_campaign_arm')

    op.drop_table('campaign_members')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_index('ix_campaigns_status')
        batch_op.drop_index(batch_op.f('ix_campaigns_segment_id'))

    op.drop_table('campaigns')
    op.drop_table('segments')
