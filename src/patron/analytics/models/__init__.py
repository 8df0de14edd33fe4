"""Probability models of repeat buying and spend, fitted on compressed sufficient statistics.

* ``summary``: transactions → per-customer (x, t_x, T, monetary) → weighted distinct rows.
* ``bgnbd``: BG/NBD purchase/dropout model (Fader, Hardie & Lee 2005): fit, P(alive),
  expected purchases.
* ``gamma_gamma``: spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV").
* ``clv``: both together: discounted customer lifetime value.
* ``simulate``: customer bases drawn from known parameters, for tests and benchmarks.
"""
