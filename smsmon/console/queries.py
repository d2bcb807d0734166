"""Read queries of the console: the alert list, an alert with its context, summaries."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, desc, func, literal_column, select
from sqlalchemy.orm import Session

from smsmon.console.filters import SORTS, AlertFilter
from smsmon.store.schema import CASE_STATUSES, Alert, CaseEvent, ConsentEvent, Port, Signature

COUNT_CAP = 10_000
"""Counts stop here ("10,000+") unless asked for exactly: counting stops after this many index
entries, so the list stays fast at millions of alerts (docs/console.md)."""
COUNT_CAP_COMBINED = 1_000
"""The cap when several columns are filtered: then each counted row is read from the table
(one index serves one column), so the cap bounds the work."""
MAX_OFFSET = 10_000
"""Deepest row the list pages to; narrower filters find the rest."""
RELATED_LIMIT = 50
RELATED_WINDOW = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Count:
    value: int
    capped: bool

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


@dataclass(slots=True)
class Page:
    rows: list[Alert]
    total: Count
    by_status: dict[str, Count]
    page: int
    per_page: int
    has_next: bool


def capped_count(s: Session, cond: ColumnElement[bool], cap: int | None = COUNT_CAP) -> Count:
    """count(*) of at most `cap` + 1 matching rows (None: exact)."""
    # A constant, not a column: a one-column filter is then answered from its (column, ts)
    # index alone, without reading the table.
    inner: Select[Any] = select(literal_column("1").label("one")).select_from(Alert).where(cond)
    if cap is None:
        n = int(s.execute(select(func.count()).select_from(inner.subquery())).scalar_one())
        return Count(n, False)
    n = int(
        s.execute(select(func.count()).select_from(inner.limit(cap + 1).subquery())).scalar_one()
    )
    return Count(min(n, cap), n > cap)


def status_counts(s: Session, cond: ColumnElement[bool]) -> dict[str, Count]:
    """Alerts per case status of a filter known to match at most COUNT_CAP rows."""
    stmt = select(Alert.case_status, func.count()).where(cond).group_by(Alert.case_status)
    found = {str(k): int(n) for k, n in s.execute(stmt)}
    return {st: Count(found.get(st, 0), False) for st in CASE_STATUSES}


def _ordered(stmt: Select[Any], sort: str) -> Select[Any]:
    column, descending = SORTS.get(sort, SORTS["-ts"])
    col = getattr(Alert, column)
    if column == "ts":
        return stmt.order_by(desc(col) if descending else col, Alert.alert_id)
    # Within equal keys the newest first, which the (column, ts) indexes deliver.
    return stmt.order_by(col, desc(Alert.ts), Alert.alert_id)


def list_alerts(
    s: Session, flt: AlertFilter, sort: str, page: int, per_page: int, exact: bool = False
) -> Page:
    """One page of alerts (offset paging, bounded depth) and the counts of the filter: capped
    unless `exact`, per case status when the filter matches at most COUNT_CAP alerts."""
    page = max(1, min(page, MAX_OFFSET // per_page + 1))
    cond = flt.clause()
    stmt = _ordered(select(Alert).where(cond), sort).offset((page - 1) * per_page)
    rows = list(s.execute(stmt.limit(per_page + 1)).scalars())
    has_next = len(rows) > per_page and page * per_page < MAX_OFFSET
    cap = COUNT_CAP if flt.columns_filtered() <= 1 else COUNT_CAP_COMBINED
    total = capped_count(s, cond, None if exact else cap)
    by_status: dict[str, Count] = {}
    if flt.case_status is None and not total.capped and total.value <= COUNT_CAP_COMBINED:
        by_status = status_counts(s, cond)
    return Page(rows[:per_page], total, by_status, page, per_page, has_next)


def export_rows(s: Session, flt: AlertFilter, limit: int) -> Any:
    """A streaming iterator of the filter's alerts, oldest first."""
    stmt = select(Alert).where(flt.clause()).order_by(Alert.ts, Alert.alert_id).limit(limit)
    return s.execute(stmt.execution_options(yield_per=2000)).scalars()


@dataclass(slots=True)
class AlertContext:
    """An alert and what an officer needs beside it."""

    alert: Alert
    payload: dict[str, Any]
    ports: list[tuple[Port, dict[str, Any]]]
    signature: tuple[Signature, dict[str, Any]] | None
    consent: list[ConsentEvent]
    same_event: list[Alert]
    same_msisdn: list[Alert]
    same_sender: list[Alert]
    cases: list[CaseEvent] = field(default_factory=list)


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"unreadable": True}
    return value if isinstance(value, dict) else {"value": value}


def port_candidates(address: str) -> list[str]:
    """Registered codes a source address may extend (扩展码): its prefixes of 3+ digits."""
    return [address[:i] for i in range(len(address), 2, -1)]


