"""The alert store's database code on a real PostgreSQL and SQLite: the migrations give the
ORM's schema, and a replayed batch changes nothing."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from smsmon.contract.canonical import MsisdnHasher
from smsmon.contract.codec import DecodeContext
from smsmon.store import schema
from smsmon.store.db import current_revision, head_revision, make_engine, migrate, prune
from smsmon.store.writer import Writer
from tests.unit.store.conftest import NOW, TOPICS, alert, src

pytestmark = pytest.mark.integration


def test_migrations_writes_and_replays_agree_on_both_backends(db_url: str) -> None:
    """upgrade head = schema.py; a batch of alerts, consent, registry records and rejects
    written twice leaves one copy; timestamps come back aware UTC; prune cascades."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        migrate(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, schema.Base.metadata) == []
        writer = Writer(
            engine,
            TOPICS,
            MsisdnHasher(b"s", "k1"),
            DecodeContext(tz=ZoneInfo("Asia/Shanghai"), now=NOW),
            clock=lambda: NOW,
        )
        port = {"port": "10690001", "enterprise": "E", "status": "active"}
        batch = [src(TOPICS.alerts, i, alert(i % 40)) for i in range(50)] + [
            src(TOPICS.alerts, 50, b"{bad"),
            src(TOPICS.alerts, 51, {**alert(99), "detail": "nul \u0000"}),
            src(
                TOPICS.consent,
                0,
                {
                    "msisdn": "13800138000",
                    "enterprise": "E",
                    "status": "granted",
                    "ts": "2026-11-30T08:00:00+08:00",
                },
                key=b"13800138000|E",
            ),
            src(TOPICS.ports, 0, port, key=b"10690001"),
            src(TOPICS.ports, 1, {**port, "status": "suspended"}, key=b"10690001"),
        ]
        first = writer.write(batch)
        assert first.rows == {
            "alerts": 40,
            "consent_events": 1,
            "ports": 1,
            "store_rejects": 2,
        }
        assert first.rejects == {"json": 1, "schema:detail": 1}
        second = writer.write(batch)
        assert second.rows["alerts"] == second.rows["consent_events"] == 0
        assert second.rows["store_rejects"] == 0
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(schema.Alert)) == 40
            assert conn.scalar(select(schema.Port.status)) == "suspended"
            ts = conn.scalar(select(schema.ConsentEvent.ts))
            first_alert = conn.scalar(select(func.min(schema.Alert.ts)))
        assert ts == dt.datetime(2026, 11, 30, 0, 0, tzinfo=dt.UTC)
        assert first_alert is not None and first_alert.utcoffset() == dt.timedelta(0)
        counts = prune(engine, dt.timedelta(days=1), now=NOW + dt.timedelta(days=5))
        assert counts["alerts"] == 40 and counts["consent_events"] == 1
    finally:
        engine.dispose()
