"""Signing in and out of the web admin, redirects for anonymous visitors, login CSRF."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.testclient import TestClient

from patron.api.deps import SESSION_COOKIE
from tests.factories import PASSWORD, World
from tests.web.helpers import csrf_of, web_login


def test_anonymous_visits_redirect_to_login_with_next(client: TestClient) -> None:
    for path in ("/", "/members", "/members/new", "/staff", "/api-keys", "/stores", "/audit",
                 "/members/import", "/members/export.csv", "/members?q=1234&page=2"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        expected = "/login" if path == "/" else f"/login?next={quote(path, safe='/')}"
        assert r.headers["location"] == expected


def test_anonymous_htmx_request_is_told_to_redirect(client: TestClient) -> None:
    r = client.get("/members?q=1234", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 204
    assert r.headers["HX-Redirect"].startswith("/login")


def test_login_sets_httponly_session_cookie_and_follows_next(
    client: TestClient, world: World
) -> None:
    page = client.get("/login?next=/staff")
    assert 'name="next" value="/staff"' in page.text
    r = client.post("/login", data={"username": "manager-a", "password": PASSWORD,
                                    "csrf_token": csrf_of(page.text), "next": "/staff"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/staff"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert client.get("/staff").status_code == 200


def test_session_cookie_is_secure_when_settings_say_so(world: World, app: FastAPI) -> None:
    ctx = app.state.ctx
    app.state.ctx = dataclasses.replace(
        ctx, settings=ctx.settings.model_copy(update={"cookie_secure": True}))
    client = TestClient(app, base_url="https://testserver")
    page = client.get("/login")
    r = client.post("/login", data={"username": "owner", "password": PASSWORD,
                                    "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "Secure" in cookie


def test_wrong_password_shows_the_form_again_without_the_password(
    client: TestClient, world: World
) -> None:
    page = client.get("/login")
    r = client.post("/login", data={"username": "owner", "password": "not-the-password",
                                    "csrf_token": csrf_of(page.text)})
    assert r.status_code == 422
    assert "Wrong username or password." in r.text
    assert 'value="owner"' in r.text and "not-the-password" not in r.text
    assert SESSION_COOKIE not in client.cookies


def test_login_without_the_pre_session_token_is_refused(client: TestClient, world: World) -> None:
    client.get("/login")  # has the nonce cookie, but the form token is missing or forged
    for token in (None, "forged"):
        data = {"username": "owner", "password": PASSWORD}
        if token:
            data["csrf_token"] = token
        r = client.post("/login", data=data, follow_redirects=False)
        assert r.status_code == 403
        assert SESSION_COOKIE not in client.cookies


def test_login_token_without_its_nonce_cookie_is_refused(client: TestClient, world: World) -> None:
    token = csrf_of(client.get("/login").text)
    client.cookies.clear()  # another site can't send the nonce cookie along
    r = client.post("/login", data={"username": "owner", "password": PASSWORD,
                                    "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403


def test_next_must_be_a_local_path(client: TestClient, world: World) -> None:
    page = client.get("/login")
    r = client.post("/login", data={"username": "owner", "password": PASSWORD,
                                    "csrf_token": csrf_of(page.text),
                                    "next": "//evil.example/steal"}, follow_redirects=False)
    assert r.headers["location"] == "/"


def test_signed_in_visit_to_login_goes_home(client: TestClient, world: World) -> None:
    web_login(client, "owner")
    r = client.get("/login", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_logout_ends_the_session_row_not_just_the_cookie(client: TestClient, world: World) -> None:
    csrf = web_login(client, "cashier-a")
    token = client.cookies[SESSION_COOKIE]
    r = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/login").text.count("You have signed out.") == 1
    client.cookies.set(SESSION_COOKIE, token)  # replaying the old cookie does not work
    assert client.get("/", follow_redirects=False).status_code == 303


def test_logout_needs_the_csrf_token(client: TestClient, world: World) -> None:
    web_login(client, "owner")
    r = client.post("/logout", data={}, follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200


def test_deactivated_user_is_signed_out_at_once(client: TestClient, world: World) -> None:
    csrf = web_login(client, "owner")
    other = TestClient(client.app)
    web_login(other, "cashier-a")
    r = client.post(f"/staff/{world.cashier_a.id}/active", data={"csrf_token": csrf,
                                                                 "active": "0"},
                    follow_redirects=False)
    assert r.status_code == 303
    assert other.get("/", follow_redirects=False).status_code == 303


def test_pages_send_security_headers(client: TestClient) -> None:
    r = client.get("/login")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"


def test_password_is_taken_as_typed(client: TestClient, world: World) -> None:
    csrf = web_login(client, "owner")
    spaced = "  spaces around  "
    r = client.post("/staff", data={"csrf_token": csrf, "username": "spacey",
                                    "display_name": "Spacey", "password": spaced,
                                    "role": "owner"}, follow_redirects=False)
    assert r.status_code == 303
    web_login(client, "spacey", spaced)
