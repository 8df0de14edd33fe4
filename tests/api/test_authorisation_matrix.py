"""The authorisation matrix: every route of the app × every kind of caller.

``TABLE`` declares, for each (method, path) the app answers, who may call it:

* ``public``  anyone (the sign-in pages, the member's own pages, signed links, the docs);
* ``signed``  the request carries its own proof (a provider's signature, the sign-in form's
  double-submit token, the member session's form token, a password): without it every
  caller is refused with a 4xx, a staff login grants nothing;
* ``open``    the answer depends on the caller's own cookies (sign out, the language switch):
  anything but a 5xx is right;
* ``any``     any signed-in staff user or POS key (the till's calls);
* ``staff``   staff users of any role, not POS keys;
* ``manager`` managers and owners;
* ``owner``   owners only;

and ``@B`` when the path's object belongs to store B, so that callers of store A (its
cashier, its manager, its POS key) must be refused it even though their role would do
(OWASP API1, broken object-level authorisation). Store-owned objects of the test are all
in store B; members belong to the brand.

Every route is called as: anonymous, a member signed in to their own page (a member
session is no staff login), POS keys of stores A and B, the cashier and the manager of
store A, the manager of store B and the owner. Bodies are generated from the published
OpenAPI (required fields only) so requests reach the handler; path values are real
objects. Expected: 401 (API) or a redirect to the sign-in page (web) without a login; 403
for a role refused (404 allowed for another store's object); anything but 401/403 (and no
5xx) for a caller allowed. A refused call must commit no write to the database. A route
missing from the table fails ``test_every_route_is_classified``, so each new route is
classified when it is added.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from patron.core.clock import FixedClock
from patron.core.db import Database
from tests.api.matrix_support import (
    Objects,
    WriteLog,
    app_routes,
    body_for,
    fill_path,
    make_objects,
    query_for,
)
from tests.factories import World, key_headers, login

LEVELS = ("public", "signed", "open", "any", "staff", "manager", "owner")
ROLES = ("anonymous", "member", "key_a", "key_b", "cashier_a", "manager_a", "manager_b",
         "owner")
USERS = {"cashier_a": "cashier-a", "manager_a": "manager-a", "manager_b": "manager-b",
         "owner": "owner"}
#: Routes that end the caller's session: the role signs in again after calling them.
SIGN_OUT = {("DELETE", "/api/v1/session"), ("POST", "/logout")}

TABLE = """
GET    /                                                            staff
GET    /api-keys                                                    manager
POST   /api-keys                                                    manager
POST   /api-keys/{key_id}/revoke                                    manager @B
GET    /api/v1/analytics/runs/latest                                manager
GET    /api/v1/analytics/segments                                   manager
GET    /api/v1/api-keys                                             manager
POST   /api/v1/api-keys                                             manager @B
DELETE /api/v1/api-keys/{key_id}                                    manager @B
GET    /api/v1/audit                                                owner
GET    /api/v1/callbacks                                            any
POST   /api/v1/callbacks                                            staff @B
GET    /api/v1/callbacks/{task_id}                                  any @B
POST   /api/v1/callbacks/{task_id}/calls                            staff @B
POST   /api/v1/callbacks/{task_id}/cancel                           manager @B
POST   /api/v1/callbacks/{task_id}/complete                         manager @B
GET    /api/v1/campaign-plays                                       manager
POST   /api/v1/campaign-plays/{code}/campaigns                      manager
GET    /api/v1/campaigns                                            manager
POST   /api/v1/campaigns                                            manager
GET    /api/v1/campaigns/{campaign_id}                              manager @B
PATCH  /api/v1/campaigns/{campaign_id}                              manager @B
POST   /api/v1/campaigns/{campaign_id}/cancel                       manager @B
POST   /api/v1/campaigns/{campaign_id}/launch                       manager @B
POST   /api/v1/campaigns/{campaign_id}/pause                        manager @B
GET    /api/v1/campaigns/{campaign_id}/results                      manager @B
POST   /api/v1/campaigns/{campaign_id}/resume                       manager @B
POST   /api/v1/campaigns/{campaign_id}/test-send                    manager @B
GET    /api/v1/care/rules                                           manager
PUT    /api/v1/care/rules/{code}                                    owner
GET    /api/v1/categories                                           any
POST   /api/v1/categories                                           manager
GET    /api/v1/categories/{category_id}                             any
PATCH  /api/v1/categories/{category_id}                             manager
GET    /api/v1/complaints                                           any
POST   /api/v1/complaints                                           any
GET    /api/v1/complaints/{complaint_id}                            any @B
POST   /api/v1/complaints/{complaint_id}/resolve                    manager @B
POST   /api/v1/complaints/{complaint_id}/transitions                staff @B
GET    /api/v1/coupon-templates                                     any
POST   /api/v1/coupon-templates                                     manager
DELETE /api/v1/coupon-templates/{template_id}                       manager
GET    /api/v1/coupon-templates/{template_id}                       any
PATCH  /api/v1/coupon-templates/{template_id}                       manager
POST   /api/v1/coupon-templates/{template_id}/issue                 manager
GET    /api/v1/coupons/{code}                                       any
POST   /api/v1/coupons/{code}/quote                                 any
POST   /api/v1/coupons/{code}/redemptions                           any
POST   /api/v1/coupons/{code}/restorations                          any
POST   /api/v1/coupons/{code}/void                                  manager
GET    /api/v1/data-requests                                        manager
POST   /api/v1/data-requests/{request_id}/cancel                    manager @B
POST   /api/v1/gift-cards                                           any
GET    /api/v1/gift-cards/{code}                                    any
POST   /api/v1/gift-cards/{code}/redemptions                        any
POST   /api/v1/gift-cards/{code}/transfer                           any
POST   /api/v1/gift-cards/{code}/void                               manager
POST   /api/v1/loyalty/multipliers                                  manager
GET    /api/v1/loyalty/program                                      any
PATCH  /api/v1/loyalty/program                                      owner
GET    /api/v1/me                                                   any
GET    /api/v1/members                                              any
POST   /api/v1/members                                              any
GET    /api/v1/members/export.csv                                   manager
POST   /api/v1/members/import                                       manager
GET    /api/v1/members/lookup                                       any
DELETE /api/v1/members/{member_id}                                  manager
GET    /api/v1/members/{member_id}                                  any
PATCH  /api/v1/members/{member_id}                                  any
GET    /api/v1/members/{member_id}/consents                         any
POST   /api/v1/members/{member_id}/consents                         any
GET    /api/v1/members/{member_id}/coupons                          any
POST   /api/v1/members/{member_id}/data-requests                    staff
POST   /api/v1/members/{member_id}/erase                            owner
GET    /api/v1/members/{member_id}/export                           manager @B
GET    /api/v1/members/{member_id}/memberships                      any
GET    /api/v1/members/{member_id}/notes                            staff @B
POST   /api/v1/members/{member_id}/notes                            staff @B
POST   /api/v1/members/{member_id}/merge                            manager
GET    /api/v1/members/{member_id}/packages                         any
POST   /api/v1/members/{member_id}/packages                         any
POST   /api/v1/members/{member_id}/packages/{package_id}/refund     manager
POST   /api/v1/members/{member_id}/packages/{package_id}/visits     any
GET    /api/v1/members/{member_id}/points                           any
POST   /api/v1/members/{member_id}/points/adjustments               manager
POST   /api/v1/members/{member_id}/points/transfers                 any
GET    /api/v1/members/{member_id}/profile                          staff
GET    /api/v1/members/{member_id}/referral-code                    any
PUT    /api/v1/members/{member_id}/referrer                         any
GET    /api/v1/members/{member_id}/scores                           any
GET    /api/v1/members/{member_id}/stamp-cards                      any
POST   /api/v1/members/{member_id}/stamp-rewards/{reward_id}/redeem any
GET    /api/v1/members/{member_id}/wallet                           any
POST   /api/v1/members/{member_id}/wallet/adjustments               manager
POST   /api/v1/members/{member_id}/wallet/cash-outs                 manager
POST   /api/v1/members/{member_id}/wallet/spends                    any
POST   /api/v1/members/{member_id}/wallet/top-ups                   any
GET    /api/v1/membership-plans                                     any
POST   /api/v1/membership-plans                                     owner
GET    /api/v1/messages                                             manager
GET    /api/v1/messages/summary                                     manager
GET    /api/v1/messages/{message_id}                                manager @B
POST   /api/v1/messages/{message_id}/resend                         manager @B
GET    /api/v1/messaging/policy                                     manager
PATCH  /api/v1/messaging/policy                                     owner
POST   /api/v1/messaging/providers/aliyun/status                    signed
POST   /api/v1/messaging/providers/gateway/inbound                  signed
POST   /api/v1/messaging/providers/twilio/inbound                   signed
POST   /api/v1/messaging/providers/twilio/status                    signed
GET    /api/v1/messaging/templates                                  manager
GET    /api/v1/messaging/templates/{name}/preview                   manager
GET    /api/v1/openapi.json                                         public
GET    /api/v1/package-products                                     any
POST   /api/v1/package-products                                     manager
DELETE /api/v1/package-products/{package_product_id}                manager
GET    /api/v1/package-products/{package_product_id}                any
PATCH  /api/v1/package-products/{package_product_id}                manager
GET    /api/v1/portraits                                            manager
GET    /api/v1/products                                             any
POST   /api/v1/products                                             manager
GET    /api/v1/products/by-sku/{sku}                                any
POST   /api/v1/products/import                                      manager
GET    /api/v1/products/{product_id}                                any
PATCH  /api/v1/products/{product_id}                                manager
GET    /api/v1/promotions                                           any
POST   /api/v1/promotions                                           manager
GET    /api/v1/promotions/{promotion_id}                            any @B
PATCH  /api/v1/promotions/{promotion_id}                            manager @B
POST   /api/v1/promotions/{promotion_id}/activate                   manager @B
POST   /api/v1/promotions/{promotion_id}/deactivate                 manager @B
GET    /api/v1/promotions/{promotion_id}/report                     manager @B
GET    /api/v1/public/surveys/{token}                               public
POST   /api/v1/public/surveys/{token}                               public
POST   /api/v1/public/unsubscribe/{token}                           public
GET    /api/v1/referral-rule                                        any
PUT    /api/v1/referral-rule                                        manager
GET    /api/v1/reports/churn                                        manager
GET    /api/v1/reports/cohorts                                      manager
GET    /api/v1/reports/leaky-bucket                                 manager
GET    /api/v1/reports/liabilities                                  manager
GET    /api/v1/reports/pareto                                       manager
GET    /api/v1/reports/repeat-rate                                  manager
GET    /api/v1/reports/retention-economics                          manager
GET    /api/v1/reports/team                                         manager
GET    /api/v1/reports/tier-migration                               manager
POST   /api/v1/sales                                                any
POST   /api/v1/sales/quote                                          any
GET    /api/v1/sales/{sale_id}                                      any @B
POST   /api/v1/sales/{sale_id}/refunds                              any @B
GET    /api/v1/segments                                             manager
POST   /api/v1/segments                                             manager
POST   /api/v1/segments/count                                       manager
GET    /api/v1/segments/fields                                      manager
POST   /api/v1/segments/sample                                      manager
DELETE /api/v1/segments/{segment_id}                                manager @B
GET    /api/v1/segments/{segment_id}                                manager @B
PATCH  /api/v1/segments/{segment_id}                                manager @B
GET    /api/v1/segments/{segment_id}/count                          manager @B
GET    /api/v1/segments/{segment_id}/sample                         manager @B
DELETE /api/v1/session                                              any
POST   /api/v1/session                                              signed
GET    /api/v1/stamp-programmes                                     any
POST   /api/v1/stamp-programmes                                     manager
DELETE /api/v1/stamp-programmes/{programme_id}                      manager
GET    /api/v1/stamp-programmes/{programme_id}                      any
PATCH  /api/v1/stamp-programmes/{programme_id}                      manager
GET    /api/v1/stores                                               any
POST   /api/v1/stores                                               owner
GET    /api/v1/stores/{store_id}                                    any
PATCH  /api/v1/stores/{store_id}                                    manager @B
GET    /api/v1/stores/{store_id}/staff                              manager @B
GET    /api/v1/surveys/results                                      manager
GET    /api/v1/tiers                                                any
POST   /api/v1/tiers                                                owner
GET    /api/v1/tiers/{tier_id}/perks                                any
PUT    /api/v1/tiers/{tier_id}/perks                                owner
GET    /api/v1/users                                                manager
POST   /api/v1/users                                                owner
GET    /api/v1/users/{user_id}                                      manager @B
PATCH  /api/v1/users/{user_id}                                      manager @B
GET    /api/v1/wallet/bonus-rules                                   any
POST   /api/v1/wallet/bonus-rules                                   owner
GET    /api/v1/webhooks/endpoints                                   owner
POST   /api/v1/webhooks/endpoints                                   owner
POST   /api/v1/webhooks/endpoints/{endpoint_id}/deactivate          owner
GET    /audit                                                       owner
GET    /care                                                        staff
GET    /care/callbacks                                              staff
POST   /care/callbacks/{task_id}/assign                             manager @B
POST   /care/callbacks/{task_id}/call                               staff @B
GET    /care/complaints                                             staff
POST   /care/complaints                                             staff
GET    /care/complaints/{complaint_id}                              staff @B
POST   /care/complaints/{complaint_id}/resolve                      manager @B
POST   /care/complaints/{complaint_id}/status                       staff @B
GET    /care/outbox                                                 manager
POST   /care/outbox/{message_id}/resend                             manager @B
GET    /care/rules                                                  manager
POST   /care/rules/{code}                                           manager
POST   /care/rules/{code}/enabled                                   manager
GET    /care/surveys                                                manager
GET    /cashier                                                     staff
POST   /cashier                                                     staff
POST   /cashier/checkout                                            staff
GET    /cashier/products                                            staff
GET    /cashier/sales/{sale_id}                                     staff @B
GET    /catalog                                                     staff
POST   /catalog/categories                                          manager
POST   /catalog/products                                            manager
GET    /catalog/products/{product_id}                               staff
POST   /catalog/products/{product_id}                               manager
GET    /dashboard/history                                           manager
GET    /docs                                                        public
POST   /language                                                    open
GET    /join                                                        public
POST   /join                                                        signed
POST   /join/details                                                signed
GET    /login                                                       public
POST   /login                                                       signed
POST   /logout                                                      open
GET    /m                                                           public
POST   /m/consent                                                   signed
POST   /m/data-request                                              signed
GET    /m/login                                                     public
POST   /m/login                                                     signed
POST   /m/login/code                                                signed
POST   /m/logout                                                    signed
GET    /m/{token}                                                   public
GET    /marketing                                                   manager
GET    /marketing/campaigns                                         manager
GET    /marketing/campaigns/new                                     manager
POST   /marketing/campaigns/new                                     manager
GET    /marketing/campaigns/{campaign_id}                           manager @B
POST   /marketing/campaigns/{campaign_id}/cancel                    manager @B
POST   /marketing/campaigns/{campaign_id}/launch                    manager @B
GET    /marketing/segments                                          manager
POST   /marketing/segments/count                                    manager
POST   /marketing/segments/group/new                                manager
GET    /marketing/segments/new                                      manager
POST   /marketing/segments/new                                      manager
POST   /marketing/segments/removed                                  manager
POST   /marketing/segments/row                                      manager
POST   /marketing/segments/row/new                                  manager
GET    /marketing/segments/{segment_id}                             manager @B
POST   /marketing/segments/{segment_id}                             manager @B
POST   /marketing/segments/{segment_id}/delete                      manager @B
GET    /members                                                     staff
GET    /members/export.csv                                          manager
GET    /members/import                                              manager
POST   /members/import                                              manager
POST   /members/import/run                                          manager
GET    /members/new                                                 staff
POST   /members/new                                                 staff
GET    /members/{member_id}                                         staff
POST   /members/{member_id}                                         staff
POST   /members/{member_id}/calls                                   staff
POST   /members/{member_id}/complaints                              staff
POST   /members/{member_id}/consent                                 staff
POST   /members/{member_id}/coupons                                 manager
POST   /members/{member_id}/delete                                  manager
POST   /members/{member_id}/merge                                   manager
GET    /members/{member_id}/next-best                               staff
POST   /members/{member_id}/notes                                   staff @B
POST   /members/{member_id}/points                                  manager
GET    /members/{member_id}/section/{name}                          staff
POST   /members/{member_id}/topup                                   staff
GET    /promotions                                                  manager
GET    /promotions/new                                              manager
POST   /promotions/new                                              manager
GET    /promotions/preview                                          manager
GET    /promotions/{promotion_id}                                   manager @B
POST   /promotions/{promotion_id}                                   manager @B
POST   /promotions/{promotion_id}/active                            manager @B
GET    /s/{token}                                                   public
POST   /s/{token}                                                   signed
GET    /settings                                                    manager
GET    /settings/coupons                                            manager
POST   /settings/coupons                                            manager
GET    /settings/coupons/{template_id}                              manager
POST   /settings/coupons/{template_id}                              manager
GET    /settings/messaging                                          manager
POST   /settings/messaging                                          owner
POST   /settings/messaging/test                                     owner
GET    /settings/plans                                              manager
POST   /settings/plans                                              owner
GET    /settings/points                                             manager
POST   /settings/points                                             owner
POST   /settings/points/multipliers                                 manager
POST   /settings/points/multipliers/{multiplier_id}/active          manager
GET    /settings/tiers                                              manager
POST   /settings/tiers                                              owner
GET    /settings/tiers/{tier_id}                                    manager
POST   /settings/tiers/{tier_id}                                    owner
GET    /settings/wallet                                             manager
POST   /settings/wallet                                             owner
POST   /settings/wallet/{rule_id}/active                            owner
GET    /staff                                                       manager
POST   /staff                                                       manager
GET    /staff/{user_id}                                             manager @B
POST   /staff/{user_id}                                             manager @B
POST   /staff/{user_id}/active                                      manager @B
GET    /stores                                                      staff
POST   /stores                                                      owner
GET    /stores/{store_id}                                           staff
POST   /stores/{store_id}                                           manager @B
GET    /team                                                        manager
GET    /u/{token}                                                   public
POST   /u/{token}                                                   signed
"""


@dataclass(frozen=True)
class Rule:
    level: str
    store_b: bool


def _parse(table: str) -> dict[tuple[str, str], Rule]:
    rules: dict[tuple[str, str], Rule] = {}
    for line in table.strip().splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        method, path, level = parts[:3]
        assert level in LEVELS, line
        assert (method, path) not in rules, f"declared twice: {line}"
        rules[(method, path)] = Rule(level, "@B" in parts[3:])
    return rules


RULES = _parse(TABLE)


def expected(rule: Rule, role: str, *, web: bool) -> str:
    """``auth`` (must sign in), ``deny`` (refused), ``refused`` (any 4xx), ``allow``, or
    ``any`` (no 5xx)."""
    if rule.level in ("public", "open"):
        return "allow" if rule.level == "public" else "any"
    if rule.level == "signed":
        return "refused"
    if role in ("anonymous", "member") or (web and role.startswith("key_")):
        return "auth"
    allowed = {
        "any": {"key_a", "key_b", "cashier_a", "manager_a", "manager_b", "owner"},
        "staff": {"cashier_a", "manager_a", "manager_b", "owner"},
        "manager": {"manager_a", "manager_b", "owner"},
        "owner": {"owner"},
    }[rule.level]
    if role not in allowed:
        return "deny"
    if rule.store_b and role in ("key_a", "cashier_a", "manager_a"):
        return "deny"
    return "allow"


def test_every_route_is_classified(app: FastAPI) -> None:
    routes = set(app_routes(app))
    missing = sorted(routes - RULES.keys(), key=lambda r: (r[1], r[0]))
    stale = sorted(RULES.keys() - routes, key=lambda r: (r[1], r[0]))
    assert not missing, "classify these routes in TABLE:\n" + "\n".join(
        f"{m} {p}" for m, p in missing)
    assert not stale, "these routes are gone; remove them from TABLE:\n" + "\n".join(
        f"{m} {p}" for m, p in stale)


@dataclass
class Caller:
    client: TestClient
    headers: dict[str, str]
    csrf: str | None


@pytest.fixture
def callers(app: FastAPI, world: World, objects: Objects) -> Iterator[dict[str, Caller]]:
    made: dict[str, Caller] = {}
    for role in ROLES:
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()  # one event loop for all its requests (a new one each is slow)
        headers: dict[str, str] = {}
        csrf = None
        if role in USERS:
            csrf = login(client, USERS[role])
        elif role == "key_a":
            headers = key_headers(world.key_a)
        elif role == "key_b":
            headers = key_headers(world.key_b)
        elif role == "member":
            r = client.get(f"/m/{objects.member_link_token}", follow_redirects=False)
            assert r.status_code == 303
        made[role] = Caller(client, headers, csrf)
    yield made
    for caller in made.values():
        caller.client.__exit__(None, None, None)


@pytest.fixture
def objects(app: FastAPI, db: Database, clock: FixedClock, world: World) -> Objects:
    secret = app.state.ctx.settings.secret_key.get_secret_value()
    with db.write() as session:
        return make_objects(session, clock, world, secret)


def _call(caller: Caller, spec: dict[str, object], method: str, path: str,
          objects: Objects) -> tuple[int, str]:
    url = fill_path(method, path, objects)
    headers = dict(caller.headers)
    api = path.startswith("/api/")
    kwargs: dict[str, object] = {}
    if api:
        kwargs["params"] = query_for(spec, method, path, objects.ids)
    if method not in ("GET", "HEAD", "OPTIONS"):
        if caller.csrf:
            headers["X-CSRF-Token"] = caller.csrf
        body = body_for(spec, method, path, objects.ids) if api else ("form", None)
        if body is not None:
            kind, value = body
            if kind == "json":
                kwargs["json"] = value
            elif kind == "multipart":
                kwargs["files"] = {"file": ("rows.csv", b"phone,name\n", "text/csv")}
            else:
                kwargs["data"] = {"csrf_token": caller.csrf or ""}
    r = caller.client.request(method, url, headers=headers, follow_redirects=False,
                              **kwargs)  # type: ignore[arg-type]
    return r.status_code, r.headers.get("location", "")


def _judge(want: str, status: int, location: str, *, web: bool, store_b: bool,
           owner_status: int) -> bool:
    """Does ``status`` say what ``want`` expects? A refusal may also be the 422 the owner
    got too: the generated body was refused before any role check, so nothing was done
    (and the write log shows nothing was written)."""
    to_login = status in (303, 302, 307) and location.startswith("/login")
    if status >= 500:
        return False
    if want == "any":
        return True
    if want == "refused":
        return 400 <= status < 500
    if want == "auth":
        return to_login if web else status == 401
    if want == "deny":
        return status == 403 or (store_b and status == 404) or (
            status == 422 and owner_status == 422)
    return status not in (401, 403) and not to_login and not (store_b and status == 404)


def test_authorisation_matrix(app: FastAPI, db: Database, world: World, objects: Objects,
                              callers: dict[str, Caller]) -> None:
    spec = app.openapi()
    discover = bool(os.environ.get("PATRON_MATRIX_DISCOVER"))
    failures: list[str] = []
    observed: dict[tuple[str, str], dict[str, int]] = {}
    with WriteLog(db.engine) as writes:
        for method, path in app_routes(app):
            rule = RULES.get((method, path))
            if rule is None and not discover:
                continue  # test_every_route_is_classified reports it
            web = not path.startswith("/api/") and path != "/docs"
            seen: dict[str, tuple[int, str, list[str]]] = {}
            for role in ROLES:
                writes.take()
                status, location = _call(callers[role], spec, method, path, objects)
                seen[role] = (status, location, writes.take())
                observed.setdefault((method, path), {})[role] = status if not (
                    status in (302, 303, 307) and location.startswith("/login")) else 0
                if (method, path) in SIGN_OUT and role in USERS:
                    callers[role].csrf = login(callers[role].client, USERS[role])
            if rule is None:
                continue
            for role, (status, location, written) in seen.items():
                want = expected(rule, role, web=web)
                if not _judge(want, status, location, web=web, store_b=rule.store_b,
                              owner_status=seen["owner"][0]):
                    failures.append(f"{method} {path} as {role}: expected {want}, got "
                                    f"{status}{' -> ' + location if location else ''}")
                if want not in ("allow", "any") and written:
                    failures.append(f"{method} {path} as {role} ({status}) wrote: "
                                    f"{'; '.join(written)}")
    if discover:
        _print_proposal(observed)
    assert not failures, f"{len(failures)} authorisation failures:\n" + "\n".join(failures)


def _print_proposal(observed: dict[tuple[str, str], dict[str, int]]) -> None:
    """With PATRON_MATRIX_DISCOVER=1: what each route did, as a TABLE line to review."""
    def ok(code: int) -> bool:
        return code not in (0, 401, 403)

    lines = []
    for (method, path), seen in observed.items():
        if ok(seen["anonymous"]):
            level = "public"
        elif ok(seen["key_a"]) or ok(seen["key_b"]):
            level = "any"
        elif ok(seen["cashier_a"]):
            level = "staff"
        elif ok(seen["manager_a"]) or ok(seen["manager_b"]):
            level = "manager"
        else:
            level = "owner"
        b = (ok(seen["key_b"]) and not ok(seen["key_a"])) or (
            ok(seen["manager_b"]) and not ok(seen["manager_a"]))
        codes = " ".join(f"{r}={seen[r]}" for r in ROLES)
        lines.append(f"{method:6} {path:60} {level}{' @B' if b else ''}  # {codes}")
    print("\n".join(lines))
