"""Member import (CSV or XLSX from a previous system) and export (CSV for Excel).

Design overview
---------------
*Import* turns a spreadsheet into members in three steps:

1. ``read_table`` decodes the file into a header row and rows of strings. CSV may be UTF-8
   (with or without the BOM Excel writes), UTF-16 or GBK/GB18030 as a Chinese Excel saves
   it; the separator (``,`` ``;`` or tab) is read off the header line. XLSX is read with
   openpyxl in read-only mode; date cells become ``YYYY-MM-DD``.
2. ``suggest_mapping`` guesses which column holds which member field from English and
   Chinese headers; the person confirms or corrects the mapping.
3. ``import_members`` validates every row with the same rules as enrolment
   (``members.rules``: phones in E.164, birthdays, lunar dates, tags; e-mail syntax; the
   lengths of ``MemberCreate``) and keeps the good rows even when others fail. Rows are
   processed in chunks of ``CHUNK_ROWS``: each chunk is validated in Python, checked for
   duplicates within the file (the first row with a phone or card number keeps it, later
   ones are rejected naming it) and against the database with one ``IN (...)`` query per
   kind, then bulk-inserted with Core ``insert()`` (members, tags, consent evidence).
   Enrolling row by row would cost about ten statements per member; this costs a handful
   per chunk, so 100,000 rows import in seconds on SQLite (``bench/import_members.py``).

A rejected row is reported as ``RowError(row, field, message, value)``, where ``row`` is
the line a person sees in Excel (the header is row 1) and ``field`` the import target
(``phone``, ``birthday``...). A row with several problems gets one error per problem.
A dry run does everything above, database checks included, and writes nothing. A real
import writes one ``member.imported`` audit entry and one ``members.imported`` outbox event
with the counts rather than a ``member.joined`` per row: care rules greet people who
walk in, not a back catalogue moved over from an old system.

*Export* writes the active members as CSV with a UTF-8 BOM (so Excel shows Chinese
correctly), in the column names ``suggest_mapping`` recognises, so an export imports back
into an empty database as the same members. Rows stream in chunks (``yield_per``) and are
never all in memory. Cells that Excel would run as a formula (``=``, ``+``, ``-``, ``@``)
get a leading apostrophe (OWASP "CSV injection"); the importer strips it again.

Services flush, never commit: the request or CLI command that calls them owns the
transaction.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import PurePath
from typing import Any, TextIO, cast

import email_validator
import openpyxl
from sqlalchemy import Table as SqlTable
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.core.clock import Clock, SystemClock
from patron.core.errors import Conflict, ValidationFailed
from patron.core.events import emit
from patron.core.ids import new_id
from patron.members import rules
from patron.members import service as members_service
from patron.members.enums import Calendar, Channel, Gender, MemberStatus
from patron.members.models import ConsentEvent, Member, MemberTag, Store

#: Data rows a file may have (the header row not counted); larger files are refused.
MAX_ROWS = 1_000_000
#: Columns a file may have; real member lists have a few dozen at most.
MAX_COLUMNS = 200
#: Rows validated, checked and inserted together: big enough that per-statement overhead
#: vanishes, small enough that ``IN (...)`` lists stay far below SQLite's variable limit.
CHUNK_ROWS = 2_000
#: Rows fetched per round trip when exporting.
EXPORT_CHUNK_ROWS = 2_000

# Lengths of ``members.schemas.MemberCreate`` and the ``members`` columns.
MAX_NAME = 200
MAX_PHONE_INPUT = 40
MAX_EMAIL = 320
MAX_PREFERENCES = 4000
MAX_REFERRAL_SOURCE = 200
MAX_TAGS = 50
MAX_CARD_NO = 20

FIELDS: dict[str, str] = {
    "name": "Name (required)",
    "phone": "Mobile phone; numbers without a country code are read in the default region"
             " (required)",
    "email": "E-mail address",
    "gender": "Gender: male, female or other (男/女)",
    "birthday": "Birthday: YYYY-MM-DD, YYYY/MM/DD, YYYYMMDD, MM-DD (no year) or a date cell",
    "birthday_calendar": "Calendar of the birthday: solar or lunar (公历/农历), or a yes/no"
                         " 'lunar' column",
    "birth_leap_month": "Lunar birthday in a leap month (闰月): yes/no",
    "tags": "Tags, separated by ; , ， 、 or |",
    "preferences": "Notes and preferences (备注)",
    "home_store": "Home store: store code or store name (else the default store)",
    "referral_source": "How the member found the shop (来源)",
    "sms_consent": "Agreed to marketing SMS: yes/no, true/false, 1/0, 是/否, Y/N",
    "email_consent": "Agreed to marketing e-mail: yes/no, true/false, 1/0, 是/否, Y/N",
    "card_no": "Card number from a previous system; kept if unique (else one is generated)",
}

#: Column names of the export, in order. Each is recognised by ``suggest_mapping``
#: (``joined_at`` is informational and not imported).
EXPORT_COLUMNS: tuple[str, ...] = (
    "card_no", "name", "phone", "email", "gender", "birthday", "birthday_calendar",
    "birth_leap_month", "tags", "preferences", "home_store", "joined_at", "sms_consent",
    "email_consent",
)


@dataclass(frozen=True)
class Table:
    """A sheet as read from a file: the header row and the data rows, all cells as text.

    ``rows[i]`` is line ``i + 2`` of the file as a person sees it; blank lines in the
    middle are kept (as rows of empty strings) so that numbering stays true.
    """

    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class RowError:
    """Why a row was rejected: ``row`` is the line in the file (the header is row 1)."""

    row: int
    field: str
    message: str
    value: str | None


@dataclass
class ImportReport:
    """The outcome of an import; ``imported`` is what a dry run *would* import."""

    dry_run: bool
    total: int
    imported: int
    rejected: int
    errors: list[RowError] = field(default_factory=list)


Progress = Callable[[int, int], None]

# ---------------------------------------------------------------- reading files


def read_table(data: bytes, filename: str) -> Table:
    """Read a ``.csv`` or ``.xlsx`` upload into a ``Table``; errors name the field ``file``.

    The first row holds the column names. Trailing blank rows and columns (Excel leaves
    them behind after formatting) are dropped.
    """
    suffix = PurePath(filename or "").suffix.lower()
    if suffix == ".xls":
        raise ValidationFailed(
            "Old .xls workbooks cannot be read: in Excel choose Save As .xlsx or"
            " CSV UTF-8 and upload that", "file", code="unsupported_file_type")
    if suffix not in (".csv", ".txt", ".tsv", ".xlsx", ".xlsm"):
        raise ValidationFailed(
            f"Cannot read {suffix or 'files without an extension'}: upload a .csv or .xlsx file",
            "file", code="unsupported_file_type")
    if not data.strip():
        raise ValidationFailed("The file is empty", "file", code="empty_file")
    if suffix in (".xlsx", ".xlsm"):
        return _collect(_xlsx_rows(data))
    return _collect(_csv_rows(data))


def _unreadable(message: str) -> ValidationFailed:
    return ValidationFailed(message, "file", code="unreadable_file")


def _decode(data: bytes) -> str:
    """UTF-8 (BOM or not), UTF-16 with a BOM, or GB18030 (a superset of GBK and GB2312)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _unreadable("The file says it is UTF-16 but is not") from exc
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise _unreadable("The file is neither UTF-8 nor GBK text: save it as CSV UTF-8")


