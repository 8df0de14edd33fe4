"""Parts of the authorisation matrix test: the app's route table, realistic path values,
request bodies generated from the published OpenAPI, and a fingerprint of the database.

* ``app_routes`` lists every (method, path) the app answers, flattening included routers
  (FastAPI 0.165 keeps them as ``_IncludedRouter`` entries in ``app.routes``).
* ``make_objects`` creates one object of each kind a path names, store-owned ones in
  store B (so a role of store A must be refused them: OWASP API1, BOLA).
* ``body_for`` builds the smallest body the route's schema accepts (required fields only),
  so a request reaches the handler and its role check rather than stopping at validation.
* ``WriteLog`` records what the database committed, so a refused request can be shown to
  change nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.campaigns import service as campaigns
from patron.campaigns.schemas import CampaignCreate, SegmentCreate
from patron.cards import service as cards
from patron.cards.schemas import PackageProductCreate, StampProgrammeCreate
from patron.care.service import member_token
from patron.core.clock import FixedClock
from patron.feedback import service as feedback
from patron.feedback.enums import ComplaintCategory, ComplaintChannel, SurveyOccasion
from patron.feedback.schemas import ComplaintCreate
from patron.loyalty import service as loyalty
from patron.members import privacy
from patron.members.privacy import RequestKind
from patron.messaging import service as messaging
from patron.messaging.templates import TemplateRenderer
from patron.offers import promotion_service
from patron.offers import service as offers
from patron.offers.enums import CouponKind, Validity
from patron.offers.schemas import CouponTemplateCreate
from patron.sales import service as sales
from patron.sales.schemas import LineIn, PaymentsIn, SaleCreate
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder
from tests.factories import World, make_member, make_product, make_user

TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) of the app, mounts (static files) left out."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if hasattr(route, "effective_candidates"):
                walk(list(route.effective_candidates())
                     + list(route.effective_low_priority_routes()))
                continue
            methods = getattr(route, "methods", None)
            path = getattr(route, "path_format", None) or getattr(route, "path", None)
            if methods and path:
                found.extend((m, path) for m in methods if m not in ("HEAD", "OPTIONS"))

    walk(list(app.routes))
    return sorted(set(found), key=lambda r: (r[1], r[0]))


@dataclass
class Objects:
    """Path values by parameter name; ``code``, ``token`` and ``name`` depend on the path."""

    ids: dict[str, str]
    coupon_code: str
    gift_card_code: str
    survey_token: str
    unsubscribe_token: str
    member_link_token: str


def make_objects(session: Session, clock: FixedClock, world: World, secret: str) -> Objects:
    """One real object per path parameter; what belongs to a store belongs to store B."""
    owner = auth.principal_for_user(world.owner)
    manager_b = auth.principal_for_user(world.manager_b)
    member = make_member(session, clock, world.store_b, name="Matrix Member",
                         sms_consent=True)
    spare_member = make_member(session, clock, world.store_b, name="Spare Member")
    product = make_product(session, price_minor=1_000)
    loyalty.update_program(session, clock=clock, actor=owner, changes={"points_per_major": 1})
    wallet.top_up(session, clock=clock, actor=manager_b, member_id=member.id,
                  amount_minor=10_000, store_id=world.store_b.id)
    template = offers.create_template(session, clock=clock, actor=owner, data=(
        CouponTemplateCreate(name="Five off", kind=CouponKind.FIXED, amount_minor=500,
                             validity=Validity.DAYS, valid_days=30)))
    coupon = offers.issue_coupons(session, clock=clock, actor=owner, template_id=template.id,
                                  member_id=member.id)[0]
    sale = sales.checkout(session, clock=clock, actor=manager_b, till=TILL, data=SaleCreate(
        store_id=world.store_b.id, member_id=member.id,
        lines=[LineIn(sku=product.sku, quantity=1)], payments=PaymentsIn(cash_minor=1_000)))
    tier = loyalty.create_tier(session, clock=clock, actor=owner, code="gold", name="Gold",
                               rank=1, threshold=100_000)
    rule = wallet.create_bonus_rule(session, clock=clock, actor=owner, name="Bonus",
                                    min_topup_minor=10_000, bonus_minor=1_000)
    programme = cards.create_programme(session, clock=clock, actor=owner, data=(
        StampProgrammeCreate(name="Coffee card", basis="item", stamps_needed=5,
                             reward_kind="product", reward_product_id=product.id,
                             product_ids=[product.id])))
    package_product = cards.create_package_product(session, clock=clock, actor=owner, data=(
        PackageProductCreate(name="Ten visits", visits=10, price_minor=9_000, valid_days=365,
                             service_ids=[product.id])))
    package = cards.sell_package(session, clock=clock, actor=manager_b, member_id=member.id,
                                 package_product_id=package_product.id,
                                 store_id=world.store_b.id)
    _, gift = cards.issue_gift_cards(session, clock=clock, actor=manager_b, name="Gifts",
                                     count=1, face_value_minor=5_000, store_id=world.store_b.id)
    complaint = feedback.open_complaint(session, clock=clock, actor=manager_b, data=(
        ComplaintCreate(store_id=world.store_b.id, member_id=member.id,
                        channel=ComplaintChannel.IN_STORE, category=ComplaintCategory.SERVICE,
                        description="Slow service")))
    task = feedback.create_callback(session, clock=clock, actor=manager_b, member_id=member.id,
                                    store_id=world.store_b.id)
    invitation = feedback.invite(session, clock=clock, member_id=member.id,
                                 occasion=SurveyOccasion.SALE, source_ref=str(sale.id),
                                 store_id=world.store_b.id)
    assert invitation is not None
    message_id = messaging.enqueue(session, clock=clock, messages=[messaging.Outgoing(
        dedupe_key="matrix:1", channel="sms", purpose="transactional", template="receipt",
        language="en", recipient=member.phone or "", body="Thank you",
        member_id=member.id, store_id=world.store_b.id)])[0]
    segment = campaigns.create_segment(session, clock=clock, actor=manager_b, data=(
        SegmentCreate(name="B members",
                      rules={"field": "home_store", "value": [str(world.store_b.id)]})))
    campaign = campaigns.create_campaign(
        session, clock=clock, actor=manager_b, renderer=TemplateRenderer(default_language="en"),
        data=CampaignCreate.model_validate({
            "name": "B autumn", "segment_id": segment.id, "channel": "sms",
            "messages": {"en": {"subject": "Hi", "body": "Autumn teas", "sms": "Autumn teas"}}}))
    promotion = promotion_service.create_promotion(session, clock=clock, actor=manager_b,
                                                   data=_promotion(world))
    request = privacy.request_data(session, clock=clock, actor=None, member_id=member.id,
                                   kind=RequestKind.EXPORT, source="self_service")
    spare_user = make_user(session, clock, auth_role("cashier"), [world.store_b],
                           username="spare-b")
    spare_key, _ = auth.create_api_key(session, clock=clock, actor=owner,
                                       store_id=world.store_b.id, name="spare till B")
    session.flush()
    category_id = product.category_id
    return Objects(
        ids={"member_id": str(member.id), "spare_member_id": str(spare_member.id), "product_id": str(product.id),
             "category_id": str(category_id), "sale_id": str(sale.id),
             "template_id": str(template.id), "tier_id": str(tier.id),
             "rule_id": str(rule.id), "programme_id": str(programme.id),
             "package_product_id": str(package_product.id), "package_id": str(package.id),
             "reward_id": str(uuid.uuid4()), "complaint_id": str(complaint.id),
             "task_id": str(task.id), "message_id": str(message_id),
             "segment_id": str(segment.id), "campaign_id": str(campaign.id),
             "promotion_id": str(promotion.id), "request_id": str(request.id),
             "user_id": str(spare_user.id), "key_id": str(spare_key.id),
             "store_id": str(world.store_b.id), "endpoint_id": str(uuid.uuid4()),
             "sku": product.sku, "to_member_id": str(spare_member.id)},
        coupon_code=coupon.code, gift_card_code=gift[0].card.code,
        survey_token=invitation.token,
        unsubscribe_token=messaging.unsubscribe_token(secret, member.id, "sms"),
        member_link_token=member_token(secret, member.id))


def auth_role(name: str) -> Any:
    from patron.auth.enums import Role

    return Role(name)


def _promotion(world: World) -> Any:
    from patron.offers.promotion_schemas import PromotionCreate

    return PromotionCreate.model_validate({
        "name": "B spend and save",
        "config": {"kind": "spend_discount",
                   "steps": [{"spend_minor": 1000, "amount_off_minor": 100}]},
        "audience": {"stores": [str(world.store_b.id)]}})


#: Calls that end a member's record: they get a member of their own, so the other routes
#: still find theirs.
ENDS_MEMBER = re.compile(r"^(DELETE /api/v1/members/\{member_id\}|POST .*/members/\{member_id\}"
                         r"/(erase|delete))$")


def fill_path(method: str, path: str, objects: Objects) -> str:
    """The path with each ``{param}`` replaced by a real object's value."""
    spare = bool(ENDS_MEMBER.match(f"{method} {path}"))

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        if name == "member_id" and spare:
            return objects.ids["spare_member_id"]
        if name == "code":
            if "/coupons/" in path:
                return objects.coupon_code
            if "/gift-cards/" in path:
                return objects.gift_card_code
            if "/care/rules/" in path:
                return "birthday"
            if "/campaign-plays/" in path:
                return "welcome_series"
        if name == "token":
            if "surveys" in path or path.startswith("/s/"):
                return objects.survey_token
            if "unsubscribe" in path or path.startswith("/u/"):
                return objects.unsubscribe_token
            return objects.member_link_token
        if name == "name":
            return "points" if "/section/" in path else "receipt"
        # a parameter added after this file was written: an id of nothing (404 when allowed)
        return objects.ids.get(name, str(uuid.UUID(int=0)))

    return re.sub(r"{([^}]+)}", value, path)


