"""Pure coupon rules: codes, validity windows, what a coupon takes off a basket.

Design overview
---------------
Codes. A coupon code is 11 random characters from ``secrets`` plus one check character, 12
in all, drawn from a 31-character alphabet without look-alikes (no 0/O, 1/I/L). 31^11 is
about 2^54, so with a million live coupons a guess hits one with odds of about 1 in 10^10.
The check character is a weighted sum modulo 31 (a prime), so every single mistyped
character and every swap of two neighbours is caught before the database is asked.
Referral codes are shorter (7 + 1): they are meant to be shared, not to be secret.

Discounts. Only lines in the coupon's scope count. ``min_spend_minor`` is compared with
the in-scope subtotal. A fixed coupon takes ``min(amount, in-scope subtotal)``; a percent
coupon takes ``round_half_up(in-scope subtotal x percent / 100)`` capped at ``cap_minor``.
The discount is split over the in-scope lines in proportion to their totals by cumulative
rounding (``core.money.divide_round_half_up`` of the running share), so the parts are
never negative, never exceed their line and always sum exactly to the discount.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from patron.core.money import divide_round_half_up
from patron.offers.enums import CouponKind, CouponScope, CouponStatus, Validity

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # 31 symbols: a prime, for the check character
COUPON_CODE_LENGTH = 12
REFERRAL_CODE_LENGTH = 8
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def check_character(body: str) -> str:
    """The check character of ``body``: sum of (position + 1) x value, modulo 31."""
    total = sum((i + 1) * _VALUE[c] for i, c in enumerate(body))
    return ALPHABET[total % len(ALPHABET)]


def _new_code(length: int) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(length - 1))
    return body + check_character(body)


def new_coupon_code() -> str:
    """A fresh unguessable coupon code (12 characters, the last one a check character)."""
    return _new_code(COUPON_CODE_LENGTH)


def new_referral_code() -> str:
    """A fresh short referral code (8 characters, the last one a check character)."""
    return _new_code(REFERRAL_CODE_LENGTH)


def normalise_code(text: str) -> str:
    """What a person typed or a scanner read: upper case, without spaces and dashes."""
    return "".join(text.split()).replace("-", "").upper()


def is_well_formed(code: str, length: int) -> bool:
    """Right length, right alphabet and a matching check character."""
    if len(code) != length or any(c not in _VALUE for c in code):
        return False
    return check_character(code[:-1]) == code[-1]


def format_code(code: str) -> str:
    """Groups of four for print and screens: ``ABCD-EFGH-JKMN``."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


# ---------------------------------------------------------------- validity


def coupon_window(*, validity: Validity, starts_at: datetime | None, ends_at: datetime | None,
                  valid_days: int | None, issued_at: datetime) -> tuple[datetime, datetime]:
    """(valid_from, valid_until) of a coupon issued at ``issued_at``; until is exclusive."""
    if validity is Validity.DAYS:
        if valid_days is None or valid_days <= 0:
            raise ValueError("a 'days' template needs valid_days > 0")
        return issued_at, issued_at + timedelta(days=valid_days)
    if ends_at is None:
        raise ValueError("a 'fixed' template needs ends_at")
    valid_from = starts_at if starts_at is not None and starts_at > issued_at else issued_at
    return valid_from, ends_at


# ---------------------------------------------------------------- refusals


