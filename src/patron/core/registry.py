"""The composition root: import every domain's tables so ``Base.metadata`` is complete
(Alembic, tests, merge), and the services that register merge hooks."""

from __future__ import annotations

from patron.auth import models as auth_models
from patron.catalog import models as catalog_models
from patron.core import events, idempotency
from patron.core.models import Base
from patron.loyalty import models as loyalty_models
from patron.loyalty import service as loyalty_service
from patron.members import models as members_models
from patron.sales import models as sales_models
from patron.wallet import models as wallet_models
from patron.wallet import service as wallet_service

__all__ = [
    "Base",
    "auth_models",
    "catalog_models",
    "events",
    "idempotency",
    "loyalty_models",
    "loyalty_service",
    "members_models",
    "sales_models",
    "wallet_models",
    "wallet_service",
]
