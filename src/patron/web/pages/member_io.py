"""Member import (upload, map columns, dry run, report) and CSV export.

Import takes two posts. The upload is read (``importer.read_table``) and parked in a
private temporary file under a random token, and the page shows the mapping form,
pre-filled by ``importer.suggest_mapping``, with a few sample rows. The second post runs
``importer.import_members`` on the parked file, as a dry run or for real, and shows the
report with every rejected row and its reason. After a dry run the same file can be
imported for real without uploading it again. The parked file is deleted after a real
import and swept after a day; it lives on this machine, so behind a load balancer the
two posts must reach the same server (sticky sessions), or the file is uploaded again.

Export streams CSV from a read transaction of its own, after the audit entry has been
committed by ``importer.prepare_export`` (managers and owners; phones masked for roles
that may not see them).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.core.db import Database
from patron.members import importer
from patron.members import service as members
from patron.members.models import Store
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, attempt
from patron.web.i18n import N_
from patron.web.routing import web_router
from patron.web.templating import render

router = web_router()

UPLOAD_FIELDS = ("file", "default_store_id")
MAP_FIELDS = ("mapping", "default_store_id", "home_store_id", "file", "dry_run")
SAMPLE_ROWS = 3
PARK_DIR_NAME = "patron-imports"
PARK_MAX_AGE_S = 24 * 3600
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")

#: Import targets in the language of the page (``importer.FIELDS`` describes them in English).
FIELD_LABELS = {
    "name": N_("Name"), "phone": N_("Mobile phone"), "email": N_("E-mail"),
    "gender": N_("Gender"), "birthday": N_("Birthday"),
    "birthday_calendar": N_("Birthday calendar (solar / lunar)"),
    "birth_leap_month": N_("Lunar leap month"), "tags": N_("Tags"),
    "preferences": N_("Preferences and notes"), "home_store": N_("Home store (code or name)"),
    "referral_source": N_("Referral source"), "sms_consent": N_("SMS consent"),
    "email_consent": N_("E-mail consent"), "card_no": N_("Card number"),
}

#: What each target accepts, in the language of the page (falls back to ``importer.FIELDS``).
FIELD_HELP = {
    "name": N_("Required."),
    "phone": N_("Required. Numbers without a country code are read as local numbers."),
    "email": N_("An e-mail address."),
    "gender": N_("male, female or other (男/女)."),
    "birthday": N_("YYYY-MM-DD, YYYY/MM/DD, YYYYMMDD, MM-DD without a year, or a date cell."),
    "birthday_calendar": N_("solar or lunar (公历/农历); solar when empty."),
    "birth_leap_month": N_("yes/no: the lunar birthday is in a leap month (闰月)."),
    "tags": N_("Several tags separated by ; , ， 、 or |."),
    "preferences": N_("Free text (备注)."),
    "home_store": N_("Store code or name; else the default store below."),
    "referral_source": N_("How the member found the shop (来源)."),
    "sms_consent": N_("yes/no, true/false, 1/0, 是/否 or Y/N."),
    "email_consent": N_("yes/no, true/false, 1/0, 是/否 or Y/N."),
    "card_no": N_("From a previous system; kept if unique, else a new one is issued."),
}


# ---------------------------------------------------------------- parking uploads


def _park_dir() -> Path:
    path = Path(tempfile.gettempdir()) / PARK_DIR_NAME
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _parked_path(principal: Principal, token: str) -> Path | None:
    """The parked file of this user and token (a token alone cannot open another's file)."""
    if not _TOKEN_RE.match(token):
        return None
    return _park_dir() / f"{principal.id}-{token}"


def _park(principal: Principal, data: bytes) -> str:
    """Keep an upload for the mapping step; also sweeps files older than a day."""
    now = time.time()
    for old in _park_dir().iterdir():
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > PARK_MAX_AGE_S:
                old.unlink()
    token = secrets.token_urlsafe(24)
    path = _parked_path(principal, token)
    assert path is not None
    path.write_bytes(data)
    path.chmod(0o600)
    return token


def _load_parked(principal: Principal, token: str) -> bytes | None:
    path = _parked_path(principal, token)
    if path is None or not path.is_file():
        return None
    return path.read_bytes()


# ---------------------------------------------------------------- pages


def _stores(session: Session, principal: Principal) -> list[Store]:
    return [s for s in members.list_stores(session) if principal.can_access_store(s.id)]


def _render_upload(page: Page, session: Session, form: Form, status: int = 200) -> Response:
    return render(page, "members/import.html", status=status, step="upload", form=form,
                  stores=_stores(session, principal_of(page)))


def _render_mapping(page: Page, session: Session, form: Form, table: importer.Table,
                    *, status: int = 200, report: importer.ImportReport | None = None
                    ) -> Response:
    return render(page, "members/import.html", status=status, step="map", form=form,
                  stores=_stores(session, principal_of(page)), headers=table.headers,
                  sample=table.rows[:SAMPLE_ROWS], row_count=len(table.rows),
                  fields=list(importer.FIELDS), field_labels=FIELD_LABELS,
                  field_help={t: FIELD_HELP.get(t, d) for t, d in importer.FIELDS.items()},
                  report=report)


@router.get("/members/import")
def import_page(page: SignedInPage, session: Db) -> Response:
    principal = principal_of(page)
    require_role(principal, Role.MANAGER, users_only=True)
    form = Form.initial({"default_store_id": principal.default_store_id}, UPLOAD_FIELDS)
    return _render_upload(page, session, form)


@router.post("/members/import")
def upload(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    """Read the uploaded sheet and show the column mapping form."""
    principal = principal_of(page)
    require_role(principal, Role.MANAGER, users_only=True)
    form = Form.posted(data, UPLOAD_FIELDS)
    upload_file = data.get("file")
    if not isinstance(upload_file, UploadFile) or not upload_file.filename:
        form.add("file", page.gettext(N_("Choose a CSV or Excel file")))
        return _render_upload(page, session, form, status=422)
    content = upload_file.file.read(page.app.settings.max_upload_bytes + 1)
    if len(content) > page.app.settings.max_upload_bytes:
        form.add("file", page.gettext(N_("The file is too large")))
        return _render_upload(page, session, form, status=413)
    filename = Path(upload_file.filename).name[:200]
    table = attempt(page, form, lambda: importer.read_table(content, filename))
    if table is None:
        return _render_upload(page, session, form, status=422)
    token = _park(principal, content)
    mapping = importer.suggest_mapping(table.headers)
    values: dict[str, object] = {f"map_{t}": h for t, h in mapping.items()}
    values |= {"token": token, "filename": filename, "dry_run": True,
               "default_store_id": form.get("default_store_id")}
    return _render_mapping(page, session, Form.initial(values, MAP_FIELDS), table)


@router.post("/members/import/run")
def run_import(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    """Import the parked file with the chosen mapping; a dry run writes nothing."""
    principal = principal_of(page)
    require_role(principal, Role.MANAGER, users_only=True)
    form = Form.posted(data, MAP_FIELDS)
    content = _load_parked(principal, form.get("token"))
    if content is None:
        form = Form(fields=frozenset(UPLOAD_FIELDS))
        form.add("file", page.gettext(N_("The uploaded file has expired: upload it again")))
        return _render_upload(page, session, form, status=410)
    filename = form.get("filename") or "upload.csv"
    table = importer.read_table(content, filename)
    mapping = {t: form.get(f"map_{t}") for t in importer.FIELDS if form.get(f"map_{t}")}
    dry_run = form.checked("dry_run")
    store_id = form.uuid_value(page, "default_store_id")
    report = attempt(page, form, lambda: importer.import_members(
        session, clock=page.app.clock, actor=principal, region=page.app.settings.default_region,
        table=table, mapping=mapping, dry_run=dry_run, default_store_id=store_id,
        filename=filename), aliases={"home_store_id": "default_store_id"})
    if report is None or dry_run:
        session.rollback()
        return _render_mapping(page, session, form, table, report=report,
                               status=422 if report is None else 200)
    session.commit()
    path = _parked_path(principal, form.get("token"))
    if path is not None:
        path.unlink(missing_ok=True)
    return render(page, "members/import.html", step="done", form=form, report=report,
                  field_labels=FIELD_LABELS, stores=[])


def _stream(db: Database, plan: importer.ExportPlan) -> Iterator[str]:
    with db.read() as session:
        yield from plan.chunks(session)


@router.get("/members/export.csv")
def export_csv(page: SignedInPage) -> Response:
    """Download the members the viewer may export; the export is in the audit log.

    A GET that writes (the audit entry), so it opens a write transaction of its own and
    commits it before the first byte is sent.
    """
    principal = principal_of(page)
    store_id = None
    with contextlib.suppress(ValueError):
        store_id = uuid.UUID(page.request.query_params.get("home_store_id", ""))
    with page.app.db.write() as session:
        plan = importer.prepare_export(session, clock=page.app.clock, viewer=principal,
                                       home_store_id=store_id)
    stamp = page.app.clock.now().strftime("%Y%m%d-%H%M")
    headers = {"Content-Disposition": f'attachment; filename="members-{stamp}.csv"',
               "Cache-Control": "no-store"}
    return StreamingResponse(_stream(page.app.db, plan), media_type="text/csv; charset=utf-8",
                             headers=headers)
