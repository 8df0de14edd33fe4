"""Marketing: the segment builder with its live count, and campaigns with a holdout, from
the draft (who it would reach, by the campaign's own seeded draw) to the results (each arm,
uplift with its interval, incremental revenue, a verdict in the reader's language).

For managers and owners; the campaigns service decides who may do what (a manager's
segments are limited to their own stores, and a manager's count and sample show only
their stores' members). The builder's form is ``web/marketing_forms``; the charts'
options are ``web/marketing_charts``. The live count posts the whole draft on every change
(htmx, ``change delay``) and runs in a read session, so it never takes the write lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, time
from typing import Any

from babel.numbers import get_currency_symbol
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.auth.enums import Role
from patron.campaigns import plays, stats
from patron.campaigns import service as campaigns
from patron.campaigns.models import Campaign, Segment
from patron.campaigns.schemas import (
    CampaignCreate,
    CampaignResults,
    IntervalRead,
    PlayCampaignCreate,
    SegmentCreate,
    SegmentUpdate,
)
from patron.catalog import service as catalog
from patron.core.errors import (
    FieldProblem,
    NotFound,
    PatronError,
    PermissionDenied,
    ValidationFailed,
)
from patron.core.money import minor_digits
from patron.loyalty import service as loyalty
from patron.members import rules as member_rules
from patron.members import service as members
from patron.offers import service as offers
from patron.web import marketing_charts, nav
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, translate_error
from patron.web.i18n import N_
from patron.web.marketing_forms import (
    FIELD_LABELS,
    FIELD_OP_LABELS,
    KIND_LABELS,
    OP_LABELS,
    PROBLEM_MESSAGES,
    VALUE_LABELS,
    Builder,
    Group,
    Row,
    field_groups,
    field_specs,
    new_key,
    row_from_form,
)
from patron.web.routing import web_router
from patron.web.templating import FLASHES, redirect, render

router = web_router()
nav.register(nav.NavItem("marketing", "/marketing", N_("Marketing"), "megaphone", Role.MANAGER),
             after="catalog")
FLASHES.update({
    "segment_created": N_("Segment saved."), "segment_saved": N_("Segment updated."),
    "segment_archived": N_("Segment deleted. Campaigns that used it keep their copy."),
    "campaign_created": N_("Draft campaign created. Check who it reaches, then launch it."),
    "campaign_launched": N_("Campaign launched."),
    "campaign_cancelled": N_("Campaign cancelled."),
})

SAMPLE_SIZE = 5
STATUS_LABELS = {
    "draft": N_("Draft"), "scheduled": N_("Scheduled"), "sending": N_("Sending"),
    "sent": N_("Sent"), "recurring": N_("Recurring"), "paused": N_("Paused"),
    "cancelled": N_("Cancelled"),
}
SCHEDULE_LABELS = {"now": N_("Send now"), "at": N_("Send at a set time"),
                   "weekly": N_("Every week")}
WEEKDAYS = (N_("Monday"), N_("Tuesday"), N_("Wednesday"), N_("Thursday"), N_("Friday"),
            N_("Saturday"), N_("Sunday"))
REASON_LABELS = {
    "no_consent": N_("No consent for the channel"), "no_contact": N_("No phone or e-mail"),
    "pending": N_("Not sent yet"), "coupon_unavailable": N_("Coupon unavailable"),
    "campaign_cancelled": N_("Campaign cancelled"), "campaign_paused": N_("Campaign paused"),
    "member_inactive": N_("Member no longer active"),
}
VERDICT_TEXTS = {
    "positive": N_("The campaign raised the %(what)s: %(estimate)s (%(level)s interval "
                   "%(low)s to %(high)s)."),
    "negative": N_("The campaign lowered the %(what)s: %(estimate)s (%(level)s interval "
                   "%(low)s to %(high)s)."),
    "no_measurable_effect": N_("No measurable effect yet on the %(what)s: %(estimate)s "
                               "(%(level)s interval %(low)s to %(high)s) includes zero."),
    "insufficient_data": N_("Not enough members in one of the arms to estimate the "
                            "%(what)s."),
}
VERDICT_TITLES = {"positive": N_("It worked"), "negative": N_("It did harm"),
                  "no_measurable_effect": N_("No measurable effect yet"),
                  "insufficient_data": N_("Not enough data")}


def _digits(page: Page) -> int:
    return minor_digits(page.app.settings.currency)


def _tz(page: Page) -> str:
    return page.app.settings.default_timezone


@router.get("/marketing")
def marketing_home(page: SignedInPage) -> Response:
    campaigns.require_staff(principal_of(page))
    return redirect(page, "/marketing/campaigns")


# ---------------------------------------------------------------- segments


@router.get("/marketing/segments")
def segments_page(page: SignedInPage, session: Db) -> Response:
    actor = principal_of(page)
    rows = campaigns.list_segments(session, actor=actor)
    counts = {s.id: campaigns.count_members(session, clock=page.app.clock, actor=actor,
                                            rules=s.rules, tz=_tz(page)).count for s in rows}
    return render(page, "marketing/segments.html", segments=rows, counts=counts)


def _choices(page: Page, session: Session, builder: Builder) -> dict[str, list[tuple[str, str]]]:
    """The options of the list-valued fields (only the sources the rows use are read);
    a value already chosen stays offered even if it is no longer in the list."""
    actor = principal_of(page)
    wanted = {spec.source_for(row.of) for row in builder.all_rows()
              if (spec := row.spec) is not None and spec.widget == "source"}
    out: dict[str, list[tuple[str, str]]] = {}
    if "tiers" in wanted:
        out["tiers"] = [(t.code, t.name) for t in loyalty.list_tiers(session)]
    if "stores" in wanted:
        visible = actor.visible_store_ids()
        out["stores"] = [(str(s.id), s.name) for s in members.list_stores(session)
                         if visible is None or s.id in visible]
    if "tags" in wanted:
        out["tags"] = [(t, t) for t in campaigns.tag_choices(session, actor=actor)]
    if "products" in wanted:
        products, _total = catalog.list_products(session, query=catalog.ProductQuery(
            active=None, page_size=catalog.MAX_PAGE_SIZE))
        out["products"] = [(str(p.id), f"{p.name} ({p.sku})") for p in products]
    if "categories" in wanted:
        out["categories"] = [(str(c.id), c.name) for c in catalog.list_categories(session)]
    if "templates" in wanted:
        out["templates"] = [(str(t.id), t.name)
                            for t in offers.list_templates(session, include_inactive=True)]
    for row in builder.all_rows():
        spec = row.spec
        source = spec.source_for(row.of) if spec is not None else None
        if source is not None:
            known = {value for value, _label in out.setdefault(source, [])}
            out[source].extend((v, v) for v in row.values if v not in known)
    return out


def _builder_context(page: Page, session: Session, builder: Builder) -> dict[str, Any]:
    return {"builder": builder, "field_groups": field_groups(), "specs": field_specs(),
            "choices": _choices(page, session, builder), "FIELD_LABELS": FIELD_LABELS,
            "KIND_LABELS": KIND_LABELS, "OP_LABELS": OP_LABELS,
            "FIELD_OP_LABELS": FIELD_OP_LABELS, "VALUE_LABELS": VALUE_LABELS,
            "currency_symbol": get_currency_symbol(page.app.settings.currency,
                                                   locale=page.formatter.locale)}


def _builder_page(page: Page, session: Session, *, builder: Builder, form: Form,
                  segment: Segment | None, status: int = 200) -> Response:
    return render(page, "marketing/segment_builder.html", status=status, form=form,
                  segment=segment, **_builder_context(page, session, builder))


def _problem_text(page: Page) -> Callable[[FieldProblem], str]:
    def text(problem: FieldProblem) -> str:
        friendly = PROBLEM_MESSAGES.get(problem.code)
        if friendly is not None:
            return page.gettext(friendly)
        return translate_error(page, problem.message, problem.code)
    return text


def _parsed(page: Page, builder: Builder, *, draft: bool) -> dict[str, Any] | None:
    """The builder's rules, checked by the rule language's parser; problems land on the
    rows they name. None when there is nothing (valid) to evaluate."""
    from patron.campaigns import segments

    rules, paths = builder.to_rules(digits=_digits(page), skip_incomplete=draft)
    if rules is None:
        if not draft and builder.ok:
            builder.general.append(page.gettext(N_("Add at least one condition")))
        return None
    try:
        segments.parse_rules(rules)
    except ValidationFailed as exc:
        builder.place_problems(exc.problems, paths, _problem_text(page))
    return rules if builder.ok else None


def _new_builder(page: Page) -> Builder:
    """An empty builder; a manager's starts with their stores, which it must keep."""
    actor = principal_of(page)
    builder = Builder()
    if not actor.all_stores:
        builder.rows.append(Row(key=new_key("r"), field="home_store",
                                values=sorted(str(s) for s in actor.store_ids)))
    builder.rows.append(Row(key=new_key("r")))
    return builder


