"""End to end in a real browser: Debian's Chromium driven by Playwright, against uvicorn.

The test app (same database as the test, SQLite file or PostgreSQL) is served by uvicorn
in a background thread on a free loopback port. Each page visited is saved as a
screenshot under /tmp/patron-shots/ so a person can look at the design.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.factories import PASSWORD, World, make_member

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path("/tmp/patron-shots")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium "
                              "(apt-get install chromium fonts-noto-cjk)"),
]



@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    problems: list[str] = []  # script errors and CSP violations; 4xx pages are expected
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error"
          and "Failed to load resource" not in m.text else None)
    pg.on("pageerror", lambda exc: problems.append(str(exc)))
    yield pg
    context.close()
    assert not problems, problems


def shot(pg: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(pg: Page, base: str, username: str) -> None:
    pg.context.clear_cookies()
    pg.goto(f"{base}/login")
    pg.fill("#f-username", username)
    pg.fill("#f-password", PASSWORD)
    pg.click("form[action='/login'] button[type=submit]")
    pg.wait_for_url(f"{base}/")


def test_cashier_finds_a_member_by_last_four_digits_and_opens_them(
    page: Page, live_url: str, world: World, db: Database, clock: FixedClock
) -> None:
    pg = page
    with db.write() as s:
        wanted = make_member(s, clock, world.store_a, name="韩梅梅", phone="13912345678",
                             birthday_calendar="lunar", birth_month=8, birth_day=15,
                             tags=["VIP", "咖啡"], sms_consent=True)
        make_member(s, clock, world.store_a, name="李雷", phone="13900001111")
        wanted_id = wanted.id
    pg.goto(f"{live_url}/members")
    assert "/login?next=/members" in pg.url
    shot(pg, "01-login")
    sign_in(pg, live_url, "cashier-a")
    shot(pg, "02-dashboard")
    pg.keyboard.press("/")
    assert pg.evaluate("document.activeElement.id") == "dash-q"
    pg.goto(f"{live_url}/members")
    assert pg.evaluate("document.activeElement.id") == "q"
    pg.keyboard.type("5678")
    pg.wait_for_function(
        "() => !document.querySelector('#results').textContent.includes('李雷')")
    results = pg.locator("#results")
    assert "韩梅梅" in results.inner_text() and "139****5678" in results.inner_text()
    assert "q=5678" in pg.url  # the search is in the address bar
    shot(pg, "03-members-search")
    pg.click("#results a.row-link")
    pg.wait_for_url(f"{live_url}/members/{wanted_id}")
    body = pg.inner_text("main")
    assert "Lunar 8/15" in body and "139****5678" in body and "1234 5678" not in body
    shot(pg, "04-member-detail-cashier")


def test_manager_enrols_a_member_through_the_form(
    page: Page, live_url: str, world: World, db: Database
) -> None:
    pg = page
    sign_in(pg, live_url, "manager-a")
    pg.goto(f"{live_url}/members")
    pg.click("a.btn-primary[href='/members/new']")
    pg.fill("#f-name", "王芳")
    pg.fill("#f-phone", "12345")
    pg.click("form[action='/members/new'] button[type=submit]")
    assert pg.inner_text("#e-phone").startswith("Not a valid phone number")
    assert pg.input_value("#f-name") == "王芳"
    shot(pg, "05-enrol-with-error")
    pg.fill("#f-phone", "138 0013 8000")
    pg.select_option("#f-birthday_calendar", "lunar")
    pg.fill("#f-birth_month", "4")
    pg.fill("#f-birth_day", "8")
    pg.check("#f-birth_leap_month")
    pg.fill("#f-tags", "VIP, 咖啡")
    pg.check("input[name=sms_consent]")
    pg.click("form[action='/members/new'] button[type=submit]")
    pg.wait_for_selector("text=Member enrolled.")
    body = pg.inner_text("main")
    assert "王芳" in body and "Lunar leap 4/8" in body and "138 0013 8000" in body
    pg.evaluate("document.getElementById('edit').open = true")
    shot(pg, "06-member-detail-manager")


def test_owner_switches_to_chinese_and_tours_every_page(
    page: Page, live_url: str, world: World, db: Database, clock: FixedClock
) -> None:
    pg = page
    with db.write() as s:
        for i, name in enumerate(["韩梅梅", "李雷", "Emily Chen", "王芳", "刘洋"]):
            make_member(s, clock, world.store_a if i % 2 else world.store_b, name=name,
                        birthday_calendar="lunar" if i % 2 else "solar", birth_month=8,
                        birth_day=15, tags=["VIP"] if i % 2 else ["新客"], sms_consent=i % 2 == 0)
    sign_in(pg, live_url, "owner")
    pg.click(".topbar button[value=zh_CN]")
    pg.wait_for_selector("text=欢迎回来")
    nav = pg.inner_text("nav.nav")
    assert "会员" in nav and "员工" in nav and "操作日志" in nav
    shot(pg, "07-dashboard-zh")
    tour = [("08-members-zh", "/members"), ("09-enrol-zh", "/members/new"),
            ("10-staff-zh", "/staff"), ("11-api-keys-zh", "/api-keys"),
            ("12-stores-zh", "/stores"), (None, "/audit"), (None, "/members/import")]
    for name, path in tour:
        pg.goto(f"{live_url}{path}")
        heading = pg.locator("h1").first.inner_text()
        assert heading and not heading.isascii(), path  # a Chinese heading on every page
        if name:
            shot(pg, name)
    pg.goto(f"{live_url}/members")
    pg.click("#results a.row-link")
    pg.wait_for_selector("text=营销授权")
    assert "农历八月十五" in pg.inner_text("main") or "8月15日" in pg.inner_text("main")
    shot(pg, "15-member-detail-zh")
    pg.click(".topbar button[value=en]")
    pg.wait_for_selector("text=Marketing consent")


def test_owner_pages_in_english_and_at_tablet_width(
    page: Page, live_url: str, world: World, db: Database, clock: FixedClock
) -> None:
    pg = page
    with db.write() as s:
        for name in ("韩梅梅", "Zhang Wei", "Tom Li"):
            make_member(s, clock, world.store_a, name=name, tags=["VIP"])
    sign_in(pg, live_url, "owner")
    pg.goto(f"{live_url}/api-keys")
    pg.fill("#f-name", "Till 2")
    pg.select_option("#f-store_id", str(world.store_a.id))
    pg.click("form[action='/api-keys'] button[type=submit]")
    assert pg.inner_text("#new-secret").startswith("pk_")
    shot(pg, "16-api-key-created")
    for name, path in [("17-staff-edit", f"/staff/{world.cashier_a.id}"),
                       ("18-store-edit", f"/stores/{world.store_a.id}"), ("19-audit", "/audit")]:
        pg.goto(f"{live_url}{path}")
        shot(pg, name)
    pg.goto(f"{live_url}/members/import")
    shot(pg, "20-import-upload")
    csv_file = SHOTS / "import-sample.csv"
    csv_file.parent.mkdir(parents=True, exist_ok=True)
    csv_file.write_text("姓名,手机号码,生日,备注\n韩梅梅,13912345678,1990-08-15,喜欢燕麦奶\n"
                        "李雷,12345,1988-02-30,\n王芳,13800138000,,VIP\n", encoding="utf-8")
    pg.set_input_files("#f-file", str(csv_file))
    pg.select_option("#f-default_store_id", str(world.store_a.id))
    pg.click("form[action='/members/import'] button[type=submit]")
    pg.wait_for_selector("text=Match the columns")
    pg.click("form[action='/members/import/run'] button[type=submit]")
    pg.wait_for_selector("text=Dry run: nothing was saved")
    assert "Rejected rows" in pg.inner_text("#report")
    shot(pg, "21-import-dry-run")
    pg.goto(f"{live_url}/members")
    pg.set_viewport_size({"width": 820, "height": 1100})
    shot(pg, "22-members-tablet")
    pg.set_viewport_size({"width": 390, "height": 844})
    pg.goto(f"{live_url}/")
    shot(pg, "23-dashboard-phone")
    sign_in(pg, live_url, "cashier-a")
    pg.set_viewport_size({"width": 1280, "height": 860})
    pg.goto(f"{live_url}/audit")
    assert "You don't have access to this page" in pg.inner_text("main")
    shot(pg, "24-forbidden")
