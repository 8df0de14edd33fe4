"""The shell of the admin: assets shipped in the package, the menu by role, extensibility."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from patron.auth.enums import Role
from patron.web import nav
from tests.factories import World
from tests.web.helpers import web_login


def test_assets_come_from_the_package_and_are_cached_for_good(client: TestClient) -> None:
    html = client.get("/login").text
    urls = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|svg)[^"]*)"', html)
    assert {u.split("?")[0] for u in urls} == {"/static/app.css", "/static/app.js",
                                                "/static/htmx.min.js", "/static/favicon.svg"}
    assert "//" not in "".join(urls)  # nothing from a CDN
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, url
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    htmx = client.get("/static/htmx.min.js").text
    assert htmx.startswith("/*! htmx 2.") and "Zero-Clause BSD" in htmx.splitlines()[0]
    assert client.get("/static/htmx.LICENSE.txt").status_code == 200


def test_menu_shows_the_sections_of_the_role(client: TestClient, world: World) -> None:
    def menu() -> list[str]:
        sidebar = client.get("/").text.split('<nav class="nav">')[1].split("</nav>")[0]
        return re.findall(r'<a href="([^"]+)"', sidebar)

    web_login(client, "cashier-a")
    assert menu() == ["/", "/cashier", "/members", "/catalog"]
    managed = ["/", "/cashier", "/members", "/catalog", "/promotions", "/marketing", "/care",
               "/team", "/settings", "/staff", "/stores", "/api-keys"]
    web_login(client, "manager-a")
    assert menu() == managed
    web_login(client, "owner")
    assert menu() == [*managed, "/audit"]


def test_later_features_register_their_sections(client: TestClient, world: World) -> None:
    item = nav.NavItem("reports", "/reports", "Reports", "shield", Role.MANAGER)
    nav.register(item, after="members")
    try:
        nav.register(item)  # idempotent
        assert [i.key for i in nav.NAV].count("reports") == 1
        web_login(client, "manager-a")
        html = client.get("/").text
        assert html.index('href="/members"') < html.index('href="/reports"') \
            < html.index('href="/staff"')
        assert nav.active_key("/reports/rfm") == "reports"
    finally:
        nav.NAV.remove(item)
    assert nav.active_key("/members/new") == "members" and nav.active_key("/") == "dashboard"
