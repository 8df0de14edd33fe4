"""Run a value-moving handler at most once per Idempotency-Key (see core/idempotency)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi import Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from patron.api.deps import AppContext
from patron.auth.principal import Principal
from patron.core import idempotency

REPLAY_HEADER = "Idempotent-Replayed"


def run_once(request: Request, ctx: AppContext, principal: Principal, body: bytes,
             work: Callable[[Session], BaseModel], *, status_code: int = 201) -> Response:
    """Answer with the first response for this key, byte for byte; run ``work`` only once."""
    key = idempotency.check_key(request.headers.get("Idempotency-Key"))
    scope = f"{principal.kind.value}:{principal.id}"
    fp = idempotency.fingerprint(request.method, request.url.path, body)

    def _work(session: Session) -> tuple[int, bytes]:
        return status_code, work(session).model_dump_json().encode()

    stored = idempotency.run(ctx.db, clock=ctx.clock, scope=scope, key=key,
                             fingerprint_=fp, work=_work,
                             lease=timedelta(seconds=ctx.settings.idempotency_lease_seconds))
    headers = {REPLAY_HEADER: "true"} if stored.replayed else {}
    return Response(stored.body, status_code=stored.status_code,
                    media_type="application/json", headers=headers)
