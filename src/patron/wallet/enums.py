from __future__ import annotations

from enum import StrEnum


class EntryKind(StrEnum):
    TOPUP = "topup"
    SPEND = "spend"
    SPEND_REFUND = "spend_refund"  # a refunded sale gives back what it took from the wallet
    TOPUP_REFUND = "topup_refund"  # cash back to the customer: principal only, bonus forfeited
    ADJUST = "adjust"
    MERGE_IN = "merge_in"
    MERGE_OUT = "merge_out"
    CASHBACK = "cashback"  # a promotion's cashback on a sale: bonus, the shop's money
    CASHBACK_REVERSAL = "cashback_reverse"  # a refund takes (part of) it back


class SpendOrder(StrEnum):
    """Which part of the balance a purchase uses first."""

    PRINCIPAL_FIRST = "principal_first"
    BONUS_FIRST = "bonus_first"
    PROPORTIONAL = "proportional"
