"""The team page (/team): leaderboards and trend over the hand-built chain, in English and
Chinese, sorting, store scoping, bad input; in Chromium, the trend charts are drawn."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.web import i18n
from tests.analytics.team_chain import Chain, build_chain
from tests.factories import PASSWORD
from tests.web.helpers import web_login
from tests.web.pages_support import Pages, needs_chromium, shot, sign_in

PERIOD = "from=2026-07-01&to=2026-08-31"


@pytest.fixture
def chain(db: Database, clock: FixedClock) -> Chain:
    with db.write() as s:
        return build_chain(s, clock)


def store_order(html: str) -> list[str]:
    table = html.split('data-table="stores"')[1].split("</table>")[0]
    return re.findall(r'data-store="(\w+)"', table)


def cell(html: str, row: str, metric: str) -> str:
    part = html.split(f'data-store="{row}"')[1].split("</tr>")[0]
    match = re.search(rf'data-metric="{metric}">([^<]*)<', part)
    assert match, (row, metric)
    return match.group(1).strip()


def test_owner_sees_both_leaderboards_and_the_trend(client: TestClient, chain: Chain) -> None:
    web_login(client, "owner")
    r = client.get(f"/team?{PERIOD}")
    assert r.status_code == 200, r.text
    html = r.text
    assert "Team performance" in html and 'href="/team"' in html
    assert store_order(html) == ["A", "B", "C"]  # by enrolments: 7, 2, 2
    assert cell(html, "A", "enrolled") == "7"
    assert cell(html, "A", "came_back_rate") == "57.1%"  # 4 of 7
    assert cell(html, "A", "repeat_rate") == "25.0%"
    assert cell(html, "A", "churn_rate") == "66.7%"
    assert cell(html, "A", "mean_resolution_hours") == "39.0 h"
    assert cell(html, "A", "nps") == "0.0"
    assert cell(html, "A", "uplift") == "+58.3 pt"
    assert cell(html, "C", "churn_rate") == "—"
    assert 'data-table="staff"' in html and "Amy Cashier" in html
    assert 'id="team-rates-data"' in html and 'id="team-counts-data"' in html
    assert '"2026-07"' in html and '"2026-08"' in html


def test_sorting_by_a_metric_reorders_the_stores(client: TestClient, chain: Chain) -> None:
    web_login(client, "owner")
    # lower churn is better: B (0 %) before A (66.7 %); C has none and goes last
    assert store_order(client.get(f"/team?{PERIOD}&sort=churn_rate").text) == ["B", "A", "C"]
    assert store_order(client.get(f"/team?{PERIOD}&sort=repeat_rate").text) == ["B", "C", "A"]
    # quicker resolution is better: 6 h, 72 h, 144 h, then those who resolved nothing
    html = client.get(f"/team?{PERIOD}&staff_sort=mean_resolution_hours").text
    staff = html.split('data-table="staff"')[1]
    names = re.findall(r'<td class="nowrap">([^<]+?) <span class="badge', staff)
    assert names[:3] == ["Mia Manager", "Olivia Owner", "Ben Manager"]
    assert len(names) == 7


def test_the_page_in_chinese(client: TestClient, chain: Chain) -> None:
    web_login(client, "owner")
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    html = client.get(f"/team?{PERIOD}").text
    assert "团队绩效" in html and "门店排行榜" in html and "员工排行榜" in html
    assert "90 天内回购" in html and "流失率" in html
    assert "Team performance" not in html and "Store leaderboard" not in html


def test_a_manager_sees_their_store_only_and_is_refused_another(client: TestClient,
                                                               chain: Chain) -> None:
    web_login(client, "manager-a")
    html = client.get(f"/team?{PERIOD}").text
    assert store_order(html) == ["A"]
    assert "Bea Cashier" not in html
    assert client.get(f"/team?{PERIOD}&store={chain.b.id}").status_code == 403


def test_cashiers_get_no_menu_item_and_the_403_page(client: TestClient, chain: Chain) -> None:
    web_login(client, "cashier-a")
    assert 'href="/team"' not in client.get("/members").text
    assert client.get("/team").status_code == 403


@pytest.mark.parametrize(("query", "message"), [
    ("from=2026-13-01", "Enter a date"),
    ("from=2026-09-01&to=2026-08-01", "The period ends before it starts"),
    ("from=2026-11-01&to=2026-12-31", "The period cannot end after today"),
    ("sort=shoe_size", "Choose one of the options"),
])
def test_bad_filters_are_explained_and_show_nothing(client: TestClient, chain: Chain,
                                                    query: str, message: str) -> None:
    web_login(client, "owner")
    r = client.get(f"/team?{query}")
    assert r.status_code == 422
    assert message in r.text
    assert 'data-table="stores"' not in r.text


@needs_chromium
def test_the_trend_charts_are_drawn(live_url: str, pages: Pages, chain: Chain) -> None:
    pg = pages.open(width=1440, height=900)
    sign_in(pg, live_url, "owner", PASSWORD)
    pg.goto(f"{live_url}/team?{PERIOD}")
    pg.wait_for_selector("#team-rates-chart[data-chart-ready='1']")
    pg.wait_for_selector("#team-counts-chart[data-chart-ready='1']")
    assert pg.locator("#team-rates-chart canvas").count() >= 1
    assert pg.locator("[data-table=stores] tbody tr").count() == 3
    pg.click("[data-table=stores] th a:has-text('Churn rate')")
    pg.wait_for_url(re.compile(r"sort=churn_rate"))
    assert pg.locator("[data-table=stores] tbody tr").first.get_attribute("data-store") == "B"
    pg.goto(f"{live_url}/team?{PERIOD}")
    pg.wait_for_selector("#team-rates-chart[data-chart-ready='1']")
    shot(pg, "team")
