"""Transactions → per-customer RFM sufficient statistics, and their compression.

Design overview
---------------
The BG/NBD and Gamma-Gamma models never look at individual transactions: a customer's
purchase history enters the likelihood only through

* ``frequency`` x: the number of *repeat* transactions (all but the first) up to the
  calibration end,
* ``recency`` t_x: the time of the last transaction, measured from the first one
  (0 when x = 0),
* ``age`` T: the time from the first transaction to the calibration end,
* ``monetary``: the mean value of the repeat transactions (0 when x = 0); the first
  purchase is left out because the Gamma-Gamma model describes repeat spend.

Conventions (those of Fader, Hardie & Lee's CDNOW papers):

* several purchases by one customer on the same calendar day are one transaction; its
  amount is their sum and its time the first of them. The day is the day of the time stamps
  as given, so pass store-local times if "the same day" should mean the store's day.
* time is kept at the resolution of the data: day-resolution dates give times in whole
  days (fractional weeks); datetimes give times to the second. Recency is never rounded to
  whole units, which biased alpha by about 2 % in a simulation (DESIGN.md).
* a calibration end given as a date means "through that day": for dates, T is measured to
  that day; for datetimes, to its last second (23:59:59).
* customers whose first purchase is after the calibration end are not part of the
  calibration cohort and are left out; transactions after the end are ignored.
* rows are purchases: a refund booked as a negative row on another day would count as a
  visit, so refunds should be netted into their purchase before they get here.

Compression: the BG/NBD likelihood depends on a customer only through (x, t_x, T), so
customers sharing those values become one row with a weight. With day-resolution data and
a year of history a million customers fold into about 180,000 rows, and a distributed engine
can ship just those rows back (DESIGN.md, scale path). With times to the second nearly every
customer is a row of their own (999,382 rows of 1,000,000), so grouping must cost little
when it finds nothing: rows are sorted on age (one float sort), then radix-sorted on the
frequency, and only rows tied on both are sorted on recency (``group_rows``); on a
million customers that is 0.13 s where sorting each column for a packed key took 0.33 s.

Amounts are floats in the unit of the input (dollars in CDNOW): the models estimate
distributions of spend, they do not move money, so the integer-minor-unit rule of the
ledgers does not apply here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from patron.core.errors import ValidationFailed

SECONDS_PER_DAY = 86_400
CSV_COLUMNS = ("customer", "date", "amount")


class TimeUnit(StrEnum):
    """The unit in which recency, age and the model's rate parameter alpha are expressed."""

    DAYS = "days"
    WEEKS = "weeks"

    @property
    def days(self) -> int:
        return 7 if self is TimeUnit.WEEKS else 1


@dataclass(frozen=True)
class Transactions:
    """A purchase history: one row per purchase, customers as dense integer codes.

    ``customer_ids[customer_code[i]]`` is the customer of row i. ``at`` is datetime64 with
    day resolution (``datetime64[D]``) or second resolution (``datetime64[s]``); that
    resolution is the resolution of every time derived from it.
    """

    customer_code: NDArray[np.int64]
    customer_ids: NDArray[Any]
    at: NDArray[np.datetime64]
    amount: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.customer_code.shape[0])

    @property
    def day_resolution(self) -> bool:
        return bool(self.at.dtype == np.dtype("datetime64[D]"))

    @classmethod
    def from_arrays(cls, customer: ArrayLike, at: ArrayLike, amount: ArrayLike) -> Transactions:
        """Validate and encode parallel arrays of customer ids, purchase times and amounts.

        Customer ids may be any values NumPy can sort (ints, strings). Times may be
        ``datetime.date`` / ``datetime.datetime`` objects or datetime64 values; dates keep
        day resolution, anything finer becomes seconds.
        """
        ids = np.asarray(customer)
        times = _as_datetime64(at)
        values = np.asarray(amount, dtype=np.float64)
        if ids.ndim != 1 or times.shape != ids.shape or values.shape != ids.shape:
            raise ValidationFailed("customer, date and amount must be 1-d and of equal length",
                                   "customer")
        if np.isnat(times).any():
            row = int(np.flatnonzero(np.isnat(times))[0])
            raise ValidationFailed(f"row {row + 1}: missing date", "date")
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValidationFailed(f"row {row + 1}: amount is not a finite number", "amount")
        customer_ids, codes = np.unique(ids, return_inverse=True)
        return cls(customer_code=codes.astype(np.int64).reshape(-1), customer_ids=customer_ids,
                   at=times, amount=values)


