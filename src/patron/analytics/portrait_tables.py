"""Tables of customer portraits (客户画像): each member's inferred profile and the clusters.

Like ``member_scores`` these are derived data of one analytics snapshot (``as_of``), rebuilt
by every refresh and pruned with it; no foreign keys to ``members`` (see ``tables``).
Readers go through the latest *succeeded* run's day (``service.latest_as_of``), so a
profile and the scores it sits beside always come from the same snapshot.

* ``member_profiles``: one row per active member and snapshot: what the member buys, where
  and when, how price-sensitive and how responsive to messages they are, family signals,
  the automatic tags (``tag_bits``: bit *i* is ``tags.TAGS[i]``) and the member's portrait
  (``portrait_code``; NULL for members without a purchase). The assignment lives on the
  profile row rather than in a table of its own: it is one value per member and snapshot,
  and a second million-row table would double the nightly write.
* ``portraits``: the clusters of one snapshot: stable code (``P3`` stays ``P3`` across
  refreshes, see ``portraits``), centroid, words in English and Chinese, size, revenue
  share, retention and CLV.
* ``portrait_store_figures``: per (snapshot, home store, portrait) the sums a store-scoped
  summary adds up, so a manager's dashboard reads a few rows instead of grouping a
  million profiles joined to their scores at request time.

The meaning of every column, feature and tag is in docs/portraits.md.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import CheckConstraint, Float, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt, JSONType, uuid_pk

CHANNELS = ("sms", "email")


class MemberProfile(Base):
    """One member's inferred profile as of one day (whole history up to the cutoff)."""

    __tablename__ = "member_profiles"

    as_of: Mapped[date] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    home_store_id: Mapped[uuid.UUID | None]  # for store-scoped summaries

    # baskets: a member's sales with a positive net (what the shop kept)
    sales: Mapped[int]
    sales_365: Mapped[int]
    spend_minor: Mapped[int] = mapped_column(BigInt)
    avg_basket_minor: Mapped[int | None] = mapped_column(BigInt)
    categories: Mapped[int]  # distinct categories bought
    stores: Mapped[int]  # distinct stores bought in

    # favourites: up to three, [{"id": ..., "share": ...}] by net spend (categories) or
    # [{"id": ..., "quantity": ...}] by units (products); the first also as a column
    top_category_id: Mapped[uuid.UUID | None]
    top_category_share: Mapped[float | None] = mapped_column(Float)
    favourite_categories: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    top_product_id: Mapped[uuid.UUID | None]
    favourite_products: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)

    # where and when (store-local time)
    preferred_store_id: Mapped[uuid.UUID | None]
    preferred_store_share: Mapped[float | None] = mapped_column(Float)
    preferred_weekday: Mapped[int | None] = mapped_column(SmallInteger)  # 0 Monday … 6 Sunday
    preferred_hour: Mapped[int | None] = mapped_column(SmallInteger)  # 0 … 23
    weekend_share: Mapped[float | None] = mapped_column(Float)
    evening_share: Mapped[float | None] = mapped_column(Float)

    # price sensitivity
    promo_share: Mapped[float | None] = mapped_column(Float)  # net spend with coupon/promotion
    coupon_share: Mapped[float | None] = mapped_column(Float)  # sales with a coupon
    discount_rate: Mapped[float | None] = mapped_column(Float)  # discount / list price

    # channel responsiveness (marketing messages whose response window has ended)
    sms_messages: Mapped[int]
    sms_acted: Mapped[int]
    email_messages: Mapped[int]
    email_acted: Mapped[int]
    response_rate: Mapped[float | None] = mapped_column(Float)
    best_channel: Mapped[str | None] = mapped_column(String(8))
    best_template: Mapped[str | None] = mapped_column(String(64))

    # family signals
    family_signals: Mapped[str] = mapped_column(String(200))  # "baby,pet"; "" for none
    family_share: Mapped[float | None] = mapped_column(Float)
    baby_first_on: Mapped[date | None]
    baby_days: Mapped[int]

    tag_bits: Mapped[int] = mapped_column(BigInt)
    portrait_code: Mapped[str | None] = mapped_column(String(8))

    # No secondary index: reads go through the primary key (one member, or a whole day for
    # segments and the store-scoped summary), as for member_scores.
    __table_args__ = (
        CheckConstraint("sales >= 0 AND sales_365 >= 0 AND categories >= 0 AND stores >= 0",
                        name="counts"),
        CheckConstraint("tag_bits >= 0", name="tag_bits"),
        CheckConstraint("preferred_weekday IS NULL OR preferred_weekday BETWEEN 0 AND 6",
                        name="weekday"),
        CheckConstraint("preferred_hour IS NULL OR preferred_hour BETWEEN 0 AND 23",
                        name="hour"),
        CheckConstraint("best_channel IS NULL OR best_channel IN ('sms', 'email')",
                        name="best_channel"),
    )


