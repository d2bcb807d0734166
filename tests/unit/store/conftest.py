"""Fixtures of the alert store unit tests: a migrated SQLite file in a tmp dir, records."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from smsmon.contract.canonical import MsisdnHasher
from smsmon.contract.codec import DecodeContext
from smsmon.store.db import make_engine, migrate
from smsmon.store.records import Source
from smsmon.store.writer import Topics, Writer

SECRET = b"store-unit-secret"
TOPICS = Topics("sms.alerts", "sms.ref.consent", "sms.ref.ports", "sms.ref.signatures")
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
T0 = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def writer(engine: Engine) -> Writer:
    from zoneinfo import ZoneInfo

    return Writer(
        engine,
        TOPICS,
        MsisdnHasher(SECRET, "k1"),
        DecodeContext(tz=ZoneInfo("Asia/Shanghai"), now=NOW),
        max_record_bytes=4096,
        clock=lambda: NOW,
    )


def alert(n: int, **fields: Any) -> dict[str, Any]:
    """A contract-valid per-message alert (JSON object)."""
    event_id = f"ev-{n}"
    rule = fields.pop("rule", "port.unregistered")
    body: dict[str, Any] = {
        "schema_version": 1,
        "alert_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule}|{event_id}")),
        "rule": rule,
        "severity": "critical",
        "ts": (T0 + dt.timedelta(seconds=n)).isoformat(),
        "detected_at": (T0 + dt.timedelta(seconds=n, milliseconds=5)).isoformat(),
        "event_id": event_id,
        "gateway": "gw1",
        "account": "acc_a",
        "port": "106900011234",
        "signature": "taobao",
        "enterprise": "ENT_A",
        "category": "marketing",
        "msisdn_hash": "k1:" + "ab" * 32,
        "msisdn_masked": "138****8000",
        "detail": "no port record",
    }
    body.update(fields)
    return body


def src(
    topic: str, offset: int, value: Any, key: bytes | None = None, partition: int = 0
) -> Source:
    """A record as the consumer would hand it over; dicts are JSON-encoded."""
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False).encode()
    return Source(topic, partition, offset, key, value, int(NOW.timestamp() * 1000))
