"""Fixtures: a real SQLite alert store in tmp_path, two users and a TestClient."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from smsmon.console.app import create_app
from smsmon.console.auth import add_user
from smsmon.console.settings import ConsoleSettings
from smsmon.store.db import make_engine
from tests.unit.console.data import KEY_ID, SECRET, create_schema, fill

PASSWORD = "correct horse battery"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    create_schema(eng)
    fill(eng)
    add_user(eng, "viewer1", PASSWORD, "viewer")
    add_user(eng, "handler1", PASSWORD, "handler")
    yield eng
    eng.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> ConsoleSettings:
    return ConsoleSettings(
        alert_db_url=f"sqlite:///{tmp_path / 'alerts.db'}",
        console_secret="s" * 32,
        msisdn_secret=SECRET,
        msisdn_key_id=KEY_ID,
        console_login_attempts=3,
    )


@pytest.fixture
def client(settings: ConsoleSettings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine), follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


@pytest.fixture
def login(client: TestClient) -> Callable[[str], str]:
    """Log `client` in as a user; returns the session's CSRF token."""

    def do(username: str) -> str:
        token = csrf_of(client.get("/login").text)
        r = client.post("/login", data={"csrf": token, "username": username, "password": PASSWORD})
        assert r.status_code == 303, r.text
        return csrf_of(client.get("/alerts").text)

    return do