class Portrait(Base):
    """One cluster of members with similar behaviour in one snapshot.

    ``centroid`` maps each feature to the cluster's mean in feature units (after the
    feature's transform, before standardising), so the next refresh can standardise it
    with its own scaler and match clusters; ``traits`` maps each feature to the centroid's
    z-score (how far from the average member, in standard deviations), which the words
    are written from.
    """

    __tablename__ = "portraits"

    id: Mapped[uuid.UUID] = uuid_pk()
    as_of: Mapped[date]
    code: Mapped[str] = mapped_column(String(8))  # P1, P2, …: stable across refreshes
    name_en: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str] = mapped_column(String(200))
    description_en: Mapped[str] = mapped_column(String(1000))
    description_zh: Mapped[str] = mapped_column(String(1000))
    centroid: Mapped[dict[str, float]] = mapped_column(JSONType)
    traits: Mapped[dict[str, float]] = mapped_column(JSONType)
    top_category_id: Mapped[uuid.UUID | None]
    members: Mapped[int]
    member_share: Mapped[float] = mapped_column(Float)  # of members with a portrait
    revenue_365_minor: Mapped[int] = mapped_column(BigInt)
    revenue_share: Mapped[float] = mapped_column(Float)  # of every member's last-year net
    retention: Mapped[float | None] = mapped_column(Float)
    mean_p_alive: Mapped[float | None] = mapped_column(Float)
    clv_total_minor: Mapped[int] = mapped_column(BigInt)
    clv_mean_minor: Mapped[int | None] = mapped_column(BigInt)
    median_basket_minor: Mapped[int | None] = mapped_column(BigInt)
    median_interval_days: Mapped[float | None] = mapped_column(Float)
    # how far the centroid moved from the previous run's cluster of the same code (in
    # standard deviations of this run); NULL for a cluster new in this run
    moved: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("as_of", "code", name="uq_portraits_as_of_code"),
        CheckConstraint("members >= 0", name="members"),
        CheckConstraint("retention IS NULL OR retention BETWEEN 0 AND 1", name="retention"),
    )


class PortraitStoreFigures(Base):
    """Sums over the members of one home store and one portrait (``portrait_code`` NULL:
    members without a portrait, who still count in a store's revenue) in one snapshot.

    Means are kept as (sum, count) so that several stores add up exactly; ``home_store_id``
    NULL collects members without a home store.
    """

    __tablename__ = "portrait_store_figures"

    id: Mapped[uuid.UUID] = uuid_pk()
    as_of: Mapped[date] = mapped_column(index=True)
    home_store_id: Mapped[uuid.UUID | None]
    portrait_code: Mapped[str | None] = mapped_column(String(8))
    members: Mapped[int]
    net_365_minor: Mapped[int] = mapped_column(BigInt)
    active_before: Mapped[int]  # members who bought in the 90 days before the last 90
    kept: Mapped[int]  # ... and bought again in the last 90
    p_alive_sum: Mapped[float] = mapped_column(Float)
    p_alive_count: Mapped[int]
    clv_sum_minor: Mapped[int] = mapped_column(BigInt)
    clv_count: Mapped[int]

    __table_args__ = (
        CheckConstraint("members >= 0", name="members"),
    )