class Refusal(Exception):
    """Why a coupon cannot be used; ``code`` is the stable error code the API shows."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


UNKNOWN = "coupon_unknown"
EXPIRED = "coupon_expired"
NOT_YET_VALID = "coupon_not_yet_valid"
VOID = "coupon_void"
ALREADY_REDEEMED = "coupon_already_redeemed"
OTHER_MEMBER = "coupon_other_member"
MEMBER_REQUIRED = "coupon_member_required"
MEMBER_LIMIT = "coupon_member_limit_reached"
MIN_SPEND = "coupon_min_spend_not_met"
NOTHING_IN_SCOPE = "coupon_nothing_in_scope"
NO_DISCOUNT = "coupon_no_discount"


@dataclass(frozen=True)
class CouponState:
    """What the usability checks need to know about an issued coupon."""

    status: CouponStatus
    valid_from: datetime
    valid_until: datetime
    member_id: uuid.UUID | None


def check_usable(state: CouponState, *, now: datetime, member_id: uuid.UUID | None) -> None:
    """Refuse a coupon that cannot be used now by this member (or by an anonymous buyer)."""
    if state.status is CouponStatus.REDEEMED:
        raise Refusal(ALREADY_REDEEMED, "This coupon has already been used")
    if state.status is CouponStatus.VOID:
        raise Refusal(VOID, "This coupon was voided")
    if state.status is CouponStatus.EXPIRED or now >= state.valid_until:
        raise Refusal(EXPIRED, f"This coupon expired at {state.valid_until.isoformat()}")
    if now < state.valid_from:
        raise Refusal(NOT_YET_VALID,
                      f"This coupon is valid from {state.valid_from.isoformat()}")
    if state.member_id is not None:
        if member_id is None:
            raise Refusal(MEMBER_REQUIRED,
                          "This coupon belongs to a member: identify the member first")
        if member_id != state.member_id:
            raise Refusal(OTHER_MEMBER, "This coupon belongs to another member")


# ---------------------------------------------------------------- discounts


@dataclass(frozen=True)
class QuoteLine:
    """One basket line as the till sees it (category given, so no catalogue lookup)."""

    product_id: uuid.UUID
    category_id: uuid.UUID | None
    quantity: int
    unit_price_minor: int

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor


@dataclass(frozen=True)
class Terms:
    """A template's discount terms."""

    kind: CouponKind
    amount_minor: int | None = None
    percent: int | None = None
    cap_minor: int | None = None
    min_spend_minor: int = 0
    scope: CouponScope = CouponScope.ALL
    category_ids: frozenset[uuid.UUID] = frozenset()
    product_ids: frozenset[uuid.UUID] = frozenset()


@dataclass(frozen=True)
class Discount:
    eligible_minor: int
    discount_minor: int
    line_discounts: tuple[int, ...]  # one per basket line, 0 for lines out of scope


def in_scope(terms: Terms, line: QuoteLine) -> bool:
    if terms.scope is CouponScope.ALL:
        return True
    if terms.scope is CouponScope.PRODUCTS:
        return line.product_id in terms.product_ids
    return line.category_id is not None and line.category_id in terms.category_ids


def split(total_minor: int, weights: Sequence[int]) -> list[int]:
    """Split ``total_minor`` in proportion to ``weights`` by cumulative round-half-up.

    Part i is R(total x W_i / W) - R(total x W_(i-1) / W) with W_i the running sum of the
    weights: the parts sum to ``total`` exactly, and each is between 0 and its weight when
    ``total`` is at most the sum of the weights.
    """
    if total_minor < 0 or any(w < 0 for w in weights):
        raise ValueError("split takes a non-negative total and weights")
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total_minor:
            raise ValueError("cannot split an amount over zero weights")
        return [0] * len(weights)
    parts, running, given = [], 0, 0
    for w in weights:
        running += w
        upto = divide_round_half_up(total_minor * running, weight_sum)
        parts.append(upto - given)
        given = upto
    return parts


def discount_for(terms: Terms, lines: Sequence[QuoteLine]) -> Discount:
    """What the coupon takes off these lines; raises ``Refusal`` when it takes nothing."""
    for line in lines:
        if line.quantity <= 0 or line.unit_price_minor < 0:
            raise ValueError("lines need a positive quantity and a non-negative price")
    eligible = [line.total_minor if in_scope(terms, line) else 0 for line in lines]
    eligible_minor = sum(eligible)
    if not any(in_scope(terms, line) for line in lines) or eligible_minor == 0:
        raise Refusal(NOTHING_IN_SCOPE, "Nothing in this basket is covered by the coupon")
    if eligible_minor < terms.min_spend_minor:
        raise Refusal(MIN_SPEND, f"The coupon needs a spend of {terms.min_spend_minor} on "
                                 f"covered items; the basket has {eligible_minor}")
    if terms.kind is CouponKind.FIXED:
        amount = terms.amount_minor or 0
    else:
        amount = divide_round_half_up(eligible_minor * (terms.percent or 0), 100)
        if terms.cap_minor is not None:
            amount = min(amount, terms.cap_minor)
    amount = min(amount, eligible_minor)
    if amount <= 0:
        raise Refusal(NO_DISCOUNT, "The coupon takes nothing off this basket")
    return Discount(eligible_minor, amount, tuple(split(amount, eligible)))
