"""Consent records are stored hashed: no raw msisdn in any column of any row of any table."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import Engine, MetaData, select

from smsmon.contract.canonical import MsisdnHasher
from smsmon.store import schema
from smsmon.store.writer import Writer

from .conftest import SECRET, TOPICS, alert, src

pytestmark = pytest.mark.unit

NUMBERS = ["13800138000", "13912345678", "15000000001", "18612348888"]


def _every_cell(engine: Engine) -> list[str]:
    """Every value of every row of every table in the database, as text."""
    meta = MetaData()
    meta.reflect(engine)
    cells: list[str] = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                cells.extend(str(v) for v in row)
    return cells


def test_consent_records_leave_no_raw_msisdn_anywhere(writer: Writer, engine: Engine) -> None:
    """Grants, smsmon's own revocations, tombstones and rejected consent records: only the
    keyed hash and the masked form are kept."""
    ts = "2026-11-30T10:00:00+08:00"
    records = []
    for i, number in enumerate(NUMBERS):
        key = f"+86 {number}|ENT_{i}".encode()
        records.append(
            src(
                TOPICS.consent,
                3 * i,
                {"msisdn": f"+86{number}", "enterprise": f"ENT_{i}", "status": "granted", "ts": ts},
                key=key,
            )
        )
        records.append(
            src(
                TOPICS.consent,
                3 * i + 1,
                {
                    "msisdn": number,
                    "enterprise": f"ENT_{i}",
                    "status": "revoked",
                    "ts": ts,
                    "source": "mo",
                },
                key=key,
            )
        )
        records.append(src(TOPICS.consent, 3 * i + 2, None, key=key))
    # invalid consent records holding a number: rejected, content not kept
    records.append(
        src(
            TOPICS.consent,
            100,
            {"msisdn": NUMBERS[0], "enterprise": "E", "status": "maybe", "ts": ts},
        )
    )
    records.append(src(TOPICS.consent, 101, f'{{"msisdn": "{NUMBERS[1]}"'.encode()))
    records.append(src(TOPICS.alerts, 0, alert(1)))
    result = writer.write(records)
    assert result.rows["consent_events"] == 3 * len(NUMBERS)
    assert result.rejects == {"schema:status": 1, "json": 1}

    cells = _every_cell(engine)
    joined = "\n".join(cells)
    for number in NUMBERS:
        assert number not in joined
        assert number[3:] not in joined  # not even the last 8 digits
    assert not re.search(r"(?<!\d)1\d{10}(?!\d)", joined)  # no 11-digit mobile number at all

    hasher = MsisdnHasher(SECRET, "k1")
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                schema.ConsentEvent.msisdn_hash,
                schema.ConsentEvent.msisdn_masked,
                schema.ConsentEvent.status,
                schema.ConsentEvent.published_by_smsmon,
                schema.ConsentEvent.ts,
            ).order_by(schema.ConsentEvent.src_offset)
        ).all()
    assert [r.msisdn_hash for r in rows[:3]] == [hasher(NUMBERS[0])] * 3
    assert rows[0].msisdn_masked == "138****8000"
    assert [r.status for r in rows[:3]] == ["granted", "revoked", schema.CONSENT_DELETED]
    assert [r.published_by_smsmon for r in rows[:3]] == [False, True, False]
    assert rows[0].ts == dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)


def test_consent_replay_is_idempotent(writer: Writer, engine: Engine) -> None:
    """The same consent record at the same offset is stored once."""
    rec = src(
        TOPICS.consent,
        9,
        {
            "msisdn": NUMBERS[0],
            "enterprise": "E",
            "status": "granted",
            "ts": "2026-11-30T10:00:00+08:00",
        },
        key=b"13800138000|E",
    )
    assert writer.write([rec]).rows["consent_events"] == 1
    assert writer.write([rec, rec]).rows["consent_events"] == 0


def test_consent_method_and_proof_reference_are_kept(writer: Writer, engine: Engine) -> None:
    """The evidence the consent.implicit alert cites is kept with the consent event."""
    rec = src(
        TOPICS.consent,
        3,
        {
            "msisdn": NUMBERS[1],
            "enterprise": "E",
            "status": "granted",
            "ts": "2026-11-30T10:00:00+08:00",
            "source": "app-signup",
            "method": "registration_default",
            "proof_ref": "signup/884",
        },
        key=f"{NUMBERS[1]}|E".encode(),
    )
    assert writer.write([rec]).rows["consent_events"] == 1
    with engine.connect() as conn:
        got = conn.execute(select(schema.ConsentEvent.method, schema.ConsentEvent.proof_ref)).all()
    assert got == [("registration_default", "signup/884")]
