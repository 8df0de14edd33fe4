"""Customer portraits (客户画像): inferred profiles, automatic tags and behaviour clusters.

Design overview
---------------
The nightly refresh (``service.refresh``) calls this module at three points, so that the
portraits of a snapshot are computed from the same loaded history and written before the
snapshot becomes visible (readers only ever see profiles, tags, portraits and scores of one
succeeded run):

1. :func:`collect` (summarise stage, while the history is loaded): ``profile.collect``
   summarises the canonical tables into one row per active member.
2. :func:`build` (score stage, once the scores exist): the profile columns, the tags
   (``tags``) and the portraits: members with a purchase are clustered on standardised
   behavioural features (:data:`FEATURES`) with k-means (scikit-learn's
   ``MiniBatchKMeans``), and each cluster is described in words, sized and valued.
3. :func:`write` (write stage, before the run is marked succeeded) and :func:`prune`.

Choosing k: each k in ``k_min``…``k_max`` is fitted on a sample of members (up to
``choose_sample``) and scored by the silhouette coefficient on a sub-sample of
``silhouette_sample`` (the mean over members of (b − a) / max(a, b), a = mean distance to
the own cluster, b = to the nearest other; 1 is perfectly separated). The highest wins,
except that the previous run's k is kept while its silhouette is within ``keep_k_margin``
of the best, so the number of portraits does not flicker between refreshes. The chosen k
is then fitted on up to ``fit_sample`` members and every member is assigned to the
nearest centre.

Stable labels: a portrait keeps its code (``P3`` stays ``P3``) from one refresh to the
next. The previous run's centroids are stored in feature units (before standardising), so
they are standardised with this run's scaler and matched to this run's centroids by the
Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on Euclidean distance; a
pair further apart than ``match_distance`` standard deviations is not a match. Matched
clusters inherit the code, the rest get new codes numbered after the highest previous one
(the first run numbers clusters by size, P1 the largest). When k is unchanged, k-means
also starts from the previous centroids, which keeps the clusters themselves steady.

All per-member work is vectorised (DuckDB for the summaries, NumPy for tags, features and
statistics, scikit-learn for the clustering); Python loops run over clusters (at most
``k_max``) and tags, never over members.

Reads for the member page and the dashboard: :func:`member_profile` and
:func:`portrait_summary`. The definitions of every feature, tag and statistic are in
docs/portraits.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import Session

from patron.analytics import profile, tags
from patron.analytics.portrait_tables import MemberProfile, Portrait, PortraitStoreFigures
from patron.analytics.profile import Collected, ProfileConfig
from patron.analytics.source import Source
from patron.analytics.tables import AnalyticsRun, MemberScore
from patron.analytics.tags import TagConfig
from patron.core.db import Database
from patron.core.errors import NotFound, ValidationFailed

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]


@dataclass(frozen=True)
class PortraitConfig:
    """Knobs of profiles, tags and clustering (defaults as documented)."""

    profile: ProfileConfig = field(default_factory=ProfileConfig)
    tags: TagConfig = field(default_factory=TagConfig)
    k_min: int = 3
    k_max: int = 8
    fit_sample: int = 200_000  # members the final k-means is fitted on
    choose_sample: int = 50_000  # of those, the members each candidate k is fitted on
    silhouette_sample: int = 5_000  # of those, the members each candidate is scored on
    keep_k_margin: float = 0.02
    match_distance: float = 2.5
    min_members: int = 50  # fewer members with a purchase: no portraits
    trait_z: float = 0.5  # |z| from which a feature describes a cluster
    traits_shown: int = 3
    habit_share: float = 0.4  # of a cluster sharing a top category to name it
    price_levels: tuple[float, float] = (0.2, 0.5)  # promo share: low < 0.2 <= medium < 0.5
    seed: int = 20261124

    def __post_init__(self) -> None:
        if not 2 <= self.k_min <= self.k_max <= 20:
            raise ValidationFailed("k runs over 2 <= k_min <= k_max <= 20", "k_min")
        if not 100 <= self.silhouette_sample <= self.choose_sample <= self.fit_sample:
            raise ValidationFailed("samples: 100 <= silhouette <= choose <= fit",
                                   "silhouette_sample")
        if self.min_members < 2 * self.k_min:
            raise ValidationFailed("min_members must be at least 2 * k_min", "min_members")


# ---------------------------------------------------------------- features


@dataclass(frozen=True)
class Feature:
    """A behavioural feature: its name, meaning and the words for a high / low value."""

    name: str
    meaning: str
    high_en: str
    high_zh: str
    low_en: str | None = None
    low_zh: str | None = None


FEATURES: tuple[Feature, ...] = (
    Feature("frequency", "log(1 + purchases in the last 365 days)",
            "frequent visitors", "高频到店", "occasional visitors", "偶尔到店"),
    Feature("recency", "log(1 + days since the last purchase)",
            "lapsing", "久未到店", "recently active", "近期活跃"),
    Feature("basket", "log(1 + average basket, minor units)",
            "big baskets", "大客单", "small baskets", "小客单"),
    Feature("weekend", "share of purchases on Saturday or Sunday",
            "weekend shoppers", "周末购物", "weekday shoppers", "工作日购物"),
    Feature("evening", "share of purchases at or after the evening hour",
            "evening shoppers", "晚间购物", "daytime shoppers", "白天购物"),
    Feature("promo", "share of net spend with a coupon or a promotion",
            "deal seekers", "偏爱优惠", "full-price buyers", "不看折扣"),
    Feature("family", "share of category spend in family-signal categories",
            "family buyers", "家庭采购"),
    Feature("breadth", "log(1 + distinct categories bought)",
            "buy across many categories", "品类广泛", "stick to few categories", "品类集中"),
    Feature("tenure", "log(1 + days since the first purchase)",
            "long-standing customers", "老顾客", "newcomers", "新顾客"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


# ---------------------------------------------------------------- 1. collect


def collect(src: Source, config: PortraitConfig | None = None) -> Collected:
    """The profile summaries of the loaded snapshot (``profile.collect``)."""
    return profile.collect(src, (config or PortraitConfig()).profile)


# ---------------------------------------------------------------- 2. build


def _floats(table: pa.Table, name: str) -> Floats:
    col = table.column(name).cast(pa.float64())
    return np.asarray(col.fill_null(math.nan).to_numpy(), dtype=np.float64)


def _ints(table: pa.Table, name: str) -> Ints:
    col = table.column(name).cast(pa.int64())
    return np.asarray(col.fill_null(0).to_numpy(), dtype=np.int64)


def _ratio(num: NDArray[Any], den: NDArray[Any]) -> Floats:
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return np.asarray(out, dtype=np.float64)


def _days_before(as_of: date, column: pa.ChunkedArray) -> Floats:
    days = np.asarray(column.cast(pa.date32()).to_numpy(zero_copy_only=False)
                      ).astype("datetime64[D]")
    delta = (np.datetime64(as_of, "D") - days).astype("timedelta64[D]")
    out = delta.astype(np.float64)
    out[np.isnat(delta)] = np.nan
    return out


@dataclass(frozen=True)
class Frame:
    """Per-member arrays derived from the collected rows and the scores (aligned)."""

    table: pa.Table  # the collected rows
    facts: tags.Facts
    avg_basket: Floats
    coupon_share: Floats
    discount_rate: Floats
    store_share: Floats
    response_rate: Floats
    best_channel: NDArray[np.object_]
    interval_days: Floats  # mean days between purchase days (t_x / frequency)
    categories: Ints
    net_90: Ints
    net_prev_90: Ints


def frame(collected: Collected, member_scores: pa.Table, as_of: date) -> Frame:
    """Line the scores up with the collected members and derive the shares and rates."""
    t = collected.table
    where = pc.index_in(t.column("member_id"), value_set=member_scores.column("member_id"))
    s = member_scores.take(where)
    sales = _ints(t, "sales")
    spend = _ints(t, "spend_minor")
    sms, sms_acted = _ints(t, "sms_messages"), _ints(t, "sms_acted")
    email, email_acted = _ints(t, "email_messages"), _ints(t, "email_acted")
    sms_rate = np.nan_to_num(_ratio(sms_acted, sms))
    email_rate = np.nan_to_num(_ratio(email_acted, email))
    best = np.select([(sms_acted > 0) & (sms_rate >= email_rate), email_acted > 0],
                     ["sms", "email"], "").astype(object)
    best[best == ""] = None
    frequency = _floats(s, "frequency")
    facts = tags.Facts(
        sales=sales, sales_365=_ints(t, "sales_365"),
        promo_share=_ratio(_ints(t, "promo_minor"), spend),
        weekend_share=_ratio(_ints(t, "weekend_sales"), sales),
        evening_share=_ratio(_ints(t, "evening_sales"), sales),
        stores=_ints(t, "stores"),
        family_share=_ratio(_ints(t, "family_spend"), _ints(t, "category_spend")),
        baby_first_days=_days_before(as_of, t.column("baby_first_on")),
        baby_days=_ints(t, "baby_days"),
        messages=sms + email, acted=sms_acted + email_acted,
        purchase_days=_ints(s, "purchases"), recency_days=_floats(s, "recency_days"),
        tenure_days=_floats(s, "tenure_days"), net_365=_ints(s, "net_365_minor"),
        clv=_floats(s, "clv_minor"), p_alive=_floats(s, "p_alive"))
    return Frame(
        table=t, facts=facts, avg_basket=_ratio(spend, sales),
        coupon_share=_ratio(_ints(t, "coupon_sales"), sales),
        discount_rate=_ratio(_ints(t, "discount_minor"), _ints(t, "gross_minor")),
        store_share=_ratio(_ints(t, "preferred_store_sales"), sales),
        response_rate=_ratio(facts.acted, facts.messages), best_channel=best,
        interval_days=np.where(frequency > 0, _ratio(_floats(s, "t_x_days"), frequency),
                               np.nan),
        categories=_ints(t, "categories"), net_90=_ints(s, "net_90_minor"),
        net_prev_90=_ints(s, "net_prev_90_minor"))


def features(f: Frame) -> tuple[Floats, Bools]:
    """(feature matrix of the members with a purchase, which members those are)."""
    facts = f.facts
    buyers = (facts.sales > 0) & ~np.isnan(facts.recency_days) & ~np.isnan(facts.tenure_days)
    columns = {
        "frequency": np.log1p(facts.sales_365.astype(np.float64)),
        "recency": np.log1p(np.maximum(facts.recency_days, 0.0)),
        "basket": np.log1p(np.maximum(f.avg_basket, 0.0)),
        "weekend": facts.weekend_share,
        "evening": facts.evening_share,
        "promo": facts.promo_share,
        "family": np.nan_to_num(facts.family_share),
        "breadth": np.log1p(f.categories.astype(np.float64)),
        "tenure": np.log1p(np.maximum(facts.tenure_days, 0.0)),
    }
    matrix = np.stack([columns[name] for name in FEATURE_NAMES], axis=1)[buyers]
    return np.nan_to_num(matrix), buyers


@dataclass(frozen=True)
class PreviousPortrait:
    code: str
    centroid: dict[str, float]


@dataclass(frozen=True)
class Clustering:
    """k-means on the standardised features of the members with a purchase."""

    k: int
    labels: Ints  # per member with a purchase, 0 … k-1
    centroids: Floats  # k × features, feature units
    centroids_z: Floats  # k × features, standardised
    mean: Floats
    scale: Floats
    silhouettes: dict[int, float]
    warm_start: bool


def _previous_z(previous: Sequence[PreviousPortrait], mean: Floats, scale: Floats
                ) -> tuple[list[str], Floats]:
    """Previous codes and centroids standardised with this run's scaler (those that have
    every current feature)."""
    usable = [p for p in previous if all(n in p.centroid for n in FEATURE_NAMES)]
    if not usable:
        return [], np.empty((0, len(FEATURE_NAMES)))
    raw = np.array([[float(p.centroid[n]) for n in FEATURE_NAMES] for p in usable])
    return [p.code for p in usable], (raw - mean) / scale


def cluster(x: Floats, *, previous: Sequence[PreviousPortrait], config: PortraitConfig
            ) -> Clustering | None:
    """Choose k and cluster; None when there are too few members to cluster."""
    n = x.shape[0]
    k_max = min(config.k_max, n // 10)
    if n < config.min_members or k_max < config.k_min:
        return None
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    # One thread at every size: each step is small (a mini-batch of 4,096 rows, a 5,000-row
    # silhouette, at most 200,000 rows fitted), so OpenMP's and BLAS's thread start-up and
    # spinning cost more than they share out: on 2 busy cores the clustering of 100,000
    # members took 11-15 CPU s on all threads and 2.7 on one, with the same results. One
    # thread is also the one order of floating-point sums (inertia) on every machine.
    with threadpool_limits(limits=1):
        return _cluster(x, previous=previous, config=config, k_max=k_max)


def _cluster(x: Floats, *, previous: Sequence[PreviousPortrait], config: PortraitConfig,
             k_max: int) -> Clustering:
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import pairwise_distances_chunked, silhouette_score

    n = x.shape[0]
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    rng = np.random.default_rng(config.seed)
    sample = z[rng.choice(n, config.fit_sample, replace=False)] if n > config.fit_sample else z
    trial = sample[:config.choose_sample]  # the sample is in random order already
    probe = (trial[rng.choice(trial.shape[0], config.silhouette_sample, replace=False)]
             if trial.shape[0] > config.silhouette_sample else trial)

    def kmeans(k: int, init: Floats | None = None) -> Any:
        return MiniBatchKMeans(n_clusters=k, init="k-means++" if init is None else init,
                               n_init=3 if init is None else 1, batch_size=4096,
                               random_state=config.seed, max_no_improvement=20)

    # The probe's distances, computed once for every candidate k: the very chunks
    # silhouette_score(probe, labels) would compute itself, so the scores are the same.
    chunks = list(pairwise_distances_chunked(probe, metric="euclidean"))
    distances = chunks[0] if len(chunks) == 1 else np.vstack(chunks)
    silhouettes: dict[int, float] = {}
    for k in range(config.k_min, k_max + 1):
        labels = kmeans(k).fit(trial).predict(probe)
        silhouettes[k] = (float(silhouette_score(distances, labels, metric="precomputed"))
                          if len(np.unique(labels)) > 1 else -1.0)
    best = max(silhouettes, key=lambda k: (silhouettes[k], -k))
    previous_k = len(previous)
    if previous_k in silhouettes and \
            silhouettes[previous_k] >= silhouettes[best] - config.keep_k_margin:
        best = previous_k
    codes, init = _previous_z(previous, mean, scale)
    warm = len(codes) == best
    model = kmeans(best, init if warm else None).fit(sample)
    labels = np.asarray(model.predict(z), dtype=np.int64)
    used = np.unique(labels)  # a cluster no member landed in is dropped
    labels = np.searchsorted(used, labels).astype(np.int64)
    k = int(used.shape[0])
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    centroids_z = np.stack([np.bincount(labels, weights=z[:, j], minlength=k) / counts
                            for j in range(z.shape[1])], axis=1)
    return Clustering(k=k, labels=labels, centroids=centroids_z * scale + mean,
                      centroids_z=centroids_z, mean=mean, scale=scale,
                      silhouettes=silhouettes, warm_start=warm)


def match_codes(clusters: Clustering, previous: Sequence[PreviousPortrait], *,
                max_distance: float) -> tuple[list[str], list[float | None]]:
    """Each cluster's code and how far it moved from the previous cluster of that code
    (None for a new one); see the module docstring."""
    from scipy.optimize import linear_sum_assignment

    codes: list[str | None] = [None] * clusters.k
    moved: list[float | None] = [None] * clusters.k
    old_codes, old_z = _previous_z(previous, clusters.mean, clusters.scale)
    if old_codes:
        cost = np.linalg.norm(clusters.centroids_z[:, None, :] - old_z[None, :, :], axis=2)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if cost[r, c] <= max_distance:
                codes[r], moved[r] = old_codes[c], float(cost[r, c])
    numbers = [int(p.code[1:]) for p in previous if p.code[1:].isdigit()]
    following = max(numbers, default=0) + 1
    sizes = np.bincount(clusters.labels, minlength=clusters.k)
    for r in sorted(range(clusters.k), key=lambda i: (-int(sizes[i]), i)):
        if codes[r] is None:
            codes[r] = f"P{following}"
            following += 1
    return [c for c in codes if c is not None], moved


@dataclass(frozen=True)
class Words:
    name_en: str
    name_zh: str
    description_en: str
    description_zh: str


def _level(value: float | None, bounds: tuple[float, float]) -> int | None:
    if value is None or math.isnan(value):
        return None
    return 0 if value < bounds[0] else 1 if value < bounds[1] else 2


LEVELS_EN = ("low", "medium", "high")
LEVELS_ZH = ("低", "中等", "高")


def price_sensitivity(promo_share: float | None, config: PortraitConfig | None = None
                      ) -> str | None:
    """low / medium / high from the share of spend with a coupon or promotion."""
    level = _level(promo_share, (config or PortraitConfig()).price_levels)
    return None if level is None else LEVELS_EN[level]


def describe(traits: dict[str, float], *, habit: str | None, interval_days: float | None,
             basket_level: int | None, price_level: int | None,
             config: PortraitConfig) -> Words:
    """A cluster in words, from its distinguishing features (|z| >= trait_z, strongest
    first), its shared favourite category, its rhythm, basket and price sensitivity."""
    by_name = {f.name: f for f in FEATURES}
    picked: list[tuple[str, str]] = []
    shown: set[str] = set()
    for name, z in sorted(traits.items(), key=lambda kv: (-abs(kv[1]), kv[0])):
        if abs(z) < config.trait_z or len(picked) == config.traits_shown:
            continue
        feat = by_name[name]
        en, zh = (feat.high_en, feat.high_zh) if z > 0 else (feat.low_en, feat.low_zh)
        if en is not None and zh is not None:
            picked.append((en, zh))
            shown.add(name)
    if picked:
        name_en = " · ".join(en[:1].upper() + en[1:] for en, _ in picked[:2])
        name_zh = "·".join(zh for _, zh in picked[:2])
        parts_en = [", ".join(en for en, _ in picked)]
        parts_zh = ["、".join(zh for _, zh in picked)]
    else:
        name_en, name_zh = "Typical customers", "普通顾客"
        parts_en, parts_zh = ["close to the average customer"], ["接近平均水平"]
    if habit:
        every = (f", about every {round(interval_days)} days"
                 if interval_days is not None and not math.isnan(interval_days) else "")
        every_zh = (f"，约每{round(interval_days)}天一次"
                    if interval_days is not None and not math.isnan(interval_days) else "")
        parts_en.append(f"mostly {habit}{every}")
        parts_zh.append(f"常买{habit}{every_zh}")
    if basket_level is not None and "basket" not in shown:
        parts_en.append(f"{LEVELS_EN[basket_level]} basket")
        parts_zh.append(f"客单价{LEVELS_ZH[basket_level]}")
    if price_level is not None and "promo" not in shown:
        parts_en.append(f"{LEVELS_EN[price_level]} price sensitivity")
        parts_zh.append(f"价格敏感度{LEVELS_ZH[price_level]}")
    text_en = "; ".join(parts_en)
    return Words(name_en=name_en, name_zh=name_zh,
                 description_en=text_en[:1].upper() + text_en[1:] + ".",
                 description_zh="；".join(parts_zh) + "。")


def _median(values: Floats) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else None


def _round(value: float | None) -> int | None:
    return None if value is None else math.floor(value + 0.5)


def portrait_rows(f: Frame, buyers: Bools, clusters: Clustering, codes: list[str],
                  moved: list[float | None], *, category_names: dict[str, str],
                  config: PortraitConfig) -> list[dict[str, Any]]:
    """The ``portraits`` rows (without as_of): words, size, revenue, retention, CLV."""
    k, labels = clusters.k, clusters.labels
    facts = f.facts
    members = np.bincount(labels, minlength=k)
    net_365 = facts.net_365[buyers].astype(np.float64)
    revenue = np.bincount(labels, weights=net_365, minlength=k)
    total_revenue = float(facts.net_365.sum())
    active_before = f.net_prev_90[buyers] > 0
    kept = active_before & (f.net_90[buyers] > 0)
    before_n = np.bincount(labels, weights=active_before, minlength=k)
    kept_n = np.bincount(labels, weights=kept, minlength=k)
    p_alive = facts.p_alive[buyers]
    clv = facts.clv[buyers]
    basket = f.avg_basket[buyers]
    cuts = np.quantile(basket, [1 / 3, 2 / 3]) if basket.size else np.array([0.0, 0.0])
    interval = f.interval_days[buyers]
    promo = facts.promo_share[buyers]
    encoded = pc.dictionary_encode(f.table.column("top_category_id").combine_chunks())
    top_idx = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False),
                         dtype=np.int64)[buyers]
    rows: list[dict[str, Any]] = []
    for i in range(k):
        mine = labels == i
        habit_id: str | None = None
        idx = top_idx[mine]
        idx = idx[idx >= 0]
        if idx.size:
            counts = np.bincount(idx)
            best = int(np.argmax(counts))
            if counts[best] >= config.habit_share * int(mine.sum()):
                habit_id = str(encoded.dictionary[best])
        alive = p_alive[mine][~np.isnan(p_alive[mine])]
        values = clv[mine][~np.isnan(clv[mine])]
        median_basket = _median(basket[mine])
        median_interval = _median(interval[mine])
        traits = {name: round(float(clusters.centroids_z[i, j]), 4)
                  for j, name in enumerate(FEATURE_NAMES)}
        basket_level = None if median_basket is None else int(
            np.searchsorted(cuts, median_basket, side="right"))
        promo_mean = promo[mine][~np.isnan(promo[mine])]
        words = describe(
            traits, habit=category_names.get(habit_id) if habit_id else None,
            interval_days=median_interval if habit_id else None,
            basket_level=basket_level,
            price_level=_level(float(promo_mean.mean()) if promo_mean.size else None,
                               config.price_levels), config=config)
        rows.append({
            "code": codes[i], "name_en": words.name_en[:200], "name_zh": words.name_zh[:200],
            "description_en": words.description_en[:1000],
            "description_zh": words.description_zh[:1000],
            "centroid": {name: round(float(clusters.centroids[i, j]), 6)
                         for j, name in enumerate(FEATURE_NAMES)},
            "traits": traits,
            "top_category_id": uuid.UUID(habit_id) if habit_id else None,
            "members": int(members[i]),
            "member_share": float(members[i] / max(int(members.sum()), 1)),
            "revenue_365_minor": int(revenue[i]),
            "revenue_share": float(revenue[i] / total_revenue) if total_revenue > 0 else 0.0,
            "retention": float(kept_n[i] / before_n[i]) if before_n[i] > 0 else None,
            "mean_p_alive": float(alive.mean()) if alive.size else None,
            "clv_total_minor": int(_round(float(values.sum())) or 0),
            "clv_mean_minor": _round(float(values.mean())) if values.size else None,
            "median_basket_minor": _round(median_basket),
            "median_interval_days": median_interval,
            "moved": moved[i],
        })
    return sorted(rows, key=lambda r: int(str(r["code"])[1:]))


def _float_col(values: Floats) -> pa.Array:
    return pa.array(values, type=pa.float64(), mask=np.isnan(values))


def _int_col(values: Floats) -> pa.Array:
    mask = np.isnan(values)
    return pa.array(np.floor(np.where(mask, 0.0, values) + 0.5).astype(np.int64),
                    type=pa.int64(), mask=mask)


def profile_rows(f: Frame, bits: Ints, codes: NDArray[np.object_]) -> pa.Table:
    """The ``member_profiles`` columns (without as_of)."""
    t, facts = f.table, f.facts
    baby_first = t.column("baby_first_on").cast(pa.date32())
    return pa.table({
        "member_id": t.column("member_id"),
        "home_store_id": t.column("home_store_id"),
        "sales": pa.array(facts.sales), "sales_365": pa.array(facts.sales_365),
        "spend_minor": pa.array(_ints(t, "spend_minor")),
        "avg_basket_minor": _int_col(f.avg_basket),
        "categories": pa.array(f.categories), "stores": pa.array(facts.stores),
        "top_category_id": t.column("top_category_id"),
        "top_category_share": _float_col(_floats(t, "top_category_share")),
        "favourite_categories": t.column("favourite_categories"),
        "top_product_id": t.column("top_product_id"),
        "favourite_products": t.column("favourite_products"),
        "preferred_store_id": t.column("preferred_store_id"),
        "preferred_store_share": _float_col(f.store_share),
        "preferred_weekday": t.column("preferred_weekday").cast(pa.int16()),
        "preferred_hour": t.column("preferred_hour").cast(pa.int16()),
        "weekend_share": _float_col(facts.weekend_share),
        "evening_share": _float_col(facts.evening_share),
        "promo_share": _float_col(facts.promo_share),
        "coupon_share": _float_col(f.coupon_share),
        "discount_rate": _float_col(f.discount_rate),
        "sms_messages": pa.array(_ints(t, "sms_messages")),
        "sms_acted": pa.array(_ints(t, "sms_acted")),
        "email_messages": pa.array(_ints(t, "email_messages")),
        "email_acted": pa.array(_ints(t, "email_acted")),
        "response_rate": _float_col(f.response_rate),
        "best_channel": pa.array(f.best_channel.tolist(), type=pa.string()),
        "best_template": t.column("best_template").cast(pa.string()),
        "family_signals": t.column("family_signals").cast(pa.string()),
        "family_share": _float_col(facts.family_share),
        "baby_first_on": baby_first,
        "baby_days": pa.array(facts.baby_days),
        "tag_bits": pa.array(bits),
        "portrait_code": pa.array(codes.tolist(), type=pa.string()),
    })


@dataclass(frozen=True)
class Computed:
    """Everything :func:`write` stores for one snapshot, and what the run records."""

    profiles: pa.Table
    portraits: list[dict[str, Any]]
    params: dict[str, Any]


def compute(collected: Collected, member_scores: pa.Table, *, as_of: date,
            previous: Sequence[PreviousPortrait] = (),
            config: PortraitConfig | None = None) -> Computed:
    """Profiles, tags and portraits of one snapshot (pure: no database)."""
    config = config or PortraitConfig()
    started = time.perf_counter()
    f = frame(collected, member_scores, as_of)
    bits = tags.assign(f.facts, config.tags)
    x, buyers = features(f)
    clusters = cluster(x, previous=previous, config=config)
    codes = np.full(len(f.facts), None, dtype=object)
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"members": len(f.facts), "clustered": int(buyers.sum()),
                              "features": list(FEATURE_NAMES)}
    if clusters is None:
        params["k"] = 0
        params["skipped"] = f"fewer than {config.min_members} members with a purchase"
    else:
        names, moved = match_codes(clusters, previous, max_distance=config.match_distance)
        codes[buyers] = np.array(names, dtype=object)[clusters.labels]
        rows = portrait_rows(f, buyers, clusters, names, moved,
                             category_names=collected.category_names, config=config)
        params.update({
            "k": clusters.k, "criterion": "silhouette",
            "silhouettes": {str(k): round(v, 4) for k, v in clusters.silhouettes.items()},
            "warm_start": clusters.warm_start,
            "matched": sum(m is not None for m in moved),
            "scaler_mean": [round(float(v), 6) for v in clusters.mean],
            "scaler_scale": [round(float(v), 6) for v in clusters.scale]})
    params["seconds"] = round(time.perf_counter() - started, 3)
    return Computed(profiles=profile_rows(f, bits, codes), portraits=rows, params=params)


def previous_portraits(db: Database, *, as_of: date) -> list[PreviousPortrait]:
    """The portraits of the latest snapshot on or before ``as_of`` (what labels follow)."""
    with db.read() as session:
        day = session.scalar(select(func.max(Portrait.as_of)).where(Portrait.as_of <= as_of))
        if day is None:
            return []
        return [PreviousPortrait(code=p.code, centroid=dict(p.centroid)) for p in
                session.scalars(select(Portrait).where(Portrait.as_of == day))]


def build(db: Database, collected: Collected, member_scores: pa.Table, *, as_of: date,
          config: PortraitConfig | None = None) -> Computed:
    """:func:`compute` against the previous run's portraits (the refresh's score stage)."""
    return compute(collected, member_scores, as_of=as_of,
                   previous=previous_portraits(db, as_of=as_of), config=config)


# ---------------------------------------------------------------- 3. write


PROFILE_COLUMNS: tuple[str, ...] = tuple(c.name for c in MemberProfile.__table__.columns)


def _delete_day(db: Database, as_of: date) -> None:
    """A day's profiles a chunk per transaction (short locks on SQLite), then its portraits."""
    from patron.analytics import service as analytics  # the snapshot's owner (no cycle)

    analytics.delete_day(db, MemberProfile, as_of)
    with db.write() as session:
        session.execute(delete(Portrait).where(Portrait.as_of == as_of))
        session.execute(delete(PortraitStoreFigures).where(PortraitStoreFigures.as_of == as_of))


