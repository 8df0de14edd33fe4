"""Stored value: top-ups with bonus, spending at the till, refunds; an append-only ledger."""
