"""When people shop: the store calendar the demo's purchases follow.

A day's *intensity* multiplies every customer's purchase rate on that day. It combines a
weekly rhythm (Saturday about 1.5 times a Monday), the Chinese retail calendar (a build-up
in the two weeks before Chinese New Year, quiet shops during its first days, 11.11 and 618
shopping festivals, Women's Day, gift buying before Mid-Autumn and the Dragon Boat
Festival) and a slight summer dip. It is normalised to a mean of 1 over the window, so a
customer's long-run rate is still their own λ and the calendar only moves purchases around.

Opening hours are 10:00-22:00 in the store's time zone; weekdays peak at lunch and after
work, weekends are busy all afternoon.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from lunardate import LunarDate

OPENING_HOUR = 10
CLOSING_HOUR = 22
WEEKDAY_FACTOR = (0.85, 0.85, 0.9, 0.95, 1.1, 1.35, 1.25)  # Monday first
# Relative footfall per opening hour (10:00 ... 21:00).
WEEKDAY_HOURS = (4.0, 6.0, 9.0, 8.0, 5.0, 4.0, 5.0, 7.0, 10.0, 10.0, 7.0, 4.0)
WEEKEND_HOURS = (6.0, 9.0, 11.0, 10.0, 9.0, 9.0, 9.0, 9.0, 9.0, 8.0, 6.0, 3.0)


@dataclass(frozen=True)
class SeasonalOffer:
    """On this day, each extra line of a basket is a ``season`` product with ``probability``."""

    probability: float
    season: str


@dataclass
class Seasons:
    """The store calendar over ``days`` local days starting at ``start_on``."""

    start_on: date
    days: int
    intensity: np.ndarray  # per day, mean 1 over the window
    peak: float  # max(intensity): the envelope for thinning a Poisson process
    promo_days: frozenset[int]  # days with festival discounts
    offers: dict[int, SeasonalOffer] = field(default_factory=dict)

    def day_on(self, index: int) -> date:
        return self.start_on + timedelta(days=index)

    def index_of(self, on: date) -> int:
        return (on - self.start_on).days


def lunar_to_solar(year: int, month: int, day: int) -> date:
    solar: date = LunarDate(year, month, day).to_solar_date()
    return solar


def build_seasons(start_on: date, days: int) -> Seasons:
    """The intensity and festival offers for each day of the window."""
    intensity = np.ones(days)
    promo: set[int] = set()
    offers: dict[int, SeasonalOffer] = {}

    def idx(on: date) -> int:
        return (on - start_on).days

    def scale(on: date, factor: float) -> None:
        i = idx(on)
        if 0 <= i < days:
            intensity[i] *= factor

    for i in range(days):
        on = start_on + timedelta(days=i)
        intensity[i] *= WEEKDAY_FACTOR[on.weekday()]
        if on.month in (7, 8):
            intensity[i] *= 0.93

    end_on = start_on + timedelta(days=days)
    for year in range(start_on.year - 1, end_on.year + 2):
        new_year = lunar_to_solar(year, 1, 1)
        for k in range(1, 15):  # the build-up: gifts, snacks, tea, a new year's stock-up
            on = new_year - timedelta(days=k)
            scale(on, 1.0 + 0.9 * (15 - k) / 14 if k > 1 else 0.8)
            if 0 <= idx(on) < days and k > 1:
                offers[idx(on)] = SeasonalOffer(0.3, "spring_festival")
                if k <= 10:
                    promo.add(idx(on))
        for k in range(0, 7):  # most people are with family; shops are quiet
            scale(new_year + timedelta(days=k), 0.35 if k < 3 else 0.7)
        mid_autumn = lunar_to_solar(year, 8, 15)
        for k in range(1, 12):
            on = mid_autumn - timedelta(days=k)
            scale(on, 1.25)
            if 0 <= idx(on) < days:
                offers[idx(on)] = SeasonalOffer(0.25, "mid_autumn")
        dragon_boat = lunar_to_solar(year, 5, 5)
        for k in range(1, 8):
            on = dragon_boat - timedelta(days=k)
            scale(on, 1.1)
            if 0 <= idx(on) < days:
                offers[idx(on)] = SeasonalOffer(0.15, "dragon_boat")
        for k in range(1, 10):
            scale(date(year, 11, k), 1.1)
        scale(date(year, 11, 10), 1.4)
        scale(date(year, 11, 11), 2.6)
        scale(date(year, 11, 12), 1.3)
        for on in (date(year, 11, 10), date(year, 11, 11), date(year, 11, 12)):
            if 0 <= idx(on) < days:
                promo.add(idx(on))
        scale(date(year, 6, 16), 1.2)
        scale(date(year, 6, 17), 1.2)
        scale(date(year, 6, 18), 1.6)
        scale(date(year, 3, 7), 1.15)
        scale(date(year, 3, 8), 1.3)
        for on in (date(year, 6, 18), date(year, 3, 8)):
            if 0 <= idx(on) < days:
                promo.add(idx(on))
        scale(date(year, 12, 24), 1.2)
        scale(date(year, 12, 31), 1.2)

    intensity /= intensity.mean()
    return Seasons(start_on=start_on, days=days, intensity=intensity,
                   peak=float(intensity.max()), promo_days=frozenset(promo), offers=offers)


def hour_weights(on: date) -> tuple[float, ...]:
    return WEEKEND_HOURS if on.weekday() >= 5 else WEEKDAY_HOURS


def local_instant(on: date, seconds_after_opening: int, tz: ZoneInfo) -> datetime:
    """The UTC instant ``seconds_after_opening`` after the store opened on local day ``on``."""
    local = datetime.combine(on, time(OPENING_HOUR), tzinfo=tz)
    return (local + timedelta(seconds=seconds_after_opening)).astimezone(UTC)
