"""bench/store.py stays usable: the filler writes valid, indexed alerts; the mix decodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from bench.store import Mix, fill, throughput
from smsmon.store import schema
from smsmon.store.db import make_engine

pytestmark = pytest.mark.unit


def test_fill_writes_indexed_contract_alerts(tmp_path: Path) -> None:
    """--fill: N rows, indexes rebuilt, payloads valid alerts, statuses mixed, no number."""
    engine = make_engine(f"sqlite:///{tmp_path / 'fill.db'}")
    fill(engine, 1_500, seed=3, chunk=400)
    fill(engine, 100, seed=4)  # into a non-empty table: indexes kept
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(schema.Alert)) == 1_600
        statuses = set(conn.scalars(select(schema.Alert.case_status).distinct()))
        rules = set(conn.scalars(select(schema.Alert.rule).distinct()))
        payloads = conn.scalars(select(schema.Alert.payload)).all()
        diff = compare_metadata(MigrationContext.configure(conn), schema.Base.metadata)
    engine.dispose()
    assert diff == []
    assert statuses == set(schema.CASE_STATUSES)
    assert len(rules) >= 10
    from smsmon.store.records import StoredAlert

    for p in payloads[:200]:
        StoredAlert.model_validate_json(p)
    text = "\n".join(payloads)
    numbers = Mix(3).numbers
    assert not [n for n in numbers if n in text]


def test_throughput_counts_only_new_rows(tmp_path: Path) -> None:
    """The write-path benchmark inserts each distinct alert id once."""
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    result = throughput(engine, rows=1_200, batch=500, seed=5, duplicates=0.2)
    engine.dispose()
    distinct = {
        json.loads(s.value or b"{}")["alert_id"] for s in Mix(6, prefix="bench").records(1_200, 0.2)
    }
    assert result["records"] == 1_200
    assert result["inserted"] == len(distinct) < 1_200
