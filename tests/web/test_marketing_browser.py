"""The marketing pages in a real browser: building a segment condition by condition with the
live count following, a campaign's draft showing its target and control sizes, and the
results page drawing its uplift and conversion charts without a script error."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from playwright.sync_api import Page, expect
from sqlalchemy import select

from patron.auth import service as auth
from patron.campaigns import service as campaigns
from patron.campaigns.models import CampaignMember, Segment
from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.campaigns.test_service import add_members, buy
from tests.factories import PASSWORD, World
from tests.web.pages_support import Pages, needs_chromium, shot, sign_in

pytestmark = needs_chromium
TZ = "UTC"
WAIT = 20_000  # ms: the machine is shared, and a count is a request away


def _count(db: Database, clock: FixedClock, world: World, rules: dict[str, object]) -> int:
    with db.read() as s:
        return campaigns.count_members(s, clock=clock, actor=auth.principal_for_user(world.owner),
                                       rules=rules, tz=TZ).count


def _count_shown(pg: Page, expected: int) -> None:
    expect(pg.locator("#live-count [data-count]")).to_have_attribute(
        "data-count", str(expected), timeout=WAIT)


def test_segment_builder_campaign_and_results_in_the_browser(
        pages: Pages, live_url: str, db: Database, clock: FixedClock, world: World) -> None:
    with db.write() as s:
        in_a = add_members(s, clock, world.store_a.id, 60)
        add_members(s, clock, world.store_b.id, 20)
        # every member of A buys; five in nine spend 40 or more, so the segment holds
        # about 33 and the 30 % control arm is never too small to estimate (arms are
        # drawn at random: with half as many, one run in a few dozen drew a control of 1)
        for i, member_id in enumerate(in_a):
            buy(s, member_id, world.store_a.id, clock.now() - timedelta(days=3),
                1_500 + 700 * (i % 9))
    pg = pages.open()
    sign_in(pg, live_url, "owner", PASSWORD)
    pg.goto(f"{live_url}/marketing/segments/new")
    pg.fill("#f-name", "Store A spenders")

    rows = pg.locator("#rows-top .rule-row")
    expect(rows).to_have_count(1, timeout=WAIT)
    rows.nth(0).locator(".rule-field").select_option("home_store")
    values = rows.nth(0).locator(".rule-values")
    expect(values).to_be_visible(timeout=WAIT)
    values.select_option([str(world.store_a.id)])
    store_a = {"field": "home_store", "value": [str(world.store_a.id)]}
    _count_shown(pg, _count(db, clock, world, store_a))
    assert _count(db, clock, world, store_a) == len(in_a)

    pg.click("#add-condition")
    expect(rows).to_have_count(2, timeout=WAIT)
    # htmx binds the new row's triggers when it settles (20 ms after the insert, when it
    # drops the htmx-added class): a choice made before then would go unheard
    expect(rows.nth(1)).not_to_have_class(re.compile(r"\bhtmx-added\b"), timeout=WAIT)
    rows.nth(1).locator(".rule-field").select_option("spend")
    expect(rows.nth(1).locator(".rule-op")).to_be_visible(timeout=WAIT)
    rows.nth(1).locator(".rule-op").select_option(">=")
    amount = rows.nth(1).locator("input[name$='.value']")
    amount.fill("40")
    amount.press("Tab")
    rows.nth(1).locator("input[name$='.days']").fill("30")
    rows.nth(1).locator("input[name$='.days']").press("Tab")
    both = {"op": "all", "children": [store_a, {"field": "spend", "op": ">=", "value": 4_000,
                                                "days": 30}]}
    expected = _count(db, clock, world, both)
    assert 0 < expected < len(in_a)
    _count_shown(pg, expected)
    expect(pg.locator("#count-value")).to_have_text(str(expected), timeout=WAIT)
    expect(pg.locator(".sample li")).to_have_count(min(expected, 5), timeout=WAIT)
    shot(pg, "segment-builder")

    pg.click("#save-segment")
    pg.wait_for_url(re.compile(r"/marketing/segments/[0-9a-f-]{36}$"))
    with db.read() as s:
        segment = s.scalar(select(Segment).where(Segment.name == "Store A spenders"))
        assert segment is not None and segment.rules == both
        segment_id = segment.id

    # a campaign on it: the draft shows the arms the launch will make
    pg.goto(f"{live_url}/marketing/campaigns/new?segment={segment_id}")
    pg.fill("#f-name", "Come back for autumn")
    pg.fill("#f-en_body", "Autumn teas are in at {{ store.name }}.")
    pg.fill("#f-holdout_pct", "30")
    pg.click("#create-campaign")
    pg.wait_for_url(re.compile(r"/marketing/campaigns/[0-9a-f-]{36}$"))
    campaign_id = uuid.UUID(pg.url.rsplit("/", 1)[1])
    with db.read() as s:
        preview = campaigns.preview_arms(s, clock=clock, actor=auth.principal_for_user(
            world.owner), campaign_id=campaign_id, tz=TZ)
    assert preview.treatment + preview.control == expected and preview.control > 0
    expect(pg.locator("#preview-treatment")).to_have_text(str(preview.treatment), timeout=WAIT)
    expect(pg.locator("#preview-control")).to_have_text(str(preview.control), timeout=WAIT)
    pg.on("dialog", lambda dialog: dialog.accept())
    pg.click("#launch")
    expect(pg.locator("#arms")).to_be_visible(timeout=WAIT)

    # purchases in the window, two weeks later: the results and their charts
    with db.write() as s:
        assigned = {m.member_id: m.arm for m in s.scalars(
            select(CampaignMember).where(CampaignMember.campaign_id == campaign_id))}
        for i, (member_id, arm) in enumerate(sorted(assigned.items())):
            if (arm == "treatment" and i % 3 != 2) or (arm == "control" and i % 2 == 0):
                buy(s, member_id, world.store_a.id, clock.now() + timedelta(days=1 + i % 9),
                    2_000 + 150 * i)
    clock.advance(timedelta(days=15))
    sign_in(pg, live_url, "owner", PASSWORD)
    pg.goto(f"{live_url}/marketing/campaigns/{campaign_id}")
    expect(pg.locator("#uplift-chart")).to_have_attribute("data-chart-ready", "1", timeout=WAIT)
    expect(pg.locator("#conversion-chart")).to_have_attribute("data-chart-ready", "1", timeout=WAIT)
    assert pg.locator("#uplift-chart canvas").count() >= 1
    expect(pg.locator("tr[data-arm='treatment'] [data-cell='members']")).to_have_text(
        str(preview.treatment))
    expect(pg.locator("[data-verdict]").first).to_be_visible(timeout=WAIT)
    shot(pg, "campaign-results")
