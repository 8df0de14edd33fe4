"""Points (lots, pending period, expiry, debt) and tiers."""
