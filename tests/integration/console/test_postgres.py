"""The console's queries on a real PostgreSQL (the store's session server): list, alert,
cases, summaries (their per-day grouping is dialect-specific) and export."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from smsmon.console.app import create_app
from smsmon.console.auth import add_user
from smsmon.console.settings import ConsoleSettings
from smsmon.store.db import make_engine
from smsmon.store.schema import Alert, CaseEvent
from tests.integration.store.conftest import Postgres, create_database
from tests.unit.console.data import HASHER, KEY_ID, NUMBERS, SECRET, create_schema, fill

pytestmark = pytest.mark.integration
PASSWORD = "pg password 1234"


@pytest.fixture
def pg_engine(postgres: Postgres) -> Iterator[Engine]:
    engine = make_engine(create_database(postgres))
    create_schema(engine)
    fill(engine)
    add_user(engine, "handler1", PASSWORD, "handler")
    yield engine
    engine.dispose()


@pytest.fixture
def client(pg_engine: Engine) -> Iterator[TestClient]:
    settings = ConsoleSettings(console_secret="p" * 32, msisdn_secret=SECRET, msisdn_key_id=KEY_ID)
    with TestClient(create_app(settings, pg_engine), follow_redirects=False) as c:
        token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
        assert token
        r = c.post(
            "/login", data={"csrf": token.group(1), "username": "handler1", "password": PASSWORD}
        )
        assert r.status_code == 303
        yield c


def _csrf(c: TestClient) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', c.get("/alerts").text)
    assert m
    return m.group(1)


def test_pages_on_postgresql(client: TestClient, pg_engine: Engine) -> None:
    r = client.get(
        "/alerts",
        params={
            "enterprise": "淘宝",
            "since": "2026-11-10T12:00",
            "until": "2026-11-11T12:00",
            "severity": "critical",
        },
    )
    assert '<strong id="total">3</strong>' in r.text
    r = client.get("/alerts", params={"rule": "x' OR '1'='1"})
    assert '<strong id="total">0</strong>' in r.text
    with Session(pg_engine) as s:
        aid = s.execute(
            select(Alert.alert_id).where(
                Alert.event_id == "ev-000000", Alert.rule == "consent.revoked"
            )
        ).scalar_one()
    page = client.get(f"/alerts/{aid}").text
    assert 'id="port-10690001"' in page and "content.optout_missing" in page
    assert "granted" in page.split('id="consent"')[1]

    r = client.get(
        "/summary",
        params={
            "kind": "port",
            "key": "10690002",
            "since": "2026-11-10T00:00",
            "until": "2026-11-16T00:00",
        },
    )
    assert '<strong id="summary-total">12</strong>' in r.text
    # Day buckets are UTC days: this port has an alert every 10 h from 2026-11-10 16:00 UTC.
    assert "2026-11-11 port.account: 3" in r.text

    csrf = _csrf(client)
    r = client.post(
        f"/alerts/{aid}/case", data={"csrf": csrf, "to_status": "acknowledged", "note": "pg"}
    )
    assert r.status_code == 303
    r = client.post(
        "/cases/bulk", data={"csrf": csrf, "port": "10690002", "to_status": "false_positive"}
    )
    assert r.status_code == 303 and "12+alerts" in r.headers["location"]
    with Session(pg_engine) as s:
        assert s.get(Alert, aid).case_status == "acknowledged"  # type: ignore[union-attr]
        assert len(s.execute(select(CaseEvent)).all()) == 13

    r = client.post("/search", data={"csrf": csrf, "number": NUMBERS[0]})
    assert HASHER(NUMBERS[0]) in r.text and NUMBERS[0] not in r.text

    z = zipfile.ZipFile(io.BytesIO(client.get("/export.zip", params={"port": "10690002"}).content))
    manifest = json.loads(z.read("manifest.json"))
    assert manifest["row_count"] == 12 and manifest["database"] == "postgresql"
    assert {json.loads(x)["case_status"] for x in z.read("alerts.jsonl").decode().splitlines()} == {
        "false_positive"
    }
