"""The marketing pages: the segment builder's live count is the service's count, bad rules
are shown beside their row and save nothing, a campaign goes from draft (its exact arms)
to launch to results whose numbers are the service's; cashiers are refused, a manager sees
their own stores only, and the pages read in English and Chinese."""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.auth import service as auth
from patron.campaigns import service as campaigns
from patron.campaigns.models import Campaign, CampaignMember, Segment
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members.models import Member
from patron.web import i18n
from tests.campaigns.test_service import add_members, buy
from tests.factories import World
from tests.web.helpers import web_login

TZ = "Asia/Shanghai"


def builder_form(csrf: str, rows: list[dict[str, Any]], *, top_op: str = "all",
                 groups: list[tuple[str, list[dict[str, Any]]]] = (),  # type: ignore[assignment]
                 name: str = "") -> dict[str, list[str]]:
    """The builder's form as the page posts it: ``rows`` at the top level, ``groups`` of
    (op, rows) nested; each row is {"field", "op", "value" (str or list), "days", ...}."""
    data: list[tuple[str, str]] = [("csrf_token", csrf), ("name", name), ("top_op", top_op)]

    def add_row(row: dict[str, Any], group: str) -> str:
        key = f"r{uuid.uuid4().hex[:8]}"
        data.append(("row", key))
        data.append((f"{key}.group", group))
        for part, value in row.items():
            for item in (value if isinstance(value, list) else [value]):
                data.append((f"{key}.{part}", str(item)))
        return key

    keys = [add_row(row, "") for row in rows]
    for op, group_rows in groups:
        gkey = f"g{uuid.uuid4().hex[:8]}"
        data.append(("group", gkey))
        data.append((f"{gkey}.op", op))
        keys.extend(add_row(row, gkey) for row in group_rows)
    data.append(("keys", ",".join(keys)))  # ignored by the page; read back by the tests
    return as_form(data)


