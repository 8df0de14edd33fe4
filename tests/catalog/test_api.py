"""The catalogue through the HTTP API: CRUD, roles, problem+json errors and CSV import."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.catalog.helpers import csv_bytes
from tests.factories import World, key_headers, login

API = "/api/v1"


def _manager(client: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": login(client, "manager-a")}


def _create(client: TestClient, headers: dict[str, str], path: str,
            body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"{API}{path}", headers=headers, json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def _problem_fields(r: Any) -> list[str]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [e["field"] for e in r.json()["errors"]]


def test_manager_manages_categories_and_products(client: TestClient, world: World) -> None:
    h = _manager(client)
    coffee = _create(client, h, "/categories",
                     {"code": "coffee", "name": "咖啡豆", "replenish_days": 30})
    assert coffee["replenish_days"] == 30
    product = _create(client, h, "/products", {
        "sku": "COF/250", "name": "Espresso 250g", "category_id": coffee["id"],
        "price_minor": 6800})
    assert product["category_code"] == "coffee" and product["active"] is True
    assert product["replenish_days"] is None and product["effective_replenish_days"] == 30

    assert client.get(f"{API}/products/{product['id']}").json() == product
    assert client.get(f"{API}/products/by-sku/COF/250").json()["id"] == product["id"]
    assert client.get(f"{API}/products/by-sku/COF%2F250").json()["id"] == product["id"]
    assert client.get(f"{API}/categories/{coffee['id']}").json() == coffee

    r = client.patch(f"{API}/products/{product['id']}", headers=h,
                     json={"price_minor": 7200, "replenish_days": 20})
    assert r.status_code == 200, r.text
    assert (r.json()["price_minor"], r.json()["effective_replenish_days"]) == (7200, 20)
    r = client.patch(f"{API}/products/{product['id']}", headers=h, json={"active": False})
    assert r.json()["active"] is False
    r = client.patch(f"{API}/categories/{coffee['id']}", headers=h,
                     json={"name": "Coffee", "replenish_days": None})
    assert r.status_code == 200 and r.json()["replenish_days"] is None

    page = client.get(f"{API}/products", params={"q": "esp", "active": "false"}).json()
    assert page["total"] == 1 and page["items"][0]["sku"] == "COF/250"
    assert page["items"][0]["effective_replenish_days"] == 20
    assert client.get(f"{API}/products", params={"active": "true"}).json()["total"] == 0
    assert [c["code"] for c in client.get(f"{API}/categories").json()] == ["coffee"]

    login(client, "owner")
    actions = [e["action"] for e in client.get(f"{API}/audit").json()]
    assert actions[:3] == ["category.updated", "product.deactivated", "product.updated"]


def test_cashiers_and_pos_keys_read_but_cannot_write(client: TestClient, world: World) -> None:
    h = _manager(client)
    cat = _create(client, h, "/categories", {"code": "tea", "name": "Tea"})
    product = _create(client, h, "/products", {"sku": "T1", "name": "Longjing",
                                               "category_id": cat["id"], "price_minor": 8800})
    client.cookies.clear()
    cashier = {"X-CSRF-Token": login(client, "cashier-a")}
    pos = key_headers(world.key_a)
    for headers in (cashier, pos):
        assert client.get(f"{API}/products/by-sku/T1", headers=headers).json()["price_minor"] \
            == 8800
        assert client.get(f"{API}/products", headers=headers).json()["total"] == 1
        assert client.get(f"{API}/categories", headers=headers).status_code == 200
        writes = [
            client.post(f"{API}/categories", headers=headers, json={"code": "x", "name": "X"}),
            client.patch(f"{API}/categories/{cat['id']}", headers=headers, json={"name": "Y"}),
            client.post(f"{API}/products", headers=headers, json={
                "sku": "T2", "name": "x", "category_id": cat["id"], "price_minor": 1}),
            client.patch(f"{API}/products/{product['id']}", headers=headers,
                         json={"price_minor": 1}),
            client.post(f"{API}/products/import", headers=headers,
                        files={"file": ("p.csv", b"sku,name\nT1,x\n", "text/csv")}),
        ]
        assert [r.status_code for r in writes] == [403] * 5
        assert writes[0].json()["code"] == "forbidden"
    assert client.get(f"{API}/products/{product['id']}", headers=pos).json()["price_minor"] \
        == 8800


def test_anonymous_callers_get_401(client: TestClient) -> None:
    for method, path in (("GET", "/products"), ("GET", "/categories"),
                         ("POST", "/products"), ("POST", "/products/import")):
        assert client.request(method, f"{API}{path}").status_code == 401


def test_duplicate_sku_is_409_naming_sku(client: TestClient, world: World) -> None:
    h = _manager(client)
    cat = _create(client, h, "/categories", {"code": "tea", "name": "Tea"})
    body = {"sku": "T1", "name": "Longjing", "category_id": cat["id"], "price_minor": 8800}
    _create(client, h, "/products", body)
    r = client.post(f"{API}/products", headers=h, json=body | {"name": "Another"})
    assert r.status_code == 409 and _problem_fields(r) == ["sku"]
    assert r.json()["code"] == "duplicate_sku"
    r = client.post(f"{API}/categories", headers=h, json={"code": "tea", "name": "Again"})
    assert r.status_code == 409 and _problem_fields(r) == ["code"]


@pytest.mark.parametrize(("field", "value"), [
    ("price_minor", -1), ("price_minor", 10**11), ("price_minor", 12.5),
    ("price_minor", "1250"), ("replenish_days", 0), ("replenish_days", 9999),
    ("sku", "  "), ("name", "x" * 201),
])
def test_bad_values_are_422_naming_the_field(
    client: TestClient, world: World, field: str, value: object
) -> None:
    h = _manager(client)
    cat = _create(client, h, "/categories", {"code": "tea", "name": "Tea"})
    body = {"sku": "T1", "name": "Longjing", "category_id": cat["id"], "price_minor": 8800}
    r = client.post(f"{API}/products", headers=h, json=body | {field: value})
    assert r.status_code == 422 and _problem_fields(r) == [field]
    product = _create(client, h, "/products", body)
    r = client.patch(f"{API}/products/{product['id']}", headers=h, json={field: value})
    assert r.status_code == 422 and _problem_fields(r) == [field]
    assert client.get(f"{API}/products/{product['id']}").json() == product


def test_unknown_category_is_422_naming_category_id(client: TestClient, world: World) -> None:
    h = _manager(client)
    r = client.post(f"{API}/products", headers=h, json={
        "sku": "T1", "name": "x", "category_id": "01900000-0000-7000-8000-000000000000",
        "price_minor": 1})
    assert r.status_code == 422 and _problem_fields(r) == ["category_id"]


def test_unknown_ids_and_skus_are_404(client: TestClient, world: World) -> None:
    login(client, "cashier-a")
    missing = "01900000-0000-7000-8000-000000000000"
    for path in (f"/products/{missing}", f"/categories/{missing}", "/products/by-sku/NOPE"):
        r = client.get(f"{API}{path}")
        assert r.status_code == 404 and r.json()["status"] == 404


def test_list_products_pages_and_validates_paging(client: TestClient, world: World) -> None:
    h = _manager(client)
    cat = _create(client, h, "/categories", {"code": "tea", "name": "Tea"})
    for i in range(3):
        _create(client, h, "/products", {"sku": f"T{i}", "name": f"Tea {i}",
                                         "category_id": cat["id"], "price_minor": 100})
    page = client.get(f"{API}/products", params={"page": 2, "page_size": 2}).json()
    assert [p["sku"] for p in page["items"]] == ["T2"] and page["total"] == 3
    assert page["page"] == 2 and page["page_size"] == 2
    r = client.get(f"{API}/products", params={"page_size": 1000})
    assert r.status_code == 422 and _problem_fields(r) == ["page_size"]


def test_import_through_the_api_reports_rows_and_commits_the_good_ones(
    client: TestClient, world: World
) -> None:
    h = _manager(client)
    _create(client, h, "/categories", {"code": "tea", "name": "茶叶", "replenish_days": 45})
    data = csv_bytes(["编码", "名称", "分类", "价格", "补货周期(天)", "是否上架"], [
        ["T1", "龙井", "茶叶", "88.00", "", "是"],
        ["T2", "碧螺春", "tea", "abc", "", ""],
        ["T3", "普洱", "普洱茶", "120", "90", "是"],
    ], encoding="gbk")
    files = {"file": ("茶.csv", data, "text/csv")}
    dry = client.post(f"{API}/products/import", headers=h, files=files, data={"dry_run": "true"})
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["created"] == 1
    assert client.get(f"{API}/products").json()["total"] == 0

    r = client.post(f"{API}/products/import", headers=h, files=files,
                    data={"create_categories": "true"})
    report = r.json()
    assert (report["created"], report["rejected"]) == (2, 1)
    assert report["categories_created"] == ["普洱茶"]
    assert report["errors"] == [{"row": 3, "field": "price", "value": "abc",
                                 "message": report["errors"][0]["message"]}]
    t1 = client.get(f"{API}/products/by-sku/T1").json()
    assert (t1["price_minor"], t1["effective_replenish_days"]) == (8800, 45)

    again = client.post(f"{API}/products/import", headers=h, files=files,
                        data={"create_categories": "true"}).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)


def test_import_refuses_a_file_it_cannot_use_naming_file(client: TestClient, world: World) -> None:
    h = _manager(client)
    r = client.post(f"{API}/products/import", headers=h,
                    files={"file": ("p.csv", b"foo,bar\n1,2\n", "text/csv")})
    assert r.status_code == 422 and _problem_fields(r) == ["file"]


def test_import_refuses_uploads_over_the_size_limit(
    client: TestClient, world: World
) -> None:
    h = _manager(client)
    client.app.state.ctx.settings.max_upload_bytes = 100  # type: ignore[attr-defined]
    r = client.post(f"{API}/products/import", headers=h,
                    files={"file": ("p.csv", b"sku,name\n" + b"A,b\n" * 50, "text/csv")})
    assert r.status_code == 413 and _problem_fields(r) == ["file"]


def test_openapi_has_stable_operation_ids(client: TestClient) -> None:
    spec = client.get(f"{API}/openapi.json").json()
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"list_categories", "create_category", "get_category", "update_category",
            "list_products", "create_product", "get_product", "update_product",
            "get_product_by_sku", "import_products"} <= ids
