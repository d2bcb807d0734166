"""`smsmon audit`: the look-back review (回头看). Replays retained gateway records through the
live pipeline's rules, offline, in event-time order, and writes alerts, a summary and a report.

The rules are not implemented here: records go through `OfflineRunner` (the same Engine,
Stage1 and Aggregator as the live agents), decoded by the worker's codec and joined against
reference data validated by the worker's `apply_reference`, with the engine configured from
Settings exactly as a worker is. What this module adds is reading files and ordering.

**Ordering.** Inputs are read twice. Pass 1 scans every file and keeps one 8-byte sort key
(the record's `ts` in epoch microseconds) per line; pass 2 reads the files again and merges
them in `(ts, input kind, file index, line)` order: consent records before events before
complaints at equal `ts`, then files in the order given, then lines. A file that is in `ts`
order (the archive's files nearly are) streams through; a file that is not is re-ordered with
a heap that holds only the lines still waiting for an earlier one. Memory is therefore about
8 bytes per input line plus the engine's state (see docs/audit.md), not the records.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import csv
import datetime as dt
import gc
import gzip
import heapq
import io
import json
import logging
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from smsmon.config.settings import Settings
from smsmon.contract.canonical import mask_msisdn
from smsmon.contract.codec import DecodeContext, DecodeError, decode_event, decode_model
from smsmon.contract.models import Alert, Category, Complaint, ConsentRecord, MtEvent, Severity
from smsmon.contract.times import EPOCH, from_us, naive_to_us, to_us
from smsmon.tools.report import (
    DELAY_BUCKETS,
    NO_MARKETING_AFTER,
    ReportData,
    delay_bucket,
    write_report,
)

log = logging.getLogger(__name__)

CONSENT, EVENTS, COMPLAINTS = 0, 1, 2  # also the tie-break rank at equal ts
KIND_NAMES = {CONSENT: "consent", EVENTS: "events", COMPLAINTS: "complaints"}
INVALID = 2**63 - 1  # sort key of a line that is skipped (malformed or blank)
PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.csv", "*.csv.gz")
LIST_FIELDS = frozenset({"accounts", "categories", "ports"})
INT_FIELDS = frozenset({"segments", "max_per_minute", "schema_version"})
BOOL_FIELDS = frozenset({"shared"})
# `"ts": <string or integer>` as a key of the top-level object. A `"` inside a JSON string is
# always escaped, so `{` or `,` followed by `"ts"` cannot match inside a string value.
_TS_RE = re.compile(rb'[{,]\s*"ts"\s*:\s*(?:"([^"\\]{1,40})"|(\d{1,20}))\s*[,}]')
PROGRESS_EVERY = 16_384


@contextlib.contextmanager
def fewer_collections(threshold: int = 50_000) -> Iterator[None]:
    """Run the cyclic garbage collector every `threshold` allocations instead of every 700.

    An audit keeps millions of small objects alive (the rules' state, the ids of all events)
    while it allocates a few per record; with the default thresholds the collector walks
    them again and again (a third of the rules' time). Cycles are still collected, later.
    """
    before = gc.get_threshold()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


class AuditError(Exception):
    """A problem with the audit's inputs that stops it (the message says what to fix)."""


@dataclass(slots=True)
class Tombstone:
    """An archived null consent record (`{"_key": ..., "_tombstone": true, "_timestamp": ms}`)."""

    msisdn: str
    enterprise: str
    ts_us: int


# -- reading files ------------------------------------------------------------------------

Item = tuple[int, bytes | None, Any, tuple[str, str] | None]  # line, raw JSON, ts hint, error


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Files named, and every *.jsonl[.gz] / *.csv[.gz] of a directory (sorted by name)."""
    out: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted({f for pat in PATTERNS for f in p.glob(pat) if f.is_file()})
        elif p.is_file():
            found = [p]
        else:
            raise AuditError(f"input not found: {p}")
        for f in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    return out


def is_csv(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


class Reader:
    """Records of one JSONL or CSV file, plain or gzip (detected by content), as JSON bytes.

    Yields `(line, raw, ts_hint, error)`: `line` is the 1-based line where the record starts,
    `raw` the record as JSON (CSV rows are converted), `ts_hint` the CSV `ts` cell, `error` a
    `(reason, message)` for a line that cannot even be read as a record. Blank lines are
    not records. A truncated or corrupt gzip stream ends the file with one `gzip` error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw: IO[bytes] | None = None

    def tell(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for gzip)."""
        try:
            return self._raw.tell() if self._raw is not None else 0
        except (OSError, ValueError):
            return 0

    def __iter__(self) -> Iterator[Item]:
        raw = self._raw = self.path.open("rb")
        try:
            magic = raw.read(2)
            raw.seek(0)
            stream: IO[bytes] = raw
            if magic == b"\x1f\x8b":
                stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
            if is_csv(self.path):
                yield from self._csv(stream)
            else:
                # GzipFile.readline is its buffered reader's readline behind a Python-level
                # closed check: iterate that reader itself (the same lines, the same errors).
                yield from self._jsonl(getattr(stream, "_buffer", stream))
        finally:
            raw.close()

    @staticmethod
    def _jsonl(stream: IO[bytes]) -> Iterator[Item]:
        lineno = 0
        try:
            for lineno, line in enumerate(stream, 1):
                line = line.rstrip(b"\r\n")
                if not line or line.isspace():
                    continue
                yield lineno, line, None, None
        except (EOFError, OSError, zlib.error) as exc:
            yield (
                lineno + 1,
                None,
                None,
                ("gzip", f"truncated or corrupt gzip data ({type(exc).__name__})"),
            )

    @staticmethod
    def _csv(stream: IO[bytes]) -> Iterator[Item]:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        header: list[str] | None = None
        start = 1
        try:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield start, None, None, ("csv", str(exc)[:200])
                    start = reader.line_num + 1
                    continue
                line, start = start, reader.line_num + 1
                if header is None:
                    header = [h.strip().lower() for h in row]
                    continue
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) > len(header):
                    msg = f"{len(row)} fields but the header has {len(header)}"
                    yield line, None, None, ("csv", msg)
                    continue
                rec = csv_record(header, row)
                try:
                    raw = json.dumps(rec, ensure_ascii=False).encode("utf-8")
                except UnicodeEncodeError:
                    yield line, None, None, ("encoding", "not UTF-8")
                    continue
                yield line, raw, rec.get("ts"), None
        except (EOFError, OSError, zlib.error) as exc:
            yield (
                start,
                None,
                None,
                ("gzip", f"truncated or corrupt gzip data ({type(exc).__name__})"),
            )


def csv_record(header: Sequence[str], row: Sequence[str]) -> dict[str, Any]:
    """A CSV row as the JSON record of the contract: empty cells are absent, list fields are
    `;`-separated, `ts` of digits only is epoch milliseconds, ints and booleans converted."""
    rec: dict[str, Any] = {}
    for name, cell in zip(header, row, strict=False):
        if not name or cell == "":
            continue
        value: Any = cell
        if name in LIST_FIELDS:
            value = [v.strip() for v in cell.split(";") if v.strip()]
        elif name in INT_FIELDS or (name == "ts" and cell.strip().isdigit()):
            s = cell.strip()
            value = int(s) if s.isdigit() else cell
        elif name in BOOL_FIELDS:
            low = cell.strip().lower()
            value = {"true": True, "1": True, "yes": True, "false": False, "0": False}.get(
                low, cell
            )
        rec[name] = value
    return rec


def fast_ts_us(raw: bytes, hint: Any, tz: ZoneInfo) -> int | None:
    """Sort key of a record: its `ts` in epoch microseconds, read without decoding the
    record (None when that is not simple: the caller then decodes it properly)."""
    value: Any = hint
    if hint is None:
        m = _TS_RE.search(raw)
        # A second `"ts"` key makes the record unusual (decoded instead); with one `"ts"`
        # in the whole line there is no second key to look for.
        if m is None or (raw.count(b'"ts"') > 1 and _TS_RE.search(raw, m.end() - 1) is not None):
            return None
        text, digits = m.group(1), m.group(2)
        if digits is not None:
            value = int(digits)
        else:
            try:
                value = text.decode("ascii")
            except UnicodeDecodeError:
                return None
    if isinstance(value, int):
        return value * 1000 if value >= 10**12 else None
    if not isinstance(value, str):
        return None
    try:
        ts = dt.datetime.fromisoformat(value)
        if ts.tzinfo is None:
            # = to_us(ts.replace(tzinfo=tz)) (local wall time, fold 0), without building
            # the aware datetime: about 1 µs less per record
            return naive_to_us(ts, tz)
        return to_us(ts)
    except (ValueError, OverflowError):
        return None


# -- sources and ordering -----------------------------------------------------------------


@dataclass(eq=False)
class Source:
    """One input file and its pass-1 sort keys (one per record, INVALID for skipped ones)."""

    kind: int
    path: Path
    index: int
    keys: array.array[int] = field(default_factory=lambda: array.array("q"))
    ordered: bool = True
    first: tuple[int, int, int, int] | None = None
    records: int = 0
    valid: int = 0
    malformed: int = 0

    @property
    def name(self) -> str:
        return str(self.path)


def suffix_minima(keys: array.array[int]) -> array.array[int]:
    """m[i] = min(keys[i:]), m[len] = INVALID."""
    n = len(keys)
    out = array.array("q", bytes(8 * (n + 1)))
    cur = INVALID
    out[n] = cur
    for i in range(n - 1, -1, -1):
        k = keys[i]
        if k < cur:
            cur = k
        out[i] = cur
    return out


Entry = tuple[int, int, int, bytes]  # key, ordinal, line, raw


def replay(src: Source) -> Iterator[Entry]:
    """Pass 2 of one file: its valid records in (ts, line) order."""
    keys = src.keys
    n = len(keys)
    if src.ordered:
        for i, (line, raw, _, _) in enumerate(Reader(src.path)):
            if i >= n:
                break
            k = keys[i]
            if k != INVALID and raw is not None:
                yield k, i, line, raw
        return
    suffix = suffix_minima(keys)
    heap: list[Entry] = []
    for i, (line, raw, _, _) in enumerate(Reader(src.path)):
        if i >= n:
            break
        k = keys[i]
        if k != INVALID and raw is not None:
            heapq.heappush(heap, (k, i, line, raw))
        nxt = suffix[i + 1]
        while heap and heap[0][0] <= nxt:
            yield heapq.heappop(heap)
    while heap:
        yield heapq.heappop(heap)


def merged(sources: Sequence[Source]) -> Iterator[tuple[Source, int, bytes, int]]:
    """All valid records of all sources in (ts, kind, file index, line) order, each with its
    sort key (its `ts` in epoch microseconds, `test_sort_key_is_the_decoded_ts`).

    A file is opened only when its first record is due, so a directory of daily files is
    read one or two files at a time; records of the leading file stream without heap work.
    """
    pending = sorted((s for s in sources if s.first is not None), key=lambda s: s.first or ())
    p = 0
    heap: list[tuple[int, int, int, int, int, bytes, Source, Iterator[Entry]]] = []

    def push(src: Source, it: Iterator[Entry]) -> None:
        nxt = next(it, None)
        if nxt is not None:
            k, i, line, raw = nxt
            heapq.heappush(heap, (k, src.kind, src.index, i, line, raw, src, it))

    while True:
        while p < len(pending) and (not heap or (pending[p].first or ()) <= heap[0][:4]):
            push(pending[p], replay(pending[p]))
            p += 1
        if not heap:
            return
        k, kind, idx, _, line, raw, src, it = heapq.heappop(heap)
        yield src, line, raw, k
        bound: tuple[int, ...] | None = heap[0][:4] if heap else None
        if p < len(pending):
            first = pending[p].first or ()
            bound = first if bound is None or first < bound else bound
        if bound is None:
            for k, _, line, raw in it:
                yield src, line, raw, k
            continue
        b0, rest = bound[0], bound[1:]
        for k2, i2, line2, raw2 in it:
            if k2 > b0 or (k2 == b0 and (kind, idx, i2) >= rest):
                heapq.heappush(heap, (k2, kind, idx, i2, line2, raw2, src, it))
                break
            yield src, line2, raw2, k2


# -- statistics for the summary and the report --------------------------------------------


@dataclass(slots=True)
class UnsubscribeCase:
    """One attributed unsubscribe and what its enterprise sent the subscriber afterwards."""

    msisdn_masked: str
    enterprise: str
    ts_us: int
    marketing_after: int = 0
    any_after: int = 0
    last_marketing_us: int | None = None
    last_any_us: int | None = None
    alert_ids: list[str] = field(default_factory=list)


_SEVERITY_VALUES = {s: s.value for s in Severity}


class Collector:
    """Counts for summary.csv and report.html, fed every processed record and alert."""

    def __init__(self, book: Any, tz: ZoneInfo) -> None:
        self.book = book
        self.tz = tz
        self.kinds: Counter[tuple[str, str]] = Counter()
        self.minutes: dict[str, Counter[int]] = {"mt": Counter(), "other": Counter()}
        self.alert_minutes: dict[str, Counter[int]] = {}
        self.by_rule: Counter[tuple[str, str]] = Counter()
        self.summary: Counter[tuple[str, str, str, str, str]] = Counter()
        self.offenders: dict[tuple[str, str, str], list[Any]] = {}
        self.first_us: int | None = None
        self.last_us: int | None = None
        self.totals: Counter[str] = Counter()
        self.open: dict[tuple[str, str], UnsubscribeCase] = {}
        self.cases: list[UnsubscribeCase] = []
        self._ports: dict[str, str] = {}
        self.since_us = -(2**63)
        self._mo_revoked: dict[tuple[str, int], str] = {}
        self._last_ts: dt.datetime | None = None
        self._last_minute = 0

    def registered(self, port: str | None) -> str | None:
        """The registered code a port belongs to (longest prefix), else the port itself."""
        if port is None:
            return None
        code = self._ports.get(port)
        if code is None:
            rec = self.book.port_for(port)
            code = rec.port if rec is not None else port
            if len(self._ports) < 1_000_000:
                self._ports[port] = code
        return code

    def event(
        self, ev: Any, out: Any, alerts: list[Alert], ts_us: int, state: Any, count: bool = True
    ) -> None:
        """One processed event; `count=False` for a warm-up event (before --since): it only
        keeps the unsubscribe tracking up to date."""
        if not count:
            if isinstance(ev, MtEvent):
                verdict = out.verdict
                if self.open and verdict is not None and verdict.enterprise is not None:
                    self._after_unsubscribe(ev, verdict.enterprise, alerts, ts_us, state)
            else:
                self._revocations(out, ts_us, ev.msisdn)
            return
        if self.first_us is None or ts_us < self.first_us:
            self.first_us = ts_us
        if self.last_us is None or ts_us > self.last_us:
            self.last_us = ts_us
        minute = ts_us // 60_000_000
        if isinstance(ev, MtEvent):
            self.kinds[("mt", ev.category.value)] += 1
            self.minutes["mt"][minute] += 1
            verdict = out.verdict
            if self.open and verdict is not None and verdict.enterprise is not None:
                self._after_unsubscribe(ev, verdict.enterprise, alerts, ts_us, state)
            return
        self.kinds[(ev.kind, "none")] += 1
        self.minutes["other"][minute] += 1
        if out.unsubscribe is not None:
            self.totals[f"unsubscribes_{'attributed' if out.unsubscribe else 'unattributed'}"] += 1
        self._revocations(out, ts_us, ev.msisdn)

    def consent_record(self, rec: ConsentRecord) -> None:
        """An applied consent record. A revocation smsmon derived from an unsubscribe reply
        (`source: mo`, e.g. from the archive) sorts just before that reply, which then
        changes nothing: remember it so the reply still opens its unsubscribe case."""
        if rec.source == "mo" and rec.status.value == "revoked":
            if len(self._mo_revoked) > 10_000:  # replies not in the input: forget them
                self._mo_revoked.clear()
            self._mo_revoked[(rec.msisdn, to_us(rec.ts))] = rec.enterprise

    def _revocations(self, out: Any, ts_us: int, msisdn: str) -> None:
        targets = [(r.msisdn, r.enterprise) for r in out.revocations]
        if out.unsubscribe and not targets:
            enterprise = self._mo_revoked.pop((msisdn, ts_us), None)
            if enterprise is not None:
                targets.append((msisdn, enterprise))
        for key in targets:
            old = self.open.pop(key, None)
            if old is not None:
                self.cases.append(old)
            self.open[key] = UnsubscribeCase(mask_msisdn(key[0]), key[1], ts_us)

    def _after_unsubscribe(
        self, ev: MtEvent, enterprise: str, alerts: list[Alert], ts_us: int, state: Any
    ) -> None:
        key = (ev.msisdn, enterprise)
        case = self.open.get(key)
        if case is None or ts_us < case.ts_us:
            return
        standing = state.consent(ev.msisdn, enterprise)
        if standing is None or not standing.revoked:  # consented again (or deleted): done
            self.cases.append(self.open.pop(key))
            return
        case.any_after += 1
        case.last_any_us = ts_us
        marketing = ev.category is Category.MARKETING or any(
            a.rule == "content.misdeclared" for a in alerts
        )
        if marketing:
            case.marketing_after += 1
            case.last_marketing_us = ts_us
            for a in alerts:
                if a.rule == "consent.revoked" and len(case.alert_ids) < 3:
                    case.alert_ids.append(a.alert_id)

    def alert(self, a: Alert) -> None:
        sev = _SEVERITY_VALUES.get(a.severity) or a.severity.value
        rule = a.rule
        totals = self.totals
        totals["alerts"] += 1
        totals["per_message_alerts" if a.event_id else "aggregate_alerts"] += 1
        self.by_rule[(rule, sev)] += 1
        ts = a.ts
        if ts is not self._last_ts:  # the alerts of one event share their ts
            self._last_ts = ts
            self._last_minute = to_us(ts) // 60_000_000
        per_minute = self.alert_minutes.get(sev)
        if per_minute is None:
            per_minute = self.alert_minutes[sev] = Counter()
        per_minute[self._last_minute] += 1
        port = self.registered(a.port)
        enterprise, signature = a.enterprise, a.signature
        self.summary[(rule, sev, enterprise or "", port or "", signature or "")] += 1
        subscriber = a.msisdn_masked if a.subject_type == "msisdn" else None
        offenders = self.offenders
        for dim, value in (
            ("enterprise", enterprise),
            ("port", port),
            ("signature", signature),
            ("account", a.account),
            ("subscriber", subscriber),
        ):
            if not value:
                continue
            key = (rule, dim, value)
            entry = offenders.get(key)
            if entry is None:
                entry = offenders[key] = [0, []]
            entry[0] += 1
            if len(entry[1]) < 3:
                entry[1].append(self._example(a))

    def _example(self, a: Alert) -> dict[str, Any]:
        ex: dict[str, Any] = {"alert_id": a.alert_id, "ts": self.local(to_us(a.ts))}
        if a.event_id:
            ex["event_id"] = a.event_id
        if a.msisdn_masked:
            ex["msisdn_masked"] = a.msisdn_masked
        ex["detail"] = a.detail
        return ex

    def local(self, ts_us: int | None) -> str:
        if ts_us is None:
            return ""
        ts = from_us(ts_us)
        return ts.astimezone(self.tz).isoformat(timespec="seconds")

    # -- building the outputs ------------------------------------------------------------

    def series(self) -> dict[str, Any]:
        if self.first_us is None or self.last_us is None:
            return {}
        span_s = (self.last_us - self.first_us) / 1e6
        unit = "minute" if span_s <= 6 * 3600 else "hour" if span_s <= 31 * 86_400 else "day"

        def bucket(minute: int) -> dt.datetime:
            local = (EPOCH + dt.timedelta(minutes=minute)).astimezone(self.tz)
            local = local.replace(tzinfo=None, second=0, microsecond=0)
            if unit == "minute":
                return local
            if unit == "hour":
                return local.replace(minute=0)
            return local.replace(hour=0, minute=0)

        step = {
            "minute": dt.timedelta(minutes=1),
            "hour": dt.timedelta(hours=1),
            "day": dt.timedelta(days=1),
        }[unit]
        counters: dict[str, Counter[dt.datetime]] = {}
        names = {"mt": self.minutes["mt"], "other": self.minutes["other"]}
        names.update({f"alert:{s}": c for s, c in self.alert_minutes.items()})
        for name, minutes in names.items():
            c: Counter[dt.datetime] = Counter()
            for minute, n in minutes.items():
                c[bucket(minute)] += n
            counters[name] = c
        start = bucket(self.first_us // 60_000_000)
        end = bucket(self.last_us // 60_000_000)
        for c in counters.values():  # aggregate alerts may sit just outside the events' span
            if c:
                start, end = min(start, min(c)), max(end, max(c))
        labels: list[dt.datetime] = []
        cur = start
        while cur <= end and len(labels) < 5000:
            labels.append(cur)
            cur += step
        return {
            "unit": unit,
            "labels": [x.isoformat() for x in labels],
            "mt": [counters["mt"].get(x, 0) for x in labels],
            "other": [counters["other"].get(x, 0) for x in labels],
            "alerts": {
                s: [counters.get(f"alert:{s}", Counter()).get(x, 0) for x in labels]
                for s in ("critical", "major", "minor")
            },
        }

    def offender_blocks(self, top: int = 10) -> list[dict[str, Any]]:
        blocks: dict[str, dict[str, Any]] = {}
        for (rule, sev), n in sorted(self.by_rule.items(), key=lambda kv: (-kv[1], kv[0])):
            blocks[rule] = {"rule": rule, "severity": sev, "total": n, "dims": {}}
        grouped: dict[tuple[str, str], list[tuple[str, int, list[Any]]]] = {}
        for (rule, dim, value), (count, examples) in self.offenders.items():
            grouped.setdefault((rule, dim), []).append((value, count, examples))
        for (rule, dim), rows in grouped.items():
            rows.sort(key=lambda r: (-r[1], r[0]))
            blocks[rule]["dims"][dim] = [
                {"value": v, "count": c, "examples": ex} for v, c, ex in rows[:top]
            ]
        return list(blocks.values())

    def unsubscribe_data(self, worst: int = 20) -> dict[str, Any]:
        cases = [c for c in self.cases + list(self.open.values()) if c.ts_us >= self.since_us]
        buckets: Counter[str] = Counter()
        for c in cases:
            delay = None if c.last_marketing_us is None else (c.last_marketing_us - c.ts_us) / 1e6
            buckets[delay_bucket(delay)] += 1
        labels = [NO_MARKETING_AFTER] + [label for label, _ in DELAY_BUCKETS]
        bad = [c for c in cases if c.last_marketing_us is not None]
        bad.sort(key=lambda c: (-((c.last_marketing_us or 0) - c.ts_us), -c.marketing_after))
        return {
            "attributed": self.totals["unsubscribes_attributed"],
            "unattributed": self.totals["unsubscribes_unattributed"],
            "tracked": len(cases),
            "with_marketing_after": len(bad),
            "buckets": [[label, buckets.get(label, 0)] for label in labels],
            "worst": [
                {
                    "msisdn_masked": c.msisdn_masked,
                    "enterprise": c.enterprise,
                    "unsubscribed_at": self.local(c.ts_us),
                    "last_marketing_at": self.local(c.last_marketing_us),
                    "delay_s": ((c.last_marketing_us or c.ts_us) - c.ts_us) / 1e6,
                    "marketing_after": c.marketing_after,
                    "any_after": c.any_after,
                    "last_any_delay_s": None
                    if c.last_any_us is None
                    else (c.last_any_us - c.ts_us) / 1e6,
                    "alert_ids": c.alert_ids,
                }
                for c in bad[:worst]
            ],
        }


# -- the audit ----------------------------------------------------------------------------


@dataclass
class AuditOptions:
    """What to audit and how (the command line's arguments)."""

    events: list[str]
    ports: list[str]
    signatures: list[str]
    consent: list[str]
    out: Path
    complaints: list[str] = field(default_factory=list)
    close_all: bool = False
    rules: str = "all"  # "all" | "per-message"
    consent_order: str = "ts"  # "ts" | "first"
    batch: int = 1000
    progress: bool | None = None  # None: when stderr is a terminal
    since: dt.datetime | None = None  # judge from here; earlier events only build state
    until: dt.datetime | None = None  # stop before this event time
    title: str = "smsmon look-back audit 回头看"


@dataclass
class AuditResult:
    """Counts of one audit run (also in summary.csv)."""

    totals: Counter[str]
    malformed: list[tuple[str, int, str, str]]
    alerts_by_rule: Counter[tuple[str, str]]
    seconds: float
    out: Path


def _runner_classes() -> tuple[type[Any], type[Any]]:
    """Subclasses of the live rule objects that expose the engine's outcome per event."""
    from smsmon.contract.models import DlrEvent, MoEvent
    from smsmon.rules.engine import Engine, Outcome, State
    from smsmon.rules.offline import OfflineRunner, Record

    class RecordingEngine(Engine):
        """The live Engine, remembering the Outcome of the last event (for the report)."""

        last: Outcome | None = None

        def on_event(self, event: Any, state: State, detected_at: dt.datetime) -> Outcome:
            out = super().on_event(event, state, detected_at)
            self.last = out
            return out

    class PerMessageRunner(OfflineRunner):
        """OfflineRunner without the aggregate (windowed) rules: only the Engine runs."""

        def process(self, rec: Record) -> list[Alert]:
            if isinstance(rec, ConsentRecord):
                self.engine.on_consent(rec.msisdn, rec.enterprise, rec, self.state)
                return []
            if isinstance(rec, Complaint):
                return []
            if rec.event_id in self._seen:
                return []
            self._seen.add(rec.event_id)
            return list(self.engine.on_event(rec, self.state, dt.datetime.now(dt.UTC)).alerts)

        def outcome(self, rec: MtEvent | MoEvent | DlrEvent) -> Outcome | None:
            """What `process` does with an event, returning the engine's Outcome (None for a
            repeated event id), without going through RecordingEngine."""
            if rec.event_id in self._seen:
                return None
            self._seen.add(rec.event_id)
            return Engine.on_event(self.engine, rec, self.state, dt.datetime.now(dt.UTC))

        def flush(self) -> list[Alert]:
            return []

        def finish(self) -> list[Alert]:
            return []

    return RecordingEngine, PerMessageRunner


class Audit:
    """One look-back run: load reference data, scan, replay in ts order, write outputs."""

    def __init__(self, settings: Settings, options: AuditOptions) -> None:
        from smsmon.rules.reference import ReferenceBook

        self.settings = settings
        self.opt = options
        self.tz = settings.tz
        self.ctx = DecodeContext(
            tz=settings.tz,
            max_event_bytes=settings.max_event_bytes,
            max_text_chars=settings.max_text_chars,
            max_future_skew_seconds=settings.max_future_skew_seconds,
        )
        self.book = ReferenceBook()
        self.malformed: list[tuple[int, str, int, str, str]] = []  # order, file, line, ...
        self.totals: Counter[str] = Counter()
        self.inputs: list[dict[str, Any]] = []
        self._file_order: dict[str, int] = {}

    # -- malformed lines ---------------------------------------------------------------

    def bad(self, file: str, line: int, reason: str, error: str) -> None:
        order = self._file_order.setdefault(file, len(self._file_order))
        self.malformed.append((order, file, line, reason, error[:300]))
        self.totals["malformed"] += 1

    # -- reference data ----------------------------------------------------------------

    def load_reference(self) -> None:
        from smsmon.contract.models import PortRecord, SignatureRecord
        from smsmon.rules.reference import apply_reference

        s = self.settings
        for label, paths, topic, model, key_field in (
            ("ports", self.opt.ports, s.topic_ports, PortRecord, "port"),
            ("signatures", self.opt.signatures, s.topic_signatures, SignatureRecord, "signature"),
        ):
            for path in expand_inputs(paths):
                records = malformed = 0
                for line, raw, _, err in Reader(path):
                    records += 1
                    try:
                        if err is not None or raw is None:
                            raise DecodeError(*(err or ("value", "unreadable")))
                        tomb = _tombstone_key(raw)
                        if tomb is not None:
                            apply_reference(self.book, s, topic, tomb.encode(), None, self.ctx)
                            continue
                        rec = decode_model(model, raw, self.ctx)
                        key = str(getattr(rec, key_field)).encode()
                        apply_reference(self.book, s, topic, key, raw, self.ctx)
                    except DecodeError as exc:
                        malformed += 1
                        self.bad(str(path), line, exc.reason, exc.error)
                self.inputs.append(
                    {"kind": label, "file": str(path), "records": records, "malformed": malformed}
                )
        if not self.book.ports and not self.book.signatures:
            log.warning("no valid port or signature records: every message will be flagged")

    # -- pass 1 -------------------------------------------------------------------------

    def decoder(self, kind: int) -> Callable[[bytes], Any]:
        ctx = self.ctx
        if kind == EVENTS:
            return lambda raw: decode_event(raw, None, ctx)
        if kind == COMPLAINTS:
            return lambda raw: decode_model(Complaint, raw, ctx)

        def consent(raw: bytes) -> Any:
            if raw.startswith(b'{"_key"') or b'"_tombstone"' in raw:
                tomb = _consent_tombstone(raw)
                if tomb is not None:
                    return tomb
            return decode_model(ConsentRecord, raw, ctx)

        return consent

    def scan(self, src: Source, advance: Callable[[int], None]) -> None:
        tz, keys, decode = self.tz, src.keys, self.decoder(src.kind)
        append = keys.append
        first = (self.opt.consent_order == "first") and src.kind == CONSENT
        top, low, low_i, ordered = -1, INVALID, -1, True
        reader = Reader(src.path)
        done = 0
        for i, (line, raw, hint, err) in enumerate(reader):
            if err is not None or raw is None:
                self.bad(src.name, line, *(err or ("value", "unreadable")))
                src.malformed += 1
                append(INVALID)
                continue
            k = fast_ts_us(raw, hint, tz)
            if k is None:
                try:
                    rec = decode(raw)
                except DecodeError as exc:
                    self.bad(src.name, line, exc.reason, exc.error)
                    src.malformed += 1
                    append(INVALID)
                    continue
                k = rec.ts_us if isinstance(rec, Tombstone) else to_us(rec.ts)
            if first:
                k = 0
            append(k)
            if k < top:
                ordered = False
            else:
                top = k
            if k < low:
                low, low_i = k, i
            if i % PROGRESS_EVERY == 0:
                pos = reader.tell()
                advance(pos - done)
                done = pos
        advance(max(0, src.path.stat().st_size - done))
        src.records = len(keys)
        src.valid = len(keys) - keys.count(INVALID)
        src.ordered = ordered
        if low_i >= 0:
            src.first = (low, src.kind, src.index, low_i)

    # -- the run ----------------------------------------------------------------------------

    def engine_config(self) -> Any:
        from smsmon.contract.canonical import MsisdnHasher
        from smsmon.rules.content.checks import content_checker
        from smsmon.rules.engine import EngineConfig

        s = self.settings
        return EngineConfig(
            hasher=MsisdnHasher(s.require_secret(), s.msisdn_key_id),
            recent_capacity=s.recent_ports_per_msisdn,
            recent_horizon_ms=int(s.recent_horizon_days * 86_400_000),
            content=content_checker(s),
        )

    def run(self) -> AuditResult:
        """Load, scan, replay and write the outputs (see the module's docstring)."""
        with fewer_collections():
            return self._run()

    def _run(self) -> AuditResult:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from smsmon.rules.offline import OfflineRunner
        from smsmon.rules.traffic import TrafficConfig

        t0 = time.monotonic()
        opt = self.opt
        out_dir = Path(opt.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        engine_cfg = self.engine_config()
        self.load_reference()

        sources: list[Source] = []
        for kind, paths in (
            (EVENTS, opt.events),
            (CONSENT, opt.consent),
            (COMPLAINTS, opt.complaints),
        ):
            for path in expand_inputs(paths):
                sources.append(Source(kind, path, len(sources)))
        if not any(s.kind == EVENTS for s in sources):
            raise AuditError("no event files found")

        show = sys.stderr.isatty() if opt.progress is None else opt.progress
        from rich.console import Console

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not show,
            transient=False,
        )
        traffic = TrafficConfig()
        recording_engine, per_message_cls = _runner_classes()
        runner_cls = OfflineRunner if opt.rules == "all" else per_message_cls
        runner = runner_cls(self.book, engine_cfg, traffic, batch=opt.batch)
        engine = recording_engine(self.book, engine_cfg)
        runner.engine = engine
        collector = Collector(self.book, self.tz)
        collector.totals = self.totals
        flush_ms = min(
            traffic.volume.size_ms,
            traffic.flood.size_ms,
            traffic.sublet.size_ms,
            traffic.complaint.size_ms,
        )

        alerts_path = out_dir / "alerts.jsonl"
        with progress, alerts_path.open("w", encoding="utf-8") as alerts_out:
            total_bytes = sum(s.path.stat().st_size for s in sources)
            scan_task = progress.add_task("scanning", total=total_bytes)
            for src in sources:
                self.scan(src, lambda n: progress.advance(scan_task, n))
            valid = sum(s.valid for s in sources)
            task = progress.add_task("auditing", total=valid)

            write = alerts_out.write
            collect_alert = collector.alert

            since_us = to_us(opt.since) if opt.since is not None else None
            until_us = to_us(opt.until) if opt.until is not None else None
            if since_us is not None:
                collector.since_us = since_us

            def emit(alerts: list[Alert]) -> None:
                for a in alerts:
                    if since_us is not None and to_us(a.ts) < since_us:
                        continue
                    write(a.model_dump_json(exclude_none=True))
                    write("\n")
                    collect_alert(a)

            ctx = self.ctx
            # --rules per-message: the runner hands out the engine's Outcome directly
            judge: Callable[[Any], Any] | None = getattr(runner, "outcome", None)
            decode_consent = self.decoder(CONSENT)
            pending = 0
            batch_w = -1
            done = 0
            state = runner.state
            for src, line, raw, ts_us in merged(sources):
                done += 1
                if done % PROGRESS_EVERY == 0:
                    progress.update(task, completed=done)
                kind = src.kind
                if kind == EVENTS:
                    try:
                        ev = decode_event(raw, None, ctx)
                    except DecodeError as exc:
                        self.bad(src.name, line, exc.reason, exc.error)
                        src.malformed += 1
                        continue
                    # ts_us: the sort key, which is the decoded ts (pass 1 computed it)
                    if until_us is not None and ts_us >= until_us:
                        break  # records come in ts order: nothing later is wanted
                    w = ts_us // 1000 // flush_ms
                    if w != batch_w:
                        if pending:
                            emit(runner.flush())
                            pending = 0
                        batch_w = w
                    if judge is not None:
                        out = judge(ev)
                        alerts = list(out.alerts) if out is not None else []
                    else:
                        engine.last = None
                        alerts = runner.process(ev)
                        out = engine.last
                    if out is None:
                        self.totals["duplicates"] += 1
                        continue
                    pending += 1
                    if since_us is not None and ts_us < since_us:
                        self.totals["warmup_events"] += 1
                        collector.event(ev, out, alerts, ts_us, state, count=False)
                        continue
                    self.totals["events"] += 1
                    if alerts:
                        emit(alerts)
                    collector.event(ev, out, alerts, ts_us, state)
                elif kind == CONSENT:
                    try:
                        rec = decode_consent(raw)
                    except DecodeError as exc:
                        self.bad(src.name, line, exc.reason, exc.error)
                        src.malformed += 1
                        continue
                    if (
                        until_us is not None
                        and (rec.ts_us if isinstance(rec, Tombstone) else to_us(rec.ts)) >= until_us
                        and opt.consent_order == "ts"
                    ):
                        continue
                    if isinstance(rec, Tombstone):
                        engine.on_consent(rec.msisdn, rec.enterprise, None, state)
                        self.totals["consent_deletions"] += 1
                    else:
                        runner.process(rec)
                        collector.consent_record(rec)
                        self.totals["consent_records"] += 1
                else:
                    try:
                        complaint = decode_model(Complaint, raw, ctx)
                    except DecodeError as exc:
                        self.bad(src.name, line, exc.reason, exc.error)
                        src.malformed += 1
                        continue
                    if until_us is not None and to_us(complaint.ts) >= until_us:
                        break
                    w = to_us(complaint.ts) // 1000 // flush_ms
                    if w != batch_w:
                        if pending:
                            emit(runner.flush())
                            pending = 0
                        batch_w = w
                    runner.process(complaint)
                    pending += 1
                    self.totals["complaints"] += 1
                if pending >= opt.batch:
                    emit(runner.flush())
                    pending = 0
            emit(runner.flush())
            if opt.close_all:
                emit(runner.finish())
            progress.update(task, completed=done)

        self.totals["event_records"] = sum(s.records for s in sources if s.kind == EVENTS)
        for s in sources:
            self.inputs.append(
                {
                    "kind": KIND_NAMES[s.kind],
                    "file": s.name,
                    "records": s.records,
                    "malformed": s.malformed,
                }
            )
        self.malformed.sort()
        malformed = [(f, line, r, e) for _, f, line, r, e in self.malformed]
        self._write_malformed(out_dir / "malformed.csv", malformed)
        self._write_summary(out_dir / "summary.csv", collector, malformed)
        seconds = time.monotonic() - t0
        data = self.report_data(collector, malformed, engine_cfg, traffic, seconds)
        write_report(data, out_dir)
        return AuditResult(self.totals, malformed, collector.by_rule, seconds, out_dir)

    # -- outputs ----------------------------------------------------------------------------

    @staticmethod
    def _write_malformed(path: Path, rows: list[tuple[str, int, str, str]]) -> None:
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "line", "reason", "error"])
            w.writerows(rows)

    def _write_summary(
        self, path: Path, c: Collector, malformed: list[tuple[str, int, str, str]]
    ) -> None:
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                ["section", "name", "rule", "severity", "enterprise", "port", "signature", "count"]
            )
            for name in TOTAL_NAMES:
                w.writerow(["total", name, "", "", "", "", "", self.totals.get(name, 0)])
            for (kind, cat), n in sorted(c.kinds.items()):
                w.writerow(["events", f"{kind}/{cat}", "", "", "", "", "", n])
            for reason, n in sorted(Counter(r for _, _, r, _ in malformed).items()):
                w.writerow(["malformed", reason, "", "", "", "", "", n])
            for (rule, sev), n in sorted(c.by_rule.items()):
                w.writerow(["rule", rule, rule, sev, "", "", "", n])
            for (rule, sev, ent, port, sig), n in sorted(
                c.summary.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0])
            ):
                w.writerow(["alerts", rule, rule, sev, ent, port, sig, n])

    def parameters(self, engine_cfg: Any, traffic: Any) -> list[list[Any]]:
        from smsmon import __version__

        s = self.settings
        rows: list[list[Any]] = [
            ["audit", "smsmon version", __version__],
            ["audit", "rules", self.opt.rules],
            ["audit", "judge still-open windows at the end (--close-all)", self.opt.close_all],
            ["audit", "consent order", self.opt.consent_order],
            [
                "audit",
                "ports / signatures loaded",
                f"{len(self.book.ports)} / {len(self.book.signatures)}",
            ],
        ]
        for name in (
            "timezone",
            "msisdn_key_id",
            "recent_ports_per_msisdn",
            "recent_horizon_days",
            "content_rules_enabled",
            "quiet_hours_enabled",
            "allowed_hours_start",
            "allowed_hours_end",
            "allowed_hours_tz",
            "max_event_bytes",
            "max_text_chars",
            "max_future_skew_seconds",
        ):
            rows.append(["settings", f"SMSMON_{name.upper()}", getattr(s, name)])
        content = engine_cfg.content
        classifier = getattr(content, "classifier", None)
        if classifier is not None:
            rows.append(["content", "classifier version", classifier.version])
            rows.append(["content", "classifier threshold", classifier.threshold])
        for f in fields(traffic):
            value = getattr(traffic, f.name)
            if hasattr(value, "size_ms"):
                value = f"{value.size_ms // 1000} s windows, {value.grace_ms // 1000} s grace"
            rows.append(["traffic", f.name, value])
        return [[g, n, v if isinstance(v, str | int | float) else str(v)] for g, n, v in rows]

    def report_data(
        self,
        c: Collector,
        malformed: list[tuple[str, int, str, str]],
        engine_cfg: Any,
        traffic: Any,
        seconds: float,
    ) -> ReportData:
        now = dt.datetime.now(self.tz).isoformat(timespec="seconds")
        return ReportData(
            title=self.opt.title,
            generated_at=now,
            timezone=self.settings.timezone,
            period=[c.local(c.first_us), c.local(c.last_us)] if c.first_us is not None else [],
            inputs=self.inputs,
            totals={k: int(v) for k, v in self.totals.items()},
            events_by_kind=[[k, cat, n] for (k, cat), n in sorted(c.kinds.items())],
            alerts_by_rule=[
                [rule, sev, n]
                for (rule, sev), n in sorted(c.by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            malformed_by_reason=[
                [r, n] for r, n in sorted(Counter(r for _, _, r, _ in malformed).items())
            ],
            malformed_examples=[list(m) for m in malformed[:50]],
            series=c.series(),
            offenders=c.offender_blocks(),
            unsubscribes=c.unsubscribe_data(),
            parameters=self.parameters(engine_cfg, traffic),
        )


TOTAL_NAMES = (
    "event_records",
    "events",
    "warmup_events",
    "duplicates",
    "malformed",
    "consent_records",
    "consent_deletions",
    "complaints",
    "alerts",
    "per_message_alerts",
    "aggregate_alerts",
    "unsubscribes_attributed",
    "unsubscribes_unattributed",
)


def _tombstone_key(raw: bytes) -> str | None:
    if not (raw.startswith(b'{"_key"') or b'"_tombstone"' in raw):
        return None
    try:
        d = json.loads(raw)
    except ValueError:
        return None
    if isinstance(d, dict) and d.get("_tombstone") is True and isinstance(d.get("_key"), str):
        return str(d["_key"])
    return None


def _consent_tombstone(raw: bytes) -> Tombstone | None:
    from smsmon.contract.codec import consent_key

    key = _tombstone_key(raw)
    if key is None:
        return None
    msisdn, enterprise = consent_key(key.encode())
    d = json.loads(raw)
    ts_ms = d.get("_timestamp")
    return Tombstone(msisdn, enterprise, int(ts_ms) * 1000 if isinstance(ts_ms, int) else 0)


# -- CLI ----------------------------------------------------------------------------------


def parse_when(text: str, tz: ZoneInfo) -> dt.datetime:
    """`2026-10-01` or `2026-10-01T08:00[+08:00]`; naive times are in `tz`."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or time: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    """Look-back audit: replay archived records through the live rules, offline."""
    options = AuditOptions(
        events=args.events,
        ports=args.ports,
        signatures=args.signatures,
        consent=args.consent,
        complaints=args.complaints or [],
        out=Path(args.out),
        close_all=args.close_all,
        rules=args.rules,
        consent_order=args.consent_order,
        progress=False if args.no_progress else None,
        title=args.title,
        since=parse_when(args.since, settings.tz) if args.since else None,
        until=parse_when(args.until, settings.tz) if args.until else None,
    )
    try:
        result = Audit(settings, options).run()
    except AuditError as exc:
        print(f"smsmon audit: {exc}", file=sys.stderr)
        return 2
    t = result.totals
    rate = t["events"] / result.seconds if result.seconds > 0 else 0.0
    print(
        f"audited {t['events']:,} events ({t['duplicates']:,} repeated, "
        f"{t['malformed']:,} malformed lines skipped) in {result.seconds:.1f} s "
        f"({rate:,.0f} events/s): {t['alerts']:,} alerts"
    )
    for (rule, sev), n in sorted(result.alerts_by_rule.items()):
        print(f"  {rule:<28} {sev:<9} {n:>10,}")
    print(f"wrote {result.out}/alerts.jsonl, summary.csv, malformed.csv, report.html")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `smsmon audit`."""
    p = sub.add_parser(
        "audit",
        help=cmd_audit.__doc__,
        description="Replay gateway events (JSONL or CSV, plain or gzip, files or "
        "directories) with reference data through the live pipeline's rules in event-time "
        "order; write alerts.jsonl, summary.csv, malformed.csv and report.html. See "
        "docs/audit.md.",
    )
    p.add_argument("--events", nargs="+", required=True, metavar="PATH")
    p.add_argument("--ports", nargs="+", required=True, metavar="PATH")
    p.add_argument("--signatures", nargs="+", required=True, metavar="PATH")
    p.add_argument("--consent", nargs="+", required=True, metavar="PATH")
    p.add_argument("--complaints", nargs="+", default=[], metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--close-all",
        action="store_true",
        help="also judge the windows still open at the end of the input",
    )
    p.add_argument(
        "--rules",
        choices=("all", "per-message"),
        default="all",
        help="per-message: skip the aggregate (windowed) rules",
    )
    p.add_argument(
        "--consent-order",
        choices=("ts", "first"),
        default="ts",
        help="ts: apply consent records at their ts (history); first: all before any event "
        "(a current snapshot)",
    )
    p.add_argument(
        "--since",
        metavar="TIME",
        help="report from this event time on (ISO date or time, naive = SMSMON_TIMEZONE); "
        "earlier events only build state (give the 30 days before for unsubscribe attribution)",
    )
    p.add_argument("--until", metavar="TIME", help="stop before this event time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--title", default="smsmon look-back audit 回头看")
    p.set_defaults(func=cmd_audit)


def main(argv: list[str] | None = None) -> int:
    """`python -m smsmon.tools.audit ...` (same as `smsmon audit ...`)."""
    parser = argparse.ArgumentParser(prog="smsmon")
    sub = parser.add_subparsers(dest="command", required=True)
    register_cli(sub)
    from smsmon.tools.report import register_cli as register_report

    register_report(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    result: int = args.func(Settings(), args)
    return result


if __name__ == "__main__":
    sys.exit(main())
