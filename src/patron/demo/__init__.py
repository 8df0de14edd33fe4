"""Demo data: a realistic, reproducible chain to try patron on and to benchmark it with.

``build_demo`` creates three stores with their staff, a catalogue, members and two years of
purchases drawn from a BG/NBD population (see ``purchases``), and the loyalty programme
they lived through -- tiers, points, stored value, coupons, paid membership, stamp cards,
care rules, complaints and surveys (see ``programme`` and ``loyalty``) -- all from one seed.
"""

from __future__ import annotations

from patron.demo.build import (
    DEMO_PASSWORD,
    LOGINS,
    STORES,
    DemoConfig,
    DemoSummary,
    Login,
    NoProgress,
    Progress,
    build_demo,
    holds_data,
    member_count,
    summarize,
    wipe,
)

__all__ = ["DEMO_PASSWORD", "LOGINS", "STORES", "DemoConfig", "DemoSummary", "Login",
           "NoProgress", "Progress", "build_demo", "holds_data", "member_count", "summarize",
           "wipe"]