def write(db: Database, *, as_of: date, computed: Computed) -> None:
    """Replace the day's profiles and portraits with these."""
    from patron.analytics import service as analytics  # the snapshot writer (no cycle)

    _delete_day(db, as_of)
    table = computed.profiles.append_column(
        "as_of", pa.array([as_of] * computed.profiles.num_rows, type=pa.date32()))
    analytics._insert(db, MemberProfile.__tablename__, table.select(list(PROFILE_COLUMNS)))
    with db.write() as session:
        session.add_all(Portrait(as_of=as_of, **row) for row in computed.portraits)
    with db.write() as session:
        session.add_all(_store_figures(session, as_of))


def _store_figures(session: Session, day: date) -> list[PortraitStoreFigures]:
    """The day's per (home store, portrait) sums, from the profiles and scores just
    written: one GROUP BY at refresh time instead of one per store-scoped page view."""
    p, s = MemberProfile, MemberScore
    before = case((s.net_prev_90_minor > 0, 1), else_=0)
    kept = case(((s.net_prev_90_minor > 0) & (s.net_90_minor > 0), 1), else_=0)
    rows = session.execute(
        select(p.home_store_id, p.portrait_code, func.count(),
               func.coalesce(func.sum(s.net_365_minor), 0), func.coalesce(func.sum(before), 0),
               func.coalesce(func.sum(kept), 0), func.coalesce(func.sum(s.p_alive), 0.0),
               func.count(s.p_alive), func.coalesce(func.sum(s.clv_minor), 0),
               func.count(s.clv_minor))
        .join(s, (s.as_of == p.as_of) & (s.member_id == p.member_id))
        .where(p.as_of == day)
        .group_by(p.home_store_id, p.portrait_code)).all()
    return [PortraitStoreFigures(
        as_of=day, home_store_id=store, portrait_code=code, members=int(n),
        net_365_minor=int(net), active_before=int(before_n), kept=int(kept_n),
        p_alive_sum=float(alive), p_alive_count=int(alive_n), clv_sum_minor=int(clv),
        clv_count=int(clv_n))
        for store, code, n, net, before_n, kept_n, alive, alive_n, clv, clv_n in rows]


