"""Gift cards (礼品卡) as a payment at checkout: part of the bill taken from the card under its
lock, a refund put back on the card, every refusal naming the nested field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.cards import service as cards
from patron.cards.models import GiftCard
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import InsufficientBalance, PatronError, ValidationFailed
from patron.sales import service as sales
from patron.sales.models import Sale
from patron.sales.schemas import (
    GiftCardPaymentIn,
    LineIn,
    PaymentsIn,
    RefundCreate,
    RefundLineIn,
    SaleCreate,
)
from patron.wallet.enums import SpendOrder
from tests.factories import World, key_headers, make_product

TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)


def _card(session: Session, clock: FixedClock, world: World, value: int = 5000
          ) -> tuple[str, str]:
    manager = auth.principal_for_user(world.manager_a)
    _, (issued,) = cards.issue_gift_cards(session, clock=clock, actor=manager, name="Gift",
                                          count=1, face_value_minor=value)
    return issued.card.code, issued.pin


def _balance(session: Session, code: str) -> int:
    card = session.scalar(select(GiftCard).where(GiftCard.code == code)
                          .execution_options(populate_existing=True))
    assert card is not None
    return card.balance_minor


def _sale(code: str, pin: str, amount: int, cash: int, quantity: int = 2) -> SaleCreate:
    return SaleCreate(lines=[LineIn(sku="CAKE", quantity=quantity)],
                      payments=PaymentsIn(cash_minor=cash, gift_cards=[
                          GiftCardPaymentIn(code=code, pin=pin, amount_minor=amount)]))


def test_a_sale_paid_partly_by_gift_card_and_refunded_in_two_parts(
        session: Session, clock: FixedClock, world: World) -> None:
    make_product(session, sku="CAKE", price_minor=2500)
    code, pin = _card(session, clock, world, 5000)
    cashier = auth.principal_for_user(world.cashier_a)
    sale = sales.checkout(session, clock=clock, actor=cashier, till=TILL,
                          data=_sale(code, pin, 3000, 2000))
    assert _balance(session, code) == 2000
    assert sorted((p.method, p.amount_minor) for p in sale.payments) == [
        ("cash", 2000), ("gift_card", 3000)]
    receipt = sales.receipt(session, clock=clock, sale=sale, currency="CNY")
    assert ("gift_card", 3000) in [(p.method, p.amount_minor) for p in receipt.payments]

    line = sale.lines[0]
    for _ in range(2):  # one cake, then the other: the card gets its 3000 back exactly
        sales.refund(session, clock=clock, actor=cashier, till=TILL, sale_id=sale.id,
                     data=RefundCreate(lines=[RefundLineIn(line_id=line.id, quantity=1)]))
    assert _balance(session, code) == 5000
    assert sales.verify(session) == [] and cards.verify(session) == []


def test_refusals_name_the_gift_card_field_and_write_nothing(
        session: Session, clock: FixedClock, world: World) -> None:
    make_product(session, sku="CAKE", price_minor=2500)
    code, pin = _card(session, clock, world, 1000)
    cashier = auth.principal_for_user(world.cashier_a)
    cases: list[tuple[SaleCreate, type[PatronError], str]] = [
        (_sale(code, pin, 3000, 2000), InsufficientBalance,
         "payments.gift_cards.0.amount_minor"),
        (_sale(code, "WRONG1", 1000, 4000), ValidationFailed, "payments.gift_cards.0.pin"),
        (_sale("GC" + "2" * 14, pin, 1000, 4000), PatronError, "payments.gift_cards.0.code"),
        (_sale(code, pin, 1000, 3000), ValidationFailed, "payments"),  # adds up to 4000
    ]
    twice = _sale(code, pin, 500, 4000)
    twice.payments.gift_cards.append(GiftCardPaymentIn(code=code.lower(), pin=pin,
                                                       amount_minor=500))
    cases.append((twice, ValidationFailed, "payments.gift_cards.1.code"))
    for data, error, field in cases:
        with pytest.raises(error) as refused:
            sales.checkout(session, clock=clock, actor=cashier, till=TILL, data=data)
        assert refused.value.field == field, (field, refused.value.message)
        assert [p.field for p in refused.value.problems] == [field]
    assert session.scalar(select(Sale.id)) is None
    assert _balance(session, code) == 1000


def test_over_http_a_wrong_pin_counts_and_a_retry_books_once(
        client: TestClient, db: Database, clock: FixedClock, world: World) -> None:
    with db.write() as s:
        make_product(s, sku="CAKE", price_minor=2500)
        code, pin = _card(s, clock, world, 5000)
    body = {"lines": [{"sku": "CAKE", "quantity": 2}],
            "payments": {"cash_minor": 1000, "gift_cards": [
                {"code": code, "pin": "WRONG1", "amount_minor": 4000}]}}
    wrong = client.post("/api/v1/sales", json=body,
                        headers=key_headers(world.key_a) | {"Idempotency-Key": "gc-0"})
    assert wrong.status_code == 422
    assert [p["field"] for p in wrong.json()["errors"]] == ["payments.gift_cards.0.pin"]
    with db.read() as s:
        card = s.scalar(select(GiftCard).where(GiftCard.code == code))
        assert card is not None and card.failed_pin_attempts == 1

    body["payments"]["gift_cards"][0]["pin"] = pin  # type: ignore[index]
    headers = key_headers(world.key_a) | {"Idempotency-Key": "gc-1"}
    first = client.post("/api/v1/sales", json=body, headers=headers)
    again = client.post("/api/v1/sales", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.content == first.content
    with db.read() as s:
        assert _balance(s, code) == 1000
