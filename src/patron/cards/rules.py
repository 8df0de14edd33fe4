"""Pure rules of stamp cards, visit packages and gift cards: no session, no clock.

Design overview
---------------
Stamps (whole stamps). A line qualifies when its product, or its product's category, is a
target of the programme. Basis ``item`` gives one stamp per qualifying item; basis
``visit`` gives one stamp per sale with at least one qualifying item. ``stamps_needed``
stamps make one reward; a sale that brings a card past the target makes as many rewards
as it fills (``divmod``).

Refunds of stamps are *cumulative*, like refunds of sales: from the items of the sale
refunded so far, ``stamps_to_remove`` says how many of the sale's stamps must be gone in
total, and the caller removes the difference to what it removed before. ``item``: one
stamp per refunded item; ``visit``: the visit's stamp goes when the last qualifying item
of the sale is refunded. Removal never takes a card below zero (``plan_removal``): first
from the stamps on the card, then by revoking unused rewards of the card (each gives its
``stamps_needed`` stamps back, less what is still to remove), and whatever is left -- the
reward that held those stamps was already used or has expired -- is recorded as stamp debt
that the member's next stamps pay off.

Visit packages. The refund of a package pays back its unused visits pro rata:
``price paid x visits left / visits bought`` in minor units, rounded half up with the house
rule (``core.money.proportion``).

Gift-card codes are 15 random characters from ``secrets`` plus one check character (16),
from a 31-character alphabet without look-alikes (no 0/O, 1/I/L): 31^15 is about 2^74, so
codes cannot be guessed. The PIN is 8 more random characters from the same alphabet (about
2^40), stored only as ``sha256(code ":" PIN)``: with so much entropy, salted by the code,
and online guessing stopped after ``MAX_PIN_FAILURES`` wrong PINs for ``PIN_LOCK``, a fast
hash is enough (a slow password hash protects low-entropy secrets people choose).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from patron.cards.enums import StampBasis
from patron.core.money import proportion

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # 31 symbols: a prime, for the check character
GIFT_CODE_LENGTH = 16
PIN_LENGTH = 8
MAX_PIN_FAILURES = 5
PIN_LOCK = timedelta(minutes=15)
_VALUE = {c: i for i, c in enumerate(ALPHABET)}

# ---------------------------------------------------------------- stamps


@dataclass(frozen=True)
class SoldLine:
    """What the till sold (or refunded): a product, its category and how many."""

    product_id: uuid.UUID
    category_id: uuid.UUID | None
    quantity: int


@dataclass(frozen=True)
class Targets:
    product_ids: frozenset[uuid.UUID]
    category_ids: frozenset[uuid.UUID]

    def covers(self, product_id: uuid.UUID, category_id: uuid.UUID | None) -> bool:
        return product_id in self.product_ids or (
            category_id is not None and category_id in self.category_ids)


def qualifying_items(lines: Sequence[SoldLine], targets: Targets) -> int:
    """How many items of ``lines`` the programme counts."""
    return sum(line.quantity for line in lines
               if line.quantity > 0 and targets.covers(line.product_id, line.category_id))


def stamps_for(basis: StampBasis, items: int) -> int:
    """Stamps a sale with ``items`` qualifying items earns."""
    if items <= 0:
        return 0
    return items if basis is StampBasis.ITEM else 1


def stamps_to_remove(basis: StampBasis, *, items: int, stamps: int,
                     items_refunded: int) -> int:
    """How many of a sale's ``stamps`` must be gone once ``items_refunded`` of its ``items``
    qualifying items are refunded (cumulative: the caller subtracts what it removed)."""
    refunded = max(0, min(items_refunded, items))
    if basis is StampBasis.ITEM:
        return min(stamps, refunded)
    return stamps if refunded == items else 0


def rewards_from(stamps: int, needed: int) -> tuple[int, int]:
    """(rewards made, stamps left on the card)."""
    return divmod(stamps, needed)


@dataclass(frozen=True)
class Removal:
    """How a refund takes ``from_card + from_rewards + debt`` stamps back."""

    from_card: int
    rewards_revoked: int
    from_rewards: int  # of the rewards' stamps; the rest of them go back onto the card
    debt: int


def plan_removal(*, remove: int, stamps: int, unused_rewards: int, needed: int) -> Removal:
    """Take ``remove`` stamps back without going below zero (see the module docstring)."""
    if remove < 0 or stamps < 0 or unused_rewards < 0 or needed <= 0:
        raise ValueError("plan_removal takes non-negative counts and needed > 0")
    from_card = min(remove, stamps)
    left = remove - from_card
    revoke = min(unused_rewards, -(-left // needed))
    from_rewards = min(left, revoke * needed)
    return Removal(from_card, revoke, from_rewards, left - from_rewards)


@dataclass(frozen=True)
class PricedLine:
    product_id: uuid.UUID
    category_id: uuid.UUID | None
    quantity: int
    unit_price_minor: int


def free_item(lines: Sequence[PricedLine], targets: Targets) -> tuple[int, int] | None:
    """For a ``free_item`` reward: (index of the line, minor units off) -- 100 % of one
    qualifying item, the cheapest one in the basket (the first of equals); None if the
    basket has no qualifying item."""
    best: tuple[int, int] | None = None
    for i, line in enumerate(lines):
        if line.quantity > 0 and targets.covers(line.product_id, line.category_id) and (
                best is None or line.unit_price_minor < best[1]):
            best = (i, line.unit_price_minor)
    return best


def expires_after(start: datetime, valid_days: int | None) -> datetime | None:
    """When a reward or gift card issued at ``start`` expires; None: never."""
    return None if valid_days is None else start + timedelta(days=valid_days)


# ---------------------------------------------------------------- visit packages


def package_expires_at(sold_at: datetime, valid_days: int) -> datetime:
    return sold_at + timedelta(days=valid_days)


def package_refund_minor(*, price_minor: int, visits_total: int, visits_left: int) -> int:
    """Minor units due for the unused visits: price x left / total, rounded half up."""
    if visits_total <= 0 or not 0 <= visits_left <= visits_total or price_minor < 0:
        raise ValueError("package_refund_minor needs 0 <= left <= total, total > 0, price >= 0")
    return proportion(price_minor, visits_left, visits_total)


# ---------------------------------------------------------------- gift-card codes and PINs


def check_character(body: str) -> str:
    """Sum of (position + 1) x value, modulo 31: catches any one typo or neighbour swap."""
    total = sum((i + 1) * _VALUE[c] for i, c in enumerate(body))
    return ALPHABET[total % len(ALPHABET)]


def new_gift_card_code() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(GIFT_CODE_LENGTH - 1))
    return body + check_character(body)


def new_pin() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(PIN_LENGTH))


def normalise(text: str) -> str:
    """What a person typed or a scanner read: upper case, without spaces and dashes."""
    return "".join(text.split()).replace("-", "").upper()


def is_well_formed(code: str) -> bool:
    if len(code) != GIFT_CODE_LENGTH or any(c not in _VALUE for c in code):
        return False
    return check_character(code[:-1]) == code[-1]


def format_code(code: str) -> str:
    """Groups of four for print and screens: ``ABCD-EFGH-JKMN-PQRS``."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def hash_pin(code: str, pin: str) -> str:
    return hashlib.sha256(f"{code}:{normalise(pin)}".encode()).hexdigest()


def pin_matches(code: str, pin: str, pin_hash: str) -> bool:
    return hmac.compare_digest(hash_pin(code, pin), pin_hash)


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and locked_until > now


def after_wrong_pin(failures: int, now: datetime) -> tuple[int, datetime | None]:
    """(failures to store, locked until): the 5th wrong PIN in a row locks the card for
    15 minutes and starts the count again."""
    failures += 1
    if failures >= MAX_PIN_FAILURES:
        return 0, now + PIN_LOCK
    return failures, None


def distinct(ids: Collection[uuid.UUID]) -> bool:
    return len(set(ids)) == len(ids)
