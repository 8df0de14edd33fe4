"""Members: enrol, look up, edit, consents, merge, import and export."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.core.errors import NotFound, ValidationFailed
from patron.members import notes, rules
from patron.members import service as members
from patron.members.enums import MemberStatus
from patron.members.schemas import (
    ConsentChange,
    ConsentEventRead,
    MemberCreate,
    MemberPage,
    MemberRead,
    MemberUpdate,
    MergeRequest,
    MergeResult,
    NoteCreate,
    NoteRead,
)

router = APIRouter(prefix="/members", tags=["members"])


@router.get("", operation_id="list_members")
def list_members(
    ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
    q: Annotated[str | None, Query(
        max_length=100, description="Phone, last 4 digits, card number or name prefix")] = None,
    home_store_id: uuid.UUID | None = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    member_status: Annotated[MemberStatus, Query(alias="status")] = MemberStatus.ACTIVE,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 25,
) -> MemberPage:
    query = members.MemberQuery(q=q, home_store_id=home_store_id, tag=tag, status=member_status,
                                page=page, page_size=page_size)
    rows, total = members.search_members(session, query=query, region=ctx.settings.default_region)
    return MemberPage(items=[members.to_read(m, principal) for m in rows], total=total,
                      page=page, page_size=page_size)


@router.get("/lookup", operation_id="lookup_member")
def lookup_member(
    ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
    card_no: Annotated[str | None, Query(max_length=20)] = None,
    phone: Annotated[str | None, Query(max_length=40)] = None,
) -> MemberRead:
    """Exact lookup at the till by card number (merged cards lead to the survivor) or phone."""
    if card_no:
        member = members.find_by_card(session, card_no=card_no)
    elif phone:
        e164 = rules.normalise_phone(phone, ctx.settings.default_region)
        member = members.find_by_phone(session, phone_e164=e164)
    else:
        raise ValidationFailed("Give card_no or phone", "card_no", code="required")
    if member is None or member.status != MemberStatus.ACTIVE.value:
        raise NotFound("No member found", "card_no" if card_no else "phone")
    return members.to_read(member, principal)


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="enroll_member")
def enroll_member(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                  body: MemberCreate) -> MemberRead:
    member = members.enroll_member(session, clock=ctx.clock, actor=principal,
                                   region=ctx.settings.default_region, data=body)
    session.commit()
    return members.to_read(member, principal)


@router.get("/{member_id}", operation_id="get_member")
def get_member(session: DbSession, principal: CurrentPrincipal, member_id: uuid.UUID) -> MemberRead:
    return members.to_read(members.get_member(session, member_id=member_id), principal)


@router.patch("/{member_id}", operation_id="update_member")
def update_member(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                  member_id: uuid.UUID, body: MemberUpdate) -> MemberRead:
    member = members.update_member(session, clock=ctx.clock, actor=principal,
                                   region=ctx.settings.default_region, member_id=member_id,
                                   data=body)
    session.commit()
    return members.to_read(member, principal)


@router.delete("/{member_id}", operation_id="delete_member")
def delete_member(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                  member_id: uuid.UUID) -> MemberRead:
    """Soft delete (hidden, history kept). Erasure of personal data is a separate request."""
    member = members.delete_member(session, clock=ctx.clock, actor=principal, member_id=member_id)
    session.commit()
    return members.to_read(member, principal)


@router.post("/{member_id}/merge", operation_id="merge_members")
def merge_members(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                  member_id: uuid.UUID, body: MergeRequest) -> MergeResult:
    """Fold ``duplicate_id`` into this member; all history moves to this member."""
    survivor, moved = members.merge_members(session, clock=ctx.clock, actor=principal,
                                            survivor_id=member_id, duplicate_id=body.duplicate_id)
    session.commit()
    return MergeResult(survivor=members.to_read(survivor, principal), merged_id=body.duplicate_id,
                       moved=moved)


@router.get("/{member_id}/consents", operation_id="list_member_consents")
def list_consents(session: DbSession, _principal: CurrentPrincipal,
                  member_id: uuid.UUID) -> list[ConsentEventRead]:
    members.get_member(session, member_id=member_id)
    return [ConsentEventRead.model_validate(e)
            for e in members.consent_history(session, member_id=member_id)]


@router.post("/{member_id}/consents", operation_id="change_member_consent")
def change_consent(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   member_id: uuid.UUID, body: ConsentChange) -> MemberRead:
    member = members.change_consent(session, clock=ctx.clock, actor=principal,
                                    member_id=member_id, channel=body.channel,
                                    granted=body.granted, source=body.source, note=body.note)
    session.commit()
    return members.to_read(member, principal)




# ---------------------------------------------------------------- staff notes (members.notes)


@router.get("/{member_id}/notes", operation_id="list_member_notes")
def list_notes(session: DbSession, principal: CurrentPrincipal, member_id: uuid.UUID,
               limit: Annotated[int, Query(ge=1, le=notes.MAX_LIST)] = 100) -> list[NoteRead]:
    """Staff notes about the member, newest first (staff of the member's home store)."""
    rows = notes.list_notes(session, principal=principal, member_id=member_id, limit=limit)
    return [NoteRead.model_validate(n) for n in rows]


@router.post("/{member_id}/notes", status_code=status.HTTP_201_CREATED,
             operation_id="add_member_note")
def add_note(ctx: Ctx, session: DbSession, principal: CurrentPrincipal, member_id: uuid.UUID,
             body: NoteCreate) -> NoteRead:
    """Add a note, signed with the caller and dated now; notes are never edited."""
    note = notes.add_note(session, clock=ctx.clock, principal=principal, member_id=member_id,
                          body=body.body)
    session.commit()
    return NoteRead.model_validate(note)
