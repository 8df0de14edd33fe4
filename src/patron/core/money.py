"""Money: integer minor units (fen, cents) everywhere, never float.

Design overview: an amount is an ``int`` count of the currency's minor unit, stored in
BIGINT columns named ``*_minor``. The only rounding rule in patron lives here:
``divide_round_half_up`` (commercial rounding, halves away from zero), used for every
proportional split (percent discounts, refunds by line, points rates).
"""

from __future__ import annotations

MINOR_DIGITS = {"JPY": 0, "KRW": 0, "VND": 0, "BHD": 3, "KWD": 3, "JOD": 3, "TND": 3}
SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "HKD": "HK$", "TWD": "NT$"}


def minor_digits(currency: str) -> int:
    """How many decimal places the currency's minor unit has (ISO 4217)."""
    return MINOR_DIGITS.get(currency.upper(), 2)


def divide_round_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounding halves away from zero: the single rounding rule."""
    if denominator == 0:
        raise ZeroDivisionError("denominator is zero")
    sign = -1 if (numerator < 0) != (denominator < 0) else 1
    n, d = abs(numerator), abs(denominator)
    q, r = divmod(n, d)
    if 2 * r >= d:
        q += 1
    return int(sign * q)


def format_minor(amount_minor: int, currency: str) -> str:
    """Render minor units for people: ``format_minor(12345, "CNY") == "¥123.45"``."""
    digits = minor_digits(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**digits)
    symbol = SYMBOLS.get(currency.upper(), currency.upper() + " ")
    text = f"{whole:,}" if digits == 0 else f"{whole:,}.{frac:0{digits}d}"
    return f"{sign}{symbol}{text}"


def parse_major(text: str, currency: str) -> int:
    """Parse a decimal amount typed by a person ("12.5") into minor units, exactly."""
    digits = minor_digits(currency)
    cleaned = text.strip().replace(",", "")
    negative = cleaned.startswith("-")
    cleaned = cleaned.lstrip("+-")
    whole, _, frac = cleaned.partition(".")
    if not whole.isdigit() and not (whole == "" and frac.isdigit()):
        raise ValueError(f"not an amount: {text!r}")
    if frac and (not frac.isdigit() or len(frac) > digits):
        raise ValueError(f"at most {digits} decimal places: {text!r}")
    scale = int(10**digits)
    value = int(whole or "0") * scale + int((frac or "0").ljust(digits, "0")[:digits] or "0")
    return -value if negative else value


def allocate(total_minor: int, weights: list[int]) -> list[int]:
    """Split ``total_minor`` in proportion to ``weights`` so the parts sum exactly to it.

    Largest-remainder method: every part is floor(total x w / sum(w)), and the units left
    over go to the largest remainders (ties to the earlier part), so the split is
    deterministic. Used for discounts across sale lines and refunds across payments.
    """
    if total_minor < 0 or any(w < 0 for w in weights):
        raise ValueError("allocate takes a non-negative total and weights")
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total_minor:
            raise ValueError("cannot allocate an amount over zero weights")
        return [0] * len(weights)
    parts = [total_minor * w // weight_sum for w in weights]
    remainders = [(total_minor * w % weight_sum, -i) for i, w in enumerate(weights)]
    for _, neg_i in sorted(remainders, reverse=True)[: total_minor - sum(parts)]:
        parts[-neg_i] += 1
    return parts


def proportion(amount_minor: int, numerator: int, denominator: int) -> int:
    """``amount x numerator / denominator`` with the house rounding rule."""
    return divide_round_half_up(amount_minor * numerator, denominator)
