"""No phone number, e-mail address or sign-in code reaches the logs (DESIGN rule 8).

The app runs under a real uvicorn (its access log prints each request line with the query)
and the worker sends SMS through the Aliyun channel to a stand-in server on loopback (httpx
logs each request's URL, and Aliyun's is a GET carrying the phone and the template's
parameters). Everything is captured at DEBUG, SQLAlchemy's statement log included, while a
member enrols, is looked up by phone, checks out, signs in to their page with a one-time
code, and is messaged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.logsafety import install, scrub
from patron.core.settings import Settings
from patron.jobs.build import build_worker
from patron.messaging.channels.aliyun import AliyunSmsChannel
from patron.messaging.channels.base import ChannelKind
from patron.messaging.channels.factory import ChannelSet
from tests.factories import World, key_headers, make_product
from tests.messaging.stub import Recorded, Reply, StubServer, free_port
from tests.web.helpers import csrf_of

PHONE = "13966667777"
EMAIL = "qian.duoduo@example.com"


@pytest.fixture
def live(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn in a thread, logging through the root logger (caplog)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           log_level="debug", access_log=True,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    else:
        raise RuntimeError("uvicorn did not start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def aliyun() -> Iterator[StubServer]:
    def respond(_request: Recorded) -> Reply:
        return Reply.json(200, json.dumps({"Code": "OK", "Message": "OK", "BizId": "1^0"}))

    server = StubServer(respond).start()
    yield server
    server.stop()


def _logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.name, r.getMessage() + (r.exc_text or "")) for r in caplog.records]


def test_no_phone_email_or_code_in_the_logs_of_a_members_day(
    caplog: pytest.LogCaptureFixture, live: str, aliyun: StubServer, db: Database,
    world: World, clock: FixedClock, settings: Settings,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # statements and parameters
    with db.write() as s:
        make_product(s, sku="TEA", price_minor=2_500)
    pos = key_headers(world.key_a)
    with httpx.Client(base_url=live, timeout=10) as http:
        r = http.post("/api/v1/members", headers=pos, json={
            "name": "Qian Duoduo", "phone": PHONE, "email": EMAIL, "sms_consent": True,
            "home_store_id": str(world.store_a.id)})
        assert r.status_code == 201, r.text
        assert http.post("/api/v1/members", headers=pos, json={
            "name": "Again", "phone": PHONE, "home_store_id": str(world.store_a.id)}
        ).status_code == 409
        assert http.get("/api/v1/members/lookup", headers=pos,
                        params={"phone": PHONE}).status_code == 200
        assert http.get("/api/v1/members", headers=pos, params={"q": PHONE}).status_code == 200
        r = http.post("/api/v1/sales", headers=pos | {"Idempotency-Key": "k-1"}, json={
            "phone": PHONE, "lines": [{"sku": "TEA", "quantity": 1}],
            "payments": {"card_minor": 2_500}})
        assert r.status_code == 201, r.text
        # the member signs in to their page with a code sent by SMS
        page = http.get("/m/login")
        r = http.post("/m/login", data={"csrf_token": csrf_of(page.text), "phone": PHONE})
        assert r.status_code == 200
        challenge = re.search(r'name="challenge" value="([^"]+)"', r.text)
        assert challenge
        sms = AliyunSmsChannel(access_key_id="LTAI-test", access_key_secret="s3cret",
                               sign_name="Patron", endpoint=aliyun.url, clock=clock,
                               template_codes={"otp": "SMS_1", "receipt": "SMS_2"})
        worker = build_worker(settings, db, clock=clock,
                              channels=ChannelSet({ChannelKind.SMS: sms}))
        worker.run_once(schedules=False)
        sent = [dict(parse_qsl(q.query)) for q in aliyun.requests]
        codes = [json.loads(p["TemplateParam"])["code"] for p in sent
                 if p.get("TemplateCode") == "SMS_1"]
        assert len(codes) == 1 and sent[0]["PhoneNumbers"].endswith(PHONE)
        page = http.get("/m/login")
        r = http.post("/m/login/code", data={"csrf_token": csrf_of(page.text),
                                             "challenge": challenge.group(1),
                                             "code": codes[0]}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/m"
    logged = _logged(caplog)
    # the places that would leak were exercised and logged something
    assert any(n == "uvicorn.access" and "/api/v1/members/lookup" in m for n, m in logged)
    assert any(n == "httpx" and aliyun.url in m for n, m in logged)
    assert any(n.startswith("sqlalchemy.engine") for n, _ in logged)
    forbidden = [PHONE, "+86" + PHONE, EMAIL, codes[0]]
    leaks = [(n, m[:200]) for n, m in logged for f in forbidden if f in m]
    assert leaks == []


@pytest.mark.parametrize(("raw", "scrubbed"), [
    ('"GET /api/v1/members/lookup?phone=13912345678 HTTP/1.1"',
     '"GET /api/v1/members/lookup?phone=… HTTP/1.1"'),
    ("sent to +8613912345678", "sent to …5678"),
    ("sent to 139 1234 5678", "sent to …5678"),
    ("reply from li.na@example.com", "reply from …@example.com"),
    ("sale 01a20b27-2c47-74f5-86eb-40667cf98b34 at 2026-11-24 01:30:00 for 12345",
     "sale 01a20b27-2c47-74f5-86eb-40667cf98b34 at 2026-11-24 01:30:00 for 12345"),
])
def test_scrub_masks_phones_emails_and_query_values_only(raw: str, scrubbed: str) -> None:
    assert scrub(raw) == scrubbed


def test_records_keep_their_argument_shape_for_uvicorns_access_formatter() -> None:
    install()
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/api/v1/members?q=13912345678", "1.1", 200), None)
    assert isinstance(record.args, tuple) and len(record.args) == 5 and record.args[4] == 200
    assert record.getMessage() == '127.0.0.1:5000 - "GET /api/v1/members?q=… HTTP/1.1" 200'
