"""The promotions pricing engine: a basket and a context in, a ``PricedBasket`` out.

Design overview
---------------
Pure and deterministic: no database, no clock, no randomness. Amounts are integer minor
units; every percentage is rounded once per promotion with ``divide_round_half_up`` and the
result is spread over lines with ``allocate`` (largest remainder), so the per-line savings
of a promotion always sum exactly to its total - what partial refunds need.

Order (docs/promotions.md has the full rules and examples):

1. line prices - ``member_price``: each line gets at most one member price, the lowest;
2. units - ``nth_item``, ``volume``, ``buy_x_get_y``, ``bundle``: in priority order, each
   unit is consumed (as qualifier or reward) by at most one of them;
3. period discounts - ``category_discount``: percent or amount off what is left;
4. basket - ``spend_discount``, ``spend_gift``: thresholds read the spend left after 3;
5. (checkout applies coupons and the tier discount here; ``coupons_allowed`` says whether
   it may);
6. cashback - on the amount paid (provisionally on the promotional total; checkout settles
   it with ``settle_cashback`` once coupons are known).

Non-exclusive promotions stack in that order. Exclusive promotions never stack with each
other: the basket is priced once without any, then once with each applicable exclusive
promotion (reusing the stages before its own), and the one that leaves the customer best off
wins - most value (savings + gift value + cashback), then lower priority number, then id.
An exclusive promotion that makes the customer no worse off beats none at all.

Savings never exceed what is left of a line, so no line and no total goes below zero.
Lines are put in a canonical order (product, price, category, quantity, line id) before
anything is computed, so the price cannot depend on the order lines were scanned.

Speed: promotions are compiled once into a ``PromotionBook`` indexed by product and
category, so a basket only meets the promotions that name its products or categories (plus
those covering everything). Units are never expanded one by one: a line is a run of
identical units and the unit algorithms count positions arithmetically over runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeAlias

from patron.core.errors import ValidationFailed
from patron.core.money import allocate, divide_round_half_up, proportion
from patron.offers.promotions.schedule import PricingContext, refusal, remaining_budget
from patron.offers.promotions.schemas import (
    ANY_TIER,
    BundleConfig,
    BuyXGetYConfig,
    CashbackConfig,
    CashbackMode,
    CategoryDiscountConfig,
    MemberPriceConfig,
    NthItemConfig,
    Promotion,
    PromotionConfig,
    RewardPick,
    Selector,
    SpendDiscountConfig,
    SpendGiftConfig,
    SpendStep,
    VolumeConfig,
)

_NIL = uuid.UUID(int=0)


class Stage(IntEnum):
    """Where in the order a kind of promotion is applied (see the module docstring)."""

    LINE_PRICE = 1
    UNITS = 2
    PERIOD = 3
    BASKET = 4
    CASHBACK = 6  # 5 is checkout's: coupons and the tier discount


STAGE_OF_KIND: Mapping[str, Stage] = {
    "member_price": Stage.LINE_PRICE, "nth_item": Stage.UNITS, "volume": Stage.UNITS,
    "buy_x_get_y": Stage.UNITS, "bundle": Stage.UNITS, "category_discount": Stage.PERIOD,
    "spend_discount": Stage.BASKET, "spend_gift": Stage.BASKET, "cashback": Stage.CASHBACK,
}
_STAGES = (Stage.LINE_PRICE, Stage.UNITS, Stage.PERIOD, Stage.BASKET, Stage.CASHBACK)


# ---------------------------------------------------------------- input and output


@dataclass(frozen=True)
class BasketLine:
    """One line of the basket at shelf price. ``line_id`` is the caller's stable key."""

    line_id: str
    product_id: uuid.UUID
    category_id: uuid.UUID | None
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True)
class LineSaving:
    promotion_id: uuid.UUID
    amount_minor: int


@dataclass(frozen=True)
class PricedLine:
    """A line after promotions: what it cost, what each promotion took off, what is left.

    ``coupons_allowed`` is false when a promotion that does not stack with coupons took
    something off this line.
    """

    line_id: str
    product_id: uuid.UUID
    category_id: uuid.UUID | None
    quantity: int
    unit_price_minor: int
    original_minor: int
    savings: tuple[LineSaving, ...]
    discount_minor: int
    total_minor: int
    coupons_allowed: bool


@dataclass(frozen=True)
class AppliedPromotion:
    """One promotion that applied: its total saving and where it went.

    ``value_minor`` (saving + gift value + cashback) is what the promotion gave away: the
    amount to add to its budget counter, and one use to its usage counters.
    """

    promotion_id: uuid.UUID
    name: str
    kind: str
    stage: int
    priority: int
    exclusive: bool
    stackable_with_coupons: bool
    applications: int
    saving_minor: int
    gift_value_minor: int
    cashback_minor: int
    line_savings: tuple[tuple[str, int], ...]

    @property
    def value_minor(self) -> int:
        return self.saving_minor + self.gift_value_minor + self.cashback_minor


@dataclass(frozen=True)
class GiftLine:
    """A gift added at zero price; ``value_minor`` is the per-unit worth from the config."""

    line_id: str
    promotion_id: uuid.UUID
    product_id: uuid.UUID
    quantity: int
    value_minor: int
    unit_price_minor: int = 0


@dataclass(frozen=True)
class CashbackAward:
    """Cashback a promotion returns to the wallet, computed on ``base_minor`` of its lines.

    ``amount_minor`` is already capped by the config's cap and the remaining budget.
    """

    promotion_id: uuid.UUID
    percent: int
    base_minor: int
    amount_minor: int
    line_ids: tuple[str, ...]


@dataclass(frozen=True)
class NearMiss:
    """A promotion the basket almost qualifies for: what is missing, for the till's screen.

    ``message_key`` names an i18n message; ``params`` fills it. ``products`` and
    ``categories`` say what to add (empty: anything in the promotion's scope).
    """

    promotion_id: uuid.UUID
    kind: str
    message_key: str
    missing_quantity: int
    missing_minor: int
    products: tuple[uuid.UUID, ...]
    categories: tuple[uuid.UUID, ...]
    params: Mapping[str, int | str]


