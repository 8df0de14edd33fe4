"""Member pages: the searchable list, enrolment, the member 360 page with edits,
consents, soft delete and merge (its other actions are in ``member_actions``).

The member 360 page shows, beside the profile, what every domain knows of the member, each
read through that domain's service (``gather``): tier and progress, points and stored value
with their ledgers, coupons, purchases, the analytics scores and P(alive) trend, category
cycles, messages, callback tasks and complaints (of the viewer's stores), staff notes (for
staff of the member's home store) and the referral tree. Ledgers show their newest
``LEDGER_PAGE`` rows and "More" adds as many, so the page costs a bounded number of queries
however long the history; next-best products come in a fragment of their own
(``/members/{id}/next-best``): the nightly refresh stores them, and only a database that
has no stored ones yet computes them on request from the whole sales history.

The profile goes through ``members.to_read(member, principal)``, which masks the phone for
cashiers; templates never see the member's own row.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.analytics import portraits, recommend
from patron.analytics import service as analytics
from patron.analytics.tables import CategoryCycle, MemberScore
from patron.auth.enums import Role
from patron.auth.principal import Principal
from patron.catalog import service as catalog
from patron.core.clock import local_today
from patron.core.errors import NotFound, ValidationFailed
from patron.feedback import service as feedback
from patron.feedback.enums import (
    CallbackStatus,
    CallOutcome,
    ComplaintCategory,
    ComplaintChannel,
    Severity,
)
from patron.feedback.models import CallbackTask, Complaint
from patron.loyalty import membership
from patron.loyalty import service as loyalty
from patron.loyalty.models import Membership, MembershipPlan, Tier
from patron.members import notes
from patron.members import service as members
from patron.members.enums import Calendar, Channel, MemberStatus
from patron.members.models import Member, MemberNote
from patron.members.schemas import MemberCreate, MemberRead, MemberUpdate
from patron.messaging import service as messaging
from patron.offers import service as offers
from patron.offers.models import CouponTemplate
from patron.sales import service as sales
from patron.wallet import service as wallet
from patron.web import charts, i18n
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, attempt, split_tags
from patron.web.i18n import N_
from patron.web.routing import web_router
from patron.web.templating import has_role, redirect, render

router = web_router()

PAGE_SIZE = 25
MAX_ANNIVERSARIES = 20
PROFILE_FIELDS = (
    "name", "phone", "email", "gender", "birthday_calendar", "birth_year", "birth_month",
    "birth_day", "birth_leap_month", "tags", "preferences", "home_store_id", "referral_source",
    "anniversaries",
)
ENROL_FIELDS = (*PROFILE_FIELDS, "referred_by_card_no", "sms_consent", "email_consent")
MERGE_FIELDS = ("duplicate_card_no",)
LEDGER_PAGE = 20  # rows of a ledger shown at first; "More" adds as many
MAX_LEDGER = 200


# ---------------------------------------------------------------- helpers


def _store_names(session: Session) -> dict[uuid.UUID, str]:
    return {s.id: s.name for s in members.list_stores(session, include_inactive=True)}


def _anniversary_rows(form: Form) -> int:
    """How many anniversary rows to show: those typed plus one empty row to add another."""
    filled = sum(1 for i in range(MAX_ANNIVERSARIES) if form.get(f"ann_on_{i}"))
    return min(filled + 1, MAX_ANNIVERSARIES)


def _profile_input(page: Page, form: Form, *, viewer: Principal, creating: bool
                   ) -> dict[str, Any]:
    """The service input a profile form describes; parse errors are recorded on ``form``."""
    month, day = form.int_value(page, "birth_month"), form.int_value(page, "birth_day")
    year = form.int_value(page, "birth_year")
    has_birthday = any(v is not None for v in (month, day, year))
    anniversaries = []
    for i in range(MAX_ANNIVERSARIES):
        on = form.date_value(page, f"ann_on_{i}")
        if on is None:
            continue
        anniversaries.append({"kind": form.get(f"ann_kind_{i}") or "other",
                              "label": form.get(f"ann_label_{i}"), "on": on})
    data: dict[str, Any] = {
        "name": form.get("name"),
        "email": form.text("email"),
        "gender": form.text("gender"),
        "birthday_calendar": (form.text("birthday_calendar") or Calendar.SOLAR.value)
        if has_birthday else None,
        "birth_year": year, "birth_month": month, "birth_day": day,
        "birth_leap_month": form.checked("birth_leap_month") and has_birthday,
        "tags": split_tags(form.get("tags")),
        "preferences": form.get("preferences"),
        "home_store_id": form.uuid_value(page, "home_store_id"),
        "referral_source": form.text("referral_source"),
        "anniversaries": anniversaries,
    }
    phone = form.get("phone")
    if creating or phone or viewer.sees_full_phone:
        data["phone"] = phone  # a masked viewer's empty phone field means "keep it"
    if creating:
        data |= {"referred_by_card_no": form.text("referred_by_card_no"),
                 "sms_consent": form.checked("sms_consent"),
                 "email_consent": form.checked("email_consent")}
    return data


def _profile_form(member: MemberRead) -> Form:
    """The edit form filled from a member as the viewer may see them."""
    values: dict[str, object] = {
        "name": member.name, "phone": "" if member.phone_masked else member.phone,
        "email": member.email, "gender": member.gender.value if member.gender else None,
        "birthday_calendar": member.birthday_calendar.value if member.birthday_calendar
        else None, "birth_year": member.birth_year, "birth_month": member.birth_month,
        "birth_day": member.birth_day, "birth_leap_month": member.birth_leap_month,
        "tags": ", ".join(member.tags), "preferences": member.preferences,
        "home_store_id": member.home_store_id, "referral_source": member.referral_source,
    }
    for i, ann in enumerate(member.anniversaries):
        values |= {f"ann_kind_{i}": ann.kind.value, f"ann_label_{i}": ann.label,
                   f"ann_on_{i}": ann.on.isoformat()}
    return Form.initial(values, PROFILE_FIELDS)


# ---------------------------------------------------------------- list


def _query_from(params: dict[str, str]) -> members.MemberQuery:
    """Lenient parsing of the list's query string: a bad value is ignored, not an error."""
    store_id = None
    with contextlib.suppress(ValueError):
        store_id = uuid.UUID(params.get("home_store_id", ""))
    page_no = int(params["page"]) if params.get("page", "").isdigit() else 1
    return members.MemberQuery(q=params.get("q") or None, home_store_id=store_id,
                               tag=params.get("tag") or None,
                               page=max(1, min(page_no, 100_000)), page_size=PAGE_SIZE)


