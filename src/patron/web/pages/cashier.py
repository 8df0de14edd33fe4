"""The cashier's till: find the member, ring up the basket, take coupons, points, stored
value and the rest in cash or card, check out, print the receipt; enrol a new member.

The sale being rung up lives in the page itself: hidden fields carry the member, the lines,
the applied coupons and the payment split, and every change (a scan, +/-, a coupon) posts
the whole form and gets the sale panel back priced by ``sales.quote`` -- the same rules
checkout books. Nothing is stored until "Check out", which goes through ``sales.checkout``
under the page's Idempotency-Key with the same ``core.idempotency`` machinery as
``POST /api/v1/sales``: a double click or a retry after a timeout gets the first receipt,
and nothing is booked twice.

Members are shown through ``members.to_read``, so a cashier sees a masked phone.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from patron.api.routers.sales import till_config
from patron.auth.principal import Principal
from patron.catalog import service as catalog
from patron.core import idempotency
from patron.core.errors import FieldProblem, NotFound, PatronError, ValidationFailed
from patron.core.money import minor_digits
from patron.loyalty import service as loyalty
from patron.members import service as members
from patron.members.enums import MemberStatus
from patron.members.models import Member
from patron.members.schemas import MemberCreate, MemberRead
from patron.offers import service as offers
from patron.offers.enums import CouponStatus
from patron.sales import service as sales
from patron.sales.schemas import LineIn, PaymentsIn, Receipt, SaleCreate, SaleQuote
from patron.wallet import service as wallet
from patron.web import nav
from patron.web.deps import Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, translate_error
from patron.web.i18n import N_
from patron.web.pages.selfservice import member_from_token
from patron.web.routing import web_router
from patron.web.templating import render

router = web_router()

nav.register(nav.NavItem("cashier", "/cashier", N_("Cashier"), "card"), after="dashboard")

MAX_LINES = 200
MAX_COUPONS = 5
PRODUCT_MATCHES = 8
MEMBER_MATCHES = 8
TILL_FIELDS = ("member_q", "product_q", "coupon_code", "points", "wallet", "card", "lines",
               "payments", "new_name", "new_phone", "new_email", "new_birthday")
ENROL_ALIASES = {"name": "new_name", "phone": "new_phone", "email": "new_email",
                 "birth_year": "new_birthday", "birth_month": "new_birthday",
                 "birth_day": "new_birthday", "birthday_calendar": "new_birthday"}

#: What the till says for a refusal, by the service's stable error code (the service's
#: own sentences are for integrators and carry raw minor units).
TILL_MESSAGES = {
    "coupon_unknown": N_("No coupon has this code"),
    "coupon_expired": N_("This coupon has expired"),
    "coupon_not_yet_valid": N_("This coupon is not valid yet"),
    "coupon_void": N_("This coupon was voided"),
    "coupon_already_redeemed": N_("This coupon has already been used"),
    "coupon_other_member": N_("This coupon belongs to another member"),
    "coupon_member_required": N_("This coupon is for members: find the member first"),
    "coupon_member_limit_reached": N_("The member has used this offer as often as allowed"),
    "coupon_min_spend_not_met": N_("The basket does not reach this coupon's minimum spend"),
    "coupon_nothing_in_scope": N_("Nothing in the basket is covered by this coupon"),
    "coupon_no_discount": N_("This coupon takes nothing off this basket"),
    "coupon_not_combinable": N_("This coupon can't be combined with the others applied"),
    "unknown_member": N_("No active member found"),
    "unknown_product": N_("Unknown product"),
    "inactive_product": N_("This product is not on sale"),
    "membership_needs_member": N_("A paid membership is sold to a member: find them first"),
    "payments_mismatch": N_("The payments do not add up to the total"),
    "idempotency_in_progress": N_("This sale is being checked out already; wait a moment"),
    "idempotency_key_reused": N_("This sale was already checked out; start a new sale"),
    "total_changed": N_("The total changed since it was shown; check it with the customer"),
}


# ---------------------------------------------------------------- the sale in the page


@dataclass
class Till:
    """The sale being rung up, as the page's hidden fields carry it between requests."""

    key: str
    store_id: uuid.UUID | None = None
    member_id: uuid.UUID | None = None
    lines: list[tuple[uuid.UUID, int]] = field(default_factory=list)  # (product, quantity)
    coupons: list[str] = field(default_factory=list)
    points: int = 0
    wallet_minor: int = 0
    card_minor: int = 0
    expected_total: int | None = None

    def sale(self, *, cash_minor: int = 0) -> SaleCreate:
        return SaleCreate(
            store_id=self.store_id, member_id=self.member_id,
            lines=[LineIn(product_id=pid, quantity=qty) for pid, qty in self.lines],
            coupon_codes=self.coupons, points_to_redeem=self.points,
            payments=PaymentsIn(cash_minor=cash_minor, card_minor=self.card_minor,
                                wallet_minor=self.wallet_minor))

    def add(self, product_id: uuid.UUID, quantity: int = 1) -> None:
        """Scanning a product again adds one to its line, as a till should."""
        for i, (pid, qty) in enumerate(self.lines):
            if pid == product_id:
                self.lines[i] = (pid, min(qty + quantity, 9_999))
                return
        if len(self.lines) < MAX_LINES:
            self.lines.append((product_id, quantity))


