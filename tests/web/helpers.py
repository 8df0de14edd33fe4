"""Helpers for the web admin tests: sign in through the login form, read CSRF tokens."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.factories import PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = _CSRF.search(html)
    assert match, "page has no form with a csrf_token"
    return match.group(1)


def web_login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in with the login form (as a browser would); returns the session's CSRF token."""
    client.cookies.clear()
    page = client.get("/login")
    assert page.status_code == 200
    r = client.post("/login", data={"username": username, "password": password,
                                    "csrf_token": csrf_of(page.text), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/").text)
