"""Backups that can be restored: SQLite through its online backup API, PostgreSQL through
``pg_dump``/``pg_restore``.

A backup of a live SQLite database is taken with ``sqlite3.Connection.backup``: a
consistent snapshot even while the server writes (WAL mode), unlike copying the file. The
restore writes the snapshot into the target through the same API, page by page, so the
target is never a half-copied file, and then runs ``PRAGMA integrity_check``.

PostgreSQL backups are ``pg_dump --format=custom`` files (compressed, restorable table by
table); a restore runs ``pg_restore --clean --if-exists --single-transaction`` into the
target database, so a failed restore leaves the target as it was.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from patron.core.db import normalise_url
from patron.core.errors import PatronError, ValidationFailed

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    kind: str  # "sqlite" or "pg_dump"


def _sqlite_file(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValidationFailed("Back up a SQLite database stored in a file", "database_url")
    return Path(database)


def _pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    u = make_url(normalise_url(url))
    args = ["--host", u.host or "127.0.0.1", "--port", str(u.port or 5432),
            "--username", u.username or "postgres", "--no-password"]
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    if not u.database:
        raise ValidationFailed("The PostgreSQL URL names no database", "database_url")
    return [*args, "--dbname", u.database], env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ValidationFailed(f"{name} is not installed (Debian: postgresql-client)", "tool")
    return path


def backup(url: str, target: Path) -> BackupResult:
    """Write a consistent backup of the database at ``url`` to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    backend = make_url(normalise_url(url)).get_backend_name()
    if backend == "sqlite":
        source = _sqlite_file(url)
        if not source.exists():
            raise ValidationFailed(f"No database file at {source}", "database_url")
        partial = target.with_suffix(target.suffix + ".partial")
        with sqlite3.connect(source) as src, sqlite3.connect(partial) as dst:
            src.backup(dst, pages=1024)
        partial.replace(target)  # a backup is either complete or absent
        return BackupResult(target, target.stat().st_size, "sqlite")
    if backend == "postgresql":
        args, env = _pg_args(url)
        # an argument list (no shell) built from the parsed URL: nothing is interpolated
        subprocess.run([_tool("pg_dump"), "--format=custom", "--no-owner",  # noqa: S603
                        "--file", str(target), *args], check=True, env=env,
                       capture_output=True, text=True)
        return BackupResult(target, target.stat().st_size, "pg_dump")
    raise ValidationFailed(f"Backups of {backend} databases are not supported", "database_url")


def restore(source: Path, url: str) -> None:
    """Replace the database at ``url`` with the backup in ``source`` (stop the server first)."""
    if not source.exists():
        raise ValidationFailed(f"No backup file at {source}", "backup")
    head = source.read_bytes()[:16]
    backend = make_url(normalise_url(url)).get_backend_name()
    if backend == "sqlite":
        if head != SQLITE_MAGIC:
            raise ValidationFailed("This file is not a SQLite backup", "backup")
        target = _sqlite_file(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
            src.backup(dst, pages=1024)
            ok = dst.execute("PRAGMA integrity_check").fetchone()
            if ok is None or ok[0] != "ok":
                raise ValidationFailed(f"The restored database failed its check: {ok}", "backup")
        return
    if backend == "postgresql":
        if not head.startswith(PGDUMP_MAGIC):
            raise ValidationFailed("This file is not a pg_dump custom-format backup", "backup")
        args, env = _pg_args(url)
        done = subprocess.run(  # noqa: S603 - an argument list from the parsed URL, no shell
            [_tool("pg_restore"), "--clean", "--if-exists", "--no-owner",
             "--single-transaction", "--exit-on-error", *args, str(source)],
            check=False, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise PatronError(f"pg_restore failed: {done.stderr.strip()[-500:]}", "backup",
                              code="restore_failed", status=500)
        return
    raise ValidationFailed(f"Restores into {backend} databases are not supported",
                           "database_url")
