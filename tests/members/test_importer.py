"""Member import and export at the service level (SQLite here, PostgreSQL in CI)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron import cli
from patron.auth import audit
from patron.auth import service as auth
from patron.auth.enums import PrincipalKind, Role
from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import PermissionDenied, ValidationFailed
from patron.core.events import OutboxEvent
from patron.members import importer, rules
from patron.members import service as members
from patron.members.importer import RowError, Table
from patron.members.models import Anniversary, ConsentEvent, Member, MemberTag
from tests.factories import World, make_member

HEADERS = ["name", "phone", "email", "birthday", "birthday_calendar", "tags", "home_store",
           "sms_consent", "email_consent"]


def _csv(headers: list[str], rows: list[list[str]], *, encoding: str = "utf-8",
         delimiter: str = ",") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def _import(session: Session, clock: FixedClock, table: Table, *, actor: Principal | None = None,
            dry_run: bool = False, world: World | None = None,
            mapping: dict[str, str] | None = None) -> importer.ImportReport:
    return importer.import_members(
        session, clock=clock, actor=actor, region="CN", table=table,
        mapping=mapping if mapping is not None else importer.suggest_mapping(table.headers),
        dry_run=dry_run, default_store_id=world.store_a.id if world else None,
        filename="members.csv")


def _count(session: Session, model: type[object]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _phones(session: Session) -> set[str | None]:
    return set(session.scalars(select(Member.phone)))


# ---------------------------------------------------------------- the mixed file

MIXED = [
    ["张三", "13911110001", "zs@example.com", "1990-08-15", "solar", "VIP;常客", "A", "yes", "no"],
    ["李四", "12345", "", "", "", "", "", "", ""],
    ["王五", "139 1111 0001", "", "", "", "", "", "", ""],
    ["赵六", "13900000009", "", "", "", "", "", "", ""],
    ["钱七", "13911110005", "", "next tuesday", "", "", "", "", ""],
    ["孙八", "13911110006", "", "2022-02-30", "lunar", "", "", "", ""],
    ["周九", "13911110007", "", "", "", "", "Z9", "", ""],
    ["", "13911110008", "", "", "", "", "", "", ""],
    ["吴十", "13911110009", "wu@example.com", "08-15", "", "", "B", "no", "yes"],
    ["", "", "", "", "", "", "", "", ""],  # a blank line: skipped, numbering kept
    ["郑十一", "+86 139 1111 0010", "", "19900815", "", "", "store b", "", ""],
]


def test_good_rows_are_kept_and_every_bad_row_is_reported_with_row_field_and_value(
    session: Session, clock: FixedClock, world: World
) -> None:
    make_member(session, clock, world.store_a, phone="13900000009")
    table = importer.read_table(_csv(HEADERS, MIXED), "members.csv")
    owner = auth.principal_for_user(world.owner)

    report = _import(session, clock, table, actor=owner, world=world)

    assert (report.total, report.imported, report.rejected) == (10, 3, 7)
    assert [(e.row, e.field, e.value) for e in report.errors] == [
        (3, "phone", "12345"),
        (4, "phone", "139 1111 0001"),
        (5, "phone", "13900000009"),
        (6, "birthday", "next tuesday"),
        (7, "birthday", "2022-02-30"),
        (8, "home_store", "Z9"),
        (9, "name", ""),
    ]
    messages = {e.row: e.message for e in report.errors}
    assert "Not a valid phone number" in messages[3]
    assert messages[4] == "Same phone number as row 2"
    assert "already exists" in messages[5]
    assert "Not a date" in messages[6]
    assert "Lunar 2022-2-30 does not exist" in messages[7]
    assert "Unknown store" in messages[8]
    assert "Name is required" in messages[9]

    kept = {m.phone: m for m in session.scalars(select(Member))}
    assert set(kept) == {"+8613900000009", "+8613911110001", "+8613911110009",
                         "+8613911110010"}
    zhang = kept["+8613911110001"]
    assert (zhang.name, zhang.email, zhang.birth_year, zhang.birth_month, zhang.birth_day,
            zhang.birthday_calendar) == ("张三", "zs@example.com", 1990, 8, 15, "solar")
    assert sorted(t.tag for t in zhang.tags) == ["VIP", "常客"]
    assert zhang.home_store_id == zhang.enrolled_store_id == world.store_a.id
    assert zhang.enrolled_by_id == world.owner.id
    assert rules.is_valid_card_no(zhang.card_no)
    wu = kept["+8613911110009"]
    assert (wu.home_store_id, wu.birth_year, wu.birth_month, wu.email_consent) == (
        world.store_b.id, None, 8, True)
    assert kept["+8613911110010"].home_store_id == world.store_b.id  # by name, any case


def test_import_writes_one_audit_entry_and_one_event_with_the_counts(
    session: Session, clock: FixedClock, world: World
) -> None:
    table = importer.read_table(_csv(HEADERS, MIXED), "members.csv")
    report = _import(session, clock, table, actor=auth.principal_for_user(world.owner),
                     world=world)
    counts = {"file": "members.csv", "total": report.total, "imported": report.imported,
              "rejected": report.rejected}
    [entry] = audit.list_entries(session, action="member.imported")
    assert entry.details == counts and entry.actor_label == "owner"
    events = session.scalars(select(OutboxEvent)).all()
    assert [(e.type, e.payload) for e in events] == [("members.imported", counts)]


def test_dry_run_checks_the_database_too_and_writes_nothing(
    session: Session, clock: FixedClock, world: World
) -> None:
    make_member(session, clock, world.store_a, phone="13900000009")
    before = (_count(session, Member), _count(session, OutboxEvent), _count(session, MemberTag),
              len(audit.list_entries(session)))
    table = importer.read_table(_csv(HEADERS, MIXED), "members.csv")
    owner = auth.principal_for_user(world.owner)

    dry = _import(session, clock, table, actor=owner, world=world, dry_run=True)

    assert dry.dry_run and (dry.imported, dry.rejected) == (3, 7)
    assert any(e.row == 5 and "already exists" in e.message for e in dry.errors)
    after = (_count(session, Member), _count(session, OutboxEvent), _count(session, MemberTag),
             len(audit.list_entries(session)))
    assert after == before
    real = _import(session, clock, table, actor=owner, world=world)
    assert (real.imported, real.rejected, real.errors) == (dry.imported, dry.rejected, dry.errors)


def test_consent_is_recorded_as_evidence_from_the_import_by_the_actor(
    session: Session, clock: FixedClock, world: World
) -> None:
    manager = auth.principal_for_user(world.manager_a)
    table = Table(headers=["姓名", "手机", "邮箱", "短信授权", "邮件授权"], rows=[
        ["甲", "13911112001", "a@example.com", "是", "Y"],
        ["乙", "13911112002", "", "否", "0"],
        ["丙", "13911112003", "c@example.com", "true", "no"],
    ])
    report = _import(session, clock, table, actor=manager)  # default: the manager's store

    assert report.imported == 3
    by_phone = {m.phone: m for m in session.scalars(select(Member))}
    events = session.scalars(select(ConsentEvent).order_by(ConsentEvent.seq)).all()
    assert sorted((e.member_id, e.channel) for e in events) == sorted([
        (by_phone["+8613911112001"].id, "sms"), (by_phone["+8613911112001"].id, "email"),
        (by_phone["+8613911112003"].id, "sms")])
    assert {(e.source, e.granted, e.by_user_id, e.store_id, e.at, e.note) for e in events} == {
        ("import", True, world.manager_a.id, world.store_a.id, clock.now(),
         "imported from members.csv")}
    assert by_phone["+8613911112001"].sms_consent and by_phone["+8613911112001"].email_consent
    assert not by_phone["+8613911112002"].sms_consent
    assert {m.enrolled_by_id for m in by_phone.values()} == {world.manager_a.id}


def test_only_managers_and_owners_import_and_only_into_their_stores(
    session: Session, clock: FixedClock, world: World
) -> None:
    table = Table(headers=["name", "phone", "home_store"],
                  rows=[["A1", "13911113001", "A"], ["B1", "13911113002", "B"]])
    cashier = auth.principal_for_user(world.cashier_a)
    pos_key = Principal(kind=PrincipalKind.API_KEY, id=world.owner.id, label="till",
                        role=Role.CASHIER, store_ids=frozenset({world.store_a.id}))
    for actor in (cashier, pos_key):
        with pytest.raises(PermissionDenied):
            _import(session, clock, table, actor=actor)
    manager_a = auth.principal_for_user(world.manager_a)
    with pytest.raises(PermissionDenied):
        importer.import_members(session, clock=clock, actor=manager_a, region="CN",
                                table=table, mapping={"name": "name", "phone": "phone"},
                                dry_run=True, default_store_id=world.store_b.id)
    report = _import(session, clock, table, actor=manager_a)
    assert report.imported == 1
    assert report.errors == [RowError(3, "home_store", "You don't manage this store", "B")]


# ---------------------------------------------------------------- formats


def test_xlsx_with_date_number_and_boolean_cells(
    session: Session, clock: FixedClock, world: World
) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["会员姓名", "手机号码（必填）", "出生日期", "短信授权", "会员卡号"])
    sheet.append(["张三", 13911114001, datetime(1990, 8, 15), True, "880000000018"])
    sheet.append(["李四", "139-1111-4002", "1985-02-29", False, None])
    sheet.append([None, None, None, None, None])
    sheet.append(["王五", 13911114003.0, "1979/1/2", "否", None])
    buffer = io.BytesIO()
    workbook.save(buffer)

    table = importer.read_table(buffer.getvalue(), "会员.xlsx")

    assert table.rows[0] == ["张三", "13911114001", "1990-08-15", "true", "880000000018"]
    mapping = importer.suggest_mapping(table.headers)
    assert mapping == {"name": "会员姓名", "phone": "手机号码（必填）", "birthday": "出生日期",
                       "sms_consent": "短信授权", "card_no": "会员卡号"}
    report = _import(session, clock, table, world=world)
    assert (report.total, report.imported) == (3, 2)
    assert [(e.row, e.field) for e in report.errors] == [(3, "birthday")]  # 1985 isn't leap
    zhang = session.scalars(select(Member).where(Member.name == "张三")).one()
    assert (zhang.card_no, zhang.birth_year, zhang.sms_consent) == ("880000000018", 1990, True)
    wang = session.scalars(select(Member).where(Member.name == "王五")).one()
    assert (wang.phone, wang.birth_month, wang.birth_day) == ("+8613911114003", 1, 2)


def test_gbk_csv_from_chinese_excel_with_semicolons_and_chinese_headers(
    session: Session, clock: FixedClock, world: World
) -> None:
    headers = ["姓名", "手机号", "性别", "生日", "农历", "闰月", "标签", "备注", "门店",
               "推荐来源", "短信授权", "邮件授权", "会员卡号", "邮箱"]
    rows = [["张三", "13911115001", "男", "2020/4/8", "是", "闰", "VIP，常客、咖啡|茶",
             "少糖", "A", "朋友介绍", "是", "否", "", "zs@example.com"],
            ["李四", "13911115002", "女", "1992.3.1", "公历", "", "", "", "B", "大众点评",
             "否", "否", "", ""]]
    data = _csv(headers, rows, encoding="gbk", delimiter=";")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")

    table = importer.read_table(data, "export.CSV")

    assert table.headers == headers
    mapping = importer.suggest_mapping(table.headers)
    assert mapping == {"name": "姓名", "phone": "手机号", "email": "邮箱", "gender": "性别",
                       "birthday": "生日", "birthday_calendar": "农历",
                       "birth_leap_month": "闰月", "tags": "标签", "preferences": "备注",
                       "home_store": "门店", "referral_source": "推荐来源",
                       "sms_consent": "短信授权", "email_consent": "邮件授权",
                       "card_no": "会员卡号"}
    report = _import(session, clock, table)
    assert (report.imported, report.errors) == (2, [])
    zhang = session.scalars(select(Member).where(Member.name == "张三")).one()
    assert (zhang.gender, zhang.birthday_calendar, zhang.birth_year, zhang.birth_month,
            zhang.birth_day, zhang.birth_leap_month) == ("male", "lunar", 2020, 4, 8, True)
    assert sorted(t.tag for t in zhang.tags) == ["VIP", "咖啡", "常客", "茶"]
    assert (zhang.preferences, zhang.referral_source) == ("少糖", "朋友介绍")
    li = session.scalars(select(Member).where(Member.name == "李四")).one()
    assert (li.gender, li.birthday_calendar, li.home_store_id) == (
        "female", "solar", world.store_b.id)


@pytest.mark.parametrize(("header_line", "expected"), [
    ("name\tphone", ["name", "phone"]),
    ("name;phone", ["name", "phone"]),
    ("\ufeffname,phone", ["name", "phone"]),
])
def test_separator_and_bom_are_recognised(header_line: str, expected: list[str]) -> None:
    sep = "\t" if "\t" in header_line else ";" if ";" in header_line else ","
    table = importer.read_table(f"{header_line}\r\nLi{sep}13911116001\r\n".encode(), "x.csv")
    assert table.headers == expected and table.rows == [["Li", "13911116001"]]


def test_utf16_text_export_is_read() -> None:
    data = "姓名\t手机\r\n张三\t13911116002\r\n".encode("utf-16")
    assert importer.read_table(data, "unicode.txt").rows == [["张三", "13911116002"]]


@pytest.mark.parametrize(("data", "filename", "code"), [
    (b"name,phone\n", "members.pdf", "unsupported_file_type"),
    (b"", "members.csv", "empty_file"),
    (b"  \n", "members.csv", "empty_file"),
    (b"name,phone\r\n\r\n", "members.csv", "empty_file"),
    (b"\r\nname,phone\r\nLi,139\r\n", "members.csv", "empty_file"),
    (b"PK\x03\x04 not really a zip", "members.xlsx", "unreadable_file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "members.csv", "unreadable_file"),
    (b"d0 cf 11 e0", "members.xls", "unsupported_file_type"),
])
def test_unreadable_files_are_refused_naming_the_file(data: bytes, filename: str,
                                                      code: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        importer.read_table(data, filename)
    assert (err.value.field, err.value.code) == ("file", code)


def test_too_many_rows_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "MAX_ROWS", 3)
    lines = ["name,phone"] + [f"n{i},1391111700{i}" for i in range(4)]
    with pytest.raises(ValidationFailed) as err:
        importer.read_table("\n".join(lines).encode(), "big.csv")
    assert (err.value.field, err.value.code) == ("file", "too_many_rows")
    assert len(importer.read_table("\n".join(lines[:4]).encode(), "ok.csv").rows) == 3


def test_trailing_blank_rows_and_columns_are_dropped_but_inner_blank_rows_keep_numbering(
) -> None:
    data = b"name,phone,,\r\nA,1,,\r\n,,,\r\nB,2\r\n,,\r\n\r\n"
    table = importer.read_table(data, "x.csv")
    assert table.headers == ["name", "phone"]
    assert table.rows == [["A", "1"], ["", ""], ["B", "2"]]


@pytest.mark.parametrize(("value", "expected"), [
    ("1990-08-15", (1990, 8, 15)), ("1990/8/15", (1990, 8, 15)), ("19900815", (1990, 8, 15)),
    ("1990.08.15", (1990, 8, 15)), ("1990年8月15日", (1990, 8, 15)), ("08-15", (None, 8, 15)),
    ("8/15", (None, 8, 15)), ("8月15日", (None, 8, 15)), ("1990-08-15 00:00:00", (1990, 8, 15)),
    ("02-29", (None, 2, 29)),
])
def test_birthday_formats(session: Session, clock: FixedClock, world: World, value: str,
                          expected: tuple[int | None, int, int]) -> None:
    table = Table(headers=["name", "phone", "birthday"],
                  rows=[["Li", "13911118001", value]])
    report = _import(session, clock, table, world=world)
    assert report.errors == []
    member = session.scalars(select(Member)).one()
    assert (member.birth_year, member.birth_month, member.birth_day) == expected


@pytest.mark.parametrize(("column", "value", "field"), [
    ("birthday", "15/08/1990", "birthday"),
    ("birthday", "1990-02-29", "birthday"),
    ("birth_leap_month", "yes", "birth_leap_month"),  # a solar birthday has no leap month
    ("gender", "robot", "gender"),
    ("email", "not-an-email", "email"),
    ("sms_consent", "maybe", "sms_consent"),
    ("tags", "ok;" + "x" * 65, "tags"),
    ("card_no", "12 34", "card_no"),
    ("birthday_calendar", "martian", "birthday_calendar"),
])
def test_each_bad_cell_names_its_field(session: Session, clock: FixedClock, world: World,
                                       column: str, value: str, field: str) -> None:
    headers = ["name", "phone", "birthday", column] if column != "birthday" else [
        "name", "phone", "birthday"]
    row = ["Li", "13911119001", "1990-08-15", value] if column != "birthday" else [
        "Li", "13911119001", value]
    report = _import(session, clock, Table(headers=headers, rows=[row]), world=world)
    assert report.rejected == 1
    assert [(e.row, e.field) for e in report.errors] == [(2, field)]
    assert report.errors[0].value == value


def test_a_row_with_more_cells_than_headers_is_rejected(
    session: Session, clock: FixedClock, world: World
) -> None:
    table = importer.read_table(b"name,phone\nLi, Lei,13911119101\nHan,13911119102\n", "x.csv")
    report = _import(session, clock, table, world=world)
    assert report.imported == 1
    assert [(e.row, e.field) for e in report.errors if e.field == "row"] == [(2, "row")]


# ---------------------------------------------------------------- card numbers


def test_card_numbers_from_an_old_system_are_kept_when_unique(
    session: Session, clock: FixedClock, world: World
) -> None:
    old = make_member(session, clock, world.store_a)
    table = Table(headers=["name", "phone", "card"], rows=[
        ["A", "13911120001", "VIP0001"],
        ["B", "13911120002", "VIP0001"],
        ["C", "13911120003", old.card_no],
        ["D", "13911120004", ""],
    ])
    report = _import(session, clock, table, world=world)
    assert [(e.row, e.field, e.message) for e in report.errors] == [
        (3, "card_no", "Same card number as row 2"),
        (4, "card_no", "This card number already belongs to a member")]
    cards = {m.name: m.card_no for m in session.scalars(select(Member))}
    assert cards["A"] == "VIP0001"
    assert rules.is_valid_card_no(cards["D"]) and len(cards["D"]) == 12


# ---------------------------------------------------------------- mapping


def test_suggest_mapping_reads_the_export_headers_and_common_variants() -> None:
    exported = importer.suggest_mapping(list(importer.EXPORT_COLUMNS))
    assert set(exported) == set(importer.FIELDS) - {"referral_source"}
    assert all(exported[t] == t for t in exported)
    assert importer.suggest_mapping(["Customer Name", "Mobile Number", "E-mail Address",
                                     "Date of Birth", "Store Code"]) == {
        "name": "Customer Name", "phone": "Mobile Number", "email": "E-mail Address",
        "birthday": "Date of Birth", "home_store": "Store Code"}
    # 手机 is preferred over 电话; a Chinese header that contains a known name is found
    assert importer.suggest_mapping(["客户名字", "电话", "手机", "会员手机号码", "所属门店编号"]) == {
        "name": "客户名字", "phone": "手机", "home_store": "所属门店编号"}
    assert importer.suggest_mapping(["名字", "电话", "名字"]) == {"name": "名字", "phone": "电话"}


@pytest.mark.parametrize("mapping", [
    {"name": "name", "phone": "phone", "shoe_size": "name"},
    {"name": "name", "phone": "Telefon"},
    {"name": "name"},
    {"name": "dup", "phone": "phone"},
])
def test_bad_mappings_are_refused_naming_mapping(session: Session, clock: FixedClock,
                                                 world: World, mapping: dict[str, str]) -> None:
    table = Table(headers=["name", "phone", "dup", "dup"], rows=[["Li", "13911121001", "", ""]])
    with pytest.raises(ValidationFailed) as err:
        _import(session, clock, table, world=world, mapping=mapping)
    assert err.value.field == "mapping"


def test_without_a_default_store_the_home_store_column_is_required(
    session: Session, clock: FixedClock, world: World
) -> None:
    table = Table(headers=["name", "phone"], rows=[["Li", "13911121002"]])
    with pytest.raises(ValidationFailed) as err:
        _import(session, clock, table)
    assert err.value.field == "home_store_id"


# ---------------------------------------------------------------- export


def _export(session: Session, viewer: Principal | None, clock: FixedClock,
            home_store_id: uuid.UUID | None = None) -> tuple[str, list[dict[str, str]]]:
    out = io.StringIO()
    count = importer.export_members(session, out=out, viewer=viewer, clock=clock,
                                    home_store_id=home_store_id)
    text = out.getvalue()
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert count == len(rows)
    return text, rows


def test_export_is_csv_with_bom_for_managers_and_owners_and_is_audited(
    session: Session, clock: FixedClock, world: World
) -> None:
    a = make_member(session, clock, world.store_a, name="韩梅梅", phone="13911122001",
                    tags=["VIP", "常客"], birthday_calendar="lunar", birth_month=8,
                    birth_day=15, sms_consent=True)
    make_member(session, clock, world.store_b, name="Li Lei", phone="13911122002")
    manager = auth.principal_for_user(world.manager_a)

    text, rows = _export(session, manager, clock)

    assert text.startswith("\ufeffcard_no,name,phone,")
    assert text.splitlines()[0].removeprefix("\ufeff").split(",") == list(
        importer.EXPORT_COLUMNS)
    assert rows == [{  # a manager exports the members of the stores they manage
        "card_no": a.card_no, "name": "韩梅梅", "phone": "+8613911122001", "email": "",
        "gender": "", "birthday": "08-15", "birthday_calendar": "lunar",
        "birth_leap_month": "no", "tags": "VIP; 常客", "preferences": "", "home_store": "A",
        "joined_at": clock.now().isoformat(), "sms_consent": "yes", "email_consent": "no"}]
    entry = audit.list_entries(session, action="member.exported")[0]
    assert entry.details["count"] == 1 and entry.actor_label == "manager-a"

    _, everyone = _export(session, auth.principal_for_user(world.owner), clock)
    assert sorted(r["name"] for r in everyone) == ["Li Lei", "韩梅梅"]
    _, only_b = _export(session, None, clock, home_store_id=world.store_b.id)
    assert [r["name"] for r in only_b] == ["Li Lei"]
    with pytest.raises(PermissionDenied):
        _export(session, manager, clock, home_store_id=world.store_b.id)


def test_export_is_refused_to_cashiers_and_pos_keys_and_masks_phones_when_not_full(
    session: Session, clock: FixedClock, world: World
) -> None:
    make_member(session, clock, world.store_a, phone="13911123001")
    cashier = auth.principal_for_user(world.cashier_a)
    pos_key = Principal(kind=PrincipalKind.API_KEY, id=world.owner.id, label="till",
                        role=Role.CASHIER, store_ids=frozenset({world.store_a.id}))
    for viewer in (cashier, pos_key):
        assert not viewer.sees_full_phone
        with pytest.raises(PermissionDenied):
            _export(session, viewer, clock)
    # Should the rule ever let a viewer without full phones export, the phones are masked.
    plan = importer.ExportPlan(count=1, full_phones=False, home_store_id=None, store_ids=None)
    text = "".join(plan.chunks(session))
    assert "139****3001" in text and "13911123001" not in text


def test_formula_like_cells_are_escaped_for_excel_and_unescaped_on_import(
    session: Session, clock: FixedClock, world: World
) -> None:
    make_member(session, clock, world.store_a, name="=HYPERLINK(\"x\")", phone="13911124001",
                preferences="+1 shot", tags=["@home"])
    text, rows = _export(session, None, clock)
    assert rows[0]["name"] == "'=HYPERLINK(\"x\")"
    assert rows[0]["preferences"] == "'+1 shot" and rows[0]["tags"] == "'@home"
    assert rows[0]["phone"] == "+8613911124001"  # a phone is a number to Excel, not a formula
    session.execute(delete(MemberTag))
    session.execute(delete(Member))
    report = _import(session, clock, importer.read_table(text.encode(), "x.csv"))
    assert report.errors == []
    m = session.scalars(select(Member)).one()
    assert (m.name, m.preferences, [t.tag for t in m.tags]) == (
        "=HYPERLINK(\"x\")", "+1 shot", ["@home"])


def _snapshot(session: Session) -> list[tuple[object, ...]]:
    session.expire_all()
    return sorted(
        (m.card_no, m.name, m.phone, m.email, m.gender, m.birthday_calendar, m.birth_year,
         m.birth_month, m.birth_day, m.birth_leap_month, m.preferences, m.home_store_id,
         m.sms_consent, m.email_consent, tuple(sorted(t.tag for t in m.tags)))
        for m in session.scalars(select(Member).where(Member.status == "active")))


def test_export_then_import_into_an_empty_database_gives_the_same_members(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = auth.principal_for_user(world.owner)
    make_member(session, clock, world.store_a, name="韩梅梅", phone="13911125001",
                email="Han.MeiMei@Example.com", gender="female", birthday_calendar="lunar",
                birth_year=2020, birth_month=4, birth_day=8, birth_leap_month=True,
                tags=["VIP", "常客"], preferences="少糖\n不要冰", sms_consent=True,
                email_consent=True)
    make_member(session, clock, world.store_b, name="Li Lei", phone="13911125002",
                gender="male", birth_month=2, birth_day=29, preferences="-")
    make_member(session, clock, world.store_b, name="O'Brien, Pat", phone="+44 7911 123456",
                birth_year=1988, birth_month=12, birth_day=31)
    gone = make_member(session, clock, world.store_a, phone="13911125004")
    members.delete_member(session, clock=clock, actor=owner, member_id=gone.id)  # not exported
    before = _snapshot(session)

    text, _ = _export(session, owner, clock)
    session.execute(delete(ConsentEvent))
    session.execute(delete(Anniversary))
    session.execute(delete(MemberTag))
    session.execute(delete(Member))
    assert _count(session, Member) == 0
    report = _import(session, clock, importer.read_table(text.encode("utf-8"), "export.csv"),
                     actor=owner)

    assert (report.imported, report.errors) == (3, [])
    assert _snapshot(session) == before


# ---------------------------------------------------------------- property


KINDS = ("valid", "bad_phone", "dup_phone", "existing", "bad_date", "no_name",
         "unknown_store")
EXISTING = "+8613911130000"


@st.composite
def _rows(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    n = draw(st.integers(min_value=1, max_value=25))
    out: list[tuple[str, list[str]]] = []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        name = draw(st.text(alphabet="李梅Ab ,\"'\n", min_size=1, max_size=12)
                    .filter(lambda s: s.strip()))
        phone = f"139111{31000 + i:05d}"
        birthday = draw(st.sampled_from(["", "1990-01-31", "03-08", "20000229"]))
        store = draw(st.sampled_from(["", "A", "b", "Store A"]))
        if kind == "bad_phone":
            phone = draw(st.sampled_from(["12345", "abc", "", "1391113100"]))
        elif kind == "dup_phone":
            phone = out[draw(st.integers(0, len(out) - 1))][1][1] if out else phone
        elif kind == "existing":
            phone = EXISTING[3:]
        elif kind == "bad_date":
            birthday = draw(st.sampled_from(["1990-02-30", "tomorrow", "13-01"]))
        elif kind == "no_name":
            name = " "
        elif kind == "unknown_store":
            store = "nowhere"
        out.append((kind, [name, phone, birthday, store]))
    return out


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows())
def test_property_imported_rows_are_exactly_the_valid_first_occurrences(
    session: Session, clock: FixedClock, world: World, rows: list[tuple[str, list[str]]]
) -> None:
    try:
        make_member(session, clock, world.store_a, phone=EXISTING)
        data = _csv(["name", "phone", "birthday", "store"], [r for _, r in rows])
        report = _import(session, clock, importer.read_table(data, "p.csv"), world=world)

        # the model: a row is imported when it has no fault of its own and its phone is
        # neither a member yet nor claimed by an earlier row with a valid phone
        claimed: set[str] = {EXISTING}
        expected: set[str] = set()
        for kind, (_, phone, _, _) in rows:
            try:
                e164 = rules.normalise_phone(phone, "CN")
            except ValidationFailed:
                continue
            fresh = e164 not in claimed
            claimed.add(e164)
            if fresh and kind in ("valid", "dup_phone"):
                expected.add(e164)
        assert report.total == len(rows)
        assert report.imported + report.rejected == report.total
        assert report.imported == len(expected)
        assert _phones(session) == expected | {EXISTING}
        assert {e.row for e in report.errors} == set(range(2, len(rows) + 2)) - {
            i + 2 for i, (_, r) in enumerate(rows)
            if r[1] and _e164_or_none(r[1]) in expected
            and _first_row_with(rows, r[1]) == i}
        assert all(e.row >= 2 and e.field and e.message for e in report.errors)
    finally:
        session.rollback()


def _e164_or_none(phone: str) -> str | None:
    try:
        return rules.normalise_phone(phone, "CN")
    except ValidationFailed:
        return None


def _first_row_with(rows: list[tuple[str, list[str]]], phone: str) -> int:
    e164 = _e164_or_none(phone)
    return next(i for i, (_, r) in enumerate(rows) if _e164_or_none(r[1]) == e164)


# ---------------------------------------------------------------- the command line


def test_cli_import_and_export_with_exit_codes_and_error_report(
    database_url: str, db: Database, world: World, tmp_path: Path
) -> None:
    runner = CliRunner()
    source = tmp_path / "会员.csv"
    source.write_bytes(_csv(["Who", "Tel", "门店"], [["张三", "13911150001", ""],
                                                    ["李四", "123", "A"]], encoding="gbk"))
    report = tmp_path / "errors.csv"
    args = ["members", "import", str(source), "--map", "name=Who", "--map", "phone=Tel",
            "--store", "B", "--database-url", database_url]

    dry = runner.invoke(cli.app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Dry run" in dry.output and _members(db) == 0
    done = runner.invoke(cli.app, [*args, "--errors", str(report)])
    assert done.exit_code == 0, done.output
    assert "Not a valid phone number" in done.output
    assert report.read_text("utf-8-sig").splitlines()[1].startswith("3,phone,")
    again = runner.invoke(cli.app, args)
    assert again.exit_code == 1  # every row rejected: one exists now, one is bad
    unknown = runner.invoke(cli.app, [*args[:-4], "--store", "nowhere",
                                      "--database-url", database_url])
    assert unknown.exit_code == 2

    target = tmp_path / "out.csv"
    exported = runner.invoke(cli.app, ["members", "export", str(target), "--store", "B",
                                       "--database-url", database_url])
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(target.read_text("utf-8-sig"))))
    assert [(r["name"], r["phone"], r["home_store"]) for r in rows] == [
        ("张三", "+8613911150001", "B")]


def _members(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Member)) or 0
