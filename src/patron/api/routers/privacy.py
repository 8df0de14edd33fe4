"""Members' privacy rights: a copy of their data, erasure, and the requests staff fulfil.

Thin: the rules (who may, what is kept, what the audit log says) are in
``members.privacy``. The export is a read that is audited, so it commits before answering;
its zip form is streamed from a session of its own as the rows are read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.members import privacy
from patron.members.privacy import RequestKind, RequestStatus

router = APIRouter(tags=["privacy"])


class ErasureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=privacy.MAX_REASON,
                        description="Why: e.g. the member's request and how it was verified")
    request_id: uuid.UUID | None = Field(default=None,
                                         description="The erasure request this fulfils")


class ErasureRead(BaseModel):
    member_id: uuid.UUID
    erased_at: datetime
    erased_by_id: uuid.UUID | None
    already_erased: bool = Field(description="True when an earlier call had erased them")
    changed: dict[str, int] = Field(description="Rows blanked or removed, by table")


class DataRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: RequestKind


class DataRequestRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    member_id: uuid.UUID
    kind: RequestKind
    status: RequestStatus
    source: str
    requested_at: datetime
    requested_by_id: uuid.UUID | None
    handled_at: datetime | None
    handled_by_id: uuid.UUID | None


class ExportFormat(StrEnum):
    JSON = "json"
    ZIP = "zip"


@router.get(
    "/members/{member_id}/export", operation_id="export_member_data", response_model=None,
    responses={200: {"description": "JSON, or with format=zip a zip of CSV files (UTF-8 "
                                    "with BOM) and a README.txt naming every file and column",
                     "content": {"application/json": {}, "application/zip": {}}}},
)
def export_member(
    ctx: Ctx, session: DbSession, principal: CurrentPrincipal, member_id: uuid.UUID,
    export_format: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.JSON,
) -> dict[str, Any] | StreamingResponse:
    """Everything patron holds about the member (profile, consents, ledgers, sales,
    coupons, messages, complaints, callbacks, surveys, scores, staff notes), as JSON or as
    a zip of CSV files with the same content; audited either way."""
    if export_format is ExportFormat.ZIP:
        plan = privacy.begin_zip_export(session, clock=ctx.clock, principal=principal,
                                        member_id=member_id)
        session.commit()  # the audit entry is durable before any data leaves

        def body() -> Iterator[bytes]:
            # a session of its own: the request's is closed while the body still streams
            with ctx.db.read() as read_session:
                yield from privacy.zip_export(read_session, export=plan,
                                              currency=ctx.settings.currency)

        return StreamingResponse(body(), media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{plan.filename}"'})
    export = privacy.export_member(session, clock=ctx.clock, principal=principal,
                                   member_id=member_id)
    session.commit()  # the audit entry is durable before any data leaves
    return export


@router.post("/members/{member_id}/erase", operation_id="erase_member")
def erase_member(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                 member_id: uuid.UUID, body: ErasureCreate) -> ErasureRead:
    """Erase the member's personal data for good (owners); ledgers and sales stay, anonymised.
    Repeating the call changes nothing."""
    result = privacy.erase_member(session, clock=ctx.clock, principal=principal,
                                  member_id=member_id, reason=body.reason,
                                  request_id=body.request_id)
    session.commit()
    return ErasureRead(member_id=result.member_id, erased_at=result.erased_at,
                       erased_by_id=result.erased_by_id, already_erased=result.already_erased,
                       changed=result.changed)


@router.get("/data-requests", operation_id="list_data_requests")
def list_data_requests(
    session: DbSession, principal: CurrentPrincipal,
    request_status: Annotated[RequestStatus | None, Query(alias="status")] = None,
    kind: RequestKind | None = None, member_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=privacy.MAX_LIST)] = 100,
) -> list[DataRequestRead]:
    """Members' requests for a copy or an erasure of their data, oldest first."""
    rows = privacy.list_requests(session, actor=principal, status=request_status, kind=kind,
                                 member_id=member_id, limit=limit)
    return [DataRequestRead.model_validate(r) for r in rows]


@router.post("/members/{member_id}/data-requests", status_code=status.HTTP_201_CREATED,
             operation_id="create_data_request")
def create_data_request(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                        member_id: uuid.UUID, body: DataRequestCreate) -> DataRequestRead:
    """Record a member's request made in person or by phone (a pending one is returned)."""
    request = privacy.request_data(session, clock=ctx.clock, actor=principal,
                                   member_id=member_id, kind=body.kind, source="staff")
    session.commit()
    return DataRequestRead.model_validate(request)


@router.post("/data-requests/{request_id}/cancel", operation_id="cancel_data_request")
def cancel_data_request(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                        request_id: uuid.UUID) -> DataRequestRead:
    """Close a pending request without fulfilling it (withdrawn, or made by mistake)."""
    request = privacy.cancel_request(session, clock=ctx.clock, actor=principal,
                                     request_id=request_id)
    session.commit()
    return DataRequestRead.model_validate(request)
