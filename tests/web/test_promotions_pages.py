"""The promotions pages: managers and owners create, edit, start and stop promotions
through the forms; bad input names the field and changes nothing; a manager runs
promotions in their own stores only; the preview prices a basket with the engine."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.loyalty import service as loyalty
from patron.offers import promotion_service as promotions
from patron.offers.promotion_models import PromotionRecord
from patron.offers.promotion_schemas import PromotionCreate
from patron.web import i18n
from patron.web.pages.promotions import field_for
from tests.factories import World, make_product
from tests.web.helpers import web_login


@pytest.fixture
def shop(db: Database, clock: FixedClock, world: World) -> dict[str, uuid.UUID]:
    """Coffee ¥32, cake ¥28, tea ¥20 (category DRINK); tiers silver and gold."""
    with db.write() as s:
        coffee = make_product(s, price_minor=3_200, sku="COF", category_code="DRINK")
        cake = make_product(s, price_minor=2_800, sku="CAKE", category_code="FOOD")
        tea = make_product(s, price_minor=2_000, sku="TEA", category_code="DRINK")
        owner = auth.principal_for_user(world.owner)
        loyalty.create_tier(s, clock=clock, actor=owner, code="silver", name="Silver", rank=0,
                            threshold=0)
        loyalty.create_tier(s, clock=clock, actor=owner, code="gold", name="Gold", rank=1,
                            threshold=100_000)
        return {"coffee": coffee.id, "cake": cake.id, "tea": tea.id,
                "drink": coffee.category_id}


def _count(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(PromotionRecord)) or 0)


def _nth(csrf: str, world: World, **changes: object) -> dict[str, object]:
    return {"csrf_token": csrf, "kind": "nth_item", "name": "2nd coffee half price",
            "priority": "10", "stackable_with_coupons": "on", "active": "on",
            "skus": "COF", "nth": "2", "percent_off": "50", "holidays": "any",
            "stores": [str(world.store_a.id)]} | changes


def test_field_paths_map_back_to_inputs() -> None:
    assert field_for("config.steps.1.spend_minor") == "step_spend_2"
    assert field_for("config.steps.0.percent_off") == "step_pct_1"
    assert field_for("config.tiers.2.percent_off") == "vol_pct_3"
    assert field_for("config.components.1.quantity") == "comp_qty_2"
    assert field_for("config.items") == "skus"
    assert field_for("config.percent_off") == "percent_off"
    assert field_for("schedule.ends_on") == "ends_on"
    assert field_for("audience.stores") == "stores"
    assert field_for("limits.budget_minor") == "budget"


def test_manager_creates_edits_and_stops_a_promotion(
        client: TestClient, db: Database, world: World, shop: dict[str, uuid.UUID]) -> None:
    csrf = web_login(client, "manager-a")
    kinds = client.get("/promotions/new")
    assert kinds.status_code == 200 and "Buy X get Y" in kinds.text
    assert client.get("/promotions/new", params={"kind": "bundle"}).status_code == 200
    too_much = client.post("/promotions/new", data=_nth(csrf, world, percent_off="150"))
    assert too_much.status_code == 422 and 'id="e-percent_off"' in too_much.text
    no_sku = client.post("/promotions/new", data=_nth(csrf, world, skus="NOPE"))
    assert no_sku.status_code == 422 and 'id="e-skus"' in no_sku.text
    everywhere = client.post("/promotions/new", data=_nth(csrf, world, stores=[]))
    assert everywhere.status_code == 403
    assert "Only the owner runs a promotion in every store" in everywhere.text
    other_store = client.post("/promotions/new",
                              data=_nth(csrf, world, stores=[str(world.store_b.id)]))
    assert other_store.status_code == 403
    assert _count(db) == 0
    ok = client.post("/promotions/new", data=_nth(csrf, world), follow_redirects=False)
    assert ok.status_code == 303, ok.text
    with db.read() as s:
        record = s.scalar(select(PromotionRecord))
        assert record is not None
        assert (record.kind, record.priority, record.active, record.version) == \
            ("nth_item", 10, True, 1)
        assert record.config["nth"] == 2 and record.config["percent_off"] == 50
        assert record.config["items"]["products"] == [str(shop["coffee"])]
        assert record.audience["stores"] == [str(world.store_a.id)]
        promotion_id = record.id
    listed = client.get("/promotions").text
    assert "2nd coffee half price" in listed and "Running" in listed
    page = client.get(f"/promotions/{promotion_id}").text
    assert 'value="COF"' in page and 'value="50"' in page
    backwards = client.post(f"/promotions/{promotion_id}", data=_nth(
        csrf, world, starts_on="2026-12-10", ends_on="2026-12-01"))
    assert backwards.status_code == 422 and 'id="e-ends_on"' in backwards.text
    saved = client.post(f"/promotions/{promotion_id}", data=_nth(
        csrf, world, priority="5", starts_on="2026-12-01", ends_on="2026-12-31",
        days_of_week=["6", "7"], hours_start="10:00", hours_end="14:00", per_member="3"),
        follow_redirects=False)
    assert saved.status_code == 303, saved.text
    with db.read() as s:
        record = s.get(PromotionRecord, promotion_id)
        assert record is not None
        assert (record.priority, record.version, record.per_member_limit) == (5, 2, 3)
        assert record.schedule["ends_on"] == "2026-12-31"
        assert sorted(record.schedule["days_of_week"]) == [6, 7]
        assert record.schedule["hours"] == [{"start": "10:00:00", "end": "14:00:00"}]
    edit = client.get(f"/promotions/{promotion_id}").text
    assert 'value="2026-12-31"' in edit and 'value="10:00"' in edit
    stop = client.post(f"/promotions/{promotion_id}/active",
                       data={"csrf_token": csrf, "active": "0"}, follow_redirects=False)
    assert stop.status_code == 303
    with db.read() as s:
        record = s.get(PromotionRecord, promotion_id)
        assert record is not None and record.active is False
    assert "Stopped" in client.get("/promotions").text


def test_other_manager_cannot_see_or_stop_it(
        client: TestClient, db: Database, clock: FixedClock, world: World,
        shop: dict[str, uuid.UUID]) -> None:
    with db.write() as s:
        owner = auth.principal_for_user(world.owner)
        mine = promotions.create_promotion(s, clock=clock, actor=owner, data=PromotionCreate(
            name="Store A only", audience={"stores": [world.store_a.id]},
            config={"kind": "category_discount", "items": {"products": [shop["cake"]]},
                    "percent_off": 10}))
        chain = promotions.create_promotion(s, clock=clock, actor=owner, data=PromotionCreate(
            name="Chain-wide", config={"kind": "category_discount",
                                       "items": {"categories": [shop["drink"]]},
                                       "percent_off": 5}))
        mine_id, chain_id = mine.id, chain.id
    csrf = web_login(client, "manager-b")
    listed = client.get("/promotions").text
    assert "Chain-wide" in listed and "Store A only" not in listed
    assert client.get(f"/promotions/{mine_id}").status_code == 404
    refused = client.post(f"/promotions/{chain_id}/active",
                          data={"csrf_token": csrf, "active": "0"})
    assert refused.status_code == 403 and "Only the owner" in refused.text
    with db.read() as s:
        chain_row = s.get(PromotionRecord, chain_id)
        assert chain_row is not None and chain_row.active is True
    cashier = web_login(client, "cashier-a")
    assert cashier and client.get("/promotions").status_code == 403


def test_owner_creates_each_kind_through_the_forms(
        client: TestClient, db: Database, world: World, shop: dict[str, uuid.UUID]) -> None:
    csrf = web_login(client, "owner")
    common = {"csrf_token": csrf, "priority": "100", "holidays": "any", "active": "on",
              "stackable_with_coupons": "on"}
    forms: list[dict[str, object]] = [
        {"kind": "member_price", "name": "Member coffee", "skus": "COF", "mp_mode": "prices",
         "mp_any": "30", "mp_gold": "25.50"},
        {"kind": "volume", "name": "Tea by volume", "skus": "TEA", "vol_qty_1": "2",
         "vol_pct_1": "5", "vol_qty_2": "5", "vol_pct_2": "10"},
        {"kind": "buy_x_get_y", "name": "Coffee + cake", "skus": "COF", "buy_quantity": "1",
         "get_quantity": "1", "percent_off": "50", "get_skus": "CAKE",
         "reward_pick": "group"},
        {"kind": "bundle", "name": "Breakfast set", "comp_sku_1": "COF", "comp_qty_1": "1",
         "comp_sku_2": "CAKE", "comp_qty_2": "1", "bundle_price": "49.90"},
        {"kind": "category_discount", "name": "Drinks 20 % off",
         "category_ids": [str(shop["drink"])], "percent_off": "20"},
        {"kind": "spend_discount", "name": "100 get 10", "step_spend_1": "100",
         "step_off_1": "10", "step_spend_2": "200", "step_off_2": "25"},
        {"kind": "spend_gift", "name": "Spend 150 get a cake", "spend": "150",
         "gift_sku": "CAKE", "gift_value": "28"},
        {"kind": "cashback", "name": "5th visit 5 % back", "purchase_number": "5",
         "window_days": "30", "cb_mode": "nth", "percent": "5"},
    ]
    for form in forms:
        r = client.post("/promotions/new", data=common | form, follow_redirects=False)
        assert r.status_code == 303, (form["kind"], r.text[:3000])
    with db.read() as s:
        rows = {r.kind: (r.id, r.name, r.config) for r in s.scalars(select(PromotionRecord))}
    assert set(rows) == {str(f["kind"]) for f in forms}
    assert rows["member_price"][2]["rules"][0]["prices_minor"] == {"*": 3_000, "gold": 2_550}
    assert rows["bundle"][2]["price_minor"] == 4_990
    assert [s["spend_minor"] for s in rows["spend_discount"][2]["steps"]] == [10_000, 20_000]
    assert rows["spend_gift"][2]["gift_product_id"] == str(shop["cake"])
    for form in forms:  # every edit page shows what was stored, and saving it changes nothing
        promotion_id, name, config = rows[str(form["kind"])]
        page = client.get(f"/promotions/{promotion_id}")
        assert page.status_code == 200 and name in page.text
        again = client.post(f"/promotions/{promotion_id}", data=common | form,
                            follow_redirects=False)
        assert again.status_code == 303, (form["kind"], again.text[:3000])
        with db.read() as s:
            record = s.get(PromotionRecord, promotion_id)
            assert record is not None and record.version == 1 and record.config == config
    # out-of-order steps name the step that is wrong, and change nothing
    before = _count(db)
    bad = client.post("/promotions/new", data=common | forms[5] | {"step_spend_2": "50"})
    assert bad.status_code == 422 and 'id="e-step_spend_1"' in bad.text
    vol = client.post("/promotions/new", data=common | forms[1] | {"vol_pct_2": "3"})
    assert vol.status_code == 422 and 'id="e-vol_qty_1"' in vol.text
    both = client.post("/promotions/new", data=common | forms[4] | {"amount_off": "2"})
    assert both.status_code == 422 and 'id="e-amount_off"' in both.text
    assert _count(db) == before


def test_preview_prices_a_basket_with_the_engine(
        client: TestClient, db: Database, clock: FixedClock, world: World,
        shop: dict[str, uuid.UUID]) -> None:
    with db.write() as s:
        owner = auth.principal_for_user(world.owner)
        promotions.create_promotion(s, clock=clock, actor=owner, data=PromotionCreate(
            name="2nd coffee half price", config={
                "kind": "nth_item", "items": {"products": [shop["coffee"]]}, "nth": 2,
                "percent_off": 50}))
        stopped = promotions.create_promotion(s, clock=clock, actor=owner, data=PromotionCreate(
            name="Gold cake", active=False, audience={"tiers": ["gold"]}, config={
                "kind": "category_discount", "items": {"products": [shop["cake"]]},
                "amount_off_minor": 800}))
        stopped_id = stopped.id
    web_login(client, "manager-a")
    r = client.get("/promotions/preview", params={
        "store_id": str(world.store_a.id), "tier": "guest", "sku_1": "COF", "qty_1": "2",
        "sku_2": "CAKE", "qty_2": "1"})
    assert r.status_code == 200
    # 2 x 32.00 + 28.00 = 92.00; the second coffee half price: 16.00 off -> 76.00
    assert '76.00</strong>' in r.text
    assert "2nd coffee half price" in r.text
    unknown = client.get("/promotions/preview", params={
        "store_id": str(world.store_a.id), "sku_1": "NOPE", "qty_1": "1"})
    assert unknown.status_code == 200 and "No product has the SKU NOPE" in unknown.text
    # on a stopped promotion's page it is included: gold members get 8.00 off the cake
    gold = client.get(f"/promotions/{stopped_id}", params={
        "store_id": str(world.store_a.id), "tier": "gold", "sku_1": "CAKE", "qty_1": "1"})
    assert '20.00</strong>' in gold.text
    walk_in = client.get(f"/promotions/{stopped_id}", params={
        "store_id": str(world.store_a.id), "tier": "guest", "sku_1": "CAKE", "qty_1": "1"})
    assert '28.00</strong>' in walk_in.text


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_promotion_pages_in_both_languages(
        client: TestClient, db: Database, world: World, shop: dict[str, uuid.UUID],
        language: str) -> None:
    csrf = web_login(client, "manager-a")
    client.cookies.set(i18n.LANG_COOKIE, language)
    r = client.post("/promotions/new", data=_nth(csrf, world, percent_off="150"))
    assert r.status_code == 422
    assert ("第几件" if language == "zh_CN" else "Every nth item") in r.text
    for path in ("/promotions", "/promotions/new", "/promotions/new?kind=spend_discount",
                 "/promotions/preview"):
        page = client.get(path)
        assert page.status_code == 200
        assert ("促销" if language == "zh_CN" else "Promotions") in page.text
