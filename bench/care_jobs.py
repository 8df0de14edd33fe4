"""The daily care run over a chain of 1,000,000 members, on SQLite.

    .venv/bin/python bench/care_jobs.py                   # 1 M members (bench/out/care-*.db)
    .venv/bin/python bench/care_jobs.py --members 100000  # a smaller chain while developing
    .venv/bin/python bench/care_jobs.py --indexes current # without the two proposed indexes
    .venv/bin/python bench/care_jobs.py --profile         # also a cProfile of the run

The target (issue: "the daily care run over 1,000,000 members (birthdays, replenishment,
win-back selection) completes in under 60 s on SQLite") is about the daily job the worker
runs for each store (``care.service.run_daily_for_store``).

**The database** is built once and cached under ``bench/out/`` (``--rebuild`` makes it
again; 20-25 minutes at 1 M on a busy 2-core machine, 12 GB). It is the demo chain at a
million members, made with the demo generator's own functions (``create_catalogue``,
``generate_members``, ``add_shopping_profiles``, ``simulate_member_sales``,
``simulate_walk_ins``, ``member_row``, ``bulk.insert_rows``): three stores, the catalogue
with its replenishable categories (formula 21 days, diapers 14, coffee 30 ...), members
with birthdays ~80 % set and ~20 % of them lunar, consents as the demo draws them, and two
years of BG/NBD purchases with staples bought again when they run out (lapsed members come
from its dropout, valuable ones from its heavy buyers), plus walk-in sales: about 7 M
member sales, 9.4 M sales, 16 M lines. ``build_demo`` itself keeps every sale draft in
memory (tens of GB at this size), so the script runs those stages itself and streams the
drafts into compact arrays; rows are written in time order and the loaded tables'
secondary indexes are created after the load (one sort each instead of millions of random
B-tree inserts). A database cached by an older checkout is migrated when it is opened.

**The first care run** over that history serves every occasion that ever became due: every
valuable member who lapsed in two years is invited back and gets a callback task. A brand
sees that once, the day it switches the rule on, so it is run once for the day after the
history ends, committed into the cached database, and its figures are kept beside it
(``care-*.json``) and shown again.

**The measured run** is the next day (``--day``), the steady state of the daily job: for
each store, in one transaction that is rolled back (runs are repeatable), each daily rule
is timed in two halves, *selection* (who is due: ``care.service.select_due``) and
*serving* (``care.service.serve_daily``: claiming the occasions, rendering, queueing, the
win-back callback tasks), wall clock and this process's CPU time (a machine busy with
other work inflates the first, not the second). The ``WorkerContext`` is built as in
``tests/support/worker.py``: the real ``TemplateRenderer`` and the development log-file
SMS channel, no e-mail channel. ``--indexes proposed`` (the default) first makes the
two indexes this benchmark proposes (``INDEXES``); ``current`` puts the schema's back.
Peak RSS is the process's high-water mark.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import multiprocessing
import os
import platform
import pstats
import random
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.care import service as care
from patron.catalog.models import Product
from patron.cli.demo import RichStages
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.registry import Base
from patron.core.settings import Settings
from patron.demo import DEMO_PASSWORD, LOGINS, STORES, DemoConfig, bulk
from patron.demo.build import MEMBER_COLUMNS, TIMEZONE, member_row
from patron.demo.catalogue import create_catalogue
from patron.demo.ids import unix_ms, uuid7_batch
from patron.demo.members import MemberDraft, StoreRef, add_shopping_profiles, generate_members
from patron.demo.purchases import SaleDraft, simulate_member_sales, simulate_walk_ins
from patron.demo.seasons import build_seasons, local_instant
from patron.jobs.worker import WorkerContext
from patron.members import service as members_service
from patron.members.models import Member, Store
from patron.members.schemas import StoreCreate
from patron.messaging.channels.base import Channel, ChannelKind
from patron.messaging.channels.factory import ChannelSet
from patron.messaging.channels.logfile import LogFileChannel
from patron.messaging.templates import TemplateRenderer
from patron.sales.models import Sale, SaleLine

OUT = Path(__file__).resolve().parent / "out"
END_ON = date(2026, 11, 23)  # history stops at the start of this day (exclusive)
CATCH_UP_ON = END_ON  # the first care run (committed once); the measured day follows it
TARGET_S = 60.0
BLOCK = 200_000  # sales written per block (with their lines and discounts)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
console = Console(width=max(120, Console().width))


# ================================================================ building the database


@dataclass
class SaleArrays:
    """Sale drafts as compact columns: a million members' two years fit in ~1 GB."""

    day: array[int] = field(default_factory=lambda: array("i"))
    seconds: array[int] = field(default_factory=lambda: array("i"))
    store: array[int] = field(default_factory=lambda: array("b"))
    member: array[int] = field(default_factory=lambda: array("i"))
    lines: array[int] = field(default_factory=lambda: array("b"))  # lines per sale
    product: array[int] = field(default_factory=lambda: array("h"))
    quantity: array[int] = field(default_factory=lambda: array("h"))
    price: array[int] = field(default_factory=lambda: array("q"))
    line_discount: array[int] = field(default_factory=lambda: array("q"))
    discount_sale: array[int] = field(default_factory=lambda: array("i"))
    discount_label: array[int] = field(default_factory=lambda: array("b"))
    discount_amount: array[int] = field(default_factory=lambda: array("q"))
    labels: dict[str, int] = field(default_factory=dict)

    def add(self, sale: SaleDraft) -> None:
        index = len(self.day)
        self.day.append(sale.day)
        self.seconds.append(sale.seconds)
        self.store.append(sale.store)
        self.member.append(sale.member)
        self.lines.append(len(sale.lines))
        for product, quantity, price, discount in sale.lines:
            self.product.append(product)
            self.quantity.append(quantity)
            self.price.append(price)
            self.line_discount.append(discount)
        for reason in sale.discounts:  # (label, amount) or (kind, reference, label, amount)
            self.discount_sale.append(index)
            self.discount_label.append(self.labels.setdefault(reason[-2], len(self.labels)))
            self.discount_amount.append(reason[-1])

    def __len__(self) -> int:
        return len(self.day)


