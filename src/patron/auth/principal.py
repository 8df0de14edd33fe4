"""Who is calling: a staff user (web session) or a POS terminal (API key).

Every service call that reads or changes store-owned data takes a ``Principal`` and checks
it here, so the rules of who may see what live in one file.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from patron.auth.enums import PrincipalKind, Role
from patron.core.errors import PermissionDenied

RANK = {Role.CASHIER: 1, Role.MANAGER: 2, Role.OWNER: 3}


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: uuid.UUID
    label: str
    role: Role
    store_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    language: str | None = None
    csrf_token: str | None = None

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.id if self.kind is PrincipalKind.USER else None

    @property
    def api_key_id(self) -> uuid.UUID | None:
        return self.id if self.kind is PrincipalKind.API_KEY else None

    @property
    def all_stores(self) -> bool:
        return self.role is Role.OWNER

    @property
    def sees_full_phone(self) -> bool:
        """Cashiers and POS terminals see masked phones (138****5678); managers see all."""
        return self.kind is PrincipalKind.USER and self.role in (Role.OWNER, Role.MANAGER)

    def can_access_store(self, store_id: uuid.UUID | None) -> bool:
        return self.all_stores or (store_id is not None and store_id in self.store_ids)

    def visible_store_ids(self) -> frozenset[uuid.UUID] | None:
        """``None`` means every store (the owner)."""
        return None if self.all_stores else self.store_ids

    @property
    def default_store_id(self) -> uuid.UUID | None:
        return next(iter(sorted(self.store_ids)), None)


def require_role(principal: Principal, minimum: Role, *, users_only: bool = False) -> None:
    """Refuse callers below ``minimum`` (and API keys when the action is for staff only)."""
    if users_only and principal.kind is not PrincipalKind.USER:
        raise PermissionDenied("Only staff users can do this")
    if RANK[principal.role] < RANK[minimum]:
        raise PermissionDenied(f"This needs the {minimum.value} role")


def require_store(principal: Principal, store_id: uuid.UUID | None) -> None:
    if not principal.can_access_store(store_id):
        raise PermissionDenied("This belongs to a store you don't have access to")
