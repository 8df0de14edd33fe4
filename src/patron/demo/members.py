"""Demo members: who they are, when they joined, what they like, how they will shop.

Each member is drawn from a *persona* (young parent, coffee lover, tea drinker, pet owner,
skincare fan, household shopper, gift buyer, general shopper; about a third mix in a second
one) that shapes their age, gender, favourite categories, the staples they rebuy on a cycle
(formula, diapers, beans, cat food...) and the tags staff would give them. Their shopping
parameters λ and p come from the BG/NBD population described in ``purchases``.

Members join over the window with growth (the join rate climbs from about a third to the
full rate) and with the store calendar's busy days; Hangzhou opens later than Shanghai, so
nobody calls it home before it exists. Profiles are valid as ``members.service.enroll_member``
would make them: E.164 phones, Luhn card numbers, birthdays that exist in their calendar.
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from patron.demo import people
from patron.demo.catalogue import CATEGORIES, CATEGORY_INDEX, ProductRef
from patron.demo.draws import cumulative, weighted
from patron.demo.ids import unix_ms, uuid7_batch
from patron.demo.seasons import (
    CLOSING_HOUR,
    OPENING_HOUR,
    WEEKDAY_HOURS,
    WEEKEND_HOURS,
    Seasons,
    local_instant,
)

# BG/NBD population (time in days): see ``purchases`` for why these values.
BGNBD_R = 0.25
BGNBD_ALPHA = 5.3
BGNBD_A = 0.55
BGNBD_B = 3.2

REFERRAL_SOURCES: tuple[tuple[str | None, float], ...] = (
    ("门店推荐", 0.42), ("朋友推荐", 0.14), ("小红书", 0.1), ("微信公众号", 0.1),
    ("大众点评", 0.08), ("抖音", 0.07), (None, 0.09),
)
GENERAL_PREFERENCES = ("不吃辣", "对坚果过敏", "likes window seat", "请勿电话打扰，微信联系",
                       "周末到店较多", "需要开发票（公司抬头）", "prefers English receipts",
                       "offer a bag, no plastic")


@dataclass(frozen=True)
class Persona:
    key: str
    share: float
    female_share: float
    born_between: tuple[int, int]
    interests: dict[str, float]  # category code -> relative interest
    staples: tuple[tuple[str, float], ...]  # (category code, chance of having it as a staple)
    tags: tuple[tuple[str, float], ...] = ()  # (tag, chance staff recorded it)
    preferences: tuple[str, ...] = ()


PERSONAS: tuple[Persona, ...] = (
    Persona("parent", 0.16, 0.75, (1986, 1998),
            {"baby_formula": 3, "diapers": 3, "snacks": 1, "personal_care": 1, "cleaning": 0.6,
             "grain_oil": 0.5},
            (("baby_formula", 0.4), ("diapers", 0.5)), (("宝妈", 0.7),),
            ("宝宝对牛奶蛋白过敏，只买水解配方", "宝宝皮肤敏感，纸尿裤要无香型")),
    Persona("coffee", 0.12, 0.5, (1980, 2002),
            {"coffee": 4, "snacks": 1.5, "kitchen": 0.4, "gifts": 0.3},
            (("coffee", 0.45),), (("咖啡爱好者", 0.6),),
            ("喜欢浅烘，手冲", "咖啡豆请帮忙磨粉（手冲）")),
    Persona("tea", 0.09, 0.4, (1955, 1985),
            {"tea": 4, "gifts": 1, "snacks": 0.7, "grain_oil": 0.6, "kitchen": 0.3},
            (("tea", 0.3),), (("茶友", 0.5),), ("只喝绿茶", "明前龙井到货请通知")),
    Persona("pet", 0.11, 0.65, (1985, 2003),
            {"pet": 4, "cleaning": 1, "snacks": 0.8},
            (("pet", 0.55),), (("铲屎官", 0.6),), ("家里两只猫，偏好无谷猫粮", "狗狗对鸡肉过敏")),
    Persona("beauty", 0.14, 0.92, (1980, 2004),
            {"skincare": 4, "personal_care": 1.5, "snacks": 0.8},
            (("skincare", 0.3),), (("护肤达人", 0.4),),
            ("敏感肌，不用含酒精产品", "只用无香型洗护")),
    Persona("household", 0.22, 0.6, (1960, 1992),
            {"grain_oil": 3, "cleaning": 2.5, "personal_care": 1.5, "snacks": 1, "kitchen": 0.5},
            (("grain_oil", 0.25), ("cleaning", 0.15)), (), ("送货上门请提前电话",)),
    Persona("gifting", 0.05, 0.45, (1965, 1990),
            {"gifts": 4, "tea": 1.5, "snacks": 1},
            (), (("企业客户", 0.3),), ("需要开发票（公司抬头）", "节日团购，提前一周预订")),
    Persona("general", 0.11, 0.55, (1960, 2004), {}, (), (), ()),
)
WALK_IN_WEIGHTS = np.array([c.walk_in_weight for c in CATEGORIES])


@dataclass(frozen=True)
class StoreRef:
    """A store as the generators see it: index, id, code, time zone, share, opening day."""

    index: int
    id: uuid.UUID
    code: str
    tz: ZoneInfo
    share: float
    open_day: int
    staff_ids: tuple[uuid.UUID, ...]  # manager first, then cashier


@dataclass(slots=True)
class Staple:
    """A product the member rebuys when it runs out (the same SKU: brand loyalty)."""

    product: int
    quantity: int
    interval_days: float  # how long ``quantity`` lasts
    loyalty: float  # chance they come back here for it rather than buy it elsewhere
    need_until: float  # day index when they stop needing it (a baby outgrows formula)
    due: float = 0.0


@dataclass(slots=True)
class MemberDraft:
    """One member's row values plus what the purchase simulation needs."""

    index: int
    id: uuid.UUID
    card_no: str
    phone: str
    name: str
    email: str | None
    gender: str | None
    birthday: tuple[str, int | None, int, int, bool] | None  # calendar, year, month, day, leap
    preferences: str
    referral_source: str | None
    referred_by: int | None
    home_store: int
    enrolled_store: int
    enrolled_by: uuid.UUID
    sms_consent: bool
    email_consent: bool
    joined_at: datetime
    join_day: int
    first_sale_seconds: int  # after opening, on join_day
    persona: int  # index into PERSONAS
    tags: list[str] = field(default_factory=list)
    anniversaries: list[tuple[str, str, date]] = field(default_factory=list)
    # shopping profile (``add_shopping_profiles``)
    lam: float = 0.0  # purchase rate per day while active (BG/NBD λ)
    p: float = 1.0  # dropout probability after each repeat purchase (BG/NBD p)
    category_cum: list[float] = field(default_factory=list)  # cumulative category weights
    staples: list[Staple] = field(default_factory=list)


