"""Feedback through the HTTP API: roles and store scoping, problem+json naming the field,
the Idempotency-Key on resolve, and the public survey link."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.feedback import service as feedback
from patron.feedback.enums import SurveyOccasion
from tests.factories import World, key_headers, login, make_member

COMPLAINT = {"channel": "in_store", "category": "staff",
             "description": "The cashier was rude to me"}


class Caller:
    """A client signed in as one user (cookie + CSRF), holding one POS key, or nobody."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def __call__(self, method: str, path: str, *, key: str | None = None,
                 **kw: Any) -> httpx.Response:
        headers = self.headers | ({"Idempotency-Key": key} if key else {})
        return self.client.request(method, "/api/v1" + path, headers=headers, **kw)


@pytest.fixture
def callers(app: FastAPI, world: World) -> Iterator[dict[str, Caller]]:
    users = ("owner", "manager-a", "cashier-a", "manager-b")
    clients = [TestClient(app) for _ in range(len(users) + 1)]
    try:
        out = {user: Caller(c, {"X-CSRF-Token": login(c, user)})
               for c, user in zip(clients, users, strict=False)}
        tills = clients[-1]  # tills and the public send no cookies
        out["pos"] = Caller(tills, key_headers(world.key_a))
        out["pos-b"] = Caller(tills, key_headers(world.key_b))
        out["public"] = Caller(tills, {})
        yield out
    finally:
        for c in clients:
            c.close()


def _ok(r: httpx.Response, code: int = 200) -> Any:
    assert r.status_code == code, r.text
    return r.json()


