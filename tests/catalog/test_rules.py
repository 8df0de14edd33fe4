"""Pure catalogue rules: prices, cycles, flags, codes and import column names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.catalog import rules
from patron.catalog.importer import map_columns


@pytest.mark.parametrize(("text", "minor"), [
    ("12.50", 1250), ("12.5", 1250), ("12", 1200), ("0", 0), ("0.01", 1), (" 1,280.00 ", 128000),
    ("¥12.50", 1250), ("￥8", 800), ("12.5元", 1250), (".5", 50), ("+3", 300),
])
def test_parse_price_reads_major_units_exactly(text: str, minor: int) -> None:
    assert rules.parse_price(text, "CNY") == minor


@pytest.mark.parametrize(("text", "message"), [
    ("-1", "negative"), ("12.505", "not a price"), ("abc", "not a price"), ("1e3", "not a price"),
    ("", "required"), ("100000000.01", "highest"), ("12,50.0.1", "not a price"),
])
def test_parse_price_refuses_what_is_not_a_price(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules.parse_price(text, "CNY")


def test_parse_price_follows_the_currency_minor_digits() -> None:
    assert rules.parse_price("1250", "JPY") == 1250
    assert rules.parse_price("1.250", "KWD") == 1250
    with pytest.raises(ValueError, match="like 12\\)"):
        rules.parse_price("12.5", "JPY")


@given(price=st.integers(0, rules.MAX_PRICE_MINOR), currency=st.sampled_from(["CNY", "JPY", "KWD"]))
def test_format_then_parse_price_round_trips(price: int, currency: str) -> None:
    assert rules.parse_price(rules.format_price(price, currency), currency) == price


@pytest.mark.parametrize(("text", "value"), [
    ("1250", 1250), ("1,250", 1250), ("0", 0), ("1250.0", 1250), ("+5", 5)])
def test_parse_price_minor_reads_whole_numbers(text: str, value: int) -> None:
    assert rules.parse_price_minor(text) == value


@pytest.mark.parametrize(("text", "message"), [
    ("-5", "negative"), ("12.5", "whole number"), ("x", "whole number"),
    (str(10**10 + 1), "highest")])
def test_parse_price_minor_refuses_fractions_negatives_and_absurd_values(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rules.parse_price_minor(text)


@pytest.mark.parametrize(("text", "flag"), [
    ("yes", True), ("Y", True), ("1", True), ("TRUE", True), ("是", True), ("上架", True),
    ("no", False), ("0", False), ("false", False), ("否", False), ("下架", False), ("停用", False),
])
def test_parse_flag_reads_yes_and_no_as_people_write_them(text: str, flag: bool) -> None:
    assert rules.parse_flag(text) is flag


def test_parse_flag_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="not yes or no"):
        rules.parse_flag("maybe")


def test_replenish_days_are_whole_days_between_one_and_ten_years() -> None:
    assert rules.parse_whole_number("30", what="cycle") == 30
    assert rules.parse_whole_number("30.0", what="cycle") == 30
    assert rules.parse_whole_number("21天", what="cycle") == 21
    with pytest.raises(ValueError, match="whole number"):
        rules.parse_whole_number("2.5", what="cycle")
    for bad in (0, rules.MAX_REPLENISH_DAYS + 1):
        with pytest.raises(ValueError, match="between 1 and 3650"):
            rules.check_replenish_days(bad)
    assert rules.check_replenish_days(rules.MAX_REPLENISH_DAYS) == 3650


def test_effective_replenish_days_prefers_the_products_own_cycle() -> None:
    assert rules.effective_replenish_days(45, 30) == 45
    assert rules.effective_replenish_days(None, 30) == 30
    assert rules.effective_replenish_days(None, None) is None


def test_skus_codes_and_names_are_trimmed_and_refuse_control_characters() -> None:
    assert rules.clean_sku("  AB/12 3 ") == "AB/12 3"
    assert rules.clean_code(" 奶粉 ") == "奶粉"
    assert rules.clean_name(" 咖啡豆 ") == "咖啡豆"
    with pytest.raises(ValueError, match="required"):
        rules.clean_sku("   ")
    with pytest.raises(ValueError, match="longer than 64"):
        rules.clean_sku("x" * 65)
    with pytest.raises(ValueError, match="control"):
        rules.clean_sku("A\tB")
    with pytest.raises(ValueError, match="spaces"):
        rules.clean_code("baby formula")
    with pytest.raises(ValueError, match="line breaks"):
        rules.clean_name("two\nlines")


def test_columns_are_found_from_english_and_chinese_headers() -> None:
    columns, ignored = map_columns(
        ["编码", "商品名称", "类别", "售价", "复购周期(天)", "是否上架", "备注"])
    assert columns == {"sku": 0, "name": 1, "category": 2, "price": 3, "replenish_days": 4,
                       "active": 5}
    assert ignored == ["备注"]
    columns, _ = map_columns(["SKU", "Name", "Category", "Price", "Replenish days", "Active"])
    assert columns == {"sku": 0, "name": 1, "category": 2, "price": 3, "replenish_days": 4,
                       "active": 5}


def test_a_header_naming_minor_units_is_read_as_price_minor() -> None:
    columns, _ = map_columns(["SKU", "名称", "分类", "价格（分）"])
    assert columns["price_minor"] == 3 and "price" not in columns
    columns, _ = map_columns(["sku", "name", "price_minor", "价格(元)"])
    assert columns["price_minor"] == 2 and columns["price"] == 3


def test_a_column_serves_one_field_and_the_first_spelling_wins() -> None:
    columns, ignored = map_columns(["sku", "name", "名称", "分类名称"])
    assert columns == {"sku": 0, "name": 1, "category": 3}  # a name finds its category too
    assert ignored == ["名称"]
