"""Pure rules of the catalogue: what a valid SKU, code, price and cycle are, and how the
replenishment cycle of a product is chosen.

No session, no I/O, no clock. The API schemas, the services and the CSV importer all check
values with these functions, so a price refused in the API is refused in an import with
the same words. Validators raise ``ValueError`` with a sentence meant for a person; the
callers attach the field name (Pydantic for the API, ``RowError`` for an import).
"""

from __future__ import annotations

import re
import unicodedata

from patron.core.money import minor_digits, parse_major

MAX_SKU = 64  # products.sku is VARCHAR(64)
MAX_CODE = 32  # categories.code is VARCHAR(32)
MAX_NAME = 200  # products.name and categories.name are VARCHAR(200)
#: Highest price accepted: 10^10 minor units (100 million yuan). Anything above is a typo
#: (a barcode pasted into the price column), and far below what BIGINT sums could overflow.
MAX_PRICE_MINOR = 10**10
#: Longest replenishment cycle: ten years. Longer is not a consumable but a durable good,
#: which has no cycle at all (leave it empty).
MAX_REPLENISH_DAYS = 3650

_CURRENCY_MARKS = re.compile(r"^[¥￥$€£]|(元|RMB|CNY)$", re.IGNORECASE)
_WHOLE = re.compile(r"^[+]?(\d+)(?:\.0*)?$")
_SIGNED_WHOLE = re.compile(r"^([+-]?)(\d+)(?:\.0*)?$")

TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on", "active", "是", "上架", "启用",
                        "有效", "在售", "正常"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "off", "inactive", "否", "下架", "停用",
                         "无效", "停售", "禁用"})


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def clean_sku(text: str) -> str:
    """A SKU as stored: trimmed, 1-64 characters, no tabs, line breaks or control characters.

    SKUs are compared exactly (``AB-1`` and ``ab-1`` are two products), as a barcode
    scanner or a POS sends them.
    """
    sku = text.strip()
    if not sku:
        raise ValueError("SKU is required")
    if len(sku) > MAX_SKU:
        raise ValueError(f"SKU is longer than {MAX_SKU} characters")
    if _has_control(sku):
        raise ValueError("SKU cannot contain tabs, line breaks or control characters")
    return sku


def clean_code(text: str) -> str:
    """A category code: trimmed, 1-32 characters, no spaces (``coffee``, ``FML``, ``奶粉``)."""
    code = text.strip()
    if not code:
        raise ValueError("Category code is required")
    if len(code) > MAX_CODE:
        raise ValueError(f"Category code is longer than {MAX_CODE} characters")
    if _has_control(code) or any(ch.isspace() for ch in code):
        raise ValueError("Category code cannot contain spaces or control characters")
    return code


def clean_name(text: str) -> str:
    """A product or category name: trimmed, 1-200 characters, on one line."""
    name = text.strip()
    if not name:
        raise ValueError("Name is required")
    if len(name) > MAX_NAME:
        raise ValueError(f"Name is longer than {MAX_NAME} characters")
    if _has_control(name):
        raise ValueError("Name cannot contain line breaks or control characters")
    return name


def check_price_minor(value: int) -> int:
    """A price in minor units: 0 (a free gift) up to ``MAX_PRICE_MINOR``."""
    if value < 0:
        raise ValueError("Price cannot be negative")
    if value > MAX_PRICE_MINOR:
        raise ValueError(f"Price is above the highest accepted ({MAX_PRICE_MINOR} minor units)")
    return value


def check_replenish_days(value: int) -> int:
    """A replenishment cycle: 1 to ``MAX_REPLENISH_DAYS`` days."""
    if not 1 <= value <= MAX_REPLENISH_DAYS:
        raise ValueError(f"Replenishment cycle must be between 1 and {MAX_REPLENISH_DAYS} days")
    return value


def parse_price(text: str, currency: str) -> int:
    """A price typed in major units (``12.50``, ``1,280``, ``¥12.5``, ``12.5元``) in minor units.

    Exact: the text is never read as a float (``core.money.parse_major``). More decimals
    than the currency has (``12.505`` yuan) are refused rather than rounded.
    """
    cleaned = _CURRENCY_MARKS.sub("", text.strip()).strip()
    if not cleaned:
        raise ValueError("Price is required")
    try:
        value = parse_major(cleaned, currency)
    except ValueError as exc:
        digits = minor_digits(currency)
        example = "12" if digits == 0 else "12." + "5".ljust(digits, "0")
        raise ValueError(f"{text.strip()!r} is not a price in {currency.upper()} "
                         f"(like {example})") from exc
    return check_price_minor(value)


def parse_price_minor(text: str) -> int:
    """A price already in minor units (``1250`` fen), as a whole number."""
    match = _SIGNED_WHOLE.match(text.strip().replace(",", ""))
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a whole number of minor units (like 1250)")
    sign, digits = match.groups()
    return check_price_minor(-int(digits) if sign == "-" else int(digits))


def format_price(price_minor: int, currency: str) -> str:
    """Minor units as the plain decimal ``parse_price`` reads back (``1250`` -> ``12.50``)."""
    digits = minor_digits(currency)
    sign = "-" if price_minor < 0 else ""
    whole, frac = divmod(abs(price_minor), 10**digits)
    return f"{sign}{whole}" if digits == 0 else f"{sign}{whole}.{frac:0{digits}d}"


def parse_whole_number(text: str, *, what: str) -> int:
    """A non-negative whole number as a spreadsheet writes it: ``30``, ``30.0``, ``30天``."""
    cleaned = text.strip().removesuffix("天").strip()
    match = _WHOLE.match(cleaned)
    if match is None:
        raise ValueError(f"{what} must be a whole number, not {text.strip()!r}")
    return int(match.group(1))


def parse_flag(text: str) -> bool:
    """Yes or no as people write it: yes/no, true/false, 1/0, Y/N, 是/否, 上架/下架."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text.strip()!r} is not yes or no (yes/no, 1/0, 是/否, 上架/下架)")


def effective_replenish_days(product_days: int | None, category_days: int | None) -> int | None:
    """The cycle reminders use: the product's own when set (a 1 kg bag outlasts 250 g),
    else its category's; ``None`` means the product is not replenished (no reminders)."""
    return product_days if product_days is not None else category_days
