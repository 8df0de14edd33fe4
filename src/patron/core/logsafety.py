"""Keep personal data out of log files: phone numbers, e-mail addresses and query strings.

Logs are read by more people than the member database (whoever runs the server, a log
service, a support ticket) and are kept longer, so DESIGN rule 8 applies to them too.
Libraries log what they were given: httpx logs every request's full URL at INFO (the
Aliyun SMS API is a GET whose query carries the phone number and the template's
parameters, such as a sign-in code), uvicorn's access log prints each request line with
its query (``/api/v1/members/lookup?phone=...``), and a database error's text quotes the
statement's parameters. Rather than trusting every call site, ``install`` wraps the log
record factory once per process so every record, from any logger, is scrubbed when it is
made: query values become ``…``, a run of 11-15 digits (a mobile or E.164 number) keeps its
last 4 digits only, and an e-mail address keeps its domain only. Tracebacks are scrubbed the
same way.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

_PHONE = re.compile(r"(?<![\w.])\+?(?:\d[ -]?){7,11}(\d{4})(?![\w.])")
_EMAIL = re.compile(r"[\w.+-]+@((?:[\w-]+\.)+[\w-]+)")
_QUERY_VALUE = re.compile(r"([?&][^=&\s\"'#]+)=([^&\s\"'#]+)")
_MASKED_VALUE = "…"

_installed = False
_lock = threading.Lock()


def scrub(text: str) -> str:
    """``text`` with query values, phone numbers and e-mail addresses masked."""
    text = _QUERY_VALUE.sub(lambda m: f"{m.group(1)}={_MASKED_VALUE}", text)
    text = _EMAIL.sub(lambda m: f"…@{m.group(1)}", text)
    return _PHONE.sub(lambda m: f"…{m.group(1)}", text)


def _scrub_arg(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value  # numbers keep their %d / %.2f formats
    return scrub(value if isinstance(value, str) else str(value))


def _scrub_record(record: logging.LogRecord) -> None:
    """Scrub the message and each argument in place, keeping the arguments' shape (uvicorn's
    access formatter unpacks them)."""
    if isinstance(record.msg, str):
        record.msg = scrub(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_scrub_arg(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _scrub_arg(v) for k, v in record.args.items()}
    if record.exc_info and not record.exc_text:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))


def install() -> None:
    """Scrub every log record of this process from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
