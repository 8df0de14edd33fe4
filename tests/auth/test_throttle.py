"""Sign-in lockout: five failures lock an account for 15 minutes (right password or not),
thirty failures from one address block that address; both answer 429 with Retry-After."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from patron.auth import throttle
from patron.core.clock import FixedClock
from tests.factories import PASSWORD, World
from tests.web.helpers import csrf_of


def _login(client: TestClient, username: str, password: str) -> int:
    return client.post("/api/v1/session", json={"username": username,
                                                "password": password}).status_code


def test_five_failures_lock_the_account_then_it_unlocks(client: TestClient, clock: FixedClock,
                                                        world: World) -> None:
    for _ in range(throttle.ACCOUNT_FAILURES):
        assert _login(client, "manager-a", "wrong") == 401
    locked = client.post("/api/v1/session", json={"username": "manager-a",
                                                  "password": PASSWORD})
    assert locked.status_code == 429  # even the right password: the lock confirms nothing
    assert locked.json()["errors"][0]["field"] == "username"
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert _login(client, "cashier-a", PASSWORD) == 200  # other accounts are unaffected
    clock.advance(throttle.WINDOW + timedelta(seconds=1))
    assert _login(client, "manager-a", PASSWORD) == 200


def test_a_success_resets_the_count(client: TestClient, world: World) -> None:
    for _ in range(throttle.ACCOUNT_FAILURES - 1):
        assert _login(client, "owner", "wrong") == 401
    assert _login(client, "owner", PASSWORD) == 200
    for _ in range(throttle.ACCOUNT_FAILURES - 1):
        assert _login(client, "owner", "wrong") == 401
    assert _login(client, "owner", PASSWORD) == 200


def test_one_address_guessing_many_accounts_is_blocked(client: TestClient,
                                                       world: World) -> None:
    for n in range(throttle.ADDRESS_FAILURES):
        assert _login(client, f"nobody-{n}", "guess") == 401
    assert _login(client, "cashier-a", PASSWORD) == 429


def test_web_login_is_throttled_too(client: TestClient, world: World) -> None:
    for _ in range(throttle.ACCOUNT_FAILURES):
        _login(client, "manager-b", "wrong")
    page = client.get("/login")
    r = client.post("/login", data={"username": "manager-b", "password": PASSWORD,
                                     "csrf_token": csrf_of(page.text), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 429 and "15" in r.text