def parse_money(raw: str, currency: str) -> int:
    """An amount typed in major units ("12.5", "¥1,200") as minor units; ValueError if not."""
    text = "".join(ch for ch in raw if ch.isdigit() or ch in ".-")
    if not text:
        return 0
    try:
        major = Decimal(text)
    except InvalidOperation:
        raise ValueError(raw) from None
    minor = major.scaleb(minor_digits(currency))
    if minor != minor.to_integral_value() or minor < 0:
        raise ValueError(raw)
    return int(minor)


def format_major(amount_minor: int, currency: str) -> str:
    """Minor units as the plain number the amount fields take ("12.50")."""
    if not amount_minor:
        return ""
    return str(Decimal(amount_minor).scaleb(-minor_digits(currency)))


def _till_from(page: Page, form: Form, principal: Principal) -> Till:
    """Read the hidden state leniently: the page wrote it, a bad value is dropped."""
    currency = page.app.settings.currency
    till = Till(key=form.get("key") or str(uuid.uuid4()))
    store = form.uuid_value(page, "store_id") if form.get("store_id") else None
    till.store_id = store if store and principal.can_access_store(store) else \
        principal.default_store_id
    if form.get("member_id"):
        try:
            till.member_id = uuid.UUID(form.get("member_id"))
        except ValueError:
            till.member_id = None
    quantities = form.getlist("line_qty")
    for i, raw in enumerate(form.getlist("line_product")[:MAX_LINES]):
        try:
            product_id = uuid.UUID(raw)
        except ValueError:
            continue
        qty_text = quantities[i] if i < len(quantities) else "1"
        qty = int(qty_text) if qty_text.isdigit() else 1
        if qty > 0:
            till.add(product_id, min(qty, 9_999))
    seen: set[str] = set()
    for code in form.getlist("coupon"):
        normal = code.strip().upper()
        if normal and normal not in seen and len(till.coupons) < MAX_COUPONS:
            seen.add(normal)
            till.coupons.append(normal)
    points = form.get("points").replace(",", "")
    if points:
        if points.isdigit():
            till.points = int(points)
        else:
            form.add("points", page.gettext(N_("Enter a whole number of points")))
    for name in ("wallet", "card"):
        try:
            setattr(till, f"{name}_minor", parse_money(form.get(name), currency))
        except ValueError:
            form.add(name, page.gettext(N_("Enter an amount like 12.50")))
    expected = form.get("expected_total")
    till.expected_total = int(expected) if expected.lstrip("-").isdigit() else None
    return till


# ---------------------------------------------------------------- what the page shows


@dataclass
class MemberFacts:
    """The member panel: who, their tier and progress, points, stored value, coupons."""

    member: MemberRead
    points_available: int
    points_pending: int
    wallet_minor: int
    tier_name: str | None
    next_tier_name: str | None
    next_tier_remaining: int | None
    progress_pct: int
    tier_basis: str
    coupons: list[offers.CouponView]