def _as_datetime64(at: ArrayLike) -> NDArray[np.datetime64]:
    """Times as datetime64[D] when they are dates, else datetime64[s]."""
    arr = np.asarray(at)
    if arr.dtype == object:
        if arr.size and any(isinstance(v, datetime) for v in arr.ravel()):
            if any(isinstance(v, datetime) and v.tzinfo is not None for v in arr.ravel()):
                raise ValidationFailed("time zone aware datetimes are not supported; pass "
                                       "local (store) times without an offset", "date")
            return arr.astype("datetime64[s]")
        return arr.astype("datetime64[D]")
    if not np.issubdtype(arr.dtype, np.datetime64):
        try:
            arr = arr.astype("datetime64")
        except ValueError as exc:
            raise ValidationFailed(f"cannot read as dates: {exc}", "date") from exc
    unit, _ = np.datetime_data(arr.dtype)
    if unit in ("Y", "M", "W"):
        raise ValidationFailed(f"dates at {unit!r} resolution are too coarse; give days",
                               "date")
    return arr.astype("datetime64[D]" if unit == "D" else "datetime64[s]")


def _ticks(tx: Transactions) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """(integer times, integer day numbers, ticks per day) at the data's own resolution."""
    days = tx.at.astype("datetime64[D]").astype(np.int64)
    if tx.day_resolution:
        return days, days, 1
    return tx.at.astype("datetime64[s]").astype(np.int64), days, SECONDS_PER_DAY


def _end_tick(end: date | datetime | np.datetime64, *, day_resolution: bool) -> int:
    """The calibration end as an inclusive integer time at the data's resolution."""
    if isinstance(end, datetime) and end.tzinfo is not None:
        raise ValidationFailed("give the calibration end without a time zone, in the same "
                               "clock as the data", "calibration_end")
    value = np.datetime64(end)
    unit, _ = np.datetime_data(value.dtype)
    is_date = unit == "D"
    day = int(value.astype("datetime64[D]").astype(np.int64))
    if day_resolution:
        if not is_date and value != value.astype("datetime64[D]"):
            raise ValidationFailed("the data have day resolution: give the calibration end "
                                   "as a date", "calibration_end")
        return day
    if is_date:
        return (day + 1) * SECONDS_PER_DAY - 1
    return int(value.astype("datetime64[s]").astype(np.int64))


def _order_by_customer_then_time(codes: NDArray[np.int64],
                                 ticks: NDArray[np.int64]) -> NDArray[np.intp]:
    """Row order by (customer, time): one int64 key sort when it fits, else a lexsort."""
    if codes.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    lo = int(ticks.min())
    span = int(ticks.max()) - lo + 1
    if (int(codes.max()) + 1) * span < 2**62:
        return np.argsort(codes * span + (ticks - lo)).astype(np.intp)
    return np.lexsort((ticks, codes)).astype(np.intp)


def collapse_same_day(tx: Transactions) -> Transactions:
    """One row per customer and calendar day: amounts summed, time of the day's first.

    Rows come out sorted by customer code, then time. This is the transaction count the
    models see (the CDNOW convention); holdout counts must be taken on the same basis.
    """
    if len(tx) == 0:
        return tx
    ticks, days, _ = _ticks(tx)
    order = _order_by_customer_then_time(tx.customer_code, ticks)
    codes, days_s, amounts = tx.customer_code[order], days[order], tx.amount[order]
    new = np.empty(codes.shape[0], dtype=bool)
    new[0] = True
    new[1:] = (codes[1:] != codes[:-1]) | (days_s[1:] != days_s[:-1])
    starts = np.flatnonzero(new)
    return Transactions(customer_code=codes[starts], customer_ids=tx.customer_ids,
                        at=tx.at[order[starts]], amount=np.add.reduceat(amounts, starts))


