"""What members told the demo brand: complaints, survey answers, and the calls staff made.

Complaints (about a hundred over the last year) and callback tasks (the win-back calls of
the last month, complaint follow-ups) are few, so they go through ``feedback.service``
with the clock set to each step: opened by the cashier (or the web form), taken up and
resolved by the store manager -- some with an apology coupon or points -- and closed, the
recent ones still open. Older tasks have their call logged; a few are overdue.

Survey invitations (a couple of thousand) are bulk rows like the sales they ask about:
one after a sampled member sale, at most one per member per 30 days, open for 14 days.
About half are answered. Scores are drawn so that NPS sits around +30 (about half
promoters, a fifth detractors), differs a little between stores and improves slowly over
the year, and CSAT follows the NPS answer.
"""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.core.clock import FixedClock
from patron.demo.ids import IdSource
from patron.demo.loyalty import LoyaltyRows
from patron.demo.members import MemberDraft, StoreRef
from patron.demo.programme import Programme, Staff
from patron.demo.purchases import SaleDraft, Schedule
from patron.feedback import rules as feedback_rules
from patron.feedback import service as feedback
from patron.feedback.enums import (
    CallbackReason,
    CallOutcome,
    ComplaintCategory,
    ComplaintChannel,
    ComplaintStatus,
    Severity,
    SurveyOccasion,
)
from patron.feedback.models import SurveyInvitation
from patron.feedback.schemas import ComplaintCreate

COMPLAINTS = 100  # per 20,000 members (at least 8)
SURVEY_INVITATIONS = 2_500  # per 20,000 members (at least 100)
SURVEY_ANSWERED = 0.5
SURVEY_GAP_DAYS = 30  # feedback.service.DEFAULT_SURVEY_EVERY_N_DAYS

INVITATION_COLUMNS = ("id", "member_id", "store_id", "kind", "occasion", "source_ref", "token",
                      "created_at", "expires_at")
RESPONSE_COLUMNS = ("id", "invitation_id", "csat", "nps", "comment", "answered_at")

COMPLAINT_TEXT: dict[ComplaintCategory, tuple[str, ...]] = {
    ComplaintCategory.PRODUCT: (
        "买的奶粉罐身有凹陷，担心密封有问题", "咖啡豆开袋后发现已经过了最佳赏味期",
        "猫粮袋子破了一个口，回家才发现", "面膜少了一片，包装是完整的",
        "礼盒里的月饼有一块压碎了"),
    ComplaintCategory.SERVICE: (
        "店员推荐的纸尿裤尺码不对，退换很麻烦", "想要开发票，收银员说要等很久",
        "要求帮忙磨粉被拒绝了", "打电话问到货情况一直没人接"),
    ComplaintCategory.PRICE: (
        "价签和结账价格不一致，多收了钱", "会员价没有自动生效", "满减活动结账时没有算上"),
    ComplaintCategory.WAIT_TIME: (
        "周末排队结账等了二十多分钟", "只开了一个收银台，队伍很长", "自助收银机坏了没人管"),
    ComplaintCategory.STAFF: (
        "店员态度冷淡，问问题爱答不理", "店员在货架旁边大声打电话", "理货员推车撞到了孩子"),
    ComplaintCategory.BILLING: (
        "积分这次没有到账", "储值卡扣款金额不对", "优惠券显示已使用，但我没有用过"),
    ComplaintCategory.OTHER: (
        "停车场指示不清楚", "店里空调太冷", "希望增加母婴室"),
}
CATEGORY_WEIGHTS = (0.28, 0.17, 0.14, 0.14, 0.1, 0.12, 0.05)
SEVERITY_WEIGHTS = ((Severity.LOW, 0.25), (Severity.NORMAL, 0.5), (Severity.HIGH, 0.2),
                    (Severity.CRITICAL, 0.05))
CHANNEL_WEIGHTS = ((ComplaintChannel.IN_STORE, 0.45), (ComplaintChannel.PHONE, 0.2),
                   (ComplaintChannel.WEB, 0.15), (ComplaintChannel.SMS, 0.08),
                   (ComplaintChannel.SOCIAL, 0.07), (ComplaintChannel.EMAIL, 0.05))
