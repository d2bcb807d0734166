"""One poll batch into the database in one transaction, with idempotent inserts and upserts.

Every statement is safe to repeat: alerts and consent events are inserted with
`ON CONFLICT DO NOTHING` (by `alert_id`, by source partition and offset), registry records are
upserted by key, rejects are keyed by topic, partition and offset. A batch replayed after a
crash therefore leaves the tables exactly as one pass would.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from smsmon.contract.canonical import MsisdnHasher
from smsmon.contract.codec import DecodeContext
from smsmon.store import records, schema
from smsmon.store.records import Reject, Row, Source

log = logging.getLogger(__name__)

# Ids per `IN (...)` look-up: below SQLite's 32,766 bound parameters, small enough for psycopg.
_LOOKUP_CHUNK = 2_000

ALERTS: Table = schema.Alert.__table__  # type: ignore[assignment]
CONSENT: Table = schema.ConsentEvent.__table__  # type: ignore[assignment]
PORTS: Table = schema.Port.__table__  # type: ignore[assignment]
SIGNATURES: Table = schema.Signature.__table__  # type: ignore[assignment]
REJECTS: Table = schema.StoreReject.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Topics:
    """Which topic carries which kind of record."""

    alerts: str
    consent: str
    ports: str
    signatures: str


@dataclass(slots=True)
class BatchResult:
    """What one batch changed: new rows per table and rejects per reason."""

    rows: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Plan:
    alerts: dict[str, Row] = field(default_factory=dict)
    consent: list[Row] = field(default_factory=list)
    # key -> row (upsert) or None (delete); the last record of a key in the batch wins
    ports: dict[str, Row | None] = field(default_factory=dict)
    signatures: dict[str, Row | None] = field(default_factory=dict)
    rejects: list[Row] = field(default_factory=list)


def _insert(table: Table, dialect: str) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_nothing` / `_do_update`."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"the alert store supports SQLite and PostgreSQL, not {dialect}")


class Writer:
    """Turns records into rows and stores a batch of them in one transaction."""

    def __init__(
        self,
        engine: Engine,
        topics: Topics,
        hasher: MsisdnHasher,
        ctx: DecodeContext,
        max_record_bytes: int = 1 << 20,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.topics = topics
        self.hasher = hasher
        self.ctx = ctx
        self.max_record_bytes = max_record_bytes
        self.clock = clock
        self.dialect = engine.dialect.name
        _insert(ALERTS, self.dialect)  # fail at start on an unsupported database

    def plan(self, sources: Iterable[Source], quiet: bool = False) -> tuple[_Plan, Counter[str]]:
        """Rows for `sources` in order (first alert of an id and last registry record of a
        key win, as they would one statement at a time), and the rejects by reason (logged
        unless `quiet`)."""
        at = self.clock()
        plan = _Plan()
        rejected: Counter[str] = Counter()
        t = self.topics
        for src in sources:
            result: Any
            if src.topic == t.alerts:
                result = records.alert_row(src, at, self.max_record_bytes)
                if not isinstance(result, Reject):
                    plan.alerts.setdefault(result["alert_id"], result)
            elif src.topic == t.consent:
                result = records.consent_row(src, at, self.ctx, self.hasher)
                if not isinstance(result, Reject):
                    plan.consent.append(result)
            elif src.topic in (t.ports, t.signatures):
                is_port = src.topic == t.ports
                result = (
                    records.port_row(src, at, self.ctx)
                    if is_port
                    else records.signature_row(src, at, self.ctx)
                )
                if not isinstance(result, Reject):
                    key, row = result
                    target = plan.ports if is_port else plan.signatures
                    target.pop(key, None)  # keep the dict in record order of last writes
                    target[key] = row
            else:
                result = Reject("topic", "record from a topic the store does not read")
            if isinstance(result, Reject):
                rejected[result.reason] += 1
                plan.rejects.append(result.row(src, at))
                if not quiet:
                    log.warning(
                        "rejected record %s[%d]@%d: %s",
                        src.topic,
                        src.partition,
                        src.offset,
                        result.reason,
                    )
        return plan, rejected

    def write(self, sources: Sequence[Source]) -> BatchResult:
        """Store `sources` in one transaction. A record the database refuses (which the
        checks in `records` should prevent) sends the batch through `_write_one_by_one`,
        so one bad record becomes a reject instead of blocking the partition."""
        plan, rejected = self.plan(sources)
        try:
            with self.engine.begin() as conn:
                rows = self._apply(conn, plan)
        except (IntegrityError, DataError) as exc:
            log.warning(
                "batch refused by the database (%s): storing it record by record",
                type(exc).__name__,
            )
            return self._write_one_by_one(sources)
        except DBAPIError:
            raise
        except StatementError as exc:  # a value the driver could not bind
            log.warning(
                "batch not bindable (%s): storing it record by record",
                type(exc.orig).__name__ if exc.orig else "error",
            )
            return self._write_one_by_one(sources)
        return BatchResult(rows=rows, rejects=rejected)

    def _write_one_by_one(self, sources: Sequence[Source]) -> BatchResult:
        total = BatchResult()
        for src in sources:
            plan, rejected = self.plan([src], quiet=True)  # logged in the first pass
            try:
                with self.engine.begin() as conn:
                    total.rows.update(self._apply(conn, plan))
                total.rejects.update(rejected)
            except (IntegrityError, DataError, StatementError) as exc:
                if isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError | DataError):
                    raise
                log.warning(
                    "rejected record %s[%d]@%d: db (%s)",
                    src.topic,
                    src.partition,
                    src.offset,
                    type(exc).__name__,
                )
                reject = Reject("db", f"the database refused the record: {type(exc).__name__}")
                with self.engine.begin() as conn:
                    self._insert_rejects(conn, [reject.row(src, self.clock())])
                total.rejects["db"] += 1
        return total

    def _apply(self, conn: Connection, plan: _Plan) -> Counter[str]:
        rows: Counter[str] = Counter()
        d = self.dialect
        if plan.alerts:
            new_alerts = self._absent(conn, plan.alerts)
            if new_alerts:
                # ON CONFLICT DO NOTHING still guards the insert: the look-up above only
                # spares the database (and the count) the rows a replay already stored.
                stmt = _insert(ALERTS, d).on_conflict_do_nothing(index_elements=["alert_id"])
                conn.execute(stmt, new_alerts)
                rows["alerts"] += len(new_alerts)
        if plan.consent:
            new_consent = self._absent_consent(conn, plan.consent)
            if new_consent:
                stmt = _insert(CONSENT, d).on_conflict_do_nothing(
                    index_elements=["src_partition", "src_offset"]
                )
                conn.execute(stmt, new_consent)
                rows["consent_events"] += len(new_consent)
        for name, table, ops in (
            ("ports", PORTS, plan.ports),
            ("signatures", SIGNATURES, plan.signatures),
        ):
            upserts = [row for row in ops.values() if row is not None]
            gone = [key for key, row in ops.items() if row is None]
            if gone:
                conn.execute(delete(table).where(table.c.key.in_(gone)))
            if upserts:
                ins = _insert(table, d)
                stmt = ins.on_conflict_do_update(
                    index_elements=["key"],
                    set_={
                        c: ins.excluded[c] for c in ("enterprise", "status", "record", "updated_at")
                    },
                )
                conn.execute(stmt, upserts)
            if upserts or gone:
                rows[name] += len(upserts) + len(gone)
        if plan.rejects:
            rows["store_rejects"] += self._insert_rejects(conn, plan.rejects)
        return rows

    @staticmethod
    def _absent(conn: Connection, alerts: dict[str, Row]) -> list[Row]:
        """The alerts of the batch not stored yet. Counting with RETURNING made psycopg
        spend 70 % of a batch converting the multi-row statement's placeholders."""
        ids = list(alerts)
        present: set[str] = set()
        for i in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[i : i + _LOOKUP_CHUNK]
            present.update(
                conn.scalars(select(ALERTS.c.alert_id).where(ALERTS.c.alert_id.in_(chunk)))
            )
        return [row for key, row in alerts.items() if key not in present]

    @staticmethod
    def _absent_consent(conn: Connection, consent: list[Row]) -> list[Row]:
        """The consent rows whose source position is not stored yet (a range scan of the
        unique index per partition)."""
        by_partition: dict[int, list[Row]] = {}
        for row in consent:
            by_partition.setdefault(row["src_partition"], []).append(row)
        out: list[Row] = []
        c = CONSENT.c
        for partition, rows in by_partition.items():
            offsets = [r["src_offset"] for r in rows]
            present = set(
                conn.scalars(
                    select(c.src_offset).where(
                        c.src_partition == partition,
                        c.src_offset.between(min(offsets), max(offsets)),
                    )
                )
            )
            seen: set[int] = set()
            for r in rows:
                if r["src_offset"] not in present and r["src_offset"] not in seen:
                    seen.add(r["src_offset"])
                    out.append(r)
        return out

    def _insert_rejects(self, conn: Connection, rejects: list[Row]) -> int:
        stmt = (
            _insert(REJECTS, self.dialect)
            .on_conflict_do_nothing(index_elements=["topic", "partition", "offset"])
            .returning(REJECTS.c.id)
        )
        return len(conn.execute(stmt, rejects).all())
