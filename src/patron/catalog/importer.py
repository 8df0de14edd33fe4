"""Catalogue import: products (and, if asked, their categories) from a CSV or XLSX file.

Design overview
---------------
1. ``read_table`` decodes the upload into a header row and rows of text. CSV may be UTF-8
   (with or without the BOM Excel writes), UTF-16 with a BOM, or GBK/GB18030 as a Chinese
   Excel saves it; the separator (``,`` ``;`` or tab) is read off the header line. XLSX is
   read with openpyxl in read-only mode.
2. ``map_columns`` finds each field's column from English or Chinese headers (``SKU`` /
   ``编码``, ``名称``, ``分类``, ``价格`` / ``售价``, ``补货周期(天)``, ``是否上架`` ...). A
   header naming the unit decides it: ``价格(分)`` and ``price_minor`` are minor units,
   ``价格`` and ``price`` major units (``12.50``), parsed exactly (``core.money``).
3. ``import_products`` checks every row with ``catalog.rules`` (the API's rules) and
   upserts by SKU: a new SKU creates a product, a known one updates its name, price,
   category, cycle and flag. Bad rows are reported and the good ones kept.

What a cell means
-----------------
* ``sku`` and ``name`` are required on every row; ``sku`` and ``name`` columns must exist.
* ``category`` is a category code (in any case), or the name of exactly one category (a
  Chinese file often says ``咖啡豆`` rather than ``coffee``). An unknown one is created when
  ``create_categories`` is set (named from a ``category_name`` column if there is one),
  and rejects the row otherwise. Required for a new product; empty keeps an existing
  product's category.
* ``price`` / ``price_minor``: required for a new product; empty keeps the price.
* ``replenish_days``: when the column exists, the cell is the product's own cycle, and an
  empty cell means none of its own (the category's applies). Without the column, cycles
  are left alone.
* ``active``: yes/no, 1/0, 是/否, 上架/下架; empty means on sale for a new product and
  unchanged for an existing one.

A SKU that appears twice in one file is ambiguous: the first row keeps it and later rows
are rejected naming it. Importing the same file twice leaves the catalogue as the first
import left it (the second reports every row as unchanged).

``RowError.row`` is the row a person sees in Excel (the header is row 1); a row with
several problems gets one error per problem. A dry run does all the checks, database
lookups included, and writes nothing. A real import writes one ``product.imported`` audit
entry with the counts (and one ``category.created`` per new category). Services flush,
never commit: the caller owns the transaction.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

import openpyxl
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.principal import Principal
from patron.catalog import rules
from patron.catalog import service as catalog
from patron.catalog.models import Category, Product
from patron.catalog.schemas import CategoryCreate
from patron.core.clock import Clock
from patron.core.errors import Conflict, ValidationFailed

#: Data rows a file may have; a catalogue of a chain has thousands to tens of thousands.
MAX_ROWS = 100_000
MAX_COLUMNS = 100
#: SKUs listed by name in the import's audit entry; beyond that only the counts.
AUDIT_SKUS = 1000

#: Field -> header spellings, in the normalised form of ``_norm``, most specific first.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "sku": ("sku", "skucode", "productcode", "itemcode", "productsku", "编码", "商品编码",
            "商品编号", "产品编码", "货号", "sku编码", "商品sku", "barcode", "条码", "条形码"),
    "name": ("name", "productname", "itemname", "title", "名称", "商品名称", "品名", "产品名称",
             "商品名", "商品"),
    "category": ("category", "categorycode", "cat", "分类", "类别", "分类编码", "类别编码",
                 "分类代码", "商品分类", "品类", "类目"),
    "category_name": ("categoryname", "分类名称", "类别名称", "品类名称"),
    "price_minor": ("priceminor", "pricecents", "pricefen", "价格分", "售价分", "零售价分",
                    "单价分"),
    "price": ("price", "unitprice", "retailprice", "saleprice", "价格", "售价", "零售价", "单价",
              "销售价", "价格元", "售价元", "零售价元", "单价元"),
    "replenish_days": ("replenishdays", "replenishmentdays", "replenish", "replenishment",
                       "replenishmentcycle", "cycle", "cycledays", "repurchasedays",
                       "补货周期", "复购周期", "补货周期天", "复购周期天", "补货天数",
                       "复购天数", "周期"),
    "active": ("active", "isactive", "enabled", "onsale", "status", "是否上架", "上架",
               "是否在售", "在售", "是否启用", "启用", "状态"),
}


@dataclass(frozen=True)
class Table:
    """A sheet as read from a file: the header row and the data rows, all cells as text.

    ``rows[i]`` is row ``i + 2`` as a person sees it in Excel.
    """

    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class RowError:
    """Why a row was rejected: ``row`` is the row in the file (the header is row 1)."""

    row: int
    field: str
    message: str
    value: str | None


@dataclass
class ImportReport:
    """The outcome of an import; for a dry run, what a real import would do."""

    dry_run: bool
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    categories_created: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


# ---------------------------------------------------------------- reading files


def read_table(data: bytes, filename: str) -> Table:
    """Read a ``.csv`` or ``.xlsx`` upload; problems with the file name the field ``file``."""
    suffix = PurePath(filename or "").suffix.lower()
    if suffix not in ("", ".csv", ".txt", ".tsv", ".xlsx", ".xlsm"):
        raise ValidationFailed(f"Cannot read {suffix} files: upload a .csv or .xlsx file",
                               "file", code="unsupported_file_type")
    if not data.strip():
        raise ValidationFailed("The file is empty", "file", code="empty_file")
    rows = _xlsx_rows(data) if suffix in (".xlsx", ".xlsm") else _csv_rows(data)
    return _collect(rows)


def _unreadable(message: str) -> ValidationFailed:
    return ValidationFailed(message, "file", code="unreadable_file")


def decode(data: bytes) -> str:
    """UTF-8 (BOM or not), UTF-16 with a BOM, or GB18030 (a superset of GBK and GB2312).

    UTF-8 is tried first: GBK bytes are almost never valid UTF-8, while the reverse is
    often true, so the order decides correctly.
    """
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


def _csv_rows(data: bytes) -> Iterator[list[str]]:
    text = decode(data)
    if "\x00" in text:
        raise _unreadable("The file holds binary data, not CSV text")
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        yield from reader
    except csv.Error as exc:
        raise _unreadable(f"Line {reader.line_num} cannot be read as CSV: {exc}") from exc


def _cell_text(value: object) -> str:
    """An Excel cell as the text a person sees: 12.5 stays 12.5, 30.0 becomes 30."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # repr is the shortest text that reads back as the same float: 12.5, not 12.4999...
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _xlsx_rows(data: bytes) -> Iterator[list[str]]:
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zip, XML and key errors alike for bad files
        raise _unreadable("The file is not a readable .xlsx workbook") from exc
    try:
        active: Any = workbook.active
        sheet: Any = active if hasattr(active, "iter_rows") else workbook.worksheets[0]
        try:
            for values in sheet.iter_rows(values_only=True):
                yield [_cell_text(v) for v in values]
        except Exception as exc:
            raise _unreadable("The workbook is damaged and cannot be read") from exc
    finally:
        workbook.close()


