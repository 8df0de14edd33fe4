"""A small hand-built chain for the team performance report, with every figure worked out
by hand in ``EXPECTED`` (the comments beside each row say why it counts or not).

Three stores: A and B in Asia/Shanghai (UTC+8), C in America/New_York (UTC-4 in summer).
The period is July and August 2026; "now" is the test clock, 2026-11-23 10:00 UTC.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session

from patron.analytics.views import Period
from patron.auth import service as auth
from patron.auth.enums import Role
from patron.auth.models import User
from patron.campaigns.models import Campaign, CampaignMember, Segment
from patron.core.clock import FixedClock
from patron.feedback.models import (
    CallbackCall,
    CallbackTask,
    Complaint,
    ComplaintEvent,
    SurveyInvitation,
    SurveyResponse,
)
from patron.members import service as members
from patron.members.models import Member, Store
from patron.members.schemas import MemberCreate
from patron.sales.models import Refund, Sale
from tests.factories import make_store, make_user, next_phone

PERIOD = Period(date(2026, 7, 1), date(2026, 8, 31))
_receipts = itertools.count(1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Chain:
    a: Store
    b: Store
    c: Store
    owner: User
    manager_a: User
    manager_b: User
    cashier_a: User
    cashier_a2: User
    cashier_b: User
    cashier_c: User
    members: dict[str, Member] = field(default_factory=dict)
    sales: dict[str, Sale] = field(default_factory=dict)


def _enrol(s: Session, chain: Chain, key: str, at: str, home: Store,
           by: User | None) -> Member:
    actor = auth.principal_for_user(by) if by is not None else None
    member = members.enroll_member(
        s, clock=FixedClock(utc(at)), actor=actor, region="CN",
        data=MemberCreate(name=f"Member {key}", phone=next_phone(), home_store_id=home.id))
    chain.members[key] = member
    return member


def _sale(s: Session, chain: Chain, member: str | None, store: Store, at: str,
          total: int, *, cashier: User | None = None, refunded: int = 0,
          key: str | None = None) -> Sale:
    sale = Sale(store_id=store.id, member_id=chain.members[member].id if member else None,
                cashier_id=cashier.id if cashier else None,
                receipt_no=f"R{next(_receipts):06d}", occurred_at=utc(at),
                recorded_at=utc(at), subtotal_minor=total, discount_minor=0,
                total_minor=total, refunded_minor=refunded,
                status="refunded" if refunded == total else "completed")
    s.add(sale)
    s.flush()
    if refunded:  # the refund itself, as checkout's refund books it (reports read these)
        s.add(Refund(sale_id=sale.id, store_id=store.id, amount_minor=refunded,
                     actor_label="someone", occurred_at=utc(at) + timedelta(hours=1)))
        s.flush()
    if key:
        chain.sales[key] = sale
    return sale


def _callback(s: Session, chain: Chain, store: Store, member: str, status: str,
              calls: list[tuple[str, User, str]], completed: str | None) -> None:
    """A task with its calls: (outcome, who, when); the last one settles a done task."""
    created = utc("2026-06-20T00:00:00")
    outcome = calls[-1][0] if status == "done" else None
    task = CallbackTask(store_id=store.id, member_id=chain.members[member].id,
                        reason="win_back", status=status, due_on=date(2026, 6, 21),
                        outcome=outcome, attempts=len(calls), created_at=created,
                        created_by="system", updated_at=created,
                        completed_at=utc(completed) if completed else None,
                        completed_by="someone" if completed else None)
    s.add(task)
    s.flush()
    for call_outcome, who, when in calls:
        s.add(CallbackCall(task_id=task.id, outcome=call_outcome, actor_user_id=who.id,
                           actor_label=who.display_name, called_at=utc(when)))
    s.flush()


def _complaint(s: Session, store: Store, opened: str, due: str,
               moves: list[tuple[str, User, str]]) -> Complaint:
    """A complaint and its event history: (to_status, who, when)."""
    status, resolved_at, closed_at = "open", None, None
    for to, _who, when in moves:
        status = to
        if to == "resolved":
            resolved_at = utc(when)
        elif to == "in_progress":
            resolved_at = None
        elif to == "closed":
            closed_at = utc(when)
    opened_at = utc(opened)
    complaint = Complaint(store_id=store.id, channel="in_store", category="service",
                          severity="normal", status=status, description="Slow service",
                          opened_at=opened_at, opened_by="someone",
                          first_response_due_at=opened_at + timedelta(hours=1),
                          resolution_due_at=utc(due), resolved_at=resolved_at,
                          closed_at=closed_at, updated_at=opened_at)
    s.add(complaint)
    s.flush()
    s.add(ComplaintEvent(complaint_id=complaint.id, kind="opened", to_status="open",
                         actor_label="someone", at=opened_at))
    previous = "open"
    for to, who, when in moves:
        kind = "reopened" if previous == "resolved" and to == "in_progress" \
            else "status_changed"
        s.add(ComplaintEvent(complaint_id=complaint.id, kind=kind, from_status=previous,
                             to_status=to, actor_user_id=who.id,
                             actor_label=who.display_name, at=utc(when)))
        previous = to
    s.flush()
    return complaint


def _answer(s: Session, chain: Chain, store: Store, member: str, occasion: str, ref: str,
            answered: str, csat: int | None, nps: int | None) -> None:
    at = utc(answered)
    invitation = SurveyInvitation(member_id=chain.members[member].id, store_id=store.id,
                                  kind="csat_nps", occasion=occasion, source_ref=ref,
                                  token=uuid.uuid4().hex, created_at=at - timedelta(days=1),
                                  expires_at=at + timedelta(days=10))
    s.add(invitation)
    s.flush()
    s.add(SurveyResponse(invitation_id=invitation.id, csat=csat, nps=nps, answered_at=at))
    s.flush()


def _campaign(s: Session, name: str, segment: Segment) -> Campaign:
    now = utc("2026-06-01T00:00:00")
    campaign = Campaign(name=name, segment_id=segment.id, rules={}, store_ids=[],
                        channel="sms", messages={}, seed=7, created_by="owner",
                        created_at=now, updated_at=now)
    s.add(campaign)
    s.flush()
    return campaign


def _assign(s: Session, chain: Chain, campaign: Campaign, member: str, arm: str,
            starts: str, days: int = 14) -> None:
    start = utc(starts)
    s.add(CampaignMember(campaign_id=campaign.id, member_id=chain.members[member].id, arm=arm,
                         draw=0.05 if arm == "control" else 0.5, run_on=start.date(),
                         assigned_at=start, starts_at=start,
                         ends_at=start + timedelta(days=days)))
    s.flush()


def build_chain(s: Session, clock: FixedClock) -> Chain:
    a = make_store(s, clock, code="A", name="Store A")
    b = make_store(s, clock, code="B", name="Store B")
    c = make_store(s, clock, code="C", name="Store C", timezone="America/New_York")
    chain = Chain(
        a=a, b=b, c=c,
        owner=make_user(s, clock, Role.OWNER, username="owner", display_name="Olivia Owner"),
        manager_a=make_user(s, clock, Role.MANAGER, [a], username="manager-a",
                            display_name="Mia Manager"),
        manager_b=make_user(s, clock, Role.MANAGER, [b], username="manager-b",
                            display_name="Ben Manager"),
        cashier_a=make_user(s, clock, Role.CASHIER, [a], username="cashier-a",
                            display_name="Amy Cashier"),
        cashier_a2=make_user(s, clock, Role.CASHIER, [a], username="cashier-a2",
                             display_name="Alan Cashier"),
        cashier_b=make_user(s, clock, Role.CASHIER, [b], username="cashier-b",
                            display_name="Bea Cashier"),
        cashier_c=make_user(s, clock, Role.CASHIER, [c], username="cashier-c",
                            display_name="Cal Cashier"))
    ca, ca2, cb, cc = chain.cashier_a, chain.cashier_a2, chain.cashier_b, chain.cashier_c

    # --- enrolments (Shanghai = UTC+8; New York = UTC-4 in summer)
    _enrol(s, chain, "m1", "2026-07-10T02:00:00", a, ca)   # local 07-10
    _enrol(s, chain, "m2", "2026-07-20T15:30:00", a, ca)   # local 07-20 23:30
    _enrol(s, chain, "m3", "2026-08-01T04:00:00", a, ca2)  # local 08-01
    _enrol(s, chain, "m4", "2026-07-05T01:00:00", a, ca2)  # local 07-05
    _enrol(s, chain, "m5", "2026-08-30T02:00:00", a, ca)   # local 08-30: window still open
    _enrol(s, chain, "m6", "2026-08-15T02:00:00", a, None)  # self sign-up
    _enrol(s, chain, "m7", "2026-06-30T15:59:00", a, ca)   # local 06-30 23:59: before
    _enrol(s, chain, "m8", "2026-06-30T16:00:00", a, ca)   # local 07-01 00:00: in
    _enrol(s, chain, "m9", "2026-07-12T02:00:00", a, ca)   # merged away below: left out
    chain.members["m9"].status = "merged"
    _enrol(s, chain, "b1", "2026-07-15T02:00:00", b, cb)
    _enrol(s, chain, "b2", "2026-08-10T02:00:00", b, cb)
    _enrol(s, chain, "c1", "2026-07-31T23:30:00", c, cc)   # local 07-31 19:30
    _enrol(s, chain, "c2", "2026-09-01T02:00:00", c, cc)   # local 08-31 22:00: in
    _enrol(s, chain, "a_old1", "2026-03-01T02:00:00", a, ca)
    _enrol(s, chain, "a_old2", "2026-03-01T02:00:00", a, ca)
    _enrol(s, chain, "a_old3", "2026-03-01T02:00:00", a, ca)
    _enrol(s, chain, "a_old4", "2026-03-01T02:00:00", a, ca)
    _enrol(s, chain, "b_old", "2026-03-01T02:00:00", b, cb)
    _enrol(s, chain, "c3", "2026-01-10T15:00:00", c, cc)

    # --- purchases
    _sale(s, chain, "m1", a, "2026-07-10T02:30:00", 5000, cashier=ca)  # enrolment day: no
    _sale(s, chain, "m1", a, "2026-07-25T03:00:00", 3000, cashier=ca, key="m1_back")
    _sale(s, chain, "m2", a, "2026-07-20T16:30:00", 4000, cashier=ca2,  # local 07-21
          key="m2_back")
    _sale(s, chain, "m3", a, "2026-08-05T03:00:00", 2000, refunded=2000)  # not a purchase
    _sale(s, chain, "m3", a, "2026-10-31T03:00:00", 2000)  # day +91: too late
    _sale(s, chain, "m4", a, "2026-10-03T15:00:00", 2500)  # local 10-03 23:00: day +90
    _sale(s, chain, "m6", a, "2026-08-16T01:00:00", 1500)  # local 08-16 09:00
    _sale(s, chain, "m6", a, "2026-08-16T14:00:00", 2500)  # local 08-16 22:00: same day
    _sale(s, chain, "b1", a, "2026-07-16T02:00:00", 1200)  # at another store: counts
    _sale(s, chain, "b1", b, "2026-08-20T02:00:00", 1800, cashier=cb, key="b1_b")
    _sale(s, chain, "c1", c, "2026-08-01T03:30:00", 700)   # local 07-31 23:30: same day
    _sale(s, chain, "c2", c, "2026-11-02T04:30:00", 800)   # local 11-01 (EST)
    _sale(s, chain, "c3", c, "2026-08-01T03:30:00", 600)   # local 07-31
    _sale(s, chain, "c3", c, "2026-08-01T14:00:00", 600)   # local 08-01: a second day
    _sale(s, chain, "a_old1", a, "2026-05-20T02:00:00", 1000)
    _sale(s, chain, "a_old1", a, "2026-06-15T02:00:00", 1000)  # active at start, stays
    _sale(s, chain, "a_old2", a, "2026-05-10T02:00:00", 1000)  # lapses 08-08: churned
    _sale(s, chain, "a_old3", a, "2026-04-20T02:00:00", 1000)  # lapses 07-19: churned
    _sale(s, chain, "a_old3", a, "2026-07-25T02:00:00", 1000)  # ... though back later
    _sale(s, chain, "a_old4", a, "2026-04-01T02:00:00", 1000)  # inactive by 06-30
    _sale(s, chain, "b_old", b, "2026-06-30T15:30:00", 1000)   # local 06-30 23:30
    _sale(s, chain, None, b, "2026-08-22T02:00:00", 1000, key="walk_in")

    # --- callbacks
    ma, mb = chain.manager_a, chain.manager_b
    _callback(s, chain, a, "a_old1", "done", [("reached", ca, "2026-07-15T03:00:00")],
              "2026-07-15T03:00:00")
    _callback(s, chain, a, "a_old2", "done", [("no_answer", ca, "2026-08-09T03:00:00"),
                                              ("wrong_number", ca2, "2026-08-10T03:00:00")],
              "2026-08-10T03:00:00")
    _callback(s, chain, a, "a_old3", "done", [("reached", ca, "2026-09-02T03:00:00")],
              "2026-09-02T03:00:00")  # after the period
    _callback(s, chain, a, "a_old4", "cancelled", [], "2026-07-20T03:00:00")
    _callback(s, chain, a, "m5", "open", [("no_answer", ca, "2026-08-01T03:00:00")], None)
    _callback(s, chain, a, "m8", "done", [("will_return", ma, "2026-08-31T15:00:00")],
              "2026-08-31T15:00:00")  # local 08-31 23:00
    _callback(s, chain, b, "b_old", "done", [("not_interested", cb, "2026-07-31T16:30:00")],
              "2026-07-31T16:30:00")  # local 08-01 00:30
    _callback(s, chain, b, "b2", "done", [("reached", cb, "2026-08-31T16:30:00")],
              "2026-08-31T16:30:00")  # local 09-01 00:30: after

    # --- complaints
    k1 = _complaint(s, a, "2026-07-02T02:00:00", "2026-07-03T02:00:00",
                    [("resolved", ma, "2026-07-02T08:00:00")])  # 6 h, in time
    _complaint(s, a, "2026-07-20T00:00:00", "2026-07-22T00:00:00",
               [("in_progress", ma, "2026-07-20T05:00:00"),
                ("resolved", ma, "2026-07-21T00:00:00"),
                ("in_progress", ma, "2026-07-21T06:00:00"),  # reopened
                ("resolved", chain.owner, "2026-07-23T00:00:00"),  # 72 h, late
                ("closed", chain.owner, "2026-07-24T00:00:00")])
    _complaint(s, a, "2026-08-30T00:00:00", "2026-09-01T00:00:00", [])  # still open
    _complaint(s, b, "2026-06-25T01:00:00", "2026-06-30T00:00:00",
               [("resolved", mb, "2026-07-01T01:00:00")])  # 144 h, late
    _complaint(s, b, "2026-08-31T10:00:00", "2026-09-02T00:00:00",
               [("resolved", mb, "2026-09-01T10:00:00")])  # resolved after

    # --- survey answers
    _answer(s, chain, a, "m1", "sale", str(chain.sales["m1_back"].id),
            "2026-07-26T02:00:00", 5, 10)
    _answer(s, chain, a, "m2", "sale", str(chain.sales["m2_back"].id),
            "2026-07-22T02:00:00", 3, 6)
    _answer(s, chain, a, "a_old1", "complaint", str(k1.id), "2026-07-03T02:00:00", 4, 8)
    _answer(s, chain, a, "m4", "sale", str(uuid.uuid4()), "2026-09-05T02:00:00", 1, 0)  # after
    _answer(s, chain, b, "b1", "sale", str(chain.sales["b1_b"].id),
            "2026-08-21T02:00:00", 2, None)
    _answer(s, chain, b, "b_old", "sale", str(chain.sales["walk_in"].id),
            "2026-08-22T03:00:00", None, 9)  # no cashier on that sale

    # --- campaigns
    now = utc("2026-06-01T00:00:00")
    segment = Segment(name="Everyone", rules={}, store_ids=[], created_by="owner",
                      created_at=now, updated_at=now)
    s.add(segment)
    s.flush()
    x = _campaign(s, "July nudge", segment)
    for key, arm in (("a_old1", "treatment"), ("m1", "treatment"), ("a_old3", "treatment"),
                     ("a_old2", "control"), ("m8", "control"), ("b_old", "treatment"),
                     ("b2", "excluded")):
        _assign(s, chain, x, key, arm, "2026-07-10T00:00:00")
    z = _campaign(s, "August nudge", segment)
    for key, arm in (("m6", "treatment"), ("m3", "control"), ("a_old1", "control")):
        _assign(s, chain, z, key, arm, "2026-08-10T00:00:00")
    y = _campaign(s, "September nudge", segment)  # starts after the period
    for key, arm in (("b1", "treatment"), ("b_old", "control")):
        _assign(s, chain, y, key, arm, "2026-09-10T00:00:00")
    s.flush()
    return chain


# Stratified uplift of store A: campaign X (5 members: 1/3 vs 0/2 converted, 5000/3 vs 0
# per member) and Z (3 members: 1/1 vs 0/2, 4000 vs 0), weighted by members.
UPLIFT_A = (5 * (1 / 3) + 3 * 1.0) / 8
REVENUE_UPLIFT_A = round((5 * (5000 / 3) + 3 * 4000) / 8)

EXPECTED: dict[str, dict[str, float | int | None]] = {
    "A": {"enrolled": 7, "came_back": 4, "window_open": 1, "home_purchasers": 4,
        "home_repeaters": 1, "active_start": 3, "churned": 2, "callbacks_done": 3,
        "callbacks_reached": 2, "complaints_opened": 3, "complaints_resolved": 2,
        "resolved_within_sla": 1, "mean_resolution_hours": 39.0,
        "median_resolution_hours": 39.0},
    "B": {"enrolled": 2, "came_back": 1, "window_open": 0, "home_purchasers": 1,
        "home_repeaters": 1, "active_start": 1, "churned": 0, "callbacks_done": 1,
        "callbacks_reached": 1, "complaints_opened": 1, "complaints_resolved": 1,
        "resolved_within_sla": 0, "mean_resolution_hours": 144.0,
        "median_resolution_hours": 144.0},
    "C": {"enrolled": 2, "came_back": 1, "window_open": 0, "home_purchasers": 2,
        "home_repeaters": 1, "active_start": 0, "churned": 0, "callbacks_done": 0,
        "callbacks_reached": 0, "complaints_opened": 0, "complaints_resolved": 0,
        "resolved_within_sla": 0, "mean_resolution_hours": None,
        "median_resolution_hours": None},
    "total": {"enrolled": 11, "came_back": 6, "window_open": 1, "home_purchasers": 7,
        "home_repeaters": 3, "active_start": 4, "churned": 2, "callbacks_done": 4,
        "callbacks_reached": 3, "complaints_opened": 4, "complaints_resolved": 3,
        "resolved_within_sla": 1, "mean_resolution_hours": 74.0,
        "median_resolution_hours": 72.0},
}
