"""Alembic environment of the alert store: run by `smsmon.store.db.migrate`, never by hand.

The caller passes an open connection in `config.attributes["connection"]`; with none (the
`alembic` command line, for writing a new revision) the URL comes from the settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from smsmon.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later revisions use batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from smsmon.store.settings import StoreSettings

    engine = create_engine(StoreSettings().alert_db_url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the alert store's migrations run online only (smsmon store migrate)")
run_migrations_online()
