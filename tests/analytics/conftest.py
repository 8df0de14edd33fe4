"""Session fixtures: CDNOW transactions and their calibration summary (paper conventions)."""

from __future__ import annotations

import pytest

from patron.analytics.models.summary import RFMSummary, TimeUnit, Transactions, summarise
from tests.analytics.cdnow import CALIBRATION_END, load_cdnow


@pytest.fixture(scope="session")
def cdnow() -> Transactions:
    return load_cdnow()


@pytest.fixture(scope="session")
def cdnow_summary(cdnow: Transactions) -> RFMSummary:
    return summarise(cdnow, calibration_end=CALIBRATION_END, unit=TimeUnit.WEEKS)
