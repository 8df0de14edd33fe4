"""Member pages: the searchable list, enrolment, the profile with edits, consents,
soft delete and merge.

Every member shown goes through ``members.to_read(member, principal)``, which masks the
phone for cashiers; templates never see a ``Member`` row.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth.principal import Principal
from patron.core.clock import local_today
from patron.core.errors import ValidationFailed
from patron.members import service as members
from patron.members.enums import Calendar, Channel, MemberStatus
from patron.members.schemas import MemberCreate, MemberRead, MemberUpdate
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, attempt, split_tags
from patron.web.i18n import N_
from patron.web.routing import web_router
from patron.web.templating import redirect, render

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


# ---------------------------------------------------------------- profile


def _render_member(page: Page, session: Session, member_id: uuid.UUID, *,
                   form: Form | None = None, merge_form: Form | None = None,
                   status: int = 200) -> Response:
    principal = principal_of(page)
    member = members.to_read(members.get_member(session, member_id=member_id), principal)
    edit_open = form is not None
    form = form or _profile_form(member)
    today = local_today(page.app.clock, page.tz.key)
    fmt = page.formatter
    calendar, month, day = member.birthday_calendar, member.birth_month, member.birth_day
    leap = member.birth_leap_month
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
    )


@router.get("/members/{member_id}")
def member_page(page: SignedInPage, session: Db, member_id: uuid.UUID) -> Response:
    return _render_member(page, session, member_id)


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