def _collect(rows: Iterable[list[str]]) -> Table:
    iterator = iter(rows)
    headers = [h.replace("\ufeff", "").strip() for h in next(iterator, None) or []]
    while headers and not headers[-1]:
        headers.pop()
    if not headers:
        raise ValidationFailed("Row 1 must hold the column names, and it is empty", "file",
                               code="empty_file")
    if len(headers) > MAX_COLUMNS:
        raise ValidationFailed(f"The file has {len(headers)} columns; at most {MAX_COLUMNS}",
                               "file", code="too_many_columns")
    out: list[list[str]] = []
    for raw in iterator:
        cells = [c.strip() for c in raw[:len(headers)]]
        cells.extend([""] * (len(headers) - len(cells)))
        out.append(cells)
        if len(out) > MAX_ROWS:
            raise ValidationFailed(f"The file has more than {MAX_ROWS:,} rows: split it",
                                   "file", code="too_many_rows")
    while out and not any(out[-1]):
        out.pop()  # blank rows Excel leaves at the end
    if not out:
        raise ValidationFailed("The file has column names but no rows below them", "file",
                               code="empty_file")
    return Table(headers=headers, rows=out)


# ---------------------------------------------------------------- columns

_BRACKETED = re.compile(r"[(（\[【].*?[)）\]】]")
_PUNCTUATION = re.compile(r"[\s_\-./:：*#？?()（）\[\]【】]+")


