"""The dashboard page: the figures of a hand-built shop, the store and period filters, what
a cashier sees, both languages, and every chart drawn in a real browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page as BrowserPage
from sqlalchemy import delete

from patron.analytics import dashboard, service
from patron.analytics.tables import DashboardHistory
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.settings import Settings
from tests.analytics.test_dashboard import Shop, add_campaign, build_shop
from tests.factories import PASSWORD, World
from tests.web.helpers import web_login
from tests.web.pages_support import Pages, needs_chromium, shot, sign_in

PERIOD = "from=2026-09-01&to=2026-11-22"
_FIGURE = re.compile(r'data-figure="([a-z_0-9]+)">\s*<span class="stat-label">[^<]*</span>\s*'
                     r'<strong class="stat-value">([^<]*)</strong>')


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """The caches are per process; every test has its own database rows."""
    dashboard.HISTORY_CACHE.clear()
    dashboard.SNAPSHOT_CACHE.clear()
    dashboard.PORTRAIT_CACHE.clear()
    yield
    dashboard.HISTORY_CACHE.clear()
    dashboard.SNAPSHOT_CACHE.clear()
    dashboard.PORTRAIT_CACHE.clear()


@pytest.fixture
def shop(db: Database, world: World) -> Shop:
    return build_shop(db, world)


def figures_of(html: str) -> dict[str, str]:
    return {key: value.strip() for key, value in _FIGURE.findall(html)}


def _history(client: TestClient, query: str) -> dict[str, str]:
    """Load the page (the history is not cached yet: a placeholder), then its fragment."""
    page = client.get(f"/?{query}")
    assert page.status_code == 200, page.text
    assert f'hx-get="/dashboard/history?{query.replace("&", "&amp;")}' in page.text
    fragment = client.get(f"/dashboard/history?{query}")
    assert fragment.status_code == 200, fragment.text
    return figures_of(fragment.text)


def test_owner_sees_the_hand_computed_figures(client: TestClient, world: World,
                                              shop: Shop) -> None:
    web_login(client, world.owner.username)
    page = client.get(f"/?{PERIOD}")
    snap = figures_of(page.text)
    assert snap == {"members_at_risk": "2", "revenue_at_risk": "CN¥100.00"}
    assert 'id="dash-rfm-chart"' in page.text and 'id="dash-funnel-chart"' in page.text
    history = _history(client, PERIOD)
    assert history == {
        "active_members": "3", "new_members": "3", "repeat_rate": "66.7%",
        "churn_rate": "0.0%", "member_revenue_share": "83.0%", "top_share": "32.9%",
        "points_liability": "CN¥8.00", "stored_value_liability": "CN¥120.00"}
    # now cached: the page carries the history figures itself, no placeholder
    again = client.get(f"/?{PERIOD}")
    assert 'hx-trigger="load"' not in again.text
    assert figures_of(again.text) == {**history, **snap}
    for chart in ("dash-bucket", "dash-pareto", "dash-cohorts", "dash-rfm", "dash-funnel"):
        assert f'data-chart="{chart}-data"' in again.text
    assert 'name="q"' in again.text and 'href="/members/new"' in again.text


def test_after_the_nightly_refresh_the_first_page_carries_every_figure(
        client: TestClient, world: World, shop: Shop, db: Database, clock: FixedClock,
        settings: Settings) -> None:
    """The refresh stored the default period's history of every store and each store: no
    placeholder, and the same figures as computed on demand once they are gone."""
    service.refresh(db, clock, timezone=settings.default_timezone, as_of=date(2026, 11, 22))
    web_login(client, world.owner.username)
    page = client.get("/")
    assert page.status_code == 200 and 'hx-trigger="load"' not in page.text
    shown = figures_of(page.text)
    assert shown["active_members"] == "3" and 'data-chart="dash-cohorts-data"' in page.text
    client.cookies.clear()
    web_login(client, world.manager_b.username)
    own = client.get("/")
    assert 'hx-trigger="load"' not in own.text
    assert figures_of(own.text)["active_members"] == "1"  # m4; m3 lapsed (store B)
    with db.write() as s:
        s.execute(delete(DashboardHistory))
    dashboard.HISTORY_CACHE.clear()
    client.cookies.clear()
    web_login(client, world.owner.username)
    live = figures_of(client.get("/dashboard/history").text)
    assert live == {k: v for k, v in shown.items() if k in live} and len(live) == 8


def test_store_filter(client: TestClient, world: World, shop: Shop) -> None:
    web_login(client, world.owner.username)
    query = f"store={shop.store_a}&{PERIOD}"
    history = _history(client, query)
    assert (history["active_members"], history["new_members"]) == ("2", "2")
    assert (history["repeat_rate"], history["member_revenue_share"]) == ("100.0%", "84.4%")
    assert history["points_liability"] == "CN¥5.00"
    store_b = figures_of(client.get(f"/?store={shop.store_b}&{PERIOD}").text)
    assert store_b == {"members_at_risk": "2", "revenue_at_risk": "CN¥100.00"}
    assert figures_of(client.get(query).text) == {}  # not a dashboard URL: nothing leaks


def test_period_filter(client: TestClient, world: World, shop: Shop) -> None:
    web_login(client, world.owner.username)
    history = _history(client, "from=2026-01-01&to=2026-05-31")
    assert (history["active_members"], history["new_members"]) == ("1", "2")
    assert history["churn_rate"] == "33.3%"


def test_bad_filters_name_the_field_and_show_no_figures(client: TestClient, world: World,
                                                        shop: Shop) -> None:
    web_login(client, world.owner.username)
    r = client.get("/?from=yesterday")
    assert r.status_code == 422
    assert 'id="dash-from-error"' in r.text and "Enter a date as YYYY-MM-DD" in r.text
    assert figures_of(r.text) == {}
    r = client.get("/?from=2026-11-10&to=2026-11-01")
    assert r.status_code == 422 and "The period ends before it starts" in r.text
    r = client.get("/?to=2030-01-01")
    assert r.status_code == 422 and 'id="dash-to-error"' in r.text
    assert client.get("/dashboard/history?store=nope").status_code == 422


def test_a_manager_sees_only_their_stores(client: TestClient, world: World,
                                          shop: Shop) -> None:
    web_login(client, world.manager_a.username)
    page = client.get("/")
    assert page.status_code == 200
    assert f'value="{world.store_a.id}"' in page.text
    assert f'value="{world.store_b.id}"' not in page.text
    assert figures_of(page.text) == {"members_at_risk": "0", "revenue_at_risk": "CN¥0.00"}
    refused = client.get(f"/?store={world.store_b.id}")
    assert refused.status_code == 422 and 'id="dash-store-error"' in refused.text
    assert figures_of(refused.text) == {}
    assert client.get(f"/dashboard/history?store={world.store_b.id}").status_code == 422


def test_a_cashier_sees_search_and_shortcuts_but_no_money(client: TestClient, world: World,
                                                          shop: Shop) -> None:
    web_login(client, world.cashier_a.username)
    page = client.get(f"/?{PERIOD}")
    assert page.status_code == 200
    assert 'id="dash-q"' in page.text and 'href="/members/new"' in page.text
    assert figures_of(page.text) == {}
    for hidden in ("¥", "/dashboard/history", "data-chart", "Revenue at risk", "liability"):
        assert hidden not in page.text
    assert client.get(f"/dashboard/history?{PERIOD}").status_code == 403


def test_chinese_dashboard(client: TestClient, world: World, shop: Shop) -> None:
    web_login(client, world.owner.username)
    client.cookies.set("lang", "zh_CN")
    page = client.get(f"/?{PERIOD}")
    assert page.status_code == 200
    assert "风险与细分" in page.text and "流失风险会员" in page.text
    fragment = client.get(f"/dashboard/history?{PERIOD}").text
    assert "复购率" in fragment and "积分负债" in fragment
    assert "Repeat purchase rate" not in fragment


# ---------------------------------------------------------------- the browser


def _all_charts_drawn(pg: BrowserPage) -> list[str]:
    """Wait until every chart element on the page is drawn; return their ids."""
    pg.wait_for_selector("#dash-history [data-chart]", state="attached", timeout=60_000)
    pg.wait_for_function(
        "() => { const c = document.querySelectorAll('[data-chart]');"
        " return c.length > 0 && [...c].every(e => e.getAttribute('data-chart-ready') === '1'"
        " && e.querySelector('canvas')); }", timeout=30_000)
    ids: list[str] = pg.eval_on_selector_all("[data-chart]", "els => els.map(e => e.id)")
    return ids


@needs_chromium
def test_every_chart_is_drawn_without_console_errors(
        live_url: str, pages: Pages, db: Database, world: World, shop: Shop) -> None:
    add_campaign(db, shop, launched=datetime(2026, 9, 1, 2, tzinfo=UTC),
                 treated=[shop.m1, shop.m2], control=[shop.m3, shop.m4])
    add_campaign(db, shop, launched=datetime(2026, 10, 2, 2, tzinfo=UTC), name="Coffee club",
                 treated=[shop.m2, shop.m4], control=[shop.m1, shop.m5])
    pg = pages.open(width=1366, height=900)
    pg.set_default_timeout(30_000)  # a cold history load on a busy 2-core machine
    sign_in(pg, live_url, world.owner.username, PASSWORD)
    pg.goto(f"{live_url}/?{PERIOD}")
    drawn = _all_charts_drawn(pg)  # the history arrives by htmx after the page
    assert sorted(drawn) == sorted(f"dash-{name}-chart" for name in (
        "bucket", "pareto", "cohorts", "uplift", "rfm", "funnel"))
    assert pg.inner_text("[data-figure=active_members] .stat-value") == "3"
    shot(pg, "dashboard")

    zh = pages.open(width=1366, height=900, locale="zh-CN")
    zh.set_default_timeout(30_000)
    sign_in(zh, live_url, world.owner.username, PASSWORD)
    zh.context.add_cookies([{"name": "lang", "value": "zh_CN", "url": live_url}])
    zh.goto(f"{live_url}/?{PERIOD}")  # cached now: everything is on the page at once
    assert len(_all_charts_drawn(zh)) == 6
    assert "复购率" in zh.inner_text("main")
    shot(zh, "dashboard-zh")