def _sniff_delimiter(text: str) -> str:
    """The separator is whichever of , ; or tab the header line uses most."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(data: bytes) -> Iterator[list[str]]:
    text = _decode(data)
    if "\x00" in text:
        raise _unreadable("The file holds binary data, not CSV text")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
    try:
        yield from reader
    except csv.Error as exc:
        raise _unreadable(f"Line {reader.line_num} cannot be read as CSV: {exc}") from exc


def _cell_text(value: object) -> str:
    """An Excel cell as the text a person sees: dates as ISO, 1.38e10 as 13800138000."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _xlsx_rows(data: bytes) -> Iterator[list[str]]:
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zip, XML and key errors alike for bad files
        raise _unreadable("The file is not a readable .xlsx workbook") from exc
    try:
        # The sheet Excel opens on is the one a person looked at (a chart sheet has no rows).
        active: Any = workbook.active
        sheet: Any = active if hasattr(active, "iter_rows") else workbook.worksheets[0]
        sheet.reset_dimensions()  # some writers store a wrong size; read what is there
        try:
            for values in sheet.iter_rows(values_only=True):
                yield [_cell_text(v) for v in values]
        except Exception as exc:
            raise _unreadable("The workbook is damaged and cannot be read") from exc
    finally:
        workbook.close()


def _too_many_rows() -> ValidationFailed:
    return ValidationFailed(f"The file has more than {MAX_ROWS:,} rows: split it", "file",
                            code="too_many_rows")


def _collect(rows: Iterable[list[str]]) -> Table:
    iterator = iter(rows)
    first = next(iterator, None)
    headers = [h.replace("\ufeff", "").strip() for h in first or []]
    while headers and not headers[-1]:
        headers.pop()
    if not headers:
        raise ValidationFailed("Row 1 must hold the column names, and it is empty", "file",
                               code="empty_file")
    if len(headers) > MAX_COLUMNS:
        raise ValidationFailed(f"The file has {len(headers)} columns; at most {MAX_COLUMNS}",
                               "file", code="too_many_columns")
    width = len(headers)
    out: list[list[str]] = []
    blank_run = 0
    for raw in iterator:
        cells = [c.strip() for c in raw[:MAX_COLUMNS]]
        if not any(cells):
            blank_run += 1  # kept only if data follows, so trailing blank rows cost nothing
            continue
        if blank_run:
            if len(out) + blank_run >= MAX_ROWS:
                raise _too_many_rows()
            out.extend([[""] * width for _ in range(blank_run)])
            blank_run = 0
        if len(cells) < width:
            cells.extend([""] * (width - len(cells)))
        elif len(cells) > width:
            while len(cells) > width and not cells[-1]:
                cells.pop()
        out.append(cells)
        if len(out) > MAX_ROWS:
            raise _too_many_rows()
    if not out:
        raise ValidationFailed("The file has column names but no rows below them", "file",
                               code="empty_file")
    return Table(headers=headers, rows=out)


