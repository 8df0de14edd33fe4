"""Pure wallet rules: which bonus a top-up earns and how a spend splits principal and bonus."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from patron.core.money import divide_round_half_up
from patron.wallet.enums import SpendOrder


@dataclass(frozen=True)
class BonusTier:
    min_topup_minor: int
    bonus_minor: int
    valid_from: datetime | None = None
    valid_until: datetime | None = None


def bonus_for(amount_minor: int, tiers: Iterable[BonusTier], now: datetime) -> int:
    """The largest bonus among the rules the top-up qualifies for (rules don't stack)."""
    best = 0
    for t in tiers:
        if amount_minor < t.min_topup_minor:
            continue
        if (t.valid_from and now < t.valid_from) or (t.valid_until and now >= t.valid_until):
            continue
        best = max(best, t.bonus_minor)
    return best


def split_spend(amount_minor: int, principal_minor: int, bonus_minor: int,
                order: SpendOrder) -> tuple[int, int]:
    """How much of a spend comes from (principal, bonus); the caller checked the total."""
    if amount_minor > principal_minor + bonus_minor:
        raise ValueError("spend exceeds balance")
    if order is SpendOrder.PRINCIPAL_FIRST:
        from_principal = min(amount_minor, principal_minor)
        return from_principal, amount_minor - from_principal
    if order is SpendOrder.BONUS_FIRST:
        from_bonus = min(amount_minor, bonus_minor)
        return amount_minor - from_bonus, from_bonus
    total = principal_minor + bonus_minor
    from_bonus = divide_round_half_up(amount_minor * bonus_minor, total) if total else 0
    from_bonus = min(from_bonus, bonus_minor)
    from_principal = amount_minor - from_bonus
    if from_principal > principal_minor:  # rounding pushed past the principal
        from_principal, from_bonus = principal_minor, amount_minor - principal_minor
    return from_principal, from_bonus
