"""GET /api/v1/reports/team over the hand-built chain: figures, store scoping, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.core.clock import FixedClock
from patron.core.db import Database
from tests import factories
from tests.analytics.team_chain import EXPECTED, UPLIFT_A, Chain, build_chain

PERIOD = {"from": "2026-07-01", "to": "2026-08-31"}


@pytest.fixture
def chain(db: Database, clock: FixedClock) -> Chain:
    with db.write() as s:
        return build_chain(s, clock)


def get(client: TestClient, user: str, **params: Any) -> Any:
    factories.login(client, user)
    return client.get("/api/v1/reports/team", params={**PERIOD, **params})


def test_owner_gets_every_store_staff_and_months(client: TestClient, chain: Chain) -> None:
    response = get(client, "owner")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["period"] == {"first_on": "2026-07-01", "last_on": "2026-08-31"}
    assert (body["return_days"], body["lapse_days"]) == (90, 90)
    stores = {r["code"]: r for r in body["stores"]}
    assert list(stores) == ["A", "B", "C"]
    for code in ("A", "B", "C"):
        for name, value in EXPECTED[code].items():
            assert stores[code][name] == pytest.approx(value), (code, name)
    for name, value in EXPECTED["total"].items():
        assert body["total"][name] == pytest.approx(value), name
    assert stores["A"]["campaign"]["conversion_uplift"] == pytest.approx(UPLIFT_A)
    assert stores["A"]["surveys"]["nps"] == 0.0
    assert stores["A"]["callback_outcomes"]["wrong_number"] == 1
    assert [m["month"] for m in body["trend"]] == ["2026-07", "2026-08"]
    assert [m["enrolled"] for m in body["trend"]] == [6, 5]
    staff = {r["name"]: r for r in body["staff"]}
    assert (staff["Amy Cashier"]["enrolled"], staff["Amy Cashier"]["came_back"]) == (4, 2)


def test_a_manager_gets_their_store_and_is_refused_another(client: TestClient,
                                                           chain: Chain) -> None:
    mine = get(client, "manager-a")
    assert mine.status_code == 200
    assert [r["code"] for r in mine.json()["stores"]] == ["A"]
    other = get(client, "manager-a", store_id=str(chain.b.id))
    assert other.status_code == 403
    assert other.headers["content-type"].startswith("application/problem+json")


def test_owner_narrows_to_several_stores(client: TestClient, chain: Chain) -> None:
    response = get(client, "owner", store_id=[str(chain.a.id), str(chain.c.id)])
    assert response.status_code == 200
    assert [r["code"] for r in response.json()["stores"]] == ["A", "C"]
    assert response.json()["total"]["enrolled"] == 9


def test_cashiers_and_pos_keys_are_refused(client: TestClient, chain: Chain,
                                           db: Database, clock: FixedClock) -> None:
    assert get(client, "cashier-a").status_code == 403
    client.cookies.clear()
    with db.write() as s:
        from patron.auth import service as auth

        _, key = auth.create_api_key(s, clock=clock, actor=auth.principal_for_user(chain.owner),
                                     store_id=chain.a.id, name="till")
    response = client.get("/api/v1/reports/team", params=PERIOD,
                          headers=factories.key_headers(key))
    assert response.status_code == 403


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-09-01", "to": "2026-08-01"}, "from"),
    ({"from": "2026-11-01", "to": "2026-12-31"}, "to"),
    ({"from": "2020-01-01", "to": "2026-08-31"}, "from"),
])
def test_bad_periods_name_the_field(client: TestClient, chain: Chain,
                                    params: dict[str, str], field: str) -> None:
    response = get(client, "owner", **params)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_the_default_period_is_the_last_twelve_months(client: TestClient,
                                                      chain: Chain) -> None:
    factories.login(client, "owner")
    body = client.get("/api/v1/reports/team").json()
    # today is 2026-11-23 at the brand: December 2025 … yesterday
    assert body["period"] == {"first_on": "2025-12-01", "last_on": "2026-11-22"}
    assert len(body["trend"]) == 12
    assert body["total"]["enrolled"] == 18  # all 19 members but the merged one
