"""Analytics: a member's scores, segment counts and the latest refresh run.

Members belong to the brand, so any signed-in caller that may look a member up (a POS key
or a cashier included, as ``GET /members/{id}``) may read that member's scores; the
brand-wide aggregates are for owners and managers.
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from patron.analytics import service as analytics
from patron.analytics.score_schemas import AnalyticsRunRead, MemberScoresRead, SegmentReportRead
from patron.api.deps import CurrentPrincipal, DbSession
from patron.auth.enums import Role
from patron.auth.principal import require_role
from patron.core.errors import NotFound
from patron.members import service as members

router = APIRouter(tags=["analytics"])

CSV_COLUMNS = ("group", "name", "members", "revenue_minor", "revenue_365_minor", "clv_minor",
               "mean_p_alive")


@router.get("/members/{member_id}/scores", operation_id="get_member_scores")
def get_member_scores(session: DbSession, _principal: CurrentPrincipal,
                      member_id: uuid.UUID) -> MemberScoresRead:
    """The member's scores in the latest analytics snapshot (refreshed nightly)."""
    members.get_member(session, member_id=member_id)
    row = analytics.latest_scores_or_raise(session, member_id=member_id)
    return MemberScoresRead.model_validate(row)


@router.get(
    "/analytics/segments", operation_id="get_segment_counts", response_model=SegmentReportRead,
    responses={200: {"content": {"text/csv": {}},
                     "description": "JSON, or CSV with ?format=csv (one row per group)"}},
)
def get_segment_counts(
    session: DbSession, principal: CurrentPrincipal,
    output: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> SegmentReportRead | Response:
    """Members, revenue and CLV per RFM segment and per lifecycle stage, latest snapshot."""
    require_role(principal, Role.MANAGER, users_only=True)
    report = analytics.segment_counts(session)
    if report is None:
        raise NotFound("No analytics snapshot yet: run `patron analytics refresh` (the worker "
                       "runs it nightly)", code="no_snapshot")
    body = SegmentReportRead.model_validate(report)
    if output == "json":
        return body
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for group, rows in (("segment", body.segments), ("stage", body.stages)):
        for g in rows:
            writer.writerow([group, g.name or "", g.members, g.revenue_minor,
                             g.revenue_365_minor, g.clv_minor,
                             "" if g.mean_p_alive is None else f"{g.mean_p_alive:.4f}"])
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="segments-{body.as_of}.csv"'})


@router.get("/analytics/runs/latest", operation_id="get_latest_analytics_run")
def get_latest_run(session: DbSession, principal: CurrentPrincipal) -> AnalyticsRunRead:
    """The newest refresh, whatever its outcome: when, how long each stage took, the fit."""
    require_role(principal, Role.MANAGER, users_only=True)
    run = analytics.latest_run(session)
    if run is None:
        raise NotFound("Analytics have never been refreshed", code="no_run")
    return AnalyticsRunRead.model_validate(run)
