from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Owner: the whole brand. Manager: one or more stores. Cashier: one store."""

    OWNER = "owner"
    MANAGER = "manager"
    CASHIER = "cashier"


class PrincipalKind(StrEnum):
    USER = "user"
    API_KEY = "api_key"
