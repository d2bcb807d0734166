"""One audit run: load the reference data, scan, replay every record in event-time order
through the live rules, and write the outputs.

The rules are not implemented here: records go through `OfflineRunner` (the same Engine,
Stage1 and Aggregator as the live agents), decoded by the worker's codec and joined against
reference data validated by the worker's `apply_reference`, with the engine configured from
Settings exactly as a worker is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from smsmon import __version__
from smsmon.config.settings import Settings
from smsmon.contract.canonical import MsisdnHasher
from smsmon.contract.codec import DecodeContext, DecodeError, Event, decode_event, decode_model
from smsmon.contract.models import Alert, Complaint, ConsentRecord, PortRecord, SignatureRecord
from smsmon.contract.times import to_us, us_to_ms
from smsmon.rules.content.checks import content_checker
from smsmon.rules.engine import Engine, EngineConfig, Outcome, State
from smsmon.rules.offline import OfflineRunner, Record
from smsmon.rules.reference import ReferenceBook, apply_reference
from smsmon.rules.traffic import TrafficConfig
from smsmon.tools.audit.collector import (
    Collector,
    MalformedRow,
    write_malformed,
    write_summary,
)
from smsmon.tools.audit.ordering import PROGRESS_EVERY, Source, merged, scan
from smsmon.tools.audit.readers import (
    COMPLAINTS,
    CONSENT,
    EVENTS,
    KIND_NAMES,
    AuditError,
    Reader,
    Tombstone,
    decoder,
    expand_inputs,
    tombstone_key,
)
from smsmon.tools.report import ReportData, write_report

log = logging.getLogger(__name__)


@contextlib.contextmanager
def fewer_collections(threshold: int = 50_000) -> Iterator[None]:
    """Run the cyclic garbage collector every `threshold` allocations instead of every 700.

    An audit keeps millions of small objects alive (the rules' state, the ids of all events)
    while it allocates a few per record; with the default thresholds the collector walks
    them again and again. Cycles are still collected, later.
    """
    before = gc.get_threshold()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


# -- the live rule objects, seen from the audit ------------------------------------------


class RecordingEngine(Engine):
    """The live Engine, remembering the Outcome of the last event (for the report)."""

    last: Outcome | None = None

    def on_event(self, event: Event, state: State, detected_at: dt.datetime) -> Outcome:
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
        if self._repeated(rec.msisdn, rec.event_id):
            return []
        return list(self.engine.on_event(rec, self.state, dt.datetime.now(dt.UTC)).alerts)

    def outcome(self, rec: Event) -> Outcome | None:
        """What `process` does with an event, returning the engine's Outcome (None for a
        repeated event id), without going through RecordingEngine."""
        if self._repeated(rec.msisdn, rec.event_id):
            return None
        return Engine.on_event(self.engine, rec, self.state, dt.datetime.now(dt.UTC))

    def flush(self) -> list[Alert]:
        return []

    def finish(self) -> list[Alert]:
        return []


@dataclass
class Rules:
    """The rule objects of one run, wired as a worker's are."""

    traffic: TrafficConfig
    runner: OfflineRunner
    engine: RecordingEngine
    # --rules per-message: the runner hands out the engine's Outcome directly
    judge: Callable[[Event], Outcome | None] | None
    flush_ms: int  # the shortest window: stage-1 partials never span two of them


# -- options and result -----------------------------------------------------------------


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
    malformed: list[MalformedRow]
    alerts_by_rule: Counter[tuple[str, str]]
    seconds: float
    out: Path


# -- the audit ----------------------------------------------------------------------------