RESOLUTIONS = ("已为顾客更换商品并致歉", "已核实并退还差价", "已补发积分并说明原因",
               "店长已电话致歉，加强员工培训", "已调整排班，高峰时段增开收银台",
               "已联系供应商，问题批次下架")
PRAISE = ("店员很热情，推荐的咖啡豆很好喝", "结账很快", "会员积分很划算", "环境干净整洁",
          "宝宝用品种类齐全", "生日券很贴心")
NEUTRAL = ("东西不错，就是停车不方便", "价格还可以", "希望多一些促销活动")
GRIPES = ("排队太久了", "常买的牌子经常缺货", "店员不太专业", "价格比网上贵")
STORE_MOOD = {"SH01": (0.02, -0.01), "SH02": (-0.06, 0.04), "HZ01": (0.06, -0.03)}


def _weighted(rnd: random.Random, pairs: tuple[tuple[Any, float], ...]) -> Any:
    return rnd.choices([k for k, _ in pairs], weights=[w for _, w in pairs])[0]


# ---------------------------------------------------------------- surveys


def survey_rows(*, members: list[MemberDraft], sales: list[SaleDraft], when: Schedule,
                stores: list[StoreRef], programme: Programme, rng_ids: IdSource,
                rnd: random.Random) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Invitations after sampled member sales of the last year, and their answers."""
    now = programme.timeline.now
    since = now - timedelta(days=365)
    until = now - timedelta(days=1)
    pool = [i for i in when.order if since <= when.at[i] < until and sales[i].member >= 0]
    wanted = max(100, round(SURVEY_INVITATIONS * len(members) / 20_000))
    sample = sorted(rnd.sample(pool, min(len(pool), wanted * 2)),
                    key=lambda i: when.at[i])
    last: dict[int, datetime] = {}
    invitations: list[tuple[Any, ...]] = []
    responses: list[tuple[Any, ...]] = []
    for i in sample:
        if len(invitations) == wanted:
            break
        d = sales[i]
        created = when.at[i] + timedelta(minutes=rnd.randint(2, 30))
        if d.member in last and created - last[d.member] < timedelta(days=SURVEY_GAP_DAYS):
            continue
        last[d.member] = created
        store = stores[d.store]
        invitation_id = rng_ids.at(created)
        expires = feedback_rules.survey_expires_at(created)
        invitations.append((invitation_id, members[d.member].id, store.id, "csat_nps",
                            SurveyOccasion.SALE.value, str(when.sale_ids[i]),
                            rng_ids.token(feedback_rules.TOKEN_BYTES), created, expires))
        answered = created + timedelta(hours=rnd.expovariate(1 / 10))
        if rnd.random() >= SURVEY_ANSWERED or answered >= min(expires, now):
            continue
        csat, nps, comment = _answer(rnd, store.code, (created - since) / (now - since))
        responses.append((rng_ids.at(answered), invitation_id, csat, nps, comment, answered))
    return invitations, responses


def _answer(rnd: random.Random, store_code: str, progress: float
            ) -> tuple[int | None, int | None, str]:
    """A CSAT/NPS answer; ``progress`` (0..1 through the year) lifts scores slowly."""
    lift, drag = STORE_MOOD.get(store_code, (0.0, 0.0))
    promoter = 0.49 + lift + 0.06 * progress
    detractor = 0.19 + drag - 0.03 * progress
    r = rnd.random()
    if r < promoter:
        nps = rnd.choice((9, 10, 10))
        csat = 5 if rnd.random() < 0.75 else 4
        comment = rnd.choice(PRAISE) if rnd.random() < 0.25 else ""
    elif r < 1 - detractor:
        nps = rnd.choice((7, 8, 8))
        csat = _weighted(rnd, ((4, 0.6), (5, 0.15), (3, 0.25)))
        comment = rnd.choice(NEUTRAL) if rnd.random() < 0.15 else ""
    else:
        nps = _weighted(rnd, ((6, 0.35), (5, 0.25), (4, 0.15), (3, 0.1), (2, 0.07),
                              (1, 0.04), (0, 0.04)))
        csat = _weighted(rnd, ((3, 0.4), (2, 0.3), (1, 0.15), (4, 0.15)))
        comment = rnd.choice(GRIPES) if rnd.random() < 0.45 else ""
    skip = rnd.random()
    return (None if skip < 0.04 else csat), (None if 0.04 <= skip < 0.08 else nps), comment


def survey_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(SurveyInvitation)) or 0)


# ---------------------------------------------------------------- complaints and calls


def complaints_and_calls(session: Session, *, programme: Programme, staff: Staff,
                         members: list[MemberDraft], sales: list[SaleDraft], when: Schedule,
                         stores: list[StoreRef], loyalty: LoyaltyRows,
                         rnd: random.Random) -> tuple[int, int]:
    """Complaints with their workflow, and the callback tasks; returns (complaints, tasks)."""
    t = programme.timeline
    now = t.now
    today = now.astimezone(t.tz).date()
    tasks = 0
    # the win-back calls of the last month, in the order the care rule asked for them
    for call in loyalty.winback_calls:
        task = feedback.create_callback(
            session, clock=FixedClock(call.at), actor=None, member_id=call.member_id,
            reason=CallbackReason.WIN_BACK, store_id=call.store_id, due_on=call.due_on,
            notes=f"{call.days_away} days since the last visit")
        tasks += 1
        if call.due_on < today and rnd.random() < 0.75:
            called = datetime.combine(call.due_on - timedelta(days=rnd.randint(0, 2)),
                                      time(rnd.randint(14, 19), rnd.randrange(60)),
                                      tzinfo=t.tz)
            called = max(called, call.at + timedelta(hours=2))
            outcome = _weighted(rnd, ((CallOutcome.REACHED, 0.3),
                                      (CallOutcome.WILL_RETURN, 0.3),
                                      (CallOutcome.NO_ANSWER, 0.2),
                                      (CallOutcome.NOT_INTERESTED, 0.15),
                                      (CallOutcome.WRONG_NUMBER, 0.05)))
            feedback.log_call(session, clock=FixedClock(called),
                              actor=staff.cashiers[call.store_id], task_id=task.id,
                              outcome=outcome, note="")

    since, until = now - timedelta(days=365), now - timedelta(hours=6)
    visits = [i for i in when.order if since <= when.at[i] < until and sales[i].member >= 0]
    wanted = max(8, round(COMPLAINTS * len(members) / 20_000))
    # a quarter of them from the last month, so some are still being worked on
    recent = [i for i in visits if when.at[i] >= now - timedelta(days=30)]
    chosen = set(rnd.sample(recent, min(wanted // 4, len(recent))))
    rest = [i for i in visits if i not in chosen]
    chosen.update(rnd.sample(rest, min(wanted - len(chosen), len(rest))))
    picked = sorted(chosen, key=lambda i: when.at[i])
    categories = list(COMPLAINT_TEXT)
    for i in picked:
        d = sales[i]
        store = stores[d.store]
        member = members[d.member]
        opened = when.at[i] + timedelta(hours=rnd.uniform(0.2, 5))
        channel = _weighted(rnd, CHANNEL_WEIGHTS)
        category = rnd.choices(categories, weights=CATEGORY_WEIGHTS)[0]
        severity = _weighted(rnd, SEVERITY_WEIGHTS)
        cashier = staff.cashiers[store.id] if channel in (ComplaintChannel.IN_STORE,
                                                          ComplaintChannel.PHONE) else None
        complaint = feedback.open_complaint(
            session, clock=FixedClock(opened), actor=cashier, data=ComplaintCreate(
                store_id=store.id, member_id=member.id, channel=channel, category=category,
                severity=severity, description=rnd.choice(COMPLAINT_TEXT[category])))
        target = feedback_rules.SLA_TARGETS[severity]
        manager = staff.managers[store.id]
        age = now - opened
        late = rnd.random() < 0.15  # some complaints miss their deadlines
        respond = opened + target.first_response * (rnd.uniform(1.1, 2.0) if late
                                                    else rnd.uniform(0.1, 0.8))
        if respond >= now:
            continue
        feedback.transition_complaint(session, clock=FixedClock(respond), actor=manager,
                                      complaint_id=complaint.id, to=ComplaintStatus.IN_PROGRESS,
                                      note="已联系顾客，正在处理")
        resolve = opened + target.resolution * (rnd.uniform(1.05, 1.6) if late
                                                else rnd.uniform(0.3, 0.9))
        if resolve >= now or (age < timedelta(days=14) and rnd.random() < 0.5):
            continue
        coupon = None
        if category is not ComplaintCategory.OTHER and resolve >= t.care_at \
                and rnd.random() < 0.4:  # the apology coupon exists from care_at on
            coupon = programme.apology.id
        follow = rnd.random() < 0.3
        follow_up_on = resolve.astimezone(t.tz).date() + timedelta(days=2) if follow else None
        resolution = feedback.resolve_complaint(
            session, clock=FixedClock(resolve), actor=manager, complaint_id=complaint.id,
            resolution=rnd.choice(RESOLUTIONS), coupon_template_id=coupon,
            follow_up_on=follow_up_on)
        if resolution.follow_up is not None:
            tasks += 1
            if follow_up_on is not None and follow_up_on < today and rnd.random() < 0.8:
                feedback.log_call(session, clock=FixedClock(datetime.combine(
                    follow_up_on, time(15, 30), tzinfo=t.tz)),
                    actor=staff.cashiers[store.id], task_id=resolution.follow_up.id,
                    outcome=CallOutcome.REACHED, note="顾客表示满意")
        # the complaint follow-up rule asks how it went
        invitation = feedback.invite(session, clock=FixedClock(resolve + timedelta(minutes=5)),
                                     member_id=member.id, occasion=SurveyOccasion.COMPLAINT,
                                     source_ref=str(complaint.id), store_id=store.id)
        answered = resolve + timedelta(hours=rnd.uniform(1, 40))
        if invitation is not None and answered < now and rnd.random() < 0.6:
            feedback.answer(session, clock=FixedClock(answered), token=invitation.token,
                            csat=rnd.choice((3, 4, 4, 5)), nps=rnd.choice((5, 7, 8, 9)))
        closed = resolve + timedelta(days=rnd.uniform(2, 10))
        if closed < now and rnd.random() < 0.85:
            feedback.transition_complaint(session, clock=FixedClock(closed), actor=manager,
                                          complaint_id=complaint.id, to=ComplaintStatus.CLOSED)
    _missing_points(session, programme=programme, staff=staff, members=members,
                    stores=stores, loyalty=loyalty, count=max(1, wanted // 20), rnd=rnd)
    return len(picked), tasks


def _missing_points(session: Session, *, programme: Programme, staff: Staff,
                    members: list[MemberDraft], stores: list[StoreRef], loyalty: LoyaltyRows,
                    count: int, rnd: random.Random) -> None:
    """"My points never arrived": members who have not been back since ring up, and the
    manager credits points through the complaint (``loyalty.service.adjust``).

    Only members whose points ledger has not moved since are picked, so the adjustment is
    the newest entry of the account, as it would be had it been made at the time.
    """
    t = programme.timeline
    quiet = [m for m in members if m.id in loyalty.last_points_at
             and t.now - timedelta(days=60) < loyalty.last_points_at[m.id]
             < t.now - timedelta(days=12)]
    for m in rnd.sample(quiet, min(count, len(quiet))):
        store = stores[m.home_store]
        opened = loyalty.last_points_at[m.id] + timedelta(days=rnd.uniform(1, 8))
        complaint = feedback.open_complaint(
            session, clock=FixedClock(opened), actor=staff.cashiers[store.id],
            data=ComplaintCreate(store_id=store.id, member_id=m.id,
                                 channel=ComplaintChannel.PHONE,
                                 category=ComplaintCategory.BILLING, severity=Severity.NORMAL,
                                 description="上次消费的积分没有到账"))
        feedback.resolve_complaint(
            session, clock=FixedClock(opened + timedelta(hours=rnd.uniform(3, 30))),
            actor=staff.managers[store.id], complaint_id=complaint.id,
            resolution="已核实，补发积分并致歉", points=300)


__all__ = ["complaints_and_calls", "survey_rows"]
