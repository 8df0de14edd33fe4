"""Security headers on every response, a request body limit, and API docs without a CDN."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import World, key_headers


def test_security_headers_on_api_and_pages(client: TestClient) -> None:
    for path in ("/api/v1/openapi.json", "/login"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] in ("no-referrer", "same-origin")
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp or "default-src 'self'" in csp
        assert "strict-transport-security" not in headers  # not behind TLS in tests


def test_docs_are_served_from_the_package(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "/docs-static/swagger-ui-bundle.js" in page.text
    js = client.get("/docs-static/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000


def test_an_oversized_body_is_refused_before_any_handler(client: TestClient,
                                                          world: World) -> None:
    huge = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = client.post("/api/v1/members", content=huge,
                    headers={**key_headers(world.key_a), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["errors"][0]["field"] == "body"


def test_malformed_json_is_a_clear_422(client: TestClient, world: World) -> None:
    r = client.post("/api/v1/members", content=b'{"name": ',
                    headers={**key_headers(world.key_a), "Content-Type": "application/json"})
    assert r.status_code == 422