@dataclass(frozen=True)
class PricedBasket:
    """The basket after promotions, before coupons and the tier discount.

    ``lines`` are in the caller's order; every figure is independent of that order.
    ``tier_code``/``member_id`` record who the basket was priced for, which
    ``reprice_after_return`` needs.
    """

    lines: tuple[PricedLine, ...]
    applied: tuple[AppliedPromotion, ...]
    gifts: tuple[GiftLine, ...]
    cashback: tuple[CashbackAward, ...]
    near_misses: tuple[NearMiss, ...]
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    coupons_allowed: bool
    member_id: uuid.UUID | None
    tier_code: str | None

    @property
    def cashback_minor(self) -> int:
        return sum(c.amount_minor for c in self.cashback)


@dataclass(frozen=True)
class ReturnQuote:
    """What a return of some units is worth once the kept basket is repriced.

    ``refund_minor`` = what was paid for the returned units (their proportional share of
    each line), minus ``discount_taken_back_minor``, minus the value of gifts kept without
    their qualifying spend; never negative, never more than was paid for them.

    ``discount_taken_back_minor`` is the repriced total of the kept units minus their
    share of what was paid: positive when they lose a discount (the free item's qualifier
    went back), negative when they deserve more than a proportional share of it (3 of 5
    units of "buy 2 get 1 free" kept still earn one free), which the refund gives back.
    ``line_refunds`` splits the refund over the returned lines (gift lines at zero).
    """

    refund_minor: int
    returned_paid_minor: int
    discount_taken_back_minor: int
    gift_value_taken_back_minor: int
    line_refunds: tuple[tuple[str, int], ...]
    kept: PricedBasket


# ---------------------------------------------------------------- compiled promotions


@dataclass(frozen=True, slots=True, eq=False)
class _Promo:
    promotion: Promotion
    config: PromotionConfig
    stage: Stage
    order: int  # position in (stage, priority, id) order
    rank: tuple[int, str]  # (priority, id): the tie-break between exclusive ones

    @property
    def id(self) -> uuid.UUID:
        return self.promotion.id


def _selectors(config: PromotionConfig) -> list[Selector]:
    if isinstance(config, MemberPriceConfig):
        return [rule.items for rule in config.rules]
    if isinstance(config, BuyXGetYConfig):
        return [config.buy] + ([config.get] if config.get is not None else [])
    if isinstance(config, BundleConfig):
        return [c.items for c in config.components]
    return [config.items]


class PromotionBook:
    """Active promotions compiled for pricing: ordered, and indexed by product and category.

    Build it once per change of the promotion rows (it is immutable and safe to share
    between requests); pricing a basket then only meets the promotions that name one of
    its products or categories, or cover everything.
    """

    def __init__(self, promotions: Iterable[Promotion]) -> None:
        listed = list(promotions)
        ids = [p.id for p in listed]
        if len(set(ids)) != len(ids):
            raise ValueError("promotion ids must be unique")
        ordered = sorted(listed, key=lambda p: (STAGE_OF_KIND[p.config.kind], p.priority,
                                                str(p.id)))
        self._promos = tuple(
            _Promo(p, p.config, STAGE_OF_KIND[p.config.kind], i, (p.priority, str(p.id)))
            for i, p in enumerate(ordered))
        self.promotions: Mapping[uuid.UUID, Promotion] = {p.id: p for p in ordered}
        by_product: dict[uuid.UUID, list[_Promo]] = {}
        by_category: dict[uuid.UUID, list[_Promo]] = {}
        universal: list[_Promo] = []
        for promo in self._promos:
            selectors = _selectors(promo.config)
            if any(s.everything for s in selectors):
                universal.append(promo)
                continue
            for pid in {pid for s in selectors for pid in s.products}:
                by_product.setdefault(pid, []).append(promo)
            for cid in {cid for s in selectors for cid in s.categories}:
                by_category.setdefault(cid, []).append(promo)
        self._by_product = {k: tuple(v) for k, v in by_product.items()}
        self._by_category = {k: tuple(v) for k, v in by_category.items()}
        self._universal = tuple(universal)

    def __len__(self) -> int:
        return len(self._promos)

    def segment_ids(self) -> frozenset[uuid.UUID]:
        """The saved segments any promotion's audience names (``MemberFacts.segment_ids``
        need only say which of these the member is in)."""
        return frozenset(s for p in self._promos for s in p.promotion.audience.segments)

    def needs_plan_perks(self) -> bool:
        """Whether any promotion is limited to paid plans' members (``MemberFacts.plan_codes``
        is then worth a query)."""
        return any(p.promotion.audience.plans for p in self._promos)

    def cashback_windows(self) -> frozenset[int]:
        """Window lengths (days) whose purchase counts ``MemberFacts`` must carry."""
        return frozenset(p.config.window_days for p in self._promos
                         if isinstance(p.config, CashbackConfig))

    def limited_ids(self) -> frozenset[uuid.UUID]:
        """Promotions whose usage counters ``PricingContext.usage`` must carry."""
        return frozenset(p.id for p in self._promos if p.promotion.limits.limited)

    def _candidates(self, lines: Sequence[_Line]) -> dict[_Promo, list[int]]:
        """Each promotion that may touch the basket, with the lines it may touch."""
        found: dict[_Promo, list[int]] = {}
        empty: tuple[_Promo, ...] = ()
        for line in lines:
            for index in (self._by_product.get(line.product_id, empty),
                          self._by_category.get(line.category_id or _NIL, empty)):
                for promo in index:
                    matched = found.get(promo)
                    if matched is None:
                        found[promo] = [line.idx]
                    elif matched[-1] != line.idx:
                        matched.append(line.idx)
        every = list(range(len(lines)))
        for promo in self._universal:
            found[promo] = every
        return found


# ---------------------------------------------------------------- pricing state


@dataclass(frozen=True, slots=True)
class _Line:
    idx: int  # canonical position
    line_id: str
    product_id: uuid.UUID
    category_id: uuid.UUID | None
    quantity: int
    list_price: int


