"""schemathesis against the published OpenAPI: every operation, called as a signed-in owner
with generated inputs (and, for the body and parameters, the near-misses schemathesis makes
of them), never answers 5xx and never answers with a body its own schema does not describe.

One test per operation, so a failure names it. It runs against PostgreSQL (the production
database, and the stricter one: a string longer than its column or a malformed id fails
there where SQLite shrugs), in the PostgreSQL half of ``make test``. A few examples per
operation keep it in the normal run; ``PATRON_FUZZ_EXAMPLES=200`` makes a deep run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from patron.api.app import create_app
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.settings import Settings
from tests.conftest import TEST_NOW
from tests.factories import World, login

EXAMPLES = int(os.environ.get("PATRON_FUZZ_EXAMPLES", "3"))

pytestmark = pytest.mark.skipif(not os.environ.get("PATRON_TEST_DATABASE_URL"),
                                reason="the fuzz run is part of the PostgreSQL half")
OPENAPI = "/api/v1/openapi.json"
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, read from an app that is never started."""
    document = create_app(Settings(environment="test", database_url="sqlite://")).openapi()
    return sorted((method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method in HTTP_METHODS)


@pytest.fixture(scope="module")
def app(database_url: str, db: Database) -> FastAPI:
    """One app for the module, in place of conftest's app per test: building an app and
    generating its OpenAPI document (which FastAPI then keeps) took about a second per
    operation, most of this module's time. The app holds no state between requests but
    the database, which conftest empties after every test; settings and clock as
    conftest's."""
    settings = Settings(environment="test", database_url=database_url, default_region="CN",
                        default_language="en")
    return create_app(settings, db=db, clock=FixedClock(TEST_NOW))


@pytest.fixture
def owner_headers(client: TestClient, world: World) -> dict[str, str]:
    csrf = login(client, "owner")
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return {"Cookie": cookie, "X-CSRF-Token": csrf}


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_5xx_and_every_answer_matches_the_schema(
        method: str, path: str, app: FastAPI, owner_headers: dict[str, str]) -> None:
    operation = schemathesis.openapi.from_asgi(OPENAPI, app)[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        # a report starts a child process to read the history: 10 s (schemathesis'
        # default) is not enough on a loaded 2-core machine; this bounds a hang, not speed
        case.call_and_validate(headers=owner_headers, timeout=120,
                               checks=[not_a_server_error, response_schema_conformance])

    call()