# ---------------------------------------------------------------- bodies from OpenAPI


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = spec["components"]["schemas"][name]
    return schema


def example(spec: dict[str, Any], schema: dict[str, Any], name: str, ids: dict[str, str],
            depth: int = 0) -> Any:
    """The smallest value ``schema`` accepts; ids named like a path parameter are real."""
    schema = _resolve(spec, schema)
    if depth > 8:
        return None
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(spec, s).get("type") != "null"]
            return example(spec, options[0], name, ids, depth + 1) if options else None
    if "allOf" in schema:
        return example(spec, schema["allOf"][0], name, ids, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: example(spec, props[k], k, ids, depth + 1)
                for k in schema.get("required", []) if k in props}
    if kind == "array":
        item = schema.get("items", {})
        return [example(spec, item, name, ids, depth + 1)
                for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1
                         if "exclusiveMinimum" in schema else 1)
        return max(int(low), 1) if schema.get("maximum", 2) >= 1 else int(low)
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "uuid":
            return ids.get(name, ids.get(f"{name}_id", str(uuid.uuid4())))
        if fmt == "date-time":
            return "2026-11-23T10:00:00Z"
        if fmt == "date":
            return date(2026, 11, 24).isoformat()
        if fmt == "email":
            return "someone@example.com"
        if fmt == "time":
            return "10:00:00"
        return "x" * max(1, int(schema.get("minLength", 1)))
    return None