def _norm(header: str, *, drop_brackets: bool) -> str:
    """``"补货周期（天）"`` -> ``"补货周期天"``, or ``"补货周期"`` with ``drop_brackets``."""
    text = header.lower()
    if drop_brackets:
        text = _BRACKETED.sub("", text)
    return _PUNCTUATION.sub("", text)


def map_columns(headers: list[str]) -> tuple[dict[str, int], list[str]]:
    """Each field's column index, and the headers no field uses.

    Headers are compared first with the words in brackets kept (so ``价格(分)`` is minor
    units), then without them (so ``补货周期(天)`` is the cycle). Spellings earlier in
    ``SYNONYMS`` win, and a column serves one field only.
    """
    mapping: dict[str, int] = {}
    used: set[int] = set()
    for drop_brackets in (False, True):
        normalised = [_norm(h, drop_brackets=drop_brackets) for h in headers]
        for target, spellings in SYNONYMS.items():
            if target in mapping:
                continue
            for spelling in spellings:
                index = next((i for i, n in enumerate(normalised)
                              if n == spelling and i not in used), None)
                if index is not None:
                    mapping[target] = index
                    used.add(index)
                    break
    if "category" not in mapping and "category_name" in mapping:
        mapping["category"] = mapping.pop("category_name")  # names find categories too
    ignored = [h for i, h in enumerate(headers) if i not in used and h]
    return mapping, ignored


# ---------------------------------------------------------------- rows


@dataclass
class _Row:
    """One row after the checks that need no database."""

    row: int
    sku: str
    name: str
    category: str
    category_name: str
    price_minor: int | None
    replenish_days: int | None  # meaningful only when the column exists
    active: bool | None


def _strip_guard(text: str) -> str:
    """Undo the apostrophe exporters put before ``=``, ``+``, ``-``, ``@`` (CSV injection)."""
    return text[1:] if len(text) > 1 and text[0] == "'" and text[1] in "=+-@" else text


def _parse_row(number: int, cells: list[str], columns: dict[str, int], currency: str,
               errors: list[RowError]) -> _Row | None:
    """Check one row's values; append an error per problem and return None if any."""
    def cell(name: str) -> str:
        index = columns.get(name)
        return _strip_guard(cells[index]) if index is not None else ""

    failed = False

    def fail(name: str, message: str) -> None:
        nonlocal failed
        failed = True
        errors.append(RowError(number, name, message, cell(name) or None))

    sku = name = ""
    try:
        sku = rules.clean_sku(cell("sku"))
    except ValueError as exc:
        fail("sku", str(exc))
    try:
        name = rules.clean_name(cell("name"))
    except ValueError as exc:
        fail("name", str(exc))
    price_minor: int | None = None
    if cell("price_minor"):
        try:
            price_minor = rules.parse_price_minor(cell("price_minor"))
        except ValueError as exc:
            fail("price_minor", str(exc))
    if cell("price"):
        try:
            major = rules.parse_price(cell("price"), currency)
        except ValueError as exc:
            fail("price", str(exc))
        else:
            if price_minor is not None and major != price_minor:
                fail("price", f"price and price_minor disagree ({major} minor units here)")
            price_minor = major
    replenish: int | None = None
    if cell("replenish_days"):
        try:
            replenish = rules.check_replenish_days(
                rules.parse_whole_number(cell("replenish_days"), what="Replenishment cycle"))
        except ValueError as exc:
            fail("replenish_days", str(exc))
    active: bool | None = None
    if cell("active"):
        try:
            active = rules.parse_flag(cell("active"))
        except ValueError as exc:
            fail("active", str(exc))
    if failed:
        return None
    return _Row(number, sku, name, cell("category"), cell("category_name"), price_minor,
                replenish, active)


