"""Shared by the till, member-page and public-page tests: a shop with products, a member
with points, stored value and a coupon, and the browser fixtures (uvicorn + Chromium)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.catalog.models import Product
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.loyalty import service as loyalty
from patron.members.models import Member
from patron.offers import service as offers
from patron.offers.schemas import CouponTemplateCreate
from patron.wallet import service as wallet
from tests.factories import World, make_member, make_product

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "screenshots"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                  "(apt-get install chromium fonts-noto-cjk)")


@dataclass
class Shop:
    """What the till and member tests buy and spend."""

    member: Member
    coffee: Product
    cake: Product
    coupon_code: str


def seed_shop(s: Session, clock: FixedClock, world: World, *, name: str = "韩梅梅",
              phone: str = "13912345678", wallet_minor: int = 10_000,
              points: int = 500) -> Shop:
    """A member with a tier on the way, points, stored value and a ¥5 coupon; two products."""
    owner = auth.principal_for_user(world.owner)
    loyalty.update_program(s, clock=clock, actor=owner, changes={
        "points_per_major": 1, "pending_days": 0, "points_per_major_redeemed": 100,
        "expiry_policy": "months", "expiry_months": 1, "expiring_notice_days": 45})
    loyalty.create_tier(s, clock=clock, actor=owner, code="silver", name="Silver", rank=0,
                        threshold=0)
    loyalty.create_tier(s, clock=clock, actor=owner, code="gold", name="Gold", rank=1,
                        threshold=100_000, discount_pct=0)
    member = make_member(s, clock, world.store_a, name=name, phone=phone, sms_consent=True,
                         email="hmm@example.com", email_consent=True)
    loyalty.evaluate_tier(s, clock=clock, member_id=member.id)
    coffee = make_product(s, price_minor=3_200, sku=f"COF-{uuid.uuid4().hex[:4]}")
    coffee.name = "Latte 拿铁"
    cake = make_product(s, price_minor=2_800, sku=f"CAK-{uuid.uuid4().hex[:4]}")
    cake.name = "Cheesecake 芝士蛋糕"
    if wallet_minor:
        wallet.top_up(s, clock=clock, actor=None, member_id=member.id,
                      amount_minor=wallet_minor, store_id=world.store_a.id)
    if points:
        loyalty.earn(s, clock=clock, actor=None, member_id=member.id, points=points,
                     tz="Asia/Shanghai", store_id=world.store_a.id, reason="welcome")
    template = offers.create_template(s, clock=clock, actor=owner, data=CouponTemplateCreate(
        name="¥5 off", kind="fixed", amount_minor=500, validity="days", valid_days=30))
    coupon = offers.issue_coupons(s, clock=clock, actor=None, template_id=template.id,
                                  member_id=member.id)[0]
    s.flush()
    return Shop(member, coffee, cake, coupon.code)


# ---------------------------------------------------------------- the browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """The test app served by uvicorn in a thread; stopped after the test."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run"])
        yield chromium
        chromium.close()


class Pages:
    """Opens browser tabs; every tab fails the test on a script error or CSP violation."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.problems: list[str] = []
        self.contexts: list[object] = []

    def open(self, *, width: int = 1280, height: int = 860, locale: str = "en-US",
             mobile: bool = False) -> Page:
        context = self.browser.new_context(viewport={"width": width, "height": height},
                                           locale=locale, is_mobile=mobile, has_touch=mobile,
                                           device_scale_factor=2 if mobile else 1)
        self.contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        pg.on("console", lambda m: self.problems.append(m.text) if m.type == "error"
              and "Failed to load resource" not in m.text else None)
        pg.on("pageerror", lambda exc: self.problems.append(str(exc)))
        return pg


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    for context in opened.contexts:
        context.close()  # type: ignore[attr-defined]
    assert not opened.problems, opened.problems


def shot(pg: Page, name: str) -> Path:
    """Save a full-page screenshot under docs/screenshots/ (the design, for people)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    pg.evaluate("window.scrollTo(0, 0)")  # sticky bars are drawn where the page scrolled to
    pg.screenshot(path=str(path), full_page=True)
    return path


def sign_in(pg: Page, base: str, username: str, password: str) -> None:
    pg.context.clear_cookies()
    pg.goto(f"{base}/login")
    pg.fill("#f-username", username)
    pg.fill("#f-password", password)
    pg.click("form[action='/login'] button[type=submit]")
    pg.wait_for_url(f"{base}/")


def sales_count(db: Database) -> int:
    from sqlalchemy import func, select

    from patron.sales.models import Sale

    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Sale)) or 0)