def _np(values: array[int], dtype: Any = np.int64) -> np.ndarray:
    return np.frombuffer(values, dtype=np.dtype(values.typecode)).astype(dtype)


def _build_engine(path: Path) -> Any:
    """A plain engine for the one-off load: no journal, no fsync, a 1 GB page cache."""
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1000000",
                       "temp_store=MEMORY"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return engine


LOADED = ("members", "member_tags", "member_anniversaries", "consent_events", "sales",
          "sale_lines", "sale_discounts")


def _streams(seed: int, count: int) -> list[tuple[np.random.Generator, random.Random]]:
    """Independent (numpy, stdlib) generator pairs, one per stage, as the demo draws them."""
    pairs = []
    for child in np.random.SeedSequence(seed).spawn(count):
        state = child.generate_state(2, dtype=np.uint64).tolist()
        pairs.append((np.random.Generator(np.random.PCG64(child)),
                      random.Random(state[0] << 64 | state[1])))
    return pairs


def _chain(session: Session, config: DemoConfig) -> list[StoreRef]:
    """The demo's three stores and their staff, through the services."""
    tz = ZoneInfo(TIMEZONE)
    opened_on = config.start_on - timedelta(days=30)
    clock = FixedClock(datetime.combine(opened_on, clock_time(9), tzinfo=tz))
    refs = []
    for index, spec in enumerate(STORES):
        store = members_service.create_store(
            session, clock=clock, actor=None,
            data=StoreCreate(code=spec.code, name=spec.name, address=spec.address,
                             timezone=TIMEZONE, phone=spec.phone))
        staff = [auth.create_user(session, clock=clock, actor=None, username=login.username,
                                  display_name=login.display_name, password=DEMO_PASSWORD,
                                  role=login.role, store_ids=[store.id], language="zh_CN").id
                 for login in sorted((x for x in LOGINS if x.store_code == spec.code),
                                     key=lambda x: x.role != Role.MANAGER)]
        refs.append(StoreRef(index=index, id=store.id, code=spec.code, tz=tz, share=spec.share,
                             open_day=int(spec.opens_at * config.days),
                             staff_ids=tuple(staff)))
    return refs