@dataclass
class _Categories:
    """The categories a file can refer to: existing ones, and those it will create."""

    by_code: dict[str, Category]
    by_folded_code: dict[str, list[Category]]
    by_name: dict[str, list[Category]]
    planned: dict[str, str] = field(default_factory=dict)  # code -> name, in file order
    planned_folded: dict[str, str] = field(default_factory=dict)  # casefolded -> code

    @classmethod
    def load(cls, session: Session) -> _Categories:
        existing = catalog.list_categories(session)
        by_folded_code: dict[str, list[Category]] = {}
        by_name: dict[str, list[Category]] = {}
        for c in existing:
            by_folded_code.setdefault(c.code.casefold(), []).append(c)
            by_name.setdefault(c.name, []).append(c)
        return cls({c.code: c for c in existing}, by_folded_code, by_name)

    def resolve(self, text: str, *, create: bool) -> Category | str:
        """The category ``text`` names, or the code of one to create; ValueError if neither.

        A code wins over a name, and an exact code over one differing only in case
        (``Coffee`` finds ``coffee`` rather than making a near-duplicate); a name must
        belong to exactly one category.
        """
        if text in self.by_code:
            return self.by_code[text]
        folded = self.by_folded_code.get(text.casefold(), [])
        if len(folded) == 1:
            return folded[0]
        named = self.by_name.get(text, [])
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise ValueError(f"Several categories are named {text!r}: use the category code")
        planned = self.planned_folded.get(text.casefold())
        if planned is not None:
            return planned
        if not create:
            raise ValueError(f"Unknown category {text!r}: create it first, or import with "
                             "create_categories")
        return rules.clean_code(text)

    def plan(self, code: str, name: str) -> None:
        """Create ``code`` with the import; the first row that names it gives the name."""
        self.planned.setdefault(code, name or code)
        self.planned_folded.setdefault(code.casefold(), code)


def _existing_products(session: Session, skus: list[str]) -> dict[str, Product]:
    found: dict[str, Product] = {}
    for start in range(0, len(skus), catalog.IN_CHUNK):
        chunk = skus[start:start + catalog.IN_CHUNK]
        found.update((p.sku, p) for p in session.scalars(select(Product)
                                                         .where(Product.sku.in_(chunk))))
    return found


def _read_rows(table: Table, columns: dict[str, int], currency: str,
               report: ImportReport) -> list[_Row]:
    """The rows that pass every check needing no database, in file order; errors of the
    others go to ``report``. A SKU seen in an earlier row (good or bad) rejects the row."""
    rows: list[_Row] = []
    first_row_of: dict[str, int] = {}
    for offset, cells in enumerate(table.rows):
        if not any(cells):
            continue  # a blank line in the middle: neither counted nor reported
        report.total += 1
        number = offset + 2
        before = len(report.errors)
        parsed = _parse_row(number, cells, columns, currency, report.errors)
        sku = parsed.sku if parsed else _strip_guard(cells[columns["sku"]])
        if sku and sku in first_row_of:
            report.errors.append(RowError(number, "sku", f"SKU {sku!r} already appears in row "
                                          f"{first_row_of[sku]} of this file", sku))
        elif sku:
            first_row_of[sku] = number
        if parsed is not None and len(report.errors) == before:
            rows.append(parsed)
    return rows


