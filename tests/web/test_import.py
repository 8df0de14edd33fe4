"""The import page: upload, mapping pre-filled from the headers, dry run, report, import."""

from __future__ import annotations

import dataclasses
import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.core.db import Database
from patron.members.models import Member
from tests.factories import World
from tests.web.helpers import web_login

CSV = (
    "姓名,手机号码,生日,备注\n"
    "韩梅梅,13912345678,1990-08-15,喜欢燕麦奶\n"
    "李雷,12345,1988-02-30,\n"
    "王芳,13800138000,,VIP\n"
).encode()


def _count(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Member)) or 0


def _upload(client: TestClient, csrf: str, world: World, content: bytes = CSV,
            name: str = "members.csv") -> str:
    r = client.post("/members/import", data={"csrf_token": csrf,
                                             "default_store_id": str(world.store_a.id)},
                    files={"file": (name, content, "text/csv")})
    assert r.status_code == 200, r.text
    return r.text


def _form_of(html: str) -> dict[str, str]:
    """The mapping form's values as the browser would send them."""
    form = html.split('action="/members/import/run"')[1].split("</form>")[0]
    values = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    for name, body in re.findall(r'<select id="[^"]+" name="([^"]+)">(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', body)
        values[name] = chosen.group(1) if chosen else ""
    return values


def test_upload_shows_mapping_suggested_from_the_headers(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    html = _upload(client, csrf, world)
    values = _form_of(html)
    assert values["map_name"] == "姓名" and values["map_phone"] == "手机号码"
    assert values["map_birthday"] == "生日" and values["map_preferences"] == "备注"
    assert values["map_email"] == ""
    assert "韩梅梅" in html  # the sample rows
    assert _count(db) == 0


def test_dry_run_reports_every_rejected_row_and_saves_nothing(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    values = _form_of(_upload(client, csrf, world)) | {"dry_run": "on"}
    r = client.post("/members/import/run", data=values)
    assert r.status_code == 200
    assert "Dry run: nothing was saved" in r.text
    report = r.text.split('id="report"')[1]
    rows = re.findall(r'<td class="num mono">(\d+)</td><td>([^<]*)</td><td>([^<]*)</td>', report)
    assert {(row, column) for row, column, _ in rows} == {("3", "Mobile phone"), ("3", "Birthday")}
    assert _count(db) == 0
    # ...then the same parked file is imported for real, without uploading it again
    values.pop("dry_run")
    r = client.post("/members/import/run", data=values)
    assert r.status_code == 200 and "Import finished" in r.text
    assert _count(db) == 2
    again = client.post("/members/import/run", data=values)  # the parked file is gone
    assert again.status_code == 410 and "upload it again" in again.text


def test_unreadable_file_is_an_error_on_the_file_field(client: TestClient, world: World) -> None:
    csrf = web_login(client, "manager-a")
    r = client.post("/members/import", data={"csrf_token": csrf},
                    files={"file": ("old.xls", b"\xd0\xcf\x11\xe0", "application/vnd.ms-excel")})
    assert r.status_code == 422
    assert 'id="e-file">Old .xls workbooks cannot be read' in r.text


def test_mapping_without_a_phone_column_is_refused_on_the_form(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    values = _form_of(_upload(client, csrf, world)) | {"map_phone": ""}
    r = client.post("/members/import/run", data=values)
    assert r.status_code == 422
    assert 'id="e-mapping">Choose the column that holds: phone' in r.text
    assert _count(db) == 0


def test_manager_cannot_import_into_another_managers_store(
    client: TestClient, world: World, db: Database
) -> None:
    csrf = web_login(client, "manager-a")
    values = _form_of(_upload(client, csrf, world)) | {"default_store_id": str(world.store_b.id)}
    assert client.post("/members/import/run", data=values).status_code == 403
    assert _count(db) == 0


def test_someone_elses_upload_token_opens_nothing(client: TestClient, world: World) -> None:
    csrf = web_login(client, "manager-a")
    values = _form_of(_upload(client, csrf, world))
    csrf_b = web_login(client, "owner")
    r = client.post("/members/import/run", data=values | {"csrf_token": csrf_b})
    assert r.status_code == 410


def test_too_large_upload_is_refused_before_it_is_read(
    client: TestClient, world: World, app: FastAPI
) -> None:
    ctx = app.state.ctx
    app.state.ctx = dataclasses.replace(
        ctx, settings=ctx.settings.model_copy(update={"max_upload_bytes": 1000}))
    csrf = web_login(client, "manager-a")
    r = client.post("/members/import", data={"csrf_token": csrf},
                    files={"file": ("big.csv", b"x" * 200_000, "text/csv")})
    assert r.status_code == 413 and "The file is too large" in r.text