def _write_members(session: Session, drafts: list[MemberDraft], stores: list[StoreRef],
                   rng: np.random.Generator, stages: RichStages) -> None:
    """Members as ``enroll_member`` writes them, with their tags, anniversaries and the
    consent events behind their consents (the demo's rows, ``demo.build.member_row``)."""
    tables = Base.metadata.tables
    tags = [(m.id, tag) for m in drafts for tag in m.tags]
    anniversaries = [(m, a) for m in drafts for a in m.anniversaries]
    consents = [(m, channel) for m in drafts
                for channel, granted in (("sms", m.sms_consent), ("email", m.email_consent))
                if granted]
    stages.stage("Writing members", len(drafts) + len(tags) + len(anniversaries)
                 + len(consents))
    bulk.insert_rows(session, tables["members"], MEMBER_COLUMNS,
                     (member_row(m, drafts, stores) for m in drafts), on_chunk=stages.advance)
    bulk.insert_rows(session, tables["member_tags"], ("member_id", "tag"), tags,
                     on_chunk=stages.advance)
    ids = uuid7_batch(rng, [unix_ms(m.joined_at) for m, _ in anniversaries])
    bulk.insert_rows(session, tables["member_anniversaries"],
                     ("id", "member_id", "kind", "label", "on"),
                     ((i, m.id, kind, label, on) for i, (m, (kind, label, on))
                      in zip(ids, anniversaries, strict=True)), on_chunk=stages.advance)
    ids = uuid7_batch(rng, [unix_ms(m.joined_at) for m, _ in consents])
    bulk.insert_rows(session, tables["consent_events"],
                     ("id", "member_id", "channel", "granted", "source", "at", "by_user_id",
                      "store_id", "note"),
                     ((i, m.id, channel, True, "enrolment", m.joined_at, m.enrolled_by,
                       stores[m.enrolled_store].id, "")
                      for i, (m, channel) in zip(ids, consents, strict=True)),
                     on_chunk=stages.advance)