def prune(db: Database) -> list[date]:
    """Delete the days whose scores are gone (``service.prune`` decides which days stay),
    except a day a refresh is still writing."""
    from patron.analytics import service  # the snapshot's owner (no import cycle)

    doomed = service.days_behind_scores(db, MemberProfile, Portrait, PortraitStoreFigures)
    for day in doomed:
        _delete_day(db, day)
    return doomed


# ---------------------------------------------------------------- reads


def _latest_day(session: Session) -> date | None:
    return session.scalar(select(func.max(AnalyticsRun.as_of))
                          .where(AnalyticsRun.status == "succeeded"))


@dataclass(frozen=True)
class TagView:
    code: str
    name_en: str
    name_zh: str
    definition: str


@dataclass(frozen=True)
class PortraitView:
    """One portrait for the dashboard: words, size, revenue share, retention, CLV.

    For a store-scoped summary the figures count only members whose home store is in
    scope (the words and centroid are the brand-wide cluster's)."""

    as_of: date
    code: str
    name_en: str
    name_zh: str
    description_en: str
    description_zh: str
    traits: dict[str, float]
    top_category_id: uuid.UUID | None
    members: int
    member_share: float
    revenue_365_minor: int
    revenue_share: float
    retention: float | None
    mean_p_alive: float | None
    clv_total_minor: int
    clv_mean_minor: int | None
    median_basket_minor: int | None
    median_interval_days: float | None


