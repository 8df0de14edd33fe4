"""Plausible people: names, mobile numbers, card numbers, e-mail addresses and birthdays.

Everything is drawn from the generators passed in, so the same seed gives the same people.
Values are valid by the same rules the members service applies: phones are mainland
mobile numbers in E.164 that ``members.rules.normalise_phone`` accepts, card numbers are
12 digits ending in a Luhn check digit (``members.rules.luhn_check_digit``), lunar birthdays
are real dates of the lunar calendar in their year.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date
from functools import cache

import numpy as np
from lunardate import LunarDate

from patron.demo.draws import cumulative, weighted
from patron.members import rules

# Common surnames with their approximate share of the population (per cent).
SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.1), ("李", 7.0), ("张", 6.7), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("黄", 2.2),
    ("赵", 2.0), ("吴", 1.9), ("周", 1.9), ("徐", 1.5), ("孙", 1.5), ("马", 1.3), ("朱", 1.3),
    ("胡", 1.2), ("郭", 1.1), ("何", 1.1), ("高", 1.0), ("林", 1.0), ("罗", 0.9), ("郑", 0.8),
    ("梁", 0.8), ("谢", 0.7), ("宋", 0.6), ("唐", 0.6), ("许", 0.6), ("韩", 0.6), ("冯", 0.5),
    ("邓", 0.5), ("曹", 0.5), ("彭", 0.5), ("曾", 0.5), ("肖", 0.4), ("田", 0.4), ("董", 0.4),
    ("袁", 0.4), ("潘", 0.4), ("于", 0.4), ("蒋", 0.4), ("蔡", 0.4), ("余", 0.3), ("杜", 0.3),
    ("叶", 0.3), ("程", 0.3), ("苏", 0.3), ("魏", 0.3), ("吕", 0.3), ("丁", 0.3), ("任", 0.3),
    ("沈", 0.3), ("姚", 0.2), ("卢", 0.2), ("姜", 0.2), ("崔", 0.2), ("钟", 0.2), ("谭", 0.2),
    ("陆", 0.2), ("汪", 0.2), ("范", 0.2), ("金", 0.2), ("石", 0.2), ("廖", 0.2), ("贾", 0.2),
    ("夏", 0.2), ("韦", 0.2), ("付", 0.2), ("方", 0.2), ("白", 0.2), ("邹", 0.2), ("孟", 0.2),
    ("熊", 0.2), ("秦", 0.2), ("邱", 0.2), ("江", 0.2), ("尹", 0.2), ("薛", 0.2), ("闫", 0.2),
    ("段", 0.2), ("雷", 0.2), ("侯", 0.2), ("龙", 0.2), ("史", 0.2), ("陶", 0.2), ("黎", 0.2),
    ("贺", 0.2), ("顾", 0.2), ("毛", 0.2), ("郝", 0.2), ("龚", 0.2), ("邵", 0.2), ("万", 0.2),
    ("钱", 0.2), ("严", 0.2), ("武", 0.1), ("戴", 0.1), ("莫", 0.1), ("孔", 0.1), ("汤", 0.1),
    ("欧阳", 0.05), ("司马", 0.02), ("上官", 0.02), ("诸葛", 0.01),
)
FEMALE_CHARS = ("芳娜敏静丽艳娟霞燕玲婷雪琳晶颖欣怡悦佳慧倩洁蕾璐萱梓涵诗雨思晓梦月琪瑶雯婉"
                "嘉馨秀英兰")
MALE_CHARS = "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林博文昊轩泽睿航晨子一天建国"
NEUTRAL_CHARS = "晨子一佳嘉思文宇安欣若可乐逸"
ENGLISH_FEMALE = ("Emily", "Grace", "Linda", "Sophia", "Amy", "Vivian", "Cindy", "Helen",
                  "Olivia", "Chloe", "Jessica", "Nina", "Iris", "Coco")
ENGLISH_MALE = ("Jason", "Kevin", "Michael", "David", "Tony", "Eric", "Leo", "Daniel",
                "Frank", "Peter", "Andy", "Ryan", "Sam", "Tom")
PINYIN_SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou",
                   "Lin", "Xu", "Sun", "Ma", "Zhu", "Hu", "Guo", "He", "Luo", "Tang")
WESTERN_SURNAMES = ("Smith", "Brown", "Müller", "Martin", "Tanaka", "Kim", "Dubois", "Rossi",
                    "Johnson", "Nguyen", "Baker", "Schmidt")
EMAIL_HANDLES = ("sunny", "lucky", "momo", "xiaoyu", "tiantian", "coffee", "kitty", "doudou",
                 "happy", "lemon", "candy", "summer", "panda", "bobo", "yoyo", "star", "leaf")
EMAIL_DOMAINS = (("qq.com", 0.45), ("163.com", 0.25), ("126.com", 0.08), ("gmail.com", 0.07),
                 ("outlook.com", 0.07), ("foxmail.com", 0.05), ("sina.com", 0.03))

# Mainland mobile prefixes in use (the number is prefix + 8 digits), weighted roughly by
# how common they are. ``valid_prefixes`` confirms each with phonenumbers before use.
MOBILE_PREFIXES: tuple[tuple[int, float], ...] = (
    *((p, 3.0) for p in range(130, 140)), *((p, 2.5) for p in (150, 151, 152, 153, 155, 156,
                                                               157, 158, 159)),
    *((p, 3.0) for p in range(180, 190)), (166, 1.0), (173, 1.0), (175, 0.8), (176, 1.0),
    (177, 1.0), (178, 0.8), (198, 1.0), (199, 1.2), (195, 0.5), (145, 0.4), (147, 0.6),
)

_SURNAME_CUM = cumulative(w for _, w in SURNAMES)
_SURNAME_CHARS = [s for s, _ in SURNAMES]
_DOMAINS = [d for d, _ in EMAIL_DOMAINS]
_DOMAIN_CUM = cumulative(w for _, w in EMAIL_DOMAINS)


def person_name(rng: random.Random, gender: str | None, birth_year: int) -> str:
    """A Chinese name (surname + one or two characters) or, for about 5 %, an English one."""
    if rng.random() < 0.05:
        first = rng.choice(ENGLISH_MALE if gender == "male" else ENGLISH_FEMALE)
        last = rng.choice(WESTERN_SURNAMES if rng.random() < 0.2 else PINYIN_SURNAMES)
        return f"{first} {last}"
    surname = weighted(rng, _SURNAME_CHARS, _SURNAME_CUM)
    pool = MALE_CHARS if gender == "male" else FEMALE_CHARS if gender == "female" else \
        NEUTRAL_CHARS
    single = rng.random() < (0.4 if birth_year < 1975 else 0.2)
    given = rng.choice(pool) if single else rng.choice(pool + NEUTRAL_CHARS) + rng.choice(pool)
    return surname + given


def email_address(rng: random.Random, name: str, birth_year: int) -> str:
    """A plausible personal address: QQ numbers, nicknames with digits, or first.last."""
    domain = weighted(rng, _DOMAINS, _DOMAIN_CUM)
    if domain == "qq.com" and rng.random() < 0.7:
        return f"{rng.randrange(10_000, 3_000_000_000)}@qq.com"
    if name.isascii() and " " in name:
        first, last = name.lower().split(" ", 1)
        return f"{first}.{last}{rng.randrange(1, 100)}@{domain}"
    handle = rng.choice(EMAIL_HANDLES)
    suffix = str(birth_year) if rng.random() < 0.4 else str(rng.randrange(1, 1000))
    return f"{handle}{rng.choice(('', '_', '.'))}{suffix}@{domain}"


def unique_draws(draw: Callable[[int], np.ndarray], n: int) -> np.ndarray:
    """``n`` distinct values from repeated calls of ``draw(k)``, keeping first-drawn order."""
    out = np.empty(0, dtype=np.int64)
    while len(out) < n:
        missing = n - len(out)
        combined = np.concatenate([out, draw(missing + missing // 50 + 16).astype(np.int64)])
        _, first = np.unique(combined, return_index=True)
        out = combined[np.sort(first)]
    return out[:n]


@cache
def valid_prefixes() -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The mobile prefixes phonenumbers accepts (checked once; any 8-digit tail is valid)."""
    keep = [(p, w) for p, w in MOBILE_PREFIXES
            if all(rules.normalise_phone(f"{p}{tail}", "CN") == f"+86{p}{tail}"
                   for tail in ("00000000", "12345678", "99999999"))]
    return tuple(p for p, _ in keep), tuple(w for _, w in keep)


def mobile_numbers(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct mainland mobile numbers in E.164 (``+8613812345678``)."""
    prefixes, weights = valid_prefixes()
    p = np.asarray(weights) / sum(weights)
    prefix_arr = np.asarray(prefixes, dtype=np.int64)

    def draw(k: int) -> np.ndarray:
        head = rng.choice(prefix_arr, size=k, p=p)
        return head * 100_000_000 + rng.integers(0, 100_000_000, size=k)

    return [f"+86{number}" for number in unique_draws(draw, n).tolist()]


def card_numbers(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct 12-digit card numbers like the service issues (11 digits + Luhn)."""
    low = 10 ** (rules.CARD_BODY_DIGITS - 1)
    bodies = unique_draws(lambda k: rng.integers(low, 10 * low, size=k), n)
    return [f"{b}{rules.luhn_check_digit(str(b))}" for b in bodies.tolist()]


@cache
def lunar_birthday(born_on: date) -> tuple[int, int, bool]:
    """(lunar month, lunar day, leap month?) of a solar birth date."""
    lunar = LunarDate.from_solar_date(born_on.year, born_on.month, born_on.day)
    return int(lunar.month), int(lunar.day), bool(lunar.isLeapMonth)