def as_form(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Form fields in order, repeated names as lists (as a browser posts them)."""
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def keys_of(form: dict[str, list[str]]) -> list[str]:
    return form["keys"][0].split(",")


def count_of(html: str) -> int:
    match = re.search(r'data-count="(\d+)"', html)
    assert match, html
    return int(match.group(1))


def row_error(html: str, key: str) -> str:
    match = re.search(rf'id="err-{key}"[^>]*>([^<]*)<', html)
    assert match, f"no error slot for {key}"
    return match.group(1).strip()


@pytest.fixture
def shop(db: Database, clock: FixedClock, world: World) -> dict[str, list[uuid.UUID]]:
    """Members in both stores; some bought recently, for varying amounts."""
    with db.write() as s:
        a = add_members(s, clock, world.store_a.id, 40)
        b = add_members(s, clock, world.store_b.id, 15)
        for i, member_id in enumerate(a + b):
            if i % 3 == 0:
                buy(s, member_id, world.store_a.id, clock.now() - timedelta(days=5),
                    2_000 + 1_000 * (i % 7))
            if i % 4 == 0:
                buy(s, member_id, world.store_a.id, clock.now() - timedelta(days=70), 9_000)
    return {"a": a, "b": b}


def service_count(db: Database, clock: FixedClock, world: World, username: str,
                  rules: dict[str, Any]) -> int:
    with db.read() as s:
        user = world.owner if username == "owner" else (
            world.manager_a if username == "manager-a" else world.manager_b)
        return campaigns.count_members(s, clock=clock, actor=auth.principal_for_user(user),
                                       rules=rules, tz=TZ).count


# ---------------------------------------------------------------- the builder


def test_live_count_is_the_services_count_for_the_same_rules(
        client: TestClient, db: Database, clock: FixedClock, world: World,
        shop: dict[str, list[uuid.UUID]]) -> None:
    csrf = web_login(client, "owner")
    store_a = str(world.store_a.id)
    form = builder_form(csrf, [{"field": "home_store", "value": [store_a]},
                               {"field": "spend", "op": ">=", "value": "40.00", "days": "30"}])
    r = client.post("/marketing/segments/count", data=form)
    assert r.status_code == 200, r.text
    rules = {"op": "all", "children": [
        {"field": "home_store", "value": [store_a]},
        {"field": "spend", "op": ">=", "value": 4_000, "days": 30}]}
    expected = service_count(db, clock, world, "owner", rules)
    assert 0 < expected < len(shop["a"])
    assert count_of(r.text) == expected
    # the sample: at most five, phones masked even for the owner
    phones = re.findall(r'<span class="mono muted">([^<]*)</span>', r.text)
    assert 0 < len(phones) <= 5 and all("****" in p for p in phones)
    # an OR group nested under the top level
    form = builder_form(csrf, [{"field": "home_store", "value": [store_a]}], groups=[
        ("any", [{"field": "last_purchase", "op": "within_days", "value": "10"},
                 {"field": "purchase_count", "op": ">=", "value": "1", "days": "90",
                  "negate": "on"}])])
    rules = {"op": "all", "children": [
        {"field": "home_store", "value": [store_a]},
        {"op": "any", "children": [
            {"field": "last_purchase", "op": "within_days", "value": 10},
            {"field": "purchase_count", "op": ">=", "value": 1, "days": 90, "negate": True}]}]}
    assert count_of(client.post("/marketing/segments/count", data=form).text) == \
        service_count(db, clock, world, "owner", rules)
    # a row without a field yet is left out of a draft's count
    form = builder_form(csrf, [{"field": "home_store", "value": [store_a]}, {"field": ""}])
    assert count_of(client.post("/marketing/segments/count", data=form).text) == len(shop["a"])


def test_a_bad_rule_is_shown_beside_its_row_and_nothing_is_saved(
        client: TestClient, db: Database, world: World) -> None:
    csrf = web_login(client, "owner")
    form = builder_form(csrf, [{"field": "tier", "value": []},
                               {"field": "p_alive", "op": "<", "value": "7"},
                               {"field": "wallet_balance", "op": ">", "value": "12.345"},
                               {"field": "sms_consent", "value": "true"}], name="Broken")
    good, empty, too_big, money = keys_of(form)[3], *keys_of(form)[:3]
    r = client.post("/marketing/segments/new", data=form)
    assert r.status_code == 422
    assert row_error(r.text, empty) == "Choose at least one"
    assert row_error(r.text, too_big) == "This number is too large"
    assert row_error(r.text, money) == "Type an amount such as 42.50"
    assert row_error(r.text, good) == ""
    assert 'value="Broken"' in r.text  # the name as typed
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Segment)) == 0
    # the live count says the same, beside the same rows (swapped in out of band)
    r = client.post("/marketing/segments/count", data=form)
    assert "Fix the marked conditions" in r.text
    assert row_error(r.text, too_big) == "This number is too large"
    # and a segment without a name or conditions is refused too
    r = client.post("/marketing/segments/new", data=builder_form(csrf, []))
    assert r.status_code == 422 and "Add at least one condition" in r.text
    assert 'id="e-name">Name is required' in r.text


def test_segment_is_saved_edited_and_deleted(client: TestClient, db: Database,
                                             world: World) -> None:
    csrf = web_login(client, "owner")
    store_a = str(world.store_a.id)
    form = builder_form(csrf, [{"field": "home_store", "value": [store_a]},
                               {"field": "spend", "op": ">=", "value": "120.50", "days": "90"},
                               {"field": "joined", "op": "before", "value": "2026-01-01"},
                               {"field": "rfm_segment", "value": ["at_risk", "cant_lose"]}],
                        groups=[("any", [{"field": "birthday_month", "value": "current"},
                                         {"field": "gender", "value": ["female", "unknown"]}])],
                        name="Big spenders")
    r = client.post("/marketing/segments/new", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read() as s:
        segment = s.scalars(select(Segment)).one()
        assert segment.rules == {"op": "all", "children": [
            {"field": "home_store", "value": [store_a]},
            {"field": "spend", "op": ">=", "value": 12_050, "days": 90},
            {"field": "joined", "op": "before", "value": "2026-01-01"},
            {"field": "rfm_segment", "value": ["at_risk", "cant_lose"]},
            {"op": "any", "children": [{"field": "birthday_month", "value": "current"},
                                       {"field": "gender", "value": ["female", "unknown"]}]}]}
        segment_id = segment.id
    page = client.get(r.headers["location"]).text
    assert 'value="120.50"' in page and 'value="2026-01-01"' in page
    assert re.search(r'<option value="at_risk" selected>', page)
    listed = client.get("/marketing/segments").text
    assert "Big spenders" in listed and f'data-segment-count="{segment_id}"' in listed
    # deeper nesting the builder cannot edit is kept as it is, read-only
    deep = {"op": "all", "children": [
        {"field": "sms_consent", "value": True},
        {"op": "any", "negate": True, "children": [
            {"field": "tags", "op": "all", "value": ["vip"]},
            {"op": "all", "children": [{"field": "points_balance", "op": ">", "value": 100}]}]}]}
    with db.write() as s:
        stored = s.get(Segment, segment_id)
        assert stored is not None
        stored.rules = deep
    page = client.get(f"/marketing/segments/{segment_id}").text
    assert "Read-only" in page
    raw = re.search(r'name="(r\w+)\.raw" value="([^"]*)"', page)
    assert raw is not None
    posted = [("csrf_token", csrf), ("name", "Renamed"), ("top_op", "all"),
              ("row", "r1"), ("r1.field", "sms_consent"), ("r1.value", "true"),
              ("row", raw.group(1)),
              (f"{raw.group(1)}.raw", html.unescape(raw.group(2)))]
    r = client.post(f"/marketing/segments/{segment_id}", data=as_form(posted),
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read() as s:
        stored = s.get(Segment, segment_id)
        assert stored is not None and stored.name == "Renamed" and stored.rules == deep
    r = client.post(f"/marketing/segments/{segment_id}/delete", data={"csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303
    assert "Renamed" not in client.get("/marketing/segments").text
    with db.read() as s:
        stored = s.get(Segment, segment_id)
        assert stored is not None and stored.archived_at is not None


def test_changing_a_field_redraws_its_row_with_fitting_inputs(client: TestClient,
                                                               world: World) -> None:
    csrf = web_login(client, "owner")
    r = client.post("/marketing/segments/row", data={
        "csrf_token": csrf, "row_key": "rabc", "rabc.field": "spend", "rabc.op": "any"})
    assert r.status_code == 200 and r.headers["HX-Trigger"] == "rules-changed"
    assert 'name="rabc.value" type="text" inputmode="decimal"' in r.text  # money, in yuan
    assert 'name="rabc.days"' in r.text and '<option value="&gt;=">' in r.text
    r = client.post("/marketing/segments/row", data={
        "csrf_token": csrf, "row_key": "rabc", "rabc.field": "joined",
        "rabc.op": "before"})
    assert 'type="date"' in r.text
    r = client.post("/marketing/segments/row", data={
        "csrf_token": csrf, "row_key": "rabc", "rabc.field": "joined",
        "rabc.op": "within_days"})
    assert 'type="number"' in r.text and 'type="date"' not in r.text
    r = client.post("/marketing/segments/row", data={
        "csrf_token": csrf, "row_key": "rabc", "rabc.field": "home_store"})
    assert "multiple" in r.text and world.store_a.name in r.text


# ---------------------------------------------------------------- campaigns


def _segment(client: TestClient, csrf: str, db: Database, rows: list[dict[str, Any]],
             name: str = "Store A") -> uuid.UUID:
    r = client.post("/marketing/segments/new", data=builder_form(csrf, rows, name=name),
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read() as s:
        found = s.scalar(select(Segment.id).where(Segment.name == name))
        assert found is not None
        return found


def _stat(html: str, name: str) -> int:
    match = re.search(rf'id="preview-{name}">([\d,]+)<', html)
    assert match, name
    return int(match.group(1).replace(",", ""))


def _cell(html: str, arm: str, cell: str) -> str:
    row = re.search(rf'<tr data-arm="{arm}">(.*?)</tr>', html, re.S)
    assert row, arm
    match = re.search(rf'data-cell="{cell}">([^<]*)<', row.group(1))
    assert match, cell
    return match.group(1).strip()


def test_campaign_from_draft_to_launch_to_results_matches_the_service(
        client: TestClient, db: Database, clock: FixedClock, world: World,
        shop: dict[str, list[uuid.UUID]]) -> None:
    csrf = web_login(client, "owner")
    with db.write() as s:  # three members of A cannot be messaged by SMS
        for member_id in shop["a"][:3]:
            member = s.get(Member, member_id)
            assert member is not None
            member.sms_consent = False
    segment_id = _segment(client, csrf, db, [{"field": "home_store",
                                              "value": [str(world.store_a.id)]}])
    bad = client.post("/marketing/campaigns/new", data={
        "csrf_token": csrf, "name": "Autumn", "source": f"segment:{segment_id}",
        "channel": "sms", "en_body": "Hi {{ member.nmae }}", "holdout_pct": "80",
        "attribution_days": "14", "schedule": "now"})
    assert bad.status_code == 422
    assert 'id="e-holdout_pct"' in bad.text
    r = client.post("/marketing/campaigns/new", data={
        "csrf_token": csrf, "name": "Autumn", "source": f"segment:{segment_id}",
        "channel": "sms", "en_body": "Autumn teas at {{ store.name }}",
        "zh_body": "{{ store.name }}秋茶上新", "holdout_pct": "30", "attribution_days": "14",
        "schedule": "now"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    url = r.headers["location"]
    campaign_id = uuid.UUID(url.rsplit("/", 1)[1])
    draft = client.get(url).text
    target, control = _stat(draft, "treatment"), _stat(draft, "control")
    assert _stat(draft, "segment") == len(shop["a"])
    assert target + control == len(shop["a"]) - 3 and control > 0
    assert "No consent for the channel: 3" in draft
    r = client.post(f"{url}/launch", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    with db.read() as s:
        counts = campaigns.arm_counts(s, campaign_ids=[campaign_id])[campaign_id]
    assert (counts["treatment"], counts["control"], counts["excluded"]) == (target, control, 3)
    # purchases after launch: treated members buy more
    with db.write() as s:
        assigned = {m.member_id: m.arm for m in s.scalars(select(CampaignMember)
                    .where(CampaignMember.campaign_id == campaign_id))}
        for i, (member_id, arm) in enumerate(sorted(assigned.items())):
            if arm == "treatment" and i % 2 == 0:
                buy(s, member_id, world.store_a.id, clock.now() + timedelta(days=1 + i % 5),
                    3_000 + 100 * i)
            if arm == "control" and i % 5 == 0:
                buy(s, member_id, world.store_a.id, clock.now() + timedelta(days=2), 2_500)
    clock.advance(timedelta(days=15))
    web_login(client, "owner")  # the session has expired meanwhile
    page = client.get(url)
    assert page.status_code == 200
    with db.read() as s:
        owner = auth.principal_for_user(world.owner)
        report = campaigns.results(s, clock=clock, actor=owner, campaign_id=campaign_id)
        series = campaigns.conversion_series(s, clock=clock, actor=owner,
                                             campaign_id=campaign_id)
    html = page.text
    for arm, read in (("treatment", report.treatment), ("control", report.control)):
        assert _cell(html, arm, "members") == str(read.members)
        assert _cell(html, arm, "converted") == str(read.converted)
        assert _cell(html, arm, "conversion_rate") == f"{read.conversion_rate * 100:.2f} %"
    assert report.uplift.conversion is not None
    conv = report.uplift.conversion
    assert (f"{conv.estimate * 100:+.2f} pt (from {conv.low * 100:+.2f} pt to "
            f"{conv.high * 100:+.2f} pt)") in html
    assert report.economics.incremental_revenue_minor is not None
    inc = report.economics.incremental_revenue_minor
    assert f"{inc.estimate / 100:+.2f} CNY" in html
    assert f'data-verdict="{report.verdict.code}"' in html
    assert f'data-verdict="{report.conversion_verdict.code}"' in html
    # the charts' data: the interval as whiskers, and conversion lines ending at the rates
    uplift = json.loads(re.search(r'id="uplift-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    box = uplift["series"][0]["data"][0]
    estimate = round(conv.estimate * 100, 2)
    assert box == [round(conv.low * 100, 2), estimate, estimate, estimate,
                   round(conv.high * 100, 2)]
    lines = json.loads(re.search(r'id="conversion-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert len(lines["xAxis"]["data"]) == 14 == len(series.days)
    assert lines["series"][0]["data"][-1] == round(report.treatment.conversion_rate * 100, 2)
    assert lines["series"][1]["data"][-1] == round(report.control.conversion_rate * 100, 2)
    listed = client.get("/marketing/campaigns").text
    assert "Autumn" in listed and "Sent" in listed


def test_a_play_makes_a_draft_with_its_own_segment(client: TestClient, db: Database,
                                                   world: World) -> None:
    csrf = web_login(client, "owner")
    r = client.post("/marketing/campaigns/new", data={
        "csrf_token": csrf, "name": "", "source": "play:birthday_month", "channel": "sms",
        "holdout_pct": "10", "attribution_days": "14", "schedule": "now"},
        follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read() as s:
        campaign = s.scalars(select(Campaign)).one()
        assert campaign.status == "draft" and campaign.name == "Birthday month"
    assert "Who it reaches if you launch now" in client.get(r.headers["location"]).text


# ---------------------------------------------------------------- who may


def test_cashiers_are_refused(client: TestClient, world: World) -> None:
    csrf = web_login(client, "cashier-a")
    assert 'href="/marketing"' not in client.get("/").text
    for path in ("/marketing", "/marketing/segments", "/marketing/segments/new",
                 "/marketing/campaigns", "/marketing/campaigns/new"):
        assert client.get(path).status_code == 403, path
    form = builder_form(csrf, [{"field": "sms_consent", "value": "true"}])
    assert client.post("/marketing/segments/count", data=form).status_code == 403
    assert client.post("/marketing/segments/new", data=form | {"name": ["x"]}).status_code == 403


def test_a_manager_sees_and_counts_their_own_stores_only(
        client: TestClient, db: Database, clock: FixedClock, world: World,
        shop: dict[str, list[uuid.UUID]]) -> None:
    csrf = web_login(client, "owner")
    b_only = _segment(client, csrf, db, [{"field": "home_store",
                                          "value": [str(world.store_b.id)]}], name="B only")
    csrf = web_login(client, "manager-a")
    assert 'href="/marketing"' in client.get("/").text
    assert "B only" not in client.get("/marketing/segments").text
    assert client.get(f"/marketing/segments/{b_only}").status_code == 404
    new = client.get("/marketing/segments/new").text  # starts limited to their store
    assert re.search(rf'<option value="{world.store_a.id}" selected>', new)
    assert world.store_b.name not in new
    # a draft that says nothing about stores counts only their stores' members
    form = builder_form(csrf, [{"field": "sms_consent", "value": "true"}])
    r = client.post("/marketing/segments/count", data=form)
    assert count_of(r.text) == len(shop["a"]) == service_count(
        db, clock, world, "manager-a", {"field": "sms_consent", "value": True})
    assert "Only members of your stores are counted." in r.text
    # and saving it is refused, with nothing saved
    r = client.post("/marketing/segments/new", data=builder_form(
        csrf, [{"field": "sms_consent", "value": "true"}], name="Everyone"))
    assert r.status_code == 422 and "keep a Home store condition" in r.text
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Segment)) == 1


def test_marketing_pages_in_chinese(client: TestClient, db: Database, clock: FixedClock,
                                    world: World, shop: dict[str, list[uuid.UUID]]) -> None:
    csrf = web_login(client, "owner")
    segment_id = _segment(client, csrf, db, [{"field": "home_store",
                                              "value": [str(world.store_a.id)]}])
    r = client.post("/marketing/campaigns/new", data={
        "csrf_token": csrf, "name": "秋季", "source": f"segment:{segment_id}",
        "channel": "sms", "zh_body": "{{ store.name }}秋茶上新", "holdout_pct": "20",
        "attribution_days": "7", "schedule": "now"}, follow_redirects=False)
    url = r.headers["location"]
    client.post(f"{url}/launch", data={"csrf_token": csrf})
    clock.advance(timedelta(days=8))
    csrf = web_login(client, "owner")
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    assert "分群" in client.get("/marketing/segments").text
    assert "新建分群" in client.get("/marketing/segments/new").text
    page = client.get(url).text
    assert "对照组" in page and "实验组" in page and "每位会员的去向" in page
    with db.read() as s:
        report = campaigns.results(s, clock=clock, actor=auth.principal_for_user(world.owner),
                                   campaign_id=uuid.UUID(url.rsplit("/", 1)[1]))
    uplift = report.uplift.revenue_per_member_minor
    assert uplift is not None
    opening = {"positive": "活动提升了人均收入", "negative": "活动降低了人均收入",
               "no_measurable_effect": "人均收入尚无可测量的效果"}[report.verdict.code]
    assert f"{opening}：{uplift.estimate / 100:+.2f} CNY（95 % 置信区间" in page
    assert "The campaign" not in page and "No measurable effect" not in page
    bad = client.post("/marketing/segments/count", data=builder_form(
        csrf, [{"field": "p_alive", "op": "<", "value": "7"}]))
    assert "数值太大" in bad.text
