"""The console's Starlette app: routes, sessions, CSRF, login and the security headers."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsmon.console import auth, cases, charts, queries
from smsmon.console.export import build_pack
from smsmon.console.filters import PAGE_SIZES, SORTS, AlertFilter, FilterError
from smsmon.console.rules_info import RULES, rule_info
from smsmon.console.settings import ConsoleSettings
from smsmon.contract.canonical import CanonicalError, MsisdnHasher, canonical_msisdn
from smsmon.store.schema import Alert

log = logging.getLogger("smsmon.console")
HERE = Path(__file__).parent
MAX_BODY_BYTES = 64 * 1024


class LoginRequired(Exception):
    """Raised by a route when the request has no valid session."""


class Forbidden(Exception):
    """Raised when the user's role may not do this, or the CSRF token is missing or wrong."""


class Guard:
    """Pure ASGI middleware: refuses over-long query strings (414) and bodies (413) before any
    parsing, and sets the security headers on every response."""

    def __init__(self, app: ASGIApp, max_query_bytes: int) -> None:
        self.app = app
        self.max_query = max_query_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_query:
            await Response("query string too long", 414, media_type="text/plain")(
                scope, receive, send
            )
            return
        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            await Response("request body too large", 413, media_type="text/plain")(
                scope, receive, send
            )
            return

        received = 0

        async def bounded_receive() -> Message:
            # A chunked body has no content-length to check up front: count it as it comes.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise HTTPException(413, "request body too large")
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.extend(
                    [
                        (b"content-security-policy",
                         b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
                         b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
                        (b"x-content-type-options", b"nosniff"),
                        (b"x-frame-options", b"DENY"),
                        (b"referrer-policy", b"no-referrer"),
                        (b"cache-control", b"no-store"),
                    ]
                )  # fmt: skip
            await send(message)

        await self.app(scope, bounded_receive, send_with_headers)


def fmt_time(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_value(value: Any) -> str:
    """A registry record's value: lists joined, objects as JSON."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class Console:
    """The app's state: settings, engine, templates, limiter, hasher."""

    def __init__(self, settings: ConsoleSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["t"] = fmt_time
        self.templates.env.filters["v"] = fmt_value
        self.templates.env.globals["rules"] = RULES
        self.limiter = auth.LoginLimiter(
            settings.console_login_attempts, settings.console_login_window_seconds
        )
        secret = settings.hashing_secret()
        self.hasher = MsisdnHasher(secret, settings.msisdn_key_id) if secret else None

    # --- session helpers ---------------------------------------------------------------

    def csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = auth.new_csrf_token()
            request.session["csrf"] = token
        return token

    def user(self, request: Request) -> auth.CurrentUser:
        name = request.session.get("user")
        started = request.session.get("at")
        if not isinstance(name, str) or not isinstance(started, int | float):
            raise LoginRequired
        if time.time() - started > self.settings.console_session_hours * 3600:
            request.session.clear()
            raise LoginRequired
        user = auth.load_user(self.engine, name)
        if user is None:
            request.session.clear()
            raise LoginRequired
        return user

    async def form(self, request: Request) -> FormData:
        """The POSTed form, after the CSRF check."""
        form = await request.form(max_files=0, max_fields=100, max_part_size=16 * 1024)
        if not auth.csrf_ok(request.session.get("csrf"), form.get("csrf")):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the page")
        return form

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("user", None)
        ctx["csrf"] = self.csrf(request)
        ctx["request"] = request
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    def session(self) -> Session:
        return Session(self.engine)

    # --- login ------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", next=_safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        username = str(form.get("username", ""))[:200]
        password = str(form.get("password", ""))
        client = f"ip:{request.client.host if request.client else '?'}"
        keys = (client, f"user:{username}")
        if self.limiter.blocked(*keys):
            log.warning("login refused: too many failures (%s)", client)
            return self.render(
                request, "login.html", 429, error="Too many failed logins; wait a few minutes."
            )
        user = await run_in_threadpool(auth.authenticate, self.engine, username, password)
        if user is None:
            self.limiter.fail(*keys)
            log.info("login failed (%s)", client)
            return self.render(request, "login.html", 401, error="Wrong username or password.")
        self.limiter.succeed(*keys)
        request.session.clear()
        request.session.update(
            {"user": user.username, "at": int(time.time()), "csrf": auth.new_csrf_token()}
        )
        log.info("login %s", user.username)
        return RedirectResponse(_safe_next(str(form.get("next", ""))) or "/alerts", 303)

    async def logout(self, request: Request) -> Response:
        await self.form(request)
        request.session.clear()
        return RedirectResponse("/login", 303)

    # --- alerts -----------------------------------------------------------------------

    def _list_args(self, request: Request) -> tuple[AlertFilter, str, int, int]:
        q = request.query_params
        flt = AlertFilter.parse(q)
        sort = q.get("sort", "-ts")
        if sort not in SORTS:
            raise FilterError("sort: unknown sort key")
        try:
            page = int(q.get("page", "1"))
            per_page = int(q.get("per_page", "50"))
        except ValueError:
            raise FilterError("page: not a number") from None
        if per_page not in PAGE_SIZES or page < 1:
            raise FilterError("page: out of range")
        return flt, sort, page, per_page

    def alerts(self, request: Request) -> Response:
        user = self.user(request)
        try:
            flt, sort, page, per_page = self._list_args(request)
        except FilterError as exc:
            return self.render(request, "error.html", 400, user=user, error=str(exc))
        exact = request.query_params.get("exact") == "1"
        with self.session() as s:
            result = queries.list_alerts(s, flt, sort, page, per_page, exact)
        return self.render(
            request,
            "alerts.html",
            user=user,
            flt=flt,
            f=flt.as_params(),
            sort=sort,
            sorts=list(SORTS),
            page=result,
            page_sizes=PAGE_SIZES,
            # The catalogue, plus a filtered rule it lacks (a newer worker's rule).
            rule_choices=sorted(set(RULES) | ({flt.rule} if flt.rule else set())),
            transitions=cases.TRANSITIONS,
            message=request.query_params.get("done"),
        )

    def api_alerts(self, request: Request) -> Response:
        self.user(request)
        try:
            flt, sort, page, per_page = self._list_args(request)
        except FilterError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        with self.session() as s:
            result = queries.list_alerts(s, flt, sort, page, per_page)
            rows = [
                {c: _jsonable(getattr(a, c)) for c in ("alert_id", "rule", "severity", "ts",
                 "enterprise", "signature", "port", "account", "gateway", "msisdn_masked",
                 "case_status")}
                for a in result.rows
            ]  # fmt: skip
        return JSONResponse(
            {"filter": flt.as_params(), "total": str(result.total), "page": result.page,
             "has_next": result.has_next, "alerts": rows}
        )  # fmt: skip

    def alert(self, request: Request) -> Response:
        user = self.user(request)
        alert_id = request.path_params["alert_id"]
        if len(alert_id) > 200:
            raise HTTPException(404)
        with self.session() as s:
            ctx = queries.alert_context(s, alert_id)
            if ctx is None:
                raise HTTPException(404, "no such alert")
            return self.render(
                request,
                "alert.html",
                user=user,
                c=ctx,
                a=ctx.alert,
                info=rule_info(ctx.alert.rule),
                next_statuses=cases.TRANSITIONS.get(ctx.alert.case_status, ()),
                error=request.query_params.get("error"),
            )

    async def change_case(self, request: Request) -> Response:
        user = self.user(request)
        form = await self.form(request)
        if not user.can_handle:
            raise Forbidden("only handlers change cases")
        alert_id = request.path_params["alert_id"]
        to_status = str(form.get("to_status", ""))
        note = str(form.get("note", ""))

        def run() -> None:
            with self.session() as s:
                cases.change_one(s, alert_id, to_status, note, user.username)

        try:
            await run_in_threadpool(run)
        except cases.CaseError as exc:
            with self.session() as s:
                found = s.get(Alert, alert_id) is not None
            if not found:
                raise HTTPException(404, "no such alert") from None
            return RedirectResponse(f"/alerts/{alert_id}?" + _q(error=str(exc)), 303)
        log.info("case %s -> %s by %s", alert_id, to_status, user.username)
        return RedirectResponse(f"/alerts/{alert_id}", 303)

    async def bulk(self, request: Request) -> Response:
        user = self.user(request)
        form = await self.form(request)
        if not user.can_handle:
            raise Forbidden("only handlers change cases")
        try:
            flt = AlertFilter.parse(form)
        except FilterError as exc:
            return self.render(request, "error.html", 400, user=user, error=str(exc))
        to_status = str(form.get("to_status", ""))
        note = str(form.get("note", ""))
        limit = self.settings.console_bulk_max_rows

        def run() -> tuple[int, bool]:
            with self.session() as s:
                return cases.change_filtered(s, flt, to_status, note, user.username, limit)

        try:
            changed, more = await run_in_threadpool(run)
        except cases.CaseError as exc:
            return self.render(request, "error.html", 400, user=user, error=str(exc))
        log.info("bulk case change -> %s by %s: %d alerts", to_status, user.username, changed)
        done = f"{changed} alerts set to {to_status}" + (
            f" (limit {limit} reached: repeat for the rest)" if more else ""
        )
        return RedirectResponse("/alerts?" + flt.query(done=done), 303)

    # --- search by subscriber number ----------------------------------------------------

    def search_page(self, request: Request) -> Response:
        user = self.user(request)
        return self.render(request, "search.html", user=user, enabled=self.hasher is not None)

    async def search(self, request: Request) -> Response:
        user = self.user(request)
        form = await self.form(request)
        number = str(form.get("number", ""))[:64]
        if self.hasher is None:
            return self.render(
                request, "search.html", 503, user=user, enabled=False,
                error="Number search needs SMSMON_MSISDN_SECRET (the workers' secret).",
            )  # fmt: skip
        try:
            msisdn = canonical_msisdn(number)
        except CanonicalError:
            # The input is not echoed back: it may be a number in some other form.
            return self.render(
                request, "search.html", 400, user=user, enabled=True,
                error="That is not a Chinese mobile number (11 digits starting with 1, "
                "optionally +86).",
            )  # fmt: skip
        digest = self.hasher(msisdn)
        masked = f"{msisdn[:3]}****{msisdn[-4:]}"
        del msisdn, number
        flt = AlertFilter(msisdn_hash=digest)
        with self.session() as s:
            result = queries.list_alerts(s, flt, "-ts", 1, 50)
            consent = queries.consent_for_hash(s, digest)
        return self.render(
            request, "search.html", user=user, enabled=True, masked=masked, digest=digest,
            page=result, consent=consent, list_url="/alerts?" + flt.query(),
        )  # fmt: skip

    # --- summaries and export ------------------------------------------------------------

    def summary(self, request: Request) -> Response:
        user = self.user(request)
        q = request.query_params
        kind = q.get("kind", "enterprise")
        if kind not in queries.SUMMARY_KINDS:
            return self.render(request, "error.html", 400, user=user, error="kind: unknown")
        key = q.get("key") or None
        if key is not None and len(key) > 200:
            return self.render(request, "error.html", 400, user=user, error="key: too long")
        try:
            rng = AlertFilter.parse({"since": q.get("since", ""), "until": q.get("until", "")})
        except FilterError as exc:
            return self.render(request, "error.html", 400, user=user, error=str(exc))
        until = rng.until or _next_midnight()
        since = rng.since or until - dt.timedelta(days=30)
        if not since < until or until - since > dt.timedelta(days=400):
            return self.render(
                request, "error.html", 400, user=user, error="range: since < until, ≤ 400 days"
            )
        with self.session() as s:
            sm = queries.summary(s, kind, key, since, until)
        rules = [r for r, _ in sm.by_rule]
        return self.render(
            request,
            "summary.html",
            user=user,
            sm=sm,
            since=since,
            until=until,
            range_q=_q(
                since=since.strftime("%Y-%m-%dT%H:%M"), until=until.strftime("%Y-%m-%dT%H:%M")
            ),
            day_chart=charts.per_day_chart(sm.days, sm.per_day, rules),
            top_charts={c: charts.bar_chart(items, c) for c, items in sm.top.items()},
            kinds=list(queries.SUMMARY_KINDS),
            q=_q,
        )

    def export(self, request: Request) -> Response:
        user = self.user(request)
        try:
            flt = AlertFilter.parse(request.query_params)
        except FilterError as exc:
            return self.render(request, "error.html", 400, user=user, error=str(exc))
        limit = self.settings.console_export_max_rows
        with self.session() as s:
            pack, manifest = build_pack(
                queries.export_rows(s, flt, limit), flt, user.username, limit,
                self.engine.dialect.name,
            )  # fmt: skip
        log.info("export by %s: %d alerts, filter %s", user.username, manifest["row_count"],
                 json.dumps(manifest["filter"], ensure_ascii=False))  # fmt: skip
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")

        def chunks() -> Any:
            with pack:
                while chunk := pack.read(1 << 16):
                    yield chunk

        return StreamingResponse(
            chunks(),
            media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="smsmon-evidence-{stamp}.zip"'},
        )

    def home(self, request: Request) -> Response:
        self.user(request)
        return RedirectResponse("/alerts", 303)


def _q(**params: str) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def _next_midnight() -> dt.datetime:
    today = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    return dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC)


def _jsonable(v: Any) -> Any:
    return fmt_time(v) if isinstance(v, dt.datetime) else v


def _safe_next(value: str | None) -> str:
    """Only same-site paths: no scheme, no `//host`, no backslash tricks."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return ""
    return value[:500]


def create_app(settings: ConsoleSettings, engine: Engine | None = None) -> Starlette:
    """The console app; `engine` defaults to one for `SMSMON_ALERT_DB_URL`."""
    from smsmon.store.db import make_engine

    console = Console(settings, engine or make_engine(settings.alert_db_url))
    endpoint = Callable[[Request], Awaitable[Response] | Response]
    routes: list[Route | Mount] = [
        Route("/", console.home),
        Route("/login", console.login_page, methods=["GET"]),
        Route("/login", console.login, methods=["POST"]),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/alerts", console.alerts, methods=["GET"]),
        Route("/api/alerts", console.api_alerts, methods=["GET"]),
        Route("/alerts/{alert_id}", console.alert, methods=["GET"]),
        Route("/alerts/{alert_id}/case", console.change_case, methods=["POST"]),
        Route("/cases/bulk", console.bulk, methods=["POST"]),
        Route("/search", console.search_page, methods=["GET"]),
        Route("/search", console.search, methods=["POST"]),
        Route("/summary", console.summary, methods=["GET"]),
        Route("/export.zip", console.export, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    del endpoint

    async def login_required(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "login required"}, 401)
        target = request.url.path if request.method == "GET" else ""
        return RedirectResponse("/login?" + _q(next=target) if target else "/login", 303)

    async def forbidden(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, 403)
        return console.render(request, "error.html", 403, error=str(exc) or "forbidden")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return console.render(request, "error.html", exc.status_code, error=exc.detail)

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(Guard, max_query_bytes=settings.console_max_query_bytes),
            Middleware(
                SessionMiddleware,
                secret_key=settings.session_secret(),
                session_cookie="smsmon_console",
                max_age=int(settings.console_session_hours * 3600),
                same_site="strict",
                https_only=settings.console_https_only,
            ),
        ],
        exception_handlers={
            LoginRequired: login_required,
            Forbidden: forbidden,
            HTTPException: http_error,
        },
    )
    app.state.console = console
    return app