def _join_days(rng: np.random.Generator, seasons: Seasons, n: int) -> np.ndarray:
    days = seasons.days
    growth = 0.5 + np.arange(days) / days
    weights = growth * seasons.intensity
    return np.sort(rng.choice(days, size=n, p=weights / weights.sum()))


_HOURS = {weekend: (range(len(hours)), cumulative(hours))
          for weekend, hours in ((False, WEEKDAY_HOURS), (True, WEEKEND_HOURS))}


def _seconds_in_day(rnd: random.Random, on: date, latest: int) -> int:
    hour = weighted(rnd, *_HOURS[on.weekday() >= 5])
    return min(hour * 3600 + rnd.randrange(3600), latest)


class _StapleShelf:
    """Per category, the products a member can adopt as a staple, with their popularity."""

    def __init__(self, products: list[ProductRef]) -> None:
        self.products = products
        self.candidates: dict[int, tuple[list[ProductRef], list[float]]] = {}
        for category in range(len(CATEGORIES)):
            items = [p for p in products if p.category == category and p.cycle_days
                     and p.season is None and p.popularity > 0]
            self.candidates[category] = (items, [p.popularity for p in items])

    def pick(self, rnd: random.Random, category: int, join_day: float) -> Staple | None:
        items, weights = self.candidates[category]
        if not items:
            return None
        product = rnd.choices(items, weights)[0]
        assert product.cycle_days is not None
        code = CATEGORIES[category].code
        if code == "baby_formula":
            quantity = rnd.choices((1, 2, 3), (0.45, 0.4, 0.15))[0]
        elif product.price_minor < 6000:
            quantity = rnd.choices((1, 2), (0.6, 0.4))[0]
        else:
            quantity = rnd.choices((1, 2), (0.85, 0.15))[0]
        need_until = (join_day + rnd.uniform(90, 600) if code in ("baby_formula", "diapers")
                      else float("inf"))
        return Staple(product=product.index, quantity=quantity,
                      interval_days=product.cycle_days * quantity,
                      loyalty=rnd.betavariate(5, 2), need_until=need_until)


