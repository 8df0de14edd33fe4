"""Transactions → RFM summary → compressed rows: conventions, properties, CSV errors."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patron.analytics.models.summary import (
    RFMSummary,
    TimeUnit,
    Transactions,
    collapse_same_day,
    compress,
    group_rows,
    read_transactions_csv,
    summarise,
)
from patron.core.errors import ValidationFailed

START = date(2024, 1, 1)

rows_strategy = st.lists(
    st.tuples(st.sampled_from(["ann", "bob", "cy", "dee"]), st.integers(0, 60),
              st.integers(0, 23), st.integers(1, 50_000)),
    min_size=1, max_size=40)


def _tx(rows: list[tuple[str, int, int, int]], *, with_time: bool) -> Transactions:
    when = [datetime(2024, 1, 1, h) + timedelta(days=d) if with_time
            else START + timedelta(days=d) for _, d, h, _ in rows]
    return Transactions.from_arrays([c for c, *_ in rows], when,
                                    [cents / 100 for *_, cents in rows])


def _reference(rows: list[tuple[str, int, int, int]], end_day: int
               ) -> dict[str, tuple[int, float, float, float]]:
    """Day-resolution summary the slow way: (x, t_x, T, monetary) per customer, in days."""
    days: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for c, d, _, cents in rows:
        if d <= end_day:
            days[c][d] += cents / 100
    out = {}
    for c, per_day in days.items():
        ordered = sorted(per_day)
        repeat = [per_day[d] for d in ordered[1:]]
        out[c] = (len(ordered) - 1, float(ordered[-1] - ordered[0]),
                  float(end_day - ordered[0]), sum(repeat) / len(repeat) if repeat else 0.0)
    return out


def _as_dict(s: RFMSummary) -> dict[str, tuple[int, float, float, float]]:
    return {str(c): (int(x), float(r), float(t), float(m)) for c, x, r, t, m in
            zip(s.customer, s.frequency, s.recency, s.age, s.monetary, strict=True)}


def test_same_day_purchases_are_one_transaction_with_summed_amount() -> None:
    tx = Transactions.from_arrays(
        ["a", "a", "a", "a", "b"],
        np.array(["2024-01-01", "2024-01-08", "2024-01-08", "2024-01-15", "2024-01-10"],
                 dtype="datetime64[D]"),
        [10.0, 5.0, 7.0, 20.0, 3.0])
    s = summarise(tx, calibration_end=date(2024, 1, 29), unit=TimeUnit.WEEKS)
    assert list(s.customer) == ["a", "b"]
    assert list(s.frequency) == [2, 0]
    assert s.recency.tolist() == [2.0, 0.0]
    assert s.age.tolist() == pytest.approx([4.0, 19 / 7])
    assert s.monetary.tolist() == pytest.approx([16.0, 0.0])  # (5+7 + 20) / 2, first excluded


def test_datetimes_keep_fractional_recency_and_end_at_the_last_second_of_the_day() -> None:
    tx = Transactions.from_arrays(
        [1, 1, 1],
        [datetime(2024, 1, 1, 9), datetime(2024, 1, 1, 18), datetime(2024, 1, 3, 21)],
        [1.0, 2.0, 4.0])
    s = summarise(tx, calibration_end=date(2024, 1, 3), unit=TimeUnit.DAYS)
    assert s.frequency.tolist() == [1]
    assert s.recency[0] == pytest.approx(2.5)  # 09:00 Jan 1 -> 21:00 Jan 3, not rounded
    assert s.age[0] == pytest.approx(2 + 15 / 24 - 1 / 86_400)
    assert s.monetary.tolist() == [4.0]


def test_purchases_after_the_calibration_end_and_later_customers_are_left_out() -> None:
    tx = Transactions.from_arrays(
        ["a", "a", "b"], np.array(["2024-01-01", "2024-02-01", "2024-02-01"],
                                  dtype="datetime64[D]"), [1.0, 1.0, 1.0])
    s = summarise(tx, calibration_end=date(2024, 1, 31), unit=TimeUnit.DAYS)
    assert s.customer.tolist() == ["a"]
    assert s.frequency.tolist() == [0]
    assert s.age.tolist() == [30.0]


def test_calibration_end_before_every_purchase_is_refused() -> None:
    tx = Transactions.from_arrays(["a"], np.array(["2024-01-01"], dtype="datetime64[D]"), [1.0])
    with pytest.raises(ValidationFailed) as err:
        summarise(tx, calibration_end=date(2023, 12, 31))
    assert err.value.field == "calibration_end"


def test_a_time_of_day_is_refused_as_calibration_end_for_dates() -> None:
    tx = Transactions.from_arrays(["a"], np.array(["2024-01-01"], dtype="datetime64[D]"), [1.0])
    with pytest.raises(ValidationFailed, match="give the calibration end as a date"):
        summarise(tx, calibration_end=datetime(2024, 1, 2, 12))


def test_cdnow_calibration_summary_matches_the_paper(cdnow_summary: RFMSummary) -> None:
    s = cdnow_summary
    assert len(s) == 2357
    assert int((s.frequency > 0).sum()) == 946
    assert int(s.frequency.sum()) == 2457
    assert s.age.max() == pytest.approx(38.857, abs=1e-3)  # 1997-01-01 to 1997-09-30
    assert s.age.min() == pytest.approx(27.0)  # 1997-03-31


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, end_day=st.integers(0, 60), seed=st.integers(0, 2**32 - 1),
       with_time=st.booleans())
def test_summary_properties(rows: list[tuple[str, int, int, int]], end_day: int, seed: int,
                            with_time: bool) -> None:
    """Order-free, 0 <= t_x <= T, and x = distinct purchase days − 1 (checked the slow way)."""
    if all(d > end_day for _, d, _, _ in rows):
        with pytest.raises(ValidationFailed):
            summarise(_tx(rows, with_time=with_time), calibration_end=START
                      + timedelta(days=end_day), unit=TimeUnit.DAYS)
        return
    end = START + timedelta(days=end_day)
    s = summarise(_tx(rows, with_time=with_time), calibration_end=end, unit=TimeUnit.DAYS)
    shuffled = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
    again = summarise(_tx(shuffled, with_time=with_time), calibration_end=end,
                      unit=TimeUnit.DAYS)
    assert again.customer.tolist() == s.customer.tolist()
    assert again.frequency.tolist() == s.frequency.tolist()
    assert again.recency.tolist() == s.recency.tolist()
    assert again.age.tolist() == s.age.tolist()
    assert again.monetary == pytest.approx(s.monetary)  # sums may add up in another order

    assert (s.recency >= 0).all() and (s.recency <= s.age).all()
    assert (s.recency[s.frequency == 0] == 0).all()
    expected = _reference(rows, end_day)
    got = _as_dict(s)
    assert set(got) == set(expected)
    for c, (x, t_x, big_t, monetary) in expected.items():
        assert got[c][0] == x
        assert got[c][3] == pytest.approx(monetary)
        if not with_time:  # on whole days the times are exact
            assert got[c][1:3] == (t_x, big_t)
        else:  # datetimes: within a day of the day-level figures
            assert abs(got[c][1] - t_x) < 1 and abs(got[c][2] - big_t) < 1

    weeks = summarise(_tx(rows, with_time=with_time), calibration_end=end,
                      unit=TimeUnit.WEEKS)
    assert weeks.recency * 7 == pytest.approx(s.recency)
    assert weeks.age * 7 == pytest.approx(s.age)


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy, with_time=st.booleans())
def test_collapsing_leaves_one_row_per_customer_day_and_keeps_the_total(
        rows: list[tuple[str, int, int, int]], with_time: bool) -> None:
    tx = _tx(rows, with_time=with_time)
    daily = collapse_same_day(tx)
    assert len(daily) == len({(c, d) for c, d, _, _ in rows})
    assert daily.amount.sum() == pytest.approx(tx.amount.sum())


@settings(max_examples=100, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 5)),
                     min_size=1, max_size=60))
def test_compression_keeps_every_customer_once(data: list[tuple[int, int, int]]) -> None:
    x = np.array([d[0] for d in data])
    t_x = np.array([0.0 if d[0] == 0 else float(min(d[1], d[2])) for d in data]) / 7
    big_t = np.array([float(max(d[1], d[2])) for d in data]) / 7
    c = compress(x, t_x, big_t)
    assert c.n_customers == len(data)
    triples = list(zip(x.tolist(), t_x.tolist(), big_t.tolist(), strict=True))
    assert len(c) == len(set(triples))
    for xi, ti, bi, w in zip(c.frequency, c.recency, c.age, c.weight, strict=True):
        assert w == triples.count((int(xi), float(ti), float(bi)))


def test_compression_needs_no_int64_room_for_wide_ranges() -> None:
    """Seconds over years times many frequencies: the key falls back to row-wise unique."""
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.integers(0, 3000, n)
    big_t = rng.integers(0, 10**8, n).astype(float)
    t_x = np.where(x > 0, np.floor(big_t * rng.uniform(0, 1, n)), 0.0)
    big_t[n // 2:], t_x[n // 2:], x[n // 2:] = big_t[0], t_x[0], x[0]  # half identical
    c = compress(x, t_x, big_t)
    assert c.n_customers == n
    assert len(c) == len(set(zip(x.tolist(), t_x.tolist(), big_t.tolist(), strict=True)))


@settings(max_examples=150, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 4), st.sampled_from([0.0, -0.0, 0.5, 1.5, 2.0,
                                                                   np.nan]),
                               st.integers(0, 3)), min_size=1, max_size=80),
       nans=st.booleans())
def test_group_rows_groups_exactly_in_lexicographic_order_keeping_the_first_row(
        data: list[tuple[int, float, int]], nans: bool) -> None:
    """Against a dict: every group once, first rows first, groups sorted, NaN a value."""
    a = np.array([d[0] for d in data])
    b = np.array([d[1] if nans or not np.isnan(d[1]) else 1.0 for d in data])
    c = np.array([float(d[2]) for d in data])
    first, inverse = group_rows(a, b, c)
    seen: dict[tuple[int, float, float], int] = {}
    b_key = np.nan_to_num(b, nan=np.inf) + 0.0  # NaN sorts last; −0.0 is 0.0
    for i, key in enumerate(zip(a.tolist(), b_key.tolist(), c.tolist(), strict=True)):
        seen.setdefault(key, i)
    assert sorted(first.tolist()) == sorted(seen.values())
    assert list(first) == [seen[k] for k in sorted(seen)]  # (a, b, c) order, NaN last
    for i, g in enumerate(inverse):  # each row points at a group with its values
        j = first[g]
        assert a[i] == a[j] and c[i] == c[j]
        assert b[i] == b[j] or (np.isnan(b[i]) and np.isnan(b[j]))


def test_compression_of_customers_timed_to_the_second_keeps_them_apart() -> None:
    """Nearly all distinct: rows come back sorted by (x, age, recency), the few shared
    (x, age) pairs split by recency and the truly identical customers merged."""
    rng = np.random.default_rng(9)
    n = 50_000
    age = np.round(rng.uniform(0.0, 730.0, n) * 86_400) / 86_400
    x = rng.geometric(0.3, n) - 1
    recency = np.where(x > 0, np.round(age * rng.random(n) * 86_400) / 86_400, 0.0)
    age[:200], x[:200] = age[200:400], x[200:400]  # shared (x, age), other recency
    recency = np.where(x > 0, np.minimum(recency, age), 0.0)
    age[400:450], x[400:450], recency[400:450] = age[0], x[0], recency[0]  # identical
    c = compress(x, recency, age)
    assert c.n_customers == n
    assert len(c) == len(set(zip(x.tolist(), recency.tolist(), age.tolist(), strict=True)))
    assert c.weight.max() >= 51
    keys = list(zip(c.frequency.tolist(), c.age.tolist(), c.recency.tolist(), strict=True))
    assert keys == sorted(keys)


def test_compressed_rows_reject_recency_outside_zero_to_age() -> None:
    with pytest.raises(ValidationFailed) as err:
        compress([1], [5.0], [4.0])
    assert err.value.field == "recency"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tx.csv"
    path.write_text(text)
    return path


def test_csv_reads_named_columns_in_any_order_and_ignores_the_rest(tmp_path: Path) -> None:
    path = _write(tmp_path, "amount,store,date,customer\n"
                            "12.5,S1,2024-01-01,007\n3,S2,2024-01-05,007\n4,S1,2024-01-02,8\n")
    tx = read_transactions_csv(path)
    assert tx.day_resolution
    assert sorted(tx.customer_ids.tolist()) == ["007", "8"]  # ids stay text
    s = summarise(tx, calibration_end=date(2024, 1, 5), unit=TimeUnit.DAYS)
    assert s.frequency.tolist() == [1, 0]
    assert s.monetary.tolist() == [3.0, 0.0]


def test_csv_datetimes_are_read_to_the_second(tmp_path: Path) -> None:
    path = _write(tmp_path, "customer,date,amount\na,2024-01-01 09:30:00,1\n"
                            "a,2024-01-02T10:00,2\n")
    tx = read_transactions_csv(path)
    assert not tx.day_resolution
    assert tx.at.dtype == np.dtype("datetime64[s]")


@pytest.mark.parametrize(("text", "field", "message"), [
    ("customer,when,amount\na,2024-01-01,1\n", "date", "missing column(s) date"),
    ("customer,date,amount\na,2024-01-01,1\nb,01/02/2024,2\n", "date",
     "row 2: cannot read '01/02/2024' as a date"),
    ("customer,date,amount\na,2024-01-01,1\nb,2024-01-02,ten\n", "amount",
     "row 2: cannot read 'ten' as a number"),
    ("customer,date,amount\na,2024-01-01,1\n,2024-01-02,2\n", "customer",
     "row 2: empty customer"),
    ("customer,date,amount\na,2024-01-01T10:00+08:00,1\n", "date", "time zone offset"),
])
def test_csv_errors_name_the_column_and_row(tmp_path: Path, text: str, field: str,
                                            message: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        read_transactions_csv(_write(tmp_path, text))
    assert err.value.field == field
    assert message in err.value.message
