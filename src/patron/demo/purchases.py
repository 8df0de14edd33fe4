"""Two years of purchases, generated from the BG/NBD story plus replenishment.

Design overview
---------------
Visits follow the BG/NBD model (Fader, Hardie & Lee, "Counting your customers the easy
way", Marketing Science 2005), with time in days:

* while active, a member buys at rate λ (a Poisson process); across members
  λ ~ Gamma(r = 0.25, α = 5.3 days), mean 0.047 a day (about 1.4 visits a month) but very
  skewed (CDNOW's published fit has r = 0.24): a large group with a tiny λ who buy once
  and are not seen again, most members in between, and a thin tail of near-daily
  regulars.
* after each *repeat* purchase a member drops out for good with probability p;
  p ~ Beta(a = 0.55, b = 3.2), mean 0.15. With a < 1 a sizeable loyal core has p close to 0
  and stays for the whole window; b > 1 keeps most p moderate, so the typical member
  lapses after a handful to a dozen repeat visits, and lapsing is visible in the last
  months of data.
* the first purchase is the one at which the member joined (BG/NBD's time 0: dropout is
  not possible before the first repeat purchase).

The calendar (``seasons``) modulates the rate: the member's instantaneous rate is
λ·m(day) with m averaging 1 (weekends, the Chinese New Year build-up, 11.11, 618). It is
simulated exactly by thinning: candidates at rate λ·max(m), each kept with probability
m(day)/max(m). At most one visit per member per day.

On top of the visits, staples (formula, diapers, beans, cat food...) run out: a member
with a staple bought ``quantity`` units lasting ``cycle × quantity`` days (the catalogue's
replenishment cycle, jittered ±12 %), and comes back for it a day or two after it runs out
(with their per-staple loyalty; otherwise they bought it elsewhere that time), or buys it
early on an ordinary visit when less than 30 % of it is left. These trips are purchases
like any other (dropout can follow them), so repurchase rhythms at the product's cycle are
visible in the data, as the analytics' repurchase-cycle detection expects; the data are
therefore BG/NBD-like rather than exactly BG/NBD for staple buyers.

With the defaults (20,000 members over two years) this gives about 7 purchases per member
on average: 28 % one-time buyers, the top fifth of members making two thirds of member
purchases, and 17 % who bought at least three times but not in the last six months.

Baskets draw extra lines from the member's favourite categories (seasonal gift boxes on
festival days), quantities 1-4 for cheap items. Festival prices and member prices reduce
some lines, and on festival days a basket-level 每满300减30 is spread over the lines with
``core.money.allocate``, as checkout spreads its discounts. Amounts follow checkout's
conventions, the sales CHECKs and ``patron doctor``: line total = quantity × unit price −
line discount; a sale's subtotal is the gross of its lines, its discount the sum of the
line discounts and of its ``SaleDiscount`` rows (one per reason), and its total
(subtotal − discount) the sum of its line totals. A share of sales are walk-ins.

Member sales are then priced by the loyalty programme (``demo.loyalty``: coupons, tier
discounts, points and stored value) between ``schedule`` (instants, ids, receipt numbers)
and ``assemble`` (the rows); every sale's payments add up to its total.
"""

from __future__ import annotations

import bisect
import math
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from patron.core.money import allocate, divide_round_half_up
from patron.demo.catalogue import CATEGORIES, CATEGORY_INDEX, ProductRef
from patron.demo.draws import cumulative, weighted
from patron.demo.ids import unix_ms, uuid7_batch
from patron.demo.members import WALK_IN_WEIGHTS, MemberDraft, StoreRef
from patron.demo.seasons import CLOSING_HOUR, OPENING_HOUR, Seasons, hour_weights, local_instant

OPEN_SECONDS = (CLOSING_HOUR - OPENING_HOUR) * 3600
HOME_STORE_SHARE = 0.9
VISIT_EXTRA_LINES = 1.4  # Poisson mean of non-staple lines on an ordinary visit
TRIP_EXTRA_LINES = 0.4  # ... and on a trip made for a staple
EARLY_BUY_SHARE = 0.3  # a staple is bought on a visit if less than this share is left
RUN_OUT_DELAY_DAYS = 1.7  # mean delay between running out and coming back

