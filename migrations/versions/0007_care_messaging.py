"""care: messages, webhooks, care rules and occasions, schedules, outbox errors

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 22:18:29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import patron.core.models

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('care_rules',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('store_overrides', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_care_rules'))
    )
    op.create_table('messaging_policy',
    sa.Column('id', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('quiet_start', sa.Time(), nullable=False),
    sa.Column('quiet_end', sa.Time(), nullable=False),
    sa.Column('weekly_cap', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('max_attempts', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_messaging_policy_single_row')),
    sa.CheckConstraint('max_attempts BETWEEN 1 AND 50', name=op.f('ck_messaging_policy_max_attempts')),
    sa.CheckConstraint('weekly_cap >= 0', name=op.f('ck_messaging_policy_weekly_cap')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messaging_policy'))
    )
    op.create_table('scheduled_runs',
    sa.Column('seq', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('started_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.String(length=2000), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_scheduled_runs')),
    sa.UniqueConstraint('job', 'scope', 'local_date', name='uq_scheduled_run')
    )
    op.create_table('webhook_endpoints',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('secret', sa.String(length=100), nullable=False),
    sa.Column('event_types', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints'))
    )
    op.create_table('inbound_messages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('text', sa.String(length=2000), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('received_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_inbound_messages_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages'))
    )
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_messages_member_id'), ['member_id'], unique=False)

    op.create_table('messages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('template', sa.String(length=64), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('endpoint_id', sa.Uuid(), nullable=True),
    sa.Column('campaign_id', sa.Uuid(), nullable=True),
    sa.Column('source_event_id', sa.Uuid(), nullable=True),
    sa.Column('recipient', sa.String(length=500), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('html', sa.Text(), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('segments', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('attempts', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('not_before', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('provider_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("purpose IN ('transactional', 'marketing')", name=op.f('ck_messages_purpose')),
    sa.CheckConstraint("status IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'dead', 'suppressed')", name=op.f('ck_messages_status')),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_messages_endpoint_id_webhook_endpoints')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_messages_member_id_members')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_messages_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_messages_dedupe_key'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index('ix_messages_due', ['status', 'not_before'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_provider_id'), ['provider_id'], unique=False)

    op.create_table('care_occasions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('occasion', sa.String(length=100), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=True),
    sa.Column('coupon_code', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_care_occasions_member_id_members')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_care_occasions_message_id_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_care_occasions')),
    sa.UniqueConstraint('rule', 'member_id', 'occasion', name='uq_care_occasion')
    )
    with op.batch_alter_table('care_occasions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_care_occasions_member_id'), ['member_id'], unique=False)

    op.create_table('message_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.String(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_events_message_id_messages')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_message_events'))
    )
    with op.batch_alter_table('message_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_events_message_id'), ['message_id'], unique=False)

    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_error', sa.String(length=500), nullable=True))

    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('guardian_consent', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))
        batch_op.create_index('ix_members_birthday', ['birth_month', 'birth_day'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_column('last_error')

    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_index('ix_members_birthday')
        batch_op.drop_column('language')
        batch_op.drop_column('guardian_consent')

    with op.batch_alter_table('message_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_events_message_id'))

    op.drop_table('message_events')
    with op.batch_alter_table('care_occasions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_care_occasions_member_id'))

    op.drop_table('care_occasions')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_provider_id'))
        batch_op.drop_index(batch_op.f('ix_messages_member_id'))
        batch_op.drop_index('ix_messages_due')
        batch_op.drop_index(batch_op.f('ix_messages_campaign_id'))

    op.drop_table('messages')
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_messages_member_id'))

    op.drop_table('inbound_messages')
    op.drop_table('webhook_endpoints')
    op.drop_table('scheduled_runs')
    op.drop_table('messaging_policy')
    op.drop_table('care_rules')
