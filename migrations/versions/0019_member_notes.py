"""members: staff notes as a table of their own; messaging: log retention

``member_notes`` replaces the lines the member page used to append to a member's
"Preferences and notes" (each began with "✎ ", then the local date, the author's user name
and the text). The upgrade moves every such line into the table and out of the text; the
downgrade writes them back as lines in the same form and drops the table, so nothing is lost
either way.

A note line only has a date, so the moved note is dated at noon UTC of that day: noon UTC
falls on the same calendar day in every zone from UTC-11 to UTC+11, so the page shows the
date the line had. The author is the user whose user name the line names, if one still has
it; the name is kept in ``author_name`` either way.

Messaging gains the brand's log retention (``log_retention_days``, 730 days for the existing
row) and ``messages.purged_at`` with a partial index of the rows not yet purged: the
retention job's work list (decision 0004).

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-24 04:40:00
"""
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

import sqlalchemy as sa
from alembic import op

import patron.core.models

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTE_MARK = "✎ "
#: "2026-11-20 wang: the text" -- the form the member page wrote (members.NOTE_MARK + ...)
NOTE_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\S+): (.*)$", re.DOTALL)

members = sa.table('members', sa.column('id', sa.Uuid()),
                   sa.column('preferences', sa.Text()),
                   sa.column('updated_at', patron.core.models.UTCDateTime(timezone=True)))
users = sa.table('users', sa.column('id', sa.Uuid()), sa.column('username', sa.String()))
notes = sa.table('member_notes', sa.column('id', sa.Uuid()), sa.column('member_id', sa.Uuid()),
                 sa.column('author_id', sa.Uuid()), sa.column('author_name', sa.String()),
                 sa.column('body', sa.Text()),
                 sa.column('created_at', patron.core.models.UTCDateTime(timezone=True)))


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12, 0), tzinfo=UTC)


def _move_notes_out(bind: sa.Connection) -> None:
    by_name = {name: uid for uid, name in bind.execute(sa.select(users.c.id, users.c.username))}
    rows = bind.execute(sa.select(members.c.id, members.c.preferences, members.c.updated_at)
                        .where(members.c.preferences.like(f"%{NOTE_MARK}%"))).all()
    for member_id, preferences, updated_at in rows:
        kept: list[str] = []
        moved: list[dict[str, object]] = []
        for line in (preferences or "").splitlines():
            if not line.startswith(NOTE_MARK):
                kept.append(line)
                continue
            text = line[len(NOTE_MARK):].strip()
            match = NOTE_LINE.match(text)
            try:
                at = _noon(date.fromisoformat(match.group(1))) if match else updated_at
            except ValueError:
                at, match = updated_at, None
            author = match.group(2) if match else ""
            moved.append({"id": uuid.uuid4(), "member_id": member_id,
                          "author_id": by_name.get(author), "author_name": author,
                          "body": (match.group(3) if match else text)[:2000],
                          "created_at": at})
        if moved:
            bind.execute(notes.insert(), moved)
            bind.execute(members.update().where(members.c.id == member_id)
                         .values(preferences="\n".join(kept)))


def _move_notes_back(bind: sa.Connection) -> None:
    lines: dict[uuid.UUID, list[str]] = {}
    for member_id, name, body, at in bind.execute(
            sa.select(notes.c.member_id, notes.c.author_name, notes.c.body, notes.c.created_at)
            .order_by(notes.c.member_id, notes.c.created_at, notes.c.id)):
        text = " / ".join(part.strip() for part in body.splitlines() if part.strip())
        lines.setdefault(member_id, []).append(
            f"{NOTE_MARK}{at.date().isoformat()} {name or '?'}: {text}")
    for member_id, added in lines.items():
        current = bind.scalar(sa.select(members.c.preferences).where(members.c.id == member_id))
        bind.execute(members.update().where(members.c.id == member_id).values(
            preferences="\n".join(part for part in (current or "", *added) if part)))


def upgrade() -> None:
    op.create_table('member_notes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('author_id', sa.Uuid(), nullable=True),
    sa.Column('author_name', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', patron.core.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(body) <= 2000', name=op.f('ck_member_notes_body_length')),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_member_notes_author_id_users')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_notes_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_member_notes'))
    )
    with op.batch_alter_table('member_notes', schema=None) as batch_op:
        batch_op.create_index('ix_member_notes_member_created', ['member_id', 'created_at'],
                              unique=False)
    _move_notes_out(op.get_bind())

    with op.batch_alter_table('messaging_policy', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'log_retention_days', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'),
            server_default=sa.text('730'), nullable=False))
        batch_op.create_check_constraint(
            op.f('ck_messaging_policy_log_retention_days'),
            'log_retention_days BETWEEN 90 AND 3650')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purged_at', patron.core.models.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index('ix_messages_unpurged', ['created_at'], unique=False,
                              sqlite_where=sa.text('purged_at IS NULL'),
                              postgresql_where=sa.text('purged_at IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_unpurged', sqlite_where=sa.text('purged_at IS NULL'),
                            postgresql_where=sa.text('purged_at IS NULL'))
        batch_op.drop_column('purged_at')
    with op.batch_alter_table('messaging_policy', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_messaging_policy_log_retention_days'), type_='check')
        batch_op.drop_column('log_retention_days')

    _move_notes_back(op.get_bind())
    with op.batch_alter_table('member_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_member_notes_member_created')
    op.drop_table('member_notes')
