"""The audit log, newest first, for owners (everyone else gets the 403 page)."""

from __future__ import annotations

import json

from starlette.responses import Response

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import require_role
from patron.web.deps import Db, SignedInPage, principal_of
from patron.web.routing import web_router
from patron.web.templating import render

router = web_router()

PAGE_SIZE = 50


@router.get("/audit")
def audit_page(page: SignedInPage, session: Db) -> Response:
    require_role(principal_of(page), Role.OWNER, users_only=True)
    params = {k: page.request.query_params.get(k, "").strip()[:64]
              for k in ("entity_type", "entity_id", "action", "before")}
    before = int(params["before"]) if params["before"].isdigit() else None
    entries = audit.list_entries(session, entity_type=params["entity_type"] or None,
                                 entity_id=params["entity_id"] or None,
                                 action=params["action"] or None, limit=PAGE_SIZE + 1,
                                 before_seq=before)
    older = entries[PAGE_SIZE - 1].seq if len(entries) > PAGE_SIZE else None
    rows = [(e, json.dumps(e.details, ensure_ascii=False, sort_keys=True) if e.details else "")
            for e in entries[:PAGE_SIZE]]
    return render(page, "audit.html", rows=rows, params=params, older=older)
