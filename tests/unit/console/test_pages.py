"""The console's pages against a real SQLite store: list, alert, search, cases, summary, export."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from smsmon.store.schema import Alert, CaseEvent
from tests.unit.console.data import HASHER, NUMBERS

pytestmark = pytest.mark.unit
Login = Callable[[str], str]


def test_list_shows_counts_and_filters_by_rule(client: TestClient, login: Login) -> None:
    """The list counts the filter's alerts and shows only the chosen rule."""
    login("viewer1")
    r = client.get("/alerts")
    assert r.status_code == 200
    assert '<strong id="total">61</strong>' in r.text
    r = client.get("/alerts", params={"rule": "port.account"})
    assert '<strong id="total">12</strong>' in r.text
    assert "consent.revoked</td>" not in r.text


def test_list_filters_combine(client: TestClient, login: Login) -> None:
    """Time range, enterprise, severity and case status combine with AND."""
    login("viewer1")
    params = {
        "since": "2026-11-10T12:00",
        "until": "2026-11-11T12:00",
        "enterprise": "淘宝",
        "severity": "critical",
        "case_status": "open",
    }
    r = client.get("/alerts", params=params)
    # 12 alerts in the 24 h; consent.revoked of 淘宝 is every 5th (i = 0, 5, 10).
    assert '<strong id="total">3</strong>' in r.text


def test_sort_and_pages(client: TestClient, login: Login) -> None:
    """Oldest-first sort and paging: page 2 of 25 starts at the 26th alert."""
    login("viewer1")
    r = client.get("/alerts", params={"sort": "ts", "per_page": 25, "page": 2})
    assert r.status_code == 200
    # 61 alerts, two at T0: the 26th is i = 24, T0 + 48 h.
    assert "2026-11-12 12:00:00" in r.text.split("<tbody>")[1].split("</tr>")[0]
    assert 'id="next"' in r.text and 'id="prev"' in r.text


def test_api_lists_json(client: TestClient, login: Login) -> None:
    login("viewer1")
    r = client.get("/api/alerts", params={"port": "10690002", "per_page": 25})
    body = r.json()
    assert body["total"] == "12" and all(a["port"] == "10690002" for a in body["alerts"])


def test_alert_page_has_rule_registry_consent_and_related(
    client: TestClient, login: Login, engine: Engine
) -> None:
    """The first alert (consent.revoked, port 10690001) shows its context."""
    login("viewer1")
    with Session(engine) as s:
        a = s.execute(
            select(Alert).where(Alert.event_id == "ev-000000", Alert.rule == "consent.revoked")
        ).scalar_one()
    r = client.get(f"/alerts/{a.alert_id}")
    assert r.status_code == 200
    t = r.text
    assert "marketing after unsubscribe" in t  # catalogue summary
    assert 'id="port-10690001"' in t and 'id="signature-entry"' in t
    assert "revoked" in t.split('id="consent"')[1] and "granted" in t.split('id="consent"')[1]
    assert "content.optout_missing" in t.split("Same event")[1].split("Same subscriber")[0]
    assert "138****8000" in t
    assert NUMBERS[0] not in t


def test_extension_port_shows_the_registered_code(
    client: TestClient, login: Login, engine: Engine
) -> None:
    """Port 106900011 extends the registered 10690001 (扩展码)."""
    login("viewer1")
    with Session(engine) as s:
        aid = s.execute(select(Alert.alert_id).where(Alert.port == "106900011")).scalars().first()
    r = client.get(f"/alerts/{aid}")
    assert 'id="port-10690001"' in r.text and "extends it" in r.text


def test_unknown_alert_is_404(client: TestClient, login: Login) -> None:
    login("viewer1")
    assert client.get("/alerts/nope").status_code == 404


def test_search_by_number_uses_hash_only(client: TestClient, login: Login) -> None:
    """The number goes in a POST body; the page shows the masked form and the hash."""
    csrf = login("viewer1")
    r = client.post("/search", data={"csrf": csrf, "number": "+86 138-0013-8000"})
    assert r.status_code == 200
    assert "138****8000" in r.text and HASHER(NUMBERS[0]) in r.text
    assert NUMBERS[0] not in r.text and "0013-8000" not in r.text
    assert 'id="all-alerts"' in r.text
    assert "granted" in r.text.split('id="consent"')[1]


def test_search_bad_number_is_refused_without_echo(client: TestClient, login: Login) -> None:
    csrf = login("viewer1")
    r = client.post("/search", data={"csrf": csrf, "number": "2345678901234"})
    assert r.status_code == 400 and "2345678901234" not in r.text


