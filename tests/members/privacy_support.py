"""A member with something in every domain, and a scan of the whole database for strings.

``rich_member`` gives the privacy tests a member whose personal data reaches as many tables
as patron has: a sale (points earned, a coupon redeemed), a wallet top-up, coupons, queued
and sent messages, an SMS reply, a complaint with its history, a call-back with a call, a
survey answer, a sign-in code, a referral code, consent changes with notes, a staff note,
tags and an anniversary. ``find_strings`` then reads every column of every table (a table
added later is read too) and reports where any of the given strings still appears.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.registry import Base
from patron.feedback import service as feedback
from patron.feedback.enums import (
    CallbackReason,
    CallOutcome,
    ComplaintCategory,
    ComplaintChannel,
    SurveyOccasion,
)
from patron.feedback.schemas import ComplaintCreate
from patron.loyalty import service as loyalty
from patron.members import notes, otp
from patron.members import service as members
from patron.members.enums import Channel
from patron.members.models import Member
from patron.messaging import service as messaging
from patron.offers import service as offers
from patron.offers.enums import CouponKind, Validity
from patron.offers.schemas import CouponTemplateCreate
from patron.sales import service as sales
from patron.sales.schemas import LineIn, PaymentsIn, SaleCreate
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder
from tests.factories import World, make_member, make_product

TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)
SECRET = "test-secret-for-otp-hashing-0123456789"


@dataclass
class Rich:
    member: Member
    phone_national: str
    phone_e164: str
    name: str
    email: str
    card_no: str
    secrets: list[str]  # every personal string that must be gone after an erasure


def rich_member(session: Session, clock: FixedClock, world: World,
                phone: str = "13987654321") -> Rich:
    """A member of store A with data in every domain (see the module docstring)."""
    tag = uuid.uuid4().hex[:6]
    name, email = f"Zhao Xiaoyu {tag}", f"zhao.{tag}@example.com"
    cashier = auth.principal_for_user(world.cashier_a)
    manager = auth.principal_for_user(world.manager_a)
    owner = auth.principal_for_user(world.owner)
    member = make_member(session, clock, world.store_a, name=name, phone=phone, email=email,
                         birthday_calendar="solar", birth_year=1990, birth_month=5,
                         birth_day=17, preferences=f"likes oolong {tag}",
                         tags=[f"tea-{tag}"], sms_consent=True, email_consent=True,
                         anniversaries=[{"kind": "wedding", "label": f"wedding {tag}",
                                         "on": date(2015, 6, 1)}])
    e164 = member.phone or ""
    members.change_consent(session, clock=clock, actor=manager, member_id=member.id,
                           channel=Channel.EMAIL, granted=False, source="admin",
                           note=f"asked by phone {phone}")
    members.change_consent(session, clock=clock, actor=manager, member_id=member.id,
                           channel=Channel.EMAIL, granted=True, source="admin",
                           note=f"{name} changed her mind")
    loyalty.update_program(session, clock=clock, actor=owner, changes={
        "points_per_major": 1, "pending_days": 0, "points_per_major_redeemed": 100})
    product = make_product(session, price_minor=12_000)
    wallet.top_up(session, clock=clock, actor=cashier, member_id=member.id,
                  amount_minor=50_000, store_id=world.store_a.id)
    template = offers.create_template(session, clock=clock, actor=manager, data=(
        CouponTemplateCreate(name="Ten off", kind=CouponKind.FIXED, amount_minor=1_000,
                             validity=Validity.DAYS, valid_days=30)))
    coupons = offers.issue_coupons(session, clock=clock, actor=manager,
                                   template_id=template.id, member_id=member.id, count=2)
    sale = sales.checkout(session, clock=clock, actor=cashier, till=TILL, data=SaleCreate(
        member_id=member.id, lines=[LineIn(sku=product.sku, quantity=2)],
        coupon_codes=[coupons[0].code],
        payments=PaymentsIn(cash_minor=13_000, wallet_minor=10_000)))
    messaging.enqueue(session, clock=clock, messages=[
        messaging.Outgoing(dedupe_key=f"receipt:{sale.id}", channel="sms",
                           purpose="transactional", template="receipt", language="en",
                           recipient=e164, body=f"Dear {name}, thank you",
                           member_id=member.id, store_id=world.store_a.id,
                           payload={"sms_params": {"name": name}}),
        messaging.Outgoing(dedupe_key=f"promo:{tag}", channel="email", purpose="marketing",
                           template="promo", language="en", recipient=email,
                           subject=f"For {name}", body=f"Hello {name}",
                           html=f"<p>Hello {name}</p>", member_id=member.id,
                           store_id=world.store_a.id),
    ])
    messaging.receive_sms(session, clock=clock, sender=e164,
                          text=f"this is {name}, call me", region="CN")
    complaint = feedback.open_complaint(session, clock=clock, actor=cashier, data=(
        ComplaintCreate(member_id=member.id, channel=ComplaintChannel.PHONE,
                        category=ComplaintCategory.SERVICE,
                        description=f"{name} says the tea was cold; call {phone}",
                        contact=email)))
    feedback.resolve_complaint(session, clock=clock, actor=manager, complaint_id=complaint.id,
                               resolution=f"apologised to {name}")
    task = feedback.create_callback(session, clock=clock, actor=manager, member_id=member.id,
                                    reason=CallbackReason.MANUAL,
                                    notes=f"call {name} on {phone}")
    feedback.log_call(session, clock=clock, actor=cashier, task_id=task.id,
                      outcome=CallOutcome.REACHED, note=f"spoke to {name}")
    invitation = feedback.invite(session, clock=clock, member_id=member.id,
                                 occasion=SurveyOccasion.SALE, source_ref=str(sale.id))
    assert invitation is not None
    feedback.answer(session, clock=clock, token=invitation.token, csat=4,
                    comment=f"{name} liked it, mail {email}")
    otp.issue(session, clock=clock, secret=SECRET, region="CN", phone=phone, client="10.0.0.9")
    offers.referral_code_for(session, clock=clock, member_id=member.id)
    notes.add_note(session, clock=clock, principal=cashier, member_id=member.id,
                   body=f"{name} takes oat milk; call {phone} before delivery")
    session.flush()
    secrets = [name, email, e164, phone, f"likes oolong {tag}", f"tea-{tag}",
               f"wedding {tag}"]
    return Rich(member, phone, e164, name, email, member.card_no, secrets)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def find_strings(session: Session, needles: list[str]) -> list[str]:
    """Where any of ``needles`` appears in any column of any table: ``table.column: needle``.

    Reads every table of the metadata (not a list), so a table added later is checked too.
    """
    found: list[str] = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)).mappings():
            for column, value in row.items():
                text = _text(value)
                found += [f"{table.name}.{column}: {n}" for n in needles if n and n in text]
    return sorted(set(found))
