"""Use cases of the auth domain: staff users, logins, web sessions and API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import PrincipalKind, Role
from patron.auth.models import ApiKey, User, UserStore, WebSession
from patron.auth.principal import Principal, require_role, require_store
from patron.core.clock import Clock
from patron.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from patron.members.models import Store

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def use_password_hasher(hasher: PasswordHasher) -> None:
    """Swap the argon2 parameters (the test suite uses cheap ones to stay fast)."""
    global _hasher, _DUMMY_HASH
    _hasher = hasher
    _DUMMY_HASH = hasher.hash("not-a-real-password")
USERNAME_RE = re.compile(r"^[a-zA-Z0-9_.@-]{3,64}$")
KEY_PREFIX = "pk_"
LANGUAGES = ("en", "zh_CN")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_password_rules(password: str) -> None:
    if len(password) < 8:
        raise ValidationFailed("Password must have at least 8 characters", "password")
    if len(password) > 256:
        raise ValidationFailed("Password must have at most 256 characters", "password")


def _check_role_stores(session: Session, role: Role, store_ids: list[uuid.UUID]) -> None:
    if role is Role.CASHIER and len(store_ids) != 1:
        raise ValidationFailed("A cashier works in exactly one store", "store_ids")
    if role is Role.MANAGER and not store_ids:
        raise ValidationFailed("A manager runs at least one store", "store_ids")
    if role is Role.OWNER and store_ids:
        raise ValidationFailed("An owner has every store; give no store_ids", "store_ids")
    for sid in store_ids:
        if session.get(Store, sid) is None:
            raise ValidationFailed(f"Unknown store {sid}", "store_ids", code="unknown_store")


def _may_manage(actor: Principal, role: Role, store_ids: list[uuid.UUID]) -> None:
    """Owners manage everyone; a manager manages cashiers of their own stores only."""
    require_role(actor, Role.MANAGER, users_only=True)
    if actor.role is Role.OWNER:
        return
    if role is not Role.CASHIER:
        raise PermissionDenied("Only an owner can create or change managers and owners")
    for sid in store_ids:
        require_store(actor, sid)


def create_user(
    session: Session, *, clock: Clock, actor: Principal | None, username: str,
    display_name: str, password: str, role: Role, store_ids: list[uuid.UUID] | None = None,
    language: str | None = None,
) -> User:
    """Create a staff user. ``actor`` is None only for the CLI bootstrap of the first owner."""
    store_ids = list(dict.fromkeys(store_ids or []))
    if actor is not None:
        _may_manage(actor, role, store_ids)
    if not USERNAME_RE.match(username):
        raise ValidationFailed(
            "Username: 3-64 letters, digits or . _ @ -", "username", code="invalid_username"
        )
    if not display_name.strip():
        raise ValidationFailed("Display name is required", "display_name", code="required")
    if language is not None and language not in LANGUAGES:
        raise ValidationFailed("Language must be 'en' or 'zh_CN'", "language")
    _check_password_rules(password)
    _check_role_stores(session, role, store_ids)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"Username {username!r} is taken", "username", code="username_taken")
    user = User(
        username=username, display_name=display_name.strip(),
        password_hash=hash_password(password), role=role.value, language=language,
        created_at=clock.now(), store_links=[UserStore(store_id=s) for s in store_ids],
    )
    session.add(user)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="user.created", entity_type="user",
                 entity_id=user.id, details={"username": username, "role": role.value,
                                             "store_ids": [str(s) for s in store_ids]})
    return user


def get_user_for(session: Session, *, actor: Principal, user_id: uuid.UUID) -> User:
    """A user the actor may see: themselves, and for managers the staff of their stores
    (owners see everyone)."""
    if actor.user_id is not None and actor.user_id == user_id:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("No such user", "user_id")
        return user
    require_role(actor, Role.MANAGER, users_only=True)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user", "user_id")
    if actor.role is not Role.OWNER and (
        user.role == Role.OWNER or not set(user.store_ids) & actor.store_ids
    ) and user.id != actor.user_id:
        raise PermissionDenied("This user works in a store you don't have access to")
    return user


def list_users(
    session: Session, *, actor: Principal, store_id: uuid.UUID | None = None
) -> list[User]:
    require_role(actor, Role.MANAGER, users_only=True)
    if store_id is not None:
        require_store(actor, store_id)
    stmt = select(User).order_by(User.username)
    visible = actor.visible_store_ids()
    wanted = {store_id} if store_id else visible
    if wanted is not None:
        stmt = stmt.where(
            User.id.in_(select(UserStore.user_id).where(UserStore.store_id.in_(wanted)))
        )
    return list(session.scalars(stmt))


def update_user(
    session: Session, *, clock: Clock, actor: Principal, user_id: uuid.UUID,
    display_name: str | None = None, role: Role | None = None,
    store_ids: list[uuid.UUID] | None = None, active: bool | None = None,
    language: str | None = None, password: str | None = None,
) -> User:
    """Change a user; role, store and activation changes are audited with before/after."""
    user = get_user_for(session, actor=actor, user_id=user_id)
    new_role = role or Role(user.role)
    new_stores = list(dict.fromkeys(store_ids)) if store_ids is not None else user.store_ids
    # anyone may change their own name, language and password; the rest is management
    if user.id != actor.user_id or role is not None or store_ids is not None \
            or active is not None:
        _may_manage(actor, Role(user.role), user.store_ids)
        _may_manage(actor, new_role, new_stores)
    if user.id == actor.user_id and (role not in (None, Role(user.role)) or active is False):
        raise PermissionDenied("You cannot change your own role or deactivate yourself")
    changes: dict[str, object] = {}
    if role is not None or store_ids is not None:
        _check_role_stores(session, new_role, new_stores)
        if new_role.value != user.role:
            changes["role"] = [user.role, new_role.value]
            user.role = new_role.value
        if set(new_stores) != set(user.store_ids):
            changes["store_ids"] = [[str(s) for s in user.store_ids], [str(s) for s in new_stores]]
            user.store_links = [UserStore(store_id=s) for s in new_stores]
    if display_name is not None:
        if not display_name.strip():
            raise ValidationFailed("Display name is required", "display_name", code="required")
        user.display_name = display_name.strip()
    if language is not None:
        if language not in LANGUAGES:
            raise ValidationFailed("Language must be 'en' or 'zh_CN'", "language")
        user.language = language
    if password is not None:
        _check_password_rules(password)
        user.password_hash = hash_password(password)
        changes["password"] = "changed"  # noqa: S105 - a marker, not a secret
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    if active is not None and active != user.active:
        changes["active"] = [user.active, active]
        user.active = active
        if not active:
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.flush()
    if changes:
        audit.record(session, clock=clock, actor=actor, action="user.updated", entity_type="user",
                     entity_id=user.id, details=changes)
    return user


def authenticate(session: Session, *, clock: Clock, username: str, password: str) -> User | None:
    """The active user with this username and password, or None (same work either way)."""
    user = session.scalar(select(User).where(User.username == username))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = clock.now()
    return user


def start_session(session: Session, *, clock: Clock, user: User, hours: int) -> tuple[str, str]:
    """Open a web session; returns (cookie token, CSRF token). Only the token's hash is kept."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = clock.now()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session.add(WebSession(token_hash=_sha256(token), user_id=user.id, csrf_token=csrf,
                           created_at=now, expires_at=now + timedelta(hours=hours)))
    return token, csrf