def alert_context(s: Session, alert_id: str) -> AlertContext | None:
    a = s.get(Alert, alert_id)
    if a is None:
        return None
    ports: list[tuple[Port, dict[str, Any]]] = []
    if a.port:
        found = s.execute(select(Port).where(Port.key.in_(port_candidates(a.port)))).scalars()
        ports = [(p, _json(p.record)) for p in sorted(found, key=lambda p: -len(p.key))]
    sig = None
    if a.signature:
        row = s.get(Signature, a.signature)
        sig = (row, _json(row.record)) if row is not None else None
    consent: list[ConsentEvent] = []
    if a.msisdn_hash and a.enterprise:
        consent = list(
            s.execute(
                select(ConsentEvent)
                .where(
                    ConsentEvent.msisdn_hash == a.msisdn_hash,
                    ConsentEvent.enterprise == a.enterprise,
                )
                .order_by(ConsentEvent.ts, ConsentEvent.id)
                .limit(500)
            ).scalars()
        )
    window = and_(Alert.ts >= a.ts - RELATED_WINDOW, Alert.ts <= a.ts, Alert.alert_id != a.alert_id)
    same_event: list[Alert] = []
    if a.event_id:
        same_event = list(
            s.execute(
                select(Alert)
                .where(Alert.event_id == a.event_id, Alert.alert_id != a.alert_id)
                .order_by(Alert.rule)
                .limit(RELATED_LIMIT)
            ).scalars()
        )
    same_msisdn: list[Alert] = []
    if a.msisdn_hash:
        same_msisdn = _recent(s, and_(window, Alert.msisdn_hash == a.msisdn_hash))
    sender: ColumnElement[bool] | None = None
    if a.signature:
        sender = Alert.signature == a.signature
    elif a.port:
        sender = Alert.port == a.port
    same_sender = _recent(s, and_(window, sender)) if sender is not None else []
    cases = list(
        s.execute(
            select(CaseEvent).where(CaseEvent.alert_id == a.alert_id).order_by(CaseEvent.at)
        ).scalars()
    )
    return AlertContext(
        a, _json(a.payload), ports, sig, consent, same_event, same_msisdn, same_sender, cases
    )


def _recent(s: Session, cond: ColumnElement[bool]) -> list[Alert]:
    stmt = select(Alert).where(cond).order_by(desc(Alert.ts)).limit(RELATED_LIMIT)
    return list(s.execute(stmt).scalars())


# --- summaries ------------------------------------------------------------------------

SUMMARY_KINDS: dict[str, tuple[str, ...]] = {
    "enterprise": ("signature", "port", "account", "gateway"),
    "signature": ("enterprise", "port", "account", "gateway"),
    "port": ("enterprise", "signature", "account", "gateway"),
}
"""For each summary subject, the columns whose top values are shown ("top offenders")."""


@dataclass(slots=True)
class Summary:
    kind: str
    key: str | None
    total: int
    by_rule: list[tuple[str, int]]
    by_severity: list[tuple[str, int]]
    top: dict[str, list[tuple[str, int]]]
    per_day: dict[str, dict[str, int]]
    days: list[str]


def _day(s: Session) -> ColumnElement[Any]:
    if s.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Alert.ts), "YYYY-MM-DD")
    return func.substr(Alert.ts, 1, 10)


def _top(s: Session, cond: ColumnElement[bool], column: str, n: int) -> list[tuple[str, int]]:
    col = getattr(Alert, column)
    stmt = (
        select(col, func.count().label("n"))
        .where(cond, col.is_not(None))
        .group_by(col)
        .order_by(desc("n"), col)
        .limit(n)
    )
    return [(str(k), int(c)) for k, c in s.execute(stmt)]


def summary(
    s: Session, kind: str, key: str | None, since: dt.datetime, until: dt.datetime, n: int = 10
) -> Summary:
    """Alerts of one enterprise / signature / port (or, with no key, the top subjects)."""
    cond: ColumnElement[bool] = and_(Alert.ts >= since, Alert.ts < until)
    if key is not None:
        cond = and_(cond, getattr(Alert, kind) == key)
    columns = SUMMARY_KINDS[kind] if key is not None else (kind,)
    top = {c: _top(s, cond, c, n) for c in columns}
    by_rule = _top(s, cond, "rule", 50)
    by_severity = _top(s, cond, "severity", 3)
    day = _day(s).label("day")
    per_day: dict[str, dict[str, int]] = {}
    for d, rule, c in s.execute(
        select(day, Alert.rule, func.count()).where(cond).group_by(day, Alert.rule)
    ):
        per_day.setdefault(str(d), {})[str(rule)] = int(c)
    days = []
    cur = since.date()
    while cur < until.date() or (cur == until.date() and until.time() != dt.time()):
        days.append(cur.isoformat())
        cur += dt.timedelta(days=1)
        if len(days) > 400:
            break
    return Summary(kind, key, sum(c for _, c in by_rule), by_rule, by_severity, top, per_day, days)


def consent_for_hash(s: Session, msisdn_hash: str) -> list[ConsentEvent]:
    """Consent records of one subscriber (all enterprises), newest first."""
    stmt = (
        select(ConsentEvent)
        .where(ConsentEvent.msisdn_hash == msisdn_hash)
        .order_by(desc(ConsentEvent.ts))
        .limit(500)
    )
    return list(s.execute(stmt).scalars())
