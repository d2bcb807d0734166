"""A small, deterministic alert store for the console's tests (unit and browser)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from smsmon.contract.canonical import MsisdnHasher, mask_msisdn
from smsmon.rules.catalog import alert_id
from smsmon.store.db import migrate
from smsmon.store.schema import Alert, ConsentEvent, Port, Signature

SECRET = "test-msisdn-secret"
KEY_ID = "k1"
HASHER = MsisdnHasher(SECRET.encode(), KEY_ID)
T0 = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
NUMBERS = ("13800138000", "13900139001", "15000150002", "18600186003")
SPEC = (
    # rule, severity, enterprise, signature, port, account, gateway
    ("consent.revoked", "critical", "淘宝", "淘宝", "10690001", "acc-tb", "gw1"),
    ("consent.missing", "major", "淘宝", "淘宝", "106900011", "acc-tb", "gw1"),
    ("port.account", "critical", "京东", "京东", "10690002", "acc-resale", "gw2"),
    ("signature.unregistered", "critical", "某贷", "某贷", "10690003", "acc-x", "gw2"),
    ("time.quiet_hours", "minor", "美团", "美团", "10660004", "acc-mt", "gw1"),
)


def create_schema(engine: Engine) -> None:
    """The store's schema, through its Alembic migrations."""
    migrate(engine)


def alert_row(
    i: int,
    rule: str,
    severity: str,
    enterprise: str,
    signature: str,
    port: str,
    account: str,
    gateway: str,
    msisdn: str,
    ts: dt.datetime,
) -> Alert:
    event_id = f"ev-{i:06d}"
    aid = alert_id(rule, event_id)
    payload: dict[str, Any] = {
        "alert_id": aid,
        "rule": rule,
        "severity": severity,
        "ts": ts.isoformat(),
        "detected_at": ts.isoformat(),
        "event_id": event_id,
        "gateway": gateway,
        "account": account,
        "port": port,
        "signature": signature,
        "enterprise": enterprise,
        "category": "marketing",
        "msisdn_hash": HASHER(msisdn),
        "msisdn_masked": mask_msisdn(msisdn),
        "detail": f"{rule} seen on {port}",
    }
    return Alert(
        alert_id=aid,
        rule=rule,
        severity=severity,
        ts=ts,
        detected_at=ts + dt.timedelta(seconds=1),
        event_id=event_id,
        gateway=gateway,
        account=account,
        port=port,
        signature=signature,
        enterprise=enterprise,
        category="marketing",
        msisdn_hash=HASHER(msisdn),
        msisdn_masked=mask_msisdn(msisdn),
        detail=f"{rule} seen on {port}",
        schema_version=1,
        payload=json.dumps(payload, ensure_ascii=False),
        src_partition=i % 8,
        src_offset=i,
        stored_at=ts + dt.timedelta(seconds=2),
        case_status="open",
    )


def fill(engine: Engine, n: int = 60) -> list[str]:
    """`n` alerts over 5 days (one every 2 hours), the registries and consent; returns the
    alert ids in insertion order."""
    ids = []
    with Session(engine) as s, s.begin():
        for i in range(n):
            rule, sev, ent, sig, port, acc, gw = SPEC[i % len(SPEC)]
            ts = T0 + dt.timedelta(hours=2 * i)
            a = alert_row(i, rule, sev, ent, sig, port, acc, gw, NUMBERS[i % len(NUMBERS)], ts)
            s.add(a)
            ids.append(a.alert_id)
        # A second alert of the first event (same event, other rule).
        s.add(
            alert_row(
                0,
                "content.optout_missing",
                "major",
                "淘宝",
                "淘宝",
                "10690001",
                "acc-tb",
                "gw1",
                NUMBERS[0],
                T0,
            )
        )
        for key, ent, status, extra in (
            ("10690001", "淘宝", "active", {"accounts": ["acc-tb"], "categories": ["marketing"]}),
            ("10690002", "京东", "active", {"accounts": ["acc-jd"], "categories": ["marketing"]}),
            ("10660004", "美团", "active", {"accounts": ["acc-mt"], "categories": ["marketing"]}),
        ):
            rec = {"port": key, "enterprise": ent, "status": status, **extra}
            s.add(
                Port(
                    key=key,
                    enterprise=ent,
                    status=status,
                    updated_at=T0,
                    record=json.dumps(rec, ensure_ascii=False),
                )
            )
        for key, ent in (("淘宝", "淘宝"), ("京东", "京东"), ("美团", "美团")):
            rec = {"signature": key, "enterprise": ent, "status": "active", "ports": []}
            s.add(
                Signature(
                    key=key,
                    enterprise=ent,
                    status="active",
                    updated_at=T0,
                    record=json.dumps(rec, ensure_ascii=False),
                )
            )
        for j, (status, source, by_us) in enumerate(
            (("granted", "platform", False), ("revoked", "mo", True))
        ):
            s.add(
                ConsentEvent(
                    msisdn_hash=HASHER(NUMBERS[0]),
                    msisdn_masked=mask_msisdn(NUMBERS[0]),
                    enterprise="淘宝",
                    status=status,
                    ts=T0 - dt.timedelta(days=2 - j),
                    source=source,
                    published_by_smsmon=by_us,
                    src_partition=0,
                    src_offset=j,
                )
            )
    return ids
