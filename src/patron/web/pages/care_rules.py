"""Care rules in the admin: each rule as a card with its switch, its settings and a preview
of the message it sends, rendered by messaging's renderer in Chinese and English.

The owner switches rules brand-wide; a manager switches them for their own stores (a store
override, as ``care.service.set_rule`` allows). The page shows the settings in force for
the scope chosen (brand, or one store) and saves them through the service, which checks
every value; the switch and the settings post with htmx and get the card back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.care import holidays
from patron.care import service as care
from patron.core.errors import NotFound, PatronError
from patron.core.money import minor_digits
from patron.members import service as members
from patron.members.models import Store
from patron.messaging import service as messaging
from patron.messaging.templates import (
    BrandView,
    MemberView,
    Purpose,
    RenderedMessage,
    StoreView,
    default_renderer,
    normalise_language,
)
from patron.offers import service as offers
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, attempt, translate_error
from patron.web.i18n import N_
from patron.web.routing import web_router
from patron.web.templating import redirect, render

router = web_router()

#: What each rule is called and what it does, in the order the page shows them.
RULE_TEXTS: dict[str, tuple[str, str]] = {
    "receipt": (N_("Receipt"), N_("A receipt after every purchase, with points earned and "
                                  "balances.")),
    "birthday": (N_("Birthday"), N_("A greeting on the member's birthday, solar or lunar "
                                    "(农历), with a gift coupon if one is chosen.")),
    "anniversary": (N_("Anniversary"), N_("The day they joined, and anniversaries recorded "
                                          "on the member (a wedding, a founding day).")),
    "holiday": (N_("Holidays"), N_("Greetings on public and lunar holidays.")),
    "points_expiring": (N_("Points expiring"), N_("A warning before points run out.")),
    "tier_upgraded": (N_("Tier upgrade"), N_("Congratulations on reaching a higher tier.")),
    "membership_renewal": (N_("Membership renewal"), N_("A reminder before a paid membership "
                                                        "ends.")),
    "replenishment": (N_("Replenishment"), N_("A reminder before a member runs out of what "
                                              "they buy regularly, timed to their own "
                                              "cycle.")),
    "winback": (N_("Win-back"), N_("An invitation to valuable members who have stayed away, "
                                   "and a call from their store.")),
    "survey": (N_("Survey"), N_("A short satisfaction survey (CSAT and NPS) after a visit.")),
    "complaint_followup": (N_("Complaint follow-up"), N_("A message once a complaint is "
                                                         "resolved.")),
}

#: Labels of the settings (keys of ``care.service.RULES``).
SETTING_LABELS: dict[str, str] = {
    "channels": N_("Channels"),
    "requires_consent": N_("Only to members who agreed to messages"),
    "days_before": N_("Days before"),
    "membership": N_("Include membership anniversaries"),
    "holidays": N_("Holidays"),
    "prior_strength": N_("Weight of the product's usual cycle"),
    "history_days": N_("Purchase history read (days)"),
    "days_away": N_("Away for at least (days)"),
    "min_spend_minor": N_("Spent at least"),
    "spend_window_days": N_("Spend counted over (days)"),
    "repeat_after_days": N_("Invite again after (days)"),
    "coupon_template_id": N_("Gift coupon"),
    "callback": N_("Ask the store to call"),
    "callback_due_days": N_("Call within (days)"),
    "after_sale": N_("Ask after a sale"),
    "every_days": N_("At most once every (days)"),
    "survey": N_("Include a survey"),
}
SCOPE_BRAND = "brand"


@dataclass(frozen=True)
class Setting:
    """One editable setting of a rule: its key, how it is entered, its current value."""

    key: str
    kind: str  # channels, holidays, coupon, bool, int, float, money
    value: Any
    text: str  # what a number field shows: money in major units, exactly


@dataclass(frozen=True)
class Preview:
    language: str
    message: RenderedMessage | None
    error: str | None


@dataclass(frozen=True)
class RuleCard:
    code: str
    template: str
    marketing: bool
    enabled: bool
    settings: list[Setting]
    previews: list[Preview]


def _kind(key: str, default: Any) -> str:
    if key == "channels":
        return "channels"
    if key == "holidays":
        return "holidays"
    if key.endswith("_template_id"):
        return "coupon"
    if isinstance(default, bool):
        return "bool"
    if key.endswith("_minor"):
        return "money"
    return "float" if isinstance(default, float) else "int"


def _store_scope(page: Page, session: Session, raw: str | None) -> Store | None:
    """The scope asked for: ``brand`` (owners only) or a store the viewer runs.

    A manager without a choice gets their first store; an owner gets the brand.
    """
    principal = principal_of(page)
    require_role(principal, Role.MANAGER, users_only=True)
    if raw in (None, "") and principal.role is Role.OWNER:
        return None
    if raw == SCOPE_BRAND:
        require_role(principal, Role.OWNER, users_only=True)
        return None
    if raw in (None, ""):
        store_id = principal.default_store_id
    else:
        try:
            store_id = uuid.UUID(raw)
        except ValueError:
            raise NotFound("No such store", "store") from None
    if store_id is None:  # a manager without a store
        raise NotFound("No such store", "store")
    require_store(principal, store_id)
    return members.get_store(session, store_id=store_id)


def _preview_member(page: Page, session: Session, form: Form) -> MemberView | None:
    """A real member to preview with (name and card): by card number typed on the page,
    or by id from a link; the sample member otherwise."""
    member = None
    if card := form.get("card"):
        member = members.find_by_card(session, card_no=card)
        if member is None:
            form.add("card", page.gettext(N_("No member has this card number")))
    elif raw := form.get("member"):
        try:
            member = members.get_member(session, member_id=uuid.UUID(raw))
        except (ValueError, NotFound):
            form.add("member", page.gettext(N_("No member found")))
    return MemberView(name=member.name, card_no=member.card_no) if member else None


def _previews(page: Page, template: str, member: MemberView | None,
              store: Store | None) -> list[Preview]:
    """The rule's message in the viewer's language first, then the other one."""
    settings = page.app.settings
    renderer = default_renderer(normalise_language(settings.default_language))
    brand = BrandView(name=settings.brand_name, currency=settings.currency)
    store_view = (StoreView(name=store.name, phone=store.phone or "", address=store.address,
                            timezone=store.timezone) if store is not None else None)
    languages = [page.language] + [lang for lang in ("zh_CN", "en") if lang != page.language]
    out = []
    for language in languages:
        try:
            rendered = renderer.preview(template, language=language, member=member,
                                        brand=brand, store=store_view)
            out.append(Preview(language, rendered, None))
        except PatronError as exc:
            out.append(Preview(language, None, translate_error(page, exc.message, exc.code)))
    return out


def _card(page: Page, session: Session, code: str, store: Store | None,
          member: MemberView | None) -> RuleCard:
    config = care.rule_config(session, code, store.id if store else None)
    renderer = default_renderer(normalise_language(page.app.settings.default_language))
    spec = renderer.spec(code)
    digits = minor_digits(page.app.settings.currency)
    settings = []
    for key, default in care.RULES[code].items():
        if key == "enabled":
            continue
        kind, value = _kind(key, default), config.get(key, default)
        text = (str(Decimal(int(value)).scaleb(-digits)) if kind == "money"
                else str(value) if kind in ("int", "float") else "")
        settings.append(Setting(key, kind, value, text))
    return RuleCard(code=code, template=code, marketing=spec.purpose is Purpose.MARKETING,
                    enabled=bool(config["enabled"]), settings=settings,
                    previews=_previews(page, code, member, store))


def _context(page: Page, session: Session, store: Store | None) -> dict[str, Any]:
    """What every card needs besides itself: the scope, the choices, the quiet hours."""
    principal = principal_of(page)
    policy = messaging.policy_for_display(session)
    currency = page.app.settings.currency
    return {
        "store": store,
        "scope": str(store.id) if store else SCOPE_BRAND,
        "stores": [s for s in members.list_stores(session) if principal.can_access_store(s.id)],
        "policy": policy,
        "holidays": list(holidays.HOLIDAYS.values()),
        "coupon_templates": offers.list_templates(session),
        "rule_texts": RULE_TEXTS,
        "setting_labels": SETTING_LABELS,
        "money_step": str(Decimal(1).scaleb(-minor_digits(currency))),
    }


@router.get("/care")
def care_home(page: SignedInPage) -> Response:
    """The care section: rules for managers, the call list for everyone else."""
    principal = principal_of(page)
    return redirect(page, "/care/rules" if principal.role is not Role.CASHIER
                    else "/care/callbacks")


@router.get("/care/rules")
def rules_page(page: SignedInPage, session: Db) -> Response:
    params = page.request.query_params
    store = _store_scope(page, session, params.get("store"))
    lookup = Form(values={k: params.get(k, "").strip()[:64] for k in ("card", "member")
                          if params.get(k, "").strip()}, fields=frozenset({"card", "member"}))
    member = _preview_member(page, session, lookup)
    cards = [_card(page, session, code, store, member) for code in RULE_TEXTS]
    return render(page, "care/rules.html", status=200 if lookup.ok else 422, cards=cards,
                  forms={}, lookup=lookup, **_context(page, session, store))


def _render_card(page: Page, session: Session, code: str, store: Store | None,
                 form: Form | None, status: int = 200, saved: bool = False) -> Response:
    """The card alone for an htmx swap; without htmx, back to the page (after a change)
    or the whole page with the form's errors."""
    if not page.is_htmx and form is None:
        scope = str(store.id) if store else SCOPE_BRAND
        return redirect(page, f"/care/rules?store={scope}#rule-{code}")
    card = _card(page, session, code, store, None)
    context = _context(page, session, store)
    if not page.is_htmx:
        cards = [card if c == code else _card(page, session, c, store, None)
                 for c in RULE_TEXTS]
        return render(page, "care/rules.html", status=status, cards=cards,
                      forms={code: form}, lookup=Form(), **context)
    return render(page, "care/_rule_card.html", status=status, card=card, form=form,
                  saved=saved, **context)


