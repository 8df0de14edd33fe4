"""The CDNOW sample (tests/data/cdnow) as transactions and as the CSV the CLI reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from patron.analytics.models.summary import Transactions

CDNOW = Path(__file__).parent.parent / "data" / "cdnow" / "CDNOW_sample.txt"
CALIBRATION_END = np.datetime64("1997-09-30")


def load_cdnow() -> Transactions:
    """Whitespace-separated: customer, original id, YYYYMMDD, number of CDs, dollars."""
    raw = np.loadtxt(CDNOW, dtype=str)
    days = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]], dtype="datetime64[D]")
    return Transactions.from_arrays(raw[:, 0], days, raw[:, 4].astype(float))


def write_cdnow_csv(path: Path) -> Path:
    """CDNOW as the CSV the CLI reads: a header, ISO dates, an extra column to ignore."""
    raw = np.loadtxt(CDNOW, dtype=str)
    lines = ["customer,date,cds,amount"]
    lines += [f"{r[0]},{r[2][:4]}-{r[2][4:6]}-{r[2][6:]},{r[3]},{r[4]}" for r in raw]
    path.write_text("\n".join(lines) + "\n")
    return path
