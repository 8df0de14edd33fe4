"""The composition root: import every domain's tables so ``Base.metadata`` is complete
(Alembic, tests, merge), and the services that register merge hooks."""

from __future__ import annotations

from patron.analytics import portrait_tables as analytics_portrait_tables
from patron.analytics import tables as analytics_tables
from patron.auth import models as auth_models
from patron.auth import throttle as auth_throttle
from patron.campaigns import models as campaigns_models
from patron.campaigns import service as campaigns_service
from patron.cards import models as cards_models
from patron.cards import service as cards_service
from patron.care import models as care_models
from patron.catalog import models as catalog_models
from patron.core import events, idempotency
from patron.core.models import Base
from patron.feedback import models as feedback_models
from patron.feedback import service as feedback_service
from patron.jobs import models as jobs_models
from patron.loyalty import models as loyalty_models
from patron.loyalty import service as loyalty_service
from patron.members import models as members_models
from patron.members import otp as members_otp
from patron.members import privacy_models as members_privacy_models
from patron.messaging import models as messaging_models
from patron.offers import models as offers_models
from patron.offers import promotion_models, promotion_service
from patron.offers import service as offers_service
from patron.sales import models as sales_models
from patron.wallet import models as wallet_models
from patron.wallet import service as wallet_service

__all__ = [
    "Base",
    "analytics_portrait_tables",
    "analytics_tables",
    "auth_models",
    "auth_throttle",
    "campaigns_models",
    "campaigns_service",
    "cards_models",
    "cards_service",
    "care_models",
    "catalog_models",
    "events",
    "feedback_models",
    "feedback_service",
    "idempotency",
    "jobs_models",
    "loyalty_models",
    "loyalty_service",
    "members_models",
    "members_otp",
    "members_privacy_models",
    "messaging_models",
    "offers_models",
    "offers_service",
    "promotion_models",
    "promotion_service",
    "sales_models",
    "wallet_models",
    "wallet_service",
]