@dataclass(frozen=True)
class RFMSummary:
    """Per-customer sufficient statistics for one calibration end, in ``unit`` time.

    Arrays are parallel, one entry per customer of the calibration cohort, sorted by
    customer id. ``first_purchase`` keeps each customer's time 0 for cohort-level
    predictions (tracking charts).
    """

    customer: NDArray[Any]
    frequency: NDArray[np.int64]
    recency: NDArray[np.float64]
    age: NDArray[np.float64]
    monetary: NDArray[np.float64]
    first_purchase: NDArray[np.datetime64]
    unit: TimeUnit
    calibration_end: np.datetime64

    def __len__(self) -> int:
        return int(self.frequency.shape[0])

    def compress(self) -> CompressedRFM:
        """Customers with identical (x, t_x, T) as weighted rows (all BG/NBD needs)."""
        return compress(self.frequency, self.recency, self.age)


def summarise(tx: Transactions, *, calibration_end: date | datetime | np.datetime64,
              unit: TimeUnit = TimeUnit.WEEKS) -> RFMSummary:
    """Per-customer (x, t_x, T, monetary) of every customer who bought by ``calibration_end``."""
    end_tick = _end_tick(calibration_end, day_resolution=tx.day_resolution)
    ticks_all, _, per_day = _ticks(tx)
    keep = ticks_all <= end_tick
    daily = collapse_same_day(Transactions(
        customer_code=tx.customer_code[keep], customer_ids=tx.customer_ids,
        at=tx.at[keep], amount=tx.amount[keep]))
    ticks, _, _ = _ticks(daily)
    codes = daily.customer_code
    if codes.shape[0] == 0:
        raise ValidationFailed("no transactions on or before the calibration end",
                               "calibration_end")
    new = np.empty(codes.shape[0], dtype=bool)
    new[0] = True
    new[1:] = codes[1:] != codes[:-1]
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, codes.shape[0]))
    first = ticks[starts]
    last = ticks[starts + counts - 1]
    repeat_amount = daily.amount.copy()
    repeat_amount[starts] = 0.0
    repeat_total = np.add.reduceat(repeat_amount, starts)
    frequency = (counts - 1).astype(np.int64)
    per_unit = float(per_day * unit.days)
    monetary = np.where(frequency > 0, repeat_total / np.maximum(frequency, 1), 0.0)
    return RFMSummary(
        customer=tx.customer_ids[codes[starts]],
        frequency=frequency,
        recency=(last - first) / per_unit,
        age=(end_tick - first) / per_unit,
        monetary=monetary.astype(np.float64),
        first_purchase=daily.at[starts],
        unit=unit,
        calibration_end=np.datetime64(end_tick, "D" if tx.day_resolution else "s"),
    )


@dataclass(frozen=True)
class CompressedRFM:
    """Distinct (x, t_x, T) rows with the number of customers (weight) behind each.

    This is the only input the BG/NBD fit needs; a remote engine may build it directly
    (group by frequency, recency, age; count) and hand it over.
    """

    frequency: NDArray[np.int64]
    recency: NDArray[np.float64]
    age: NDArray[np.float64]
    weight: NDArray[np.float64]

    def __post_init__(self) -> None:
        n = self.frequency.shape
        if not (self.recency.shape == n and self.age.shape == n and self.weight.shape == n):
            raise ValidationFailed("frequency, recency, age and weight must have equal length",
                                   "frequency")
        if (self.frequency < 0).any():
            raise ValidationFailed("frequency must be >= 0", "frequency")
        if ((self.recency < 0) | (self.recency > self.age)).any():
            raise ValidationFailed("recency must lie in [0, age]", "recency")
        if ((self.frequency == 0) & (self.recency != 0)).any():
            raise ValidationFailed("recency must be 0 when frequency is 0", "recency")
        if (self.weight < 0).any() or not np.isfinite(self.weight).all():
            raise ValidationFailed("weights must be finite and >= 0", "weight")

    def __len__(self) -> int:
        return int(self.frequency.shape[0])

    @property
    def n_customers(self) -> float:
        return float(self.weight.sum())