def end_session(session: Session, *, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == _sha256(token)))


def principal_for_session(session: Session, *, clock: Clock, token: str) -> Principal | None:
    row = session.get(WebSession, _sha256(token))
    if row is None or row.expires_at <= clock.now():
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return principal_for_user(user, csrf_token=row.csrf_token)


def principal_for_user(user: User, *, csrf_token: str | None = None) -> Principal:
    return Principal(kind=PrincipalKind.USER, id=user.id, label=user.username,
                     role=Role(user.role), store_ids=frozenset(user.store_ids),
                     language=user.language, csrf_token=csrf_token)


def create_api_key(
    session: Session, *, clock: Clock, actor: Principal, store_id: uuid.UUID, name: str
) -> tuple[ApiKey, str]:
    """Issue a POS key for one store. The plaintext is returned once and never stored."""
    require_role(actor, Role.MANAGER, users_only=True)
    require_store(actor, store_id)
    if session.get(Store, store_id) is None:
        raise ValidationFailed("Unknown store", "store_id", code="unknown_store")
    if not name.strip():
        raise ValidationFailed("Give the key a name (e.g. the till it is for)", "name",
                               code="required")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(name=name.strip(), prefix=prefix, secret_hash=_sha256(secret), store_id=store_id,
                 created_by_id=actor.user_id, created_at=clock.now())
    session.add(key)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="api_key.created",
                 entity_type="api_key", entity_id=key.id, store_id=store_id,
                 details={"name": key.name, "prefix": prefix})
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def principal_for_api_key(session: Session, *, clock: Clock, token: str) -> Principal | None:
    """Resolve ``pk_<prefix>_<secret>``; None if unknown, wrong or revoked."""
    if not token.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = token[len(KEY_PREFIX):].partition("_")
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.secret_hash, _sha256(secret)):
        return None
    return Principal(kind=PrincipalKind.API_KEY, id=key.id, label=f"key:{key.name}",
                     role=Role.CASHIER, store_ids=frozenset({key.store_id}))


def list_api_keys(
    session: Session, *, actor: Principal, store_id: uuid.UUID | None = None
) -> list[ApiKey]:
    require_role(actor, Role.MANAGER, users_only=True)
    stmt = select(ApiKey).order_by(ApiKey.created_at.desc())
    if store_id is not None:
        require_store(actor, store_id)
        stmt = stmt.where(ApiKey.store_id == store_id)
    visible = actor.visible_store_ids()
    if visible is not None:
        stmt = stmt.where(ApiKey.store_id.in_(visible))
    return list(session.scalars(stmt))


def revoke_api_key(
    session: Session, *, clock: Clock, actor: Principal, key_id: uuid.UUID
) -> ApiKey:
    require_role(actor, Role.MANAGER, users_only=True)
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("No such API key", "key_id")
    require_store(actor, key.store_id)
    if key.revoked_at is None:
        key.revoked_at = clock.now()
        audit.record(session, clock=clock, actor=actor, action="api_key.revoked",
                     entity_type="api_key", entity_id=key.id, store_id=key.store_id,
                     details={"name": key.name})
    session.flush()
    return key
