"""Pure feedback rules: SLA deadlines and state, the complaint workflow, overdue, survey
arithmetic (with hypothesis) and the invitation window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.core.clock import FixedClock
from patron.feedback import rules
from patron.feedback.enums import CallbackStatus, ComplaintStatus, Severity, SlaState

OPENED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.mark.parametrize(("severity", "first", "resolution"), [
    (Severity.CRITICAL, 4 * H, 24 * H),
    (Severity.HIGH, 24 * H, 72 * H),
    (Severity.NORMAL, 48 * H, 7 * 24 * H),
    (Severity.LOW, 72 * H, 14 * 24 * H),
])
def test_sla_deadlines_follow_the_severity(severity: Severity, first: timedelta,
                                           resolution: timedelta) -> None:
    due = rules.sla_deadlines(severity, OPENED)
    assert due.first_response_due_at == OPENED + first
    assert due.resolution_due_at == OPENED + resolution


def _state(clock: FixedClock, *, responded: datetime | None = None,
           resolved: datetime | None = None,
           severity: Severity = Severity.CRITICAL) -> SlaState:
    due = rules.sla_deadlines(severity, OPENED)
    return rules.sla_state(now=clock.now(), opened_at=OPENED,
                           first_response_due_at=due.first_response_due_at,
                           resolution_due_at=due.resolution_due_at,
                           first_response_at=responded, resolved_at=resolved)


def test_sla_state_of_an_untouched_critical_complaint_moves_with_the_clock() -> None:
    clock = FixedClock(OPENED)
    assert _state(clock) is SlaState.OK
    clock.advance(3 * H - timedelta(seconds=1))
    assert _state(clock) is SlaState.OK
    clock.advance(timedelta(seconds=1))  # the last quarter of the 4 h first-response window
    assert _state(clock) is SlaState.DUE_SOON
    clock.advance(H)  # exactly at the deadline: still in time
    assert _state(clock) is SlaState.DUE_SOON
    clock.advance(timedelta(seconds=1))
    assert _state(clock) is SlaState.BREACHED


def test_after_a_timely_response_the_resolution_deadline_counts() -> None:
    clock = FixedClock(OPENED + 17 * H)
    responded = OPENED + H
    assert _state(clock, responded=responded) is SlaState.OK
    clock.advance(H)  # 18 h of 24 h: due soon
    assert _state(clock, responded=responded) is SlaState.DUE_SOON
    clock.advance(6 * H + timedelta(seconds=1))
    assert _state(clock, responded=responded) is SlaState.BREACHED


def test_a_late_first_response_is_a_breach_for_good() -> None:
    clock = FixedClock(OPENED + 6 * H)
    late = OPENED + 5 * H
    assert _state(clock, responded=late) is SlaState.BREACHED
    assert _state(clock, responded=late, resolved=OPENED + 6 * H) is SlaState.BREACHED


def test_resolved_complaints_are_judged_by_when_they_were_resolved() -> None:
    clock = FixedClock(OPENED + 100 * H)  # long after: the clock no longer matters
    assert _state(clock, responded=OPENED + H, resolved=OPENED + 20 * H) is SlaState.OK
    assert _state(clock, resolved=OPENED + 2 * H) is SlaState.OK  # resolving is responding
    assert _state(clock, responded=OPENED + H, resolved=OPENED + 25 * H) is SlaState.BREACHED
    assert _state(clock, resolved=OPENED + 5 * H) is SlaState.BREACHED


def test_low_severity_is_due_soon_in_its_last_three_and_a_half_days() -> None:
    responded = OPENED + H
    before = FixedClock(OPENED + timedelta(days=10, hours=12) - timedelta(seconds=1))
    assert _state(before, responded=responded, severity=Severity.LOW) is SlaState.OK
    at = FixedClock(OPENED + timedelta(days=10, hours=12))
    assert _state(at, responded=responded, severity=Severity.LOW) is SlaState.DUE_SOON


S = ComplaintStatus
ALLOWED = {(S.OPEN, S.IN_PROGRESS), (S.OPEN, S.RESOLVED), (S.IN_PROGRESS, S.RESOLVED),
           (S.RESOLVED, S.CLOSED), (S.RESOLVED, S.IN_PROGRESS)}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_the_workflow_allows_exactly_its_table(current: S, target: S) -> None:
    assert rules.can_transition(current, target) is ((current, target) in ALLOWED)
    assert rules.is_reopen(current, target) is (current is S.RESOLVED and target is S.IN_PROGRESS)


def test_a_task_is_overdue_only_when_open_and_its_day_has_passed() -> None:
    today = date(2026, 11, 23)
    assert rules.is_overdue(CallbackStatus.OPEN, date(2026, 11, 22), today)
    assert not rules.is_overdue(CallbackStatus.OPEN, today, today)
    assert not rules.is_overdue(CallbackStatus.OPEN, date(2026, 11, 24), today)
    assert not rules.is_overdue(CallbackStatus.DONE, date(2026, 11, 1), today)
    assert not rules.is_overdue(CallbackStatus.CANCELLED, date(2026, 11, 1), today)


def test_may_invite_once_per_window() -> None:
    assert rules.may_invite(None, OPENED, 30)
    assert not rules.may_invite(OPENED - timedelta(days=30) + timedelta(seconds=1), OPENED, 30)
    assert rules.may_invite(OPENED - timedelta(days=30), OPENED, 30)
    assert not rules.may_invite(OPENED, OPENED, 1)


def test_tokens_are_long_random_and_url_safe() -> None:
    tokens = {rules.new_survey_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) == 32 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


def test_hand_computed_example() -> None:
    # 3 promoters (9, 10, 10), 1 passive (8), 2 detractors (0, 6): NPS = (3 - 2) / 6 x 100
    assert rules.nps([9, 10, 10, 8, 0, 6]) == pytest.approx(100 / 6)
    assert rules.nps([]) is None
    summary = rules.summarise([(5, None), (4, 10), (1, 3), (None, 7)])
    assert (summary.responses, summary.csat_count, summary.nps_count) == (4, 3, 3)
    assert summary.csat_percent == pytest.approx(200 / 3)
    assert summary.csat_mean == pytest.approx(10 / 3)
    assert (summary.promoters, summary.passives, summary.detractors) == (1, 1, 1)
    assert summary.nps == 0


def test_out_of_range_answers_are_refused() -> None:
    with pytest.raises(ValueError, match="CSAT"):
        rules.summarise([(6, None)])
    with pytest.raises(ValueError, match="NPS"):
        rules.summarise([(None, 11)])


nps_answers = st.lists(st.integers(min_value=0, max_value=10), max_size=300)
csat_answers = st.lists(st.integers(min_value=1, max_value=5), max_size=300)


@given(nps_answers)
def test_nps_is_between_minus_100_and_100_and_matches_the_definition(scores: list[int]) -> None:
    result = rules.nps(scores)
    if not scores:
        assert result is None
        return
    assert result is not None
    assert -100 <= result <= 100
    promoters = len([s for s in scores if s in (9, 10)])
    detractors = len([s for s in scores if s in (0, 1, 2, 3, 4, 5, 6)])
    assert result == pytest.approx(promoters / len(scores) * 100
                                   - detractors / len(scores) * 100)
    if all(s >= 9 for s in scores):
        assert result == 100
    if all(s <= 6 for s in scores):
        assert result == -100


@given(csat_answers)
def test_csat_share_and_mean_match_the_definition(scores: list[int]) -> None:
    summary = rules.summarise((s, None) for s in scores)
    assert summary.responses == summary.csat_count == len(scores)
    assert summary.nps is None and summary.nps_count == 0
    if not scores:
        assert summary.csat_percent is None and summary.csat_mean is None
        return
    assert summary.csat_percent is not None and summary.csat_mean is not None
    assert 0 <= summary.csat_percent <= 100
    assert 1 <= summary.csat_mean <= 5
    assert summary.csat_percent == pytest.approx(
        100 * sum(1 for s in scores if s >= 4) / len(scores))
    assert summary.csat_mean == pytest.approx(sum(scores) / len(scores))


@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(1, 5)),
                          st.one_of(st.none(), st.integers(0, 10)))))
def test_each_figure_counts_only_its_own_answers(pairs: list[tuple[int | None, int | None]]
                                                 ) -> None:
    summary = rules.summarise(pairs)
    assert summary.responses == len(pairs)
    assert summary.csat_count == sum(1 for c, _ in pairs if c is not None)
    assert summary.nps_count == summary.promoters + summary.passives + summary.detractors
    assert summary.nps == rules.nps(n for _, n in pairs if n is not None)
    assert summary.csat_percent == rules.csat_percent(c for c, _ in pairs if c is not None)