@router.get("/marketing/segments/new")
def new_segment_page(page: SignedInPage, session: Db) -> Response:
    campaigns.require_staff(principal_of(page))
    return _builder_page(page, session, builder=_new_builder(page),
                         form=Form(fields=frozenset({"name", "description"})), segment=None)


def _save_segment(page: Page, session: Session, data: FormData,
                  segment_id: uuid.UUID | None) -> Response:
    actor = principal_of(page)
    form = Form.posted(data, ("name", "description"))
    builder = Builder.from_form(data)
    rules = _parsed(page, builder, draft=False)
    if not form.get("name"):
        form.add("name", page.gettext(N_("Name is required")))
    saved: Segment | None = None
    if rules is not None and form.ok:
        try:
            if segment_id is None:
                saved = campaigns.create_segment(
                    session, clock=page.app.clock, actor=actor, data=SegmentCreate(
                        name=form.get("name"), description=form.get("description"),
                        rules=rules))
            else:
                saved = campaigns.update_segment(
                    session, clock=page.app.clock, actor=actor, segment_id=segment_id,
                    data=SegmentUpdate(name=form.get("name"),
                                       description=form.get("description"), rules=rules))
        except PermissionDenied:
            raise
        except ValidationError as exc:
            for err in exc.errors():
                name = str(err["loc"][0]) if err["loc"] else None
                form.add(name, translate_error(page, err["msg"], "invalid"))
        except PatronError as exc:
            if exc.field == "rules" and exc.code in PROBLEM_MESSAGES:
                builder.general.append(page.gettext(PROBLEM_MESSAGES[exc.code]))
            else:
                form.add_patron_error(page, exc)
    if saved is None:
        session.rollback()
        existing = None if segment_id is None else campaigns.get_segment(
            session, actor=actor, segment_id=segment_id)
        return _builder_page(page, session, builder=builder, form=form, segment=existing,
                             status=422)
    session.commit()
    return redirect(page, f"/marketing/segments/{saved.id}",
                    flash="segment_created" if segment_id is None else "segment_saved")


