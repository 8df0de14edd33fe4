"""``patron members import|export`` (filled in by the import/export work)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Import and export members.", no_args_is_help=True)
