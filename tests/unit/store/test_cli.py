"""`python -m smsmon.store migrate|prune` and `smsmon store` registration."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from smsmon.store import schema
from smsmon.store.cli import register_cli
from smsmon.store.db import prune
from smsmon.store.writer import Writer

from .conftest import NOW, TOPICS, alert, src

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SMSMON_ALERT_DB_URL": f"sqlite:///{tmp_path / 'db' / 'alerts.db'}",
        "SMSMON_MSISDN_SECRET": "cli-test",
    }
    return subprocess.run(
        [sys.executable, "-m", "smsmon.store", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_subcommand_creates_the_database(tmp_path: Path) -> None:
    """`python -m smsmon.store migrate` creates the file and reports the revision."""
    first = _run(tmp_path, "migrate")
    assert first.returncode == 0, first.stderr
    assert "schema empty -> 0002" in first.stdout
    again = _run(tmp_path, "migrate")
    assert "schema 0002 -> 0002" in again.stdout
    assert (tmp_path / "db" / "alerts.db").exists()


def test_prune_refuses_a_non_positive_age(tmp_path: Path) -> None:
    """A clear error, exit 2."""
    out = _run(tmp_path, "prune", "--older-than", "0")
    assert out.returncode == 2 and "--older-than" in out.stderr


def test_prune_deletes_old_alerts_with_their_case_events(writer: Writer) -> None:
    """Alerts older than the cut go, with their case events; --keep-open keeps open cases."""
    engine = writer.engine
    writer.write([src(TOPICS.alerts, i, alert(i)) for i in range(3)])  # ts 2026-11-30
    with engine.begin() as conn:
        ids = conn.scalars(select(schema.Alert.alert_id).order_by(schema.Alert.ts)).all()
        conn.execute(
            schema.Alert.__table__.update()
            .where(schema.Alert.alert_id == ids[0])
            .values(case_status="resolved")
        )
        conn.execute(
            insert(schema.CaseEvent).values(
                alert_id=ids[0], from_status="open", to_status="resolved", actor="h", at=NOW
            )
        )
    later = NOW + dt.timedelta(days=40)
    kept = prune(engine, dt.timedelta(days=30), now=later, keep_open=True)
    assert kept["alerts"] == 1
    counts = prune(engine, dt.timedelta(days=30), now=later, chunk=1)
    assert counts["alerts"] == 2
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(schema.Alert)) == 0
        assert conn.scalar(select(func.count()).select_from(schema.CaseEvent)) == 0


def test_register_cli_adds_store_and_subcommands() -> None:
    """The lead wires register_cli into smsmon.cli like simulate/archive/audit."""
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    run = parser.parse_args(["store", "--until-idle", "5"])
    assert run.func.__name__ == "cmd_store" and run.until_idle == 5
    assert parser.parse_args(["store", "migrate"]).func.__name__ == "cmd_migrate"
    pr = parser.parse_args(["store", "prune", "--older-than", "90", "--keep-open"])
    assert pr.func.__name__ == "cmd_prune" and pr.older_than == 90 and pr.keep_open


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    """No traceback: the URL (without password) and what to check."""
    env_url = "postgresql://smsmon:secret-pw@127.0.0.1:1/none"
    out = subprocess.run(
        [sys.executable, "-m", "smsmon.store", "migrate"],
        cwd=ROOT,
        env={**os.environ, "SMSMON_ALERT_DB_URL": env_url, "SMSMON_MSISDN_SECRET": "x"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1
    assert "cannot use the alert database postgresql+psycopg://smsmon:***@127.0.0.1:1/none" in (
        out.stderr
    )
    assert "secret-pw" not in out.stderr and "Traceback" not in out.stderr
