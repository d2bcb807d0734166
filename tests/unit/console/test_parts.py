"""Smaller parts: capped counts, CSV formula cells, charts, the CLI, settings."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from smsmon.console import charts, cli, queries
from smsmon.console.auth import LoginLimiter, authenticate
from smsmon.console.filters import AlertFilter, FilterError
from smsmon.console.settings import ConsoleSettings
from smsmon.store.db import make_engine
from smsmon.store.schema import Alert
from tests.unit.console.data import create_schema

pytestmark = pytest.mark.unit
Login = Callable[[str], str]


def test_counts_are_capped_and_exact_on_request(
    client: TestClient, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap the list says "N+" and offers an exact count, which is exact."""
    monkeypatch.setattr(queries, "COUNT_CAP", 20)
    login("viewer1")
    r = client.get("/alerts")
    assert '<strong id="total">20+</strong>' in r.text and 'id="exact"' in r.text
    r = client.get("/alerts", params={"exact": "1"})
    assert '<strong id="total">61</strong>' in r.text


def test_csv_formula_cells_are_neutralised(
    client: TestClient, login: Login, engine: Engine
) -> None:
    """A detail like "=HYPERLINK(...)" is text in the CSV, unchanged in the JSONL."""
    with Session(engine) as s, s.begin():
        s.execute(update(Alert).values(detail='=HYPERLINK("http://x")'))
    login("viewer1")
    z = zipfile.ZipFile(io.BytesIO(client.get("/export.zip", params={"port": "10690002"}).content))
    assert "'=HYPERLINK" in z.read("alerts.csv").decode()
    assert '"detail":"=HYPERLINK' in z.read("alerts.jsonl").decode()


def test_filter_parsing() -> None:
    f = AlertFilter.parse({"since": "2026-11-10", "until": "2026-11-11T08:30", "rule": " "})
    assert f.as_params() == {"since": "2026-11-10T00:00", "until": "2026-11-11T08:30"}
    with pytest.raises(FilterError, match="severity"):
        AlertFilter.parse({"severity": "urgent"})
    with pytest.raises(FilterError, match="since"):
        AlertFilter.parse({"since": "yesterday"})


def test_charts_escape_labels() -> None:
    svg = charts.bar_chart([("<script>", 3)], "x") + charts.per_day_chart(
        ["2026-11-10"], {"2026-11-10": {"a&b": 2}}, ["a&b"]
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a&amp;b" in svg


def test_limiter_window() -> None:
    lim = LoginLimiter(2, 60)
    lim.fail("ip:a")
    assert not lim.blocked("ip:a")
    lim.fail("ip:a")
    assert lim.blocked("ip:a") and not lim.blocked("ip:b")
    lim.succeed("ip:a")
    assert not lim.blocked("ip:a")


def test_add_user_reads_the_password_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`add-user` takes the first stdin line (not a terminal) and refuses a missing schema."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("SMSMON_ALERT_DB_URL", url)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    with pytest.raises(SystemExit, match="migrations"):
        cli.main(["add-user", "carol", "--role", "handler"])
    engine = make_engine(url)
    create_schema(engine)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert cli.main(["add-user", "carol", "--role", "handler"]) == 0
    assert "a long password" not in capsys.readouterr().out
    user = authenticate(engine, "carol", "a long password")
    assert user is not None and user.can_handle


def test_serve_needs_the_session_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMSMON_CONSOLE_SECRET", raising=False)
    with pytest.raises(SystemExit, match="SMSMON_CONSOLE_SECRET"):
        ConsoleSettings().session_secret()