# ---------------------------------------------------------------- mapping

# Header spellings per target, most specific first, in the normalised form of ``_norm``.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "name": ("name", "fullname", "membername", "customername", "姓名", "名字", "会员姓名",
             "客户姓名", "顾客姓名", "会员名称", "客户名称", "称呼"),
    "phone": ("phone", "mobile", "mobilephone", "mobileno", "mobilenumber", "phoneno",
              "phonenumber", "cellphone", "tel", "telephone", "手机", "手机号", "手机号码",
              "会员手机", "电话", "电话号码", "联系电话", "联系方式"),
    "email": ("email", "emailaddress", "mail", "邮箱", "电子邮箱", "邮箱地址", "电子邮件",
              "邮件地址", "邮件"),
    "gender": ("gender", "sex", "性别"),
    "birthday": ("birthday", "birthdate", "dateofbirth", "dob", "生日", "出生日期",
                 "出生年月日", "生日日期"),
    "birthday_calendar": ("birthdaycalendar", "calendar", "lunar", "islunar", "农历",
                          "是否农历", "生日类型", "历法", "公历农历", "阴历阳历", "阴历", "阳历"),
    "birth_leap_month": ("birthleapmonth", "leapmonth", "leap", "闰月", "是否闰月", "闰"),
    "tags": ("tags", "tag", "labels", "label", "标签", "会员标签", "客户标签"),
    "preferences": ("preferences", "preference", "notes", "note", "remarks", "remark",
                    "comments", "comment", "备注", "偏好", "喜好", "备注偏好", "口味"),
    "home_store": ("homestore", "store", "storecode", "storename", "shop", "branch", "门店",
                   "所属门店", "归属门店", "开卡门店", "门店编号", "门店代码", "门店名称",
                   "店铺"),
    "referral_source": ("referralsource", "referral", "source", "推荐来源", "来源",
                        "来源渠道", "获客渠道", "渠道"),
    "sms_consent": ("smsconsent", "smsoptin", "sms", "短信授权", "接收短信", "允许短信",
                    "短信营销", "短信"),
    "email_consent": ("emailconsent", "emailoptin", "邮件授权", "接收邮件", "允许邮件",
                      "邮件营销"),
    "card_no": ("cardno", "card", "cardnumber", "membercardno", "membercard", "memberno",
                "membershipno", "卡号", "会员卡号", "会员卡", "会员编号"),
}

_BRACKETED = re.compile(r"[(（\[【].*?[)）\]】]")
_PUNCTUATION = re.compile(r"[\s_\-./:：*#？?]+")


def _norm(header: str) -> str:
    """``"手机号码（必填）"`` -> ``"手机号码"``, ``"E-mail Address"`` -> ``"emailaddress"``."""
    return _PUNCTUATION.sub("", _BRACKETED.sub("", header.lower()))


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def suggest_mapping(headers: list[str]) -> dict[str, str]:
    """Guess ``target field -> header`` from English and Chinese column names.

    Exact names win first (``手机`` before ``电话`` when both exist); then Chinese headers
    that contain a known name (``会员手机号码`` holds ``手机号码``), longest match first.
    Each header and each target is used at most once.
    """
    normalised = [(h, _norm(h)) for h in headers if h.strip()]
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for target, names in _SYNONYMS.items():
        for name in names:
            hit = next((h for h, n in normalised if n == name and h not in used), None)
            if hit is not None:
                mapping[target] = hit
                used.add(hit)
                break
    candidates = sorted(
        ((len(name), target, h) for target, names in _SYNONYMS.items() for name in names
         if _is_cjk(name) for h, n in normalised if name in n),
        key=lambda c: -c[0])
    for _, target, header in candidates:
        if target not in mapping and header not in used:
            mapping[target] = header
            used.add(header)
    return {t: mapping[t] for t in FIELDS if t in mapping}


def _resolve_mapping(headers: list[str], mapping: dict[str, str]) -> dict[str, int]:
    """``target -> column index``; anything unknown or ambiguous names ``mapping``."""
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise ValidationFailed(f"Unknown import field(s): {', '.join(unknown)}; known fields:"
                               f" {', '.join(FIELDS)}", "mapping", code="unknown_field")
    columns: dict[str, int] = {}
    for target, header in mapping.items():
        positions = [i for i, h in enumerate(headers) if h == header and h]
        if not positions:
            raise ValidationFailed(f"The file has no column {header!r} (mapped to {target})",
                                   "mapping", code="unknown_column")
        if len(positions) > 1:
            raise ValidationFailed(f"The file has {len(positions)} columns named {header!r}:"
                                   " rename one", "mapping", code="ambiguous_column")
        columns[target] = positions[0]
    missing = [t for t in ("name", "phone") if t not in columns]
    if missing:
        raise ValidationFailed(f"Choose the column that holds: {', '.join(missing)}",
                               "mapping", code="required")
    return columns


