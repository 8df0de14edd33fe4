"""Catalogue import at the service level: upserts by SKU, row errors, dry runs, encodings."""

from __future__ import annotations

import io
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.models import AuditEntry
from patron.catalog import importer, rules
from patron.catalog import service as catalog
from patron.catalog.models import Category, Product
from patron.core.clock import FixedClock
from patron.core.errors import PermissionDenied, ValidationFailed
from tests.catalog.helpers import cashier, csv_bytes, make_category, make_product, manager
from tests.factories import World

HEADERS = ["sku", "name", "category", "price", "replenish_days", "active"]


def _import(session: Session, clock: FixedClock, data: bytes, *, filename: str = "p.csv",
            **kw: Any) -> importer.ImportReport:
    table = importer.read_table(data, filename)
    return importer.import_products(session, clock=clock, actor=kw.pop("actor", None),
                                    table=table, currency="CNY", filename=filename, **kw)


def _count(session: Session, model: type[object]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _catalogue(session: Session) -> dict[str, tuple[Any, ...]]:
    """Every product as (name, category code, price, own cycle, active), by SKU."""
    session.expire_all()
    rows = session.execute(select(Product.sku, Product.name, Category.code, Product.price_minor,
                                  Product.replenish_days, Product.active)
                           .join(Category, Category.id == Product.category_id))
    return {sku: tuple(rest) for sku, *rest in rows}


def _errors(report: importer.ImportReport) -> list[tuple[int, str]]:
    return [(e.row, e.field) for e in report.errors]


def test_import_keeps_good_rows_and_reports_every_bad_one(
    session: Session, clock: FixedClock
) -> None:
    make_category(session, clock, code="coffee", replenish_days=30)
    data = csv_bytes(HEADERS, [
        ["COF-1", "Espresso beans 1kg", "coffee", "128.00", "60", "yes"],  # row 2: good
        ["COF-2", "Filter beans", "coffee", "12.5x", "", ""],  # row 3: bad price
        ["TEA-1", "Longjing", "tea", "88", "", ""],  # row 4: unknown category
        ["COF-1", "Espresso again", "coffee", "99", "", ""],  # row 5: duplicate SKU in file
        ["COF-3", "", "coffee", "10", "", ""],  # row 6: missing name
        ["COF-4", "Decaf", "coffee", "-3", "0", "maybe"],  # row 7: three problems
        ["COF-5", "Cold brew", "coffee", "9.90", "", "no"],  # row 8: good
    ])
    report = _import(session, clock, data)
    assert (report.total, report.created, report.rejected) == (7, 2, 5)
    assert _errors(report) == [(3, "price"), (4, "category"), (5, "sku"), (6, "name"),
                               (7, "price"), (7, "replenish_days"), (7, "active")]
    by_row = {(e.row, e.field): e for e in report.errors}
    assert by_row[(3, "price")].value == "12.5x"
    assert "Unknown category 'tea'" in by_row[(4, "category")].message
    assert "row 2" in by_row[(5, "sku")].message
    assert _catalogue(session) == {
        "COF-1": ("Espresso beans 1kg", "coffee", 12800, 60, True),
        "COF-5": ("Cold brew", "coffee", 990, None, False),
    }


def test_a_dry_run_checks_everything_and_writes_nothing(
    session: Session, clock: FixedClock
) -> None:
    cat = make_category(session, clock, code="coffee")
    make_product(session, clock, cat, sku="COF-1", price_minor=100)
    session.flush()
    before = (_catalogue(session), _count(session, Category), _count(session, AuditEntry))
    data = csv_bytes(HEADERS, [["COF-1", "Renamed", "coffee", "2", "", ""],
                               ["NEW-1", "New", "snacks", "3", "", ""],
                               ["NEW-2", "Bad", "coffee", "x", "", ""]])
    report = _import(session, clock, data, dry_run=True, create_categories=True)
    assert report.dry_run
    assert (report.created, report.updated, report.rejected) == (1, 1, 1)
    assert report.categories_created == ["snacks"]
    assert (_catalogue(session), _count(session, Category),
            _count(session, AuditEntry)) == before


def test_reimport_updates_products_by_sku(session: Session, clock: FixedClock) -> None:
    make_category(session, clock, code="coffee", replenish_days=30)
    make_category(session, clock, code="tea")
    first = csv_bytes(HEADERS, [["A", "Beans", "coffee", "10", "45", ""],
                                ["B", "Leaves", "tea", "20", "", ""]])
    assert _import(session, clock, first).created == 2
    second = csv_bytes(HEADERS, [["A", "Beans 1kg", "tea", "12.00", "", "下架"],
                                 ["B", "Leaves", "tea", "20", "", ""],
                                 ["C", "Cups", "tea", "5", "", ""]])
    report = _import(session, clock, second)
    assert (report.created, report.updated, report.unchanged) == (1, 1, 1)
    assert _catalogue(session) == {"A": ("Beans 1kg", "tea", 1200, None, False),
                                   "B": ("Leaves", "tea", 2000, None, True),
                                   "C": ("Cups", "tea", 500, None, True)}


def test_empty_cells_keep_an_existing_products_price_category_and_flag(
    session: Session, clock: FixedClock
) -> None:
    cat = make_category(session, clock, code="coffee")
    make_product(session, clock, cat, sku="A", name="Beans", price_minor=700, active=False,
                 replenish_days=20)
    report = _import(session, clock, csv_bytes(["sku", "name", "category", "price", "active"],
                                               [["A", "Beans 250g", "", "", ""]]))
    assert report.updated == 1
    # without a replenish_days column, the cycle is left alone too
    assert _catalogue(session) == {"A": ("Beans 250g", "coffee", 700, 20, False)}


def test_a_new_product_needs_a_category_and_a_price(session: Session, clock: FixedClock) -> None:
    make_category(session, clock, code="coffee")
    report = _import(session, clock, csv_bytes(["sku", "name", "category", "price"],
                                               [["A", "Beans", "", ""]]))
    assert _errors(report) == [(2, "price"), (2, "category")]
    assert _count(session, Product) == 0


def test_unknown_categories_are_created_on_request(session: Session, clock: FixedClock) -> None:
    data = csv_bytes(["sku", "name", "category", "category_name", "price"], [
        ["A", "Beans", "coffee", "咖啡豆", "10"],
        ["B", "More beans", "coffee", "", "11"],
        ["C", "Bad", "has space", "", "1"],
        ["D", "No price", "pets", "", ""],
    ])
    refused = _import(session, clock, data, dry_run=True)
    assert _errors(refused) == [(2, "category"), (3, "category"), (4, "category"),
                                (5, "price"), (5, "category")]
    report = _import(session, clock, data, create_categories=True)
    assert report.categories_created == ["coffee"]  # not "pets": its only row was rejected
    assert _errors(report) == [(4, "category"), (5, "price")]
    coffee = catalog.find_category_by_code(session, code="coffee")
    assert coffee is not None and coffee.name == "咖啡豆"
    assert _count(session, Category) == 1
    session.flush()
    assert [e.details["source"] for e in audit.list_entries(session, action="category.created")] \
        == ["import"]


def test_category_codes_match_in_any_case_rather_than_making_near_duplicates(
    session: Session, clock: FixedClock
) -> None:
    make_category(session, clock, code="coffee")
    report = _import(session, clock, csv_bytes(["sku", "name", "category", "price"], [
        ["A", "Beans", "COFFEE", "10"], ["B", "Leaves", "Tea", "10"], ["C", "Pu'er", "TEA", "9"]]),
        create_categories=True)
    assert report.errors == [] and report.categories_created == ["Tea"]
    assert {sku: row[1] for sku, row in _catalogue(session).items()} == {
        "A": "coffee", "B": "Tea", "C": "Tea"}


def test_a_category_is_found_by_its_name_when_the_name_is_unique(
    session: Session, clock: FixedClock
) -> None:
    make_category(session, clock, code="coffee", name="咖啡豆")
    make_category(session, clock, code="tea1", name="茶叶")
    make_category(session, clock, code="tea2", name="茶叶")
    report = _import(session, clock, csv_bytes(["sku", "name", "category", "price"], [
        ["A", "Beans", "咖啡豆", "10"], ["B", "Leaves", "茶叶", "10"]]))
    assert _errors(report) == [(3, "category")]
    assert "Several categories" in report.errors[0].message
    assert _catalogue(session)["A"][1] == "coffee"


def test_gbk_file_with_chinese_headers(session: Session, clock: FixedClock) -> None:
    make_category(session, clock, code="奶粉", name="婴幼儿奶粉", replenish_days=21)
    data = csv_bytes(["编码", "商品名称", "类别", "售价", "复购周期(天)", "是否上架"], [
        ["FML-001", "贝源婴幼儿配方奶粉 3段 800g", "奶粉", "258.00", "", "是"],
        ["FML-002", "贝源婴幼儿配方奶粉 3段 400g 便携装", "婴幼儿奶粉", "148", "11天", "下架"],
        ["FML-003", "纸尿裤", "纸尿裤", "99", "", "是"],
    ], encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    report = _import(session, clock, data)
    assert report.columns == {"sku": "编码", "name": "商品名称", "category": "类别",
                              "price": "售价", "replenish_days": "复购周期(天)",
                              "active": "是否上架"}
    assert _errors(report) == [(4, "category")]
    assert _catalogue(session) == {
        "FML-001": ("贝源婴幼儿配方奶粉 3段 800g", "奶粉", 25800, None, True),
        "FML-002": ("贝源婴幼儿配方奶粉 3段 400g 便携装", "奶粉", 14800, 11, False),
    }
    product = catalog.get_product_by_sku(session, sku="FML-001")
    assert catalog.effective_replenish_days(session, product=product) == 21


def test_utf8_bom_semicolons_and_minor_unit_prices(session: Session, clock: FixedClock) -> None:
    make_category(session, clock, code="tea")
    data = "\ufeff" + "SKU;名称;分类;价格(分)\r\nT-1;龙井;tea;8800\r\n\r\nT-2;碧螺春;tea;12.5\r\n"
    report = _import(session, clock, data.encode("utf-8"))
    assert report.columns["sku"] == "SKU" and report.columns["price_minor"] == "价格(分)"
    assert report.total == 2 and _errors(report) == [(4, "price_minor")]  # blank row 3 skipped
    assert _catalogue(session) == {"T-1": ("龙井", "tea", 8800, None, True)}


def test_xlsx_workbooks_are_read_too(session: Session, clock: FixedClock) -> None:
    make_category(session, clock, code="tea")
    workbook = openpyxl.Workbook()
    sheet: Any = workbook.active
    sheet.append(["SKU", "名称", "分类", "价格", "补货周期"])
    sheet.append(["T-1", "龙井", "tea", 88.5, 30])
    sheet.append(["T-2", "碧螺春", "tea", "12", None])
    buffer = io.BytesIO()
    workbook.save(buffer)
    report = _import(session, clock, buffer.getvalue(), filename="产品.xlsx")
    assert report.errors == []
    assert _catalogue(session) == {"T-1": ("龙井", "tea", 8850, 30, True),
                                   "T-2": ("碧螺春", "tea", 1200, None, True)}


def test_files_without_sku_or_name_columns_are_refused_whole(
    session: Session, clock: FixedClock
) -> None:
    with pytest.raises(ValidationFailed) as exc:
        _import(session, clock, csv_bytes(["code", "title?"], [["A", "B"]]))
    assert exc.value.field == "file" and exc.value.code == "missing_column"
    for data, filename in ((b"", "p.csv"), (b"sku,name\n", "p.csv"), (b"x", "p.pdf"),
                           (b"\xff\xfe\x00", "p.csv"), (b"not a zip", "p.xlsx")):
        with pytest.raises(ValidationFailed) as exc:
            importer.read_table(data, filename)
        assert exc.value.field == "file"


def test_an_import_is_audited_once_with_its_counts(
    session: Session, clock: FixedClock, world: World
) -> None:
    make_category(session, clock, code="tea")
    _import(session, clock, csv_bytes(["sku", "name", "category", "price"],
                                      [["A", "a", "tea", "1"], ["B", "b", "tea", "x"]]),
            actor=manager(world))
    session.flush()
    (entry,) = audit.list_entries(session, action="product.imported")
    assert entry.actor_label == "manager-a"
    assert entry.details["created"] == 1 and entry.details["rejected"] == 1
    assert entry.details["created_skus"] == ["A"] and entry.details["filename"] == "p.csv"


def test_cashiers_cannot_import(session: Session, clock: FixedClock, world: World) -> None:
    with pytest.raises(PermissionDenied):
        _import(session, clock, csv_bytes(["sku", "name"], [["A", "B"]]), actor=cashier(world))


# ---------------------------------------------------------------- properties

_skus = st.text(alphabet="ABCXYZ019-/", min_size=1, max_size=6)
_names = st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "Zs"]),
                 min_size=1, max_size=20).filter(lambda s: s.strip() != "")
