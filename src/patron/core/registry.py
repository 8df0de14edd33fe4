"""Import every domain's tables so ``Base.metadata`` is complete (Alembic, tests, merge)."""

from __future__ import annotations

from patron.auth import models as auth_models
from patron.catalog import models as catalog_models
from patron.core import events
from patron.core.models import Base
from patron.members import models as members_models
from patron.sales import models as sales_models

__all__ = ["Base", "auth_models", "catalog_models", "events", "members_models", "sales_models"]
