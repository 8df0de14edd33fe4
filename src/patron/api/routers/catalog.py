"""Catalogue: categories and products, and their CSV/XLSX import.

Thin: parse the request, call ``catalog.service`` or ``catalog.importer``, commit writes,
shape the answer. Every authenticated caller reads (the till needs prices); owners and
managers write, which the services check.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile, status

from patron.api.deps import Ctx, CurrentPrincipal, DbSession
from patron.catalog import importer
from patron.catalog import service as catalog
from patron.catalog.schemas import (
    CategoryCreate,
    CategoryRead,
    CategoryUpdate,
    ImportRowError,
    ProductCreate,
    ProductImportReport,
    ProductPage,
    ProductRead,
    ProductUpdate,
)
from patron.core.errors import PatronError

router = APIRouter(tags=["catalog"])


# ---------------------------------------------------------------- categories


@router.get("/categories", operation_id="list_categories")
def list_categories(session: DbSession, _principal: CurrentPrincipal) -> list[CategoryRead]:
    """Every category, by code (a catalogue has tens of them: no paging)."""
    return [CategoryRead.model_validate(c) for c in catalog.list_categories(session)]


@router.post("/categories", status_code=status.HTTP_201_CREATED,
             operation_id="create_category")
def create_category(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    body: CategoryCreate) -> CategoryRead:
    """Add a category; its code must be new (409 naming ``code``)."""
    category = catalog.create_category(session, clock=ctx.clock, actor=principal, data=body)
    session.commit()
    return CategoryRead.model_validate(category)


@router.get("/categories/{category_id}", operation_id="get_category")
def get_category(session: DbSession, _principal: CurrentPrincipal,
                 category_id: uuid.UUID) -> CategoryRead:
    return CategoryRead.model_validate(catalog.get_category(session, category_id=category_id))


@router.patch("/categories/{category_id}", operation_id="update_category")
def update_category(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    category_id: uuid.UUID, body: CategoryUpdate) -> CategoryRead:
    """Change a category; a new cycle applies to its products without one of their own."""
    category = catalog.update_category(session, clock=ctx.clock, actor=principal,
                                       category_id=category_id, data=body)
    session.commit()
    return CategoryRead.model_validate(category)


# ---------------------------------------------------------------- products


@router.get("/products", operation_id="list_products")
def list_products(
    session: DbSession, _principal: CurrentPrincipal,
    q: Annotated[str | None, Query(max_length=200,
                                   description="Start of the SKU or name, any case")] = None,
    category_id: uuid.UUID | None = None,
    active: Annotated[bool | None, Query(description="Omit to list both")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=catalog.MAX_PAGE_SIZE)] = 50,
) -> ProductPage:
    """Products by SKU, a page at a time."""
    rows, total = catalog.list_products(session, query=catalog.ProductQuery(
        q=q, category_id=category_id, active=active, page=page, page_size=page_size))
    return ProductPage(items=catalog.to_reads(session, rows), total=total, page=page,
                       page_size=page_size)


@router.post("/products", status_code=status.HTTP_201_CREATED, operation_id="create_product")
def create_product(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   body: ProductCreate) -> ProductRead:
    """Add a product; its SKU must be new (409 naming ``sku``)."""
    product = catalog.create_product(session, clock=ctx.clock, actor=principal, data=body)
    read = catalog.to_read(session, product)
    session.commit()
    return read


@router.post("/products/import", operation_id="import_products")
def import_products(
    ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
    file: Annotated[UploadFile, File(description="A .csv (UTF-8 or GBK) or .xlsx file")],
    dry_run: Annotated[bool, Form(description="Check everything, write nothing")] = False,
    create_categories: Annotated[bool, Form(
        description="Create unknown categories instead of rejecting their rows")] = False,
) -> ProductImportReport:
    """Upsert products by SKU from a spreadsheet; bad rows are reported, good rows kept."""
    catalog.require_editor(principal)  # before reading a large upload for nothing
    limit = ctx.settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise _too_large(limit)
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    filename = file.filename or ""
    report = importer.import_products(
        session, clock=ctx.clock, actor=principal, table=importer.read_table(data, filename),
        currency=ctx.settings.currency, dry_run=dry_run, create_categories=create_categories,
        filename=filename)
    if not dry_run:
        session.commit()
    return ProductImportReport(
        dry_run=report.dry_run, total=report.total, created=report.created,
        updated=report.updated, unchanged=report.unchanged, rejected=report.rejected,
        categories_created=report.categories_created, columns=report.columns,
        ignored_columns=report.ignored_columns,
        errors=[ImportRowError(row=e.row, field=e.field, message=e.message, value=e.value)
                for e in report.errors])


def _too_large(limit: int) -> PatronError:
    return PatronError(f"The file is larger than {limit // (1024 * 1024)} MB", "file",
                       "payload_too_large", 413)


@router.get("/products/by-sku/{sku:path}", operation_id="get_product_by_sku")
def get_product_by_sku(session: DbSession, _principal: CurrentPrincipal,
                       sku: str) -> ProductRead:
    """The product with exactly this SKU, as a scanner sends it (``/`` in a SKU is fine)."""
    return catalog.to_read(session, catalog.get_product_by_sku(session, sku=sku))


@router.get("/products/{product_id}", operation_id="get_product")
def get_product(session: DbSession, _principal: CurrentPrincipal,
                product_id: uuid.UUID) -> ProductRead:
    return catalog.to_read(session, catalog.get_product(session, product_id=product_id))


@router.patch("/products/{product_id}", operation_id="update_product")
def update_product(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   product_id: uuid.UUID, body: ProductUpdate) -> ProductRead:
    """Change a product; ``active: false`` takes it off sale (products are never deleted)."""
    product = catalog.update_product(session, clock=ctx.clock, actor=principal,
                                     product_id=product_id, data=body)
    read = catalog.to_read(session, product)
    session.commit()
    return read
