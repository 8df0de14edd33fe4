"""In a real browser: an owner creates a tier and a promotion through the forms, sees them
in the lists, previews a basket, and the pages are captured for docs/screenshots."""

from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import select

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.loyalty.models import Tier
from patron.offers.promotion_models import PromotionRecord
from tests.factories import PASSWORD, World, make_product
from tests.web.pages_support import Pages, needs_chromium, shot, sign_in


@needs_chromium
def test_owner_creates_a_tier_and_a_promotion_in_the_browser(
        live_url: str, pages: Pages, db: Database, clock: FixedClock, world: World) -> None:
    with db.write() as s:
        make_product(s, price_minor=3_200, sku="COF", category_code="DRINK")
        make_product(s, price_minor=2_800, sku="CAKE", category_code="FOOD")
    pg = pages.open(width=1366, height=900)
    sign_in(pg, live_url, world.owner.username, PASSWORD)
    pg.click("nav >> text=Settings")
    expect(pg.locator("h1")).to_have_text("Settings")
    pg.click("a.tile[href='/settings/tiers']")

    # a tier: a wrong discount is named beside the field, then fixed
    pg.fill("#f-code", "gold")
    pg.fill("#f-name", "Gold")
    pg.fill("#f-threshold", "5000")
    pg.fill("#f-discount_pct", "120")
    pg.click("#new-tier button[type=submit]")
    expect(pg.locator("#e-discount_pct")).to_contain_text("Must be at most 100")
    pg.fill("#f-discount_pct", "5")
    pg.click("#new-tier button[type=submit]")
    expect(pg.locator("#tiers")).to_contain_text("Gold")
    expect(pg.locator("#tiers")).to_contain_text("5,000.00")
    with db.read() as s:
        tier = s.scalar(select(Tier).where(Tier.code == "gold"))
        assert tier is not None and (tier.threshold, tier.discount_pct) == (500_000, 5)
    pg.goto(f"{live_url}/settings")
    shot(pg, "settings")

    # a promotion: 2nd coffee half price, in every store, then seen in the list
    pg.click("nav >> text=Promotions")
    pg.click("text=New promotion")
    pg.click("a[data-kind=nth_item]")
    pg.fill("#f-name", "2nd coffee half price")
    pg.fill("#f-skus", "COF")
    pg.fill("#f-nth", "2")
    pg.fill("#f-percent_off", "50")
    pg.click(".promotion-form button[type=submit]")
    expect(pg.locator("h1")).to_contain_text("2nd coffee half price")
    with db.read() as s:
        record = s.scalar(select(PromotionRecord))
        assert record is not None and record.config["percent_off"] == 50

    # the preview on its page prices a basket with it
    pg.fill("#p-sku_1", "COF")
    pg.fill("#p-qty_1", "2")
    pg.fill("#p-sku_2", "CAKE")
    pg.click("#preview button[type=submit]")
    expect(pg.locator("#preview-total")).to_contain_text("76.00")
    pg.goto(f"{live_url}/promotions")
    expect(pg.locator("#promotions")).to_contain_text("2nd coffee half price")
    expect(pg.locator("#promotions")).to_contain_text("Running")
    shot(pg, "promotions")

    # the same pages in Chinese
    zh = pages.open(width=1366, height=900, locale="zh-CN")
    sign_in(zh, live_url, world.owner.username, PASSWORD)
    zh.context.add_cookies([{"name": "lang", "value": "zh_CN", "url": live_url}])
    zh.goto(f"{live_url}/promotions")
    expect(zh.locator("h1")).to_have_text("促销")
    expect(zh.locator("#promotions")).to_contain_text("进行中")