def generate_members(
    *, n: int, seasons: Seasons, stores: list[StoreRef], rng: np.random.Generator,
    rnd: random.Random, end_on: date, advance: Callable[[int], None] | None = None,
) -> list[MemberDraft]:
    """Draw ``n`` members' profiles in join order (index 0 joined first).

    Shopping behaviour is added separately by ``add_shopping_profiles`` (from its own
    random stream), so a members-only build gets the very same people.
    """
    join_days = _join_days(rng, seasons, n).tolist()
    phones = people.mobile_numbers(rng, n)
    cards = people.card_numbers(rng, n)
    persona_idx = rng.choice(len(PERSONAS), size=n,
                             p=np.array([x.share for x in PERSONAS])).tolist()
    latest_join = (CLOSING_HOUR - OPENING_HOUR) * 3600 - 400
    sources = [s for s, _ in REFERRAL_SOURCES]
    source_weights = cumulative(w for _, w in REFERRAL_SOURCES)
    by_day: dict[int, tuple[date, list[StoreRef], list[float]]] = {}

    drafts: list[MemberDraft] = []
    for i in range(n):
        day = int(join_days[i])
        if day not in by_day:
            open_stores = [s for s in stores if s.open_day <= day]
            by_day[day] = (seasons.day_on(day), open_stores,
                           cumulative(s.share for s in open_stores))
        on, open_stores, store_cum = by_day[day]
        persona = PERSONAS[persona_idx[i]]

        gender: str | None = "female" if rnd.random() < persona.female_share else "male"
        if rnd.random() < 0.04:
            gender = None
        lo, hi = persona.born_between
        birth_year = round(rnd.triangular(lo, hi, (lo + hi) / 2))
        name = people.person_name(rnd, gender, birth_year)

        birthday: tuple[str, int | None, int, int, bool] | None = None
        if rnd.random() < 0.8:
            born_on = date(birth_year, 1, 1) + timedelta(days=rnd.randrange(365))
            if rnd.random() < 0.2:
                month, lday, leap = people.lunar_birthday(born_on)
                birthday = ("lunar", birth_year, month, lday, leap)
            else:
                year = birth_year if rnd.random() < 0.88 else None
                birthday = ("solar", year, born_on.month, born_on.day, False)

        home = weighted(rnd, open_stores, store_cum)
        enrolled = home if rnd.random() < 0.95 or len(open_stores) == 1 else \
            rnd.choice([s for s in open_stores if s is not home])
        enrolled_by = enrolled.staff_ids[0] if rnd.random() < 0.25 else enrolled.staff_ids[-1]
        seconds = _seconds_in_day(rnd, on, latest_join)
        joined_at = local_instant(on, seconds, enrolled.tz)

        source = weighted(rnd, sources, source_weights)
        earlier = bisect.bisect_left(join_days, day)  # members who joined on an earlier day
        referred_by = rnd.randrange(earlier) if source == "朋友推荐" and earlier else None
        email = people.email_address(rnd, name, birth_year) if rnd.random() < 0.45 else None

        pool = persona.preferences + GENERAL_PREFERENCES
        preferences = rnd.choice(pool) if rnd.random() < 0.07 else ""

        tags = sorted({tag for tag, chance in persona.tags if rnd.random() < chance})
        if "宝妈" in tags and gender == "male":
            tags = sorted({*tags} - {"宝妈"} | {"宝爸"})
        anniversaries: list[tuple[str, str, date]] = []
        if birth_year < end_on.year - 26 and rnd.random() < 0.09:
            wed_year = rnd.randrange(birth_year + 22, min(birth_year + 40, end_on.year))
            anniversaries.append(("wedding", "结婚纪念日",
                                  date(wed_year, 1, 1) + timedelta(days=rnd.randrange(365))))
        if persona.key == "parent" and rnd.random() < 0.4:
            anniversaries.append(("other", "宝宝生日",
                                  on - timedelta(days=rnd.randrange(30, 730))))

        drafts.append(MemberDraft(
            index=i, id=uuid.UUID(int=0), card_no=cards[i], phone=phones[i], name=name,
            email=email, gender=gender, birthday=birthday, preferences=preferences,
            referral_source=source, referred_by=referred_by, home_store=home.index,
            enrolled_store=enrolled.index, enrolled_by=enrolled_by,
            sms_consent=rnd.random() < 0.7,
            email_consent=email is not None and rnd.random() < 0.78,
            joined_at=joined_at, join_day=day, first_sale_seconds=seconds + rnd.randrange(60, 360),
            persona=persona_idx[i], tags=tags, anniversaries=anniversaries,
        ))
        if advance is not None and (i + 1) % 1000 == 0:
            advance(1000)
    if advance is not None:
        advance(n % 1000)
    ids = uuid7_batch(rng, [unix_ms(d.joined_at) for d in drafts])
    for draft, member_id in zip(drafts, ids, strict=True):
        draft.id = member_id
    return drafts


