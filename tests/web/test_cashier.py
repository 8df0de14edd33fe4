"""The till: finding members, ringing up a basket, coupons, points and stored value, the
one-sale-per-key checkout, enrolment at the till; and a cashier's sale in Chromium."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlalchemy import select

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members.models import ConsentEvent, Member
from patron.offers.models import Coupon
from patron.sales.models import Sale
from patron.wallet import service as wallet
from patron.web.pages.cashier import format_major, parse_money
from patron.web.pages.selfservice import member_token
from tests.factories import PASSWORD, World, make_member
from tests.web.helpers import csrf_of, web_login
from tests.web.pages_support import (
    Pages,
    Shop,
    browser,  # noqa: F401 - fixture
    live_url,  # noqa: F401 - fixture
    needs_chromium,
    pages,  # noqa: F401 - fixture
    sales_count,
    seed_shop,
    shot,
    sign_in,
)

_KEY = re.compile(r'name="key" value="([^"]+)"')


@pytest.fixture
def shop(db: Database, clock: FixedClock, world: World) -> Shop:
    with db.write() as s:
        return seed_shop(s, clock, world)


def _till(client: TestClient) -> tuple[str, str]:
    """Open a new sale: its CSRF token and Idempotency-Key."""
    html = client.get("/cashier").text
    key = _KEY.search(html)
    assert key
    return csrf_of(html), key.group(1)


def _post(client: TestClient, csrf: str, key: str, state: dict[str, object], **extra: object
          ) -> tuple[int, str]:
    data: dict[str, object] = {"csrf_token": csrf, "key": key, **state, **extra}
    r = client.post("/cashier", data=data, headers={"HX-Request": "true"})
    return r.status_code, r.text


def _state(html: str) -> dict[str, object]:
    """The sale's hidden state as the page would post it back."""
    state: dict[str, object] = {}
    for name in ("member_id", "store_id", "expected_total"):
        found = re.search(rf'name="{name}" value="([^"]*)"', html)
        if found:
            state[name] = found.group(1)
    state["line_product"] = re.findall(r'name="line_product" value="([^"]+)"', html)
    state["line_qty"] = re.findall(r'name="line_qty" value="([^"]+)"', html)
    state["coupon"] = re.findall(r'name="coupon" value="([^"]+)" checked', html) + \
        re.findall(r'name="coupon" value="([^"]+)"[^>]*checked', html)
    for name, pattern in (("wallet", r'id="pay-wallet" name="wallet" value="([^"]*)"'),
                          ("card", r'id="pay-card" name="card" value="([^"]*)"'),
                          ("points", r'id="points" name="points" value="([^"]*)"')):
        found = re.search(pattern, html)
        if found:
            state[name] = found.group(1)
    state["coupon"] = sorted(set(state["coupon"]))  # type: ignore[arg-type]
    return state


def test_money_typed_at_the_till_is_read_exactly() -> None:
    assert parse_money("12.5", "CNY") == 1250
    assert parse_money("¥1,200.00", "CNY") == 120_000
    assert parse_money("", "CNY") == 0
    assert format_major(1250, "CNY") == "12.50" and format_major(0, "CNY") == ""
    for bad in ("1.234", "-3", "1.2.3"):
        with pytest.raises(ValueError, match=re.escape(bad)):
            parse_money(bad, "CNY")