def import_products(
    session: Session,
    *,
    clock: Clock,
    actor: Principal | None,
    table: Table,
    currency: str,
    dry_run: bool = False,
    create_categories: bool = False,
    filename: str = "",
) -> ImportReport:
    """Upsert products by SKU from ``table``; see the module docstring for what cells mean.

    ``actor`` None is the operator at the command line. Refuses the whole file (naming the
    field ``file``) only when the ``sku`` or ``name`` column is missing.
    """
    catalog.require_editor(actor)
    columns, ignored = map_columns(table.headers)
    missing = [f for f in ("sku", "name") if f not in columns]
    if missing:
        raise ValidationFailed(
            f"The file has no {' or '.join(missing)} column (found: "
            f"{', '.join(h for h in table.headers if h)}). Use headers like sku/编码, "
            "name/名称, category/分类, price/价格", "file", code="missing_column")
    report = ImportReport(dry_run=dry_run, ignored_columns=ignored,
                          columns={f: table.headers[i] for f, i in columns.items()})
    has_cycle = "replenish_days" in columns

    rows = _read_rows(table, columns, currency, report)
    categories = _Categories.load(session)
    existing = _existing_products(session, [r.sku for r in rows])
    new_rows: list[tuple[_Row, Category | str]] = []
    updates: list[tuple[Product, dict[str, Any]]] = []
    for r in rows:
        current = existing.get(r.sku)
        target: Category | str | None = None
        problems: list[tuple[str, str]] = []
        if current is None and r.price_minor is None:
            problems.append(("price", "Price is required for a new product"))
        if r.category:
            try:
                target = categories.resolve(r.category, create=create_categories)
            except ValueError as exc:
                problems.append(("category", str(exc)))
        elif current is None:
            problems.append(("category", "Category is required for a new product"))
        new_name = ""
        if isinstance(target, str) and r.category_name:
            try:
                new_name = rules.clean_name(r.category_name)
            except ValueError as exc:
                problems.append(("category_name", str(exc)))
        if problems:
            values = {"category": r.category, "category_name": r.category_name}
            report.errors.extend(RowError(r.row, f, m, values.get(f) or None)
                                 for f, m in problems)
            continue
        if isinstance(target, str):
            categories.plan(target, new_name)
        if current is None:
            assert target is not None
            new_rows.append((r, target))
            continue
        changes = _changes(current, r, target, has_cycle=has_cycle)
        if changes:
            updates.append((current, changes))
        else:
            report.unchanged += 1
    report.errors.sort(key=lambda e: e.row)  # stable: a row's errors stay in field order
    report.created, report.updated = len(new_rows), len(updates)
    report.rejected = len({e.row for e in report.errors})
    report.categories_created = list(categories.planned)
    if not dry_run:
        _write(session, clock=clock, actor=actor, planned=categories.planned,
               new_rows=new_rows, updates=updates, has_cycle=has_cycle)
        created = [r.sku for r, _ in new_rows]
        updated = [p.sku for p, _ in updates]
        audit.record(session, clock=clock, actor=actor, action="product.imported",
                     entity_type="product",
                     details={"filename": filename, "total": report.total,
                              "created": report.created, "updated": report.updated,
                              "unchanged": report.unchanged, "rejected": report.rejected,
                              "categories_created": report.categories_created,
                              # which products changed, within reason for one log entry
                              "created_skus": created[:AUDIT_SKUS],
                              "updated_skus": updated[:AUDIT_SKUS],
                              "skus_truncated": max(len(created), len(updated)) > AUDIT_SKUS})
        session.flush()
    return report


def _changes(product: Product, r: _Row, target: Category | str | None, *,
             has_cycle: bool) -> dict[str, Any]:
    """Fields of ``product`` the row changes; a category to be created is kept as its code."""
    wanted: dict[str, Any] = {"name": r.name}
    if r.price_minor is not None:
        wanted["price_minor"] = r.price_minor
    if isinstance(target, Category):
        wanted["category_id"] = target.id
    elif isinstance(target, str):
        wanted["category_id"] = target  # always a change: the category does not exist yet
    if has_cycle:
        wanted["replenish_days"] = r.replenish_days
    if r.active is not None:
        wanted["active"] = r.active
    return {k: v for k, v in wanted.items() if getattr(product, k) != v}


def _write(session: Session, *, clock: Clock, actor: Principal | None,
           planned: dict[str, str], new_rows: list[tuple[_Row, Category | str]],
           updates: list[tuple[Product, dict[str, Any]]], has_cycle: bool) -> None:
    created: dict[str, uuid.UUID] = {}
    for code, name in planned.items():
        category = catalog.create_category(session, clock=clock, actor=actor, source="import",
                                           data=CategoryCreate(code=code, name=name))
        created[code] = category.id

    def category_id(target: Category | str) -> uuid.UUID:
        return target.id if isinstance(target, Category) else created[target]

    for r, target in new_rows:
        session.add(Product(sku=r.sku, name=r.name, category_id=category_id(target),
                            price_minor=r.price_minor,
                            replenish_days=r.replenish_days if has_cycle else None,
                            active=True if r.active is None else r.active))
    for product, changes in updates:
        for key, value in changes.items():
            # a category to be created is still its code here; it has an id now
            setattr(product, key, created[value] if key == "category_id"
                    and isinstance(value, str) else value)
    try:
        session.flush()
    except IntegrityError as exc:
        # Only when someone adds the same SKU while this import runs (PostgreSQL; SQLite
        # serialises writers). Nothing is kept; running the import again works.
        raise Conflict("A product was added while importing; run the import again", "file",
                       code="import_conflict") from exc
