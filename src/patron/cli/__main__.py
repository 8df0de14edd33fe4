"""``python -m patron.cli``."""

from patron.cli import app

app()