PROMOTION_STEP_MINOR = 30_000  # 每满300减30: 30 yuan off per full 300 yuan
PROMOTION_OFF_MINOR = 3_000
PROMOTION_LABEL = "每满300减30"
FESTIVAL_LABEL = "节日特价"
MEMBER_PRICE_LABEL = "会员价 95折"

Line = tuple[int, int, int, int]  # product index, quantity, unit price, discount
Discount = tuple[str, str | None, str, int]  # kind, reference, label, amount: a SaleDiscount
Payment = tuple[str, int, str | None]  # method, amount, reference: a SalePayment


@dataclass(slots=True)
class SaleDraft:
    """One sale before it has an instant and an id.

    The loyalty stage (``demo.loyalty``) may add lines (a paid-membership fee), discounts
    (a coupon, the tier's discount), the points it earned and redeemed, the tier it was
    priced for and how it was paid; a sale left without ``payments`` is paid by card or
    cash when it is assembled.
    """

    day: int
    seconds: int  # after opening, store-local
    store: int
    member: int  # -1 for a walk-in
    lines: list[Line]
    discounts: list[Discount]  # the reasons for the line discounts; they add up to them
    tier_id: uuid.UUID | None = None
    points_earned: int = 0
    points_redeemed: int = 0
    payments: list[Payment] | None = None

    @property
    def total_minor(self) -> int:
        return sum(q * price - disc for _, q, price, disc in self.lines)


class Catalogue:
    """Products grouped for fast weighted draws (cumulative weights + bisect)."""

    def __init__(self, products: list[ProductRef]) -> None:
        self.products = products
        self.by_category: list[list[int]] = [[] for _ in CATEGORIES]
        self.cum: list[list[float]] = [[] for _ in CATEGORIES]
        for p in products:
            if p.popularity > 0:
                self.by_category[p.category].append(p.index)
                total = (self.cum[p.category] or [0.0])[-1]
                self.cum[p.category].append(total + p.popularity)
        gifts = [p.index for p in products
                 if p.category == CATEGORY_INDEX["gifts"] and p.season is None]
        self.seasonal: dict[str, list[int]] = {}
        for p in products:
            if p.season:
                self.seasonal.setdefault(p.season, []).append(p.index)
        self.seasonal["spring_festival"] = self.seasonal.get("spring_festival", []) + gifts

    def draw(self, rnd: random.Random, category: int) -> int:
        cum = self.cum[category]
        return self.by_category[category][bisect.bisect(cum, rnd.random() * cum[-1])]


def _poisson(rnd: random.Random, mean: float) -> int:
    """A Poisson draw for small means (Knuth); cheap enough for a few per sale."""
    limit, k, prod = math.exp(-mean), 0, rnd.random()
    while prod > limit:
        k += 1
        prod *= rnd.random()
    return k