@dataclass(slots=True)
class _Result:
    promo: _Promo
    saving: int
    alloc: list[tuple[int, int]]  # (line idx, amount), amounts > 0
    applications: int = 1
    gift_quantity: int = 0
    gift_value: int = 0
    cashback: int = 0
    cashback_base: int = 0
    cashback_lines: tuple[int, ...] = ()
    consumed: dict[int, int] = field(default_factory=dict)  # units, for unit promotions

    def touched(self) -> set[int]:
        return {i for i, _ in self.alloc} | set(self.consumed)

    def replay(self, state: _State) -> None:
        """Apply this (recorded) outcome again to a state that is the same on its lines."""
        for i, amount in self.alloc:
            state.net[i] -= amount
        for i, units in self.consumed.items():
            state.free[i] -= units
        state.results.append(self)

    @property
    def value(self) -> int:
        return self.saving + self.gift_value + self.cashback


@dataclass(slots=True)
class _State:
    price: list[int]  # unit price after member prices
    net: list[int]  # what is left of each line
    free: list[int]  # units no unit promotion has consumed yet
    results: list[_Result]
    spend_base: list[int] = field(default_factory=list)  # nets when the basket stage began

    def copy(self) -> _State:
        return _State(self.price[:], self.net[:], self.free[:], self.results[:],
                      self.spend_base[:])

    @property
    def value(self) -> int:
        return sum(r.value for r in self.results)


@dataclass(slots=True)
class _Env:
    lines: list[_Line]
    matched: Mapping[_Promo, list[int]]
    budget: dict[_Promo, int | None]
    is_member: bool
    tier_code: str | None
    purchase_counts: Mapping[int, int] | None  # None: cashback eligibility already known
    cover: dict[tuple[int, int], list[int]] = field(default_factory=dict)

    def covered(self, promo: _Promo, selector: Selector) -> list[int]:
        """The basket lines (canonical order) ``selector`` of ``promo`` covers; memoised,
        since every exclusive trial asks again."""
        key = (promo.order, id(selector))
        found = self.cover.get(key)
        if found is None:
            lines = self.lines
            if selector.everything and not selector.exclude_products:
                found = self.matched[promo]
            else:
                found = [i for i in self.matched[promo]
                         if selector.covers(lines[i].product_id, lines[i].category_id)]
            self.cover[key] = found
        return found


Runs: TypeAlias = list[tuple[int, int, int]]  # (unit price, line idx, units), dearest first


def _runs(state: _State, lines: Iterable[int]) -> Runs:
    runs = [(state.price[i], i, state.free[i]) for i in lines if state.free[i] > 0]
    runs.sort(key=lambda r: (-r[0], r[1]))
    return runs


def _cap(env: _Env, promo: _Promo, amount: int) -> int:
    left = env.budget[promo]
    return amount if left is None else min(amount, left)


def _spread(state: _State, env: _Env, promo: _Promo, saving: int,
            weights: list[tuple[int, int]], applications: int = 1) -> _Result | None:
    """Take ``saving`` (capped by the budget) off lines in proportion to ``weights``."""
    saving = _cap(env, promo, saving)
    if saving <= 0:
        return None
    if len(weights) == 1:
        alloc = [(weights[0][0], saving)]
    else:
        parts = allocate(saving, [w for _, w in weights])
        alloc = [(i, part) for (i, _), part in zip(weights, parts, strict=True) if part]
    for i, part in alloc:
        state.net[i] -= part
    return _Result(promo, saving, alloc, applications)


def _total(values: list[int], lines: list[int]) -> int:
    return sum(values) if len(lines) == len(values) else sum(values[i] for i in lines)


# ---------------------------------------------------------------- stage 1: member prices


def _member_unit_price(config: MemberPriceConfig, line: _Line, tier: str | None) -> int | None:
    best: int | None = None
    for rule in config.rules:
        if not rule.items.covers(line.product_id, line.category_id):
            continue
        table = rule.prices_minor if rule.prices_minor is not None else rule.percent_off
        assert table is not None
        key = tier if tier is not None and tier in table else ANY_TIER
        if key not in table:
            continue
        if rule.prices_minor is not None:
            price = min(line.list_price, table[key])
        else:
            price = line.list_price - proportion(line.list_price, table[key], 100)
        if best is None or price < best:
            best = price
    return best


def _stage_line_prices(state: _State, env: _Env, promos: list[_Promo]) -> None:
    """Each line takes the lowest member price offered; a promotion whose total saving
    would exceed its remaining budget is dropped whole (a shelf price cannot be partial)."""
    if not promos or not env.is_member:
        return
    offers: dict[int, list[tuple[int, int, _Promo]]] = {}
    for promo in promos:
        assert isinstance(promo.config, MemberPriceConfig)
        for i in env.matched[promo]:
            price = _member_unit_price(promo.config, env.lines[i], env.tier_code)
            if price is not None and price < env.lines[i].list_price:
                offers.setdefault(i, []).append((price, promo.order, promo))
    for choices in offers.values():
        choices.sort(key=lambda c: (c[0], c[1]))
    dropped: set[_Promo] = set()
    while True:
        won: dict[_Promo, list[tuple[int, int]]] = {}
        for i, choices in offers.items():
            for price, _, promo in choices:
                if promo not in dropped:
                    won.setdefault(promo, []).append((i, price))
                    break
        over = {p for p, got in won.items()
                if env.budget[p] is not None
                and sum((env.lines[i].list_price - price) * env.lines[i].quantity
                        for i, price in got) > (env.budget[p] or 0)}
        if not over:
            break
        dropped |= over
    for promo in promos:
        got = won.get(promo)
        if not got:
            continue
        alloc = []
        for i, price in sorted(got):
            amount = (env.lines[i].list_price - price) * env.lines[i].quantity
            state.price[i] = price
            state.net[i] -= amount
            alloc.append((i, amount))
        state.results.append(_Result(promo, sum(a for _, a in alloc), alloc))


# ---------------------------------------------------------------- stage 2: unit promotions


@dataclass(slots=True)
class _Take:
    """Units a unit promotion consumes and the value of the units it discounts."""

    consumed: dict[int, int] = field(default_factory=dict)
    reward_value: int = 0
    applications: int = 0

    def add(self, i: int, units: int) -> None:
        if units > 0:
            self.consumed[i] = self.consumed.get(i, 0) + units


