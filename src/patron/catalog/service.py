"""Use cases of the catalogue: categories and products, their prices and replenishment cycles.

Owners and managers change the catalogue; every authenticated caller (cashiers, POS keys)
reads it, so reads take no principal and the boundary only checks that someone is signed
in. Products are never deleted, because sale lines point at them: taking one off sale is
``active = False``. Every change writes an audit entry in the same transaction.

Services take a session and keyword arguments, flush but never commit: the request, CLI
command or job that calls them owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, func, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.catalog import rules
from patron.catalog.models import Category, Product
from patron.catalog.schemas import (
    CategoryCreate,
    CategoryUpdate,
    ProductCreate,
    ProductRead,
    ProductUpdate,
)
from patron.core.clock import Clock
from patron.core.errors import Conflict, NotFound, ValidationFailed

#: Ids per ``IN (...)`` list when loading many rows at once; far below any backend's limit.
IN_CHUNK = 500
MAX_PAGE_SIZE = 200


def require_editor(actor: Principal | None) -> None:
    """Only owners and managers (people, not POS keys) change the catalogue.

    ``None`` is the operator at the command line or a system job, who is trusted.
    """
    if actor is not None:
        require_role(actor, Role.MANAGER, users_only=True)


def _plain(value: Any) -> Any:
    """A value as it goes into the JSON of an audit entry."""
    return str(value) if isinstance(value, uuid.UUID) else value


def _required(changes: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if key in changes and changes[key] is None:
            raise ValidationFailed(f"{key} cannot be empty", key, code="required")


# ---------------------------------------------------------------- categories


def get_category(session: Session, *, category_id: uuid.UUID) -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise NotFound("No such category", "category_id")
    return category


def find_category_by_code(session: Session, *, code: str) -> Category | None:
    return session.scalar(select(Category).where(Category.code == code.strip()))


def list_categories(session: Session) -> list[Category]:
    """Every category, by code. Catalogues have tens of categories, so no paging."""
    return list(session.scalars(select(Category).order_by(Category.code)))


def categories_by_id(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Category]:
    """Categories keyed by id (for callers that show many products with their category)."""
    wanted = list(dict.fromkeys(ids))
    found: dict[uuid.UUID, Category] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start:start + IN_CHUNK]
        found.update((c.id, c) for c in session.scalars(select(Category)
                                                         .where(Category.id.in_(chunk))))
    return found


def _code_taken(code: str) -> Conflict:
    return Conflict(f"Category code {code!r} is taken", "code", code="category_code_taken")


def create_category(session: Session, *, clock: Clock, actor: Principal | None,
                    data: CategoryCreate, source: str = "api") -> Category:
    """Add a category; ``source`` says where it came from in the audit log (api, import)."""
    require_editor(actor)
    if find_category_by_code(session, code=data.code) is not None:
        raise _code_taken(data.code)
    category = Category(code=data.code, name=data.name, replenish_days=data.replenish_days)
    session.add(category)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request took the code first (PostgreSQL)
        raise _code_taken(data.code) from exc
    audit.record(session, clock=clock, actor=actor, action="category.created",
                 entity_type="category", entity_id=category.id,
                 details={"code": category.code, "replenish_days": category.replenish_days,
                          "source": source})
    return category


def update_category(session: Session, *, clock: Clock, actor: Principal,
                    category_id: uuid.UUID, data: CategoryUpdate) -> Category:
    """Change what was sent; the audit entry keeps each changed field's old and new value.

    A new ``replenish_days`` applies at once to every product of the category that has no
    cycle of its own.
    """
    require_editor(actor)
    category = get_category(session, category_id=category_id)
    changes = data.model_dump(exclude_unset=True)
    _required(changes, "code", "name")
    if ("code" in changes and changes["code"] != category.code
            and find_category_by_code(session, code=changes["code"]) is not None):
        raise _code_taken(changes["code"])
    diff = {key: [getattr(category, key), value] for key, value in changes.items()
            if getattr(category, key) != value}
    for key, (_old, new) in diff.items():
        setattr(category, key, new)
    try:
        session.flush()
    except IntegrityError as exc:
        raise _code_taken(str(changes.get("code"))) from exc
    if diff:
        audit.record(session, clock=clock, actor=actor, action="category.updated",
                     entity_type="category", entity_id=category.id,
                     details={"code": category.code, "changes": diff})
    return category


# ---------------------------------------------------------------- products: reads


def get_product(session: Session, *, product_id: uuid.UUID) -> Product:
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound("No such product", "product_id")
    return product


def find_product_by_sku(session: Session, *, sku: str) -> Product | None:
    """The product with exactly this SKU (as scanned or typed; surrounding spaces ignored)."""
    return session.scalar(select(Product).where(Product.sku == sku.strip()))


def get_product_by_sku(session: Session, *, sku: str) -> Product:
    product = find_product_by_sku(session, sku=sku)
    if product is None:
        raise NotFound(f"No product has SKU {sku.strip()!r}", "sku")
    return product


def get_products(session: Session, *, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Product]:
    """The products with these ids, keyed by id, in a few queries: checkout prices a basket
    with one call. Unknown ids are simply absent; inactive products are included (a refund
    of an old sale still needs them), so the caller decides what to refuse."""
    wanted = list(dict.fromkeys(ids))
    found: dict[uuid.UUID, Product] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start:start + IN_CHUNK]
        found.update((p.id, p) for p in session.scalars(select(Product)
                                                         .where(Product.id.in_(chunk))))
    return found


def effective_replenish_days(session: Session, *, product: Product) -> int | None:
    """The product's own replenishment cycle, else its category's (``None``: no reminders)."""
    if product.replenish_days is not None:
        return product.replenish_days
    category = session.get(Category, product.category_id)
    return rules.effective_replenish_days(None, category.replenish_days if category else None)


def replenish_days_by_product(session: Session, *,
                              product_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, int | None]:
    """Effective cycles of many products at once, for care rules and repurchase analytics."""
    wanted = list(dict.fromkeys(product_ids))
    out: dict[uuid.UUID, int | None] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        rows = session.execute(
            select(Product.id, Product.replenish_days, Category.replenish_days)
            .join(Category, Category.id == Product.category_id)
            .where(Product.id.in_(wanted[start:start + IN_CHUNK])))
        out.update((pid, rules.effective_replenish_days(own, cat)) for pid, own, cat in rows)
    return out


def to_reads(session: Session, products: Sequence[Product]) -> list[ProductRead]:
    """Products as the API shows them, with category code and effective cycle.

    The categories are loaded with one query (usually from the identity map).
    """
    categories = categories_by_id(session, (p.category_id for p in products))
    out = []
    for p in products:
        category = categories[p.category_id]
        out.append(ProductRead(
            id=p.id, sku=p.sku, name=p.name, category_id=p.category_id,
            category_code=category.code, price_minor=p.price_minor,
            replenish_days=p.replenish_days,
            effective_replenish_days=rules.effective_replenish_days(
                p.replenish_days, category.replenish_days),
            active=p.active))
    return out


def to_read(session: Session, product: Product) -> ProductRead:
    return to_reads(session, [product])[0]


@dataclass(frozen=True)
class ProductQuery:
    """A page of the product list. ``q`` matches the start of the SKU or of the name,
    ignoring case; ``active`` None lists both active and inactive products."""

    q: str | None = None
    category_id: uuid.UUID | None = None
    active: bool | None = None
    page: int = 1
    page_size: int = 50


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _prefix_match(q: str) -> ColumnElement[bool]:
    # lower() on both sides, so each backend folds case the same way for column and query
    # (SQLite's lower() only folds ASCII). A scan, which is fine for catalogues of
    # thousands of products; an exact SKU still finds its row by the unique index.
    pattern = func.lower(literal(_escape_like(q) + "%", String))
    return or_(Product.sku == q,
               func.lower(Product.sku).like(pattern, escape="\\"),
               func.lower(Product.name).like(pattern, escape="\\"))


def list_products(session: Session, *, query: ProductQuery) -> tuple[list[Product], int]:
    """One page of products ordered by SKU, and how many match in all."""
    if query.page < 1:
        raise ValidationFailed("page starts at 1", "page")
    if not 1 <= query.page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"page_size must be between 1 and {MAX_PAGE_SIZE}", "page_size")
    stmt = select(Product)
    q = (query.q or "").strip()
    if q:
        stmt = stmt.where(_prefix_match(q))
    if query.category_id is not None:
        stmt = stmt.where(Product.category_id == query.category_id)
    if query.active is not None:
        stmt = stmt.where(Product.active.is_(query.active))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(Product.sku)
                           .offset((query.page - 1) * query.page_size).limit(query.page_size))
    return list(rows), total


def search_products(session: Session, *, q: str, limit: int = 20,
                    include_inactive: bool = False) -> list[Product]:
    """Quick lookup at the till: the exact SKU first, then SKU or name prefix matches."""
    q = q.strip()
    if not q:
        return []
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    stmt = select(Product).where(_prefix_match(q))
    if not include_inactive:
        stmt = stmt.where(Product.active.is_(True))
    rows = list(session.scalars(stmt.order_by(Product.sku).limit(limit + 1)))
    rows.sort(key=lambda p: p.sku != q)  # stable: keeps SKU order after the exact match
    return rows[:limit]


# ---------------------------------------------------------------- products: writes


def _sku_taken(sku: str) -> Conflict:
    return Conflict(f"Another product has SKU {sku!r}", "sku", code="duplicate_sku")


def _check_category(session: Session, category_id: uuid.UUID) -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise ValidationFailed("Unknown category", "category_id", code="unknown_category")
    return category


def create_product(session: Session, *, clock: Clock, actor: Principal | None,
                   data: ProductCreate) -> Product:
    """Add a product; its SKU must be new (409 naming ``sku`` otherwise)."""
    require_editor(actor)
    _check_category(session, data.category_id)
    if find_product_by_sku(session, sku=data.sku) is not None:
        raise _sku_taken(data.sku)
    product = Product(sku=data.sku, name=data.name, category_id=data.category_id,
                      price_minor=data.price_minor, replenish_days=data.replenish_days,
                      active=data.active)
    session.add(product)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request took the SKU first (PostgreSQL)
        raise _sku_taken(data.sku) from exc
    audit.record(session, clock=clock, actor=actor, action="product.created",
                 entity_type="product", entity_id=product.id,
                 details={"sku": product.sku, "price_minor": product.price_minor,
                          "category_id": str(product.category_id), "active": product.active})
    return product


def update_product(session: Session, *, clock: Clock, actor: Principal,
                   product_id: uuid.UUID, data: ProductUpdate) -> Product:
    """Change what was sent. The audit entry keeps every changed field's old and new value
    (so price history can be read back), under ``product.deactivated`` /
    ``product.reactivated`` when the product goes off or back on sale."""
    require_editor(actor)
    product = get_product(session, product_id=product_id)
    changes = data.model_dump(exclude_unset=True)
    _required(changes, "sku", "name", "category_id", "price_minor", "active")
    if "category_id" in changes:
        _check_category(session, changes["category_id"])
    if ("sku" in changes and changes["sku"] != product.sku
            and find_product_by_sku(session, sku=changes["sku"]) is not None):
        raise _sku_taken(changes["sku"])
    diff = {key: [getattr(product, key), value] for key, value in changes.items()
            if getattr(product, key) != value}
    for key, (_old, new) in diff.items():
        setattr(product, key, new)
    try:
        session.flush()
    except IntegrityError as exc:
        raise _sku_taken(str(changes.get("sku"))) from exc
    if diff:
        action = "product.updated"
        if "active" in diff:
            action = "product.reactivated" if product.active else "product.deactivated"
        audit.record(session, clock=clock, actor=actor, action=action, entity_type="product",
                     entity_id=product.id,
                     details={"sku": product.sku,
                              "changes": {k: [_plain(v) for v in pair]
                                          for k, pair in diff.items()}})
    return product


def deactivate_product(session: Session, *, clock: Clock, actor: Principal,
                       product_id: uuid.UUID) -> Product:
    """Take a product off sale; it stays in the catalogue for the sales that point at it."""
    return update_product(session, clock=clock, actor=actor, product_id=product_id,
                          data=ProductUpdate(active=False))