# ---------------------------------------------------------------- parsing cells

_TRUE = frozenset({"yes", "y", "true", "t", "1", "是", "对", "同意"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "否", "不", "不同意"})
_SOLAR = frozenset({"solar", "gregorian", "公历", "阳历", "新历"})
_LUNAR = frozenset({"lunar", "农历", "阴历", "旧历"})
_GENDERS = {
    "male": Gender.MALE, "m": Gender.MALE, "man": Gender.MALE, "男": Gender.MALE,
    "男性": Gender.MALE, "先生": Gender.MALE,
    "female": Gender.FEMALE, "f": Gender.FEMALE, "woman": Gender.FEMALE, "女": Gender.FEMALE,
    "女性": Gender.FEMALE, "女士": Gender.FEMALE,
    "other": Gender.OTHER, "其他": Gender.OTHER,
}
_GENDER_UNSPECIFIED = frozenset({"unknown", "u", "未知", "保密", "-"})
_TAG_SPLIT = re.compile(r"[;,，、|；｜]")
_FULL_DATE = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_MONTH_DAY = re.compile(r"^(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_CARD_NO = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]*$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SCIENTIFIC = re.compile(r"^\d(?:\.\d+)?[eE]\+?\d+$")


class _Bad(Exception):
    """A cell that failed validation; becomes a ``RowError`` for its row."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(message)
        self.target = target
        self.message = message


def _parse_bool(value: str, target: str) -> bool:
    key = value.lower()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise _Bad(target, "Expected yes or no (true/false, 1/0, 是/否, Y/N)")


def _parse_calendar(value: str) -> Calendar:
    key = value.lower()
    if key in _SOLAR:
        return Calendar.SOLAR
    if key in _LUNAR:
        return Calendar.LUNAR
    if key in _TRUE:  # a yes/no "lunar?" column
        return Calendar.LUNAR
    if key in _FALSE:
        return Calendar.SOLAR
    raise _Bad("birthday_calendar", "Expected solar or lunar (公历/农历), or yes/no for lunar")


def _parse_leap(value: str) -> bool:
    if value in ("闰", "闰月"):
        return True
    return _parse_bool(value, "birth_leap_month")


def _parse_date_parts(value: str) -> tuple[int | None, int, int]:
    """``(year or None, month, day)`` of a birthday as typed; the range check comes later."""
    for pattern in (_FULL_DATE, _COMPACT_DATE):
        m = pattern.match(value)
        if m:
            return int(m[1]), int(m[2]), int(m[3])
    m = _MONTH_DAY.match(value)
    if m:
        return None, int(m[1]), int(m[2])
    raise _Bad("birthday", "Not a date: use YYYY-MM-DD, YYYY/MM/DD, YYYYMMDD or MM-DD")


_BIRTHDAY_FIELDS = {"birthday_calendar": "birthday_calendar",
                    "birth_leap_month": "birth_leap_month"}


def _parse_tags(value: str) -> list[str]:
    tags: dict[str, None] = {}
    for piece in _TAG_SPLIT.split(value):
        if piece.strip():
            tags[rules.normalise_tag(piece)] = None
    if len(tags) > MAX_TAGS:
        raise _Bad("tags", f"At most {MAX_TAGS} tags")
    return sorted(tags)


def _unescape(value: str) -> str:
    """Undo the apostrophe that guards cells starting like a formula (see ``_escape``)."""
    if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
        return value[1:]
    return value


def _escape(value: str) -> str:
    """Keep Excel from running a cell as a formula (OWASP CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


class _StoreIndex:
    """Stores by code (exact, then ignoring case) and by name, loaded once per import."""

    def __init__(self, stores: Sequence[Store]) -> None:
        self.ids = {s.id for s in stores}
        self._by_code = {s.code: s.id for s in stores}
        self._by_code_ci = {s.code.lower(): s.id for s in stores}
        names: dict[str, list[uuid.UUID]] = {}
        for s in stores:
            names.setdefault(s.name.strip().lower(), []).append(s.id)
        self._by_name = names

    def find(self, value: str) -> uuid.UUID:
        found = self._by_code.get(value) or self._by_code_ci.get(value.lower())
        if found is not None:
            return found
        by_name = self._by_name.get(value.lower(), [])
        if len(by_name) == 1:
            return by_name[0]
        if by_name:
            raise _Bad("home_store", "Several stores have this name: use the store code")
        raise _Bad("home_store", "Unknown store: use a store code or name")


# ---------------------------------------------------------------- import


@dataclass
class _Checked:
    """One data row on its way through a chunk."""

    line: int
    errors: list[RowError]
    raw_phone: str = ""
    phone: str | None = None
    card_no: str | None = None
    values: dict[str, Any] | None = None


@dataclass
class _Context:
    columns: dict[str, int]
    region: str
    stores: _StoreIndex
    default_store_id: uuid.UUID | None
    actor: Principal | None
    width: int  # columns in the header


def _validate_row(ctx: _Context, line: int, cells: list[str]) -> _Checked:
    """Check one row with the rules of enrolment; every problem becomes a ``RowError``."""
    checked = _Checked(line=line, errors=[])

    def cell(target: str) -> str:
        index = ctx.columns.get(target)
        return _unescape(cells[index]) if index is not None else ""

    def fail(target: str, message: str, value: str | None = None) -> None:
        checked.errors.append(RowError(line, target, message,
                                       cell(target) if value is None else value))

    needed = max(ctx.columns.values()) + 1
    if len(cells) < needed:  # read_table pads rows; a Table built by hand may not be
        cells = cells + [""] * (needed - len(cells))

    values: dict[str, Any] = {}
    name = cell("name").strip()  # as MemberCreate: surrounding blanks go, inner ones stay
    if not name:
        fail("name", "Name is required")
    elif len(name) > MAX_NAME:
        fail("name", f"A name has at most {MAX_NAME} characters")
    values["name"] = name

    checked.raw_phone = raw_phone = cell("phone")
    if len(raw_phone) > MAX_PHONE_INPUT:
        fail("phone", f"A phone number has at most {MAX_PHONE_INPUT} characters")
    else:
        try:
            checked.phone = rules.normalise_phone(raw_phone, ctx.region)
        except ValidationFailed as exc:
            if _SCIENTIFIC.match(raw_phone):
                fail("phone", "Excel wrote this number as 1.39E+10 and lost digits: format the"
                     " column as text in Excel and save the file again")
            else:
                fail("phone", exc.message)

    card = cell("card_no")
    if card:
        if len(card) > MAX_CARD_NO or not _CARD_NO.match(card):
            fail("card_no", f"A card number is up to {MAX_CARD_NO} letters and digits")
        else:
            checked.card_no = card

    for target, parse in _SIMPLE_FIELDS:
        if target not in ctx.columns:
            continue
        raw = cell(target)
        if not raw:
            continue
        try:
            values[target] = parse(raw)
        except _Bad as bad:
            fail(bad.target, bad.message)
        except ValidationFailed as exc:
            fail(target, exc.message)

    _validate_birthday(cell, fail, values)

    store_raw = cell("home_store")
    store_id = ctx.default_store_id
    if store_raw:
        try:
            store_id = ctx.stores.find(store_raw)
        except _Bad as bad:
            fail("home_store", bad.message)
            store_id = None
        else:
            if ctx.actor is not None and not ctx.actor.can_access_store(store_id):
                fail("home_store", "You don't manage this store")
    elif store_id is None:
        fail("home_store", "No home store: fill in the column or choose a default store")
    values["home_store_id"] = store_id

    if len(cells) > ctx.width and any(cells[ctx.width:]):
        checked.errors.append(RowError(
            line, "row", f"This row has {len(cells)} cells but the header only {ctx.width}"
            " columns: is a separator missing its quotes?", None))
    checked.values = values
    return checked


def _parse_email(value: str) -> str:
    if len(value) > MAX_EMAIL:
        raise _Bad("email", f"An e-mail address has at most {MAX_EMAIL} characters")
    try:
        result = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise _Bad("email", str(exc)) from exc
    return str(result.normalized)


def _parse_gender(value: str) -> str | None:
    key = value.lower()
    if key in _GENDERS:
        return _GENDERS[key].value
    if key in _GENDER_UNSPECIFIED:
        return None
    raise _Bad("gender", "Expected male, female or other (男/女)")


def _parse_preferences(value: str) -> str:
    if len(value) > MAX_PREFERENCES:
        raise _Bad("preferences", f"At most {MAX_PREFERENCES} characters")
    return value


def _parse_referral(value: str) -> str:
    if len(value) > MAX_REFERRAL_SOURCE:
        raise _Bad("referral_source", f"At most {MAX_REFERRAL_SOURCE} characters")
    return value


#: Fields checked on their own, each by one parser; the rest depend on each other.
_SIMPLE_FIELDS: tuple[tuple[str, Callable[[str], Any]], ...] = (
    ("email", _parse_email), ("gender", _parse_gender), ("tags", _parse_tags),
    ("preferences", _parse_preferences), ("referral_source", _parse_referral),
    ("sms_consent", lambda v: _parse_bool(v, "sms_consent")),
    ("email_consent", lambda v: _parse_bool(v, "email_consent")),
)


def _validate_birthday(cell: Callable[[str], str], fail: Callable[..., None],
                       values: dict[str, Any]) -> None:
    """Birthday, calendar and leap month together, through ``rules.validate_birthday``."""
    raw = cell("birthday")
    calendar = Calendar.SOLAR
    leap = False
    ok = True
    if cell("birthday_calendar"):
        try:
            calendar = _parse_calendar(cell("birthday_calendar"))
        except _Bad as bad:
            fail(bad.target, bad.message)
            ok = False
    if cell("birth_leap_month"):
        try:
            leap = _parse_leap(cell("birth_leap_month"))
        except _Bad as bad:
            fail(bad.target, bad.message)
            ok = False
    if not raw:
        if leap and ok:
            fail("birth_leap_month", "A leap month needs a birthday")
        return
    try:
        year, month, day = _parse_date_parts(raw)
    except _Bad as bad:
        fail(bad.target, bad.message)
        return
    if not ok:
        return
    try:
        birthday = rules.validate_birthday(calendar.value, year, month, day, leap)
    except ValidationFailed as exc:
        target = _BIRTHDAY_FIELDS.get(exc.field or "", "birthday")
        fail(target, exc.message, raw if target == "birthday" else None)
        return
    if birthday is not None:
        values.update(birthday_calendar=birthday.calendar.value, birth_year=birthday.year,
                      birth_month=birthday.month, birth_day=birthday.day,
                      birth_leap_month=birthday.leap_month)


def _table(model: type[Any]) -> SqlTable:
    return cast(SqlTable, model.__table__)


def _in_chunks(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _existing(session: Session, column: Any, values: Iterable[str],
              *extra: Any) -> set[str]:
    """Which of ``values`` the ``members`` table already holds in ``column``."""
    wanted = sorted(set(values))
    found: set[str] = set()
    for part in _in_chunks(wanted):
        found.update(session.scalars(select(column).where(column.in_(part), *extra)))
    return found


def import_members(
    session: Session,
    *,
    clock: Clock,
    actor: Principal | None,
    region: str,
    table: Table,
    mapping: dict[str, str],
    dry_run: bool,
    default_store_id: uuid.UUID | None,
    progress: Progress | None = None,
    filename: str | None = None,
) -> ImportReport:
    """Import the rows of ``table`` as members; bad rows are reported, good ones kept.

    ``mapping`` is ``target field -> header`` (see ``FIELDS``, ``suggest_mapping``).
    ``default_store_id`` is the home store of rows without one (the actor's store when
    omitted). ``actor`` None is the operator at the CLI; anyone else must be a manager or
    owner, and only puts members into stores they manage. ``progress(done, total)`` is
    called after each chunk with data rows done and the total. ``filename`` is recorded
    in the audit log. Flushes, never commits.
    """
    if actor is not None:
        require_role(actor, Role.MANAGER, users_only=True)
    columns = _resolve_mapping(table.headers, mapping)
    stores = _StoreIndex(members_service.list_stores(session, include_inactive=True))
    if default_store_id is None and actor is not None:
        default_store_id = actor.default_store_id
    if default_store_id is not None:
        if default_store_id not in stores.ids:
            raise ValidationFailed("Unknown store", "home_store_id", code="unknown_store")
        if actor is not None:
            require_store(actor, default_store_id)
    elif "home_store" not in columns:
        raise ValidationFailed("Choose a default home store or map a home_store column",
                               "home_store_id", code="required")
    ctx = _Context(columns, region, stores, default_store_id, actor, len(table.headers))

    card_index = columns.get("card_no")
    given_cards: set[str] = set()
    total = 0
    for cells in table.rows:
        if any(cells):
            total += 1
            if card_index is not None and card_index < len(cells) and cells[card_index]:
                given_cards.add(cells[card_index])

    report = ImportReport(dry_run=dry_run, total=total, imported=0, rejected=0, errors=[])
    phones_seen: dict[str, int] = {}
    cards_seen: dict[str, int] = {}
    cards_taken = set(given_cards)  # generated numbers never collide with a given one
    now = clock.now()
    user_id = actor.user_id if actor else None
    note = f"imported from {filename}"[:500] if filename else "imported"  # consent evidence
    done = 0
    if progress:
        progress(0, total)

    for start in range(0, len(table.rows), CHUNK_ROWS):
        chunk: list[_Checked] = []
        for offset, cells in enumerate(table.rows[start:start + CHUNK_ROWS]):
            if not any(cells):
                continue
            line = start + offset + 2
            checked = _validate_row(ctx, line, cells)
            if checked.phone is not None:
                first = phones_seen.setdefault(checked.phone, line)
                if first != line:
                    checked.errors.append(RowError(
                        line, "phone", f"Same phone number as row {first}", checked.raw_phone))
            if checked.card_no is not None:
                first = cards_seen.setdefault(checked.card_no, line)
                if first != line:
                    checked.errors.append(RowError(
                        line, "card_no", f"Same card number as row {first}", checked.card_no))
            chunk.append(checked)

        in_db_phones = _existing(session, Member.phone,
                                 [c.phone for c in chunk if c.phone is not None],
                                 Member.status == MemberStatus.ACTIVE.value)
        in_db_cards = _existing(session, Member.card_no,
                                [c.card_no for c in chunk if c.card_no is not None])
        good: list[_Checked] = []
        for c in chunk:
            if c.phone is not None and c.phone in in_db_phones:
                c.errors.append(RowError(c.line, "phone",
                                         "A member with this phone number already exists",
                                         c.raw_phone))
            if c.card_no is not None and c.card_no in in_db_cards:
                c.errors.append(RowError(c.line, "card_no",
                                         "This card number already belongs to a member",
                                         c.card_no))
            if c.errors:
                report.rejected += 1
                report.errors.extend(c.errors)
            else:
                good.append(c)
        report.imported += len(good)
        if not dry_run and good:
            _insert(session, good, now=now, user_id=user_id, cards_taken=cards_taken,
                    note=note)
        done += len(chunk)
        if progress:
            progress(done, total)

    if not dry_run:
        details = {"file": filename or "", "total": report.total,
                   "imported": report.imported, "rejected": report.rejected}
        audit.record(session, clock=clock, actor=actor, action="member.imported",
                     entity_type="member", store_id=default_store_id, details=details)
        emit(session, clock=clock, type="members.imported", store_id=default_store_id,
             payload=details)
        session.flush()
    return report


def _allocate_cards(session: Session, count: int, taken: set[str]) -> list[str]:
    """``count`` new Luhn card numbers, unused in the file and in the database."""
    cards: list[str] = []
    while len(cards) < count:
        fresh: list[str] = []
        while len(fresh) < count - len(cards):
            card = rules.new_card_no()
            if card not in taken:
                taken.add(card)
                fresh.append(card)
        clash = _existing(session, Member.card_no, fresh)
        cards.extend(c for c in fresh if c not in clash)
    return cards


def _insert(session: Session, rows: list[_Checked], *, now: datetime,
            user_id: uuid.UUID | None, cards_taken: set[str], note: str) -> None:
    """Bulk-insert one chunk of valid rows: members, then their tags and consent evidence."""
    session.flush()  # anything the ORM holds goes first, so the Core inserts see it
    new_cards = iter(_allocate_cards(session, sum(1 for r in rows if r.card_no is None),
                                     cards_taken))
    member_rows: list[dict[str, Any]] = []
    tag_rows: list[dict[str, Any]] = []
    consent_rows: list[dict[str, Any]] = []
    for r in rows:
        assert r.values is not None
        assert r.phone is not None
        v = r.values
        member_id = new_id()
        store_id = v["home_store_id"]
        member_rows.append({
            "id": member_id, "card_no": r.card_no or next(new_cards), "phone": r.phone,
            "phone_last4": rules.last4(r.phone), "name": v["name"], "email": v.get("email"),
            "gender": v.get("gender"), "birthday_calendar": v.get("birthday_calendar"),
            "birth_year": v.get("birth_year"), "birth_month": v.get("birth_month"),
            "birth_day": v.get("birth_day"), "birth_leap_month": v.get("birth_leap_month", False),
            "preferences": v.get("preferences", ""), "referral_source": v.get("referral_source"),
            "referred_by_id": None, "home_store_id": store_id, "enrolled_store_id": store_id,
            "enrolled_by_id": user_id, "sms_consent": v.get("sms_consent", False),
            "email_consent": v.get("email_consent", False),
            "status": MemberStatus.ACTIVE.value, "merged_into_id": None, "joined_at": now,
            "updated_at": now, "deleted_at": None,
        })
        tag_rows.extend({"member_id": member_id, "tag": t} for t in v.get("tags", ()))
        for channel in (Channel.SMS, Channel.EMAIL):
            if v.get(f"{channel.value}_consent"):
                consent_rows.append({
                    "id": new_id(), "member_id": member_id, "channel": channel.value,
                    "granted": True, "source": "import", "at": now, "by_user_id": user_id,
                    "store_id": store_id, "note": note,
                })
    try:
        session.execute(insert(_table(Member)), member_rows)
        if tag_rows:
            session.execute(insert(_table(MemberTag)), tag_rows)
        if consent_rows:
            session.execute(insert(_table(ConsentEvent)), consent_rows)
    except IntegrityError as exc:
        # Only possible when someone enrols the same phone while this import runs
        # (PostgreSQL; SQLite serialises writers). Nothing is kept; running again works.
        raise Conflict("A member was added while importing; run the import again", "file",
                       code="import_conflict") from exc


# ---------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportPlan:
    """An export checked and audited up front; ``chunks`` then streams it.

    Splitting the two lets the API commit the audit entry and fail with a proper status
    before the first byte of a streamed download is sent.
    """

    count: int
    full_phones: bool
    home_store_id: uuid.UUID | None
    store_ids: frozenset[uuid.UUID] | None  # None: every store

    def _where(self) -> list[Any]:
        conds: list[Any] = [Member.status == MemberStatus.ACTIVE.value]
        if self.home_store_id is not None:
            conds.append(Member.home_store_id == self.home_store_id)
        elif self.store_ids is not None:
            conds.append(Member.home_store_id.in_(sorted(self.store_ids)))
        return conds

    def batches(self, session: Session) -> Iterator[tuple[str, int]]:
        """CSV text (BOM and header first) with the number of members in it."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        yield "\ufeff" + buffer.getvalue(), 0
        stmt = (
            select(Member.id, Member.card_no, Member.name, Member.phone, Member.email,
                   Member.gender, Member.birthday_calendar, Member.birth_year,
                   Member.birth_month, Member.birth_day, Member.birth_leap_month,
                   Member.preferences, Store.code, Member.joined_at, Member.sms_consent,
                   Member.email_consent)
            .join(Store, Store.id == Member.home_store_id)
            .where(*self._where())
            # UUIDv7 ids sort by creation time (to the millisecond), and walking the primary
            # key needs no sort of a million rows
            .order_by(Member.id)
            .execution_options(yield_per=EXPORT_CHUNK_ROWS)
        )
        for partition in session.execute(stmt).partitions():
            tags: dict[uuid.UUID, list[str]] = {}
            for member_id, tag in session.execute(
                    select(MemberTag.member_id, MemberTag.tag)
                    .where(MemberTag.member_id.in_([row[0] for row in partition]))):
                tags.setdefault(member_id, []).append(tag)
            buffer.seek(0)
            buffer.truncate()
            for row in partition:
                # sorted here, not by the database, so every backend writes the same bytes
                writer.writerow(self._format(row, sorted(tags.get(row[0], []))))
            yield buffer.getvalue(), len(partition)

    def chunks(self, session: Session, *, progress: Progress | None = None) -> Iterator[str]:
        """The CSV text piece by piece; ``progress(done, count)`` after each piece."""
        done = 0
        for text, n in self.batches(session):
            done += n
            yield text
            if progress and n:
                progress(done, max(done, self.count))

    def _format(self, row: Any, tags: list[str]) -> list[str]:
        (_, card_no, name, phone, email, gender, calendar, year, month, day, leap,
         preferences, store_code, joined_at, sms, mail) = row
        birthday = ""
        if month is not None and day is not None:
            birthday = (f"{year:04d}-{month:02d}-{day:02d}" if year is not None
                        else f"{month:02d}-{day:02d}")
        has_birthday = bool(birthday)
        return [
            _escape(card_no), _escape(name),
            (phone or "") if self.full_phones else (rules.mask_phone(phone) or ""),
            _escape(email or ""), gender or "", birthday,
            (calendar or Calendar.SOLAR.value) if has_birthday else "",
            ("yes" if leap else "no") if has_birthday else "",
            _escape("; ".join(tags)), _escape(preferences or ""), _escape(store_code),
            joined_at.isoformat() if joined_at else "",
            "yes" if sms else "no", "yes" if mail else "no",
        ]


def prepare_export(session: Session, *, clock: Clock, viewer: Principal | None,
                   home_store_id: uuid.UUID | None = None) -> ExportPlan:
    """Check who may export what, count the members and write the audit entry.

    Managers and owners only (``viewer`` None is the operator at the CLI). A manager
    exports the members of the stores they manage; an owner, every store. Phones are in
    full for those who may see them (``Principal.sees_full_phone``), masked otherwise.
    """
    store_ids: frozenset[uuid.UUID] | None = None
    if viewer is not None:
        require_role(viewer, Role.MANAGER, users_only=True)
        if home_store_id is not None:
            require_store(viewer, home_store_id)
        store_ids = viewer.visible_store_ids()
    plan = ExportPlan(count=0, full_phones=viewer is None or viewer.sees_full_phone,
                      home_store_id=home_store_id, store_ids=store_ids)
    count = session.scalar(select(func.count()).select_from(Member).where(*plan._where())) or 0
    plan = dataclasses.replace(plan, count=count)
    filters: dict[str, Any] = {"format": "csv",
                               "home_store_id": str(home_store_id) if home_store_id else None,
                               "full_phones": plan.full_phones}
    if viewer is not None:
        members_service.audit_export(session, clock=clock, actor=viewer, count=count,
                                     filters=filters)
    else:  # audit_export wants a Principal; the operator is recorded as "system"
        audit.record(session, clock=clock, actor=None, action="member.exported",
                     entity_type="member", details={"count": count, "filters": filters})
    session.flush()
    return plan


def export_members(
    session: Session,
    *,
    out: TextIO,
    viewer: Principal | None,
    home_store_id: uuid.UUID | None = None,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> int:
    """Write active members to ``out`` as CSV (UTF-8 BOM first); returns how many.

    Open ``out`` with ``encoding="utf-8", newline=""``. The audit entry is written in
    ``session``; the caller commits. See ``prepare_export`` for who may export what.
    """
    plan = prepare_export(session, clock=clock or SystemClock(), viewer=viewer,
                          home_store_id=home_store_id)
    written = 0
    if progress:
        progress(0, plan.count)
    for text, n in plan.batches(session):
        out.write(text)
        written += n
        if progress and n:
            progress(written, max(written, plan.count))
    return written
