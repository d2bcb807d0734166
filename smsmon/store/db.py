"""Engines and migrations of the alert store: one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, delete, event, select
from sqlalchemy.engine import URL, make_url

from smsmon.store.schema import Alert, ConsentEvent, StoreReject

MIGRATIONS = "smsmon.store:migrations"
"""Alembic script location, as a package resource so it works from an installed wheel."""


def normalise_url(url: str) -> URL:
    """`url` with PostgreSQL pinned to psycopg 3 (`postgresql://` means psycopg2 to
    SQLAlchemy, which smsmon does not install)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. SQLite files get their folder created, WAL (the console reads
    while the store writes), full fsync at commit (a committed batch survives power loss,
    which the commit-order argument needs), foreign keys, a busy timeout and a larger page
    cache."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # 64 MiB of page cache (default 2 MiB): the eleven alert indexes of a large table
        # then stay in memory, and batch inserts stop slowing down as the table grows.
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    return engine


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (Alembic `upgrade`); a no-op when it is there."""
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this smsmon."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def prune(
    engine: Engine,
    older_than: dt.timedelta,
    now: dt.datetime | None = None,
    keep_open: bool = False,
    chunk: int = 10_000,
) -> dict[str, int]:
    """Delete alerts (with their case events), consent events and rejects older than
    `older_than`, in chunks so that the console and the store are never locked out long.
    `keep_open` keeps alerts whose case is still open or acknowledged."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - older_than
    counts = {"alerts": 0, "consent_events": 0, "store_rejects": 0}
    old_alerts = select(Alert.alert_id).where(Alert.ts < cutoff)
    if keep_open:
        old_alerts = old_alerts.where(Alert.case_status.in_(("resolved", "false_positive")))
    old_consent = select(ConsentEvent.id).where(ConsentEvent.ts < cutoff)
    old_rejects = select(StoreReject.id).where(StoreReject.at < cutoff)
    targets: list[tuple[str, Any, Any]] = [
        ("alerts", Alert.alert_id, old_alerts),
        ("consent_events", ConsentEvent.id, old_consent),
        ("store_rejects", StoreReject.id, old_rejects),
    ]
    for name, key, query in targets:
        while True:
            with engine.begin() as conn:
                ids = list(conn.scalars(query.limit(chunk)))
                if not ids:
                    break
                # An alert's case events go with it (ON DELETE CASCADE; SQLite enforces
                # that only with foreign_keys=ON, which make_engine sets).
                conn.execute(delete(key.table).where(key.in_(ids)))
                counts[name] += len(ids)
    return counts
