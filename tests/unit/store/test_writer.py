"""Batches into the store: idempotent upserts, first alert wins, registries, rejects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from smsmon.store import schema
from smsmon.store.writer import Writer

from .conftest import TOPICS, alert, src

pytestmark = pytest.mark.unit


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def _alerts(n: int, start: int = 0) -> list[Any]:
    return [src(TOPICS.alerts, start + i, alert(i)) for i in range(n)]


def test_alert_fields_are_stored_with_the_payload_as_received(
    writer: Writer, engine: Engine
) -> None:
    """Every column comes from the alert; payload is the exact JSON text."""
    body = alert(7, window_start="2026-11-30T08:00:00+08:00", observed=12.5)
    record = src(TOPICS.alerts, 42, body, partition=3)
    result = writer.write([record])
    assert result.rows["alerts"] == 1
    with engine.connect() as conn:
        row = conn.execute(select(schema.Alert)).mappings().one()
    assert row["alert_id"] == body["alert_id"]
    assert row["payload"] == record.value.decode()  # type: ignore[union-attr]
    assert row["window_start"].isoformat() == "2026-11-30T00:00:00+00:00"
    assert row["ts"].tzinfo is not None and row["observed"] == 12.5
    assert (row["src_partition"], row["src_offset"], row["case_status"]) == (3, 42, "open")
    assert row["severity"] == "critical" and row["category"] == "marketing"


def test_replayed_batch_adds_nothing(writer: Writer, engine: Engine) -> None:
    """Writing the same batch again (a replay after a crash) changes no row."""
    batch = _alerts(50)
    assert writer.write(batch).rows["alerts"] == 50
    with engine.connect() as conn:
        before = conn.execute(select(schema.Alert).order_by(schema.Alert.alert_id)).all()
    again = writer.write(batch)
    assert again.rows["alerts"] == 0
    with engine.connect() as conn:
        after = conn.execute(select(schema.Alert).order_by(schema.Alert.alert_id)).all()
    assert before == after and len(after) == 50


def test_first_occurrence_of_an_alert_id_wins(writer: Writer, engine: Engine) -> None:
    """A repeated alert_id, in the same batch or a later one, keeps the first payload."""
    first = alert(1, detail="first")
    second = alert(1, detail="second")
    third = alert(1, detail="third")
    writer.write([src(TOPICS.alerts, 0, first), src(TOPICS.alerts, 1, second)])
    writer.write([src(TOPICS.alerts, 2, third)])
    with engine.connect() as conn:
        rows = conn.execute(select(schema.Alert.detail, schema.Alert.src_offset)).all()
    assert rows == [("first", 0)]


def test_registry_records_upsert_and_null_deletes(writer: Writer, engine: Engine) -> None:
    """Ports and signatures keep the latest record per key; a null value deletes it."""
    port = {"port": "10690001", "enterprise": "ENT_A", "status": "active", "accounts": ["a"]}
    sig = {"signature": "【Taobao】", "enterprise": "ENT_A", "status": "active"}
    writer.write(
        [
            src(TOPICS.ports, 0, port, key=b"10690001"),
            src(TOPICS.ports, 1, {**port, "status": "suspended"}, key=b"10690001"),
            src(TOPICS.ports, 2, {**port, "port": "10690002"}, key=b"10690002"),
            src(TOPICS.signatures, 0, sig, key="【Taobao】".encode()),
        ]
    )
    with engine.connect() as conn:
        ports = dict(conn.execute(select(schema.Port.key, schema.Port.status)).all())
        sigs = conn.execute(select(schema.Signature.key, schema.Signature.record)).all()
    assert ports == {"10690001": "suspended", "10690002": "active"}
    assert sigs[0][0] == "taobao" and json.loads(sigs[0][1])["enterprise"] == "ENT_A"
    writer.write(
        [
            src(TOPICS.ports, 3, None, key=b"10690001"),
            src(TOPICS.signatures, 1, None, key=b"Taobao"),
        ]
    )
    with engine.connect() as conn:
        assert conn.scalars(select(schema.Port.key)).all() == ["10690002"]
    assert _count(engine, schema.Signature) == 0


def test_delete_then_reinsert_in_one_batch_keeps_the_last(writer: Writer, engine: Engine) -> None:
    """Within a batch the last record of a key decides, as one at a time would."""
    port = {"port": "10690001", "enterprise": "ENT_A", "status": "active"}
    writer.write(
        [
            src(TOPICS.ports, 0, port, key=b"10690001"),
            src(TOPICS.ports, 1, None, key=b"10690001"),
            src(TOPICS.ports, 2, {**port, "enterprise": "ENT_B"}, key=b"10690001"),
        ]
    )
    with engine.connect() as conn:
        assert conn.execute(select(schema.Port.key, schema.Port.enterprise)).all() == [
            ("10690001", "ENT_B")
        ]


BAD_ALERTS = [
    (b"{not json", "json"),
    (b"\xff\xfe", "encoding"),
    (b"[1,2]", "schema:value"),
    (json.dumps({**alert(1), "severity": "fatal"}).encode(), "schema:severity"),
    (json.dumps({k: v for k, v in alert(1).items() if k != "rule"}).encode(), "schema:rule"),
    (json.dumps({**alert(1), "ts": "2026-11-30T08:00:00"}).encode(), "schema:ts"),
    (json.dumps({**alert(1), "account": "a" * 201}).encode(), "schema:account"),
    (json.dumps({**alert(1), "detail": "x\u0000y"}).encode(), "schema:detail"),
    (json.dumps({**alert(1), "alert_id": ""}).encode(), "schema:alert_id"),
    (b"x" * 5000, "too_large"),
    (None, "schema:value"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_ALERTS)
def test_invalid_alerts_are_rejected_counted_and_kept_as_size_and_hash(
    writer: Writer, engine: Engine, value: bytes | None, reason: str
) -> None:
    """A bad record becomes a store_rejects row (no content), the rest of the batch is kept."""
    good = src(TOPICS.alerts, 0, alert(2))
    bad = src(TOPICS.alerts, 1, value) if value is not None else src(TOPICS.alerts, 1, None)
    result = writer.write([good, bad])
    assert result.rejects == {reason: 1}
    assert result.rows["alerts"] == 1
    with engine.connect() as conn:
        rej = conn.execute(select(schema.StoreReject)).mappings().one()
    assert (rej["topic"], rej["partition"], rej["offset"], rej["reason"]) == (
        "sms.alerts",
        0,
        1,
        reason,
    )
    if value is not None:
        import hashlib

        assert rej["value_size"] == len(value)
        assert rej["value_sha256"] == hashlib.sha256(value).hexdigest()
    # a replay does not reject it twice
    assert writer.write([good, bad]).rows["store_rejects"] == 0
    assert _count(engine, schema.StoreReject) == 1


def test_unknown_alert_fields_are_ignored(writer: Writer, engine: Engine) -> None:
    """The contract is additive: a field a newer smsmon adds does not reject the alert."""
    body = alert(3, new_field_from_v1_5="x")
    assert writer.write([src(TOPICS.alerts, 0, body)]).rows["alerts"] == 1
    with engine.connect() as conn:
        assert "new_field_from_v1_5" in conn.scalars(select(schema.Alert.payload)).one()


@pytest.mark.parametrize(
    ("topic", "key", "value", "reason"),
    [
        (
            TOPICS.ports,
            b"10690001",
            {"port": "10690002", "enterprise": "E", "status": "active"},
            "schema:key",
        ),
        (TOPICS.ports, b"1069x", None, "schema:key"),
        (
            TOPICS.ports,
            b"10690001",
            {"port": "10690001", "enterprise": "E", "status": "gone"},
            "schema:status",
        ),
        (
            TOPICS.signatures,
            "【A】".encode(),
            {"signature": "B", "enterprise": "E", "status": "active"},
            "schema:key",
        ),
        (
            TOPICS.consent,
            b"13800138000|E",
            {"msisdn": "123", "enterprise": "E", "status": "granted", "ts": "2026-01-01T00:00:00Z"},
            "schema:msisdn",
        ),
        (TOPICS.consent, b"garbage", None, "schema:key"),
        ("other.topic", None, {"x": 1}, "topic"),
    ],
)
def test_invalid_reference_records_are_rejected(
    writer: Writer, engine: Engine, topic: str, key: bytes | None, value: Any, reason: str
) -> None:
    """Reference and consent records that break the contract are rejected by reason."""
    result = writer.write([src(topic, 5, value, key=key)])
    assert result.rejects == {reason: 1}
    assert _count(engine, schema.Port) + _count(engine, schema.ConsentEvent) == 0
    assert _count(engine, schema.StoreReject) == 1


def test_a_record_the_database_refuses_is_rejected_alone(
    writer: Writer, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the database refuses a row the checks let through, the batch is stored record by
    record: that one becomes a `db` reject, the others are kept."""
    from smsmon.store import records

    real = records.alert_row

    def breaking(src_: Any, at: Any, max_bytes: int) -> Any:
        row = real(src_, at, max_bytes)
        if src_.offset == 1:
            row["case_status"] = "not-a-status"  # violates the CHECK constraint
        return row

    monkeypatch.setattr(records, "alert_row", breaking)
    result = writer.write([src(TOPICS.alerts, i, alert(i)) for i in range(3)])
    assert result.rows["alerts"] == 2
    assert result.rejects == {"db": 1}
    with engine.connect() as conn:
        rej = conn.execute(select(schema.StoreReject.offset, schema.StoreReject.reason)).all()
    assert rej == [(1, "db")]
