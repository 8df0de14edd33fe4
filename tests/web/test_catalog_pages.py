"""The catalogue pages: managers add categories and products (prices typed in yuan, kept
in fen), edit and take products off sale; cashiers may look but not change."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.catalog.models import Category, Product
from patron.core.db import Database
from patron.web import i18n
from tests.factories import World
from tests.web.helpers import web_login


def _category(client: TestClient, db: Database, csrf: str) -> str:
    r = client.post("/catalog/categories", data={"csrf_token": csrf, "code": "BABY",
                                                 "name": "Baby formula",
                                                 "replenish_days": "21"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read() as s:
        return str(s.scalar(select(Category.id).where(Category.code == "BABY")))


def test_manager_adds_and_edits_a_product(client: TestClient, db: Database,
                                          world: World) -> None:
    csrf = web_login(client, "manager-a")
    category_id = _category(client, db, csrf)
    bad = client.post("/catalog/products", data={
        "csrf_token": csrf, "sku": "F-1", "name": "Formula 900g", "category_id": category_id,
        "price": "25.999", "active": "on"})
    assert bad.status_code == 422 and "42.50" in bad.text
    ok = client.post("/catalog/products", data={
        "csrf_token": csrf, "sku": "F-1", "name": "Formula 900g", "category_id": category_id,
        "price": "258.00", "active": "on"}, follow_redirects=False)
    assert ok.status_code == 303
    with db.read() as s:
        product = s.scalar(select(Product).where(Product.sku == "F-1"))
        assert product is not None and product.price_minor == 25_800
        product_id = product.id
    listed = client.get("/catalog", params={"q": "F-"})
    assert "Formula 900g" in listed.text and "21" in listed.text
    dup = client.post("/catalog/products", data={
        "csrf_token": csrf, "sku": "F-1", "name": "Again", "category_id": category_id,
        "price": "1"})
    assert dup.status_code == 422
    saved = client.post(f"/catalog/products/{product_id}", data={
        "csrf_token": csrf, "sku": "F-1", "name": "Formula 900g", "category_id": category_id,
        "price": "249.5", "replenish_days": "20"}, follow_redirects=False)
    assert saved.status_code == 303
    with db.read() as s:
        product = s.get(Product, product_id)
        assert product is not None
        assert (product.price_minor, product.replenish_days, product.active) == \
            (24_950, 20, False)


def test_cashiers_see_the_catalogue_but_cannot_change_it(client: TestClient,
                                                         world: World) -> None:
    csrf = web_login(client, "cashier-a")
    page = client.get("/catalog")
    assert page.status_code == 200 and "Add a product" not in page.text
    r = client.post("/catalog/categories", data={"csrf_token": csrf, "code": "X",
                                                 "name": "X"})
    assert r.status_code == 403


def test_catalogue_in_chinese(client: TestClient, world: World) -> None:
    web_login(client, "cashier-a")
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    page = client.get("/catalog")
    assert page.status_code == 200
    assert "商品目录" in page.text and "按 SKU 或名称搜索" in page.text