@router.post("/marketing/segments/new")
def create_segment(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    return _save_segment(page, session, data, None)


@router.post("/marketing/segments/count")
def count_fragment(page: SignedInPage, data: PostedForm) -> Response:
    """The live count and a sample of a draft (htmx), with each row's problems swapped in
    beside it (out of band)."""
    actor = principal_of(page)
    campaigns.require_staff(actor)
    builder = Builder.from_form(data)
    rules = _parsed(page, builder, draft=True)
    count = sample = None
    if rules is not None:
        with page.app.db.read() as session:
            count = campaigns.count_members(session, clock=page.app.clock, actor=actor,
                                            rules=rules, tz=_tz(page))
            sample = campaigns.sample_members(session, clock=page.app.clock, actor=actor,
                                              rules=rules, tz=_tz(page), limit=SAMPLE_SIZE)
    masked = [] if sample is None else [
        (m, m.phone if m.phone and "*" in m.phone else member_rules.mask_phone(m.phone))
        for m in sample.members]
    return render(page, "marketing/_count.html", builder=builder, count=count, sample=masked)


@router.post("/marketing/segments/row")
def row_fragment(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    """One row again, after its field or op changed (its inputs depend on them)."""
    campaigns.require_staff(principal_of(page))
    key = data.get("row_key")
    row = row_from_form(data, key if isinstance(key, str) and key.isalnum() else new_key("r"))
    spec = row.spec
    if spec is not None and row.op not in spec.ops:
        row.op = ""
    if spec is not None and spec.widget == "bool" and not row.values:
        row.values = ["true"]
    builder = Builder(rows=[row])
    response = render(page, "marketing/_row.html", row=row,
                      **_builder_context(page, session, builder))
    response.headers["HX-Trigger"] = "rules-changed"
    return response


@router.post("/marketing/segments/row/new")
def new_row_fragment(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    campaigns.require_staff(principal_of(page))
    group = data.get("target_group")
    row = Row(key=new_key("r"), group=group if isinstance(group, str) and group.isalnum()
              else "")
    return render(page, "marketing/_row.html", row=row,
                  **_builder_context(page, session, Builder(rows=[row])))


@router.post("/marketing/segments/group/new")
def new_group_fragment(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    campaigns.require_staff(principal_of(page))
    group = Group(key=new_key("g"), op="any")
    group.rows.append(Row(key=new_key("r"), group=group.key))
    return render(page, "marketing/_group.html", group=group,
                  **_builder_context(page, session, Builder(groups=[group])))


@router.post("/marketing/segments/removed")
def removed(page: SignedInPage, data: PostedForm) -> Response:
    """A row or group was taken out (htmx deletes it): tell the live count."""
    campaigns.require_staff(principal_of(page))
    return Response(status_code=200, headers={"HX-Trigger": "rules-changed"})


@router.get("/marketing/segments/{segment_id}")
def segment_page(page: SignedInPage, session: Db, segment_id: uuid.UUID) -> Response:
    segment = campaigns.get_segment(session, actor=principal_of(page), segment_id=segment_id)
    form = Form.initial({"name": segment.name, "description": segment.description},
                        ("name", "description"))
    builder = Builder.from_rules(segment.rules, digits=_digits(page))
    return _builder_page(page, session, builder=builder, form=form, segment=segment)


@router.post("/marketing/segments/{segment_id}")
def save_segment(page: SignedInPage, session: Db, data: PostedForm,
                 segment_id: uuid.UUID) -> Response:
    return _save_segment(page, session, data, segment_id)


@router.post("/marketing/segments/{segment_id}/delete")
def delete_segment(page: SignedInPage, session: Db, data: PostedForm,
                   segment_id: uuid.UUID) -> Response:
    campaigns.archive_segment(session, clock=page.app.clock, actor=principal_of(page),
                              segment_id=segment_id)
    session.commit()
    return redirect(page, "/marketing/segments", flash="segment_archived")


# ---------------------------------------------------------------- campaigns

CAMPAIGN_FIELDS = ("name", "source", "channel", "en_subject", "en_body", "en_sms",
                   "zh_subject", "zh_body", "zh_sms", "coupon_template_id", "holdout_pct",
                   "attribution_days", "schedule", "send_at", "weekday", "send_time")
#: Where the service's field names appear on the form.
CAMPAIGN_ALIASES = {
    "segment_id": "source", "messages.en.subject": "en_subject", "messages.en.body": "en_body",
    "messages.en.sms": "en_sms", "messages.zh_CN.subject": "zh_subject",
    "messages.zh_CN.body": "zh_body", "messages.zh_CN.sms": "zh_sms", "messages": "en_body",
}


@router.get("/marketing/campaigns")
def campaigns_page(page: SignedInPage, session: Db) -> Response:
    actor = principal_of(page)
    rows = campaigns.list_campaigns(session, actor=actor)
    counts = campaigns.arm_counts(session, campaign_ids=[c.id for c in rows])
    names = {s.id: s.name for s in campaigns.list_segments(session, actor=actor,
                                                           include_archived=True)}
    return render(page, "marketing/campaigns.html", campaigns=rows, counts=counts,
                  segment_names=names, STATUS_LABELS=STATUS_LABELS)


def _campaign_form_page(page: Page, session: Session, form: Form, status: int = 200
                        ) -> Response:
    actor = principal_of(page)
    return render(page, "marketing/campaign_new.html", status=status, form=form,
                  segments=campaigns.list_segments(session, actor=actor), plays=plays.PLAYS,
                  templates=offers.list_templates(session),
                  SCHEDULE_LABELS=SCHEDULE_LABELS, WEEKDAYS=WEEKDAYS)


@router.get("/marketing/campaigns/new")
def new_campaign_page(page: SignedInPage, session: Db, segment: str = "") -> Response:
    campaigns.require_staff(principal_of(page))
    form = Form.initial({"source": f"segment:{segment}" if segment else "", "channel": "sms",
                         "holdout_pct": "10", "attribution_days": "14", "schedule": "now",
                         "send_time": "10:00"}, CAMPAIGN_FIELDS)
    return _campaign_form_page(page, session, form)


def _messages(form: Form) -> dict[str, dict[str, str]]:
    out = {}
    for language, prefix in (("en", "en"), ("zh_CN", "zh")):
        text = {part: form.get(f"{prefix}_{part}") for part in ("subject", "body", "sms")}
        if any(text.values()):
            out[language] = text
    return out


def _number(page: Page, form: Form, name: str, *, whole: bool) -> float | int | None:
    raw = form.get(name)
    if not raw:
        return None
    try:
        return int(raw) if whole else float(raw)
    except ValueError:
        form.add(name, page.gettext(N_("Enter a whole number") if whole
                                    else N_("Enter a number")))
        return None


def _send_at(page: Page, form: Form) -> datetime | None:
    """``send_at`` typed in the viewer's local time (datetime-local)."""
    raw = form.get("send_at")
    if not raw or form.get("schedule") != "at":
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=page.tz)
    except ValueError:
        form.add("send_at", page.gettext(N_("Enter a date and time")))
        return None


def _campaign_data(page: Page, form: Form) -> dict[str, Any]:
    """The posted form as ``CampaignCreate`` input (fields left empty are left out, so
    the schema's defaults apply)."""
    schedule = form.get("schedule") or "now"
    values: dict[str, Any] = {
        "name": form.get("name"), "channel": form.get("channel") or "sms",
        "messages": _messages(form), "schedule": schedule,
        "coupon_template_id": form.get("coupon_template_id") or None,
        "holdout_pct": _number(page, form, "holdout_pct", whole=False),
        "attribution_days": _number(page, form, "attribution_days", whole=True),
        "send_at": _send_at(page, form)}
    if schedule == "weekly":
        values["weekday"] = _number(page, form, "weekday", whole=True)
        try:
            values["send_time"] = time.fromisoformat(form.get("send_time") or "10:00")
        except ValueError:
            form.add("send_time", page.gettext(N_("Enter a time such as 10:00")))
    return {k: v for k, v in values.items() if v is not None}


def _add_errors(page: Page, form: Form, exc: ValidationError | PatronError,
                aliases: Mapping[str, str]) -> None:
    if isinstance(exc, PatronError):
        form.add_patron_error(page, exc, aliases)
        return
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        name = aliases.get(path, path)
        kind = str(err.get("type", ""))
        message = PROBLEM_MESSAGES.get(kind)
        form.add(name, page.gettext(message) if message else err["msg"])


@router.post("/marketing/campaigns/new")
def create_campaign(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    actor = principal_of(page)
    form = Form.posted(data, CAMPAIGN_FIELDS)
    values = _campaign_data(page, form)
    source = form.get("source")
    sending = campaigns.send_context(page.app.settings, page.app.clock)
    made: Campaign | None = None
    if not source:
        form.add("source", page.gettext(N_("Choose a segment or a play")))
    if form.ok:
        try:
            if source.startswith("play:"):
                play_values = {k: values[k] for k in ("name", "channel", "coupon_template_id",
                                                      "holdout_pct") if k in values}
                if not play_values.get("name"):
                    play_values.pop("name", None)
                made = campaigns.create_from_play(
                    session, clock=page.app.clock, actor=actor, code=source[5:],
                    data=PlayCampaignCreate.model_validate(play_values),
                    renderer=sending.renderer)
            else:
                values["segment_id"] = source.removeprefix("segment:")
                made = campaigns.create_campaign(
                    session, clock=page.app.clock, actor=actor,
                    data=CampaignCreate.model_validate(values), renderer=sending.renderer)
        except PermissionDenied:
            raise
        except (ValidationError, PatronError) as exc:
            _add_errors(page, form, exc, CAMPAIGN_ALIASES)
    if made is None:
        session.rollback()
        return _campaign_form_page(page, session, form, status=422)
    session.commit()
    return redirect(page, f"/marketing/campaigns/{made.id}", flash="campaign_created")


def _interval_text(page: Page, interval: IntervalRead | None, *, scale: float,
                   unit: str) -> str:
    if interval is None:
        return "—"
    return page.gettext(N_("%(estimate)s (from %(low)s to %(high)s)"),
                        estimate=f"{interval.estimate * scale:+.2f}{unit}",
                        low=f"{interval.low * scale:+.2f}{unit}",
                        high=f"{interval.high * scale:+.2f}{unit}")


def verdict_sentence(page: Page, code: str, interval: IntervalRead | None, *, what: str,
                     unit: str, scale: float, confidence: float) -> str:
    """The verdict of ``stats.verdict`` in the page's language (the service's text is
    English): the same rule, positive or negative only when the interval excludes zero."""
    if interval is None:
        code = "insufficient_data"
    sentence = VERDICT_TEXTS[code]
    if interval is None:
        return page.gettext(sentence, what=page.gettext(what))
    return page.gettext(sentence, what=page.gettext(what),
                        estimate=f"{interval.estimate * scale:+.2f}{unit}",
                        low=f"{interval.low * scale:+.2f}{unit}",
                        high=f"{interval.high * scale:+.2f}{unit}",
                        level=f"{confidence * 100:g} %")


def _results_context(page: Page, session: Session, campaign: Campaign) -> dict[str, Any]:
    actor = principal_of(page)
    report: CampaignResults = campaigns.results(session, clock=page.app.clock, actor=actor,
                                                campaign_id=campaign.id,
                                                currency=page.app.settings.currency)
    series = campaigns.conversion_series(session, clock=page.app.clock, actor=actor,
                                         campaign_id=campaign.id)
    major = 10.0 ** -_digits(page)
    currency = page.app.settings.currency
    verdicts = [
        (VERDICT_TITLES[report.verdict.code], report.verdict.code, verdict_sentence(
            page, report.verdict.code, report.uplift.revenue_per_member_minor,
            what=N_("revenue per member"), unit=f" {currency}", scale=major,
            confidence=report.confidence)),
        (VERDICT_TITLES[report.conversion_verdict.code], report.conversion_verdict.code,
         verdict_sentence(page, report.conversion_verdict.code, report.uplift.conversion,
                          what=N_("conversion rate"), unit=page.gettext(N_(" pt")),
                          scale=100, confidence=report.confidence))]
    bars = []
    if report.uplift.conversion is not None:
        c = report.uplift.conversion
        bars.append(marketing_charts.Bar(page.gettext(N_("Conversion rate")),
                                         page.gettext(N_("points")), c.estimate * 100,
                                         c.low * 100, c.high * 100))
    if report.uplift.revenue_per_member_minor is not None:
        r = report.uplift.revenue_per_member_minor
        bars.append(marketing_charts.Bar(page.gettext(N_("Revenue per member")), currency,
                                         r.estimate * major, r.low * major, r.high * major))
    uplift_chart = marketing_charts.uplift(bars, zero_label=page.gettext(N_("no effect")))
    conversion_chart = marketing_charts.cumulative_conversion(
        series.days, [(page.gettext(N_("Treatment")), series.treatment),
                      (page.gettext(N_("Control")), series.control)],
        day_label=page.gettext(N_("Day %(day)s")))
    intervals = {
        "conversion": _interval_text(page, report.uplift.conversion, scale=100,
                                     unit=page.gettext(N_(" pt"))),
        "conversion_relative": _interval_text(page, report.uplift.conversion_relative,
                                              scale=100, unit=" %"),
        "revenue": _interval_text(page, report.uplift.revenue_per_member_minor, scale=major,
                                  unit=f" {currency}"),
        "revenue_relative": _interval_text(page, report.uplift.revenue_relative, scale=100,
                                           unit=" %"),
        "incremental": _interval_text(page, report.economics.incremental_revenue_minor,
                                      scale=major, unit=f" {currency}"),
        "margin": _interval_text(page, report.economics.incremental_margin_minor,
                                 scale=major, unit=f" {currency}"),
        "roi": _interval_text(page, report.economics.roi, scale=100, unit=" %"),
    }
    return {"report": report, "verdicts": verdicts, "intervals": intervals,
            "uplift_chart": uplift_chart if bars else None,
            "conversion_chart": conversion_chart if series.days else None,
            "min_arm": stats.MIN_ARM}


@router.get("/marketing/campaigns/{campaign_id}")
def campaign_page(page: SignedInPage, session: Db, campaign_id: uuid.UUID) -> Response:
    actor = principal_of(page)
    campaign = campaigns.get_campaign(session, actor=actor, campaign_id=campaign_id)
    try:
        segment: Segment | None = campaigns.get_segment(session, actor=actor,
                                                        segment_id=campaign.segment_id)
    except NotFound:
        segment = None
    context: dict[str, Any] = {"campaign": campaign, "segment": segment,
                               "STATUS_LABELS": STATUS_LABELS, "REASON_LABELS": REASON_LABELS,
                               "SCHEDULE_LABELS": SCHEDULE_LABELS, "WEEKDAYS": WEEKDAYS}
    if campaign.status == "draft":
        context["preview"] = campaigns.preview_arms(session, clock=page.app.clock, actor=actor,
                                                    campaign_id=campaign.id, tz=_tz(page))
    else:
        context.update(_results_context(page, session, campaign))
    return render(page, "marketing/campaign.html", **context)


@router.post("/marketing/campaigns/{campaign_id}/launch")
def launch_campaign(page: SignedInPage, session: Db, data: PostedForm,
                    campaign_id: uuid.UUID) -> Response:
    campaigns.launch(session, campaigns.send_context(page.app.settings, page.app.clock),
                     actor=principal_of(page), campaign_id=campaign_id,
                     checkpoint=session.commit)
    session.commit()
    return redirect(page, f"/marketing/campaigns/{campaign_id}", flash="campaign_launched")


@router.post("/marketing/campaigns/{campaign_id}/cancel")
def cancel_campaign(page: SignedInPage, session: Db, data: PostedForm,
                    campaign_id: uuid.UUID) -> Response:
    campaigns.cancel(session, clock=page.app.clock, actor=principal_of(page),
                     campaign_id=campaign_id)
    session.commit()
    return redirect(page, f"/marketing/campaigns/{campaign_id}", flash="campaign_cancelled")
