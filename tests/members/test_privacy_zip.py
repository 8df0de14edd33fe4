"""The member's data as a zip of CSV files: the same content as the JSON export, audited."""

from __future__ import annotations

import csv
import io
import uuid
import zipfile
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.models import AuditEntry
from patron.core.clock import FixedClock
from patron.core.errors import PermissionDenied
from patron.members import privacy
from tests.factories import World
from tests.members.privacy_support import Rich, rich_member

BOM = "\ufeff".encode()


@pytest.fixture
def rich(session: Session, clock: FixedClock, world: World) -> Rich:
    return rich_member(session, clock, world)


def _zip(session: Session, clock: FixedClock, world: World, member_id: uuid.UUID,
         batch: int = privacy.ZIP_BATCH) -> tuple[zipfile.ZipFile, list[bytes]]:
    plan = privacy.begin_zip_export(session, clock=clock, principal=auth.principal_for_user(
        world.manager_a), member_id=member_id)
    chunks = list(privacy.zip_export(session, export=plan, currency="CNY", batch=batch))
    return zipfile.ZipFile(io.BytesIO(b"".join(chunks))), chunks


def _csv(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    raw = archive.read(name)
    assert raw.startswith(BOM), f"{name} has no byte-order mark"
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def _same(rows: list[dict[str, str]], records: list[dict[str, Any]]) -> None:
    """CSV rows hold the JSON rows' values, cell for cell, in the same order."""
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        for key, value in record.items():
            assert row[key] == privacy.csv_cell(value), key


def test_the_zip_holds_what_the_json_holds_table_by_table(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    manager = auth.principal_for_user(world.manager_a)
    data = privacy.export_member(session, clock=clock, principal=manager,
                                 member_id=rich.member.id)
    archive, chunks = _zip(session, clock, world, rich.member.id, batch=1)
    assert len(chunks) > len(data["records"])  # produced as read, not in one piece
    names = set(archive.namelist())
    assert names == {"README.txt", "profile.csv", "account.csv", "consents.csv",
                     *(f"records/{t}.csv" for t in data["records"])}
    for table, records in data["records"].items():
        _same(_csv(archive, f"records/{table}.csv"), records)
    profile = _csv(archive, "profile.csv")
    assert len(profile) == 1 and profile[0]["record"] == "member"
    _same(profile, [data["profile"]])
    _same(_csv(archive, "consents.csv"), data["consents"])
    account = _csv(archive, "account.csv")[0]
    assert account["wallet_total_minor"] == "40000"
    assert account["wallet_total_formatted"] == "¥400.00"
    assert account["points_available"] == str(data["points"]["available"])
    notes = _csv(archive, "records/member_notes.csv")
    assert notes[0]["body"].startswith(rich.name) and notes[0]["author_name"] == "cashier-a"


def test_amounts_come_with_a_formatted_column_and_chinese_survives_excel(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    archive, _ = _zip(session, clock, world, rich.member.id)
    entries = _csv(archive, "records/wallet_entries.csv")
    columns = list(entries[0])
    for name in (c for c in columns if c.endswith("_minor")):
        formatted = name.removesuffix("_minor") + "_formatted"
        assert columns[columns.index(name) + 1] == formatted
    top_up = next(e for e in entries if e["principal_delta_minor"] == "50000")
    assert top_up["principal_delta_formatted"] == "¥500.00"
    readme = archive.read("README.txt").decode("utf-8-sig")
    for name in archive.namelist():
        if name != "README.txt":
            assert name in readme, name
    assert "principal_delta_minor, principal_delta_formatted" in readme
    member_csv = archive.read("records/member_notes.csv").decode("utf-8-sig")
    assert "Zhao Xiaoyu" in member_csv
    survey = _csv(archive, "records/survey_responses.csv")
    assert survey[0]["comment"].startswith(rich.name)


def test_the_zip_is_audited_like_the_json_and_refused_below_manager(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    for user in (world.cashier_a, world.manager_b):
        with pytest.raises(PermissionDenied):
            privacy.begin_zip_export(session, clock=clock,
                                     principal=auth.principal_for_user(user),
                                     member_id=rich.member.id)
    archive, _ = _zip(session, clock, world, rich.member.id)
    entries = list(session.scalars(select(AuditEntry).where(
        AuditEntry.action == "member.data_exported")))
    assert len(entries) == 1 and entries[0].actor_user_id == world.manager_a.id
    details = entries[0].details
    assert details["format"] == "zip"
    csv_files = [n for n in archive.namelist() if n.startswith("records/")]
    assert sorted(f"records/{t}.csv" for t in details["tables"]) == sorted(csv_files)
    assert details["rows"] == sum(len(_csv(archive, n)) for n in csv_files)


def test_an_erased_members_zip_holds_only_what_erasure_kept(
    session: Session, clock: FixedClock, world: World, rich: Rich
) -> None:
    privacy.erase_member(session, clock=clock, principal=auth.principal_for_user(world.owner),
                         member_id=rich.member.id, reason="their request")
    archive, _ = _zip(session, clock, world, rich.member.id)
    everything = "".join(archive.read(n).decode("utf-8-sig") for n in archive.namelist())
    for secret in rich.secrets:
        assert secret not in everything, secret
    assert _csv(archive, "account.csv")[0]["erased_at"] == clock.now().isoformat()
    assert _csv(archive, "records/wallet_entries.csv")  # the books stay