def body_for(spec: dict[str, Any], method: str, path: str, ids: dict[str, str]
             ) -> tuple[str, Any] | None:
    """(content type, body) the operation accepts, or None if it takes no body."""
    operation = spec["paths"].get(path, {}).get(method.lower())
    if not operation or "requestBody" not in operation:
        return None
    content = operation["requestBody"]["content"]
    if "application/json" in content:
        return "json", example(spec, content["application/json"]["schema"], "", ids)
    if "multipart/form-data" in content:
        return "multipart", None
    return "form", None


def query_for(spec: dict[str, Any], method: str, path: str, ids: dict[str, str]
              ) -> dict[str, Any]:
    operation = spec["paths"].get(path, {}).get(method.lower()) or {}
    return {p["name"]: example(spec, p.get("schema", {}), p["name"], ids)
            for p in operation.get("parameters", [])
            if p.get("in") == "query" and p.get("required")}


# ---------------------------------------------------------------- the database's state

#: Writes a refused request may still make: when a key or a session was last used, and the
#: sign-in throttle's record.
VOLATILE = re.compile(r"^\s*(UPDATE api_keys SET last_used_at|UPDATE users SET last_login_at"
                      r"|UPDATE web_sessions|INSERT INTO login_attempts)", re.IGNORECASE)
_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


class WriteLog:
    """Records the writes the database committed, per connection, while installed.

    Cheaper than hashing every table after each request, and exact: a write that was
    rolled back (a refused request undoing its work) is not a change.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pending: dict[int, list[str]] = {}
        self.committed: list[str] = []

    def _statement(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if _WRITE.match(statement) and not VOLATILE.match(statement):
            self.pending.setdefault(id(conn), []).append(statement.split("(")[0][:80])

    def _commit(self, conn: Any) -> None:
        self.committed += self.pending.pop(id(conn), [])

    def _rollback(self, conn: Any) -> None:
        self.pending.pop(id(conn), None)

    def __enter__(self) -> WriteLog:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        event.listen(self.engine, "rollback", self._rollback)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)
        event.remove(self.engine, "rollback", self._rollback)

    def take(self) -> list[str]:
        done, self.committed = self.committed, []
        return done
