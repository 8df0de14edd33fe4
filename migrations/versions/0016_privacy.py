"""privacy - data export and erasure requests

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24 01:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.core.models

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('data_requests',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('requested_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('requested_by_id', sa.Uuid(), nullable=True),
    sa.Column('handled_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('handled_by_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint("(status = 'pending') = (handled_at IS NULL)", name=op.f('ck_data_requests_handled')),
    sa.CheckConstraint("kind IN ('export','erasure')", name=op.f('ck_data_requests_kind')),
    sa.CheckConstraint("status IN ('pending','done','cancelled')", name=op.f('ck_data_requests_status')),
    sa.ForeignKeyConstraint(['handled_by_id'], ['users.id'], name=op.f('fk_data_requests_handled_by_id_users')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_data_requests_member_id_members')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_data_requests_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_data_requests'))
    )
    with op.batch_alter_table('data_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_data_requests_member_id'), ['member_id'], unique=False)
        batch_op.create_index('ix_data_requests_status_requested', ['status', 'requested_at'], unique=False)

    op.create_table('member_erasures',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('erased_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('erased_by_id', sa.Uuid(), nullable=True),
    sa.Column('request_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['erased_by_id'], ['users.id'], name=op.f('fk_member_erasures_erased_by_id_users')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_erasures_member_id_members')),
    sa.ForeignKeyConstraint(['request_id'], ['data_requests.id'], name=op.f('fk_member_erasures_request_id_data_requests')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_member_erasures'))
    )


def downgrade() -> None:
    op.drop_table('member_erasures')
    with op.batch_alter_table('data_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_data_requests_status_requested')
        batch_op.drop_index(batch_op.f('ix_data_requests_member_id'))

    op.drop_table('data_requests')
