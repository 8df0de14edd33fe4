"""A chain's mixed day at the till, from a separate load process over HTTP, on PostgreSQL.

    .venv/bin/python bench/load.py                         # 300 s, 2 API workers, 8 clients
    .venv/bin/python bench/load.py --duration 30 --keep    # a quick run; keep the database
    .venv/bin/python bench/load.py --reuse                 # reuse a kept database

What it does, in order:

1. **Prepare.** Creates the database ``patron_load`` on the local PostgreSQL server
   (``--server``), migrates it and loads ``patron demo``'s chain into it (3 stores, their
   staff, the catalogue, ``--members`` members with two years of purchases, tiers, points,
   stored value; seed 42, history ending 2026-11-23). ``--reuse`` skips this for a kept
   database. Each run issues one POS API key per till (two per store) through the auth
   service, as the owner would.
2. **Serve.** Starts ``patron serve --workers 2`` (``--workers``) as a real process in
   production mode, its log in ``bench/out/load-server.log``.
3. **Load.** ``--clients`` virtual clients in this process (asyncio + httpx, one
   connection each, no think time: the server is kept busy) each draw one call after
   another from the mix of the issue:

   * 60 % **lookups** as a cashier does them, with the till's key: by full phone
     (``GET /members/lookup?phone=``, half of them), by the last four digits of the phone
     (``GET /members?q=1234``: first page and total, a quarter) and by card number
     (``GET /members/lookup?card_no=``, a quarter);
   * 25 % **checkouts**: 1-4 lines of the catalogue (not the paid-membership products,
     which are sold to a member at the desk), a fifth of them walk-ins; the till
     quotes the basket (``POST /sales/quote``: tier discounts, any promotions),
     then posts the sale (``POST /sales``) with a fresh ``Idempotency-Key``, paying part
     from stored value when the member has some (30 % of member sales) and with points
     when the member has enough (20 %); one sale in twenty is re-sent with the same key
     and body, as a till that timed out would, and must come back byte for byte with
     ``Idempotent-Replayed: true``;
   * 5 % **top-ups** of stored value (``POST /members/{id}/wallet/top-ups``, with a key);
   * 10 % **member 360 page views** (``GET /members/{id}``, the web admin's HTML page)
     by a store manager signed in through ``POST /api/v1/session``.

   Value moves for a member come from one client only (members are dealt out to the
   clients), so each till knows the member's points and balance from its own receipts,
   as it would at the counter, and never asks for more than there is. The first
   ``--warmup`` seconds are driven but not measured; ``--mix lookup=1`` (say) drives one
   family alone, to see what each costs.
4. **Watch.** Every ``--sample`` seconds the resident memory (VmRSS from ``/proc``) of the
   server's process tree is read; growth is the mean of the last window against the mean
   of the first (a minute each, or a fifth of a short run).

It prints one row per call: count, calls/s, p50/p95/p99/max latency in ms as this client
saw it, errors; the totals; the CPU the API processes, PostgreSQL's backends for this
database and the load process used (per call: what a call costs, whatever the queue);
memory at the start and end of the run. Any error, a 5xx, a
timeout or a wrong status, makes the exit status 1, and so does memory growth above
``--max-growth`` per cent. The database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "src"))

from patron.api.deps import SESSION_COOKIE  # noqa: E402
from patron.auth import service as auth  # noqa: E402
from patron.auth.enums import Role  # noqa: E402
from patron.auth.models import User  # noqa: E402
from patron.catalog.models import Product  # noqa: E402
from patron.core import migrate  # noqa: E402
from patron.core.clock import SystemClock  # noqa: E402
from patron.core.db import Database  # noqa: E402
from patron.demo import DEMO_PASSWORD, DemoConfig, build_demo  # noqa: E402
from patron.loyalty.models import LoyaltyProgram, MembershipPlan, PointsAccount  # noqa: E402
from patron.members.models import Member, Store  # noqa: E402
from patron.wallet.models import WalletAccount  # noqa: E402

DB_NAME = "patron_load"
END_ON = date(2026, 11, 23)
TILLS_PER_STORE = 2
# The mix of the issue, by call family; lookups split over the cashier's three ways.
MIX = (("lookup", 60), ("checkout", 25), ("top-up", 5), ("page", 10))
LOOKUPS = (("lookup phone", 2), ("lookup last 4", 1), ("lookup card", 1))
ROWS = ("lookup phone", "lookup last 4", "lookup card", "quote", "checkout",
        "checkout retry", "top-up", "member page")
TOP_UPS = (10_000, 20_000, 50_000, 100_000)  # minor units: 100-1,000 yuan


# -- preparing the database ----------------------------------------------------------------

def admin_url(server: str) -> str:
    return server.rstrip("/") + "/postgres"


def create_database(server: str, *, drop: bool) -> bool:
    """Create ``patron_load``; returns False when it exists and is kept (``drop`` False)."""
    admin = create_engine(admin_url(server), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                 {"n": DB_NAME})
            if exists and not drop:
                return False
            conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {DB_NAME}"))
            return True
    finally:
        admin.dispose()


def drop_database(server: str) -> None:
    admin = create_engine(admin_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
    admin.dispose()


def build(url: str, members: int, console: Console) -> None:
    """Migrate and load the demo chain (``patron demo``'s generator, its defaults)."""
    db = Database.from_url(url)
    try:
        migrate.upgrade(db.engine)
        started = time.perf_counter()
        with (console.status(f"loading the demo chain, {members:,} members (patron.demo)"),
              db.write() as s):
            build_demo(s, config=DemoConfig(end_on=END_ON, members=members))
        console.print(f"demo chain loaded in {time.perf_counter() - started:.1f} s")
    finally:
        db.dispose()


def issue_keys(url: str) -> list[tuple[str, str]]:
    """A POS key per till, issued by the owner for this run (the database keeps only
    their hashes); returns (store id, key)."""
    db = Database.from_url(url)
    clock = SystemClock()
    keys: list[tuple[str, str]] = []
    try:
        with db.write() as s:
            owner = s.scalar(select(User).where(User.role == Role.OWNER.value).limit(1))
            assert owner is not None, "the demo has an owner"
            boss = auth.principal_for_user(owner)
            for store in s.scalars(select(Store).order_by(Store.code)):
                for till in range(1, TILLS_PER_STORE + 1):
                    _, key = auth.create_api_key(s, clock=clock, actor=boss, store_id=store.id,
                                                 name=f"load {store.code} till {till}")
                    keys.append((str(store.id), key))
    finally:
        db.dispose()
    return keys


@dataclass
class Customer:
    """What a till knows of a member: how the cashier finds them and what they hold."""

    id: str
    phone: str  # national number, as the customer says it
    last4: str
    card_no: str
    points: int
    wallet_minor: int


@dataclass
class Chain:
    keys: list[tuple[str, str]]  # (store id, POS key)
    managers: list[str]  # usernames of the store managers
    customers: list[Customer]
    skus: list[str]
    points_per_major_redeemed: int


def read_chain(url: str) -> Chain:
    """Everything the clients need, read once before the load starts."""
    db = Database.from_url(url)
    try:
        with db.read() as s:
            points = dict(s.execute(select(PointsAccount.member_id, PointsAccount.available))
                          .all())
            wallets = {m: p + b for m, p, b in s.execute(
                select(WalletAccount.member_id, WalletAccount.principal_minor,
                       WalletAccount.bonus_minor))}
            customers = [
                Customer(id=str(mid), phone=(phone or "").removeprefix("+86"),
                         last4=last4 or "",
                         card_no=card, points=points.get(mid, 0),
                         wallet_minor=wallets.get(mid, 0))
                for mid, phone, last4, card in s.execute(
                    select(Member.id, Member.phone, Member.phone_last4, Member.card_no)
                    .where(Member.status == "active", Member.phone.is_not(None))
                    .order_by(Member.card_no))]
            plans = select(MembershipPlan.product_id)
            skus = list(s.scalars(select(Product.sku).where(Product.active.is_(True),
                                                            Product.id.not_in(plans))
                                  .order_by(Product.sku)))
            managers = list(s.scalars(select(User.username)
                                      .where(User.role == Role.MANAGER.value)
                                      .order_by(User.username)))
            program = s.scalar(select(LoyaltyProgram).limit(1))
            ppmr = program.points_per_major_redeemed if program else 100
    finally:
        db.dispose()
    return Chain(keys=issue_keys(url), managers=managers, customers=customers, skus=skus,
                 points_per_major_redeemed=ppmr)


# -- the server and its memory -------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str, workers: int, console: Console) -> tuple[subprocess.Popen[bytes], str]:
    """``patron serve`` as a deployment runs it; returns the process and its base URL once
    every worker has started (uvicorn logs each one's startup)."""
    started = time.perf_counter()
    port = free_port()
    env = os.environ | {"PATRON_DATABASE_URL": url, "PATRON_ENVIRONMENT": "production",
                        "PATRON_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
                        "PATRON_DEFAULT_LANGUAGE": "en"}
    log_path = OUT / "load-server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("patron")), "serve", "--port", str(port),
         "--workers", str(workers)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    while time.perf_counter() - started < 600:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}); see {log_path}")
        ready = log_path.read_text(errors="replace").count("Application startup complete")
        if ready >= workers:
            try:
                if httpx.get(base + "/api/v1/openapi.json", timeout=10).status_code == 200:
                    console.print(f"patron serve --workers {workers}: all workers up in "
                                  f"{time.perf_counter() - started:.1f} s")
                    return proc, base
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"the server did not start in 10 minutes; see {log_path}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and its workers (their own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the parent ids in ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children[ppid].append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used so far (``/proc/<pid>/stat``)."""
    used = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        used[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return used


def database_backends() -> list[int]:
    """PostgreSQL's backend processes serving the load database (their title names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres: ") and f" {DB_NAME} " in title:
                pids.append(int(entry.name))
    return pids


@dataclass
class CpuMeter:
    """CPU used during the measured run by the API processes, by PostgreSQL's backends
    for this database and by this load process: where the time of a call goes."""

    server_pid: int
    api: dict[int, float] = field(default_factory=dict)
    db: dict[int, float] = field(default_factory=dict)
    client: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.api = cpu_seconds(process_tree(self.server_pid))
        self.db = cpu_seconds(database_backends())
        self.client = time.process_time()

    def stop(self) -> None:
        api = cpu_seconds(process_tree(self.server_pid))
        db = cpu_seconds(database_backends())
        self.seconds = {
            "API processes (patron serve)": sum(v - self.api.get(p, 0.0) for p, v in api.items()),
            "PostgreSQL backends": sum(v - self.db.get(p, 0.0) for p, v in db.items()),
            "load process (clients)": time.process_time() - self.client}


@dataclass
class MemorySample:
    at: float  # seconds since the measured run began
    total_mb: float
    largest_mb: float  # the largest single process: an API worker


# -- the clients ---------------------------------------------------------------------------

@dataclass
class Tally:
    """Latencies (ms) and errors of one call kind, shared by all clients."""

    ms: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class Run:
    tallies: dict[str, Tally]
    cpu: CpuMeter
    measuring: bool = False
    samples: list[MemorySample] = field(default_factory=list)
    # measured sales by how they were paid: walk-in, with points, with stored value
    paid: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[str] = field(default_factory=list)  # the first few error bodies


def problem(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return ""
    return str(body.get("code") or body.get("title") or "") if isinstance(body, dict) else ""


class Till:
    """One virtual client: a till of one store (its POS key) and a manager's browser."""

    def __init__(self, n: int, *, chain: Chain, mine: list[Customer], run: Run,
                 till: httpx.AsyncClient, browser: httpx.AsyncClient,
                 mix: list[tuple[str, int]]) -> None:
        self.rng = random.Random(n)
        self.families, self.weights = [m for m, _ in mix], [w for _, w in mix]
        self.chain, self.mine, self.run = chain, mine, run
        self.http, self.browser = till, browser
        _store_id, key = chain.keys[n % len(chain.keys)]
        self.pos = {"Authorization": f"Bearer {key}"}
        self.manager = chain.managers[n % len(chain.managers)]

    async def call(self, kind: str, method: str, url: str, *, expect: int,
                   via: httpx.AsyncClient | None = None, **kw: Any) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = await (via or self.http).request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.fail(kind, type(exc).__name__, repr(exc))
            return None
        elapsed = (time.perf_counter() - t0) * 1000
        if self.run.measuring:
            self.run.tallies[kind].ms.append(elapsed)
        if r.status_code != expect:
            self.fail(kind, f"{r.status_code} {problem(r)}".strip(), r.text[:300])
            return None
        return r

    def fail(self, kind: str, what: str, detail: str) -> None:
        if self.run.measuring:
            self.run.tallies[kind].errors[what] += 1
        if len(self.run.examples) < 5:
            self.run.examples.append(f"{kind}: {what}: {detail}")

    async def sign_in(self) -> None:
        """The manager signs in once; the browser client keeps the session cookie."""
        r = await self.browser.post("/api/v1/session", json={"username": self.manager,
                                                              "password": DEMO_PASSWORD})
        r.raise_for_status()
        assert SESSION_COOKIE in self.browser.cookies

    async def step(self) -> None:
        family = self.rng.choices(self.families, self.weights)[0]
        if family == "lookup":
            await self.lookup()
        elif family == "checkout":
            await self.checkout()
        elif family == "top-up":
            await self.top_up()
        else:
            await self.member_page()

    async def lookup(self) -> None:
        kind = self.rng.choices([k for k, _ in LOOKUPS], [w for _, w in LOOKUPS])[0]
        c = self.rng.choice(self.chain.customers)
        if kind == "lookup phone":
            await self.call(kind, "GET", "/api/v1/members/lookup", params={"phone": c.phone},
                            headers=self.pos, expect=200)
        elif kind == "lookup card":
            await self.call(kind, "GET", "/api/v1/members/lookup",
                            params={"card_no": c.card_no}, headers=self.pos, expect=200)
        else:
            await self.call(kind, "GET", "/api/v1/members", params={"q": c.last4},
                            headers=self.pos, expect=200)

    async def checkout(self) -> None:
        rng = self.rng
        c = rng.choice(self.mine) if rng.random() >= 0.2 else None  # a fifth are walk-ins
        lines = [{"sku": rng.choice(self.chain.skus), "quantity": rng.randint(1, 3)}
                 for _ in range(rng.randint(1, 4))]
        body: dict[str, Any] = {"lines": lines}
        if c is not None:
            body["member_id"] = c.id
        q = await self.call("quote", "POST", "/api/v1/sales/quote", json=body,
                            headers=self.pos, expect=200)
        if q is None:
            return
        total = int(q.json()["total_minor"])
        per_point = 100 / self.chain.points_per_major_redeemed  # minor units per point
        step = max(1, int(self.chain.points_per_major_redeemed // 100))
        wallet_minor = points = 0
        if c is not None and c.wallet_minor > 0 and rng.random() < 0.3:
            wallet_minor = min(c.wallet_minor, total // 2)
        if c is not None and rng.random() < 0.2:
            most = min(c.points, int((total - wallet_minor) / per_point))
            points = (min(most, rng.randint(1, 20) * 100) // step) * step
        value = round(points * per_point)
        body["points_to_redeem"] = points
        body["payments"] = {"wallet_minor": wallet_minor,
                            "card_minor": total - wallet_minor - value}
        headers = self.pos | {"Idempotency-Key": uuid.uuid4().hex}
        r = await self.call("checkout", "POST", "/api/v1/sales", json=body, headers=headers,
                            expect=201)
        if r is None:
            return
        receipt = r.json()
        if self.run.measuring:
            self.run.paid["walk-in" if c is None else "member"] += 1
            self.run.paid["with points"] += points > 0
            self.run.paid["with stored value"] += wallet_minor > 0
        if c is not None:
            c.points = int(receipt["points_available"] or 0)
            c.wallet_minor = int(receipt["wallet_balance_minor"] or 0)
        if rng.random() < 0.05:
            again = await self.call("checkout retry", "POST", "/api/v1/sales", json=body,
                                    headers=headers, expect=201)
            if again is not None and (again.content != r.content or
                                      again.headers.get("Idempotent-Replayed") != "true"):
                self.fail("checkout retry", "not replayed", again.text[:300])

    async def top_up(self) -> None:
        c = self.rng.choice(self.mine)
        r = await self.call("top-up", "POST", f"/api/v1/members/{c.id}/wallet/top-ups",
                            json={"amount_minor": self.rng.choice(TOP_UPS)},
                            headers=self.pos | {"Idempotency-Key": uuid.uuid4().hex},
                            expect=201)
        if r is not None:
            c.wallet_minor = int(r.json()["balance_minor"])

    async def member_page(self) -> None:
        c = self.rng.choice(self.chain.customers)
        r = await self.call("member page", "GET", f"/members/{c.id}", via=self.browser,
                            expect=200)
        if r is not None and c.card_no not in r.text:
            self.fail("member page", "wrong page", r.text[:300])

    async def drive(self, until: float) -> None:
        while time.monotonic() < until:
            await self.step()


async def watch(pid: int, run: Run, began: list[float], until: float, every: float) -> None:
    """Sample the server tree's memory while the run is measured."""
    while time.monotonic() < until:
        if run.measuring:
            sizes = [rss_mb(p) for p in process_tree(pid)]
            run.samples.append(MemorySample(at=time.monotonic() - began[0],
                                            total_mb=sum(sizes), largest_mb=max(sizes)))
        await asyncio.sleep(every)


async def load(base: str, chain: Chain, pid: int, args: argparse.Namespace,
               console: Console) -> Run:
    run = Run(tallies={k: Tally() for k in ROWS}, cpu=CpuMeter(pid))
    shares: list[list[Customer]] = [[] for _ in range(args.clients)]
    for i, customer in enumerate(chain.customers):  # a member's value moves from one till
        shares[i % args.clients].append(customer)
    # An idle connection is closed by the client before the server's keep-alive timeout
    # (uvicorn: 5 s) can close it under a request in flight (httpx's default is also 5 s,
    # and that race showed as ReadError on a browser connection idle between page views).
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=2)
    clients = [httpx.AsyncClient(base_url=base, timeout=args.timeout, limits=limits)
               for _ in range(2 * args.clients)]
    tills = [Till(n, chain=chain, mine=shares[n], run=run, till=clients[2 * n],
                  browser=clients[2 * n + 1], mix=args.mix) for n in range(args.clients)]
    try:
        await asyncio.gather(*(t.sign_in() for t in tills))
        began = [time.monotonic() + args.warmup]
        until = began[0] + args.duration
        tasks = [asyncio.create_task(t.drive(until)) for t in tills]
        tasks.append(asyncio.create_task(watch(pid, run, began, until, args.sample)))
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task(f"warm-up {args.warmup:.0f} s", total=args.duration,
                                status="")
            while not all(t.done() for t in tasks):
                await asyncio.sleep(1)
                now = time.monotonic()
                if not run.measuring and now >= began[0]:
                    run.measuring = True
                    run.cpu.start()
                    bar.update(task, description=f"load, {args.clients} clients")
                if run.measuring:
                    calls = sum(len(t.ms) for t in run.tallies.values())
                    errors = sum(sum(t.errors.values()) for t in run.tallies.values())
                    seconds = max(now - began[0], 1e-9)
                    bar.update(task, completed=min(seconds, args.duration),
                               status=f"{calls / seconds:,.0f} calls/s, {errors} errors")
        run.cpu.stop()
        for t in tasks:
            t.result()
    finally:
        for c in clients:
            await c.aclose()
    return run


# -- the report ----------------------------------------------------------------------------

def pct(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] if ordered else 0.0


def report(run: Run, args: argparse.Namespace, console: Console) -> tuple[int, float]:
    """Print the tables; returns (errors, memory growth in per cent)."""
    mix = ", ".join(f"{name} {weight}" for name, weight in args.mix)
    table = Table(title=f"load over HTTP ({mix}): {args.clients} clients, "
                        f"{args.duration:.0f} s, patron serve --workers {args.workers}, "
                        "PostgreSQL")
    for col in ("call", "count", "share", "calls/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                "errors"):
        table.add_column(col, justify="right" if col != "call" else "left")
    every = [x for t in run.tallies.values() for x in t.ms]
    total_errors = sum(sum(t.errors.values()) for t in run.tallies.values())
    for kind in ROWS:
        t = run.tallies[kind]
        if not t.ms and not t.errors:
            continue  # a family --mix left out
        ordered = sorted(t.ms)
        table.add_row(kind, f"{len(ordered):,}", f"{len(ordered) / max(len(every), 1):.1%}",
                      f"{len(ordered) / args.duration:,.1f}", f"{pct(ordered, 0.50):.1f}",
                      f"{pct(ordered, 0.95):.1f}", f"{pct(ordered, 0.99):.1f}",
                      f"{ordered[-1] if ordered else 0:.1f}", str(sum(t.errors.values())))
    ordered = sorted(every)
    table.add_row("all calls", f"{len(ordered):,}", "100%",
                  f"{len(ordered) / args.duration:,.1f}", f"{pct(ordered, 0.50):.1f}",
                  f"{pct(ordered, 0.95):.1f}", f"{pct(ordered, 0.99):.1f}",
                  f"{ordered[-1] if ordered else 0:.1f}", str(total_errors), style="bold")
    console.print(table)
    for kind in ROWS:
        for what, n in run.tallies[kind].errors.items():
            console.print(f"[red]{kind}: {n} x {what}[/]")
    for example in run.examples:
        console.print(f"[red]{example}[/]")
    if run.paid:
        console.print("sales: " + ", ".join(f"{n:,} {how}" for how, n in run.paid.items()))

    if run.cpu.seconds:
        cpu = Table(title=f"CPU during the measured {args.duration:.0f} s "
                          f"({os.cpu_count()} cores on the machine)")
        for col in ("", "CPU s", "cores busy", "ms per call"):
            cpu.add_column(col, justify="right" if col else "left")
        for name, used in run.cpu.seconds.items():
            cpu.add_row(name, f"{used:.1f}", f"{used / args.duration:.2f}",
                        f"{used * 1000 / max(len(every), 1):.1f}")
        console.print(cpu)

    growth = 0.0
    if run.samples:
        window = min(60.0, args.duration / 5)
        first = [s for s in run.samples if s.at <= window]
        last = [s for s in run.samples if s.at >= args.duration - window] or run.samples[-1:]
        start = sum(s.total_mb for s in first) / len(first)
        end = sum(s.total_mb for s in last) / len(last)
        growth = (end - start) / start * 100
        worker_start = sum(s.largest_mb for s in first) / len(first)
        worker_end = sum(s.largest_mb for s in last) / len(last)
        mem = Table(title=f"server memory (VmRSS of the process tree, {len(run.samples)} "
                          f"samples, first and last {window:.0f} s)")
        for col in ("", "first window MB", "last window MB", "growth MB", "growth",
                    "min MB", "max MB"):
            mem.add_column(col, justify="right" if col else "left")
        mem.add_row("all server processes", f"{start:.1f}", f"{end:.1f}",
                    f"{end - start:+.1f}", f"{growth:+.1f}%",
                    f"{min(s.total_mb for s in run.samples):.1f}",
                    f"{max(s.total_mb for s in run.samples):.1f}")
        mem.add_row("largest process (an API worker)", f"{worker_start:.1f}",
                    f"{worker_end:.1f}", f"{worker_end - worker_start:+.1f}",
                    f"{(worker_end - worker_start) / worker_start * 100:+.1f}%",
                    f"{min(s.largest_mb for s in run.samples):.1f}",
                    f"{max(s.largest_mb for s in run.samples):.1f}")
        console.print(mem)
    return total_errors, growth


def parse_mix(text: str) -> list[tuple[str, int]]:
    """``lookup=60,checkout=25,top-up=5,page=10`` -> weights by call family."""
    known = {family for family, _ in MIX}
    mix = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in known or not weight.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"give family=weight pairs of {', '.join(sorted(known))}, not {part!r}")
        mix.append((name.strip(), int(weight)))
    if not any(w for _, w in mix):
        raise argparse.ArgumentTypeError("at least one weight must be above 0")
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=300, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=15, help="driven, not measured")
    parser.add_argument("--clients", type=int, default=8, help="virtual clients")
    parser.add_argument("--workers", type=int, default=2, help="API processes")
    parser.add_argument("--members", type=int, default=20_000, help="members of the chain")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (the database patron_load is made on it)")
    parser.add_argument("--timeout", type=float, default=30, help="per call, seconds")
    parser.add_argument("--sample", type=float, default=2, help="memory sampling, seconds")
    parser.add_argument("--max-growth", type=float, default=10,
                        help="fail when server memory grows more than this, per cent")
    parser.add_argument("--mix", type=parse_mix, default=list(MIX),
                        help="weights by call family (default: the issue's "
                             "lookup=60,checkout=25,top-up=5,page=10)")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept patron_load")
    parser.add_argument("--keep", action="store_true", help="keep patron_load afterwards")
    args = parser.parse_args()
    console = Console(width=150)
    OUT.mkdir(exist_ok=True)
    url = f"{args.server.rstrip('/')}/{DB_NAME}"
    if create_database(args.server, drop=not args.reuse):
        build(url, args.members, console)
    else:
        db = Database.from_url(url)
        migrate.upgrade(db.engine)  # the schema may have moved on since it was built
        db.dispose()
        console.print(f"reusing the database {DB_NAME}")
    chain = read_chain(url)
    console.print(f"{len(chain.customers):,} members, {len(chain.skus)} products, "
                  f"{len(chain.keys)} tills; load average {os.getloadavg()[0]:.1f}")
    proc, base = serve(url, args.workers, console)
    log_path = OUT / "load-server.log"
    log_start = log_path.stat().st_size
    try:
        run = asyncio.run(load(base, chain, proc.pid, args, console))
        # a worker the supervisor had to replace during the run is a failure too
        during = log_path.read_bytes()[log_start:].decode(errors="replace")
        restarts = during.count("] died")
    finally:
        stop(proc)
        if not args.keep:
            drop_database(args.server)
    load_avg = os.getloadavg()
    errors, growth = report(run, args, console)
    console.print(f"load average at the end: {load_avg[0]:.1f} / {load_avg[1]:.1f} / "
                  f"{load_avg[2]:.1f} (1 / 5 / 15 min)")
    failed = errors > 0 or growth > args.max_growth or restarts > 0
    if restarts:
        console.print(f"[red bold]{restarts} API worker(s) died and were replaced during "
                      f"the run; see {log_path}[/]")
    if errors:
        console.print(f"[red bold]{errors} errors[/]")
    if growth > args.max_growth:
        console.print(f"[red bold]server memory grew {growth:.1f}% (> {args.max_growth}%)[/]")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