_row = st.tuples(_skus, _names, st.sampled_from(["coffee", "tea", "咖啡豆", "new1"]),
                 st.integers(0, rules.MAX_PRICE_MINOR),
                 st.one_of(st.none(), st.integers(1, rules.MAX_REPLENISH_DAYS)),
                 st.sampled_from(["", "yes", "no", "是", "下架"]))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=12),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
def test_importing_the_same_file_twice_gives_the_same_catalogue(
    session: Session, clock: FixedClock, rows: list[tuple[Any, ...]], encoding: str
) -> None:
    """Prices written in major units come back as the same minor units, every row's values
    land (first row of a SKU wins), and a second import changes nothing."""
    savepoint = session.begin_nested()
    try:
        make_category(session, clock, code="coffee", replenish_days=30)
        make_category(session, clock, code="tea", name="咖啡豆")
        cells = [[sku, name, cat, rules.format_price(price, "CNY"),
                  "" if days is None else str(days), flag]
                 for sku, name, cat, price, days, flag in rows]
        data = csv_bytes(HEADERS, cells, encoding=encoding)
        first = _import(session, clock, data, create_categories=True)
        after_first = _catalogue(session)
        expected: dict[str, tuple[Any, ...]] = {}
        for sku, name, cat, price, days, flag in rows:
            if sku.strip() not in expected:
                active = flag not in ("no", "下架")
                code = "tea" if cat == "咖啡豆" else cat
                expected[sku.strip()] = (name.strip(), code, price, days, active)
        assert after_first == expected
        assert first.created == len(expected) and first.rejected == len(rows) - len(expected)
        second = _import(session, clock, data, create_categories=True)
        assert _catalogue(session) == after_first
        assert (second.created, second.updated, second.unchanged) == (0, 0, len(expected))
        assert second.categories_created == []
    finally:
        savepoint.rollback()
