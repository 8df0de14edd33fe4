from __future__ import annotations

from enum import StrEnum


class PointsEntryKind(StrEnum):
    EARN = "earn"  # into pending (or straight to available when pending_days = 0)
    RELEASE = "release"  # pending -> available at the end of the return window
    REDEEM = "redeem"
    REDEEM_RETURN = "redeem_return"  # a refunded sale gives back the points it used
    CLAWBACK = "clawback"  # a refunded sale takes back the points it earned
    DEBT = "debt"  # what a clawback could not take, owed from future earnings
    DEBT_SETTLE = "debt_settle"
    EXPIRE = "expire"
    ADJUST = "adjust"
    MERGE_IN = "merge_in"
    MERGE_OUT = "merge_out"
    TRANSFER_OUT = "transfer_out"  # points given to another member (one entry per transfer)
    TRANSFER_IN = "transfer_in"  # points received: one entry per lot created


class ExpiryPolicy(StrEnum):
    NEVER = "never"
    MONTHS = "months"  # N months after earning
    END_OF_NEXT_YEAR = "end_of_next_year"  # 31 Dec of the year after earning


class Rounding(StrEnum):
    FLOOR = "floor"
    HALF_UP = "half_up"
    CEIL = "ceil"


class TierBasis(StrEnum):
    SPEND = "spend"  # rolling 12-month spend in minor units
    POINTS = "points"  # rolling 12-month points earned (never the balance)