class BasketMaker:
    """Turns 'a member shops on this day' into priced, discounted sale lines."""

    def __init__(self, catalogue: Catalogue, seasons: Seasons, rnd: random.Random) -> None:
        self.catalogue = catalogue
        self.seasons = seasons
        self.rnd = rnd
        self.walk_in_cum = np.cumsum(WALK_IN_WEIGHTS / WALK_IN_WEIGHTS.sum()).tolist()

    def quantity(self, price_minor: int) -> int:
        r = self.rnd.random()
        if price_minor < 2000:
            return 1 if r < 0.5 else 2 if r < 0.8 else 3 if r < 0.92 else 4
        if price_minor < 6000:
            return 1 if r < 0.8 else 2
        return 1

    def extras(self, basket: dict[int, int], day: int, count: int,
               category_cum: list[float]) -> None:
        rnd = self.rnd
        offer = self.seasons.offers.get(day)
        for _ in range(count):
            if offer is not None and rnd.random() < offer.probability:
                product = rnd.choice(self.catalogue.seasonal[offer.season])
            else:
                category = bisect.bisect(category_cum, rnd.random() * category_cum[-1])
                product = self.catalogue.draw(rnd, min(category, len(CATEGORIES) - 1))
            price = self.catalogue.products[product].price_minor
            basket[product] = basket.get(product, 0) + self.quantity(price)

    def checkout(self, basket: dict[int, int], day: int) -> tuple[list[Line], list[Discount]]:
        """Price the basket: festival and member prices, then the basket-level 满减."""
        rnd = self.rnd
        promo = day in self.seasons.promo_days
        lines: list[list[int]] = []
        festival = member_price = 0
        for product, quantity in basket.items():
            price = self.catalogue.products[product].price_minor
            discount = 0
            if promo and rnd.random() < 0.4:
                discount = divide_round_half_up(quantity * price * rnd.choice((10, 15, 20)), 100)
                festival += discount
            elif rnd.random() < 0.06:
                discount = divide_round_half_up(quantity * price * 5, 100)
                member_price += discount
            lines.append([product, quantity, price, discount])
        discounts: list[Discount] = []
        if festival:
            discounts.append(("promotion", None, FESTIVAL_LABEL, festival))
        if member_price:
            discounts.append(("promotion", None, MEMBER_PRICE_LABEL, member_price))
        if promo and rnd.random() < 0.7:  # most tills apply it on festival days
            net = [q * price - disc for _, q, price, disc in lines]
            off = PROMOTION_OFF_MINOR * (sum(net) // PROMOTION_STEP_MINOR)
            if off:
                for line, share in zip(lines, allocate(off, net), strict=True):
                    line[3] += share
                discounts.append(("promotion", None, PROMOTION_LABEL, off))
        return [(p, q, price, disc) for p, q, price, disc in lines], discounts


_HOUR_CUM = {weekend: np.cumsum(hour_weights(date(2026, 1, 3 if weekend else 5))).tolist()
             for weekend in (False, True)}


def _seconds(rnd: random.Random, seasons: Seasons, day: int) -> int:
    """A time of day after opening, following the weekday or weekend footfall curve."""
    cum = _HOUR_CUM[seasons.day_on(day).weekday() >= 5]
    hour = bisect.bisect(cum, rnd.random() * cum[-1])
    return min(hour, len(cum) - 1) * 3600 + rnd.randrange(3600)


def simulate_member_sales(
    members: list[MemberDraft], *, products: list[ProductRef], seasons: Seasons,
    stores: list[StoreRef], rnd: random.Random,
) -> Iterator[SaleDraft]:
    """Yield every member's sales, member by member (see the module docstring)."""
    catalogue = Catalogue(products)
    baskets = BasketMaker(catalogue, seasons, rnd)
    horizon = float(seasons.days)
    intensity = seasons.intensity.tolist()
    peak = seasons.peak
    inf = math.inf

    def next_visit(t: float, lam: float) -> float:
        if lam <= 0:
            return inf
        rate = lam * peak
        while True:
            t += rnd.expovariate(rate)
            if t >= horizon:
                return inf
            if rnd.random() * peak < intensity[int(t)]:
                return t

    def restock(staple_due_from: float, interval: float) -> tuple[float, float]:
        due = staple_due_from + interval * rnd.lognormvariate(0.0, 0.12)
        return due, due + rnd.expovariate(1.0 / RUN_OUT_DELAY_DAYS)

    for m in members:
        store_choices = [s for s in stores if s.index != m.home_store]
        t = m.join_day + m.first_sale_seconds / OPEN_SECONDS
        trip_at: list[float] = []
        basket: dict[int, int] = {}
        for s in m.staples:
            if rnd.random() < 0.5:  # bought with the first purchase
                basket[s.product] = s.quantity
                s.due, at = restock(t, s.interval_days)
            else:  # still has some at home
                s.due = t + s.interval_days * rnd.uniform(0.1, 1.0)
                at = s.due + rnd.expovariate(1.0 / RUN_OUT_DELAY_DAYS)
            trip_at.append(at)
        baskets.extras(basket, m.join_day, max(1, _poisson(rnd, VISIT_EXTRA_LINES)),
                       m.category_cum)
        yield SaleDraft(m.join_day, m.first_sale_seconds, m.enrolled_store, m.index,
                        *baskets.checkout(basket, m.join_day))
        last_day = m.join_day
        visit = next_visit(t, m.lam)
        while True:
            trip, trip_staple = inf, -1
            for k, s in enumerate(m.staples):
                if trip_at[k] < trip and trip_at[k] < s.need_until:
                    trip, trip_staple = trip_at[k], k
            is_visit = visit <= trip
            t = visit if is_visit else trip
            if t >= horizon:
                break
            day = int(t)
            if day <= last_day:  # at most one purchase a day
                day = last_day + 1
                t = day + (t - int(t))
                if day >= horizon:
                    break
            if not is_visit and rnd.random() > m.staples[trip_staple].loyalty:
                s = m.staples[trip_staple]  # bought it elsewhere this time
                s.due, trip_at[trip_staple] = restock(t, s.interval_days)
                continue
            basket = {}
            for k, s in enumerate(m.staples):
                needed = s.due < s.need_until
                if needed and ((k == trip_staple and not is_visit)
                               or s.due - t <= EARLY_BUY_SHARE * s.interval_days):
                    basket[s.product] = basket.get(s.product, 0) + s.quantity
                    s.due, trip_at[k] = restock(max(t, s.due), s.interval_days)
            extra = _poisson(rnd, VISIT_EXTRA_LINES if is_visit else TRIP_EXTRA_LINES)
            baskets.extras(basket, day, extra if basket else max(1, extra), m.category_cum)
            store = m.home_store
            if rnd.random() > HOME_STORE_SHARE:
                open_others = [s for s in store_choices if s.open_day <= day]
                if open_others:
                    store = rnd.choice(open_others).index
            yield SaleDraft(day, _seconds(rnd, seasons, day), store, m.index,
                            *baskets.checkout(basket, day))
            last_day = day
            if is_visit:
                visit = next_visit(t, m.lam)
            if rnd.random() < m.p:
                break  # the member quietly leaves (BG/NBD dropout)


def simulate_walk_ins(
    count: int, *, products: list[ProductRef], seasons: Seasons, stores: list[StoreRef],
    rng: np.random.Generator, rnd: random.Random,
) -> Iterator[SaleDraft]:
    """Sales without a member card, spread like member traffic (growing, seasonal)."""
    catalogue = Catalogue(products)
    baskets = BasketMaker(catalogue, seasons, rnd)
    growth = 1.0 + 0.3 * np.arange(seasons.days) / seasons.days
    weights = growth * seasons.intensity
    days = np.sort(rng.choice(seasons.days, size=count, p=weights / weights.sum())).tolist()
    for day in days:
        open_stores = [s for s in stores if s.open_day <= day]
        store = weighted(rnd, open_stores, cumulative(s.share for s in open_stores))
        basket: dict[int, int] = {}
        baskets.extras(basket, day, 1 + _poisson(rnd, 1.0), baskets.walk_in_cum)
        yield SaleDraft(day, _seconds(rnd, seasons, day), store.index, -1,
                        *baskets.checkout(basket, day))


SALE_COLUMNS = ("id", "store_id", "member_id", "cashier_id", "receipt_no", "source",
                "occurred_at", "recorded_at", "subtotal_minor", "discount_minor", "total_minor",
                "points_earned", "points_redeemed", "tier_id")
LINE_COLUMNS = ("id", "sale_id", "line_no", "product_id", "quantity", "unit_price_minor",
                "discount_minor", "total_minor", "category_id")
DISCOUNT_COLUMNS = ("id", "sale_id", "kind", "reference", "label", "amount_minor")
PAYMENT_COLUMNS = ("id", "sale_id", "method", "amount_minor", "reference")
CARD_SHARE = 0.8  # of sales paid by card (bank or mobile) rather than cash


@dataclass
class Schedule:
    """When each sale happened and what the till called it, indexed like the drafts."""

    at: list[datetime]  # the UTC instant of each draft
    order: list[int]  # draft indices in time order
    sale_ids: list[uuid.UUID]
    receipts: list[str]
    cashiers: list[uuid.UUID]
    recorded_at: list[datetime]


def schedule(drafts: list[SaleDraft], *, seasons: Seasons, stores: list[StoreRef],
             rng: np.random.Generator) -> Schedule:
    """Give drafts their instants, ids, receipt numbers and cashiers.

    Receipt numbers run per store and local day (``SH01-20261111-00217``), as a till would
    print them, so they are unique per store as the table requires.
    """
    # Opening hours never span a daylight-saving change, so opening instant + seconds is
    # the same as the local wall-clock time converted to UTC (``local_instant``).
    openings: dict[tuple[int, int], datetime] = {}
    for d in drafts:
        if (d.day, d.store) not in openings:
            openings[(d.day, d.store)] = local_instant(seasons.day_on(d.day), 0,
                                                       stores[d.store].tz)
    instants = [openings[(d.day, d.store)] + timedelta(seconds=d.seconds) for d in drafts]
    order = sorted(range(len(drafts)), key=lambda i: (instants[i], drafts[i].store, i))
    ordered_ids = uuid7_batch(rng, [unix_ms(instants[i]) for i in order])
    cashier_pick = rng.random(len(order)).tolist()
    sync_delay = rng.integers(2, 30, size=len(order)).tolist()
    counters: dict[tuple[int, int], int] = {}
    day_text = {day: f"{seasons.day_on(day):%Y%m%d}" for day, _ in openings}
    n = len(drafts)
    sale_ids: list[uuid.UUID] = [uuid.UUID(int=0)] * n
    receipts = [""] * n
    cashiers: list[uuid.UUID] = [uuid.UUID(int=0)] * n
    recorded = list(instants)
    for k, i in enumerate(order):
        d = drafts[i]
        store = stores[d.store]
        seq = counters.get((d.store, d.day), 0) + 1
        counters[(d.store, d.day)] = seq
        sale_ids[i] = ordered_ids[k]
        receipts[i] = f"{store.code}-{day_text[d.day]}-{seq:05d}"
        cashiers[i] = store.staff_ids[0] if cashier_pick[k] < 0.2 else store.staff_ids[-1]
        recorded[i] = instants[i] + timedelta(seconds=sync_delay[k])
    return Schedule(at=instants, order=order, sale_ids=sale_ids, receipts=receipts,
                    cashiers=cashiers, recorded_at=recorded)


@dataclass
class SaleRows:
    """Sales in time order as rows for ``bulk.insert_rows``: lines, discounts, payments."""

    sales: Sequence[tuple[object, ...]]
    lines: Sequence[tuple[object, ...]]
    discounts: Sequence[tuple[object, ...]]
    payments: Sequence[tuple[object, ...]]


def assemble(drafts: list[SaleDraft], when: Schedule, *, members: list[MemberDraft],
             products: list[ProductRef], stores: list[StoreRef],
             rng: np.random.Generator) -> SaleRows:
    """The rows of every sale, its lines, discounts and payments, in time order.

    A sale the loyalty stage did not give payments to is paid in one go, by card or cash.
    """
    sales: list[tuple[object, ...]] = []
    line_ms: list[int] = []
    line_parts: list[tuple[object, ...]] = []
    discount_ms: list[int] = []
    discount_parts: list[tuple[object, ...]] = []
    payment_ms: list[int] = []
    payment_parts: list[tuple[object, ...]] = []
    for i in when.order:
        d, at, sale_id = drafts[i], when.at[i], when.sale_ids[i]
        subtotal = sum(q * price for _, q, price, _ in d.lines)
        discount = sum(disc for _, _, _, disc in d.lines)
        total = subtotal - discount
        assert discount == sum(amount for *_, amount in d.discounts)
        sales.append((sale_id, stores[d.store].id,
                      members[d.member].id if d.member >= 0 else None, when.cashiers[i],
                      when.receipts[i], "import", at, when.recorded_at[i], subtotal, discount,
                      total, d.points_earned, d.points_redeemed, d.tier_id))
        ms = unix_ms(at)
        for kind, reference, label, amount in d.discounts:
            discount_ms.append(ms)
            discount_parts.append((sale_id, kind, reference, label, amount))
        for n, (product, quantity, price, disc) in enumerate(d.lines, start=1):
            line_ms.append(ms)
            ref = products[product]
            line_parts.append((sale_id, n, ref.id, quantity, price, disc,
                               quantity * price - disc, ref.category_id))
        if d.payments is not None:
            assert sum(amount for _, amount, _ in d.payments) == total
            for method, amount, reference in d.payments:
                payment_ms.append(ms)
                payment_parts.append((sale_id, method, amount, reference))
        elif total:
            payment_ms.append(ms)
            payment_parts.append((sale_id, "", total, None))  # method drawn below
    line_ids = uuid7_batch(rng, line_ms)
    lines = [(line_id, *part) for line_id, part in zip(line_ids, line_parts, strict=True)]
    discounts = [(discount_id, *part) for discount_id, part
                 in zip(uuid7_batch(rng, discount_ms), discount_parts, strict=True)]
    card = (rng.random(len(payment_parts)) < CARD_SHARE).tolist()
    payments = [(payment_id, sale_id, method or ("card" if by_card else "cash"), amount, ref)
                for payment_id, (sale_id, method, amount, ref), by_card
                in zip(uuid7_batch(rng, payment_ms), payment_parts, card, strict=True)]
    return SaleRows(sales=sales, lines=lines, discounts=discounts, payments=payments)
