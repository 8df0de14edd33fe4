"""Assemble a worker from the deployment's settings (the CLI and ``serve --with-worker``)."""

from __future__ import annotations

import threading
import uuid
from functools import lru_cache

from patron.core.clock import Clock, SystemClock
from patron.core.db import Database
from patron.core.logsafety import install as scrub_logs
from patron.core.settings import Settings
from patron.jobs.handlers import SCHEDULES, handlers_for
from patron.jobs.worker import Worker, WorkerContext
from patron.messaging import service as messaging
from patron.messaging.channels.base import Message
from patron.messaging.channels.factory import ChannelSet, build_channels
from patron.messaging.config import ChannelSettings
from patron.messaging.templates import TemplateRenderer


def build_worker(settings: Settings, db: Database, *, clock: Clock | None = None,
                 channels: ChannelSet | None = None, poll_s: float = 1.0) -> Worker:
    """A worker over ``db`` with the channels configured in the environment (or given)."""
    clock = clock or SystemClock()
    scrub_logs()  # httpx logs provider URLs (Aliyun's carries the phone number)

    @lru_cache(maxsize=256)
    def _secret(endpoint_hex: str) -> str:
        with db.read() as session:
            return messaging.endpoint_secret(session, endpoint_id=uuid.UUID(hex=endpoint_hex))

    def webhook_secret(message: Message) -> str:
        endpoint = message.metadata.get("endpoint_id")
        if not endpoint:
            raise ValueError("a webhook message without its endpoint")
        return _secret(endpoint)

    if channels is None:
        channels = build_channels(ChannelSettings(), clock=clock, webhook_secret=webhook_secret)
    ctx = WorkerContext(db=db, clock=clock, settings=settings,
                        renderer=TemplateRenderer(default_language=settings.default_language),
                        channels=channels)
    return Worker(ctx=ctx, handlers=handlers_for, schedules=SCHEDULES, poll_s=poll_s)


def start_in_thread(settings: Settings) -> tuple[threading.Thread, threading.Event]:
    """Run a worker beside the web server in this process (``patron serve --with-worker``)."""
    db = Database.from_url(settings.database_url)
    worker = build_worker(settings, db)
    stop = threading.Event()

    def run() -> None:
        try:
            worker.run(stop)
        finally:
            worker.ctx.channels.close()
            db.dispose()

    thread = threading.Thread(target=run, name="patron-worker", daemon=True)
    thread.start()
    return thread, stop
