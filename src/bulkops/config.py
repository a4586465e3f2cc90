"""Settings, read from the environment (``BULKOPS_*``) by the entry points and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything configurable. Built once by an entry point (CLI, ASGI factory, worker)."""

    model_config = SettingsConfigDict(env_prefix="BULKOPS_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///bulkops.db",
        description="SQLAlchemy URL; SQLite file in the current folder by default.",
    )
    data_dir: Path = Field(
        default=Path("bulkops-data"),
        description="Where uploaded and exported files are stored (per organization).",
    )
    broker_url: str | None = Field(default=None, description="Celery broker; none = embedded.")
    queue: str = Field(default="bulkops", description="Celery queue the workers consume.")
    worker_concurrency: int = Field(default=2, description="Celery worker processes per worker.")
    task_time_limit_seconds: float = Field(
        default=3600.0, description="A task past this stops; its operation resumes in a new one."
    )
    reconcile_seconds: float = Field(
        default=1.0, description="How often a Celery worker looks for work to enqueue."
    )
    secret_key: str | None = Field(default=None, description="Signs session cookies.")
    max_file_bytes: int = 2 * 1024**3
    max_field_bytes: int = 64 * 1024
    max_columns: int = 256
    max_rows: int = 10_000_000
    lease_seconds: float = 30.0
    progress_event_seconds: float = Field(
        default=0.25,
        ge=0,
        description="A run stores a progress event (what the event stream and the dashboard "
        "show) at most this often; its first chunk's always. The CLI's progress bar still "
        "sees every chunk.",
    )
    read_in_background: bool = Field(
        default=True,
        description="Read and check the file in a second process while the first one writes.",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        description="An operation taken up this many times in a row without committing a "
        "chunk (its process died each time) ends as failed instead of being resumed again.",
    )
    reclaim_local_leases: bool = Field(
        default=True,
        description="Treat a lease held by a process of this host that no longer exists as "
        "expired at once. Turn off if processes in different PID namespaces share a host name.",
    )
    upload_ttl_hours: float = Field(
        default=24.0,
        gt=0,
        description="An upload no operation used is deleted after this many hours.",
    )
    rollback_batches: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Audit batches (chunks of the operation) a rollback restores in one "
        "transaction, with one ledger row, one counter update and one progress event.",
    )
    keep_check_plan: bool = Field(
        default=True,
        description="A validate_only run keeps its planned changes (off only to measure "
        "what keeping them costs).",
    )
    # PostgreSQL: the application connects as this role (NOBYPASSRLS); migrations as the owner.
    database_owner_url: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
