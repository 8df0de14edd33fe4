"""Portraits: the clustering finds planted groups, keeps its labels when the data moves a
little, describes each group by what sets it apart; the refresh stores it all; the API."""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter
from datetime import date, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import func, select

from patron.analytics import portraits, service
from patron.analytics.portrait_tables import MemberProfile, Portrait, PortraitStoreFigures
from patron.analytics.portraits import Clustering, PortraitConfig, PreviousPortrait
from patron.analytics.tables import MemberScore
from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.analytics.portrait_support import (
    Seeded,
    Synthetic,
    by_member,
    local,
    previous_of,
    reference_cluster,
    run,
    seed_database,
)
from tests.factories import World, key_headers, login

AS_OF = date(2026, 11, 20)
TZ = "Asia/Shanghai"


def _weekday_on(day: date, allowed: set[int]) -> date:
    while day.weekday() not in allowed:
        day -= timedelta(days=1)
    return day


def planted(seed: int, per: int = 120, extra: int = 0) -> tuple[Synthetic, dict[str, int]]:
    """Four behaviours, ``per + extra`` members each, with noise in every habit:
    0 weekend families buying baby formula every two weeks, 1 weekday-evening coffee
    every four days, 2 deal seekers (promotions on most sales), 3 big baskets long ago."""
    rnd = random.Random(seed)
    h = Synthetic()
    shop = h.store("S1")
    cats = {n: h.category(n) for n in ("Baby formula", "Coffee", "Snacks", "Wine",
                                       "Household", "Beauty")}
    item = {n: h.product(c, n) for n, c in cats.items()}
    truth: dict[str, int] = {}
    for group in range(4):
        for _ in range(per + extra):
            member = h.member(shop, local(AS_OF - timedelta(days=rnd.randint(500, 700)), 9))
            truth[member] = group
            gap, last, n = [(14, rnd.randint(0, 10), rnd.randint(14, 24)),
                            (4, rnd.randint(0, 5), rnd.randint(40, 70)),
                            (20, rnd.randint(0, 30), rnd.randint(6, 14)),
                            (40, rnd.randint(250, 400), rnd.randint(3, 6))][group]
            for k in range(n):
                day = AS_OF - timedelta(days=last + k * gap + rnd.randint(0, 2))
                if group == 0:
                    h.sale(member, shop, local(_weekday_on(day, {5, 6}), rnd.randint(9, 12)),
                           [(item["Baby formula"], 1, rnd.randint(9000, 13000)),
                            (item["Snacks"], 1, 2000)])
                elif group == 1:
                    h.sale(member, shop, local(_weekday_on(day, {0, 1, 2, 3, 4}),
                                               rnd.randint(18, 21)),
                           [(item["Coffee"], 1, rnd.randint(2500, 3500))])
                elif group == 2:
                    price = rnd.randint(5000, 7000)
                    h.sale(member, shop, local(_weekday_on(day, {0, 1, 2, 3, 4}),
                                               rnd.randint(10, 15)),
                           [(item["Snacks"], 1, price), (item["Household"], 1, 1000)],
                           promotion=price // 4 if rnd.random() < 0.85 else 0)
                else:
                    h.sale(member, shop, local(day, rnd.randint(11, 16)),
                           [(item["Wine"], 1, rnd.randint(30000, 40000)),
                            (item["Beauty"], 1, 8000), (item["Household"], 1, 3000)])
    return h, truth


@pytest.fixture(scope="module")
def first() -> tuple[portraits.Computed, dict[str, int]]:
    history, truth = planted(seed=7)
    computed, _ = run(history, AS_OF)
    return computed, truth


def _codes_by_group(computed: portraits.Computed, truth: dict[str, int]) -> dict[int, str]:
    rows = by_member(computed)
    return {group: Counter(rows[m]["portrait_code"] for m, g in truth.items() if g == group)
            .most_common(1)[0][0] for group in set(truth.values())}


def test_clustering_recovers_planted_groups(
        first: tuple[portraits.Computed, dict[str, int]]) -> None:
    computed, truth = first
    rows = by_member(computed)
    members = sorted(truth)
    found = [rows[m]["portrait_code"] for m in members]
    assert adjusted_rand_score([truth[m] for m in members], found) > 0.8
    assert computed.params["k"] == 4 and computed.params["criterion"] == "silhouette"
    silhouettes = computed.params["silhouettes"]
    assert set(silhouettes) == {str(k) for k in range(3, 9)}
    assert max(silhouettes, key=silhouettes.get) == "4"  # the stated criterion chose k
    # the first run numbers by size; every portrait's figures add up
    assert sorted(p["code"] for p in computed.portraits) == ["P1", "P2", "P3", "P4"]
    assert sum(p["members"] for p in computed.portraits) == len(truth)
    assert sum(p["revenue_share"] for p in computed.portraits) == pytest.approx(1.0)


def test_each_portrait_is_described_by_what_sets_it_apart(
        first: tuple[portraits.Computed, dict[str, int]]) -> None:
    computed, truth = first
    by_code = {p["code"]: p for p in computed.portraits}
    codes = _codes_by_group(computed, truth)
    family = by_code[codes[0]]
    assert "Family buyers" in family["name_en"] or "Weekend shoppers" in family["name_en"]
    assert "mostly Baby formula, about every 14 days" in family["description_en"]
    assert "low price sensitivity" in family["description_en"]
    assert "常买Baby formula，约每14天一次" in family["description_zh"]
    assert family["traits"]["weekend"] > 1 and family["traits"]["family"] > 1
    commuters = by_code[codes[1]]
    assert "evening shoppers" in commuters["description_en"].lower()
    assert "low basket" in commuters["description_en"] or \
        "small baskets" in commuters["description_en"]
    assert "晚间购物" in commuters["description_zh"]
    hunters = by_code[codes[2]]
    assert "deal seekers" in hunters["description_en"].lower()
    lapsed = by_code[codes[3]]
    assert "lapsing" in lapsed["description_en"].lower()
    assert "big baskets" in lapsed["description_en"]
    assert lapsed["retention"] is None  # nobody of them bought in the 90 days before last
    assert commuters["retention"] == 1.0


def test_labels_stay_stable_when_the_data_changes_a_little(
        first: tuple[portraits.Computed, dict[str, int]]) -> None:
    computed, truth = first
    history, truth2 = planted(seed=8, extra=6)  # other noise, 24 more members, a day later
    second, _ = run(history, AS_OF + timedelta(days=1), previous=previous_of(computed))
    assert _codes_by_group(second, truth2) == _codes_by_group(computed, truth)
    assert second.params["warm_start"] is True and second.params["matched"] == 4
    assert all(p["moved"] is not None and p["moved"] < 0.5 for p in second.portraits)


def _clustering(centroids_z: list[list[float]], sizes: list[int]) -> Clustering:
    z = np.array(centroids_z, dtype=np.float64)
    d = len(portraits.FEATURE_NAMES)
    z = np.pad(z, ((0, 0), (0, d - z.shape[1])))
    return Clustering(k=len(sizes), labels=np.repeat(np.arange(len(sizes)), sizes),
                      centroids=z, centroids_z=z, mean=np.zeros(d), scale=np.ones(d),
                      silhouettes={}, warm_start=False)


def _previous(code: str, point: list[float]) -> PreviousPortrait:
    values = point + [0.0] * (len(portraits.FEATURE_NAMES) - len(point))
    return PreviousPortrait(code=code, centroid=dict(zip(portraits.FEATURE_NAMES, values,
                                                         strict=True)))


def test_codes_follow_the_nearest_previous_centroid_and_new_clusters_get_new_codes() -> None:
    previous = [_previous("P1", [0, 0]), _previous("P2", [5, 0]), _previous("P7", [0, 5])]
    now = _clustering([[5.1, 0], [0.2, 0.1], [20, 20], [0, 4.8]], sizes=[10, 30, 20, 5])
    codes, moved = portraits.match_codes(now, previous, max_distance=2.5)
    assert codes == ["P2", "P1", "P8", "P7"]  # the far cluster is new, numbered after P7
    assert moved[2] is None and moved[1] == pytest.approx(np.hypot(0.2, 0.1))
    fresh, _ = portraits.match_codes(now, [], max_distance=2.5)
    assert fresh == ["P3", "P1", "P2", "P4"]  # first run: by size


def _features(seed: int, n: int, groups: int) -> np.ndarray:
    """``n`` members' 9 features in ``groups`` noisy blobs, some columns coarse (ties and
    duplicate rows, as counts and shares give)."""
    rnd = np.random.default_rng(seed)
    centres = rnd.uniform(0.0, 5.0, size=(groups, len(portraits.FEATURE_NAMES)))
    x = centres[rnd.integers(0, groups, n)] + rnd.normal(0.0, 0.6, size=(n, 9))
    x[:, 3] = np.round(np.clip(x[:, 3] / 5, 0, 1), 1)  # a share with few distinct values
    x[:, 7] = np.round(x[:, 7])
    return np.asarray(x, dtype=np.float64)


def _assert_same_clustering(got: Clustering | None, want: Clustering | None) -> None:
    assert (got is None) == (want is None)
    if got is None or want is None:
        return
    assert (got.k, got.warm_start, got.silhouettes) == (want.k, want.warm_start,
                                                          want.silhouettes)
    for name in ("labels", "centroids", "centroids_z", "mean", "scale"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


@pytest.mark.parametrize(("seed", "n", "groups", "k_max"),
                         [(1, 3_000, 4, 8), (2, 12_000, 6, 8), (3, 800, 1, 8),
                          (4, 50_000, 5, 5)])  # 50,000: the reference on every thread
def test_clustering_equals_the_reference_on_random_features(seed: int, n: int, groups: int,
                                                             k_max: int) -> None:
    """One thread and the probe's distances computed once change nothing: k, silhouettes,
    every label and centroid equal the straightforward form's (which ran on every thread
    from 50,000 members), on a first night and on the next (warm start, kept k)."""
    config = PortraitConfig(k_max=k_max, fit_sample=8_000, choose_sample=4_000,
                            silhouette_sample=1_000)
    x = _features(seed, n, groups)
    first = portraits.cluster(x, previous=[], config=config)
    _assert_same_clustering(first, reference_cluster(x, previous=[], config=config))
    assert first is not None
    codes, _ = portraits.match_codes(first, [], max_distance=config.match_distance)
    previous = [PreviousPortrait(code=c, centroid=dict(zip(portraits.FEATURE_NAMES,
                                                           first.centroids[i].tolist(),
                                                           strict=True)))
                for i, c in enumerate(codes)]
    moved = x + np.random.default_rng(seed + 100).normal(0.0, 0.05, size=x.shape)
    _assert_same_clustering(portraits.cluster(moved, previous=previous, config=config),
                            reference_cluster(moved, previous=previous, config=config))


def test_clustering_equals_the_reference_with_default_samples() -> None:
    config = PortraitConfig()
    x = _features(5, 20_000, 4)
    _assert_same_clustering(portraits.cluster(x, previous=[], config=config),
                            reference_cluster(x, previous=[], config=config))


def test_too_few_buyers_get_profiles_and_tags_but_no_portraits() -> None:
    history, _ = planted(seed=1, per=5)
    computed, _ = run(history, AS_OF)
    assert computed.portraits == [] and computed.params["k"] == 0
    rows = computed.profiles.to_pylist()
    assert len(rows) == 20 and all(r["portrait_code"] is None for r in rows)
    assert any(r["tag_bits"] for r in rows)


# ---------------------------------------------------------------- the refresh, stored


DAY = date(2026, 11, 22)
CONFIG = PortraitConfig(min_members=30)


@pytest.fixture
def seeded(db: Database, world: World, clock: FixedClock) -> Seeded:
    planted_db = seed_database(db, world.store_a.id, world.store_b.id, DAY)
    service.refresh(db, clock, timezone=TZ, as_of=DAY, portrait_config=CONFIG)
    return planted_db


def test_the_refresh_stores_profiles_and_portraits_of_its_snapshot(
        db: Database, clock: FixedClock, seeded: Seeded) -> None:
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(MemberProfile)) == 61
        stored = [(p.code, p.members, p.description_en)
                  for p in s.scalars(select(Portrait).order_by(Portrait.code))]
        codes = {m: s.get(MemberProfile, (DAY, m)).portrait_code
                 for m in [*seeded.weekend_baby, *seeded.evening_coffee, *seeded.deals]}
        assert s.get(MemberProfile, (DAY, seeded.never)).portrait_code is None
        latest = service.latest_run(s)
        assert latest is not None and latest.params["portraits"]["k"] == len(stored) >= 3
    groups = [seeded.weekend_baby, seeded.evening_coffee, seeded.deals]
    majority = [Counter(codes[m] for m in g).most_common(1)[0] for g in groups]
    assert len({code for code, _ in majority}) == 3 and all(n >= 18 for _, n in majority)
    # a second refresh of the next day keeps every code
    later = FixedClock(clock.now() + timedelta(days=1))
    service.refresh(db, later, timezone=TZ, as_of=DAY + timedelta(days=1),
                    portrait_config=CONFIG)
    with db.read() as s:
        again = {m: s.get(MemberProfile, (DAY + timedelta(days=1), m)).portrait_code
                 for m in codes}
        assert s.scalar(select(func.count(func.distinct(Portrait.as_of)))) == 2
    assert again == codes


def test_profile_days_are_pruned_with_the_scores(db: Database, clock: FixedClock,
                                                 seeded: Seeded) -> None:
    for offset in (1, 2):
        service.refresh(db, clock, timezone=TZ, as_of=DAY + timedelta(days=offset), keep=2,
                        portrait_config=CONFIG)
    with db.read() as s:
        scored = set(s.scalars(select(MemberScore.as_of).distinct()))
        assert set(s.scalars(select(MemberProfile.as_of).distinct())) == scored
        assert set(s.scalars(select(Portrait.as_of).distinct())) == scored
        assert DAY not in scored


def test_member_profile_and_summary_reads(db: Database, world: World, seeded: Seeded) -> None:
    with db.read() as s:
        baby = portraits.member_profile(s, member_id=seeded.weekend_baby[0])
        assert baby is not None and baby.as_of == DAY
        assert baby.favourite_categories[0].name == "Baby formula"
        assert baby.favourite_categories[0].share == 1.0
        assert baby.preferred_store_name == "Store A" and baby.preferred_weekday == 5
        assert baby.preferred_hour == 10 and baby.weekend_share == 1.0
        assert baby.family_signals == ["baby"] and baby.price_sensitivity == "low"
        assert {"family", "weekend_shopper", "full_price"} <= {t.code for t in baby.tags}
        assert baby.portrait is not None and baby.portrait.members >= 18
        responsive = portraits.member_profile(s, member_id=seeded.responsive)
        assert responsive is not None
        assert (responsive.sms_messages, responsive.sms_acted) == (4, 4)
        assert responsive.best_channel == "sms" and responsive.best_template == "campaign"
        assert "message_responsive" in {t.code for t in responsive.tags}
        hunter = portraits.member_profile(s, member_id=seeded.deals[0])
        assert hunter is not None and hunter.promo_share == 1.0  # every sale reduced
        assert hunter.discount_rate == 0.25 and hunter.coupon_share == 3 / 8
        assert hunter.price_sensitivity == "high"
        assert "discount_hunter" in {t.code for t in hunter.tags}
        assert portraits.member_profile(s, member_id=uuid.uuid4()) is None
        everyone = portraits.portrait_summary(s)
        scoped_all = portraits.portrait_summary(s, store_ids={world.store_a.id,
                                                              world.store_b.id})
        for brand, scoped in zip(everyone, scoped_all, strict=True):
            assert (brand.code, brand.members, brand.revenue_365_minor) == (
                scoped.code, scoped.members, scoped.revenue_365_minor)
            assert brand.revenue_share == pytest.approx(scoped.revenue_share)
            assert brand.clv_total_minor == scoped.clv_total_minor
        only_b = portraits.portrait_summary(s, store_ids={world.store_b.id})
        assert sum(p.members for p in only_b) == 20
        assert sum(p.revenue_share for p in only_b) == pytest.approx(1.0)
        # the scoped figures come from the sums the refresh stored; grouping the profiles
        # and scores themselves gives the same, store by store and for both stores
        assert s.scalar(select(func.count()).select_from(PortraitStoreFigures)) > 0
        for stores in ([world.store_a.id], [world.store_b.id],
                       [world.store_a.id, world.store_b.id]):
            stored = portraits.portrait_summary(s, store_ids=set(stores))
            scanned = portraits._scoped_scan(s, DAY, sorted(stores))
            for view in stored:
                n, net, before_n, kept_n, alive, clv, clv_mean = scanned.get(
                    view.code, (0, 0, 0, 0, None, 0, None))
                assert (view.members, view.revenue_365_minor, view.clv_total_minor) == (
                    int(n), int(net), int(clv))
                assert view.retention == (pytest.approx(int(kept_n) / int(before_n))
                                          if before_n else None)
                assert view.mean_p_alive == (None if alive is None
                                             else pytest.approx(float(alive)))
                assert view.clv_mean_minor == (None if clv_mean is None
                                               else portraits._round(float(clv_mean)))


# ---------------------------------------------------------------- the API


def test_portrait_api_before_any_refresh(client: TestClient, world: World) -> None:
    login(client, "owner")
    assert client.get("/api/v1/portraits").json()["portraits"] == []
    r = client.get(f"/api/v1/members/{uuid.uuid4()}/profile")
    assert r.status_code == 404


def test_portraits_api_for_managers_scoped_to_their_stores(
        client: TestClient, world: World, seeded: Seeded) -> None:
    assert client.get("/api/v1/portraits").status_code == 401
    assert client.get("/api/v1/portraits", headers=key_headers(world.key_a)).status_code == 403
    login(client, "cashier-a")
    assert client.get("/api/v1/portraits").status_code == 403
    login(client, "owner")
    body = client.get("/api/v1/portraits").json()
    assert body["as_of"] == DAY.isoformat() and len(body["portraits"]) >= 3
    first_portrait = body["portraits"][0]
    assert {"code", "name_en", "name_zh", "description_en", "description_zh", "members",
            "revenue_share", "retention", "clv_mean_minor", "traits"} <= set(first_portrait)
    assert sum(p["members"] for p in body["portraits"]) == 60
    login(client, "manager-b")
    mine = client.get("/api/v1/portraits").json()
    assert sum(p["members"] for p in mine["portraits"]) == 20
    assert client.get("/api/v1/portraits",
                      params={"store_id": str(world.store_a.id)}).status_code == 403
    login(client, "owner")
    only_a = client.get("/api/v1/portraits", params={"store_id": str(world.store_a.id)})
    assert sum(p["members"] for p in only_a.json()["portraits"]) == 40


def test_member_profile_api_is_for_staff(client: TestClient, world: World,
                                         seeded: Seeded) -> None:
    member = seeded.weekend_baby[0]
    path = f"/api/v1/members/{member}/profile"
    assert client.get(path).status_code == 401
    assert client.get(path, headers=key_headers(world.key_a)).status_code == 403
    login(client, "cashier-a")
    r = client.get(path)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["member_id"] == str(member) and body["as_of"] == DAY.isoformat()
    assert body["favourite_categories"][0]["name"] == "Baby formula"
    assert body["portrait"]["code"].startswith("P")
    tag = next(t for t in body["tags"] if t["code"] == "family")
    assert tag["name_zh"] == "家庭客" and "family signal" in tag["definition"]
    login(client, "manager-b")  # members belong to the brand, as their scores do
    assert client.get(path).status_code == 200
    r = client.get(f"/api/v1/members/{uuid.uuid4()}/profile")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.get(f"/api/v1/members/{seeded.never}/profile")
    assert r.status_code == 200 and r.json()["portrait"] is None


def test_the_member_page_shows_the_portrait_in_both_languages(
        client: TestClient, world: World, seeded: Seeded) -> None:
    from tests.web.helpers import web_login

    web_login(client, "owner")
    html = client.get(f"/members/{seeded.weekend_baby[0]}").text
    card = html[html.index('id="portrait"'):html.index("</section>", html.index('id="portrait"'))]
    assert "Portrait" in card and "Baby formula" in card and "Store A" in card
    assert "Saturday 10:00" in card
    client.cookies.set("lang", "zh_CN")
    zh = client.get(f"/members/{seeded.weekend_baby[0]}").text
    assert "客户画像" in zh and "常购品类" in zh and "星期六" in zh
    never = client.get(f"/members/{seeded.never}").text  # profiled, but no portrait
    assert 'id="portrait"' in never


def test_the_dashboard_lists_the_portraits_for_the_viewers_stores(
        client: TestClient, world: World, seeded: Seeded) -> None:
    from tests.web.helpers import web_login

    web_login(client, "owner")
    html = client.get("/").text
    assert 'data-section="portraits"' in html
    with_members = re.findall(r'<td class="num">([\d,]+)</td>', html.split(
        'data-section="portraits"')[1].split("</table>")[0])
    assert sum(int(n.replace(",", "")) for n in with_members[::1] if n) > 0
    web_login(client, "manager-b")  # store B's 20 members only
    scoped = client.get("/").text.split('data-section="portraits"')[1].split("</table>")[0]
    counts = [int(n.replace(",", "")) for n in
              re.findall(r'<td class="num">([\d,]+)</td>\s*<td class="num">[\d,]+%', scoped)]
    assert sum(counts) == 20