def build(path: Path, members: int, seed: int, walk_in_share: float) -> None:
    """Generate the chain into ``path`` (see the module docstring); prints stage timings."""
    started = time.perf_counter()
    engine = _build_engine(path)
    migrate.upgrade(engine)
    config = DemoConfig(end_on=END_ON, seed=seed, members=members,
                        walk_in_share=walk_in_share)
    gc.disable()  # millions of long-lived objects: the collector would rescan them in vain
    with Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bars, Session(engine) as session:
        stages = RichStages(bars)
        indexes = session.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({', '.join(repr(t) for t in LOADED)})")).all()
        for name, _sql in indexes:
            session.execute(text(f'DROP INDEX "{name}"'))
        streams = _streams(config.seed, 6)
        seasons = build_seasons(config.start_on, config.days)
        stages.stage("Stores, staff and catalogue", 2)
        stores = _chain(session, config)
        stages.advance()
        catalogue_rng, _ = streams[0]
        products = create_catalogue(
            session, rng=catalogue_rng,
            created_at=datetime.combine(config.start_on - timedelta(days=30), clock_time(9),
                                        tzinfo=ZoneInfo(TIMEZONE)))
        session.flush()
        categories: dict[uuid.UUID, uuid.UUID] = dict(
            session.execute(select(Product.id, Product.category_id)).all())
        stages.advance()

        stages.stage("Drawing members", members)
        member_rng, member_rnd = streams[1]
        drafts = generate_members(n=members, seasons=seasons, stores=stores, rng=member_rng,
                                  rnd=member_rnd, end_on=config.end_on, advance=stages.advance)
        profile_rng, profile_rnd = streams[2]
        add_shopping_profiles(drafts, products=products, rng=profile_rng, rnd=profile_rnd)

        stages.stage("Simulating purchases (members)", members)
        sales = SaleArrays()
        _, purchase_rnd = streams[3]
        last_member = -1
        for sale in simulate_member_sales(drafts, products=products, seasons=seasons,
                                          stores=stores, rnd=purchase_rnd):
            if sale.member != last_member:
                stages.advance(sale.member - last_member)
                last_member = sale.member
            sales.add(sale)
        member_sales = len(sales)
        walk_ins = round(member_sales * walk_in_share / (1 - walk_in_share))
        stages.stage("Simulating walk-in sales", walk_ins)
        walk_rng, walk_rnd = streams[4]
        for k, sale in enumerate(simulate_walk_ins(walk_ins, products=products,
                                                   seasons=seasons, stores=stores,
                                                   rng=walk_rng, rnd=walk_rnd)):
            sales.add(sale)
            if k % 10_000 == 9_999:
                stages.advance(10_000)

        # staff tag their best customers: the top 5 % by spend get VIP, as in the demo
        n_lines = _np(sales.lines)
        gross = _np(sales.quantity) * _np(sales.price)
        starts = np.cumsum(n_lines) - n_lines
        subtotal = np.add.reduceat(gross, starts)
        discount = np.add.reduceat(_np(sales.line_discount), starts)
        who = _np(sales.member)
        spend = np.bincount(who[who >= 0], weights=(subtotal - discount)[who >= 0],
                            minlength=members)
        for index in np.argsort(-spend, kind="stable")[:max(1, members // 20)].tolist():
            drafts[index].tags = sorted({*drafts[index].tags, "VIP"})

        write_rng, _ = streams[5]
        _write_members(session, drafts, stores, write_rng, stages)
        member_ids: list[uuid.UUID | None] = [d.id for d in drafts]
        del drafts
        _write_sales(session, sales, stores, products=[p.id for p in products],
                     categories=categories, member_ids=member_ids,
                     seasons_start=config.start_on, subtotal=subtotal, discount=discount,
                     rng=write_rng, stages=stages)
        stages.stage("Creating indexes", len(indexes))
        for _name, sql in indexes:
            session.execute(text(sql))
            stages.advance()
        session.commit()
        stages.close()
    gc.enable()
    engine.dispose()
    console.print(f"built {members:,} members, {member_sales:,} member sales and "
                  f"{len(sales) - member_sales:,} walk-in sales, {len(sales.product):,}"
                  f" lines in {time.perf_counter() - started:.0f} s ({path})")


SALE_COLUMNS = ("id", "store_id", "member_id", "cashier_id", "receipt_no", "source",
                "occurred_at", "recorded_at", "subtotal_minor", "discount_minor", "total_minor")
LINE_COLUMNS = ("id", "sale_id", "line_no", "product_id", "quantity", "unit_price_minor",
                "discount_minor", "total_minor")
DISCOUNT_COLUMNS = ("id", "sale_id", "kind", "reference", "label", "amount_minor")


def _write_sales(session: Session, sales: SaleArrays, stores: list[StoreRef], *,
                 products: list[uuid.UUID], categories: dict[uuid.UUID, uuid.UUID],
                 member_ids: list[uuid.UUID | None],
                 seasons_start: date, subtotal: np.ndarray, discount: np.ndarray,
                 rng: np.random.Generator, stages: RichStages) -> None:
    """Sales in time order with receipt numbers per store and day (as ``assemble`` does),
    written a block at a time with their lines and discounts."""
    day, store = _np(sales.day), _np(sales.store)
    days = int(day.max()) + 1
    opening = np.array([[int(local_instant(seasons_start + timedelta(days=d), 0, s.tz)
                             .timestamp()) * 1000 for s in stores] for d in range(days)],
                       dtype=np.int64)
    instant = opening[day, store] + _np(sales.seconds) * 1000
    order = np.lexsort((np.arange(len(day)), store, instant))
    # receipt sequence within (store, local day), in time order
    group = (day * len(stores) + store)[order]
    by_group = np.argsort(group, kind="stable")
    first = np.ones(len(group), dtype=bool)
    first[1:] = group[by_group][1:] != group[by_group][:-1]
    begin = np.maximum.accumulate(np.where(first, np.arange(len(group)), 0))
    seq = np.empty(len(group), dtype=np.int64)
    seq[by_group] = np.arange(len(group)) - begin + 1

    n_lines = _np(sales.lines)
    line_start = np.cumsum(n_lines) - n_lines
    product, quantity = _np(sales.product), _np(sales.quantity)
    price, line_discount = _np(sales.price), _np(sales.line_discount)
    discount_sale = _np(sales.discount_sale)
    discount_order = np.argsort(discount_sale, kind="stable")
    discount_start = np.searchsorted(discount_sale[discount_order], np.arange(len(day)))
    discount_end = np.searchsorted(discount_sale[discount_order], np.arange(len(day)),
                                   side="right")
    labels = {v: k for k, v in sales.labels.items()}
    discount_label, discount_amount = _np(sales.discount_label), _np(sales.discount_amount)
    member = _np(sales.member)
    cashier_pick = rng.random(len(day))
    delay = rng.integers(2, 30, size=len(day))
    day_text = [f"{seasons_start + timedelta(days=d):%Y%m%d}" for d in range(days)]
    tables = Base.metadata.tables
    # sale lines keep their product's category where the schema has that column
    line_columns = LINE_COLUMNS + (("category_id",) if "category_id" in
                                   tables["sale_lines"].c else ())

    stages.stage("Writing sales, lines, discounts", len(day))
    for block_start in range(0, len(order), BLOCK):
        block = order[block_start:block_start + BLOCK]
        ms = instant[block].tolist()
        ids = uuid7_batch(rng, ms)
        cols = [a[block].tolist() for a in (store, member, day, subtotal, discount, n_lines,
                                             line_start, discount_start, discount_end)]
        picks = cashier_pick[block_start:block_start + BLOCK].tolist()
        delays = delay[block_start:block_start + BLOCK].tolist()
        seqs = seq[block_start:block_start + BLOCK].tolist()
        lo = min(cols[6])
        hi = max(s + n for s, n in zip(cols[6], cols[5], strict=True))
        line_cols = [a[lo:hi].tolist() for a in (product, quantity, price, line_discount)]
        sale_rows = []
        line_rows: list[tuple[Any, ...]] = []
        line_ms: list[int] = []
        discount_rows: list[tuple[Any, ...]] = []
        for k, (s_store, s_member, s_day, s_sub, s_disc, s_lines, s_first, d_lo, d_hi) in \
                enumerate(zip(*cols, strict=True)):
            at = EPOCH + timedelta(milliseconds=ms[k])
            ref = stores[s_store]
            sale_id = ids[k]
            sale_rows.append((
                sale_id, ref.id, member_ids[s_member] if s_member >= 0 else None,
                ref.staff_ids[0] if picks[k] < 0.2 else ref.staff_ids[-1],
                f"{ref.code}-{day_text[s_day]}-{seqs[k]:05d}", "import", at,
                at + timedelta(seconds=delays[k]), s_sub, s_disc, s_sub - s_disc))
            for n in range(s_lines):
                j = s_first - lo + n
                q, p, d = line_cols[1][j], line_cols[2][j], line_cols[3][j]
                line_ms.append(ms[k])
                product_id = products[line_cols[0][j]]
                line_rows.append((sale_id, n + 1, product_id, q, p, d, q * p - d,
                                  categories[product_id])[:len(line_columns) - 1])
            for j in discount_order[d_lo:d_hi].tolist():
                discount_rows.append((sale_id, "promotion", None, labels[discount_label[j]],
                                      int(discount_amount[j])))
        bulk.insert_rows(session, tables["sales"], SALE_COLUMNS, sale_rows)
        line_ids = uuid7_batch(rng, line_ms)
        bulk.insert_rows(session, tables["sale_lines"], line_columns,
                         ((i, *row) for i, row in zip(line_ids, line_rows, strict=True)))
        discount_ids = uuid7_batch(rng, [ms[0]] * len(discount_rows))
        bulk.insert_rows(session, tables["sale_discounts"], DISCOUNT_COLUMNS,
                         ((i, *row) for i, row in zip(discount_ids, discount_rows,
                                                       strict=True)))
        stages.advance(len(block))


# ================================================================ indexes

#: The two indexes this benchmark proposes, replacing the current ones of the same name
#: (migration lines in docs/performance.md). They make the care rules' reads index-only:
#: replenishment joins a member's sales (member_id, occurred_at -> id) to their lines
#: (sale_id -> quantity, refunded_quantity, product_id); win-back sums a lapsed member's
#: sales (member_id, occurred_at -> total_minor, refunded_minor). ``product_id`` comes last
#: on purpose: second, SQLite (without statistics) would use ``sale_id = ? AND product_id
#: IN (...)`` as an index range and probe once per product per sale, ten times slower.
INDEXES = {
    "current": {"ix_sales_member_occurred": ("sales", ("member_id", "occurred_at")),
                "ix_sale_lines_sale_id": ("sale_lines", ("sale_id",))},
    "proposed": {"ix_sales_member_occurred": ("sales", ("member_id", "occurred_at", "id",
                                                        "total_minor", "refunded_minor")),
                 "ix_sale_lines_sale_id": ("sale_lines", ("sale_id", "quantity",
                                                          "refunded_quantity", "product_id"))},
}


def use_indexes(db: Database, which: str) -> None:
    """Make the two indexes match ``INDEXES[which]`` (rebuilding one takes minutes at 1 M)."""
    with db.engine.connect() as conn:
        for name, (table, columns) in INDEXES[which].items():
            have = tuple(row[2] for row in conn.exec_driver_sql(f'PRAGMA index_info("{name}")'))
            if have == columns:
                continue
            started = time.perf_counter()
            conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE INDEX "{name}" ON "{table}" ({", ".join(columns)})')
            conn.commit()
            console.print(f"index {name} on {table} ({', '.join(columns)}): "
                          f"{time.perf_counter() - started:.0f} s")


# ================================================================ the daily run


@dataclass
class Row:
    """One rule of one store on one day: what was selected and queued, and what it cost."""

    day: date
    store: str
    rule: str
    selected: int
    queued: int
    select_s: float
    serve_s: float
    cpu_s: float  # selection and serving
    rss_mb: float
    select_cpu_s: float = -1.0  # unknown in figures kept by an older version of this script

    @property
    def serve_cpu_s(self) -> float:
        return self.cpu_s - self.select_cpu_s


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker_context(db: Database, url: str, sms_log: Path) -> WorkerContext:
    """A worker's context as tests/support/worker.py builds it: the real renderer and the
    development log-file SMS channel (no e-mail channel, so every message goes by SMS)."""
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    settings = Settings(environment="development", database_url=url, default_region="CN",
                        default_language="zh_CN")
    channels: dict[ChannelKind, Channel] = {
        ChannelKind.SMS: LogFileChannel(path=sms_log, kind=ChannelKind.SMS, clock=clock)}
    return WorkerContext(db=db, clock=clock, settings=settings,
                         renderer=TemplateRenderer(default_language="zh_CN"),
                         channels=ChannelSet(channels))


def run_day(session: Session, ctx: WorkerContext, store: Store, day: date) -> list[Row]:
    """Every daily rule of ``run_daily_for_store``, selection and serving timed apart."""
    # the worker runs care at 09:00 in the store's zone (jobs.handlers.SCHEDULES)
    ctx.clock = FixedClock(datetime.combine(day, clock_time(9), ZoneInfo(store.timezone)))
    rows = []
    for code, _rule in care.DAILY:
        cpu = time.process_time()
        started = time.perf_counter()
        config, due = care.select_due(session, ctx, code, store, day)
        selected, selected_cpu = time.perf_counter(), time.process_time()
        queued = care.serve_daily(session, ctx, code, store, day, config, due) if due else 0
        done = time.perf_counter()
        rows.append(Row(day, store.code, code, len(due), queued, selected - started,
                        done - selected, time.process_time() - cpu, peak_rss_mb(),
                        selected_cpu - cpu))
    return rows


def run(db: Database, ctx: WorkerContext, day: date, *, commit: bool,
        profile: Path | None = None, done: Sequence[str] = (),
        on_store: Callable[[list[Row]], None] | None = None) -> list[Row]:
    """The daily rules of every store (but those in ``done``) for ``day``, each store in
    its own transaction as the worker runs them: committed, or rolled back so that the
    cached database stays as it was."""
    profiler = cProfile.Profile() if profile else None
    rows: list[Row] = []
    with db.read() as session:
        stores = [s.id for s in session.scalars(select(Store).order_by(Store.code))
                  if s.code not in done]
    for store_id in stores:
        with db.write() as session:
            store = session.get(Store, store_id)
            assert store is not None
            code = store.code
            if profiler:
                profiler.enable()
            store_rows = run_day(session, ctx, store, day)
            if profiler:
                profiler.disable()
            if not commit:
                session.rollback()
        rows.extend(store_rows)
        console.print(f"  {code} {day}: " + ", ".join(
            f"{r.rule} {r.queued:,}" for r in store_rows if r.selected or r.select_s > 0.005))
        if on_store:
            on_store(store_rows)
    if profiler and profile:
        profiler.dump_stats(profile)
        stats = pstats.Stats(str(profile), stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(30)
    return rows


def catch_up(db: Database, ctx: WorkerContext, sidecar: Path) -> list[Row]:
    """The first care run over the history, committed once into the cached database.

    Run for the first time, the rules serve every occasion that ever became due: every
    valuable member who lapsed in two years is invited back (and gets a callback task).
    That happens once, when a brand switches the rule on; every later day only serves
    what became due that day. Its figures are kept beside the database and shown again
    on later runs; the day measured by default is the day after it.
    """
    state = json.loads(sidecar.read_text()) if sidecar.exists() else {"catch_up": []}
    rows = [Row(**{**r, "day": date.fromisoformat(r["day"])}) for r in state["catch_up"]]
    done = {r.store for r in rows}

    def save(store_rows: list[Row]) -> None:
        rows.extend(store_rows)
        state["catch_up"] = [{**asdict(r), "day": r.day.isoformat()} for r in rows]
        sidecar.write_text(json.dumps(state, indent=1))

    with db.read() as session:
        missing = [s.code for s in session.scalars(select(Store)) if s.code not in done]
    if missing:
        console.print(f"first care run on the history ({CATCH_UP_ON}), committed once ...")
        run(db, ctx, CATCH_UP_ON, commit=True, done=sorted(done), on_store=save)
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return rows


def _seconds(value: float) -> str:
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def results_table(rows: list[Row], title: str) -> Table:
    """Per store and rule, then the day's totals: wall-clock seconds, and the process's CPU
    seconds (which a machine busy with other work does not inflate)."""
    table = Table("store", "rule", "due", "queued", "selection s", "(CPU s)", "serving s",
                  "(CPU s)", "ms / message", "peak RSS MB", title=title)

    def cpu(value: float) -> str:
        return _seconds(value) if value >= 0 else ""

    for r in rows:
        if not r.selected and r.select_s < 0.005:
            continue  # a rule that is switched off (anniversaries, holidays by default)
        per = f"{1000 * r.serve_s / r.queued:.2f}" if r.queued else ""
        known = r.select_cpu_s >= 0
        table.add_row(r.store, r.rule, f"{r.selected:,}", f"{r.queued:,}",
                      _seconds(r.select_s), cpu(r.select_cpu_s), _seconds(r.serve_s),
                      cpu(r.serve_cpu_s) if known else "", per, f"{r.rss_mb:,.0f}")
    select_s = sum(r.select_s for r in rows)
    serve_s = sum(r.serve_s for r in rows)
    known = all(r.select_cpu_s >= 0 for r in rows)
    select_cpu = sum(r.select_cpu_s for r in rows) if known else -1.0
    total_cpu = sum(r.cpu_s for r in rows)
    table.add_section()
    colour = "green" if select_s < TARGET_S else "red"
    table.add_row("all", "[bold]selection only[/]", f"{sum(r.selected for r in rows):,}", "",
                  f"[{colour}]{_seconds(select_s)}[/]", cpu(select_cpu), "", "", "", "")
    colour = "green" if select_s + serve_s < TARGET_S else "red"
    table.add_row("all", "[bold]daily run[/]", "", f"{sum(r.queued for r in rows):,}",
                  _seconds(select_s), cpu(select_cpu), _seconds(serve_s),
                  cpu(total_cpu - select_cpu) if known else "", "",
                  f"{max(r.rss_mb for r in rows):,.0f}")
    colour = "green" if select_s + serve_s < TARGET_S else "red"
    table.add_row("all", "[bold]daily run, in all[/]", "", "",
                  f"[{colour}]{_seconds(select_s + serve_s)}[/]", f"{_seconds(total_cpu)}",
                  "", "", "", "")
    return table


def machine() -> str:
    return (f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.1f}")


# ================================================================ main


def summary(session: Session, path: Path) -> str:
    """What the cached database holds (counted from the tables, a few seconds at 1 M)."""
    members = session.scalar(select(func.count()).select_from(Member)) or 0
    birthdays = session.scalar(select(func.count()).where(
        Member.birthday_calendar.is_not(None))) or 0
    lunar = session.scalar(select(func.count()).where(
        Member.birthday_calendar == "lunar")) or 0
    sms = session.scalar(select(func.count()).where(Member.sms_consent.is_(True))) or 0
    sales = session.scalar(select(func.count()).select_from(Sale)) or 0
    member_sales = session.scalar(select(func.count()).where(Sale.member_id.is_not(None))) or 0
    lines = session.scalar(select(func.count()).select_from(SaleLine)) or 0
    first, last = session.execute(select(func.min(Sale.occurred_at),
                                         func.max(Sale.occurred_at))).one()
    return (f"{path.name} ({path.stat().st_size / 1e9:.1f} GB): {members:,} members "
            f"({birthdays / members:.0%} with a birthday, {lunar / max(birthdays, 1):.0%} of "
            f"them lunar; SMS consent {sms / members:.0%}), {sales:,} sales "
            f"({member_sales:,} by members) with {lines:,} lines, {first:%Y-%m-%d} to "
            f"{last:%Y-%m-%d}")


def database_path(members: int, seed: int) -> Path:
    return OUT / f"care-{members}-s{seed}.db"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--walk-in-share", type=float, default=0.25)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached database")
    parser.add_argument("--day", type=date.fromisoformat,
                        default=CATCH_UP_ON + timedelta(days=1),
                        help="the local day to measure (default: the day after the first "
                        f"care run, which is committed once for {CATCH_UP_ON})")
    parser.add_argument("--indexes", choices=sorted(INDEXES), default="proposed",
                        help="run with the schema's current indexes or the proposed ones")
    parser.add_argument("--profile", action="store_true",
                        help="write a cProfile of the run to bench/out/care_jobs.prof")
    args = parser.parse_args(argv)
    console.print(f"machine: {machine()}")
    OUT.mkdir(exist_ok=True)
    path = database_path(args.members, args.seed)
    if args.rebuild or not path.exists():
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        # in a child process, so that the run's peak RSS is the run's own
        child = multiprocessing.get_context("fork").Process(
            target=build, args=(path, args.members, args.seed, args.walk_in_share))
        child.start()
        child.join()
        if child.exitcode != 0:
            Path(path).unlink(missing_ok=True)
            return 1
    url = f"sqlite:///{path}"
    db = Database.from_url(url)
    try:
        migrate.upgrade(db.engine)  # a database cached by an older checkout
        use_indexes(db, args.indexes)
        with db.read() as session:
            console.print(summary(session, path))
        with tempfile.TemporaryDirectory() as scratch:
            ctx = worker_context(db, url, Path(scratch) / "sms.log")
            first = catch_up(db, ctx, path.with_suffix(".json"))
            console.print(results_table(first, title=(
                f"First care run over the history ({CATCH_UP_ON}), {args.members:,} members, "
                "SQLite: once, committed; serves two years of lapsed members")))
            console.print(f"measuring {args.day} (indexes: {args.indexes}) ...")
            started = time.perf_counter()
            rows = run(db, ctx, args.day, commit=False,
                       profile=OUT / "care_jobs.prof" if args.profile else None)
            console.print(results_table(rows, title=(
                f"Daily care run {args.day}, {args.members:,} members, SQLite, "
                f"{args.indexes} indexes ({time.perf_counter() - started:.0f} s in all, "
                "rolled back)")))
        console.print(f"load average now {os.getloadavg()[0]:.1f}")
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