@router.get("/members")
def list_members(page: SignedInPage, session: Db) -> Response:
    """Search by phone, last 4 digits, card number or name; htmx swaps only the results."""
    principal = principal_of(page)
    params = {k: v.strip()[:100] for k, v in page.request.query_params.items()}
    query = _query_from(params)
    rows, total = members.search_members(session, query=query,
                                         region=page.app.settings.default_region)
    context: dict[str, Any] = {
        "items": [members.to_read(m, principal) for m in rows], "total": total,
        "query": query, "params": {k: params.get(k, "") for k in ("q", "home_store_id", "tag")},
        "pages": max(1, -(-total // PAGE_SIZE)), "store_names": _store_names(session),
    }
    if page.is_htmx:
        return render(page, "members/_results.html", **context)
    return render(page, "members/list.html", stores=members.list_stores(session), **context)


# ---------------------------------------------------------------- enrol


def _render_enrol(page: Page, session: Session, form: Form, status: int = 200) -> Response:
    return render(page, "members/new.html", status=status, form=form,
                  stores=members.list_stores(session), ann_rows=_anniversary_rows(form))


@router.get("/members/new")
def enrol_page(page: SignedInPage, session: Db) -> Response:
    principal = principal_of(page)
    form = Form.initial({"home_store_id": principal.default_store_id}, ENROL_FIELDS)
    return _render_enrol(page, session, form)


@router.post("/members/new")
def enrol(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    principal = principal_of(page)
    form = Form.posted(data, ENROL_FIELDS)
    values = _profile_input(page, form, viewer=principal, creating=True)
    member = attempt(page, form, lambda: members.enroll_member(
        session, clock=page.app.clock, actor=principal, region=page.app.settings.default_region,
        data=MemberCreate.model_validate(values)))
    if member is None:
        session.rollback()
        return _render_enrol(page, session, form, status=422)
    session.commit()
    return redirect(page, f"/members/{member.id}", flash="member_enrolled")


# ---------------------------------------------------------------- member 360: what it shows

#: The ledgers shown newest first, ``LEDGER_PAGE`` rows at a time.
LEDGERS = ("purchases", "points", "wallet", "coupons", "messages")
REFERRAL_DEPTH = 2  # the member's referrals, and theirs
NEXT_BEST = 5

#: Display names of the other domains' stored values, keyed "<vocabulary>:<value>".
LABELS_360: dict[str, str] = {
    "points:earn": N_("Earned"), "points:release": N_("Released"),
    "points:redeem": N_("Redeemed"), "points:redeem_return": N_("Given back by a refund"),
    "points:clawback": N_("Taken back by a refund"), "points:debt": N_("Owed"),
    "points:debt_settle": N_("Debt settled"), "points:expire": N_("Expired"),
    "points:adjust": N_("Adjustment"), "points:merge_in": N_("Merged in"),
    "points:merge_out": N_("Merged out"), "points:transfer_in": N_("Received from a member"),
    "points:transfer_out": N_("Given to a member"),
    "wallet:topup": N_("Top-up"), "wallet:spend": N_("Spent"),
    "wallet:spend_refund": N_("Refunded to the balance"), "wallet:topup_refund": N_("Cashed out"),
    "wallet:adjust": N_("Adjustment"), "wallet:merge_in": N_("Merged in"),
    "wallet:merge_out": N_("Merged out"), "wallet:cashback": N_("Cashback"),
    "wallet:cashback_reverse": N_("Cashback taken back"),
    "coupon:issued": N_("Usable"), "coupon:redeemed": N_("Used"), "coupon:void": N_("Voided"),
    "coupon:expired": N_("Expired"),
    "source:manual": N_("By staff"), "source:campaign": N_("Campaign"),
    "source:referral": N_("Referral"), "source:birthday": N_("Birthday"),
    "source:care": N_("Customer care"), "source:restore": N_("Replacement"),
    "source:import": N_("Import"),
    "rfm:champions": N_("Champions"), "rfm:loyal": N_("Loyal"),
    "rfm:potential_loyalist": N_("Potential loyalist"), "rfm:new": N_("New customer"),
    "rfm:promising": N_("Promising"), "rfm:needs_attention": N_("Needs attention"),
    "rfm:about_to_sleep": N_("About to sleep"), "rfm:at_risk": N_("At risk"),
    "rfm:cant_lose": N_("Can't lose them"), "rfm:hibernating": N_("Hibernating"),
    "rfm:lost": N_("Lost"),
    "stage:new": N_("New"), "stage:growing": N_("Growing"), "stage:mature": N_("Mature"),
    "stage:declining": N_("Declining"), "stage:lapsed": N_("Lapsed"), "stage:lost": N_("Lost"),
    "loyalty:trust": N_("Trust"), "loyalty:inertia": N_("Inertia"),
    "loyalty:latent": N_("Latent"), "loyalty:none": N_("None yet"),
    "message:queued": N_("Queued"), "message:sending": N_("Sending"), "message:sent": N_("Sent"),
    "message:delivered": N_("Delivered"), "message:failed": N_("Failed"),
    "message:dead": N_("Gave up"), "message:suppressed": N_("Not sent (suppressed)"),
    "channel:webhook": N_("Webhook"),
    "purpose:transactional": N_("Service"), "purpose:marketing": N_("Marketing"),
    "reason:win_back": N_("Win-back"), "reason:complaint_follow_up": N_("Complaint follow-up"),
    "reason:survey_follow_up": N_("Survey follow-up"), "reason:manual": N_("Added by staff"),
    "task:open": N_("Open"), "task:done": N_("Done"), "task:cancelled": N_("Cancelled"),
    "outcome:reached": N_("Reached"), "outcome:no_answer": N_("No answer"),
    "outcome:complaint": N_("Complained"), "outcome:will_return": N_("Will come back"),
    "outcome:wrong_number": N_("Wrong number"), "outcome:not_interested": N_("Not interested"),
    "complaint:open": N_("Open"), "complaint:in_progress": N_("In progress"),
    "complaint:resolved": N_("Resolved"), "complaint:closed": N_("Closed"),
    "severity:low": N_("Low"), "severity:normal": N_("Normal"), "severity:high": N_("High"),
    "severity:critical": N_("Critical"),
    "category:product": N_("Product"), "category:service": N_("Service quality"),
    "category:price": N_("Price"), "category:wait_time": N_("Waiting time"),
    "category:staff": N_("Staff"), "category:billing": N_("Billing"),
    "category:other": N_("Other"),
    "via:in_store": N_("In store"), "via:phone": N_("Phone"), "via:sms": N_("SMS"),
    "via:email": N_("E-mail"), "via:web": N_("Web"), "via:social": N_("Social media"),
    "sale:completed": N_("Completed"), "sale:partially_refunded": N_("Partly refunded"),
    "sale:refunded": N_("Refunded"),
    "referral:rewarded": N_("Rewarded"), "referral:below_minimum": N_("First purchase too small"),
    "basis:spend": N_("spend in the last 12 months"),
    "basis:points": N_("points earned in the last 12 months"),
}


@dataclass
class Ledger:
    """The newest ``limit`` rows of a ledger, and whether older ones exist."""

    rows: list[Any]
    limit: int
    more: bool


def _ledger(rows: Sequence[Any], limit: int) -> Ledger:
    """Rows fetched with ``limit + 1``: the extra row only says there is more."""
    return Ledger(rows=list(rows[:limit]), limit=limit, more=len(rows) > limit)


@dataclass
class TierView:
    current: Tier | None
    next: Tier | None
    value: int  # qualifying value so far (minor units of spend, or points)
    remaining: int | None  # to the next tier
    progress_pct: int
    basis: str  # TierBasis value
    paid: tuple[Membership, MembershipPlan, int] | None  # paid period, plan, renewal price


@dataclass
class Referral:
    """One member in the referral tree under the page's member."""

    id: uuid.UUID
    name: str
    card_no: str
    joined_at: datetime
    via: str  # "code" (a referral code) or "card" (the referrer's card at enrolment)
    outcome: str | None  # how the referral was settled at the first purchase
    children: list[Referral] = field(default_factory=list)


@dataclass
class Member360:
    """Everything the member page shows beyond the profile, each read through its
    domain's service. Parts not asked for (``only``) stay empty."""

    points: loyalty.PointsBalance | None = None
    expiring: list[loyalty.Expiring] = field(default_factory=list)
    tier: TierView | None = None
    wallet: wallet.Balance | None = None
    scores: MemberScore | None = None
    trend: dict[str, Any] | None = None
    cycles: list[tuple[CategoryCycle, str]] = field(default_factory=list)
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    product_names: dict[uuid.UUID, str] = field(default_factory=dict)
    receipts: set[uuid.UUID] = field(default_factory=set)  # sales the viewer may open
    callbacks: list[CallbackTask] = field(default_factory=list)
    open_tasks: list[CallbackTask] = field(default_factory=list)
    complaints: list[Complaint] = field(default_factory=list)
    referrer: MemberRead | None = None
    referrals: list[Referral] = field(default_factory=list)
    templates: list[CouponTemplate] = field(default_factory=list)
    notes: list[MemberNote] = field(default_factory=list)  # newest first
    notes_allowed: bool = False  # staff of the member's home store read and add notes


def _tier_view(session: Session, page: Page, member_id: uuid.UUID) -> TierView:
    clock = page.app.clock
    current, nxt, value = loyalty.tier_progress(session, clock=clock, member_id=member_id)
    progress = 100
    if nxt is not None and nxt.threshold > 0:
        progress = max(0, min(100, value * 100 // nxt.threshold))
    return TierView(current=current, next=nxt, value=value,
                    remaining=max(0, nxt.threshold - value) if nxt else None,
                    progress_pct=progress,
                    basis=loyalty.get_program(session, clock=clock).tier_basis,
                    paid=membership.current_period(session, member_id=member_id))


def p_alive_trend(history: Sequence[MemberScore], fmt: i18n.Formatter, label: str
                  ) -> dict[str, Any] | None:
    """The P(alive) line over the kept snapshots, in percent; None without any value."""
    points = [(h.as_of, h.p_alive) for h in history]
    if not any(p is not None for _, p in points):
        return None
    option = charts.lines([fmt.date(day, "short") for day, _ in points],
                          [(label, [None if p is None else round(p * 100, 1)
                                    for _, p in points])], percent=True, area=True)
    option["yAxis"] |= {"min": 0, "max": 100}
    option["series"][0]["showSymbol"] = True
    return option


def _referral_tree(session: Session, member_id: uuid.UUID) -> list[Referral]:
    """Who the member referred, and whom those referred (``REFERRAL_DEPTH`` levels), by
    referral code or by card at enrolment; a few queries per level, none per member."""
    roots: list[Referral] = []
    parents: dict[uuid.UUID, list[Referral]] = {member_id: roots}
    seen = {member_id}
    for _level in range(REFERRAL_DEPTH):
        edges: dict[uuid.UUID, tuple[uuid.UUID, str]] = {}
        for a in offers.referrals_made(session, referrer_ids=list(parents)):
            edges.setdefault(a.referred_member_id, (a.referrer_member_id, "code"))
        for referrer, referred in members.referred_at_enrolment(session,
                                                                referrer_ids=list(parents)):
            edges.setdefault(referred, (referrer, "card"))
        edges = {k: e for k, e in edges.items() if k not in seen}
        if not edges:
            break
        rows = members.get_members(session, member_ids=list(edges))
        rewards = offers.rewards_of(session, member_ids=list(edges))
        level: dict[uuid.UUID, list[Referral]] = {}
        for row in sorted((rows[i] for i in edges if i in rows), key=lambda m: m.joined_at):
            referred_id = row.id
            parent, via = edges[referred_id]
            reward = rewards.get(referred_id)
            node = Referral(id=row.id, name=row.name, card_no=row.card_no,
                            joined_at=row.joined_at, via=via,
                            outcome=reward.outcome if reward else None)
            parents[parent].append(node)
            level[row.id] = node.children
            seen.add(row.id)
        parents = level
    return roots


def gather(session: Session, page: Page, member: Member, *, limits: Mapping[str, int],
           only: str | None = None) -> Member360:
    """Read what the member page shows; with ``only``, just that ledger (for "More").

    A fixed number of queries however long the history: each ledger is one query of
    ``limit + 1`` rows, and what its rows refer to (products, templates, redemptions) is
    read in one more query per kind.
    """
    principal = principal_of(page)
    clock = page.app.clock
    member_id = member.id
    view = Member360()
    wanted = set(LEDGERS) if only is None else {only}
    if "purchases" in wanted:
        n = limits["purchases"]
        sold = sales.member_sales(session, member_id=member_id, limit=n + 1)
        view.ledgers["purchases"] = _ledger(sold, n)
        ids = {line.product_id for sale in sold[:n] for line in sale.lines}
        view.product_names = {pid: p.name for pid, p in
                              catalog.get_products(session, ids=ids).items()} if ids else {}
        view.receipts = {s.id for s in sold if principal.can_access_store(s.store_id)}
    if "points" in wanted:
        n = limits["points"]
        view.ledgers["points"] = _ledger(loyalty.entries(session, member_id=member_id,
                                                         limit=n + 1), n)
    if "wallet" in wanted:
        n = limits["wallet"]
        view.ledgers["wallet"] = _ledger(wallet.entries(session, member_id=member_id,
                                                        limit=n + 1), n)
    if "coupons" in wanted:
        n = limits["coupons"]
        coupons = offers.list_member_coupons(session, member_id=member_id, limit=n + 1)
        view.ledgers["coupons"] = _ledger(offers.describe(session, coupons=coupons[:n]), n)
        view.ledgers["coupons"].more = len(coupons) > n
    if "messages" in wanted:
        n = limits["messages"]
        view.ledgers["messages"] = _ledger(messaging.member_messages(
            session, member_id=member_id, limit=n + 1), n)
    if only is not None:
        return view
    view.points = loyalty.balance(session, clock=clock, member_id=member_id)
    view.expiring = loyalty.expiring_soon(session, clock=clock, member_id=member_id)
    view.tier = _tier_view(session, page, member_id)
    view.wallet = wallet.balance(session, member_id=member_id)
    history = analytics.member_score_history(session, member_id=member_id)
    latest = analytics.latest_as_of(session)
    view.scores = history[-1] if history and history[-1].as_of == latest else None
    view.trend = p_alive_trend(history, page.formatter, page.gettext(N_("P(alive)")))
    cycles = analytics.member_category_cycles(session, member_id=member_id)
    names = catalog.categories_by_id(session, {c.category_id for c in cycles}) if cycles \
        else {}
    view.cycles = [(c, names[c.category_id].name if c.category_id in names else "—")
                   for c in cycles]
    view.callbacks = feedback.list_callbacks(session, clock=clock, actor=principal,
                                             member_id=member_id, limit=50)
    view.open_tasks = [t for t in view.callbacks if t.status == CallbackStatus.OPEN.value]
    view.complaints = feedback.list_complaints(session, actor=principal, member_id=member_id,
                                               limit=50)
    referrer_id = offers.referrer_of(session, member_id=member_id)
    view.referrer = members.to_read(members.get_member(session, member_id=referrer_id),
                                    principal) if referrer_id else None
    view.referrals = _referral_tree(session, member_id)
    if has_role(page, Role.MANAGER.value):
        view.templates = offers.list_templates(session)
    view.notes_allowed = notes.can_use_notes(principal, member)
    if view.notes_allowed:
        view.notes = notes.list_notes(session, principal=principal, member_id=member_id,
                                      limit=NOTES_SHOWN)
    return view


def next_best_products(session: Session, page: Page, member_id: uuid.UUID
                       ) -> list[tuple[str, str | None]]:
    """(product, the product bought that led to it) names, best first: item-to-item
    collaborative filtering over the sales history (``analytics.recommend``), as the
    nightly refresh stored it (computed now only when the snapshot has none)."""
    picks = recommend.next_best(session, page.app.db, member_id, clock=page.app.clock,
                                tz=page.app.settings.default_timezone, top_n=NEXT_BEST)
    ids = {uuid.UUID(str(r.product_id)) for r in picks} | \
        {uuid.UUID(str(r.because)) for r in picks if r.because}
    products = catalog.get_products(session, ids=ids) if ids else {}

    def name(raw: str | None) -> str | None:
        product = products.get(uuid.UUID(str(raw))) if raw else None
        return product.name if product else None

    return [(name(r.product_id) or str(r.product_id), name(r.because)) for r in picks]


# ---------------------------------------------------------------- member 360: action forms

NOTES_SHOWN = 50  # the newest staff notes the member page lists
#: The fields of each action's form ("key": the Idempotency-Key of a value-moving form);
#: names are unique on the page, since every form's inputs are ``f-<name>``.
ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "topup": ("key", "amount", "topup_reason"),
    "points": ("key", "points", "points_reason"),
    "coupon": ("template_id",),
    "note": ("note_text",),
    "call": ("task_id", "outcome", "call_note", "reschedule_on"),
    "complaint": ("channel", "category", "severity", "description"),
}
VALUE_MOVING = frozenset({"topup", "points"})


def action_forms(page: Page, action: str | None, refused: Form | None) -> dict[str, Form]:
    """A blank form per action (value-moving ones with a fresh Idempotency-Key), and the
    refused one as posted, so it opens again with its errors."""
    forms: dict[str, Form] = {}
    for name, fields in ACTION_FIELDS.items():
        initial: dict[str, object] = {"key": str(uuid.uuid4())} if name in VALUE_MOVING else {}
        if name == "complaint":
            initial |= {"severity": "normal", "channel": "in_store"}
        forms[name] = Form.initial(initial, fields)
    if action is not None and refused is not None:
        forms[action] = refused
    return forms


def action_options(page: Page, view: Member360) -> dict[str, list[tuple[str, str]]]:
    """The choices of the action forms' selects, in the page's language."""
    def labelled(vocabulary: str, values: Sequence[str]) -> list[tuple[str, str]]:
        return [(value, page.gettext(LABELS_360[f"{vocabulary}:{value}"])) for value in values]

    fmt = page.formatter
    return {
        "coupon": [(str(t.id), t.name) for t in view.templates],
        "task": [(str(t.id), f"{page.gettext(LABELS_360['reason:' + t.reason])} · "
                             f"{fmt.date(t.due_on)}") for t in view.open_tasks],
        "outcome": labelled("outcome", [o.value for o in CallOutcome]),
        "category": labelled("category", [c.value for c in ComplaintCategory]),
        "severity": labelled("severity", [s.value for s in Severity]),
        "channel": labelled("via", [c.value for c in ComplaintChannel]),
    }


# ---------------------------------------------------------------- profile (member 360)


def ledger_limit(params: Mapping[str, str], name: str) -> int:
    """Rows of one ledger to show: the latest ``LEDGER_PAGE``, or more pages after "More"
    (``?purchases=40``); anything unreadable is the first page."""
    raw = params.get(name, "")
    wanted = int(raw) if raw.isdigit() else LEDGER_PAGE
    pages = max(1, min(-(-wanted // LEDGER_PAGE), MAX_LEDGER // LEDGER_PAGE))
    return pages * LEDGER_PAGE


def _render_member(page: Page, session: Session, member_id: uuid.UUID, *,
                   form: Form | None = None, merge_form: Form | None = None,
                   action: str | None = None, action_form: Form | None = None,
                   status: int = 200) -> Response:
    """The member 360 page; ``action``/``action_form`` reopen a refused action's form."""
    principal = principal_of(page)
    row = members.get_member(session, member_id=member_id)
    member = members.to_read(row, principal)
    edit_open = form is not None
    form = form or _profile_form(member)
    today = local_today(page.app.clock, page.tz.key)
    fmt = page.formatter
    calendar, month, day = member.birthday_calendar, member.birth_month, member.birth_day
    leap = member.birth_leap_month
    params = {k: v[:12] for k, v in page.request.query_params.items()}
    limits = {name: ledger_limit(params, name) for name in LEDGERS}
    view = gather(session, page, row, limits=limits)
    return render(
        page, "members/detail.html", status=status, member=member, form=form,
        merge_form=merge_form or Form(fields=frozenset(MERGE_FIELDS)),
        history=members.consent_history(session, member_id=member_id),
        stores=members.list_stores(session), store_names=_store_names(session),
        birthday_text=fmt.birthday(calendar=calendar, year=member.birth_year, month=month,
                                   day=day, leap_month=leap),
        next_birthday=fmt.next_birthday(calendar=calendar, month=month, day=day,
                                        leap_month=leap, today=today),
        ann_rows=_anniversary_rows(form), edit_open=edit_open,
        is_active=member.status == MemberStatus.ACTIVE.value,
        v=view, L360=LABELS_360, action=action,
        action_forms=action_forms(page, action, action_form),
        options=action_options(page, view),
        portrait=portraits.member_profile(session, member_id=member_id),
    )


@router.get("/members/{member_id}")
def member_page(page: SignedInPage, session: Db, member_id: uuid.UUID) -> Response:
    return _render_member(page, session, member_id)


@router.get("/members/{member_id}/section/{name}")
def member_section(page: SignedInPage, session: Db, member_id: uuid.UUID,
                   name: str) -> Response:
    """One ledger of the member page with more rows ("More" swaps it in with htmx)."""
    if name not in LEDGERS:
        raise NotFound("No such section", "name")
    principal = principal_of(page)
    row = members.get_member(session, member_id=member_id)
    params = {k: v[:12] for k, v in page.request.query_params.items()}
    limits = dict.fromkeys(LEDGERS, LEDGER_PAGE) | \
        {name: ledger_limit(params, "limit")}
    view = gather(session, page, row, limits=limits, only=name)
    return render(page, f"members/_{name}.html", member=members.to_read(row, principal),
                  v=view, L360=LABELS_360, store_names=_store_names(session))


@router.get("/members/{member_id}/next-best")
def next_best(page: SignedInPage, session: Db, member_id: uuid.UUID) -> Response:
    """Next-best products, computed on request (it reads the sales history into the
    analytics engine, which takes seconds on a large history: the page never waits)."""
    principal_of(page)
    members.get_member(session, member_id=member_id)
    picks = next_best_products(session, page, member_id)
    return render(page, "members/_next_best.html", picks=picks)


@router.post("/members/{member_id}")
def update_member(page: SignedInPage, session: Db, data: PostedForm,
                  member_id: uuid.UUID) -> Response:
    principal = principal_of(page)
    form = Form.posted(data, PROFILE_FIELDS)
    values = _profile_input(page, form, viewer=principal, creating=False)
    updated = attempt(page, form, lambda: members.update_member(
        session, clock=page.app.clock, actor=principal, region=page.app.settings.default_region,
        member_id=member_id, data=MemberUpdate.model_validate(values)))
    if updated is None:
        session.rollback()
        return _render_member(page, session, member_id, form=form, status=422)
    session.commit()
    return redirect(page, f"/members/{member_id}", flash="member_saved")


@router.post("/members/{member_id}/consent")
def change_consent(page: SignedInPage, session: Db, data: PostedForm,
                   member_id: uuid.UUID) -> Response:
    """Grant or withdraw one channel; the history table on the profile is the evidence."""
    form = Form.posted(data, ("channel", "granted", "note"))
    try:
        channel = Channel(form.get("channel"))
    except ValueError as exc:
        raise ValidationFailed(N_("Choose one of the options"), "channel") from exc
    members.change_consent(session, clock=page.app.clock, actor=principal_of(page),
                           member_id=member_id, channel=channel,
                           granted=form.get("granted") == "1", source="admin",
                           note=form.get("note")[:500])
    session.commit()
    return redirect(page, f"/members/{member_id}#consents", flash="consent_changed")


@router.post("/members/{member_id}/delete")
def delete_member(page: SignedInPage, session: Db, _data: PostedForm,
                  member_id: uuid.UUID) -> Response:
    members.delete_member(session, clock=page.app.clock, actor=principal_of(page),
                          member_id=member_id)
    session.commit()
    return redirect(page, "/members", flash="member_deleted")


@router.post("/members/{member_id}/merge")
def merge_member(page: SignedInPage, session: Db, data: PostedForm,
                 member_id: uuid.UUID) -> Response:
    """Fold the member holding the typed card number into this one."""
    form = Form.posted(data, MERGE_FIELDS)
    card_no = form.get("duplicate_card_no")
    duplicate = members.find_by_card(session, card_no=card_no) if card_no else None
    if duplicate is None:
        form.add("duplicate_card_no", page.gettext(N_("No member has this card number")))
    merged = attempt(page, form, lambda: members.merge_members(
        session, clock=page.app.clock, actor=principal_of(page), survivor_id=member_id,
        duplicate_id=duplicate.id if duplicate else member_id),
        aliases={"duplicate_id": "duplicate_card_no"})
    if merged is None:
        session.rollback()
        return _render_member(page, session, member_id, merge_form=form, status=422)
    session.commit()
    return redirect(page, f"/members/{member_id}", flash="members_merged")
