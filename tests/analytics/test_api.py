"""The analytics API: a member's scores for anyone who may look the member up, the
aggregates for owners and managers, clear 404s before the first refresh, CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date

import pytest
from fastapi.testclient import TestClient

from patron.analytics import service
from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.analytics.history import History, at
from tests.factories import World, key_headers, login

DAY = date(2026, 11, 20)


def _members_with_history(db: Database, world: World) -> list[uuid.UUID]:
    """Members of store A with one to eight purchases; the last one never bought."""
    with db.engine.begin() as conn:
        h = History(conn)
        ids = []
        for i in range(8):
            member = h.member(world.store_a.id, at("2026-01-05"))
            for k in range(i + 1):
                h.sale(member, world.store_a.id, at(f"2026-{k + 2:02d}-1{i}"),
                       total=1000 + 500 * i)
            ids.append(member)
        ids.append(h.member(world.store_a.id, at("2026-11-01")))
    return ids


@pytest.fixture
def scored(db: Database, world: World, clock: FixedClock) -> list[uuid.UUID]:
    ids = _members_with_history(db, world)
    service.refresh(db, clock, timezone="Asia/Shanghai", as_of=DAY)
    return ids


@pytest.mark.parametrize("path", ["/api/v1/analytics/segments", "/api/v1/analytics/runs/latest",
                                  "/api/v1/members/7f0c2b1e-2d4e-4b8a-9c1d-3e5f6a7b8c9d/scores"])
def test_anonymous_is_401(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401


def test_before_any_refresh_the_404s_say_what_to_do(client: TestClient, world: World,
                                                    db: Database) -> None:
    member = _members_with_history(db, world)[0]
    login(client, "owner")
    r = client.get(f"/api/v1/members/{member}/scores")
    assert r.status_code == 404 and r.json()["code"] == "no_snapshot"
    assert "patron analytics refresh" in r.json()["detail"]
    r = client.get("/api/v1/analytics/segments")
    assert r.status_code == 404 and r.json()["code"] == "no_snapshot"
    assert client.get("/api/v1/analytics/runs/latest").json()["code"] == "no_run"


def test_a_members_scores_for_staff_of_any_store_cashiers_and_tills(
        client: TestClient, world: World, scored: list[uuid.UUID]) -> None:
    member = scored[7]
    r = client.get(f"/api/v1/members/{member}/scores", headers=key_headers(world.key_b))
    assert r.status_code == 200, r.text  # the member shops at A; B's till may still ask
    body = r.json()
    assert body["as_of"] == DAY.isoformat() and body["member_id"] == str(member)
    assert body["purchases"] == 8 and body["frequency"] == 7
    assert body["rfm_segment"] in {"champions", "loyal", "potential_loyalist"}
    for user in ("cashier-a", "manager-b"):
        login(client, user)
        assert client.get(f"/api/v1/members/{member}/scores").json() == body


def test_unknown_and_unscored_members_are_404(client: TestClient, world: World,
                                              scored: list[uuid.UUID], db: Database) -> None:
    login(client, "manager-a")
    r = client.get(f"/api/v1/members/{uuid.uuid4()}/scores")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    with db.engine.begin() as conn:  # joined after the snapshot's day
        late = History(conn, _n=10_000).member(world.store_a.id, at("2026-11-22"))
    r = client.get(f"/api/v1/members/{late}/scores")
    assert r.status_code == 404 and r.json()["code"] == "not_scored"
    assert str(DAY) in r.json()["detail"]


def test_segments_are_for_owners_and_managers(client: TestClient, world: World,
                                              scored: list[uuid.UUID]) -> None:
    assert client.get("/api/v1/analytics/segments",
                      headers=key_headers(world.key_a)).status_code == 403
    login(client, "cashier-a")
    assert client.get("/api/v1/analytics/segments").status_code == 403
    assert client.get("/api/v1/analytics/runs/latest").status_code == 403
    login(client, "manager-b")
    r = client.get("/api/v1/analytics/segments")
    assert r.status_code == 200
    body = r.json()
    assert body["as_of"] == DAY.isoformat() and body["members"] == 9
    assert sum(g["members"] for g in body["segments"]) == 9
    assert sum(g["members"] for g in body["stages"]) == 9
    assert any(g["name"] is None and g["members"] == 1 for g in body["segments"])
    assert sum(g["revenue_minor"] for g in body["segments"]) == sum(
        (k + 1) * (1000 + 500 * k) for k in range(8))


def test_segments_as_csv(client: TestClient, world: World, scored: list[uuid.UUID]) -> None:
    login(client, "owner")
    r = client.get("/api/v1/analytics/segments", params={"format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert f"segments-{DAY}.csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["group"] for row in rows} == {"segment", "stage"}
    assert sum(int(row["members"]) for row in rows if row["group"] == "stage") == 9
    json_body = client.get("/api/v1/analytics/segments").json()
    assert len(rows) == len(json_body["segments"]) + len(json_body["stages"])
    assert client.get("/api/v1/analytics/segments",
                      params={"format": "xml"}).status_code == 422


def test_latest_run(client: TestClient, world: World, scored: list[uuid.UUID]) -> None:
    login(client, "manager-a")
    body = client.get("/api/v1/analytics/runs/latest").json()
    assert body["status"] == "succeeded" and body["as_of"] == DAY.isoformat()
    assert set(body["stages"]) == set(service.STAGES) and body["members"] == 9
    assert body["params"]["unit"] == "days"