def test_the_till_needs_a_signed_in_person(client: TestClient, world: World) -> None:
    r = client.get("/cashier", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/cashier"
    web_login(client, "cashier-a")
    html = client.get("/cashier").text
    assert 'href="/cashier"' in html and "Keyboard shortcuts" in html and "F9" in html
    assert 'id="member-q"' in html and "autofocus" in html


def test_posts_without_the_csrf_token_are_refused(client: TestClient, world: World,
                                                  shop: Shop) -> None:
    web_login(client, "cashier-a")
    _csrf, key = _till(client)
    r = client.post("/cashier", data={"key": key, "op": "find", "member_q": "5678"})
    assert r.status_code == 403
    r = client.post("/cashier/checkout", data={"key": key, "line_product": str(shop.coffee.id),
                                               "line_qty": "1"})
    assert r.status_code == 403
    assert sales_count(client.app.state.ctx.db) == 0  # type: ignore[attr-defined]


def test_cashier_finds_by_last_four_and_sees_a_masked_phone(
        client: TestClient, world: World, shop: Shop, db: Database, clock: FixedClock) -> None:
    web_login(client, "cashier-a")
    csrf, key = _till(client)
    status, html = _post(client, csrf, key, {}, op="find", scan="5678")
    assert status == 200
    assert "韩梅梅" in html and "139****5678" in html and "13912345678" not in html
    assert f'name="member_id" value="{shop.member.id}"' in html
    assert "Points available" in html and "¥5 off" in html and "Silver" in html
    with db.write() as s:  # a second member with the same last four digits
        make_member(s, clock, world.store_a, name="李雷", phone="13812345678")
    status, html = _post(client, csrf, key, {}, op="find", scan="5678")
    assert "Several members match" in html and html.count('value="member:') == 2
    status, html = _post(client, csrf, key, {}, op="find", scan="0000")
    assert status == 422 and "No member found" in html


def test_a_scanned_member_code_or_link_finds_the_member(
        client: TestClient, world: World, shop: Shop) -> None:
    web_login(client, "cashier-a")
    csrf, key = _till(client)
    _status, html = _post(client, csrf, key, {}, op="find", scan=shop.member.card_no)
    assert f'name="member_id" value="{shop.member.id}"' in html
    secret = client.app.state.ctx.settings.secret_key.get_secret_value()  # type: ignore[attr-defined]
    token = member_token(secret, shop.member.id)
    _status, html = _post(client, csrf, key, {}, op="find",
                          scan=f"https://shop.example/m/{token}")
    assert f'name="member_id" value="{shop.member.id}"' in html
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    status, html = _post(client, csrf, key, {}, op="find", scan=forged)
    assert status == 422 and 'name="member_id" value=""' in html


def test_basket_coupon_points_and_payment_split_are_priced_by_the_service(
        client: TestClient, world: World, shop: Shop) -> None:
    web_login(client, "cashier-a")
    csrf, key = _till(client)
    _s, html = _post(client, csrf, key, {}, op="find", scan="5678")
    _s, html = _post(client, csrf, key, _state(html), op="add", scan=shop.coffee.sku)
    _s, html = _post(client, csrf, key, _state(html), op=f"add:{shop.cake.id}")
    _s, html = _post(client, csrf, key, _state(html), op="add", scan=shop.coffee.sku)
    state = _state(html)
    assert state["line_qty"] == ["2", "1"]  # the second scan of a product adds to its line
    assert "CN¥92.00" in html  # 2 x 32 + 28
    _s, html = _post(client, csrf, key, state, op="coupon", coupon_code=shop.coupon_code)
    assert "−CN¥5.00" in html and "CN¥87.00" in html
    _s, html = _post(client, csrf, key, _state(html), op="points_max")
    assert 'name="points" value="500"' in html and "CN¥82.00" in html  # 500 points = ¥5
    _s, html = _post(client, csrf, key, _state(html), op="wallet_max")
    assert 'name="wallet" value="82.00"' in html
    state = _state(html)
    state["wallet"] = "50"
    _s, html = _post(client, csrf, key, state, op="rest_card")
    assert 'name="card" value="32.00"' in html
    _s, html = _post(client, csrf, key, _state(html), op="dec:0")
    assert _state(html)["line_qty"] == ["1", "1"]


def test_refusals_are_shown_on_the_field_they_are_about(
        client: TestClient, world: World, shop: Shop) -> None:
    web_login(client, "cashier-a")
    csrf, key = _till(client)
    _s, html = _post(client, csrf, key, {}, op="find", scan="5678")
    _s, html = _post(client, csrf, key, _state(html), op="add", scan=shop.coffee.sku)
    status, html = _post(client, csrf, key, _state(html), op="coupon", coupon_code="ZZZZ-ZZZZ")
    assert status == 422
    assert 'id="e-coupon_code"' in html and "No coupon has this code" in html
    assert 'name="coupon" value="ZZZZZZZZ"' not in html  # the refused coupon is taken off
    state = _state(html)
    state["wallet"] = "200"
    status, html = _post(client, csrf, key, state, op="recalc")
    assert status == 422 and 'id="e-wallet"' in html
    assert "Not enough stored value: the member has CN¥100.00" in html
    state["wallet"] = "12.345"
    status, html = _post(client, csrf, key, state, op="recalc")
    assert "Enter an amount like 12.50" in html
    status, html = _post(client, csrf, key, _state(html), op="add", scan="NO-SUCH-SKU")
    assert status == 422 and 'id="e-product_q"' in html


def test_checkout_books_one_sale_per_key_and_shows_the_receipt(
        client: TestClient, world: World, shop: Shop, db: Database) -> None:
    web_login(client, "cashier-a")
    csrf, key = _till(client)
    _s, html = _post(client, csrf, key, {}, op="find", scan="5678")
    _s, html = _post(client, csrf, key, _state(html), op="add", scan=shop.coffee.sku)
    _s, html = _post(client, csrf, key, _state(html), op="add", scan=shop.cake.sku)
    _s, html = _post(client, csrf, key, _state(html), op="coupon", coupon_code=shop.coupon_code)
    state = _state(html)
    state["wallet"] = "20"
    _s, html = _post(client, csrf, key, state, op="recalc")
    form = {"csrf_token": csrf, "key": key, **_state(html)}
    first = client.post("/cashier/checkout", data=form, headers={"HX-Request": "true"})
    assert first.status_code == 204, first.text
    url = first.headers["HX-Redirect"]
    again = client.post("/cashier/checkout", data=form, headers={"HX-Request": "true"})
    assert again.headers["HX-Redirect"] == url  # the double click gets the same sale
    assert sales_count(db) == 1
    with db.read() as s:
        sale = s.scalar(select(Sale))
        assert sale is not None and sale.total_minor == 5_500
        receipt_no = sale.receipt_no
        assert {p.method: p.amount_minor for p in sale.payments} == {"wallet": 2_000,
                                                                     "cash": 3_500}
        coupon = s.scalar(select(Coupon).where(Coupon.code == shop.coupon_code))
        assert coupon is not None and coupon.status == "redeemed"
        assert wallet.balance(s, member_id=shop.member.id).total_minor == 8_000
    receipt = client.get(url).text
    assert receipt_no in receipt and "CN¥55.00" in receipt and "¥5 off" in receipt
    assert "Points earned" in receipt and "Stored value balance" in receipt and "CN¥80.00" in receipt
    # the same key with another basket is refused; nothing else is booked
    form["line_qty"] = ["2", "1"]
    changed = client.post("/cashier/checkout", data=form, headers={"HX-Request": "true"})
    assert changed.status_code == 422 and "already checked out" in changed.text
    assert sales_count(db) == 1


def test_checkout_refuses_a_total_that_changed_since_it_was_shown(
        client: TestClient, world: World, shop: Shop, db: Database) -> None:
    web_login(client, "cashier-a")
    csrf, key = _till(client)
    _s, html = _post(client, csrf, key, {}, op="add", scan=shop.coffee.sku)
    form = {"csrf_token": csrf, "key": key, **_state(html)}
    with db.write() as s:
        s.get(type(shop.coffee), shop.coffee.id).price_minor = 3_500  # type: ignore[union-attr]
    r = client.post("/cashier/checkout", data=form, headers={"HX-Request": "true"})
    assert r.status_code == 422 and "The total changed" in r.text and "CN¥35.00" in r.text
    assert sales_count(db) == 0
    r = client.post("/cashier/checkout", data={**form, **_state(r.text)},
                    headers={"HX-Request": "true"})
    assert r.status_code == 204 and sales_count(db) == 1


def test_a_customer_is_enrolled_at_the_till_with_their_consent(
        client: TestClient, world: World, shop: Shop, db: Database) -> None:
    web_login(client, "cashier-a")
    csrf, key = _till(client)
    status, html = _post(client, csrf, key, {}, op="enrol", new_name="王芳", new_phone="12345")
    assert status == 422 and 'id="e-new_phone"' in html and "Not a valid phone number" in html
    status, html = _post(client, csrf, key, {}, op="enrol", new_name="王芳",
                         new_phone="138 0013 8000", new_birthday="1990-05-04",
                         new_sms="on")
    assert status == 200 and "王芳" in html and "138****8000" in html
    with db.read() as s:
        member = s.scalar(select(Member).where(Member.name == "王芳"))
        assert member is not None and member.sms_consent and not member.email_consent
        assert (member.birth_month, member.birth_day) == (5, 4)
        assert f'name="member_id" value="{member.id}"' in html
        events = s.scalars(select(ConsentEvent).where(ConsentEvent.member_id == member.id)).all()
        assert [(e.channel, e.granted, e.source) for e in events] == [("sms", True, "enrolment")]


def test_without_javascript_enter_acts_on_the_box_with_text(
        client: TestClient, world: World, shop: Shop) -> None:
    web_login(client, "cashier-a")
    csrf, key = _till(client)
    r = client.post("/cashier", data={"csrf_token": csrf, "key": key, "op": "enter",
                                      "member_q": "5678"})
    assert r.status_code == 200 and "<html" in r.text and "139****5678" in r.text
    state = _state(r.text)
    r = client.post("/cashier", data={"csrf_token": csrf, "key": key, "op": "enter",
                                      "product_q": shop.cake.sku, **state})
    assert _state(r.text)["line_product"] == [str(shop.cake.id)]


def test_product_type_ahead_lists_matches(client: TestClient, world: World, shop: Shop) -> None:
    web_login(client, "cashier-a")
    html = client.get("/cashier/products", params={"product_q": shop.coffee.sku[:4]}).text
    assert f'value="add:{shop.coffee.id}"' in html and "CN¥32.00" in html
    assert "No product starts with" in client.get("/cashier/products",
                                                  params={"product_q": "xyz"}).text


def test_a_receipt_of_another_store_is_not_shown(
        client: TestClient, world: World, shop: Shop, db: Database) -> None:
    web_login(client, "cashier-a")
    csrf, key = _till(client)
    _s, html = _post(client, csrf, key, {}, op="add", scan=shop.coffee.sku)
    r = client.post("/cashier/checkout", data={"csrf_token": csrf, "key": key, **_state(html)},
                    headers={"HX-Request": "true"})
    url = r.headers["HX-Redirect"]
    web_login(client, "manager-b")
    assert client.get(url).status_code == 403
    assert client.get(f"/cashier/sales/{uuid.uuid4()}").status_code == 404


# ---------------------------------------------------------------- in the browser


@needs_chromium
@pytest.mark.browser
def test_cashier_rings_up_a_sale_in_chromium(
        pages: Pages, live_url: str, world: World, shop: Shop, db: Database) -> None:  # noqa: F811
    pg = pages.open(width=1280, height=900)
    sign_in(pg, live_url, "cashier-a", PASSWORD)
    pg.click("nav.nav a[href='/cashier']")
    pg.wait_for_url(f"{live_url}/cashier")
    expect(pg.locator("#member-q")).to_be_focused()
    pg.keyboard.type("5678")
    pg.keyboard.press("Enter")
    expect(pg.locator(".member-card .member-name")).to_contain_text("韩梅梅")
    expect(pg.locator(".member-card")).to_contain_text("139****5678")
    expect(pg.locator("#product-q")).to_be_focused()
    pg.keyboard.type(shop.coffee.sku)  # what a scanner types, then Enter
    pg.keyboard.press("Enter")
    expect(pg.locator("table.basket tbody tr")).to_have_count(1)
    pg.fill("#product-q", "Chee")
    expect(pg.locator("#product-matches .match").first).to_contain_text("Cheesecake")
    pg.click("#product-matches .match >> nth=0")
    expect(pg.locator("table.basket tbody tr")).to_have_count(2)
    pg.check(f".coupon-check input[value='{shop.coupon_code}']")
    expect(pg.locator(".totals")).to_contain_text("−CN¥5.00")
    # the coupon's re-pricing must have settled (it may move the focus) before typing on
    pg.wait_for_function("!document.querySelector('.htmx-request, .htmx-settling')")
    pg.keyboard.press("F7")
    expect(pg.locator("#pay-wallet")).to_be_focused()
    pg.keyboard.type("20")
    pg.keyboard.press("Tab")
    expect(pg.locator("#cash-due")).to_have_text("CN¥35.00")
    shot(pg, "cashier")
    pg.locator("#checkout").dblclick()  # a double click books one sale
    pg.wait_for_url(re.compile(r".*/cashier/sales/.*"))
    expect(pg.locator(".receipt")).to_contain_text("CN¥55.00")
    expect(pg.locator(".receipt")).to_contain_text("Stored value balance")
    assert sales_count(db) == 1
    shot(pg, "cashier-receipt")
    receipt_url = pg.url
    expect(pg.locator("#next-sale")).to_be_focused()
    pg.keyboard.press("Enter")  # "Next sale" has the focus
    pg.wait_for_url(f"{live_url}/cashier")
    pg.goto(receipt_url)
    pg.emulate_media(media="print")  # the receipt prints alone
    assert not pg.locator("aside.sidebar").is_visible()
    assert not pg.locator("#next-sale").is_visible() and pg.locator(".receipt").is_visible()


@needs_chromium
@pytest.mark.browser
def test_the_till_works_at_tablet_width(
        pages: Pages, live_url: str, world: World, shop: Shop) -> None:  # noqa: F811
    pg = pages.open(width=768, height=1024)
    sign_in(pg, live_url, "cashier-a", PASSWORD)
    pg.goto(f"{live_url}/cashier")
    pg.fill("#member-q", shop.member.card_no)
    pg.keyboard.press("Enter")
    expect(pg.locator(".member-card .member-name")).to_contain_text("韩梅梅")
    pg.fill("#product-q", shop.cake.sku)
    pg.keyboard.press("Enter")
    expect(pg.locator("table.basket tbody tr")).to_have_count(1)
    overflow = pg.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # nothing sticks out sideways
    shot(pg, "cashier-tablet")
