"""A worker wired to real channels on loopback for tests: e-mail to an aiosmtpd server,
SMS to the development log-file channel (a real channel that appends JSON lines)."""

from __future__ import annotations

import email
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from patron.core.clock import Clock
from patron.core.db import Database
from patron.core.settings import Settings
from patron.jobs.handlers import SCHEDULES, handlers_for
from patron.jobs.worker import Worker, WorkerContext
from patron.messaging.channels.base import Channel, ChannelKind
from patron.messaging.channels.factory import ChannelSet
from patron.messaging.channels.logfile import LogFileChannel
from patron.messaging.channels.smtp import SmtpChannel
from patron.messaging.templates import TemplateRenderer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Inbox:
    """What the loopback SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in (m["To"] or "")]


class SmtpServer:
    """aiosmtpd on a free loopback port, started for real."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def sms_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def make_worker(db: Database, clock: Clock, settings: Settings, *, smtp_port: int | None,
                sms_path: Path, extra: dict[ChannelKind, Channel] | None = None) -> Worker:
    channels: dict[ChannelKind, Channel] = {
        ChannelKind.SMS: LogFileChannel(path=sms_path, kind=ChannelKind.SMS, clock=clock)}
    if smtp_port is not None:
        channels[ChannelKind.EMAIL] = SmtpChannel(
            host="127.0.0.1", port=smtp_port, security="none", from_address="shop@example.com",
            from_name="Patron Shop", clock=clock, timeout_s=5)
    channels.update(extra or {})
    ctx = WorkerContext(db=db, clock=clock, settings=settings,
                        renderer=TemplateRenderer(default_language=settings.default_language),
                        channels=ChannelSet(channels))
    return Worker(ctx=ctx, handlers=handlers_for, schedules=SCHEDULES)


def iter_sms(path: Path) -> Iterator[dict[str, Any]]:
    yield from sms_log(path)
