"""Member import (multipart upload) and export (streamed CSV).

Thin: parse the request, call ``members.importer``, commit, shape the answer. Included in
the app before the members router, so ``/members/export.csv`` is not read as a member id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.auth.enums import Role
from patron.auth.principal import require_role
from patron.core.clock import local_today
from patron.core.errors import PatronError, ValidationFailed
from patron.members import importer

router = APIRouter(prefix="/members", tags=["members"])


class RowErrorRead(BaseModel):
    row: int
    field: str
    message: str
    value: str | None


class ImportReportRead(BaseModel):
    """What an import did (or, for a dry run, would do); ``errors`` lists every problem."""

    dry_run: bool
    total: int
    imported: int
    rejected: int
    errors: list[RowErrorRead]


def _parse_mapping(raw: str | None) -> dict[str, str] | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValidationFailed("mapping must be a JSON object: {\"phone\": \"手机\"}",
                               "mapping") from exc
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationFailed("mapping must map field names to column names (strings)",
                               "mapping")
    return value


@router.post("/import", operation_id="import_members")
def import_members(
    ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
    file: Annotated[UploadFile, File(description="A .csv (UTF-8 or GBK) or .xlsx file")],
    mapping: Annotated[str | None, Form(
        description="JSON object field -> column header; guessed from the headers if omitted",
    )] = None,
    dry_run: Annotated[bool, Form(description="Validate everything, write nothing")] = False,
    home_store_id: Annotated[uuid.UUID | None, Form(
        description="Home store of rows without one (default: the caller's store)")] = None,
) -> ImportReportRead:
    """Import members from a spreadsheet; bad rows are reported, good rows kept."""
    # Refuse before reading a large upload for someone who may not import at all.
    require_role(principal, Role.MANAGER, users_only=True)
    limit = ctx.settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise _too_large(limit)
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    filename = file.filename or ""
    table = importer.read_table(data, filename)
    chosen = _parse_mapping(mapping)
    report = importer.import_members(
        session, clock=ctx.clock, actor=principal, region=ctx.settings.default_region,
        table=table, mapping=chosen if chosen is not None else importer.suggest_mapping(
            table.headers), dry_run=dry_run, default_store_id=home_store_id, filename=filename)
    if not dry_run:
        session.commit()
    return ImportReportRead(
        dry_run=report.dry_run, total=report.total, imported=report.imported,
        rejected=report.rejected,
        errors=[RowErrorRead(row=e.row, field=e.field, message=e.message, value=e.value)
                for e in report.errors])


def _too_large(limit: int) -> PatronError:
    return PatronError(f"The file is larger than {limit // (1024 * 1024)} MB", "file",
                       "payload_too_large", 413)


@router.get(
    "/export.csv", operation_id="export_members_csv", response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}},
                     "description": "Active members as CSV (UTF-8 with BOM)"}},
)
def export_members_csv(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                       home_store_id: uuid.UUID | None = None) -> StreamingResponse:
    """Download active members as CSV; managers get their stores, owners every store.

    The columns import back unchanged (``POST /members/import``).
    """
    plan = importer.prepare_export(session, clock=ctx.clock, viewer=principal,
                                   home_store_id=home_store_id)
    session.commit()  # the audit entry is durable before any data leaves

    def body() -> Iterator[str]:
        # A session of its own: the request's session is closed once the handler returns,
        # while the body is still streaming.
        with ctx.db.read() as read_session:
            yield from plan.chunks(read_session)

    day = local_today(ctx.clock, ctx.settings.default_timezone).isoformat()
    return StreamingResponse(
        body(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="members-{day}.csv"'})