def _rule_code(code: str) -> str:
    if code not in care.RULES:
        raise NotFound(f"No care rule {code!r}", "code")
    return code


def _set(page: Page, session: Session, principal: Principal, code: str, store: Store | None,
         enabled: bool, config: dict[str, Any]) -> dict[str, Any]:
    return care.set_rule(session, clock=page.app.clock, actor=principal, code=code,
                         enabled=enabled, config=config, store_id=store.id if store else None)


@router.post("/care/rules/{code}/enabled")
def toggle_rule(page: SignedInPage, session: Db, data: PostedForm, code: str) -> Response:
    """Switch a rule on or off in the scope of the form (``enabled`` is ``1`` or ``0``)."""
    code = _rule_code(code)
    form = Form.posted(data, ("enabled", "store"))
    store = _store_scope(page, session, form.get("store"))
    enabled = form.get("enabled") == "1"
    _set(page, session, principal_of(page), code, store, enabled, {})
    session.commit()
    return _render_card(page, session, code, store, None)


def _parse_settings(page: Page, form: Form, code: str, currency: str) -> dict[str, Any]:
    """The posted settings of a rule as the service takes them; a value that is not even
    a number is marked on its field here, everything else the service judges."""
    config: dict[str, Any] = {}
    for key, default in care.RULES[code].items():
        kind = _kind(key, default)
        if key == "enabled":
            continue
        if kind in ("channels", "holidays"):
            config[key] = form.getlist(key)
        elif kind == "coupon":
            config[key] = form.get(key) or None
        elif kind == "bool":
            config[key] = form.checked(key)
        else:
            raw = form.get(key)
            if not raw:
                form.add(key, page.gettext(N_("This field is required")))
                continue
            try:
                number = Decimal(raw)
            except InvalidOperation:
                form.add(key, page.gettext(N_("This value is not valid")))
                continue
            if not number.is_finite():
                form.add(key, page.gettext(N_("This value is not valid")))
            elif kind == "money":
                minor = number.scaleb(minor_digits(currency))
                if minor != minor.to_integral_value():
                    form.add(key, page.gettext(N_("Too many decimal places")))
                else:
                    config[key] = int(minor)
            elif kind == "int":
                if number != number.to_integral_value():
                    form.add(key, page.gettext(N_("Enter a whole number")))
                else:
                    config[key] = int(number)
            else:
                config[key] = float(number)
    return config


@router.post("/care/rules/{code}")
def save_rule(page: SignedInPage, session: Db, data: PostedForm, code: str) -> Response:
    """Save a rule's settings in the scope of the form; its switch stays as it is."""
    code = _rule_code(code)
    fields = tuple(k for k in care.RULES[code] if k != "enabled")
    form = Form.posted(data, (*fields, "store"))
    store = _store_scope(page, session, form.get("store"))
    config = _parse_settings(page, form, code, page.app.settings.currency)
    current = care.rule_config(session, code, store.id if store else None)
    saved = attempt(page, form, lambda: _set(page, session, principal_of(page), code, store,
                                             bool(current["enabled"]), config),
                    aliases={f"config.{k}": k for k in fields})
    if saved is None:
        session.rollback()
        return _render_card(page, session, code, store, form, status=422)
    session.commit()
    return _render_card(page, session, code, store, None, saved=True)
