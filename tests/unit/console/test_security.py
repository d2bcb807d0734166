"""The obvious attacks on the console: no session, wrong role, forged forms, injection,
over-long query strings, password guessing, cookie flags."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from smsmon.console.auth import add_user, authenticate
from smsmon.store.schema import Alert, CaseEvent, User
from tests.unit.console.conftest import PASSWORD, csrf_of

pytestmark = pytest.mark.unit
Login = Callable[[str], str]

PAGES = [
    "/",
    "/alerts",
    "/api/alerts",
    "/alerts/x",
    "/search",
    "/summary",
    "/export.zip",
    "/summary?kind=port&key=10690002",
]
POSTS = ["/alerts/x/case", "/cases/bulk", "/search", "/logout"]


def _first_alert(engine: Engine) -> str:
    with Session(engine) as s:
        return s.execute(select(Alert.alert_id).order_by(Alert.alert_id).limit(1)).scalar_one()


def _case_events(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.execute(select(func.count()).select_from(CaseEvent)).scalar_one())


@pytest.mark.parametrize("path", PAGES)
def test_no_session_gets_no_page(client: TestClient, path: str) -> None:
    """Every page without a session redirects to the login (API: 401), showing no data."""
    r = client.get(path)
    if path.startswith("/api/"):
        assert r.status_code == 401
    else:
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert "淘宝" not in r.text


@pytest.mark.parametrize("path", POSTS)
def test_no_session_cannot_post(client: TestClient, engine: Engine, path: str) -> None:
    csrf = csrf_of(client.get("/login").text)  # a token, but no user
    r = client.post(path, data={"csrf": csrf, "to_status": "resolved", "number": "13800138000"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert _case_events(engine) == 0


def test_viewer_cannot_change_a_case(client: TestClient, login: Login, engine: Engine) -> None:
    """A viewer with a valid CSRF token is still refused, single and bulk."""
    csrf = login("viewer1")
    aid = _first_alert(engine)
    r = client.post(f"/alerts/{aid}/case", data={"csrf": csrf, "to_status": "acknowledged"})
    assert r.status_code == 403
    r = client.post("/cases/bulk", data={"csrf": csrf, "to_status": "resolved"})
    assert r.status_code == 403
    assert _case_events(engine) == 0
    with Session(engine) as s:
        assert set(s.execute(select(Alert.case_status)).scalars()) == {"open"}
    assert 'id="case-form"' not in client.get(f"/alerts/{aid}").text


@pytest.mark.parametrize("token", [None, "", "forged-token-value"])
def test_forged_form_without_csrf_is_refused(
    client: TestClient, login: Login, engine: Engine, token: str | None
) -> None:
    """A handler's session, but the form lacks the session's token (cross-site post)."""
    login("handler1")
    aid = _first_alert(engine)
    data = {"to_status": "acknowledged"} | ({"csrf": token} if token is not None else {})
    assert client.post(f"/alerts/{aid}/case", data=data).status_code == 403
    assert client.post("/cases/bulk", data=data).status_code == 403
    assert client.post("/search", data={**data, "number": "13800138000"}).status_code == 403
    assert _case_events(engine) == 0


def test_login_form_needs_csrf(client: TestClient) -> None:
    client.get("/login")
    r = client.post("/login", data={"username": "handler1", "password": PASSWORD})
    assert r.status_code == 403
    assert client.get("/alerts").status_code == 303


INJECTIONS = [
    "' OR '1'='1",
    "x'; DROP TABLE alerts; --",
    '" OR 1=1 --',
    "%' --",
    "\\",
    "淘宝' --",
    "1 UNION SELECT password_hash FROM users",
]
FIELDS = [
    "rule",
    "enterprise",
    "signature",
    "port",
    "account",
    "gateway",
    "msisdn_hash",
    "severity",
    "case_status",
    "since",
    "until",
    "sort",
    "page",
    "per_page",
]


@pytest.mark.parametrize("field", FIELDS)
def test_sql_metacharacters_in_every_filter(
    client: TestClient, login: Login, engine: Engine, field: str
) -> None:
    """Each filter takes SQL metacharacters as plain data: no match or a 400, never a 500,
    never more rows, and the tables survive."""
    csrf = login("handler1")
    for value in INJECTIONS:
        r = client.get("/alerts", params={field: value})
        assert r.status_code in (200, 400), (field, value, r.status_code)
        if r.status_code == 200:
            assert '<strong id="total">0</strong>' in r.text
        assert "$argon2" not in r.text
        assert client.get("/export.zip", params={field: value}).status_code in (200, 400)
        if field in ("sort", "page", "per_page"):
            continue  # not part of a bulk change's filter
        r = client.post(
            "/cases/bulk", data={"csrf": csrf, field: value, "to_status": "acknowledged"}
        )
        assert r.status_code in (303, 400)
    r = client.get("/summary", params={"kind": "port", "key": INJECTIONS[0]})
    assert r.status_code == 200 and '<strong id="summary-total">0</strong>' in r.text
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(Alert)).scalar_one() == 61
        assert s.execute(select(func.count()).select_from(User)).scalar_one() == 2
    assert _case_events(engine) == 0


def test_overlong_query_string_is_refused(client: TestClient, login: Login) -> None:
    login("viewer1")
    r = client.get("/alerts", params={"enterprise": "x" * 3000})
    assert r.status_code == 414
    assert client.get("/alerts", params={"enterprise": "x" * 201}).status_code == 400


def test_login_is_rate_limited(client: TestClient) -> None:
    """After 3 failures (the fixture's limit) even the right password is refused for a while."""
    for _ in range(3):
        csrf = csrf_of(client.get("/login").text)
        r = client.post("/login", data={"csrf": csrf, "username": "handler1", "password": "nope"})
        assert r.status_code == 401
    csrf = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"csrf": csrf, "username": "handler1", "password": PASSWORD})
    assert r.status_code == 429
    assert client.get("/alerts").status_code == 303


def test_session_cookie_flags_and_headers(client: TestClient) -> None:
    r = client.get("/login")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"


def test_open_redirect_after_login_is_refused(client: TestClient) -> None:
    csrf = csrf_of(client.get("/login").text)
    r = client.post(
        "/login",
        data={
            "csrf": csrf,
            "username": "viewer1",
            "password": PASSWORD,
            "next": "//evil.example/x",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/alerts"


def test_disabled_user_loses_the_session(client: TestClient, login: Login, engine: Engine) -> None:
    login("viewer1")
    assert client.get("/alerts").status_code == 200
    with Session(engine) as s, s.begin():
        s.get(User, "viewer1").disabled = True  # type: ignore[union-attr]
    assert client.get("/alerts").status_code == 303


def test_passwords_are_argon2_and_short_ones_refused(engine: Engine) -> None:
    with Session(engine) as s:
        assert s.get(User, "handler1").password_hash.startswith("$argon2id$")  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="password"):
        add_user(engine, "x", "short", "viewer")
    with pytest.raises(ValueError, match="role"):
        add_user(engine, "x", PASSWORD, "admin")
    assert authenticate(engine, "handler1", "wrong password") is None
    assert authenticate(engine, "nobody", PASSWORD) is None


def test_chunked_oversized_body_is_refused(client: TestClient, login: Login) -> None:
    """A body without content-length is counted as it arrives and cut at 64 KiB."""
    csrf = login("handler1")

    def chunks():  # type: ignore[no-untyped-def]
        yield f"csrf={csrf}&note=".encode()
        for _ in range(100):
            yield b"x" * 1024

    r = client.post(
        "/cases/bulk",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413