def _problem(r: httpx.Response, status: int, field: str | None = None,
             code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    if field is not None:
        assert [e["field"] for e in body["errors"]] == [field]
    if code is not None:
        assert body["code"] == code
    return body


def _member(pos: Caller) -> str:
    r = pos("POST", "/members", json={"name": "Han Meimei", "phone": "13912345678"})
    return str(_ok(r, 201)["id"])


def test_tills_and_cashiers_open_complaints_for_their_store(
        callers: dict[str, Caller], world: World) -> None:
    pos = callers["pos"]
    m = _member(pos)
    c = _ok(pos("POST", "/complaints", json=COMPLAINT | {"member_id": m,
                                                          "severity": "critical"}), 201)
    assert (c["store_id"], c["member_id"], c["status"], c["sla_state"]) == (
        str(world.store_a.id), m, "open", "ok")
    assert c["opened_by"] == "key:till A"
    assert [e["kind"] for e in c["events"]] == ["opened"]
    assert c["first_response_due_at"].startswith("2026-11-23T14:00")
    c2 = _ok(callers["cashier-a"]("POST", "/complaints", json=COMPLAINT), 201)
    assert c2["store_id"] == str(world.store_a.id) and c2["member_id"] is None
    _problem(callers["pos-b"]("POST", "/complaints",
                              json=COMPLAINT | {"store_id": str(world.store_a.id)}), 403)
    _problem(pos("POST", "/complaints", json=COMPLAINT | {"channel": "fax"}), 422, "channel")
    _problem(pos("POST", "/complaints", json=COMPLAINT | {"description": ""}), 422,
             "description")
    _problem(pos("POST", "/complaints", json=COMPLAINT | {"member_id": str(uuid.uuid4())}),
             404, "member_id")
    _problem(callers["public"]("POST", "/complaints", json=COMPLAINT), 401)
    listed = _ok(callers["cashier-a"]("GET", "/complaints"))
    assert {x["id"] for x in listed} == {c["id"], c2["id"]}


def test_managers_move_complaints_and_invalid_moves_are_409_naming_to(
        callers: dict[str, Caller]) -> None:
    manager, cashier = callers["manager-a"], callers["cashier-a"]
    c = _ok(cashier("POST", "/complaints", json=COMPLAINT), 201)
    path = f"/complaints/{c['id']}/transitions"
    _problem(cashier("POST", path, json={"to": "in_progress"}), 403)
    moved = _ok(manager("POST", path, json={"to": "in_progress", "note": "On it"}))
    assert moved["status"] == "in_progress" and moved["first_response_at"] is not None
    assert moved["events"][-1]["note"] == "On it"
    body = _problem(manager("POST", path, json={"to": "in_progress"}), 409, "to",
                    "invalid_transition")
    assert "cannot move to in_progress" in body["detail"]
    _problem(manager("POST", path, json={"to": "closed"}), 409, "to", "invalid_transition")
    _problem(manager("POST", path, json={"to": "resolved"}), 422, "to", "use_resolve")
    _problem(manager("POST", path, json={"to": "done"}), 422, "to")
    _problem(manager("POST", f"/complaints/{uuid.uuid4()}/transitions",
                     json={"to": "in_progress"}), 404)
    assert _ok(manager("GET", f"/complaints/{c['id']}"))["status"] == "in_progress"


def test_resolve_compensates_once_per_idempotency_key(callers: dict[str, Caller]) -> None:
    manager, pos = callers["manager-a"], callers["pos"]
    m = _member(pos)
    template = _ok(manager("POST", "/coupon-templates", json={
        "name": "Sorry", "kind": "fixed", "amount_minor": 1_000, "validity": "days",
        "valid_days": 30}), 201)
    c = _ok(pos("POST", "/complaints", json=COMPLAINT | {"member_id": m}), 201)
    path = f"/complaints/{c['id']}/resolve"
    body = {"resolution": "Apologised; coupon and points given",
            "compensation": {"coupon_template_id": template["id"], "points": 300},
            "follow_up_on": "2026-11-30"}
    _problem(manager("POST", path, json=body), 422, "Idempotency-Key")
    _problem(callers["cashier-a"]("POST", path, json=body, key="c1"), 403)
    _problem(manager("POST", path, json=body | {"compensation": {"points": 0}}, key="r0"),
             422, "compensation.points")
    first = manager("POST", path, json=body, key="r1")
    resolved = _ok(first)
    again = manager("POST", path, json=body, key="r1")
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert resolved["status"] == "resolved" and resolved["sla_state"] == "ok"
    assert resolved["compensation"]["points"] == 300
    assert resolved["follow_up_callback_id"] is not None
    (coupon,) = _ok(pos("GET", f"/members/{m}/coupons"))
    assert coupon["id"] == resolved["compensation"]["coupon_id"]
    assert coupon["source"] == "care" and coupon["source_ref"] == c["id"]
    points = _ok(pos("GET", f"/members/{m}/points"))
    assert points["available"] == 300 and len(points["entries"]) == 1
    _problem(manager("POST", path, json=body, key="r2"), 409, "status", "invalid_transition")
    follow_up = _ok(manager("GET", f"/callbacks/{resolved['follow_up_callback_id']}"))
    assert (follow_up["reason"], follow_up["complaint_id"]) == ("complaint_follow_up",
                                                                c["id"])


def test_another_stores_manager_gets_403_and_sees_nothing(
        callers: dict[str, Caller], world: World) -> None:
    manager, other = callers["manager-a"], callers["manager-b"]
    m = _member(callers["pos"])
    c = _ok(manager("POST", "/complaints", json=COMPLAINT | {"member_id": m}), 201)
    task = _ok(manager("POST", "/callbacks", json={"member_id": m}), 201)
    _problem(other("GET", f"/complaints/{c['id']}"), 403)
    _problem(other("POST", f"/complaints/{c['id']}/transitions", json={"to": "in_progress"}),
             403)
    _problem(other("GET", f"/callbacks/{task['id']}"), 403)
    _problem(other("POST", f"/callbacks/{task['id']}/complete",
                   json={"outcome": "reached"}), 403)
    _problem(other("GET", f"/complaints?store_id={world.store_a.id}"), 403)
    assert _ok(other("GET", "/complaints")) == []
    assert _ok(other("GET", "/callbacks")) == []
    assert len(_ok(callers["owner"]("GET", "/complaints"))) == 1


def test_callbacks_are_planned_by_managers_and_called_by_cashiers(
        callers: dict[str, Caller], world: World, clock: FixedClock) -> None:
    manager, cashier = callers["manager-a"], callers["cashier-a"]
    m = _member(callers["pos"])
    _problem(cashier("POST", "/callbacks", json={"member_id": m}), 403)
    _problem(manager("POST", "/callbacks", json={"member_id": m, "due_on": "2026-11-01"}),
             422, "due_on")
    _problem(manager("POST", "/callbacks", json={"member_id": m,
                                                  "assignee_id": str(world.manager_b.id)}),
             422, "assignee_id")
    task = _ok(manager("POST", "/callbacks", json={
        "member_id": m, "reason": "win_back", "assignee_id": str(world.cashier_a.id)}), 201)
    assert (task["store_id"], task["due_on"], task["overdue"]) == (
        str(world.store_a.id), "2026-11-23", False)
    same = _ok(manager("POST", "/callbacks", json={"member_id": m, "reason": "win_back"}), 201)
    assert same["id"] == task["id"]
    clock.advance(timedelta(hours=6))  # midnight in Shanghai (sessions last 12 h)
    overdue = _ok(cashier("GET", f"/callbacks?overdue=true&assignee_id={world.cashier_a.id}"))
    assert [t["id"] for t in overdue] == [task["id"]]
    path = f"/callbacks/{task['id']}"
    _problem(cashier("POST", path + "/calls", json={"outcome": "reached",
                                                     "reschedule_on": "2026-11-26"}),
             422, "reschedule_on")
    _problem(cashier("POST", path + "/calls", json={"outcome": "busy"}), 422, "outcome")
    later = _ok(cashier("POST", path + "/calls", json={"outcome": "no_answer",
                                                        "reschedule_on": "2026-11-26"}))
    assert (later["status"], later["due_on"], later["overdue"], later["attempts"]) == (
        "open", "2026-11-26", False, 1)
    assert _ok(cashier("GET", "/callbacks?overdue=true")) == []
    done = _ok(cashier("POST", path + "/complete", json={"outcome": "will_return",
                                                          "note": "Saturday"}))
    assert (done["status"], done["outcome"], done["completed_by"]) == (
        "done", "will_return", "cashier-a")
    assert [c["outcome"] for c in done["calls"]] == ["no_answer", "will_return"]
    _problem(cashier("POST", path + "/complete", json={"outcome": "reached"}), 409, "status",
             "task_closed")
    _problem(callers["pos"]("POST", path + "/calls", json={"outcome": "reached"}), 403)
    listed = _ok(manager("GET", "/callbacks?status=done"))
    assert [t["id"] for t in listed] == [task["id"]]
    other = _ok(manager("POST", "/callbacks", json={"member_id": m}), 201)
    cancelled = _ok(manager("POST", f"/callbacks/{other['id']}/cancel", json={"note": "dup"}))
    assert cancelled["status"] == "cancelled"


def test_the_public_survey_link_needs_no_sign_in_and_answers_once(
        callers: dict[str, Caller], db: Database, clock: FixedClock, world: World) -> None:
    with db.write() as s:
        member = make_member(s, clock, world.store_a)
        invitation = feedback.invite(s, clock=clock, member_id=member.id,
                                     occasion=SurveyOccasion.COMPLAINT, source_ref="c-1")
        assert invitation is not None
        token = invitation.token
    public = callers["public"]
    page = _ok(public("GET", f"/public/surveys/{token}"))
    assert (page["status"], page["store_name"], page["occasion"]) == ("open", "Store A",
                                                                      "complaint")
    assert [(q["field"], q["min"], q["max"]) for q in page["questions"]] == [
        ("csat", 1, 5), ("nps", 0, 10)]
    assert "member" not in str(page)
    _problem(public("POST", f"/public/surveys/{token}", json={"nps": 11}), 422, "nps")
    _problem(public("POST", f"/public/surveys/{token}", json={"comment": "hi"}), 422, "csat")
    answered = _ok(public("POST", f"/public/surveys/{token}",
                          json={"csat": 5, "nps": 10, "comment": "Great"}), 201)
    assert answered["status"] == "answered"
    _problem(public("POST", f"/public/surveys/{token}", json={"csat": 1}), 409, "token",
             "already_answered")
    assert _ok(public("GET", f"/public/surveys/{token}"))["status"] == "answered"
    _problem(public("GET", "/public/surveys/no-such-token"), 404, "token")
    results = _ok(callers["manager-a"]("GET", "/surveys/results"))
    assert results["overall"]["nps"] == 100 and results["overall"]["csat_percent"] == 100
    assert [s["store_id"] for s in results["by_store"]] == [str(world.store_a.id)]
    assert [m["month"] for m in results["by_month"]] == ["2026-11"]
    assert _ok(callers["manager-b"]("GET", "/surveys/results"))["overall"]["responses"] == 0
    _problem(callers["cashier-a"]("GET", "/surveys/results"), 403)
    _problem(public("GET", "/surveys/results"), 401)
