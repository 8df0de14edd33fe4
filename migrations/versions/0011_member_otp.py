"""member_otps: one-time sign-in codes of the member page (hashed), for rate limits too

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.core.models

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('member_otps',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('phone_hash', sa.String(length=64), nullable=False),
    sa.Column('client_hash', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=True),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('consumed_at', patron.core.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_otps_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_member_otps'))
    )
    with op.batch_alter_table('member_otps', schema=None) as batch_op:
        batch_op.create_index('ix_member_otps_client_created', ['client_hash', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_member_otps_member_id'), ['member_id'], unique=False)
        batch_op.create_index('ix_member_otps_phone_created', ['phone_hash', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('member_otps', schema=None) as batch_op:
        batch_op.drop_index('ix_member_otps_phone_created')
        batch_op.drop_index(batch_op.f('ix_member_otps_member_id'))
        batch_op.drop_index('ix_member_otps_client_created')

    op.drop_table('member_otps')