def test_handler_moves_a_case_and_it_is_kept(
    client: TestClient, login: Login, engine: Engine
) -> None:
    """open -> acknowledged -> resolved, each with actor and note in case_events."""
    csrf = login("handler1")
    with Session(engine) as s:
        aid = s.execute(select(Alert.alert_id).limit(1)).scalar_one()
    for status in ("acknowledged", "resolved"):
        r = client.post(
            f"/alerts/{aid}/case", data={"csrf": csrf, "to_status": status, "note": f"n-{status}"}
        )
        assert r.status_code == 303
    with Session(engine) as s:
        assert s.get(Alert, aid).case_status == "resolved"  # type: ignore[union-attr]
        events = (
            s.execute(select(CaseEvent).where(CaseEvent.alert_id == aid).order_by(CaseEvent.id))
            .scalars()
            .all()
        )
    assert [(e.from_status, e.to_status, e.actor, e.note) for e in events] == [
        ("open", "acknowledged", "handler1", "n-acknowledged"),
        ("acknowledged", "resolved", "handler1", "n-resolved"),
    ]
    page = client.get(f"/alerts/{aid}").text
    assert "n-resolved" in page and 'id="case-status" class="case-resolved"' in page


def test_disallowed_transition_is_refused(client: TestClient, login: Login, engine: Engine) -> None:
    """resolved -> acknowledged is not a move; reopening needs a note."""
    csrf = login("handler1")
    with Session(engine) as s:
        aid = s.execute(select(Alert.alert_id).limit(1)).scalar_one()
    client.post(f"/alerts/{aid}/case", data={"csrf": csrf, "to_status": "resolved"})
    r = client.post(f"/alerts/{aid}/case", data={"csrf": csrf, "to_status": "acknowledged"})
    assert r.status_code == 303 and "error=" in r.headers["location"]
    r = client.post(f"/alerts/{aid}/case", data={"csrf": csrf, "to_status": "open"})
    assert "error=" in r.headers["location"]
    with Session(engine) as s:
        assert s.get(Alert, aid).case_status == "resolved"  # type: ignore[union-attr]


def test_bulk_change_applies_to_the_filter(
    client: TestClient, login: Login, engine: Engine
) -> None:
    """Bulk false_positive on one port changes exactly its 12 alerts, with 12 case events."""
    csrf = login("handler1")
    r = client.post(
        "/cases/bulk",
        data={
            "csrf": csrf,
            "port": "10690002",
            "to_status": "false_positive",
            "note": "test traffic",
        },
    )
    assert r.status_code == 303
    assert "12+alerts+set+to+false_positive" in r.headers["location"]
    with Session(engine) as s:
        statuses = s.execute(select(Alert.port, Alert.case_status)).all()
        n_events = len(s.execute(select(CaseEvent)).all())
    assert {st for p, st in statuses if p == "10690002"} == {"false_positive"}
    assert {st for p, st in statuses if p != "10690002"} == {"open"}
    assert n_events == 12


def test_summary_pages_render_charts(client: TestClient, login: Login) -> None:
    login("viewer1")
    rng = {"since": "2026-11-01T00:00", "until": "2026-11-20T00:00"}
    r = client.get("/summary", params={"kind": "enterprise", **rng})
    assert r.status_code == 200 and "淘宝" in r.text and "<svg" in r.text
    r = client.get("/summary", params={"kind": "port", "key": "10690002", **rng})
    assert '<strong id="summary-total">12</strong>' in r.text
    assert "acc-resale" in r.text and "alerts per day by rule" in r.text
    r = client.get("/summary", params={"kind": "signature", "key": "淘宝", **rng})
    assert '<strong id="summary-total">25</strong>' in r.text


def test_export_pack_has_files_and_matching_manifest(client: TestClient, login: Login) -> None:
    """The zip holds CSV, JSONL and a manifest whose hashes and row count match."""
    login("viewer1")
    r = client.get("/export.zip", params={"enterprise": "京东"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(z.namelist()) == ["alerts.csv", "alerts.jsonl", "manifest.json"]
    manifest = json.loads(z.read("manifest.json"))
    assert manifest["filter"] == {"enterprise": "京东"} and manifest["row_count"] == 12
    for name in ("alerts.csv", "alerts.jsonl"):
        assert hashlib.sha256(z.read(name)).hexdigest() == manifest["files"][name]["sha256"]
    lines = z.read("alerts.jsonl").decode().splitlines()
    assert len(lines) == 12 and all(json.loads(x)["enterprise"] == "京东" for x in lines)
    assert len(z.read("alerts.csv").decode().splitlines()) == 13
    for number in NUMBERS:
        assert number.encode() not in r.content
