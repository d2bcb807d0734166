"""The packaged Alembic migrations create exactly the schema of smsmon.store.schema."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect, select

from smsmon.store import schema
from smsmon.store.db import current_revision, head_revision, make_engine, migrate, normalise_url

pytestmark = pytest.mark.unit

EXPECTED_ALERT_INDEXES = {
    ("ts",),
    ("rule", "ts"),
    ("severity", "ts"),
    ("enterprise", "ts"),
    ("signature", "ts"),
    ("port", "ts"),
    ("account", "ts"),
    ("gateway", "ts"),
    ("msisdn_hash", "ts"),
    ("case_status", "ts"),
    ("event_id",),
}


def test_migrate_creates_every_table_at_head(engine: Engine) -> None:
    """upgrade head on an empty SQLite file gives the seven tables and the head revision."""
    names = set(inspect(engine).get_table_names())
    assert names >= {
        "alerts",
        "consent_events",
        "ports",
        "signatures",
        "case_events",
        "users",
        "store_rejects",
        "alembic_version",
    }
    assert current_revision(engine) == head_revision() == "0002"


def test_migrated_schema_matches_the_orm_models(engine: Engine) -> None:
    """Alembic autogenerate finds no difference between the migrations and schema.py."""
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), schema.Base.metadata
        )
    assert diff == []


def test_alert_indexes_serve_the_console_filters(engine: Engine) -> None:
    """Every filter column of the alert list has an index ending in ts (event_id alone)."""
    got = {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes("alerts")}
    assert got >= EXPECTED_ALERT_INDEXES
    uniques = inspect(engine).get_unique_constraints("consent_events")
    assert [u["column_names"] for u in uniques] == [["src_partition", "src_offset"]]


def test_migrate_twice_is_a_no_op(tmp_path: Path) -> None:
    """The service migrates at every start: a second upgrade keeps the data."""
    eng = make_engine(f"sqlite:///{tmp_path / 'sub' / 'a.db'}")
    migrate(eng)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with eng.begin() as conn:
        conn.execute(
            insert(schema.User).values(
                username="u", password_hash="x", role="viewer", created_at=now
            )
        )
    migrate(eng)
    with eng.connect() as conn:
        assert conn.scalars(select(schema.User.username)).all() == ["u"]
        created = conn.scalars(select(schema.User.created_at)).one()
    assert created == now and created.tzinfo is not None
    eng.dispose()


def test_case_status_defaults_to_open_and_refuses_unknown_values(engine: Engine) -> None:
    """case_status is constrained to the four statuses."""
    from sqlalchemy.exc import IntegrityError

    row = {
        "alert_id": "a1",
        "rule": "r",
        "severity": "minor",
        "ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "detected_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "event_id": "e",
        "detail": "",
        "schema_version": 1,
        "payload": "{}",
        "src_partition": 0,
        "src_offset": 0,
        "stored_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    with engine.begin() as conn:
        conn.execute(insert(schema.Alert).values(**row))
        assert conn.scalars(select(schema.Alert.case_status)).one() == "open"
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(schema.Alert).values(**{**row, "alert_id": "a2"}, case_status="x"))


def test_naive_datetimes_are_refused() -> None:
    """The store never guesses a timezone."""
    column = schema.UTCDateTime()
    with pytest.raises(ValueError, match="naive"):
        naive = dt.datetime(2026, 1, 1)  # noqa: DTZ001 (the refused case)
        column.process_bind_param(naive, make_engine("sqlite://").dialect)


def test_postgresql_urls_use_psycopg3() -> None:
    """A plain postgresql:// URL is pinned to psycopg 3, the driver smsmon installs."""
    assert normalise_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"


def test_a_store_at_0001_upgrades_and_keeps_its_consent_events(tmp_path: Path) -> None:
    """0002 adds the consent method and proof reference; rows stored before stay."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "0001")
    row = {
        "msisdn_hash": "k1:ab",
        "msisdn_masked": "138****8000",
        "enterprise": "ENT_A",
        "status": "granted",
        "ts": dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        "source": "app",
        "src_partition": 0,
        "src_offset": 7,
    }
    with engine.begin() as conn:
        conn.execute(schema.ConsentEvent.__table__.insert().values(row))  # type: ignore[attr-defined]
    migrate(engine)
    assert current_revision(engine) == "0002"
    with engine.connect() as conn:
        got = conn.execute(select(schema.ConsentEvent.enterprise, schema.ConsentEvent.method))
        assert got.all() == [("ENT_A", None)]
