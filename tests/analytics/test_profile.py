"""Member profiles and tags: each column follows its definition on hand-built histories, and
each tag follows its written definition on both sides of every threshold."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from patron.analytics import profile, tags
from patron.analytics.portraits import PortraitConfig
from patron.analytics.profile import ProfileConfig, family_signals
from patron.core.errors import ValidationFailed
from tests.analytics.portrait_support import Synthetic, by_member, local, reference_collect, run

AS_OF = date(2026, 11, 20)  # a Friday
DOCS = Path(__file__).resolve().parents[2] / "docs" / "portraits.md"


# ---------------------------------------------------------------- the profile columns


def test_when_and_where_are_the_stores_local_time_and_ties_are_settled() -> None:
    h = Synthetic()
    ny = h.store("NY", "America/New_York")
    sh = h.store("SH")
    cat = h.category("Coffee")
    item = h.product(cat)
    member = h.member(ny, local(date(2025, 1, 1), 9))
    # 02:00 UTC on Saturday 14 November is 21:00 on Friday the 13th in New York (EST), and
    # 01:00 UTC on Saturday 11 July is 21:00 on Friday the 10th (EDT: summer time)
    for at in (datetime(2026, 11, 14, 2, tzinfo=UTC), datetime(2026, 11, 7, 2, tzinfo=UTC),
               datetime(2026, 7, 11, 1, tzinfo=UTC)):
        h.sale(member, ny, at, [(item, 1, 1000)])
    # three sales in Shanghai too, more spend: the store tie goes to the bigger spend
    for day, hour in ((10, 9), (11, 10), (12, 11)):
        h.sale(member, sh, local(date(2026, 11, day), hour), [(item, 1, 5000)])
    row = by_member(run(h, AS_OF)[0])[member]
    assert row["preferred_store_id"] == sh and row["preferred_store_share"] == 0.5
    # Friday 21:00 three times (NY); Tuesday to Thursday mornings (Shanghai)
    assert row["preferred_weekday"] == 4 and row["preferred_hour"] == 21
    assert row["evening_share"] == 0.5 and row["weekend_share"] == 0.0
    assert row["stores"] == 2 and row["sales"] == 6 and row["avg_basket_minor"] == 3000


def test_favourites_price_sensitivity_and_family_signals() -> None:
    h = Synthetic()
    shop = h.store()
    formula = h.product(h.category("婴儿奶粉", "MILK"), "Formula", 10000)
    coffee = h.product(h.category("Coffee"), "Latte", 1000)
    cup = h.product(h.category("Cups"), "Cup", 500)
    tea = h.product(h.category("Tea"), "Tea", 100)
    member = h.member(shop, local(date(2025, 1, 1), 9))
    h.sale(member, shop, local(AS_OF - timedelta(days=100), 10),
           [(formula, 1, 10000), (coffee, 3, 1000), (cup, 1, 500), (tea, 1, 100)],
           coupon=1000)
    h.sale(member, shop, local(AS_OF - timedelta(days=50), 10), [(coffee, 4, 1000)],
           tier=400)  # a member price: not a promotion
    h.sale(member, shop, local(AS_OF - timedelta(days=10), 10), [(formula, 1, 10000)],
           promotion=2000)
    computed, _ = run(h, AS_OF)
    row = by_member(computed)[member]
    categories = [c["share"] for c in json.loads(row["favourite_categories"])]
    assert len(categories) == 3 and categories[0] == pytest.approx(17000 / 24200, abs=1e-4)
    assert row["categories"] == 4 and row["top_product_id"] == coffee  # 7 units
    assert json.loads(row["favourite_products"])[0] == {"id": coffee, "quantity": 7}
    spend = (13600 - 1000) + (4000 - 400) + (10000 - 2000)
    assert row["spend_minor"] == spend
    assert row["promo_share"] == pytest.approx((12600 + 8000) / spend)
    assert row["coupon_share"] == pytest.approx(1 / 3)
    assert row["discount_rate"] == pytest.approx(3400 / 27600)
    assert row["family_signals"] == "baby" and row["baby_days"] == 2
    assert row["baby_first_on"] == AS_OF - timedelta(days=100)
    # family share is over category (line) spend: the coupon came off the formula line
    assert row["family_share"] == pytest.approx((9000 + 8000) / (9000 + 3000 + 500 + 100
                                                                 + 3600 + 8000))
    assert row["sales_365"] == 3


def test_a_message_counts_as_acted_on_when_a_purchase_follows_within_the_window() -> None:
    h = Synthetic()
    shop = h.store()
    item = h.product(h.category("Snacks"))
    member = h.member(shop, local(date(2025, 1, 1), 9))
    for days_ago in (60, 40, 20):
        h.sale(member, shop, local(AS_OF - timedelta(days=days_ago), 12), [(item, 1, 1000)])
    h.message(member, local(AS_OF - timedelta(days=66), 12))  # 6 days before: acted
    h.message(member, local(AS_OF - timedelta(days=48), 12))  # 8 days before: not
    h.message(member, local(AS_OF - timedelta(days=27), 12), channel="email",
              template="winback")  # 7 days before: acted (the window's last instant)
    h.message(member, local(AS_OF - timedelta(days=5), 12))  # window not over: left out
    h.message(member, local(AS_OF - timedelta(days=66), 12), purpose="transactional")
    h.message(member, local(AS_OF - timedelta(days=66), 12), status="failed")
    h.message(member, local(AS_OF - timedelta(days=400), 12))  # before the 365-day window
    row = by_member(run(h, AS_OF)[0])[member]
    assert (row["sms_messages"], row["sms_acted"]) == (2, 1)
    assert (row["email_messages"], row["email_acted"]) == (1, 1)
    assert row["response_rate"] == pytest.approx(2 / 3)
    assert row["best_channel"] == "email"  # 1 of 1 beats 1 of 2
    assert row["best_template"] == "winback"  # one acted each: the better rate


def tangled(seed: int, members: int = 240) -> Synthetic:
    """A random history dense in ties and edge cases: three stores in three zones (two
    with summer time), few prices, hours and templates (so counts and spends tie), a
    product without a category, family categories, refunds that cancel a sale or a line,
    anonymous sales, members who are merged, joined later or never bought, and messages
    of every channel, purpose and status, some exactly a response window before a sale."""
    rnd = random.Random(seed)
    h = Synthetic()
    stores = [h.store("SH"), h.store("NY", "America/New_York"),
              h.store("LDN", "Europe/London")]
    categories = [h.category(name, code) for name, code in (
        ("Baby formula", None), ("Kids toys", None), ("Pet food", "PET"), ("Coffee", None),
        ("Snacks", None), ("纸尿裤", "DIAPER"))] + [None]
    products = [h.product(c, f"p{i}", rnd.choice((500, 1000)))  # type: ignore[arg-type]
                for i, c in enumerate(categories + categories[:5])]
    people = []
    for i in range(members):
        status = "merged" if i % 23 == 0 else "active"
        joined = AS_OF + timedelta(days=3) if i % 31 == 0 else AS_OF - timedelta(days=800)
        people.append(h.member(rnd.choice(stores), local(joined, 9), status=status))
    for member in people:
        if rnd.random() < 0.15:  # never bought, or gave their one purchase back in full
            if rnd.random() < 0.5:
                when = local(AS_OF - timedelta(days=rnd.randint(1, 300)), 12)
                sale = h.sale(member, rnd.choice(stores), when, [(products[0], 1, 1000)])
                h.refund(sale, when + timedelta(hours=1), [(0, 0, 1000)])
            continue
        for _ in range(rnd.randint(1, 9)):
            day = AS_OF - timedelta(days=rnd.randint(-2, 800))
            when = local(day, rnd.choice((9, 12, 19, 23)))
            lines = [(rnd.choice(products), rnd.randint(1, 2), rnd.choice((500, 1000)))
                     for _ in range(rnd.randint(1, 3))]
            off = rnd.choice((0, 0, 100, 200))
            kind = rnd.choice(("coupon", "promotion", "tier"))
            sale = h.sale(None if rnd.random() < 0.05 else member, rnd.choice(stores), when,
                          lines, **{kind: off})
            r = rnd.random()
            total = lines[0][1] * lines[0][2] - off
            if r < 0.05:  # the whole first line back: a sale of one line nets zero
                h.refund(sale, when + timedelta(days=1), [(0, lines[0][1], total)])
            elif r < 0.1:
                h.refund(sale, when + timedelta(days=2), [(0, 0, total // 2)])
            if rnd.random() < 0.3:
                h.message(member, when - timedelta(days=rnd.choice((1, 7, 8))),
                          channel=rnd.choice(("sms", "email")),
                          template=rnd.choice(("a", "b", "c")))
        for _ in range(rnd.randint(0, 3)):
            h.message(member, local(AS_OF - timedelta(days=rnd.randint(0, 400)), 10),
                      channel=rnd.choice(("sms", "email", "wechat")),
                      template=rnd.choice(("a", "b")),
                      purpose=rnd.choice(("marketing", "marketing", "transactional")),
                      status=rnd.choice(("sent", "delivered", "failed")))
    return h


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_collect_equals_the_straightforward_reference_on_a_tangled_history(seed: int) -> None:
    h = tangled(seed)
    with h.source(AS_OF) as src:
        fast = profile.collect(src)
        reference = reference_collect(src)
        custom = ProfileConfig(response_days=3, message_window_days=200, evening_hour=12,
                               favourites=2, family_keywords={"pet": ("pet",),
                                                              "treat": ("snack", "coffee")})
        fast_custom = profile.collect(src, custom)
        reference_custom = reference_collect(src, custom)
    for got, expected in ((fast, reference), (fast_custom, reference_custom)):
        assert got.table.schema == expected.table.schema
        assert got.table.num_rows == expected.table.num_rows > 150
        for name in expected.table.column_names:  # column by column: a readable failure
            assert got.table.column(name).to_pylist() == \
                expected.table.column(name).to_pylist(), name
        assert got.category_names == expected.category_names
        assert got.family_categories == expected.family_categories
    rows = fast.table.to_pylist()  # the history has the ties and cases it is meant to
    assert sum(r["sales"] == 0 for r in rows) > 10
    assert sum(r["family_signals"] == "baby,kids" for r in rows) > 5
    assert sum(r["email_acted"] > 0 for r in rows) > 5
    assert sum(r["top_category_id"] is None and r["categories"] > 0 for r in rows) > 0
    assert sum(r["category_spend"] is None and r["top_product_id"] is not None
               for r in rows) > 0


def test_members_other_than_active_ones_have_no_profile() -> None:
    h = Synthetic()
    shop = h.store()
    kept = h.member(shop, local(date(2025, 1, 1), 9))
    merged = h.member(shop, local(date(2025, 1, 1), 9), status="merged")
    later = h.member(shop, local(AS_OF + timedelta(days=2), 9))
    rows = by_member(run(h, AS_OF)[0])
    assert kept in rows and merged not in rows and later not in rows
    assert rows[kept]["sales"] == 0 and rows[kept]["tag_bits"] == 0


def test_family_keywords_are_configurable() -> None:
    categories = [("1", "DOG", "Dog food"), ("2", "BABY", "Nappies"), ("3", "x", "宠物用品")]
    assert family_signals(categories, ProfileConfig().family_keywords) == {
        "1": ("pet",), "2": ("baby",), "3": ("pet",)}
    custom = ProfileConfig(family_keywords={"student": ("stationery", "文具")})
    assert family_signals([("9", "S", "Stationery")], custom.family_keywords) == {
        "9": ("student",)}
    with pytest.raises(ValidationFailed):
        ProfileConfig(family_keywords={"baby": ()})
    with pytest.raises(ValidationFailed):  # signals are bits of a BIGINT
        ProfileConfig(family_keywords={f"s{i}": ("x",) for i in range(63)})
    with pytest.raises(ValidationFailed):
        PortraitConfig(k_min=5, k_max=4)


# ---------------------------------------------------------------- the tags


NEUTRAL: dict[str, Any] = {
    "sales": 1, "sales_365": 1, "promo_share": 0.3, "weekend_share": 0.5,
    "evening_share": 0.5, "stores": 1, "family_share": 0.0, "baby_first_days": math.nan,
    "baby_days": 0, "messages": 0, "acted": 0, "purchase_days": 1, "recency_days": 40.0,
    "tenure_days": 100.0, "net_365": 0, "clv": math.nan, "p_alive": math.nan}


def facts(*members: dict[str, Any]) -> tags.Facts:
    """Members that differ from a neutral member (no tag) only where said."""
    rows = [NEUTRAL | m for m in members]
    columns: dict[str, Any] = {}
    for name, default in NEUTRAL.items():
        kind = np.float64 if isinstance(default, float) else np.int64
        columns[name] = np.array([r[name] for r in rows], dtype=kind)
    return tags.Facts(**columns)


def tagged(code: str, *members: dict[str, Any]) -> list[bool]:
    bits = tags.assign(facts(*members))
    return [code in tags.decode(int(b)) for b in bits]


def test_the_neutral_member_has_no_tag() -> None:
    assert tags.assign(facts({})).tolist() == [0]


def test_high_value_is_the_top_fifth_by_last_year_spend_ties_together() -> None:
    spends = [{"net_365": v} for v in (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)]
    assert tagged("high_value", *spends) == [False] * 9 + [True, True]
    assert tagged("high_value", *[{"net_365": 5}] * 5) == [True] * 5


def test_potential_is_a_top_fifth_clv_not_yet_high_value_and_recent() -> None:
    members = [{"clv": float(v), "net_365": v, "recency_days": 90.0}
               for v in range(1, 11)]
    members[9]["recency_days"] = 91.0  # the top CLV, but last bought too long ago
    members[8]["net_365"] = 1000  # second CLV, but high value already (with the 10th)
    members[7]["clv"] = 9.0  # ties with the second: fewer than 20 % have more
    assert tagged("potential", *members) == [False] * 7 + [True, False, False]


def test_new_customer_regular_dormant_and_at_risk() -> None:
    assert tagged("new_customer", {"tenure_days": 29.0}, {"tenure_days": 30.0},
                  {"tenure_days": math.nan}) == [True, False, False]
    assert tagged("regular", {"sales_365": 12, "recency_days": 60.0},
                  {"sales_365": 11, "recency_days": 0.0},
                  {"sales_365": 30, "recency_days": 61.0}) == [True, False, False]
    assert tagged("dormant", {"recency_days": 180.0}, {"recency_days": 181.0},
                  {"recency_days": math.nan}) == [False, True, False]
    risky = {"purchase_days": 2, "recency_days": 180.0, "p_alive": 0.49}
    assert tagged("at_risk", risky, risky | {"p_alive": 0.5},
                  risky | {"recency_days": 181.0}, risky | {"purchase_days": 1},
                  risky | {"p_alive": math.nan}) == [True, False, False, False, False]


def test_price_tags_need_three_purchases_and_their_share() -> None:
    assert tagged("discount_hunter", {"sales": 3, "promo_share": 0.6},
                  {"sales": 3, "promo_share": 0.59},
                  {"sales": 2, "promo_share": 1.0}) == [True, False, False]
    assert tagged("full_price", {"sales": 3, "promo_share": 0.1},
                  {"sales": 3, "promo_share": 0.11},
                  {"sales": 2, "promo_share": 0.0},
                  {"sales": 3, "promo_share": math.nan}) == [True, False, False, False]


def test_family_and_new_parent() -> None:
    assert tagged("family", {"family_share": 0.2}, {"family_share": 0.19},
                  {"family_share": math.nan}) == [True, False, False]
    assert tagged("new_parent", {"baby_first_days": 179.0, "baby_days": 2},
                  {"baby_first_days": 180.0, "baby_days": 5},
                  {"baby_first_days": 3.0, "baby_days": 1}) == [True, False, False]


def test_when_they_shop_where_and_whether_they_answer_messages() -> None:
    assert tagged("weekend_shopper", {"sales": 3, "weekend_share": 0.7},
                  {"sales": 3, "weekend_share": 0.69},
                  {"sales": 2, "weekend_share": 1.0}) == [True, False, False]
    assert tagged("evening_shopper", {"sales": 3, "evening_share": 0.7},
                  {"sales": 3, "evening_share": 0.69},
                  {"sales": 2, "evening_share": 1.0}) == [True, False, False]
    assert tagged("multi_store", {"stores": 2}, {"stores": 1}) == [True, False]
    assert tagged("message_responsive", {"messages": 3, "acted": 2},
                  {"messages": 4, "acted": 2}, {"messages": 3, "acted": 1},
                  {"messages": 2, "acted": 2}) == [True, True, False, False]


def test_tag_bits_decode_and_masks() -> None:
    both = tags.mask(["high_value", "dormant"])
    assert tags.decode(both) == ["high_value", "dormant"]
    assert tags.mask(["high_value"]) == 1
    with pytest.raises(KeyError):
        tags.mask(["vip"])
    assert len(set(tags.TAG_CODES)) == len(tags.TAGS) <= 62  # they fit a BIGINT


def test_every_tag_definition_is_written_in_the_docs() -> None:
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    for tag in tags.table():
        assert f"`{tag['code']}`" in text
        assert tag["definition"] in text, tag["code"]
