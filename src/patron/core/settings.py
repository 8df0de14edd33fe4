"""Deployment settings, read from the environment (``PATRON_*``) or a ``.env`` file.

One deployment serves one merchant (brand) with many stores, so the brand's name,
currency and default phone region live here rather than in a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEV_SECRET = "dev-only-insecure-secret"  # noqa: S105 - refused in production below

Language = Literal["en", "zh_CN"]


class Settings(BaseSettings):
    """Everything a deployment configures; built at the boundary, never at import time."""

    model_config = SettingsConfigDict(env_prefix="PATRON_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./patron.db"
    secret_key: SecretStr = SecretStr(DEV_SECRET)

    brand_name: str = "Patron"
    currency: str = Field(default="CNY", min_length=3, max_length=3)
    default_region: str = Field(default="CN", min_length=2, max_length=2)
    default_language: Language = "en"
    default_timezone: str = "Asia/Shanghai"

    wallet_spend_order: Literal["principal_first", "bonus_first", "proportional"] = (
        "principal_first")
    # Where analytics compute the member summaries of a refresh: the embedded DuckDB, or
    # Spark (local mode, or the active session under spark-submit) over the exported tables.
    analytics_engine: Literal["duckdb", "spark"] = "duckdb"
    # The DuckDB file that keeps the sales history between refreshes, so a night reads only
    # what changed (analytics.warehouse). "auto": next to a SQLite database file
    # (patron.db -> patron.db.warehouse.duckdb), none on PostgreSQL unless a path is given;
    # "off": every refresh loads the whole history.
    analytics_warehouse: str = "auto"

    # Where members reach this deployment: links in receipts and messages start here.
    public_url: str = "http://127.0.0.1:8000"
    # Shared secret that SMS providers without request signing (Aliyun reports, the generic
    # gateway) put in their callback URL: ...?token=<this>. Unset: those callbacks are refused.
    callback_token: SecretStr | None = None
    # How long a worker may take to send one message before another worker presumes it
    # dead and sends the message again (at least once; see messaging.service).
    worker_lease_seconds: int = Field(default=90, ge=1, le=3600)
    # How long a value-moving request's claim on its Idempotency-Key holds before a retry may
    # presume the request dead and take the key over (see core.idempotency).
    idempotency_lease_seconds: int = Field(default=60, ge=1, le=3600)

    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    cookie_secure: bool = False
    max_upload_bytes: int = 50 * 1024 * 1024

    @field_validator("currency", "default_region")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> Settings:
        if self.environment == "production" and self.secret_key.get_secret_value() == DEV_SECRET:
            raise ValueError("PATRON_SECRET_KEY must be set to a random value in production")
        return self

    def analytics_warehouse_path(self) -> Path | None:
        """Where the analytics warehouse lives (``analytics_warehouse``), or None."""
        choice = self.analytics_warehouse.strip()
        if choice == "off":
            return None
        if choice not in ("", "auto"):
            return Path(choice).expanduser()
        if not self.is_sqlite:
            return None
        database = make_url(self.database_url).database
        if not database or database == ":memory:":
            return None
        return Path(f"{database}.warehouse.duckdb")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
