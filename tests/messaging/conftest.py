"""Fixtures of the messaging tests: loopback provider stand-ins, a short-timeout client."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from patron.core.clock import FixedClock
from tests.messaging.stub import NOW, Responder, StubServer


@pytest.fixture
def stub() -> Iterator[Callable[[Responder], StubServer]]:
    servers: list[StubServer] = []

    def make(respond: Responder) -> StubServer:
        server = StubServer(respond).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A client with short timeouts, so the timeout tests finish quickly."""
    with httpx.Client(timeout=httpx.Timeout(1.0, connect=1.0)) as client:
        yield client


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


