"""What the audit counts for `summary.csv` and `report.html`: events by kind, alerts by rule,
offenders, traffic over time, and how every attributed unsubscribe was honoured.

`Collector` is fed every processed event, applied consent record and written alert; the
summary and malformed-lines CSVs are written from it here, the report's data by the runner.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from smsmon.contract.canonical import mask_msisdn
from smsmon.contract.codec import Event
from smsmon.contract.models import Alert, Category, ConsentRecord, MtEvent, Severity
from smsmon.contract.times import EPOCH, from_us, to_us
from smsmon.rules.engine import Outcome, State
from smsmon.rules.reference import ReferenceBook
from smsmon.tools.report import DELAY_BUCKETS, NO_MARKETING_AFTER, delay_bucket

MalformedRow = tuple[str, int, str, str]  # file, line, reason, error

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

    def __init__(self, book: ReferenceBook, tz: ZoneInfo) -> None:
        self.book = book
        self.tz = tz
        self.kinds: Counter[tuple[str, str]] = Counter()
        self.minutes: dict[str, Counter[int]] = {"mt": Counter(), "other": Counter()}
        self.alert_minutes: dict[str, Counter[int]] = {}
        self.by_rule: Counter[tuple[str, str]] = Counter()
        # alerts about marketing messages by (marketing sector, rule)
        self.by_sector: Counter[tuple[str, str]] = Counter()
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
        self,
        ev: Event,
        out: Outcome,
        alerts: list[Alert],
        ts_us: int,
        state: State,
        count: bool = True,
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

    def _revocations(self, out: Outcome, ts_us: int, msisdn: str) -> None:
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
        self, ev: MtEvent, enterprise: str, alerts: list[Alert], ts_us: int, state: State
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
        if a.sector is not None:
            self.by_sector[(a.sector, rule)] += 1
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


def write_malformed(path: Path, rows: list[MalformedRow]) -> None:
    """`malformed.csv`: one row per malformed line (already sorted)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "line", "reason", "error"])
        w.writerows(rows)


def write_summary(
    path: Path, totals: Counter[str], c: Collector, malformed: list[MalformedRow]
) -> None:
    """`summary.csv` (docs/audit.md lists its sections)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["section", "name", "rule", "severity", "enterprise", "port", "signature", "count"]
        )
        for name in TOTAL_NAMES:
            w.writerow(["total", name, "", "", "", "", "", totals.get(name, 0)])
        for (kind, cat), n in sorted(c.kinds.items()):
            w.writerow(["events", f"{kind}/{cat}", "", "", "", "", "", n])
        for reason, n in sorted(Counter(r for _, _, r, _ in malformed).items()):
            w.writerow(["malformed", reason, "", "", "", "", "", n])
        for (rule, sev), n in sorted(c.by_rule.items()):
            w.writerow(["rule", rule, rule, sev, "", "", "", n])
        for (sector, rule), n in sorted(c.by_sector.items()):
            w.writerow(["sector", sector, rule, "", "", "", "", n])
        for (rule, sev, ent, port, sig), n in sorted(
            c.summary.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0])
        ):
            w.writerow(["alerts", rule, rule, sev, ent, port, sig, n])
