"""Tills for the trust tests: threads that send value-moving calls with Idempotency-Keys,
retry every call they got no answer to with the same key, and write down what they were
told; then ``check_books`` holds the database to exactly that.

A call's *answer* is a status the server meant: 2xx (done), or 4xx other than
``409 idempotency_in_progress`` (refused; nothing moved). Anything else -- a dropped
connection, a timeout, a 5xx, a 409 in progress -- is no answer, and the call is sent again
with the same key and body until it gets one. A till stops sending new calls at its
deadline and keeps retrying what is unanswered until ``give_up_at``.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.loyalty.enums import PointsEntryKind
from patron.loyalty.models import PointsEntry, PointsTransfer
from patron.sales.models import Refund, Sale
from patron.wallet.enums import EntryKind
from patron.wallet.models import WalletEntry

MAX_PARKED = 3  # unanswered calls a till holds before it stops starting new ones
PRICE_MINOR = 1_000  # the one product's price; 1 point per major unit -> 10 points a unit


@dataclass
class Call:
    """One value-moving call and what became of it."""

    kind: str  # sale, redeem, topup, refund, transfer
    key: str
    path: str
    body: dict[str, Any]
    status: int | None = None
    answer: dict[str, Any] | None = None
    attempts: int = 0
    replayed: bool = False
    refunded: bool = False  # a sale a later call of the till refunds
    no_answer: Counter[str] = field(default_factory=Counter)


@dataclass
class Till:
    """A client of the API with its own members (so its calls don't fight other tills')."""

    name: str
    base: str
    key: str
    members: list[str]
    rng: random.Random
    sku: str
    timeout_s: float = 5.0
    kinds: tuple[str, ...] = ("sale", "sale", "redeem", "topup", "refund", "transfer")
    calls: list[Call] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    give_up_at: float = float("inf")  # set by ``finish_tills``

    # ------------------------------------------------------------ one call
    def attempt(self, call: Call) -> bool:
        """Send ``call`` once; True when it got an answer (see module docstring)."""
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": call.key,
                   "Connection": "close"}
        call.attempts += 1
        try:
            r = httpx.post(self.base + call.path, json=call.body, headers=headers,
                           timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            call.no_answer[type(exc).__name__] += 1
            return False
        problem = r.json() if r.headers.get("content-type", "").endswith("json") else {}
        if r.status_code >= 500 or (r.status_code == 409 and problem.get("code") ==
                                    "idempotency_in_progress"):
            call.no_answer[str(r.status_code)] += 1
            return False
        call.status, call.answer = r.status_code, problem
        call.replayed = r.headers.get("Idempotent-Replayed") == "true"
        if r.status_code >= 400 and problem.get("code") != "insufficient_balance":
            self.errors.append(f"{call.kind} {call.key}: {r.status_code} {r.text[:300]}")
        return True

    @property
    def answered(self) -> int:
        return sum(1 for c in self.calls if c.status is not None)

    @property
    def unanswered(self) -> list[Call]:
        return [c for c in self.calls if c.status is None]

    # ------------------------------------------------------------ the workload
    def next_call(self, n: int) -> Call:
        kind = self.rng.choice(self.kinds)
        member = self.rng.choice(self.members)
        key = f"{self.name}-{n}-{kind}"
        refundable = [c for c in self.calls if c.kind in ("sale", "redeem")
                      and c.status == 201 and not c.refunded]
        if kind == "refund" and refundable:
            sale = self.rng.choice(refundable)
            sale.refunded = True
            assert sale.answer is not None
            return Call(kind, key, f"/api/v1/sales/{sale.answer['sale_id']}/refunds",
                        {"reason": key})
        if kind == "topup":
            return Call(kind, key, f"/api/v1/members/{member}/wallet/top-ups",
                        {"amount_minor": self.rng.randint(1, 50) * 100, "reason": key})
        if kind == "transfer":
            other = self.rng.choice([m for m in self.members if m != member])
            return Call(kind, key, f"/api/v1/members/{member}/points/transfers",
                        {"to_member_id": other, "points": self.rng.randint(1, 25)})
        quantity = self.rng.randint(1, 3)
        total = quantity * PRICE_MINOR
        redeem = self.rng.randint(1, 40) if kind == "redeem" else 0
        return Call("redeem" if redeem else "sale", key, "/api/v1/sales", {
            "member_id": member, "lines": [{"sku": self.sku, "quantity": quantity}],
            "points_to_redeem": redeem, "payments": {"cash_minor": total - redeem}})

    def run(self, pause_s: float = 0.0) -> None:
        """New calls until ``stop`` is set; a call without an answer is parked and sent
        again (same key, same body) between new calls, so a key whose first attempt died
        with the server -- its claim leased for a while on PostgreSQL -- holds up nothing
        else. After ``stop``, only retries, until all are answered or ``give_up_at``."""
        n = 0
        while time.monotonic() < self.give_up_at:
            for call in self.unanswered:
                self.attempt(call)
            parked = len(self.unanswered)
            if self.stop.is_set() and not parked:
                return
            if self.stop.is_set() or parked >= MAX_PARKED:  # the server is down or busy
                time.sleep(0.2)
                continue
            call = self.next_call(n)
            n += 1
            self.calls.append(call)
            if not self.attempt(call):
                time.sleep(0.05)
            if pause_s:
                time.sleep(self.rng.uniform(0, pause_s))


def start_tills(tills: list[Till], pause_s: float = 0.0) -> list[threading.Thread]:
    threads = [threading.Thread(target=t.run, args=(pause_s,), name=t.name, daemon=True)
               for t in tills]
    for t in threads:
        t.start()
    return threads


def answered(tills: list[Till]) -> int:
    return sum(t.answered for t in tills)


def wait_for_progress(tills: list[Till], calls: int, timeout_s: float) -> None:
    """Until the tills got ``calls`` more answers (or the timeout): kills land after a set
    amount of work, however fast or slow the machine is."""
    target = answered(tills) + calls
    deadline = time.monotonic() + timeout_s
    while answered(tills) < target and time.monotonic() < deadline:
        time.sleep(0.02)


def finish_tills(tills: list[Till], threads: list[threading.Thread], timeout_s: float) -> None:
    """No new calls; the unanswered ones are retried for up to ``timeout_s``."""
    give_up_at = time.monotonic() + timeout_s
    for t in tills:
        t.give_up_at = give_up_at
        t.stop.set()
    for thread in threads:
        thread.join(timeout=timeout_s)


# ---------------------------------------------------------------- the books


def check_books(session: Session, tills: list[Till]) -> dict[str, int]:
    """The database holds exactly what the tills were told was done -- each once -- and
    nothing of what they were told was refused. Returns counts for the report."""
    calls = [c for t in tills for c in t.calls]
    unanswered = [c.key for c in calls if c.status is None]
    assert not unanswered, f"{len(unanswered)} calls never answered: {unanswered[:5]}"
    done = [c for c in calls if c.status == 201]
    assert done, "no call succeeded: the run proved nothing"

    sales = {c.answer["sale_id"]: c for c in done if c.kind in ("sale", "redeem")}  # type: ignore[index]
    in_db = Counter(str(s) for s in session.scalars(select(Sale.id)))
    assert set(in_db) == set(sales), (
        f"sales lost {set(sales) - set(in_db)}; sales no till was told of "
        f"{set(in_db) - set(sales)}")
    for sale_id, call in sales.items():
        redeemed = call.body["points_to_redeem"]
        entries = list(session.scalars(select(PointsEntry.available_delta).where(
            PointsEntry.sale_id == uuid.UUID(sale_id),
            PointsEntry.kind == PointsEntryKind.REDEEM.value)))
        assert entries == ([-redeemed] if redeemed else []), (sale_id, entries)

    topups = {c.key: c for c in calls if c.kind == "topup"}
    booked = Counter(r for r in session.scalars(select(WalletEntry.reason).where(
        WalletEntry.kind == EntryKind.TOPUP.value)))
    assert {k: n for k, n in booked.items() if n != 1} == {}, "a top-up was booked twice"
    assert set(booked) == {k for k, c in topups.items() if c.status == 201}

    refunds = {c.answer["refund_id"] for c in done if c.kind == "refund"}  # type: ignore[index]
    in_db_refunds = {str(r) for r in session.scalars(select(Refund.id))}
    assert in_db_refunds == refunds, (refunds ^ in_db_refunds)

    transfers = {c.answer["id"] for c in done if c.kind == "transfer"}  # type: ignore[index]
    in_db_transfers = {str(t) for t in session.scalars(select(PointsTransfer.id))}
    assert in_db_transfers == transfers, (transfers ^ in_db_transfers)
    in_entries = session.scalar(select(func.count(func.distinct(PointsEntry.transfer_id))).where(
        PointsEntry.kind == PointsEntryKind.TRANSFER_OUT.value)) or 0
    assert in_entries == len(transfers)
    return {"calls": len(calls), "done": len(done), "refused": len(calls) - len(done),
            "sales": len(sales), "topups": len(booked), "refunds": len(refunds),
            "transfers": len(transfers),
            "retried": sum(1 for c in calls if c.attempts > 1),
            "replayed": sum(1 for c in calls if c.replayed)}
