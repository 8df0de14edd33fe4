"""Which scheduled job ran for which store and local day (so a restart never runs it twice)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt


class ScheduledRun(Base):
    __tablename__ = "scheduled_runs"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(64))  # a store id, or "brand"
    local_date: Mapped[date]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")  # running, done, failed
    detail: Mapped[str] = mapped_column(String(2000), default="")

    __table_args__ = (UniqueConstraint("job", "scope", "local_date", name="uq_scheduled_run"),)