class Audit:
    """One look-back run: load reference data, scan, replay in ts order, write outputs."""

    def __init__(self, settings: Settings, options: AuditOptions) -> None:
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

    def run(self) -> AuditResult:
        """Load, scan, replay and write the outputs (see the package's docstring)."""
        with fewer_collections():
            return self._run()

    def _run(self) -> AuditResult:
        t0 = time.monotonic()
        out_dir = Path(self.opt.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        engine_cfg = self.engine_config()
        self.load_reference()
        sources = self.sources()
        rules = self.rules(engine_cfg)
        collector = Collector(self.book, self.tz)
        collector.totals = self.totals
        with (
            self.progress() as progress,
            (out_dir / "alerts.jsonl").open("w", encoding="utf-8") as alerts_out,
        ):
            self.scan(sources, progress)
            self.replay(sources, rules, collector, alerts_out, progress)
        return self.write_outputs(out_dir, sources, collector, engine_cfg, rules, t0)

    # -- malformed lines ---------------------------------------------------------------

    def bad(self, file: str, line: int, reason: str, error: str) -> None:
        order = self._file_order.setdefault(file, len(self._file_order))
        self.malformed.append((order, file, line, reason, error[:300]))
        self.totals["malformed"] += 1

    # -- setting up ----------------------------------------------------------------------

    def engine_config(self) -> EngineConfig:
        s = self.settings
        return EngineConfig(
            hasher=MsisdnHasher(s.require_secret(), s.msisdn_key_id),
            recent_capacity=s.recent_ports_per_msisdn,
            recent_horizon_ms=int(s.recent_horizon_days * 86_400_000),
            content=content_checker(s),
        )

    def load_reference(self) -> None:
        """Ports and signatures, validated by the worker's `apply_reference`, in file order."""
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
                        tomb = tombstone_key(raw)
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

    def sources(self) -> list[Source]:
        """The events, consent and complaints files, in the order given (the tie-break)."""
        opt = self.opt
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
        return sources

    def rules(self, engine_cfg: EngineConfig) -> Rules:
        """The runner (all rules, or the per-message ones) around a RecordingEngine."""
        opt = self.opt
        traffic = TrafficConfig()
        runner_cls = OfflineRunner if opt.rules == "all" else PerMessageRunner
        runner = runner_cls(self.book, engine_cfg, traffic, batch=opt.batch)
        engine = RecordingEngine(self.book, engine_cfg)
        runner.engine = engine
        flush_ms = min(
            traffic.volume.size_ms,
            traffic.flood.size_ms,
            traffic.sublet.size_ms,
            traffic.complaint.size_ms,
        )
        judge = runner.outcome if isinstance(runner, PerMessageRunner) else None
        return Rules(traffic, runner, engine, judge, flush_ms)

    def progress(self) -> Progress:
        """Progress bars on stderr, shown on a terminal unless `progress` says otherwise."""
        opt = self.opt
        show = sys.stderr.isatty() if opt.progress is None else opt.progress
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not show,
            transient=False,
        )

    # -- the two passes ------------------------------------------------------------------

    def scan(self, sources: list[Source], progress: Progress) -> None:
        """Pass 1: every file's sort keys (ordering.scan)."""
        total_bytes = sum(s.path.stat().st_size for s in sources)
        scan_task = progress.add_task("scanning", total=total_bytes)
        consent_first = self.opt.consent_order == "first"
        for src in sources:
            scan(
                src,
                decoder(src.kind, self.ctx),
                self.tz,
                self.bad,
                lambda n: progress.advance(scan_task, n),
                at_zero=consent_first and src.kind == CONSENT,
            )

    def replay(
        self,
        sources: list[Source],
        rules: Rules,
        collector: Collector,
        alerts_out: IO[str],
        progress: Progress,
    ) -> None:
        """Pass 2: every valid record, in (ts, kind, file, line) order, through the rules;
        alerts in [since, until) to `alerts_out` and the collector."""
        opt = self.opt
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
        runner, engine, judge, flush_ms = rules.runner, rules.engine, rules.judge, rules.flush_ms
        decode_consent = decoder(CONSENT, ctx)
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
                w = us_to_ms(ts_us) // flush_ms
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
                complaint_us = to_us(complaint.ts)
                if until_us is not None and complaint_us >= until_us:
                    break
                w = us_to_ms(complaint_us) // flush_ms
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

    # -- outputs ------------------------------------------------------------------------

    def write_outputs(
        self,
        out_dir: Path,
        sources: list[Source],
        collector: Collector,
        engine_cfg: EngineConfig,
        rules: Rules,
        t0: float,
    ) -> AuditResult:
        """malformed.csv, summary.csv and the report (alerts.jsonl is written by `replay`)."""
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
        write_malformed(out_dir / "malformed.csv", malformed)
        write_summary(out_dir / "summary.csv", self.totals, collector, malformed)
        seconds = time.monotonic() - t0
        data = self.report_data(collector, malformed, engine_cfg, rules.traffic, seconds)
        write_report(data, out_dir)
        return AuditResult(self.totals, malformed, collector.by_rule, seconds, out_dir)

    def parameters(self, engine_cfg: EngineConfig, traffic: TrafficConfig) -> list[list[Any]]:
        """The report's parameters table: options, settings, classifier, detectors."""
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
        malformed: list[MalformedRow],
        engine_cfg: EngineConfig,
        traffic: TrafficConfig,
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
            marketing_by_sector=[
                [sector, rule, n] for (sector, rule), n in sorted(c.by_sector.items())
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
