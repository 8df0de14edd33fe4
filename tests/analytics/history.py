"""A small purchase history written straight into the tables, with deterministic ids.

The analytics read many domains' tables at once; building their state through every
service would make the tests about those services. ``History`` writes rows as the services
would have left them (amounts that add up, refunds reflected on the sale and its lines,
ledger entries with their running balances), with ids from a counter, so the same script
gives the same rows, ids included, in SQLite and in PostgreSQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, update

from patron.core.registry import Base

T = Base.metadata.tables
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def at(day: str, hh: int = 12, mm: int = 0) -> datetime:
    """A UTC instant from 'YYYY-MM-DD' and a time."""
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=UTC)


@dataclass
class History:
    conn: Connection
    _n: int = 0
    _seq: int = 0
    _templates: dict[str, uuid.UUID] = field(default_factory=dict)
    _points: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    _wallets: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    _lines: dict[uuid.UUID, tuple[uuid.UUID, int, int]] = field(default_factory=dict)

    def id(self) -> uuid.UUID:
        self._n += 1
        return uuid.UUID(int=(0x0190 << 112) + self._n)

    def _add(self, table: str, **row: Any) -> uuid.UUID:
        row.setdefault("id", self.id())
        self.conn.execute(insert(T[table]), [row])
        return uuid.UUID(str(row["id"]))

    def store(self, code: str, timezone: str = "Asia/Shanghai") -> uuid.UUID:
        return self._add("stores", code=code, name=code, timezone=timezone, created_at=EPOCH)

    def product(self, category: str, price_minor: int = 1000) -> uuid.UUID:
        cat = self._templates.get(f"cat:{category}")
        if cat is None:
            cat = self._add("categories", code=category, name=category)
            self._templates[f"cat:{category}"] = cat
        return self._add("products", sku=f"{category}-{self._n}", name=category,
                         category_id=cat, price_minor=price_minor)

    def category_of(self, category: str) -> uuid.UUID:
        return self._templates[f"cat:{category}"]

    def member(self, store: uuid.UUID, joined: datetime, *, preferences: str = "",
               status: str = "active") -> uuid.UUID:
        n = self._n + 1
        return self._add("members", card_no=f"C{n:08d}", name=f"Member {n}",
                         phone=f"+86138{n:08d}", home_store_id=store, enrolled_store_id=store,
                         joined_at=joined, updated_at=joined, preferences=preferences,
                         status=status)

    def sale(self, member: uuid.UUID | None, store: uuid.UUID, when: datetime,
             lines: list[tuple[uuid.UUID, int, int]] | None = None, *, total: int | None = None,
             discounts: list[tuple[str, int]] = ()) -> tuple[uuid.UUID, list[uuid.UUID]]:
        """A sale of ``lines`` (product, quantity, unit price); ``discounts`` (kind, amount)
        come off the first line. ``total`` alone makes a one-line sale of that amount."""
        if lines is None:
            lines = [(self._default_product(), 1, total or 0)]
        off = sum(a for _, a in discounts)
        subtotal = sum(q * p for _, q, p in lines)
        sale_id = self._add("sales", store_id=store, member_id=member,
                            receipt_no=f"R{self._n}", occurred_at=when, recorded_at=when,
                            subtotal_minor=subtotal, discount_minor=off,
                            total_minor=subtotal - off, source="import")
        line_ids = []
        for i, (product, qty, price) in enumerate(lines, start=1):
            disc = off if i == 1 else 0
            line_total = qty * price - disc
            line_id = self._add("sale_lines", sale_id=sale_id, line_no=i, product_id=product,
                                quantity=qty, unit_price_minor=price, discount_minor=disc,
                                total_minor=line_total)
            self._lines[line_id] = (sale_id, qty, line_total)
            line_ids.append(line_id)
        for kind, amount in discounts:
            self._add("sale_discounts", sale_id=sale_id, kind=kind, label=kind,
                      amount_minor=amount)
        return sale_id, line_ids

    def _default_product(self) -> uuid.UUID:
        if "default" not in self._templates:
            self._templates["default"] = self.product("general")
        return self._templates["default"]

    def refund(self, store: uuid.UUID, line_id: uuid.UUID, qty: int, when: datetime) -> int:
        """Refund ``qty`` of a line (its share of the line total); returns the amount."""
        sale_id, line_qty, line_total = self._lines[line_id]
        amount = line_total * qty // line_qty
        refund_id = self._add("refunds", sale_id=sale_id, store_id=store, amount_minor=amount,
                              actor_label="test", occurred_at=when)
        self._add("refund_lines", refund_id=refund_id, sale_line_id=line_id, quantity=qty,
                  amount_minor=amount)
        sales, lines = T["sales"], T["sale_lines"]
        self.conn.execute(update(sales).where(sales.c.id == sale_id).values(
            refunded_minor=sales.c.refunded_minor + amount))
        self.conn.execute(update(lines).where(lines.c.id == line_id).values(
            refunded_quantity=lines.c.refunded_quantity + qty))
        return amount

    def points(self, member: uuid.UUID, when: datetime, available_after: int) -> None:
        account = self._points.get(member)
        if account is None:
            account = self._add("points_accounts", member_id=member, updated_at=when)
            self._points[member] = account
        self._seq += 1
        self.conn.execute(insert(T["points_entries"]), [{
            "seq": self._seq, "id": self.id(), "account_id": account, "kind": "earn",
            "available_delta": 0, "pending_delta": 0, "debt_delta": 0, "available_after": available_after,
            "pending_after": 0, "debt_after": 0, "actor_label": "test", "occurred_at": when}])

    def wallet(self, member: uuid.UUID, when: datetime, principal: int, bonus: int = 0) -> None:
        account = self._wallets.get(member)
        if account is None:
            account = self._add("wallet_accounts", member_id=member, created_at=when,
                                updated_at=when)
            self._wallets[member] = account
        self._seq += 1
        self.conn.execute(insert(T["wallet_entries"]), [{
            "seq": self._seq, "id": self.id(), "account_id": account, "kind": "topup",
            "principal_delta_minor": 0, "bonus_delta_minor": 0, "principal_after_minor": principal,
            "bonus_after_minor": bonus, "actor_label": "test", "occurred_at": when}])

    def coupon(self, member: uuid.UUID, store: uuid.UUID, issued: datetime,
               valid_until: datetime, *, redeemed: datetime | None = None,
               voided: datetime | None = None) -> uuid.UUID:
        template = self._templates.get("coupon")
        if template is None:
            template = self._add("coupon_templates", name="5 off", kind="fixed",
                                 amount_minor=500, validity="days", valid_days=30,
                                 created_at=EPOCH, updated_at=EPOCH)
            self._templates["coupon"] = template
        coupon = self._add("coupons", template_id=template, member_id=member,
                           code=f"CP{self._n}", source="manual", issued_at=issued,
                           issued_by="test", valid_from=issued, valid_until=valid_until,
                           voided_at=voided, status="void" if voided else
                           "redeemed" if redeemed else "issued")
        if redeemed is not None:
            self._add("coupon_redemptions", coupon_id=coupon, template_id=template,
                      member_id=member, store_id=store, eligible_minor=1000,
                      discount_minor=500, actor_label="test", redeemed_at=redeemed)
        return coupon

    def survey(self, member: uuid.UUID, store: uuid.UUID, answered: datetime, *,
               csat: int | None = None, nps: int | None = None) -> None:
        invitation = self._add("survey_invitations", member_id=member, store_id=store,
                               kind="csat_nps", occasion="sale", source_ref=str(self.id()),
                               token=f"tok{self._n}", created_at=answered - timedelta(hours=1),
                               expires_at=answered + timedelta(days=7))
        self._add("survey_responses", invitation_id=invitation, csat=csat, nps=nps,
                  answered_at=answered)

    def callback(self, member: uuid.UUID, store: uuid.UUID, called: datetime) -> None:
        task = self._add("callback_tasks", store_id=store, member_id=member, reason="manual",
                         due_on=called.date(), created_at=called, created_by="test",
                         updated_at=called)
        self.conn.execute(insert(T["callback_calls"]), [{
            "task_id": task, "outcome": "no_answer", "actor_label": "test", "called_at": called}])

    def referral(self, referrer: uuid.UUID, referred: uuid.UUID, when: datetime) -> None:
        self._add("referral_attributions", referred_member_id=referred,
                  referrer_member_id=referrer, code="REF", actor_label="test",
                  attributed_at=when)

    def package(self, member: uuid.UUID, sold: datetime, expires: datetime,
                visits_left: int) -> None:
        product = self._templates.get("package")
        if product is None:
            product = self._add("package_products", name="10 visits", visits=10,
                                price_minor=10000, valid_days=365, created_at=EPOCH,
                                updated_at=EPOCH)
            self._templates["package"] = product
        self._add("member_packages", member_id=member, package_product_id=product,
                  name="10 visits", visits_total=10, visits_left=visits_left,
                  price_minor=10000, sold_at=sold, expires_at=expires, updated_at=sold,
                  status="active" if visits_left else "used_up")

    def tier_id(self, code: str) -> uuid.UUID:
        tier = self._templates.get(f"tier:{code}")
        if tier is None:
            tier = self._add("tiers", code=code, name=code, rank=len(self._templates),
                             threshold=0)
            self._templates[f"tier:{code}"] = tier
        return tier

    def tier(self, member: uuid.UUID, code: str, when: datetime, *,
             from_code: str | None = None) -> None:
        """A tier change (from ``from_code``, or from no tier) at ``when``."""
        self.conn.execute(insert(T["tier_changes"]), [{
            "member_id": member, "to_tier_id": self.tier_id(code),
            "from_tier_id": self.tier_id(from_code) if from_code else None,
            "reason": "test", "qualifying_value": 0, "at": when}])