@dataclass(frozen=True)
class Favourite:
    id: uuid.UUID
    name: str | None
    share: float | None = None  # categories: share of category spend
    quantity: int | None = None  # products: units kept


@dataclass(frozen=True)
class MemberProfileView:
    """A member's inferred profile in the latest snapshot, ready for the member page."""

    member_id: uuid.UUID
    as_of: date
    sales: int
    sales_365: int
    spend_minor: int
    avg_basket_minor: int | None
    categories: int
    stores: int
    favourite_categories: list[Favourite]
    favourite_products: list[Favourite]
    preferred_store_id: uuid.UUID | None
    preferred_store_name: str | None
    preferred_store_share: float | None
    preferred_weekday: int | None
    preferred_hour: int | None
    weekend_share: float | None
    evening_share: float | None
    promo_share: float | None
    coupon_share: float | None
    discount_rate: float | None
    price_sensitivity: str | None
    sms_messages: int
    sms_acted: int
    email_messages: int
    email_acted: int
    response_rate: float | None
    best_channel: str | None
    best_template: str | None
    family_signals: list[str]
    family_share: float | None
    baby_first_on: date | None
    baby_days: int
    tags: list[TagView]
    portrait: PortraitView | None


def _portrait_view(p: Portrait) -> PortraitView:
    return PortraitView(
        as_of=p.as_of, code=p.code, name_en=p.name_en, name_zh=p.name_zh,
        description_en=p.description_en, description_zh=p.description_zh,
        traits=dict(p.traits), top_category_id=p.top_category_id, members=p.members,
        member_share=p.member_share, revenue_365_minor=p.revenue_365_minor,
        revenue_share=p.revenue_share, retention=p.retention, mean_p_alive=p.mean_p_alive,
        clv_total_minor=p.clv_total_minor, clv_mean_minor=p.clv_mean_minor,
        median_basket_minor=p.median_basket_minor,
        median_interval_days=p.median_interval_days)


