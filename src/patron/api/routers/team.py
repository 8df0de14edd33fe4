"""The team performance report: per store, per staff member and per month.

For owners and managers (staff users; API keys are refused); a manager gets their own
stores only and asking for another store is a 403. The figures and their definitions are
``patron.analytics.team``'s. Periods are local days ``from`` … ``to``; by default the
twelve calendar months that end with yesterday (as the other reports).
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from patron.analytics import team
from patron.analytics.team import TeamReport
from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.core.clock import local_today

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/team", operation_id="report_team", response_model=TeamReport)
def team_report(
    ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
    first_on: Annotated[date | None, Query(alias="from", description="First local day")] = None,
    last_on: Annotated[date | None, Query(alias="to", description="Last local day (default: "
                                                                  "yesterday)")] = None,
    store_id: Annotated[list[uuid.UUID] | None, Query(
        description="One or more stores (default: every store you see)")] = None,
) -> TeamReport:
    """Members enrolled and how many came back within 90 days, repeat rate and churn of
    each store's members, callbacks, complaints and their time to resolution, CSAT/NPS and
    campaign uplift: per store, per staff member and per month."""
    period = team.resolve_period(local_today(ctx.clock, ctx.settings.default_timezone),
                            first_on, last_on)
    return team.team_performance(session, principal=principal, clock=ctx.clock,
                                 period=period, store_ids=store_id or None)
