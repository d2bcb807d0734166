"""Runs every rule over a sequence of records in-process, without Kafka: the offline twin of
the live agents (same Engine, Stage1 and Aggregator), used by the look-back audit and tests.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from smsmon.contract.models import Alert, Complaint, ConsentRecord, DlrEvent, MoEvent, MtEvent
from smsmon.contract.times import to_ms
from smsmon.rules.aggregate import Aggregator, Progress, SubjectState
from smsmon.rules.consent import RecentSenders
from smsmon.rules.engine import DictState, Engine, EngineConfig, seen_in
from smsmon.rules.reference import ReferenceBook
from smsmon.rules.traffic import FloodState, Stage1, TrafficConfig
from smsmon.rules.windows import Watermarks

Record = MtEvent | MoEvent | DlrEvent | Complaint | ConsentRecord


class _Subjects:
    def __init__(self) -> None:
        self.states: dict[str, SubjectState] = {}

    def get(self, key: str) -> SubjectState:
        return self.states.get(key) or SubjectState()

    def put(self, key: str, state: SubjectState) -> None:
        if state.empty() and state.windows_seen == 0:
            self.states.pop(key, None)
        else:
            self.states[key] = state


@dataclass
class OfflineRunner:
    """Feeds records, in the order given (event-time order for an audit), through all rules."""

    def __init__(
        self,
        book: ReferenceBook,
        engine_config: EngineConfig,
        traffic: TrafficConfig | None = None,
        batch: int = 1000,
    ) -> None:
        self.engine = Engine(book, engine_config)
        self.state = DictState()
        self.traffic = traffic or TrafficConfig()
        self.stage1 = Stage1(self.traffic, 1, engine_config.hasher, self._port_of)
        self.aggregator = Aggregator(self.traffic, self._quota)
        self.progress = Progress(watermarks=Watermarks(self.traffic.idle_ms))
        self.subjects = _Subjects()
        self.floods: dict[str, FloodState] = {}
        self.book = book
        self.batch = batch
        # per subscriber: the recent-id window, as the worker keeps it (rules/engine.py)
        self._seen: dict[str, bytes] = {}
        self.suppressed: Counter[str] = Counter()
        book.exemptions.hasher = engine_config.hasher
        self._offset = 0

    def _repeated(self, msisdn: str, record_id: str) -> bool:
        window = self._seen.get(msisdn, b"")
        repeated, window = seen_in(window, record_id, self.engine.config.dedup_ids)
        if window:
            self._seen[msisdn] = window
        return repeated

    def _port_of(self, port: str) -> str:
        rec = self.book.port_for(port)
        return rec.port if rec is not None else port

    def _quota(self, port: str) -> tuple[str | None, int | None]:
        rec = self.book.ports.get(port)
        return (rec.enterprise, rec.max_per_minute) if rec is not None else (None, None)

    def run(self, records: Iterable[Record]) -> Iterator[Alert]:
        """Process records, yielding alerts as they are decided; flushes at the end.

        Alerts covered by an exemption are not yielded; they are counted in `suppressed`.
        """
        pending = 0
        for rec in records:
            yield from self._unless_exempt(self.process(rec))
            pending += 1
            if pending >= self.batch:
                yield from self._unless_exempt(self.flush())
                pending = 0
        yield from self._unless_exempt(self.flush())

    def _unless_exempt(self, alerts: list[Alert]) -> Iterator[Alert]:
        exemptions = self.book.exemptions
        for alert in alerts:
            if exemptions.by_id and exemptions.match(alert) is not None:
                self.suppressed[alert.rule] += 1
            else:
                yield alert

    def process(self, rec: Record) -> list[Alert]:
        """One record; its time is its own `ts` (wall time is irrelevant offline)."""
        self._offset += 1
        off = self._offset
        now = dt.datetime.now(dt.UTC)
        wall = to_ms(rec.ts)
        if isinstance(rec, ConsentRecord):
            self.engine.on_consent(rec.msisdn, rec.enterprise, rec, self.state)
            return []
        if isinstance(rec, Complaint):
            if self._repeated(rec.msisdn, "c:" + rec.complaint_id):
                return []
            recent = self.state.recent(rec.msisdn).marketing()
            self.stage1.on_complaint("f", 0, off, rec, recent, wall)
            return []
        if self._repeated(rec.msisdn, rec.event_id):
            return []
        out = self.engine.on_event(rec, self.state, now)
        alerts = list(out.alerts)
        if isinstance(rec, MtEvent) and out.verdict is not None:
            flood = self.floods.setdefault(rec.msisdn, FloodState())
            alerts += self.stage1.on_mt("f", 0, off, rec, out.verdict, flood, wall, now)
        else:
            self.stage1.on_other("f", 0, off, wall, wall)
        return alerts

    def flush(self) -> list[Alert]:
        """Ship the batch's partials to the aggregator and close what the watermark passed."""
        now = dt.datetime.now(dt.UTC)
        wm = self.stage1.watermark(0, 0) or 0
        out: list[Alert] = []
        for _, partial in self.stage1.flush(wm):
            out += self.aggregator.apply(partial, self.progress, self.subjects, wm, now)
        out += self.aggregator.close(self.progress, self.subjects, wm, now)
        return out

    def finish(self) -> list[Alert]:
        """Close every remaining window (end of input: time runs out); exemptions apply."""
        out = self.flush()
        now = dt.datetime.now(dt.UTC)
        far = 2**62
        self.progress.watermarks.advance(0, far, far)
        out += self.aggregator.close(self.progress, self.subjects, far, now)
        return list(self._unless_exempt(out))

    def recent(self, msisdn: str) -> RecentSenders:
        return self.state.recent(msisdn)
