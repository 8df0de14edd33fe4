"""The development channel: every message becomes one JSON line in a file, nothing is sent.

A fresh install, the demo and the test suites use it so care rules and campaigns can run
end to end without an SMS account or a mail server; ``tail -f`` shows what members would
receive. The same class serves any kind (one instance per kind, or several sharing a file).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from patron.core.clock import Clock, SystemClock
from patron.messaging.channels.base import ChannelKind, Message, SendResult, check_kind

PROVIDER = "log"

# One lock per file across instances, so two channels sharing a file never interleave lines.
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


class LogFileChannel:
    """Appends each message of one kind to ``path`` as a JSON line (UTF-8, not escaped)."""

    name: str = PROVIDER

    def __init__(self, *, path: str | Path, kind: ChannelKind, clock: Clock | None = None) -> None:
        self._path = Path(path).resolve()
        self._kind = kind
        self._clock: Clock = clock or SystemClock()
        self._lock = _lock_for(self._path)

    @property
    def kind(self) -> ChannelKind:
        return self._kind

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        """Nothing is held open: each line is written and closed."""

    def send(self, message: Message) -> SendResult:
        check_kind(self._kind, message)
        record = {
            "logged_at": self._clock.now().isoformat(),
            "kind": message.kind.value,
            "recipient": message.recipient,
            "recipient_name": message.recipient_name,
            "subject": message.subject,
            "body": message.body,
            "html_body": message.html_body,
            "dedupe_key": message.dedupe_key,
            "unsubscribe_url": message.unsubscribe_url,
            "template": message.template,
            "template_params": dict(message.template_params),
            "event": message.event,
            "metadata": dict(message.metadata),
        }
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            with self._lock:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with self._path.open("a", encoding="utf-8") as fh:
                    fh.write(line)
        except OSError as exc:  # a full disk or a missing permission: fixable, so retry
            return SendResult.retry(PROVIDER, f"could not write {self._path}: {exc}",
                                    error_code="io")
        return SendResult.sent(PROVIDER, f"log:{message.dedupe_key}")