def tag_views(bits: int) -> list[TagView]:
    return [TagView(code=t.code, name_en=t.name_en, name_zh=t.name_zh,
                    definition=t.describe()) for t in tags.TAGS
            if bits >> tags.TAG_CODES.index(t.code) & 1]


def _favourites(session: Session, raw: Any, *, products: bool) -> list[Favourite]:
    from patron.catalog import service as catalog

    items = json.loads(raw) if isinstance(raw, str) else list(raw or [])
    ids = [uuid.UUID(str(item["id"])) for item in items]
    if products:
        found_products = catalog.get_products(session, ids=ids)
        names = {i: p.name for i, p in found_products.items()}
    else:
        names = {i: c.name for i, c in catalog.categories_by_id(session, ids).items()}
    return [Favourite(id=i, name=names.get(i),
                      share=float(item["share"]) if "share" in item else None,
                      quantity=int(item["quantity"]) if "quantity" in item else None)
            for i, item in zip(ids, items, strict=True)]


def member_profile(session: Session, *, member_id: uuid.UUID) -> MemberProfileView | None:
    """The member's profile, tags and portrait in the latest snapshot; None when there is
    no snapshot or the member is not in it (joined later, or not active)."""
    from patron.members import service as members

    day = _latest_day(session)
    row = None if day is None else session.get(MemberProfile, (day, member_id))
    if row is None:
        return None
    store_name = None
    if row.preferred_store_id is not None:
        try:
            store_name = members.get_store(session, store_id=row.preferred_store_id).name
        except NotFound:
            store_name = None
    portrait = None
    if row.portrait_code is not None:
        found = session.scalar(select(Portrait).where(Portrait.as_of == row.as_of,
                                                      Portrait.code == row.portrait_code))
        portrait = None if found is None else _portrait_view(found)
    return MemberProfileView(
        member_id=row.member_id, as_of=row.as_of, sales=row.sales, sales_365=row.sales_365,
        spend_minor=row.spend_minor, avg_basket_minor=row.avg_basket_minor,
        categories=row.categories, stores=row.stores,
        favourite_categories=_favourites(session, row.favourite_categories, products=False),
        favourite_products=_favourites(session, row.favourite_products, products=True),
        preferred_store_id=row.preferred_store_id, preferred_store_name=store_name,
        preferred_store_share=row.preferred_store_share,
        preferred_weekday=row.preferred_weekday, preferred_hour=row.preferred_hour,
        weekend_share=row.weekend_share, evening_share=row.evening_share,
        promo_share=row.promo_share, coupon_share=row.coupon_share,
        discount_rate=row.discount_rate, price_sensitivity=price_sensitivity(row.promo_share),
        sms_messages=row.sms_messages, sms_acted=row.sms_acted,
        email_messages=row.email_messages, email_acted=row.email_acted,
        response_rate=row.response_rate, best_channel=row.best_channel,
        best_template=row.best_template,
        family_signals=[s for s in row.family_signals.split(",") if s],
        family_share=row.family_share, baby_first_on=row.baby_first_on,
        baby_days=row.baby_days, tags=tag_views(row.tag_bits), portrait=portrait)


