"""API and form shapes of the catalogue (Pydantic v2).

Values are checked with ``catalog.rules``, the same functions the CSV importer uses, so a
value refused here is refused in an import with the same message. Prices and cycles are
strict integers: ``12.5`` or ``"1250"`` in JSON is an error, never a silent conversion.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from patron.catalog import rules

Sku = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                       max_length=rules.MAX_SKU),
                AfterValidator(rules.clean_sku)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                        max_length=rules.MAX_CODE),
                 AfterValidator(rules.clean_code)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                        max_length=rules.MAX_NAME),
                 AfterValidator(rules.clean_name)]
PriceMinor = Annotated[int, Field(strict=True, ge=0, le=rules.MAX_PRICE_MINOR,
                                  description="Price in minor units (fen, cents)")]
ReplenishDays = Annotated[int, Field(
    strict=True, ge=1, le=rules.MAX_REPLENISH_DAYS,
    description="How many days a typical purchase lasts; drives replenishment reminders")]


class CategoryCreate(BaseModel):
    code: Code
    name: Name
    replenish_days: ReplenishDays | None = None


class CategoryUpdate(BaseModel):
    """A partial update: only the fields present change; ``replenish_days: null`` clears it."""

    code: Code | None = None
    name: Name | None = None
    replenish_days: ReplenishDays | None = None


class CategoryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    replenish_days: int | None


class ProductCreate(BaseModel):
    sku: Sku
    name: Name
    category_id: uuid.UUID
    price_minor: PriceMinor
    replenish_days: ReplenishDays | None = Field(
        default=None, description="Overrides the category's cycle; empty to use the category's")
    active: bool = True


class ProductUpdate(BaseModel):
    """A partial update: only the fields present change; ``replenish_days: null`` falls back
    to the category's cycle. ``active: false`` takes a product off sale (products are never
    deleted: past sales point at them)."""

    sku: Sku | None = None
    name: Name | None = None
    category_id: uuid.UUID | None = None
    price_minor: PriceMinor | None = None
    replenish_days: ReplenishDays | None = None
    active: bool | None = None


class ProductRead(BaseModel):
    id: uuid.UUID
    sku: str
    name: str
    category_id: uuid.UUID
    category_code: str
    price_minor: int
    replenish_days: int | None = Field(description="The product's own cycle, if it has one")
    effective_replenish_days: int | None = Field(
        description="The cycle reminders use: the product's own, else its category's")
    active: bool


class ProductPage(BaseModel):
    items: list[ProductRead]
    total: int
    page: int
    page_size: int


class ImportRowError(BaseModel):
    """One problem with one row: ``row`` is the line in the file (the header is row 1)."""

    row: int
    field: str
    message: str
    value: str | None


class ProductImportReport(BaseModel):
    """What an import did or, for a dry run, would do; ``errors`` lists every problem."""

    dry_run: bool
    total: int = Field(description="Data rows read")
    created: int
    updated: int
    unchanged: int
    rejected: int = Field(description="Rows not imported; each has at least one error")
    categories_created: list[str] = Field(description="Codes of categories made on the fly")
    columns: dict[str, str] = Field(description="Field -> the column header it was read from")
    ignored_columns: list[str]
    errors: list[ImportRowError]
