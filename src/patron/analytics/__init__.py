"""Customer-base analytics: who is valuable, who is slipping away, what they will be worth.

``patron.analytics.models`` holds the statistical core (BG/NBD, Gamma-Gamma, CLV) that
works on per-customer sufficient statistics, whatever engine produced them.
"""