def _periodic_take(take: _Take, runs: Runs, group: int, groups: int,
                   rewarded_below: int) -> None:
    """Consume the first ``groups`` groups of ``group`` units (dearest first); in each group
    the positions from ``rewarded_below`` on are the discounted ones."""
    limit = groups * group
    reward_per_group = group - rewarded_below

    def rewarded(upto: int) -> int:  # rewarded positions before ``upto``
        return (upto // group) * reward_per_group + max(0, upto % group - rewarded_below)

    pos = 0
    for price, i, units in runs:
        if pos >= limit:
            break
        end = min(pos + units, limit)
        take.add(i, end - pos)
        take.reward_value += price * (rewarded(end) - rewarded(pos))
        pos = end
    take.applications += groups


def _tail_take(take: _Take, runs: Runs, consumed: int, rewarded: int) -> None:
    """Consume the ``consumed`` cheapest units; the ``rewarded`` cheapest are discounted."""
    total = sum(r[2] for r in runs)
    start, reward_from = total - consumed, total - rewarded
    pos = 0
    for price, i, units in runs:
        end = pos + units
        take.add(i, max(0, end - max(pos, start)))
        take.reward_value += price * max(0, end - max(pos, reward_from))
        pos = end


def _apps(count: int, cap: int | None) -> int:
    return count if cap is None else min(count, cap)


def _take_nth(state: _State, env: _Env, promo: _Promo, c: NthItemConfig) -> _Take:
    take = _Take()
    runs = _runs(state, env.covered(promo, c.items))
    pools: list[Runs] = [runs]
    if c.per_product:
        by_product: dict[uuid.UUID, Runs] = {}
        for run in runs:
            by_product.setdefault(env.lines[run[1]].product_id, []).append(run)
        pools = [by_product[k] for k in sorted(by_product)]
    left = c.max_applications
    for pool in pools:
        groups = _apps(sum(r[2] for r in pool) // c.nth, left)
        if groups:
            _periodic_take(take, pool, c.nth, groups, c.nth - 1)
            left = None if left is None else left - groups
    return take


def _take_volume(state: _State, env: _Env, promo: _Promo, c: VolumeConfig) -> tuple[_Take, int]:
    take = _Take()
    runs = _runs(state, env.covered(promo, c.items))
    units = sum(r[2] for r in runs)
    reached = [t for t in c.tiers if t.min_quantity <= units]
    if not reached:
        return take, 0
    for price, i, n in runs:
        take.add(i, n)
        take.reward_value += price * n
    take.applications = 1
    return take, reached[-1].percent_off


def _take_bxgy(state: _State, env: _Env, promo: _Promo, c: BuyXGetYConfig) -> _Take:
    take = _Take()
    x, y = c.buy_quantity, c.get_quantity
    buy_lines = env.covered(promo, c.buy)
    if c.get is None:
        runs = _runs(state, buy_lines)
        groups = _apps(sum(r[2] for r in runs) // (x + y), c.max_applications)
        if groups and c.reward_pick is RewardPick.GROUP:
            _periodic_take(take, runs, x + y, groups, x)
        elif groups:
            _tail_take(take, runs, groups * (x + y), groups * y)
            take.applications = groups
        return take
    buy, get = set(buy_lines), set(env.covered(promo, c.get))
    free = state.free
    both = sum(free[i] for i in buy & get)
    buy_only = sum(free[i] for i in buy - get)
    get_only = sum(free[i] for i in get - buy)
    groups = _apps(min((buy_only + both) // x, (get_only + both) // y,
                       (buy_only + get_only + both) // (x + y)), c.max_applications)
    if not groups:
        return take
    # rewards: the cheapest eligible units, leaving enough shared units to qualify
    shared_left = both + buy_only - groups * x
    need = groups * y
    used: dict[int, int] = {}
    for i in sorted(get, key=lambda i: (state.price[i], i in buy, i)):
        if need == 0:
            break
        units = min(free[i], need, shared_left if i in buy else need)
        if units <= 0:
            continue
        used[i] = units
        need -= units
        take.reward_value += units * state.price[i]
        if i in buy:
            shared_left -= units
    # qualifiers: the cheapest remaining buy units, so dearer ones stay for other promotions
    need = groups * x
    for i in sorted(buy, key=lambda i: (state.price[i], i in get, i)):
        if need == 0:
            break
        units = min(free[i] - used.get(i, 0), need)
        if units > 0:
            used[i] = used.get(i, 0) + units
            need -= units
    for i in sorted(used):
        take.add(i, used[i])
    take.applications = groups
    return take


def _take_bundle(state: _State, env: _Env, promo: _Promo, c: BundleConfig) -> tuple[_Take, int]:
    """Form bundles from the dearest eligible units while a bundle saves something.

    Components with fewer eligible units are filled first; identical consecutive bundles
    are formed in one step, so the loop runs about once per line, not once per unit."""
    take, saving = _Take(), 0
    avail = state.free[:]
    comps = []
    for n, comp in enumerate(c.components):
        runs = _runs(state, env.covered(promo, comp.items))
        comps.append((sum(r[2] for r in runs), n, comp.quantity, runs))
    comps.sort(key=lambda t: (t[0], t[1]))
    while c.max_applications is None or take.applications < c.max_applications:
        chosen: dict[int, int] = {}
        value = 0
        for _, _, quantity, runs in comps:
            need = quantity
            for price, i, _ in runs:
                units = min(avail[i] - chosen.get(i, 0), need)
                if units > 0:
                    chosen[i] = chosen.get(i, 0) + units
                    value += units * price
                    need -= units
                    if need == 0:
                        break
            if need:
                return take, saving
        if value <= c.price_minor:
            return take, saving
        repeat = min(avail[i] // n for i, n in chosen.items())
        if c.max_applications is not None:
            repeat = min(repeat, c.max_applications - take.applications)
        for i, n in chosen.items():
            avail[i] -= n * repeat
            take.add(i, n * repeat)
        saving += (value - c.price_minor) * repeat
        take.applications += repeat
    return take, saving


def _apply_units(state: _State, env: _Env, promo: _Promo) -> _Result | None:
    c = promo.config
    if isinstance(c, NthItemConfig):
        take = _take_nth(state, env, promo, c)
        saving = divide_round_half_up(take.reward_value * c.percent_off, 100)
    elif isinstance(c, VolumeConfig):
        take, percent = _take_volume(state, env, promo, c)
        saving = divide_round_half_up(take.reward_value * percent, 100)
    elif isinstance(c, BuyXGetYConfig):
        take = _take_bxgy(state, env, promo, c)
        saving = divide_round_half_up(take.reward_value * c.percent_off, 100)
    else:
        assert isinstance(c, BundleConfig)
        take, saving = _take_bundle(state, env, promo, c)
    if not take.consumed:
        return None
    weights = [(i, n * state.price[i]) for i, n in sorted(take.consumed.items())]
    result = _spread(state, env, promo, saving, weights, take.applications)
    if result is not None:
        result.consumed = take.consumed
        for i, n in take.consumed.items():
            state.free[i] -= n
    return result


# ---------------------------------------------------------------- stages 3, 4 and 6


def _apply_period(state: _State, env: _Env, promo: _Promo) -> _Result | None:
    c = promo.config
    assert isinstance(c, CategoryDiscountConfig)
    lines = [i for i in env.covered(promo, c.items) if state.net[i] > 0]
    if c.percent_off is not None:
        weights = [(i, state.net[i]) for i in lines]
        saving = divide_round_half_up(sum(w for _, w in weights) * c.percent_off, 100)
    else:
        amount = c.amount_off_minor or 0
        weights = [(i, min(state.net[i], amount * env.lines[i].quantity)) for i in lines]
        saving = sum(w for _, w in weights)
    return _spread(state, env, promo, saving, weights)


def _step_amount(step: SpendStep, spend: int, repeat: bool) -> tuple[int, int]:
    """(amount off, applications) of a reached step."""
    if step.amount_off_minor is not None:
        times = spend // step.spend_minor if repeat else 1
        return step.amount_off_minor * times, times
    amount = divide_round_half_up(spend * (step.percent_off or 0), 100)
    return (amount if step.cap_minor is None else min(amount, step.cap_minor)), 1


def _apply_basket(state: _State, env: _Env, promo: _Promo) -> _Result | None:
    """Thresholds read ``spend_base``, the spend when the basket stage began, so the order
    of basket promotions changes what each takes off but never whether it qualifies."""
    c = promo.config
    assert isinstance(c, SpendDiscountConfig | SpendGiftConfig)
    lines = env.covered(promo, c.items)
    spend = _total(state.spend_base, lines)
    if isinstance(c, SpendGiftConfig):
        value = c.gift_value_minor * c.gift_quantity
        if spend >= c.spend_minor and _cap(env, promo, value) == value:
            return _Result(promo, 0, [], 1, c.gift_quantity, value)
        return None
    reached = [s for s in c.steps if s.spend_minor <= spend]
    if not reached:
        return None
    amount, times = _step_amount(reached[-1], spend, c.repeat)
    weights = [(i, state.net[i]) for i in lines if state.net[i] > 0]
    return _spread(state, env, promo, min(amount, sum(w for _, w in weights)), weights, times)


def _cashback_due(c: CashbackConfig, counts: Mapping[int, int] | None) -> bool:
    if counts is None:
        return True
    number = counts.get(c.window_days, -1) + 1  # this purchase's number in the window
    if number <= 0:
        return False
    if c.mode is CashbackMode.NTH:
        return number == c.purchase_number
    if c.mode is CashbackMode.EVERY_NTH:
        return number % c.purchase_number == 0
    return number >= c.purchase_number


def _apply_cashback(state: _State, env: _Env, promo: _Promo) -> _Result | None:
    c = promo.config
    assert isinstance(c, CashbackConfig)
    if not _cashback_due(c, env.purchase_counts):
        return None
    lines = env.covered(promo, c.items)
    base = _total(state.net, lines)
    amount = divide_round_half_up(base * c.percent, 100)
    if c.cap_minor is not None:
        amount = min(amount, c.cap_minor)
    amount = _cap(env, promo, amount)
    if amount <= 0:
        return None
    return _Result(promo, 0, [], 1, cashback=amount, cashback_base=base,
                   cashback_lines=tuple(lines))


_APPLY = {Stage.UNITS: _apply_units, Stage.PERIOD: _apply_period,
          Stage.BASKET: _apply_basket, Stage.CASHBACK: _apply_cashback}


def _same(a: _Result | None, b: _Result | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.saving, a.alloc, a.consumed, a.gift_quantity, a.cashback) \
        == (b.saving, b.alloc, b.consumed, b.gift_quantity, b.cashback)


@dataclass(slots=True)
class _Baseline:
    """The pricing without exclusive promotions, kept so exclusive trials can reuse it:
    the state before each stage and what every promotion did."""

    snapshots: list[_State] = field(default_factory=list)
    outcomes: dict[_Promo, _Result | None] = field(default_factory=dict)


def _run(state: _State, env: _Env, stages: list[list[_Promo]], start: int = 0,
         baseline: _Baseline | None = None, record: _Baseline | None = None,
         dirty: set[int] | None = None) -> None:
    """Apply the stages from ``start`` on.

    With ``record``, remember snapshots and outcomes (the baseline run). With
    ``baseline`` (an exclusive trial), a promotion none of whose lines differ from the
    baseline at this point (``dirty`` holds those that may) is not recomputed: its
    recorded outcome is replayed, since an outcome depends only on the state of the
    promotion's own lines. Recomputed outcomes that differ mark their lines dirty.
    """
    for n in range(start, len(_STAGES)):
        stage = _STAGES[n]
        if record is not None:
            record.snapshots.append(state.copy())
        if stage is Stage.LINE_PRICE:
            _stage_line_prices(state, env, stages[n])
            if baseline is not None and dirty is not None:
                after = baseline.snapshots[n + 1]
                dirty |= {i for i, (net, price) in enumerate(zip(state.net, state.price,
                                                                  strict=True))
                          if net != after.net[i] or price != after.price[i]}
            continue
        if stage is Stage.BASKET:
            state.spend_base = state.net[:]
        apply = _APPLY[stage]
        for promo in stages[n]:
            if baseline is not None and dirty is not None and promo in baseline.outcomes:
                recorded = baseline.outcomes[promo]
                if dirty.isdisjoint(env.matched[promo]):
                    if recorded is not None:
                        recorded.replay(state)
                    continue
                result = apply(state, env, promo)
                if not _same(result, recorded):
                    dirty |= (result.touched() if result else set()) \
                        | (recorded.touched() if recorded else set())
            else:
                result = apply(state, env, promo)
                if dirty is not None and result is not None:
                    dirty |= result.touched()
            if record is not None:
                record.outcomes[promo] = result
            if result is not None:
                state.results.append(result)


# ---------------------------------------------------------------- pricing


def _canonical(lines: Sequence[BasketLine]) -> list[_Line]:
    seen: set[str] = set()
    for n, line in enumerate(lines):
        if line.line_id in seen:
            raise ValidationFailed("Two lines have the same line_id", f"lines.{n}.line_id")
        seen.add(line.line_id)
        if line.quantity <= 0:
            raise ValidationFailed("Quantity must be positive", f"lines.{n}.quantity")
        if line.unit_price_minor < 0:
            raise ValidationFailed("Price cannot be negative", f"lines.{n}.unit_price_minor")
    ordered = sorted(lines, key=lambda ln: (ln.product_id, ln.unit_price_minor,
                                            ln.category_id or _NIL, ln.quantity, ln.line_id))
    return [_Line(i, ln.line_id, ln.product_id, ln.category_id, ln.quantity,
                  ln.unit_price_minor) for i, ln in enumerate(ordered)]


def _fresh(lines: list[_Line]) -> _State:
    return _State([ln.list_price for ln in lines],
                  [ln.list_price * ln.quantity for ln in lines],
                  [ln.quantity for ln in lines], [])


def _best(state: _State, env: _Env, normal: list[list[_Promo]],
          exclusive: list[_Promo]) -> tuple[_State, set[_Promo]]:
    """Price with the non-exclusive promotions, then with each exclusive one added.

    The winner has the most value; on equal value an exclusive promotion beats none and a
    smaller (priority, id) beats a larger. Also returns the exclusive promotions that
    applied in their trial but lost: they get no near-miss hint (the basket qualifies).
    """
    baseline = _Baseline()
    base = state.copy()
    _run(base, env, normal, record=baseline)
    best, best_value, winner = base, base.value, None
    losers: set[_Promo] = set()
    for promo in exclusive:
        n = _STAGES.index(promo.stage)
        stages = [list(s) for s in normal]
        stages[n] = sorted([*stages[n], promo], key=lambda p: p.order)
        trial = baseline.snapshots[n].copy()
        _run(trial, env, stages, n, baseline=baseline, dirty=set())
        if not any(r.promo is promo for r in trial.results):
            continue
        value = trial.value
        if value > best_value or (value == best_value and (
                winner is None or promo.rank < winner.rank)):
            if winner is not None:
                losers.add(winner)
            best, best_value, winner = trial, value, promo
        else:
            losers.add(promo)
    return best, losers


def _by_stage(promos: Iterable[_Promo]) -> list[list[_Promo]]:
    stages: list[list[_Promo]] = [[] for _ in _STAGES]
    for promo in sorted(promos, key=lambda p: p.order):
        stages[_STAGES.index(promo.stage)].append(promo)
    return stages


def price_basket(lines: Sequence[BasketLine], *, context: PricingContext,
                 book: PromotionBook) -> PricedBasket:
    """Apply the book's promotions to the basket; see the module docstring for the order."""
    canon = _canonical(lines)
    local = context.local_moment()
    matched = book._candidates(canon)
    eligible = {p: ln for p, ln in matched.items()
                if refusal(p.promotion, context, local) is None}
    member = context.member
    env = _Env(canon, eligible,
               {p: remaining_budget(p.promotion.limits, context.usage.get(p.id))
                for p in eligible},
               member is not None, member.tier_code if member else None,
               member.purchases_within_days if member else {})
    normal = _by_stage(p for p in eligible if not p.promotion.exclusive)
    exclusive = sorted((p for p in eligible if p.promotion.exclusive), key=lambda p: p.order)
    state, losers = _best(_fresh(canon), env, normal, exclusive)
    near = _near_misses(state, env, [p for p in sorted(eligible, key=lambda p: p.order)
                                     if p not in losers])
    return _output(lines, canon, state, near, member.member_id if member else None,
                   env.tier_code)


def _output(lines: Sequence[BasketLine], canon: list[_Line], state: _State,
            near: tuple[NearMiss, ...], member_id: uuid.UUID | None,
            tier_code: str | None) -> PricedBasket:
    per_line: list[list[LineSaving]] = [[] for _ in canon]
    blocked = [False] * len(canon)
    applied = []
    gifts = []
    cashback = []
    for r in state.results:
        promo = r.promo.promotion
        for i, amount in r.alloc:
            per_line[i].append(LineSaving(promo.id, amount))
            blocked[i] = blocked[i] or not promo.stackable_with_coupons
        applied.append(AppliedPromotion(
            promo.id, promo.name, promo.config.kind, int(r.promo.stage), promo.priority,
            promo.exclusive, promo.stackable_with_coupons, r.applications, r.saving,
            r.gift_value, r.cashback, tuple((canon[i].line_id, a) for i, a in r.alloc)))
        if r.gift_quantity:
            c = promo.config
            assert isinstance(c, SpendGiftConfig)
            gifts.append(GiftLine(f"gift:{promo.id}", promo.id, c.gift_product_id,
                                  r.gift_quantity, c.gift_value_minor))
        if r.cashback:
            c2 = promo.config
            assert isinstance(c2, CashbackConfig)
            cashback.append(CashbackAward(promo.id, c2.percent, r.cashback_base, r.cashback,
                                          tuple(canon[i].line_id for i in r.cashback_lines)))
    by_id = {ln.line_id: ln for ln in canon}
    priced = []
    for line in lines:
        c_line = by_id[line.line_id]
        savings = per_line[c_line.idx]
        original = line.quantity * line.unit_price_minor
        discount = sum(s.amount_minor for s in savings)
        priced.append(PricedLine(line.line_id, line.product_id, line.category_id,
                                 line.quantity, line.unit_price_minor, original,
                                 tuple(savings), discount, original - discount,
                                 not blocked[c_line.idx]))
    subtotal = sum(p.original_minor for p in priced)
    discount = sum(p.discount_minor for p in priced)
    return PricedBasket(
        tuple(priced), tuple(applied), tuple(gifts), tuple(cashback), near, subtotal,
        discount, subtotal - discount,
        all(a.stackable_with_coupons for a in applied), member_id, tier_code)


# ---------------------------------------------------------------- near misses


def _units(env: _Env, promo: _Promo, selector: Selector) -> int:
    return sum(env.lines[i].quantity for i in env.covered(promo, selector))


def _near(promo: _Promo, key: str, *, quantity: int = 0, minor: int = 0,
          selector: Selector | None = None, **params: int | str) -> NearMiss:
    return NearMiss(promo.id, promo.config.kind, f"promotions.near_miss.{key}", quantity,
                    minor, tuple(sorted(selector.products)) if selector else (),
                    tuple(sorted(selector.categories)) if selector else (),
                    {"missing_quantity": quantity, "missing_minor": minor, **params})


def _half_way(have: int, need: int) -> bool:
    """A hint is worth showing once the customer has at least half of what is needed."""
    return need > 0 and 2 * have >= need > have


def _near_miss(state: _State, env: _Env, promo: _Promo, result: _Result | None) -> NearMiss | None:
    c = promo.config
    done = result.applications if result else 0
    if isinstance(c, NthItemConfig | BuyXGetYConfig | BundleConfig) \
            and c.max_applications is not None and done >= c.max_applications:
        return None
    if isinstance(c, NthItemConfig):
        if c.per_product:
            counts: dict[uuid.UUID, int] = {}
            for i in env.covered(promo, c.items):
                counts[env.lines[i].product_id] = counts.get(env.lines[i].product_id, 0) \
                    + env.lines[i].quantity
            best = min(((c.nth - n % c.nth, pid) for pid, n in counts.items() if n % c.nth),
                       default=None)
            if best is None or not _half_way(c.nth - best[0], c.nth):
                return None
            return _near(promo, "nth_item", quantity=best[0],
                         selector=Selector(products=frozenset({best[1]})),
                         nth=c.nth, percent_off=c.percent_off)
        left = _units(env, promo, c.items) % c.nth
        if not _half_way(left, c.nth):
            return None
        return _near(promo, "nth_item", quantity=c.nth - left, selector=c.items, nth=c.nth,
                     percent_off=c.percent_off)
    if isinstance(c, VolumeConfig):
        units = _units(env, promo, c.items)
        nxt = next((t for t in c.tiers if t.min_quantity > units), None)
        if nxt is None or not _half_way(units, nxt.min_quantity):
            return None
        return _near(promo, "volume", quantity=nxt.min_quantity - units, selector=c.items,
                     percent_off=nxt.percent_off)
    if isinstance(c, BuyXGetYConfig):
        return _near_bxgy(env, promo, c, done)
    if isinstance(c, BundleConfig):
        missing = have = 0
        for comp in c.components:
            need = (done + 1) * comp.quantity
            got = _units(env, promo, comp.items)
            missing += max(0, need - got)
            have += min(need, got)
        if not _half_way(have, have + missing):
            return None
        return _near(promo, "bundle", quantity=missing,
                     selector=Selector(
                         products=frozenset().union(*(x.items.products for x in c.components)),
                         categories=frozenset().union(
                             *(x.items.categories for x in c.components))),
                     price_minor=c.price_minor)
    if isinstance(c, SpendGiftConfig):
        spend = _spend(state, env, promo, c.items)
        if result is not None or not _half_way(spend, c.spend_minor):
            return None
        return _near(promo, "spend_gift", minor=c.spend_minor - spend, selector=c.items,
                     gift_product_id=str(c.gift_product_id), gift_quantity=c.gift_quantity)
    if isinstance(c, SpendDiscountConfig):
        return _near_spend(state, env, promo, c)
    return None


def _spend(state: _State, env: _Env, promo: _Promo, selector: Selector) -> int:
    base = state.spend_base or state.net
    return sum(base[i] for i in env.covered(promo, selector))


def _near_spend(state: _State, env: _Env, promo: _Promo,
                c: SpendDiscountConfig) -> NearMiss | None:
    """The next step up: "spend 23.00 more to get 20.00 off" (or the next multiple)."""
    spend = _spend(state, env, promo, c.items)
    if c.repeat:
        step = c.steps[0]
        have, need = spend % step.spend_minor, step.spend_minor
    else:
        nxt = next((s for s in c.steps if s.spend_minor > spend), None)
        if nxt is None:
            return None
        step, have, need = nxt, spend, nxt.spend_minor
    if not _half_way(have, need):
        return None
    if step.amount_off_minor is not None:
        return _near(promo, "spend_discount", minor=need - have, selector=c.items,
                     amount_off_minor=step.amount_off_minor)
    return _near(promo, "spend_percent", minor=need - have, selector=c.items,
                 percent_off=step.percent_off or 0)


def _near_bxgy(env: _Env, promo: _Promo, c: BuyXGetYConfig, done: int) -> NearMiss | None:
    x, y = c.buy_quantity, c.get_quantity
    if c.get is None:
        left = _units(env, promo, c.buy) - done * (x + y)
        key, missing, selector = "buy_x_get_y", x + y - left, c.buy
        if not _half_way(left, x + y):
            return None
    else:
        buys = _units(env, promo, c.buy) - done * x
        gets = _units(env, promo, c.get) - done * y
        if buys >= x:
            if gets >= y:
                return None
            key, missing, selector = "add_reward", y - max(0, gets), c.get
        elif _half_way(max(0, buys), x):
            key, missing, selector = "buy_more", x - max(0, buys), c.buy
        else:
            return None
    return _near(promo, key, quantity=missing, selector=selector, buy_quantity=x,
                 get_quantity=y, percent_off=c.percent_off)


def _near_misses(state: _State, env: _Env, promos: list[_Promo]) -> tuple[NearMiss, ...]:
    """Hints for the promotions of ``promos`` (in order) the basket almost reaches."""
    results = {r.promo: r for r in state.results}
    found = []
    for promo in promos:
        if promo.stage in (Stage.UNITS, Stage.BASKET):
            miss = _near_miss(state, env, promo, results.get(promo))
            if miss is not None:
                found.append((promo.rank, miss))
    found.sort(key=lambda f: f[0])
    return tuple(m for _, m in found)


# ---------------------------------------------------------------- after the sale


def settle_cashback(priced: PricedBasket, *,
                    paid_by_line: Mapping[str, int]) -> tuple[CashbackAward, ...]:
    """Cashback on what was finally paid, once checkout has applied coupons and tiers.

    ``paid_by_line`` maps line ids to the amount paid for each line (lines left out count
    at their promotional total). An award never grows past the provisional one, which is
    already within the promotion's cap and budget.
    """
    totals = {line.line_id: line.total_minor for line in priced.lines}
    settled = []
    for award in priced.cashback:
        base = sum(paid_by_line.get(i, totals[i]) for i in award.line_ids)
        amount = min(divide_round_half_up(base * award.percent, 100), award.amount_minor)
        settled.append(CashbackAward(award.promotion_id, award.percent, base, max(0, amount),
                                     award.line_ids))
    return tuple(settled)


def reprice_after_return(basket: Sequence[BasketLine], priced: PricedBasket,
                         returned: Mapping[str, int], *, book: PromotionBook,
                         paid_by_line: Mapping[str, int] | None = None) -> ReturnQuote:
    """What returning ``returned`` units is worth, so that no reward outlives its reason.

    ``basket`` and ``priced`` are the sale as priced at checkout; ``returned`` maps line ids
    (gift lines included) to units returned *so far in total* - the quote is cumulative,
    like the refunds in ``sales.service``: subtract what earlier refunds paid out.
    ``book`` must hold the promotions that applied (as they were at the sale).
    ``paid_by_line`` are the amounts actually paid per line after coupons and the tier
    discount (default: the promotional totals).

    The kept units are repriced with only the promotions that applied at the sale, each
    limited to what it gave then (a return never unlocks a new reward, and the sale's
    schedule, audience and limits are taken as met). The discount the kept units lose,
    and the value of gifts kept without their qualifying spend, come off the refund.
    """
    by_id = {line.line_id: line for line in basket}
    priced_by_id = {line.line_id: line for line in priced.lines}
    gifts = {g.line_id: g for g in priced.gifts}
    if set(by_id) != set(priced_by_id):
        raise ValueError("basket and priced basket have different lines")
    for line_id, units in returned.items():
        have = by_id[line_id].quantity if line_id in by_id else \
            gifts[line_id].quantity if line_id in gifts else None
        if have is None:
            raise ValidationFailed("Not a line of this sale", f"returned.{line_id}")
        if not 0 <= units <= have:
            raise ValidationFailed(f"Between 0 and {have} units can be returned",
                                   f"returned.{line_id}")
    applied = {a.promotion_id: a for a in priced.applied}
    missing = [pid for pid in applied if pid not in book.promotions]
    if missing:
        raise ValueError(f"promotions applied at the sale are not in the book: {missing}")
    kept_lines = [BasketLine(ln.line_id, ln.product_id, ln.category_id,
                             ln.quantity - returned.get(ln.line_id, 0), ln.unit_price_minor)
                  for ln in basket if ln.quantity > returned.get(ln.line_id, 0)]
    kept = _reprice(kept_lines, priced,
                    PromotionBook(book.promotions[pid] for pid in applied), applied)
    kept_totals = {line.line_id: line.total_minor for line in kept.lines}
    paid = paid_by_line or {}
    returned_paid: list[tuple[str, int]] = []
    lost = 0
    for line in basket:
        units = returned.get(line.line_id, 0)
        promo_total = priced_by_id[line.line_id].total_minor
        line_paid = paid.get(line.line_id, promo_total)
        if units:
            returned_paid.append((line.line_id, proportion(line_paid, units, line.quantity)))
        kept_before = promo_total - proportion(promo_total, units, line.quantity)
        lost += kept_totals.get(line.line_id, 0) - kept_before
    entitled = {g.promotion_id: g.quantity for g in kept.gifts}
    gift_charge = sum(max(0, g.quantity - returned.get(g.line_id, 0)
                          - entitled.get(g.promotion_id, 0)) * g.value_minor
                      for g in priced.gifts)
    paid_back = sum(amount for _, amount in returned_paid)
    refund = min(paid_back, max(0, paid_back - lost - gift_charge))
    returned_paid.sort()
    shares = allocate(refund, [amount for _, amount in returned_paid])
    line_refunds = [(line_id, share) for (line_id, _), share
                    in zip(returned_paid, shares, strict=True)]
    line_refunds += sorted((g, 0) for g in gifts if returned.get(g, 0))
    return ReturnQuote(refund, paid_back, lost, gift_charge, tuple(line_refunds), kept)


def _reprice(lines: list[BasketLine], priced: PricedBasket, book: PromotionBook,
             applied: Mapping[uuid.UUID, AppliedPromotion]) -> PricedBasket:
    canon = _canonical(lines)
    matched = book._candidates(canon)
    env = _Env(canon, matched, {p: applied[p.id].value_minor for p in matched},
               priced.member_id is not None, priced.tier_code, None)
    normal = _by_stage(p for p in matched if not p.promotion.exclusive)
    exclusive = sorted((p for p in matched if p.promotion.exclusive), key=lambda p: p.order)
    state, _ = _best(_fresh(canon), env, normal, exclusive)
    return _output(lines, canon, state, (), priced.member_id, priced.tier_code)
