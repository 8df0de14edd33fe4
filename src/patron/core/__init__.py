"""Shared kernel: settings, database, ids, clock, money, errors and the outbox."""
