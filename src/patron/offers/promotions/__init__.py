"""Promotions at the till: definitions, eligibility and the pricing engine.

Pure code: checkout builds a ``PromotionBook`` from the stored promotions, a
``PricingContext`` from the sale, calls ``price_basket`` and then applies coupons (if
``coupons_allowed``) and the tier discount; refunds call ``reprice_after_return``.
docs/promotions.md documents the order and the combination rules.
"""

from __future__ import annotations

from patron.offers.promotions.engine import (
    AppliedPromotion,
    BasketLine,
    CashbackAward,
    GiftLine,
    LineSaving,
    NearMiss,
    PricedBasket,
    PricedLine,
    PromotionBook,
    ReturnQuote,
    Stage,
    price_basket,
    reprice_after_return,
    settle_cashback,
)
from patron.offers.promotions.schedule import (
    MemberFacts,
    PricingContext,
    PromotionUsage,
    Refusal,
    refusal,
)
from patron.offers.promotions.schemas import (
    Promotion,
    PromotionConfig,
    PromotionSpec,
    parse_config,
    parse_promotion,
)

__all__ = [
    "AppliedPromotion",
    "BasketLine",
    "CashbackAward",
    "GiftLine",
    "LineSaving",
    "MemberFacts",
    "NearMiss",
    "PricedBasket",
    "PricedLine",
    "PricingContext",
    "Promotion",
    "PromotionBook",
    "PromotionConfig",
    "PromotionSpec",
    "PromotionUsage",
    "Refusal",
    "ReturnQuote",
    "Stage",
    "parse_config",
    "parse_promotion",
    "price_basket",
    "refusal",
    "reprice_after_return",
    "settle_cashback",
]
