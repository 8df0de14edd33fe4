"""Staff notes about a member: append-only, signed and dated.

A note is written by a member of staff (a user, never a POS key: a note must say who wrote
it) who works in the member's home store -- the store that looks after the member -- or by
the owner, and read by the same people. Notes are never edited or deleted: a correction is
a new note, so the history of what staff knew and when stays as it was written. The only
change a note ever sees is erasure (``members.privacy``), which blanks its body, because a
note is personal data about the member.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.core.clock import Clock
from patron.core.errors import Conflict, PermissionDenied, ValidationFailed
from patron.members import service as members
from patron.members.enums import MemberStatus
from patron.members.models import Member, MemberNote

#: The longest note, in characters (the table's CHECK constraint says the same).
MAX_NOTE = 2000
#: The most notes one read returns.
MAX_LIST = 500


def member_for_notes(session: Session, *, principal: Principal, member_id: uuid.UUID
                     ) -> Member:
    """The member, if ``principal`` is staff of their home store (or the owner); a form
    checks this before it looks at what was typed, so a refusal is a refusal."""
    require_role(principal, Role.CASHIER, users_only=True)
    member = members.get_member(session, member_id=member_id)
    if not principal.can_access_store(member.home_store_id):
        raise PermissionDenied("This member's home store is not one of yours")
    return member


def can_use_notes(principal: Principal, member: Member) -> bool:
    """Whether ``principal`` may read and add this member's notes (the page hides them
    otherwise rather than showing an error)."""
    return principal.user_id is not None and principal.can_access_store(member.home_store_id)


def add_note(session: Session, *, clock: Clock, principal: Principal, member_id: uuid.UUID,
             body: str) -> MemberNote:
    """Add a note to the member, signed by ``principal`` and dated now."""
    member = member_for_notes(session, principal=principal, member_id=member_id)
    text = body.strip()
    if not text:
        raise ValidationFailed("Write the note first", "body", code="required")
    if len(text) > MAX_NOTE:
        raise ValidationFailed(f"body must be at most {MAX_NOTE} characters", "body",
                               code="too_long")
    if member.status != MemberStatus.ACTIVE.value:
        raise Conflict("Notes can only be added to an active member", "member_id",
                       code="not_active")
    note = MemberNote(member_id=member.id, author_id=principal.user_id,
                      author_name=principal.label, body=text, created_at=clock.now())
    session.add(note)
    session.flush()
    return note


def list_notes(session: Session, *, principal: Principal, member_id: uuid.UUID,
               limit: int = 100) -> list[MemberNote]:
    """The member's notes, newest first."""
    if not 1 <= limit <= MAX_LIST:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIST}", "limit")
    member = member_for_notes(session, principal=principal, member_id=member_id)
    return list(session.scalars(
        select(MemberNote).where(MemberNote.member_id == member.id)
        .order_by(MemberNote.created_at.desc(), MemberNote.id.desc()).limit(limit)))