def _member_facts(session: Session, page: Page, member: Member) -> MemberFacts:
    clock = page.app.clock
    points = loyalty.balance(session, clock=clock, member_id=member.id)
    current, nxt, value = loyalty.tier_progress(session, clock=clock, member_id=member.id)
    program = loyalty.get_program(session, clock=clock)
    now = clock.now()
    usable = [c for c in offers.list_member_coupons(session, member_id=member.id,
                                                    status=CouponStatus.ISSUED)
              if offers.is_usable(c, now=now)]
    progress = 100
    if nxt is not None and nxt.threshold > 0:
        progress = max(0, min(100, value * 100 // nxt.threshold))
    return MemberFacts(
        member=members.to_read(member, principal_of(page)), points_available=points.available,
        points_pending=points.pending,
        wallet_minor=wallet.balance(session, member_id=member.id).total_minor,
        tier_name=current.name if current else None, next_tier_name=nxt.name if nxt else None,
        next_tier_remaining=max(0, nxt.threshold - value) if nxt else None,
        progress_pct=progress, tier_basis=program.tier_basis,
        coupons=offers.describe(session, coupons=usable))


@dataclass
class Priced:
    """The quote of the basket and what the page derives from it."""

    quote: SaleQuote | None
    cash_minor: int
    max_points: int

    @property
    def due_minor(self) -> int:
        """What cash, card and stored value must cover: the total less the points."""
        return self.quote.total_minor - self.quote.points_value_minor if self.quote else 0


def _problem_field(name: str) -> str:
    """Where a service's field lands on the till form."""
    if name in ("member_id", "card_no", "phone"):
        return "member_q"
    if name.startswith("lines"):
        return "lines"
    if name == "coupon_codes":
        return "coupon_code"
    if name == "points_to_redeem":
        return "points"
    if name == "payments.wallet_minor":
        return "wallet"
    if name.startswith("payments"):
        return "payments"
    return name


def _message(page: Page, problem: FieldProblem) -> str:
    if problem.code in TILL_MESSAGES:
        return page.gettext(TILL_MESSAGES[problem.code])
    return translate_error(page, problem.message, problem.code)


def add_error(page: Page, form: Form, exc: PatronError, facts: MemberFacts | None) -> None:
    """A refusal on the field it is about, in the till's words and the page's money."""
    fmt = page.formatter
    for problem in exc.problems or [FieldProblem("", exc.message, exc.code)]:
        name = _problem_field(problem.field)
        if problem.code == "insufficient_balance" and name == "wallet" and facts:
            text = page.gettext(N_("Not enough stored value: the member has %(amount)s"),
                                amount=fmt.money(facts.wallet_minor))
        elif problem.code == "insufficient_balance" and name == "points" and facts:
            text = page.gettext(N_("Not enough points: the member has %(points)s available"),
                                points=fmt.number(facts.points_available))
        elif name == "points" and problem.message.startswith("Redeem points in multiples of"):
            step = problem.message.rsplit(" ", 1)[-1]
            text = page.gettext(N_("Redeem points in multiples of %(step)s"), step=step)
        else:
            text = _message(page, problem)
        form.add(name or None, text)


def _max_points(session: Session, page: Page, facts: MemberFacts | None, due: int) -> int:
    """The most points the member can put towards ``due`` (whole redeemable steps)."""
    if facts is None or facts.points_available <= 0 or due <= 0:
        return 0
    program = loyalty.get_program(session, clock=page.app.clock)
    per_major = int(program.points_per_major_redeemed)
    minor_per_major: int = 10 ** minor_digits(page.app.settings.currency)
    if per_major <= 0:
        return 0
    # p points are worth p * minor_per_major / per_major minor units: a whole number
    # exactly when p is a multiple of this step
    step = per_major // math.gcd(per_major, minor_per_major)
    value_per_step = step * minor_per_major // per_major
    steps = min(facts.points_available // step, due // value_per_step)
    return steps * step


def _price(session: Session, page: Page, till: Till, form: Form,
           facts: MemberFacts | None) -> Priced:
    """Quote the basket; a coupon the quote refuses is taken off with the reason shown."""
    if not till.lines:
        return Priced(None, 0, 0)
    ctx = page.app
    actor = principal_of(page)
    for _ in range(MAX_COUPONS + 1):
        try:
            quote = sales.quote(session, clock=ctx.clock, actor=actor, till=till_config(ctx),
                                data=till.sale())
            break
        except PatronError as exc:
            if exc.field == "coupon_codes" and till.coupons:
                bad = _failing_coupon(session, page, till)
                text = _message(page, exc.problems[0]) if exc.problems else exc.message
                form.add("coupon_code", f"{bad}: {text}" if bad else text)
                till.coupons = [c for c in till.coupons if c != bad] if bad else []
                continue
            if exc.field == "points_to_redeem":
                add_error(page, form, exc, facts)
                till.points = 0
                continue
            add_error(page, form, exc, facts)
            return Priced(None, 0, 0)
    else:  # pragma: no cover - each round removes a coupon or the points
        return Priced(None, 0, 0)
    due = quote.total_minor - quote.points_value_minor
    cash = due - till.wallet_minor - till.card_minor
    if facts and till.wallet_minor > facts.wallet_minor:
        form.add("wallet", page.gettext(N_("Not enough stored value: the member has %(amount)s"),
                                        amount=page.formatter.money(facts.wallet_minor)))
    elif till.wallet_minor and facts is None:
        form.add("wallet", page.gettext(N_("Stored value needs a member: find them first")))
    if cash < 0:
        form.add("card" if till.card_minor else "wallet",
                 page.gettext(N_("Card and stored value are more than the %(amount)s due"),
                              amount=page.formatter.money(due)))
    max_points = _max_points(session, page, facts, quote.total_minor)
    return Priced(quote, max(0, cash), max_points)


def _failing_coupon(session: Session, page: Page, till: Till) -> str | None:
    """The first applied coupon that the basket refuses (coupons are tried in order)."""
    ctx = page.app
    for n in range(1, len(till.coupons) + 1):
        trial = Till(key=till.key, store_id=till.store_id, member_id=till.member_id,
                     lines=till.lines, coupons=till.coupons[:n])
        try:
            sales.quote(session, clock=ctx.clock, actor=principal_of(page),
                        till=till_config(ctx), data=trial.sale())
        except PatronError as exc:
            if exc.field == "coupon_codes":
                return till.coupons[n - 1]
            return None
    return None


def _active_member(session: Session, member_id: uuid.UUID | None) -> Member | None:
    if member_id is None:
        return None
    try:
        member = members.get_member(session, member_id=member_id)
    except NotFound:
        return None
    return member if member.status == MemberStatus.ACTIVE.value else None


def _render(page: Page, session: Session, till: Till, form: Form, *,
            matches: list[MemberRead] | None = None, status: int | None = None,
            focus: str = "product-q", full: bool | None = None) -> Response:
    """The till (or, for htmx, its sale panel) priced again; 422 when anything was refused."""
    member = _active_member(session, till.member_id)
    if member is None:
        till.member_id = None
    facts = _member_facts(session, page, member) if member else None
    priced = _price(session, page, till, form, facts)
    products = catalog.get_products(session, ids={pid for pid, _ in till.lines})
    member_coupon_codes = {view.coupon.code for view in facts.coupons} if facts else set()
    principal = principal_of(page)
    stores = [s for s in members.list_stores(session) if principal.can_access_store(s.id)]
    context: dict[str, Any] = {
        "till": till, "form": form, "facts": facts, "priced": priced, "products": products,
        "matches": matches or [], "extra_coupons": [c for c in till.coupons
                                                   if c not in member_coupon_codes],
        "stores": stores, "focus": focus,
        "wallet_text": form.get("wallet") if form.error("wallet") else
        format_major(till.wallet_minor, page.app.settings.currency),
        "card_text": form.get("card") if form.error("card") else
        format_major(till.card_minor, page.app.settings.currency),
    }
    if status is None:
        status = 422 if form.errors or form.general else 200
    if full is None:
        full = not page.is_htmx
    template = "cashier/till.html" if full else "cashier/_sale.html"
    return render(page, template, status=status, **context)


def _blank_form() -> Form:
    return Form(fields=frozenset(TILL_FIELDS))


# ---------------------------------------------------------------- the till


@router.get("/cashier")
def till_page(page: SignedInPage) -> Response:
    """A new sale, with a fresh Idempotency-Key; the member search has the focus."""
    principal = principal_of(page)
    till = Till(key=str(uuid.uuid4()), store_id=principal.default_store_id)
    with page.app.db.read() as session:
        if till.store_id is None:
            stores = members.list_stores(session)
            till.store_id = stores[0].id if stores else None
        return _render(page, session, till, _blank_form(), focus="member-q", full=True)


def _find(session: Session, page: Page, till: Till, form: Form, query: str
          ) -> tuple[list[MemberRead], str]:
    """Find by phone, last 4 digits, card number, or a scanned self-service link."""
    principal = principal_of(page)
    query = query.strip()
    if not query:
        form.add("member_q", page.gettext(N_("Type a phone number, its last 4 digits or a "
                                             "card number")))
        return [], "member-q"
    scanned = member_from_token(session, page, query)
    if scanned is not None:
        till.member_id = scanned.id
        return [], "product-q"
    try:
        rows, _total = members.search_members(
            session, query=members.MemberQuery(q=query[:100], page_size=MEMBER_MATCHES),
            region=page.app.settings.default_region)
    except ValidationFailed:
        rows = []
    if len(rows) == 1:
        if till.member_id != rows[0].id:
            till.coupons, till.points, till.wallet_minor = [], 0, 0
        till.member_id = rows[0].id
        return [], "product-q"
    if not rows:
        form.add("member_q", page.gettext(N_("No member found")))
        return [], "member-q"
    return [members.to_read(m, principal) for m in rows], "member-q"


def _add_product(session: Session, page: Page, till: Till, form: Form, op_arg: str,
                 query: str) -> None:
    if op_arg:
        try:
            product = catalog.get_product(session, product_id=uuid.UUID(op_arg))
        except (ValueError, NotFound):
            form.add("product_q", page.gettext(N_("Unknown product")))
            return
    else:
        found = catalog.search_products(session, q=query, limit=1) if query.strip() else []
        if not found:
            form.add("product_q", page.gettext(N_("No product matches “%(query)s”"),
                                               query=query.strip()[:40]))
            return
        product = found[0]
    if not product.active:
        form.add("product_q", page.gettext(N_("This product is not on sale")))
        return
    till.add(product.id)


def _enrol(session: Session, page: Page, till: Till, form: Form) -> bool:
    """Enrol the customer at the till; True when they became this sale's member."""
    principal = principal_of(page)
    birthday = form.date_value(page, "new_birthday")
    data: dict[str, Any] = {
        "name": form.get("new_name"), "phone": form.get("new_phone"),
        "email": form.text("new_email"), "home_store_id": till.store_id,
        "sms_consent": form.checked("new_sms"), "email_consent": form.checked("new_email_ok"),
    }
    if birthday is not None:
        data |= {"birthday_calendar": "solar", "birth_year": birthday.year,
                 "birth_month": birthday.month, "birth_day": birthday.day}
    if not form.ok:
        return False
    try:
        member = members.enroll_member(session, clock=page.app.clock, actor=principal,
                                       region=page.app.settings.default_region,
                                       data=MemberCreate.model_validate(data))
    except ValidationError as exc:
        form.add_validation_error(page, exc, ENROL_ALIASES)
        return False
    except PatronError as exc:
        form.add_patron_error(page, exc, ENROL_ALIASES)
        return False
    till.member_id = member.id
    return True


@router.post("/cashier")
def update_till(page: SignedInPage, data: PostedForm) -> Response:
    """Apply one change to the sale (the ``op`` of the button or key pressed) and answer
    with the sale panel priced again (the whole page without JavaScript)."""
    principal = principal_of(page)
    form = Form.posted(data, TILL_FIELDS)
    till = _till_from(page, form, principal)
    op, _, arg = form.get("op", "recalc").partition(":")
    scan = form.get("scan")
    if op == "enter":  # Enter without JavaScript: act on whichever box has text
        op = ("find" if form.get("member_q") else "add" if form.get("product_q")
              else "coupon" if form.get("coupon_code") else "recalc")
    matches: list[MemberRead] = []
    # a field priced again keeps the focus where the cashier is (htmx restores it); an
    # action moves it to where the next keystroke belongs
    focus = "keep" if op == "recalc" else "product-q"
    keep = {"member_q": False, "product_q": False, "coupon_code": False}
    if op == "enrol":
        with page.app.db.write() as session:
            if _enrol(session, page, till, form):
                till.coupons, till.points, till.wallet_minor = [], 0, 0
                form.values = {k: v for k, v in form.values.items() if not k.startswith("new_")}
            else:
                session.rollback()
                focus = "new-name"
        # the enrolment is committed; price the sale in a fresh transaction
    with page.app.db.read() as session:
        if op == "find":
            matches, focus = _find(session, page, till, form, scan or form.get("member_q"))
            keep["member_q"] = bool(matches) or bool(form.error("member_q"))
        elif op == "member" and arg:
            try:
                till.member_id = uuid.UUID(arg)
            except ValueError:
                till.member_id = None
            till.coupons, till.points, till.wallet_minor = [], 0, 0
        elif op == "unmember":
            till.member_id, till.coupons, till.points, till.wallet_minor = None, [], 0, 0
            focus = "member-q"
        elif op == "add":
            _add_product(session, page, till, form, arg, scan or form.get("product_q"))
            keep["product_q"] = bool(form.error("product_q"))
        elif op in ("inc", "dec", "del") and arg.isdigit() and int(arg) < len(till.lines):
            i = int(arg)
            pid, qty = till.lines[i]
            qty = qty + 1 if op == "inc" else qty - 1 if op == "dec" else 0
            if qty > 0:
                till.lines[i] = (pid, min(qty, 9_999))
            else:
                del till.lines[i]
        elif op == "coupon":
            code = form.get("coupon_code").replace(" ", "").upper()
            if not code:
                form.add("coupon_code", page.gettext(N_("Type or scan a coupon code")))
            elif code not in till.coupons:
                if len(till.coupons) >= MAX_COUPONS:
                    form.add("coupon_code", page.gettext(N_("At most 5 coupons per sale")))
                else:
                    till.coupons.append(code)
            focus = "coupon-code"
        elif op in ("wallet_max", "rest_card", "rest_cash", "points_max"):
            _fill(session, page, till, form, op)
            focus = {"wallet_max": "pay-wallet", "points_max": "points"}.get(op, "pay-card")
        elif op == "enrol":
            focus = focus if focus == "new-name" else "product-q"
        for name, kept in keep.items():
            if not kept:
                form.values.pop(name, None)
        return _render(page, session, till, form, matches=matches, focus=focus)


def _fill(session: Session, page: Page, till: Till, form: Form, op: str) -> None:
    """The quick payment buttons: all the stored value that fits, the rest by card or cash,
    as many points as the member has and the total allows."""
    member = _active_member(session, till.member_id)
    facts = _member_facts(session, page, member) if member else None
    probe = Form(fields=form.fields)
    saved = (till.points, till.wallet_minor, till.card_minor)
    if op == "points_max":
        till.points, till.wallet_minor, till.card_minor = 0, 0, 0
    priced = _price(session, page, till, probe, facts)
    till.points, till.wallet_minor, till.card_minor = saved
    if priced.quote is None:
        return
    due = priced.due_minor
    if op == "wallet_max" and facts:
        till.wallet_minor = max(0, min(facts.wallet_minor, due - till.card_minor))
    elif op == "rest_card":
        till.card_minor = max(0, due - till.wallet_minor)
    elif op == "rest_cash":
        till.card_minor = 0
    elif op == "points_max":
        till.points = priced.max_points
        till.wallet_minor = till.card_minor = 0


@router.get("/cashier/products")
def product_matches(page: SignedInPage) -> Response:
    """Type-ahead: the first few products whose SKU or name starts with what was typed."""
    principal_of(page)
    query = page.request.query_params.get("product_q", "").strip()[:64]
    with page.app.db.read() as session:
        found = catalog.search_products(session, q=query, limit=PRODUCT_MATCHES) \
            if query else []
        return render(page, "cashier/_products.html", found=found, query=query)


# ---------------------------------------------------------------- check out


class TotalChanged(ValidationFailed):
    def __init__(self) -> None:
        super().__init__("The total changed since it was shown", "payments",
                         code="total_changed")


@router.post("/cashier/checkout")
def checkout(page: SignedInPage, data: PostedForm) -> Response:
    """Book the sale once per Idempotency-Key, then show its receipt.

    The quote, the check that the total is still the one the cashier saw, and the sale all
    run in the one transaction that stores the key, so a second click (or a retry) finds
    the key and gets the first sale's receipt instead of booking it again.
    """
    principal = principal_of(page)
    ctx = page.app
    form = Form.posted(data, TILL_FIELDS)
    till = _till_from(page, form, principal)
    if not till.lines:
        form.add("lines", page.gettext(N_("Add a product first")))
    if form.ok:
        body = json.dumps({"sale": till.sale().model_dump(mode="json"),
                           "expected_total": till.expected_total}, sort_keys=True).encode()

        def work(session: Session) -> tuple[int, bytes]:
            quote = sales.quote(session, clock=ctx.clock, actor=principal,
                                till=till_config(ctx), data=till.sale())
            if till.expected_total is not None and quote.total_minor != till.expected_total:
                raise TotalChanged
            cash = quote.total_minor - quote.points_value_minor - till.wallet_minor \
                - till.card_minor
            if cash < 0:
                raise ValidationFailed("Card and stored value are more than the total",
                                       "payments", code="payments_mismatch")
            sale = sales.checkout(session, clock=ctx.clock, actor=principal,
                                  till=till_config(ctx), data=till.sale(cash_minor=cash))
            receipt = sales.receipt(session, clock=ctx.clock, sale=sale,
                                    currency=ctx.settings.currency)
            return 201, receipt.model_dump_json().encode()

        try:
            key = idempotency.check_key(till.key)
            stored = idempotency.run(
                ctx.db, clock=ctx.clock, scope=f"{principal.kind.value}:{principal.id}",
                key=key, fingerprint_=idempotency.fingerprint("POST", "/cashier/checkout",
                                                              body),
                work=work, lease=timedelta(seconds=ctx.settings.idempotency_lease_seconds))
        except PatronError as exc:
            with ctx.db.read() as session:
                member = _active_member(session, till.member_id)
                facts = _member_facts(session, page, member) if member else None
                add_error(page, form, exc, facts)
                return _render(page, session, till, form, status=422, focus="pay-card")
        sale_id = Receipt.model_validate_json(stored.body).sale_id
        url = f"/cashier/sales/{sale_id}"
        if page.is_htmx:
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)
    with ctx.db.read() as session:
        return _render(page, session, till, form)


@router.get("/cashier/sales/{sale_id}")
def receipt_page(page: SignedInPage, sale_id: uuid.UUID) -> Response:
    """The receipt, laid out to print on a till printer or A4 (``@media print``)."""
    principal = principal_of(page)
    ctx = page.app
    with ctx.db.read() as session:
        sale = sales.get_sale(session, actor=principal, sale_id=sale_id)
        receipt = sales.receipt(session, clock=ctx.clock, sale=sale,
                                currency=ctx.settings.currency)
        member = members.to_read(members.get_member(session, member_id=receipt.member_id),
                                 principal) if receipt.member_id else None
        store = members.get_store(session, store_id=receipt.store_id)
        basis = loyalty.get_program(session, clock=ctx.clock).tier_basis
        return render(page, "cashier/receipt.html", receipt=receipt, member=member,
                      store=store, tier_basis=basis)