def add_shopping_profiles(drafts: list[MemberDraft], *, products: list[ProductRef],
                          rng: np.random.Generator, rnd: random.Random) -> None:
    """Give each member BG/NBD parameters, favourite categories and staples.

    λ ~ Gamma(r, α) and p ~ Beta(a, b) independently of the persona (as BG/NBD assumes);
    the persona (plus a second one for about 30 %) and some noise set the favourite
    categories, and decide which replenishable products they rebuy.
    """
    n = len(drafts)
    lam = rng.gamma(BGNBD_R, 1.0 / BGNBD_ALPHA, size=n).tolist()
    p = rng.beta(BGNBD_A, BGNBD_B, size=n).tolist()
    shares = np.array([x.share for x in PERSONAS])
    second = rng.choice(len(PERSONAS), size=n, p=shares)
    mixed = rng.random(n) < 0.3
    interest = np.zeros((len(PERSONAS), len(CATEGORIES)))
    for k, persona in enumerate(PERSONAS):
        for code, weight in persona.interests.items():
            interest[k, CATEGORY_INDEX[code]] = weight
    primary = np.array([d.persona for d in drafts], dtype=np.int64)
    weights = (interest[primary] + 0.5 * mixed[:, None] * interest[second]
               + 0.6 * WALK_IN_WEIGHTS / WALK_IN_WEIGHTS.max())
    weights *= rng.gamma(2.0, 0.5, size=weights.shape)
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    shelf = _StapleShelf(products)
    for i, draft in enumerate(drafts):
        draft.lam, draft.p = float(lam[i]), float(p[i])
        draft.category_cum = cum[i].tolist()
        draft.staples = []
        for code, chance in PERSONAS[draft.persona].staples:
            if rnd.random() < chance:
                staple = shelf.pick(rnd, CATEGORY_INDEX[code], draft.join_day)
                if staple is not None:
                    draft.staples.append(staple)