def portrait_summary(session: Session, *, store_ids: Collection[uuid.UUID] | None = None
                     ) -> list[PortraitView]:
    """The portraits of the latest snapshot, P1 first ([] without any).

    ``store_ids`` None: the brand-wide figures stored with each portrait. Otherwise the
    figures are recounted over the members whose home store is one of ``store_ids``
    (revenue share of those members' last-year net; one GROUP BY over the snapshot)."""
    day = _latest_day(session)
    if day is None:
        return []
    stored = list(session.scalars(select(Portrait).where(Portrait.as_of == day)))
    stored.sort(key=lambda p: int(p.code[1:]) if p.code[1:].isdigit() else 0)
    if store_ids is None:
        return [_portrait_view(p) for p in stored]
    return _scoped(session, day, stored, sorted(store_ids))


def _scoped(session: Session, day: date, stored: list[Portrait],
            store_ids: list[uuid.UUID]) -> list[PortraitView]:
    f = PortraitStoreFigures
    by_code: dict[str | None, tuple[Any, ...]] = {}
    if session.scalar(select(f.id).where(f.as_of == day).limit(1)) is not None:
        for code, n, net, before_n, kept_n, alive, alive_n, clv, clv_n in session.execute(
                select(f.portrait_code, func.sum(f.members), func.sum(f.net_365_minor),
                       func.sum(f.active_before), func.sum(f.kept), func.sum(f.p_alive_sum),
                       func.sum(f.p_alive_count), func.sum(f.clv_sum_minor),
                       func.sum(f.clv_count))
                .where(f.as_of == day, f.home_store_id.in_(store_ids))
                .group_by(f.portrait_code)):
            by_code[code] = (n, net, before_n, kept_n,
                             float(alive) / int(alive_n) if alive_n else None, clv,
                             int(clv) / int(clv_n) if clv_n else None)
    else:  # a snapshot written before the sums were kept
        by_code = _scoped_scan(session, day, store_ids)
    clustered = sum(int(r[0]) for code, r in by_code.items() if code is not None)
    revenue = sum(int(r[1]) for r in by_code.values())
    out = []
    for portrait in stored:
        n, net, before_n, kept_n, alive, clv, clv_mean = by_code.get(
            portrait.code, (0, 0, 0, 0, None, 0, None))
        out.append(dataclasses.replace(
            _portrait_view(portrait), members=int(n),
            member_share=int(n) / clustered if clustered else 0.0,
            revenue_365_minor=int(net),
            revenue_share=int(net) / revenue if revenue > 0 else 0.0,
            retention=int(kept_n) / int(before_n) if before_n else None,
            mean_p_alive=None if alive is None else float(alive),
            clv_total_minor=int(clv),
            clv_mean_minor=None if clv_mean is None else _round(float(clv_mean))))
    return out


def _scoped_scan(session: Session, day: date, store_ids: list[uuid.UUID]
                 ) -> dict[str | None, tuple[Any, ...]]:
    """The store-scoped figures grouped from the profiles and scores themselves."""
    p, s = MemberProfile, MemberScore
    before = case((s.net_prev_90_minor > 0, 1), else_=0)
    kept = case(((s.net_prev_90_minor > 0) & (s.net_90_minor > 0), 1), else_=0)
    rows = session.execute(
        select(p.portrait_code, func.count(), func.coalesce(func.sum(s.net_365_minor), 0),
               func.sum(before), func.sum(kept), func.avg(s.p_alive),
               func.coalesce(func.sum(s.clv_minor), 0), func.avg(s.clv_minor))
        .join(s, (s.as_of == p.as_of) & (s.member_id == p.member_id))
        .where(p.as_of == day, p.home_store_id.in_(store_ids))
        .group_by(p.portrait_code)).all()
    return {code: tuple(row) for code, *row in rows}
