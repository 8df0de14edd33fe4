"""The ``patron`` command: serve, migrate, demo data, staff users, member import/export."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.console import Console

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.cli import analytics as analytics_cli
from patron.cli import backup as backup_cli
from patron.cli import demo as demo_cli
from patron.cli import doctor as doctor_cli
from patron.cli import jobs as jobs_cli
from patron.cli import members as members_cli
from patron.cli.common import open_db, settings_from
from patron.core import migrate
from patron.core.clock import SystemClock
from patron.core.errors import PatronError
from patron.members import service as members

app = typer.Typer(help="patron: members, loyalty and customer care for shops and chains.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
user_app = typer.Typer(help="Staff users.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(members_cli.app, name="members")
app.add_typer(analytics_cli.app, name="analytics")
app.command("demo")(demo_cli.demo)
app.command("doctor")(doctor_cli.doctor)
app.command("daily")(jobs_cli.daily)
app.command("worker")(jobs_cli.worker)
app.command("backup")(backup_cli.backup)
app.command("restore")(backup_cli.restore)
console = Console()

DbUrl = Annotated[str | None, typer.Option("--database-url", envvar="PATRON_DATABASE_URL",
                                           help="SQLAlchemy URL; default sqlite:///./patron.db")]


@app.command()
def serve(
    database_url: DbUrl = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only)")] = 1,
    with_worker: Annotated[bool, typer.Option(
        "--with-worker", help="Also run the message and schedule worker in this process "
        "(a single shop's setup; run `patron worker` separately for a chain)")] = False,
) -> None:
    """Serve the web admin and the JSON API (OpenAPI at /docs)."""
    import os

    import uvicorn

    if database_url:
        os.environ["PATRON_DATABASE_URL"] = database_url
    settings = settings_from(database_url)
    if settings.is_sqlite and workers > 1:
        raise typer.BadParameter("SQLite serves from one process; use PostgreSQL for --workers",
                                 param_hint="--workers")
    if with_worker:
        from patron.jobs.build import start_in_thread

        start_in_thread(settings)
        console.print("worker: running in this process")
    console.print(f"patron on [bold]http://{host}:{port}[/] (API docs at /docs)")
    uvicorn.run("patron.api.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="info", proxy_headers=True,
                # a spawned worker first re-imports this CLI (seconds on a busy machine);
                # uvicorn's default 5 s health check killed every worker before it started
                timeout_worker_healthcheck=60)


@db_app.command("upgrade")
def db_upgrade(database_url: DbUrl = None,
               revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Create or migrate the database to the latest schema."""
    db = open_db(database_url)
    migrate.upgrade(db.engine, revision)
    console.print(f"database at revision [bold]{migrate.current(db.engine)}[/]")
    db.dispose()


@db_app.command("current")
def db_current(database_url: DbUrl = None) -> None:
    """Print the schema revision of the database."""
    db = open_db(database_url)
    console.print(migrate.current(db.engine) or "empty (run: patron db upgrade)")
    db.dispose()


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Option(help="Login name")],
    role: Annotated[Role, typer.Option(help="owner, manager or cashier")],
    store: Annotated[list[str] | None,
                     typer.Option(help="Store code (repeat for managers)")] = None,
    display_name: Annotated[str | None, typer.Option(help="Name shown in the admin")] = None,
    password: Annotated[str | None, typer.Option(help="Prompted for if omitted")] = None,
    language: Annotated[str | None, typer.Option(help="en or zh_CN")] = None,
    database_url: DbUrl = None,
) -> None:
    """Create a staff user (the first owner is created this way)."""
    pw = password or getpass.getpass("Password: ")
    db = open_db(database_url)
    try:
        with db.write() as session:
            by_code = {s.code: s.id for s in members.list_stores(session, include_inactive=True)}
            unknown = [c for c in store or [] if c not in by_code]
            if unknown:
                raise typer.BadParameter(f"unknown store code(s): {', '.join(unknown)}",
                                         param_hint="--store")
            user = auth.create_user(session, clock=SystemClock(), actor=None, username=username,
                                    display_name=display_name or username, password=pw,
                                    role=role, store_ids=[by_code[c] for c in store or []],
                                    language=language)
            console.print(f"created {user.role} [bold]{user.username}[/] ({user.id})")
    except PatronError as exc:
        console.print(f"[red]{exc.field or 'error'}: {exc.message}[/]")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
