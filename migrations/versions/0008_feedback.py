"""feedback: callback tasks and calls, complaints with events and compensations, surveys

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 22:25:02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.core.models

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('complaints',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('description', sa.String(length=4000), nullable=False),
    sa.Column('contact', sa.String(length=200), nullable=False),
    sa.Column('opened_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('opened_by', sa.String(length=200), nullable=False),
    sa.Column('first_response_due_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolution_due_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('first_response_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=2000), nullable=False),
    sa.Column('closed_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(status = 'closed') = (closed_at IS NOT NULL)", name=op.f('ck_complaints_closed')),
    sa.CheckConstraint("(status IN ('resolved','closed')) = (resolved_at IS NOT NULL)", name=op.f('ck_complaints_resolved')),
    sa.CheckConstraint("category IN ('product','service','price','wait_time','staff','billing','other')", name=op.f('ck_complaints_category')),
    sa.CheckConstraint("channel IN ('in_store','phone','sms','email','web','social')", name=op.f('ck_complaints_channel')),
    sa.CheckConstraint("severity IN ('low','normal','high','critical')", name=op.f('ck_complaints_severity')),
    sa.CheckConstraint("status IN ('open','in_progress','resolved','closed')", name=op.f('ck_complaints_status')),
    sa.CheckConstraint('first_response_due_at > opened_at AND resolution_due_at >= first_response_due_at', name=op.f('ck_complaints_sla')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_complaints_member_id_members')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_complaints_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_complaints'))
    )
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaints_member_id'), ['member_id'], unique=False)
        batch_op.create_index('ix_complaints_opened_at', ['opened_at'], unique=False)
        batch_op.create_index('ix_complaints_store_status', ['store_id', 'status'], unique=False)

    op.create_table('survey_invitations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('occasion', sa.String(length=16), nullable=False),
    sa.Column('source_ref', sa.String(length=64), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('csat_nps')", name=op.f('ck_survey_invitations_kind')),
    sa.CheckConstraint("occasion IN ('sale','complaint')", name=op.f('ck_survey_invitations_occasion')),
    sa.CheckConstraint('expires_at > created_at', name=op.f('ck_survey_invitations_window')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_survey_invitations_member_id_members')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_survey_invitations_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey_invitations')),
    sa.UniqueConstraint('occasion', 'source_ref', name='uq_survey_invitation_occasion'),
    sa.UniqueConstraint('token', name=op.f('uq_survey_invitations_token'))
    )
    with op.batch_alter_table('survey_invitations', schema=None) as batch_op:
        batch_op.create_index('ix_survey_invitations_member_created', ['member_id', 'created_at'], unique=False)
        batch_op.create_index('ix_survey_invitations_store_id', ['store_id'], unique=False)

    op.create_table('callback_tasks',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('reason', sa.String(length=24), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('assignee_id', sa.Uuid(), nullable=True),
    sa.Column('complaint_id', sa.Uuid(), nullable=True),
    sa.Column('notes', sa.String(length=2000), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('attempts', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('last_called_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('completed_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_by', sa.String(length=200), nullable=True),
    sa.Column('updated_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(status = 'done') = (outcome IS NOT NULL)", name=op.f('ck_callback_tasks_done_outcome')),
    sa.CheckConstraint("(status = 'open') = (completed_at IS NULL)", name=op.f('ck_callback_tasks_completed')),
    sa.CheckConstraint("outcome IS NULL OR outcome IN ('reached','no_answer','complaint','will_return','wrong_number','not_interested')", name=op.f('ck_callback_tasks_outcome')),
    sa.CheckConstraint("reason IN ('win_back','complaint_follow_up','survey_follow_up','manual')", name=op.f('ck_callback_tasks_reason')),
    sa.CheckConstraint("status IN ('open','done','cancelled')", name=op.f('ck_callback_tasks_status')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_callback_tasks_attempts')),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_callback_tasks_assignee_id_users')),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.id'], name=op.f('fk_callback_tasks_complaint_id_complaints')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_callback_tasks_member_id_members')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_callback_tasks_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_tasks'))
    )
    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_callback_tasks_assignee_status', ['assignee_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_callback_tasks_member_id'), ['member_id'], unique=False)
        batch_op.create_index('ix_callback_tasks_store_status_due', ['store_id', 'status', 'due_on'], unique=False)
        batch_op.create_index('uq_callback_tasks_open_win_back', ['member_id'], unique=True, sqlite_where=sa.text("status = 'open' AND reason = 'win_back'"), postgresql_where=sa.text("status = 'open' AND reason = 'win_back'"))

    op.create_table('complaint_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('complaint_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('note', sa.String(length=2000), nullable=False),
    sa.Column('actor_user_id', sa.Uuid(), nullable=True),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('opened','status_changed','reopened')", name=op.f('ck_complaint_events_kind')),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], name=op.f('fk_complaint_events_actor_user_id_users')),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.id'], name=op.f('fk_complaint_events_complaint_id_complaints')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_complaint_events'))
    )
    with op.batch_alter_table('complaint_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaint_events_complaint_id'), ['complaint_id'], unique=False)

    op.create_table('survey_responses',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('invitation_id', sa.Uuid(), nullable=False),
    sa.Column('csat', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('nps', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('comment', sa.String(length=2000), nullable=False),
    sa.Column('answered_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('csat IS NOT NULL OR nps IS NOT NULL', name=op.f('ck_survey_responses_answered')),
    sa.CheckConstraint('csat IS NULL OR csat BETWEEN 1 AND 5', name=op.f('ck_survey_responses_csat')),
    sa.CheckConstraint('nps IS NULL OR nps BETWEEN 0 AND 10', name=op.f('ck_survey_responses_nps')),
    sa.ForeignKeyConstraint(['invitation_id'], ['survey_invitations.id'], name=op.f('fk_survey_responses_invitation_id_survey_invitations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey_responses')),
    sa.UniqueConstraint('invitation_id', name=op.f('uq_survey_responses_invitation_id'))
    )
    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_survey_responses_answered_at'), ['answered_at'], unique=False)

    op.create_table('callback_calls',
    sa.Column('seq', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.Uuid(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('note', sa.String(length=2000), nullable=False),
    sa.Column('rescheduled_to', sa.Date(), nullable=True),
    sa.Column('actor_user_id', sa.Uuid(), nullable=True),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('called_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("outcome IN ('reached','no_answer','complaint','will_return','wrong_number','not_interested')", name=op.f('ck_callback_calls_outcome')),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], name=op.f('fk_callback_calls_actor_user_id_users')),
    sa.ForeignKeyConstraint(['task_id'], ['callback_tasks.id'], name=op.f('fk_callback_calls_task_id_callback_tasks')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_callback_calls'))
    )
    with op.batch_alter_table('callback_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_calls_task_id'), ['task_id'], unique=False)

    op.create_table('complaint_compensations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('complaint_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('coupon_id', sa.Uuid(), nullable=True),
    sa.Column('points', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=True),
    sa.Column('points_entry_id', sa.Uuid(), nullable=True),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('(points IS NULL) = (points_entry_id IS NULL)', name=op.f('ck_complaint_compensations_points_entry')),
    sa.CheckConstraint('coupon_id IS NOT NULL OR points IS NOT NULL', name=op.f('ck_complaint_compensations_compensates')),
    sa.CheckConstraint('points IS NULL OR points > 0', name=op.f('ck_complaint_compensations_points')),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaints.id'], name=op.f('fk_complaint_compensations_complaint_id_complaints')),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], name=op.f('fk_complaint_compensations_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_complaint_compensations_member_id_members')),
    sa.ForeignKeyConstraint(['points_entry_id'], ['points_entries.id'], name=op.f('fk_complaint_compensations_points_entry_id_points_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_complaint_compensations')),
    sa.UniqueConstraint('complaint_id', name=op.f('uq_complaint_compensations_complaint_id'))
    )
    with op.batch_alter_table('complaint_compensations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaint_compensations_member_id'), ['member_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('complaint_compensations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_complaint_compensations_member_id'))

    op.drop_table('complaint_compensations')
    with op.batch_alter_table('callback_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_calls_task_id'))

    op.drop_table('callback_calls')
    with op.batch_alter_table('survey_responses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_survey_responses_answered_at'))

    op.drop_table('survey_responses')
    with op.batch_alter_table('complaint_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_complaint_events_complaint_id'))

    op.drop_table('complaint_events')
    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.drop_index('uq_callback_tasks_open_win_back', sqlite_where=sa.text("status = 'open' AND reason = 'win_back'"), postgresql_where=sa.text("status = 'open' AND reason = 'win_back'"))
        batch_op.drop_index('ix_callback_tasks_store_status_due')
        batch_op.drop_index(batch_op.f('ix_callback_tasks_member_id'))
        batch_op.drop_index('ix_callback_tasks_assignee_status')

    op.drop_table('callback_tasks')
    with op.batch_alter_table('survey_invitations', schema=None) as batch_op:
        batch_op.drop_index('ix_survey_invitations_store_id')
        batch_op.drop_index('ix_survey_invitations_member_created')

    op.drop_table('survey_invitations')
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.drop_index('ix_complaints_store_status')
        batch_op.drop_index('ix_complaints_opened_at')
        batch_op.drop_index(batch_op.f('ix_complaints_member_id'))

    op.drop_table('complaints')