def group_rows(*columns: NDArray[Any]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Group identical rows of parallel columns: (index of each group's first row, inverse).

    Groups come in lexicographic order of the columns. The rows are sorted on the second
    column (any order among ties), then stably on the first (a radix sort when it holds
    small non-negative integers, as frequencies do), and only rows still tied on both
    are sorted on the remaining columns. Ordered (frequency, age, recency), customers
    timed to the second are nearly all told apart by the first two, so grouping costs
    one float sort and a radix pass, where a lexsort sorts once per column.
    """
    n = int(columns[0].shape[0])
    if n == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    order = (np.argsort(columns[1]) if len(columns) > 1 else np.arange(n)).astype(np.intp)
    order = order[np.argsort(_radix_key(columns[0][order]), kind="stable")]
    ordered = [col[order] for col in columns]
    if len(columns) > 2:
        tied = _same_as_previous(ordered[0]) & _same_as_previous(ordered[1])
        if tied.any():  # runs equal on the first two columns: sort them on the rest
            member = np.zeros(n, dtype=bool)
            member[1:] |= tied
            member[:-1] |= tied
            at = np.flatnonzero(member)
            run = np.cumsum(np.concatenate([[True], ~tied]))[at]
            within = np.lexsort([ordered[k][at] for k in range(len(columns) - 1, 1, -1)]
                                + [run])
            order[at] = order[at[within]]
            ordered = [col[order] for col in columns]
    new = np.ones(n, dtype=bool)
    new[1:] = ~np.logical_and.reduce([_same_as_previous(col) for col in ordered])
    starts = np.flatnonzero(new)
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    first = np.minimum.reduceat(order, starts)  # the sorts need not keep the first first
    return first.astype(np.intp), inverse


def _radix_key(column: NDArray[Any]) -> NDArray[Any]:
    """The column as uint16 when that keeps its values (NumPy radix-sorts those)."""
    if (np.issubdtype(column.dtype, np.integer) and column.size
            and int(column.min()) >= 0 and int(column.max()) < 1 << 16):
        return column.astype(np.uint16)
    return column


def _same_as_previous(column: NDArray[Any]) -> NDArray[np.bool_]:
    """Per position after the first, whether the value equals the one before (NaN too)."""
    same = np.asarray(column[1:] == column[:-1])
    if np.issubdtype(column.dtype, np.floating):
        nan = np.isnan(column)
        if nan.any():
            same |= nan[1:] & nan[:-1]
    return same


def compress(frequency: ArrayLike, recency: ArrayLike, age: ArrayLike,
             weight: ArrayLike | None = None) -> CompressedRFM:
    """Fold per-customer (x, t_x, T) into distinct weighted rows (weights add up).

    Rows come sorted by frequency, then age, then recency (``fitting.sample`` relies on
    the order to draw a stratified sample).
    """
    x = np.asarray(frequency, dtype=np.int64).reshape(-1)
    tx = np.asarray(recency, dtype=np.float64).reshape(-1)
    big_t = np.asarray(age, dtype=np.float64).reshape(-1)
    w = (np.ones(x.shape[0]) if weight is None
         else np.asarray(weight, dtype=np.float64).reshape(-1))
    if not (tx.shape == x.shape and big_t.shape == x.shape and w.shape == x.shape):
        raise ValidationFailed("frequency, recency, age and weight must have equal length",
                               "frequency")
    if x.shape[0] == 0:
        return CompressedRFM(x, tx, big_t, w)
    first, inverse = group_rows(x, big_t, tx)
    weights = np.bincount(inverse, weights=w, minlength=first.shape[0]).astype(np.float64)
    return CompressedRFM(frequency=x[first], recency=tx[first], age=big_t[first],
                         weight=weights)


def read_transactions_csv(path: str | Path) -> Transactions:
    """Read a CSV whose header names ``customer``, ``date`` and ``amount`` (others ignored).

    Dates are ISO 8601: ``YYYY-MM-DD`` (day resolution) or ``YYYY-MM-DD HH:MM[:SS]`` /
    ``YYYY-MM-DDTHH:MM[:SS]`` (second resolution, no offset). Customer ids are read as
    text. Errors name the column and the 1-based data row.
    """
    import pyarrow as pa
    from pyarrow import csv as pacsv

    file = Path(path)
    try:
        with file.open("rb") as fh:
            header = fh.readline().decode("utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"cannot read {file}: {exc}", "data") from exc
    names = [h.strip().strip('"').lower() for h in header.split(",")]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise ValidationFailed(f"missing column(s) {', '.join(missing)} in the header "
                               f"(found: {', '.join(names) or 'nothing'})", missing[0])
    try:
        table = pacsv.read_csv(
            file,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(CSV_COLUMNS),
                column_types=dict.fromkeys(CSV_COLUMNS, pa.string()),
                strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationFailed(f"cannot parse {file.name}: {exc}", "data") from exc
    if table.num_rows == 0:
        raise ValidationFailed(f"{file.name} has a header but no rows", "data")
    customer = np.asarray(table.column("customer").to_numpy(zero_copy_only=False), dtype=object)
    customer = np.strings.strip(customer.astype(str))
    dates = np.strings.strip(np.asarray(table.column("date").to_numpy(zero_copy_only=False),
                                     dtype=str))
    amounts = np.strings.strip(np.asarray(table.column("amount").to_numpy(zero_copy_only=False),
                                       dtype=str))
    for name, col in (("customer", customer), ("date", dates), ("amount", amounts)):
        empty = np.flatnonzero(np.strings.str_len(col) == 0)
        if empty.size:
            raise ValidationFailed(f"row {int(empty[0]) + 1}: empty {name}", name)
    return Transactions.from_arrays(customer, _parse_dates(dates), _parse_amounts(amounts))


def _parse_dates(text: NDArray[np.str_]) -> NDArray[np.datetime64]:
    """ISO dates or naive datetimes; the first unreadable value is reported with its row."""
    tails = np.strings.slice(text, 10, None)
    offset = np.flatnonzero((np.strings.find(tails, "+") >= 0) | (np.strings.find(tails, "-") >= 0)
                            | (np.strings.find(tails, "Z") >= 0))
    if offset.size:
        row = int(offset[0])
        raise ValidationFailed(f"row {row + 1}: {str(text[row])!r} has a time zone offset; "
                               "give local (store) times without one", "date")
    day_only = bool((np.strings.str_len(text) == 10).all())
    try:
        parsed = np.asarray(np.strings.replace(text, " ", "T"), dtype="datetime64")
        return parsed.astype("datetime64[D]" if day_only else "datetime64[s]")
    except ValueError:
        pass
    for row, value in enumerate(text):
        try:
            np.datetime64(str(value).replace(" ", "T"))
        except ValueError:
            raise ValidationFailed(f"row {row + 1}: cannot read {str(value)!r} as a date "
                                   "(expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)",
                                   "date") from None
    raise ValidationFailed("cannot read the dates", "date")  # pragma: no cover - unreachable


def _parse_amounts(text: NDArray[np.str_]) -> NDArray[np.float64]:
    try:
        values = text.astype(np.float64)
    except ValueError:
        for row, value in enumerate(text):
            try:
                float(value)
            except ValueError:
                raise ValidationFailed(f"row {row + 1}: cannot read {str(value)!r} as a number",
                                       "amount") from None
        raise ValidationFailed("cannot read the amounts", "amount") from None  # pragma: no cover
    return values
