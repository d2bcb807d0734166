"""Aggregate traffic rules, stage 1 (per subscriber partition): flood detection, complaint
attribution, and the per-batch partial counts shipped to the per-subject stage.

Stage 1 sees every event of a subscriber in order. It decides lateness against its own
watermark, detects `recipient.flood` directly (the subject is the msisdn it owns), and
pre-aggregates per batch what the per-subject stage needs: message counts by port, signature
and account per window, the distinct values that reveal a resold port, and attributed
complaints. Each partial names the source offsets it covers so that stage 2 applies every
event exactly once across restarts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from smsmon.contract.canonical import MsisdnHasher, mask_msisdn, murmur2, read_json, state_json
from smsmon.contract.models import Alert, Complaint, MtEvent, Severity
from smsmon.contract.times import from_ms, to_ms
from smsmon.rules import catalog as R
from smsmon.rules.compliance import MtVerdict
from smsmon.rules.windows import Windowing

VOLUME_SPIKE = R.Rule("volume.spike", Severity.MAJOR, "message volume far above normal")
RECIPIENT_FLOOD = R.Rule("recipient.flood", Severity.CRITICAL, "one subscriber flooded")
PORT_SUBLET = R.Rule("port.sublet", Severity.CRITICAL, "port shows the pattern of resale")
COMPLAINT_RATE = R.Rule("complaint.rate", Severity.MAJOR, "complaints above the allowed rate")
AGGREGATE_RULES = (VOLUME_SPIKE, RECIPIENT_FLOOD, PORT_SUBLET, COMPLAINT_RATE)
R.RULES_BY_ID.update({r.id: r for r in AGGREGATE_RULES})

# Dimensions of partial counts (short: they are on the wire of an internal topic).
DIM_PORT, DIM_SIGNATURE, DIM_ACCOUNT = "port", "signature", "account"
SET_SIGNATURE, SET_ACCOUNT, SET_IP = "sig", "acct", "ip"
# Counts per sublet window of a port: all its messages, those under foreign signatures, those
# from accounts not registered on it (shares separate a resold port from stray violations).
SUBLET_TOTAL, SUBLET_FOREIGN, SUBLET_UNREGISTERED = "s:n", "s:sig", "s:acct"
SUBLET_COUNTS = (SUBLET_TOTAL, SUBLET_FOREIGN, SUBLET_UNREGISTERED)
COMPLAINT_PREFIX = "c:"  # complaint counts: "c:port", "c:signature"


@dataclass(frozen=True, slots=True)
class TrafficConfig:
    """Detector parameters (defaults frozen from simulator seeds; see docs/traffic.md)."""

    volume: Windowing = field(default_factory=lambda: Windowing(60_000, 10_000))
    flood: Windowing = field(default_factory=lambda: Windowing(300_000, 10_000))
    sublet: Windowing = field(default_factory=lambda: Windowing(300_000, 10_000))
    complaint: Windowing = field(default_factory=lambda: Windowing(3_600_000, 10_000))
    flood_total: int = 30
    flood_per_enterprise: int = 15
    spike_factor: float = 5.0
    spike_min_count: int = 60
    spike_warmup_windows: int = 10
    ewma_alpha: float = 0.2
    sublet_signatures: int = 3
    sublet_accounts: int = 2
    sublet_ips: int = 3
    sublet_min_share: float = 0.1
    complaint_min: int = 5
    complaint_per_million: float = 1_000.0
    complaint_horizon_ms: int = 3 * 86_400_000
    idle_ms: int = 30_000
    max_set_values: int = 64


def aggregate_alert_id(rule: str, subject_type: str, subject: str, window_start_ms: int) -> str:
    """Contract: UUID5 of `rule|subject_type|subject|window_start` (window start in epoch ms)."""
    return R.uuid5_str(f"{rule}|{subject_type}|{subject}|{window_start_ms}")


@functools.lru_cache(maxsize=262_144)
def subject_partition(dim: str, subject: str, partitions: int) -> int:
    """Stage-2 partition of a subject (murmur2 of `dim|subject`)."""
    if dim in SUBLET_COUNTS:
        dim = DIM_PORT  # a port's sublet counts live with the port's state
    key = f"{dim.removeprefix(COMPLAINT_PREFIX)}|{subject}".encode()
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# -- recipient.flood ----------------------------------------------------------------------


@dataclass(slots=True)
class FloodWindow:
    """Counts of one flood window of one subscriber."""

    total: int = 0
    by_enterprise: dict[str, int] = field(default_factory=dict)
    fired: bool = False


@dataclass(slots=True)
class FloodState:
    """One subscriber's flood windows (the current and the previous one, for stragglers
    within grace), with the source offsets already applied."""

    windows: dict[int, FloodWindow] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        return state_json(
            [
                {str(w): [f.total, f.by_enterprise, f.fired] for w, f in self.windows.items()},
                self.applied,
            ]
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> FloodState:
        if not raw:
            return cls()
        wins, applied = read_json(raw)
        return cls({int(w): FloodWindow(t, e, f) for w, (t, e, f) in wins.items()}, applied)


def count_flood(
    state: FloodState,
    event: MtEvent,
    enterprise: str | None,
    ts_ms: int,
    source: str,
    offset: int,
    cfg: TrafficConfig,
    hasher: MsisdnHasher,
    detected_at: Any,
) -> list[Alert]:
    """Count one mt to its recipient; returns a flood alert the first time a bound is crossed
    in a window (one alert per subscriber and window).

    Idempotent per source offset: an offset at or below the last one applied from `source`
    is ignored, so a replay after a crash does not count twice. The caller has already
    checked the event is not late; the previous window is kept so stragglers count.
    """
    if state.applied.get(source, -1) >= offset:
        return []
    state.applied[source] = offset
    w = cfg.flood.start(ts_ms)
    windows = state.windows
    latest = max(windows) if windows else w
    size = cfg.flood.size_ms
    if w < latest - size:
        return []  # older than the previous window: beyond any grace this state keeps
    win = windows.get(w)
    if win is None:
        win = windows[w] = FloodWindow()
        if len(windows) > 1:  # else w alone, which is not older than itself
            cut = max(w, latest) - size
            for old in [k for k in windows if k < cut]:
                del windows[old]
    win.total += 1
    sender = enterprise or f"port:{event.port}"
    if sender in win.by_enterprise or len(win.by_enterprise) < cfg.max_set_values:
        win.by_enterprise[sender] = win.by_enterprise.get(sender, 0) + 1
    if win.fired:
        return []
    n_sender = win.by_enterprise.get(sender, 0)
    if win.total > cfg.flood_total:
        observed, threshold, what = win.total, cfg.flood_total, "messages from all senders"
    elif n_sender > cfg.flood_per_enterprise:
        observed, threshold, what = n_sender, cfg.flood_per_enterprise, "messages from one sender"
    else:
        return []
    win.fired = True
    subject = hasher(event.msisdn)
    return [
        Alert(
            alert_id=aggregate_alert_id(RECIPIENT_FLOOD.id, "msisdn", subject, w),
            rule=RECIPIENT_FLOOD.id,
            severity=RECIPIENT_FLOOD.severity,
            ts=event.ts,
            detected_at=detected_at,
            subject_type="msisdn",
            subject=subject,
            msisdn_hash=subject,
            msisdn_masked=mask_msisdn(event.msisdn),
            window_start=from_ms(w),
            window_end=from_ms(cfg.flood.end(w)),
            observed=observed,
            threshold=threshold,
            detail=f"{observed} {what} within {cfg.flood.size_ms // 1000} s "
            f"(senders in window: {len(win.by_enterprise)}) exceeds {threshold}",
        )
    ]


# -- partial counts ---------------------------------------------------------------------


@dataclass(slots=True)
class Partial:
    """What one source (topic-partition) contributes to one stage-2 partition in one batch."""

    source: str
    logical: int
    lo: int
    hi: int
    watermark: int | None
    counts: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)
    sets: dict[tuple[str, str, int], set[str]] = field(default_factory=dict)
    meta: dict[tuple[str, str], str] = field(default_factory=dict)  # subject -> enterprise
    caught_up: bool = True  # the logical partition had nothing pending when this was sent

    def encode(self) -> bytes:
        return state_json(
            {
                "s": self.source,
                "p": self.logical,
                "lo": self.lo,
                "hi": self.hi,
                "wm": self.watermark,
                "c": [[d, s, w, offs] for (d, s, w), offs in self.counts.items()],
                "v": [[d, s, w, sorted(vals)] for (d, s, w), vals in self.sets.items()],
                "m": [[d, s, e] for (d, s), e in self.meta.items()],
                "u": self.caught_up,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Partial:
        d = read_json(raw)
        return cls(
            source=d["s"],
            logical=d["p"],
            lo=d["lo"],
            hi=d["hi"],
            watermark=d["wm"],
            counts={(c[0], c[1], c[2]): c[3] for c in d["c"]},
            sets={(v[0], v[1], v[2]): set(v[3]) for v in d["v"]},
            meta={(m[0], m[1]): m[2] for m in d["m"]},
            caught_up=d.get("u", True),
        )


class PartialBuilder:
    """Collects one batch's contributions, grouped by source and stage-2 partition."""

    def __init__(self, partitions: int, cfg: TrafficConfig) -> None:
        self.partitions = partitions
        self.cfg = cfg
        self.parts: dict[tuple[str, int], Partial] = {}
        self.ranges: dict[str, tuple[int, int, int]] = {}  # source -> (logical, lo, hi)

    def touch(self, source: str, logical: int, offset: int) -> None:
        """Record that `source` processed `offset` (advances its range even without counts)."""
        cur = self.ranges.get(source)
        if cur is None:
            self.ranges[source] = (logical, offset, offset)
        else:
            self.ranges[source] = (logical, min(cur[1], offset), max(cur[2], offset))

    def _part(self, source: str, dim: str, subject: str) -> Partial:
        q = subject_partition(dim, subject, self.partitions)
        key = (source, q)
        p = self.parts.get(key)
        if p is None:
            logical = self.ranges[source][0]
            p = self.parts[key] = Partial(source, logical, 0, 0, None)
        return p

    def add_mt(
        self, source: str, offset: int, ts_ms: int, event: MtEvent, verdict: MtVerdict
    ) -> None:
        """Count an mt (not late) by port, signature and account, and note sublet evidence."""
        cfg = self.cfg
        w = cfg.volume.start(ts_ms)
        port_key = verdict.port_key or event.port
        subjects = [(DIM_PORT, port_key), (DIM_ACCOUNT, event.account)]
        if verdict.signature is not None:
            subjects.append((DIM_SIGNATURE, verdict.signature))
        for dim, subject in subjects:
            part = self._part(source, dim, subject)
            part.counts.setdefault((dim, subject, w), []).append(offset)
            if dim == DIM_PORT and verdict.port is not None:
                part.meta[(dim, subject)] = verdict.port.enterprise
            elif dim == DIM_SIGNATURE and verdict.sig_record is not None:
                part.meta[(dim, subject)] = verdict.sig_record.enterprise
        p = verdict.port
        if p is None:
            return
        sw = cfg.sublet.start(ts_ms)
        evidence: list[tuple[str, str]] = []
        s, sig = verdict.sig_record, verdict.signature
        foreign = sig is not None and (
            s is None
            or (
                (s.enterprise != p.enterprise)
                if not p.shared
                else bool(s.ports and p.port not in s.ports)
            )
        )
        if foreign and sig is not None:
            evidence.append((SET_SIGNATURE, sig))
        unregistered = event.account not in p.accounts
        if unregistered:
            evidence.append((SET_ACCOUNT, event.account))
            if event.source_ip:
                evidence.append((SET_IP, event.source_ip))
        part = self._part(source, DIM_PORT, p.port)
        part.counts.setdefault((SUBLET_TOTAL, p.port, sw), []).append(offset)
        if foreign:
            part.counts.setdefault((SUBLET_FOREIGN, p.port, sw), []).append(offset)
        if unregistered:
            part.counts.setdefault((SUBLET_UNREGISTERED, p.port, sw), []).append(offset)
        for kind, value in evidence:
            vals = part.sets.setdefault((kind, p.port, sw), set())
            if len(vals) < cfg.max_set_values:
                vals.add(value)

    def add_complaint(
        self, source: str, offset: int, ts_ms: int, targets: list[tuple[str, str]]
    ) -> None:
        """Count one complaint against each attributed (dim, subject), keyed by its minute:
        stage 2 counts it in its hour and, for early firing, in that minute."""
        w = self.cfg.volume.start(ts_ms)
        for dim, subject in targets:
            part = self._part(source, COMPLAINT_PREFIX + dim, subject)
            part.counts.setdefault((COMPLAINT_PREFIX + dim, subject, w), []).append(offset)

    def build(
        self, watermarks: dict[int, int | None], caught_up: dict[int, bool] | None = None
    ) -> list[tuple[int, Partial]]:
        """One partial per (source, stage-2 partition) for every source seen in the batch."""
        out: list[tuple[int, Partial]] = []
        for source, (logical, lo, hi) in self.ranges.items():
            for q in range(self.partitions):
                part = self.parts.get((source, q)) or Partial(source, logical, 0, 0, None)
                part.lo, part.hi, part.logical = lo, hi, logical
                part.watermark = watermarks.get(logical)
                part.caught_up = True if caught_up is None else caught_up.get(logical, True)
                out.append((q, part))
        self.parts.clear()
        self.ranges.clear()
        return out


def attribute_complaint(
    complaint: Complaint,
    recent: list[tuple[str, str | None, int]],
    cfg: TrafficConfig,
    port_of: Callable[[str], str] = str,
) -> list[tuple[str, str]]:
    """The (dim, subject) pairs a complaint counts against.

    The port and/or signature the subscriber named; when neither is named, every sender
    (port and signature) of marketing the subscriber received within the horizon before the
    complaint. `recent` holds (port, signature, last marketing ts in ms).
    """
    from smsmon.contract.canonical import canonical_signature

    targets: list[tuple[str, str]] = []
    sig = canonical_signature(complaint.signature) if complaint.signature else None
    if complaint.port:
        targets.append((DIM_PORT, port_of(complaint.port)))
    if sig:
        targets.append((DIM_SIGNATURE, sig))
    if targets:
        return targets
    ts = to_ms(complaint.ts)
    seen: set[tuple[str, str]] = set()
    for port, signature, mts in recent:
        if 0 <= ts - mts <= cfg.complaint_horizon_ms:
            seen.add((DIM_PORT, port))
            if signature:
                seen.add((DIM_SIGNATURE, signature))
    return sorted(seen)


class Stage1:
    """Stage-1 traffic logic of one worker (or of the audit): watermarks, lateness, floods,
    complaints, and the partials of the current batch.

    A logical partition (an msisdn partition) is fed by several sources (the events topic
    partition and the re-keying topic partition of the same number); its watermark is the
    minimum of their event times, so records delayed by re-keying are not judged late.
    """

    def __init__(
        self,
        cfg: TrafficConfig,
        partitions: int,
        hasher: MsisdnHasher,
        port_of: Callable[[str], str] = str,
        caught_up: Callable[[Hashable], bool] | None = None,
        expected: Callable[[int], list[str]] | None = None,
    ) -> None:
        from smsmon.rules.windows import Watermarks

        self.cfg = cfg
        self.hasher = hasher
        self.port_of = port_of
        # source -> nothing pending (live: consumer lag 0); None offline (never pending)
        self.caught_up = caught_up
        self.builder = PartialBuilder(partitions, cfg)
        self._wm: dict[int, Watermarks] = {}
        self._new_wm = Watermarks
        # logical partition -> the sources that drive its watermark (live: its events
        # partition and the watermark markers of every other events partition)
        self.expected = expected
        self._shipped: dict[int, int | None] = {}  # logical -> watermark last sent to stage 2
        # marker sources whose origin said it is caught up and quiet (an idle marker): the
        # only way a marker source stops holding the watermark back when the caller's
        # `caught_up` never calls it caught up (live: it cannot see the origin's backlog)
        self._origin_idle: set[Hashable] = set()
        self.late = 0

    def _settled(self, source: Hashable) -> bool:
        """Nothing of `source` is pending: its origin declared it idle (a marker source), or
        the caller's `caught_up` says so (offline: always)."""
        if source in self._origin_idle:
            return True
        return self.caught_up is None or self.caught_up(source)

    def watermark(self, logical: int, wall_ms: int) -> int | None:
        """Current watermark of a logical partition."""
        w = self._wm.get(logical)
        return None if w is None else w.combined(wall_ms, self._settled)

    def _watermarks(self, logical: int, wall_ms: int) -> Any:
        w = self._wm.get(logical)
        if w is None:
            w = self._wm[logical] = self._new_wm(self.cfg.idle_ms)
            if self.expected is not None:
                w.expect(self.expected(logical), wall_ms)
        return w

    def _advance(self, source: str, logical: int, ts_ms: int, wall_ms: int) -> None:
        self._watermarks(logical, wall_ms).advance(source, ts_ms, wall_ms)

    def _judge_watermark(self, source: str, logical: int, ts_ms: int, wall_ms: int) -> int | None:
        """The watermark a record is judged against. A source that is new or was idle joins
        first, so its first record (e.g. the first re-keyed one) is not judged late against
        sources it never held back."""
        w = self._watermarks(logical, wall_ms)
        if not w.is_active(source, wall_ms):
            self._advance(source, logical, ts_ms, wall_ms)
        return self.watermark(logical, wall_ms)

    def on_mt(
        self,
        source: str,
        logical: int,
        offset: int,
        event: MtEvent,
        verdict: MtVerdict,
        flood: FloodState,
        wall_ms: int,
        detected_at: Any,
        drives: bool = True,
        origin: str | None = None,
    ) -> list[Alert]:
        """Count an mt; returns flood alerts. `flood` is the recipient's state (mutated).

        `drives` False: the record is judged against the watermark but does not move it (a
        re-keyed record: its origin partition's watermark markers move it, see on_marker).
        `origin`: for a re-keyed record, the marker source of the partition it came from
        (m<Q>.<P>); if that origin had declared itself idle, it rejoins at this record.
        """
        ts_ms = to_ms(event.ts)
        if drives:
            wm = self._judge_watermark(source, logical, ts_ms, wall_ms)
        else:
            if origin is not None and origin in self._origin_idle:
                # the first record of an origin that had gone idle: it rejoins at this
                # record before it is judged, like a direct source (see _judge_watermark)
                self._origin_idle.discard(origin)
                self._advance(origin, logical, ts_ms, wall_ms)
            wm = self._watermarks(logical, wall_ms).combined(wall_ms, self._settled)
        self.builder.touch(source, logical, offset)
        alerts: list[Alert] = []
        if not self.cfg.flood.is_late(ts_ms, wm):
            alerts = count_flood(
                flood,
                event,
                verdict.enterprise,
                ts_ms,
                source,
                offset,
                self.cfg,
                self.hasher,
                detected_at,
            )
        if self.cfg.volume.is_late(ts_ms, wm):
            self.late += 1
        else:
            self.builder.add_mt(source, offset, ts_ms, event, verdict)
        if drives:
            self._advance(source, logical, ts_ms, wall_ms)
        return alerts

    def on_other(
        self,
        source: str,
        logical: int,
        offset: int,
        ts_ms: int,
        wall_ms: int,
        drives: bool = True,
    ) -> None:
        """An mo/dlr event: advances time (if it `drives`) and the source's covered range."""
        self.builder.touch(source, logical, offset)
        if drives:
            self._advance(source, logical, ts_ms, wall_ms)

    def on_progress(self, source: str, logical: int, ts_ms: int, wall_ms: int) -> None:
        """A source reached `ts_ms` without a record of this logical partition (live: an
        events partition whose records all belonged elsewhere and were re-keyed)."""
        self._advance(source, logical, ts_ms, wall_ms)

    def on_marker(
        self,
        source: str,
        marker: str,
        logical: int,
        offset: int,
        ts_ms: int | None,
        wall_ms: int,
        idle: bool = False,
    ) -> None:
        """A watermark marker read from re-keying partition `source`: the events partition
        named by `marker` has processed (and re-keyed) everything up to `ts_ms`. Re-keyed
        records of one origin arrive in order but interleaved with other origins' records,
        so each origin drives the watermark separately, never the re-keyed records.

        `idle`: the origin also says it had nothing pending and read nothing for `idle_ms`
        (`ts_ms` None if it never read a record). Being read after every record the origin
        re-keyed before it, this is the only safe sign that the origin stopped: a marker
        source that is silent is not idle (its origin may be slow, restarting, or its
        forwarded records still in flight or not yet committed), so it holds the watermark
        back until the origin says so. It rejoins with its next marker or record."""
        self.builder.touch(source, logical, offset)
        w = self._watermarks(logical, wall_ms)
        if ts_ms is not None:
            w.advance(marker, ts_ms, wall_ms)
        if idle:
            self._origin_idle.add(marker)
        else:
            self._origin_idle.discard(marker)

    def on_complaint(
        self,
        source: str,
        logical: int,
        offset: int,
        complaint: Complaint,
        recent: list[tuple[str, str | None, int]],
        wall_ms: int,
    ) -> list[tuple[str, str]]:
        """Attribute and count a complaint; returns its targets (empty: unattributed)."""
        ts_ms = to_ms(complaint.ts)
        # Complaints join event time; they don't drive it (gateway events define progress,
        # and a burst of complaints must not make the traffic it is about late).
        wm = self.watermark(logical, wall_ms)
        self.builder.touch(source, logical, offset)
        targets = attribute_complaint(complaint, recent, self.cfg, self.port_of)
        if targets:
            if self.cfg.complaint.is_late(ts_ms, wm):
                self.late += 1
            else:
                self.builder.add_complaint(source, offset, ts_ms, targets)
        return targets

    def flush(self, wall_ms: int) -> list[tuple[int, Partial]]:
        """The batch's partials, one per (source, stage-2 partition)."""
        marks = {p: w.combined(wall_ms, self._settled) for p, w in self._wm.items()}
        settled = {p: all(self._settled(src) for src in w.event_ms) for p, w in self._wm.items()}
        out = self.builder.build(marks, settled)
        # Stage 2 applies these partials in order but may close windows between any two of
        # them (its batches need not end where ours did). Records of an early partial were
        # judged against the watermark of their time in this batch, lower than the one it
        # ends with: if the first partial carried the new watermark, stage 2 could close a
        # window that a later partial of this batch still counts in, and drop those counts
        # as late. So only the last partial of a logical partition to each stage-2 partition
        # carries the new watermark; the earlier ones repeat the one shipped before.
        last = {(part.logical, q): i for i, (q, part) in enumerate(out)}
        for i, (q, part) in enumerate(out):
            if last[(part.logical, q)] != i:
                part.watermark = self._shipped.get(part.logical)
        for logical, _q in last:
            self._shipped[logical] = marks.get(logical)
        return out

    def heartbeat(self, wall_ms: int) -> list[tuple[int, Partial]]:
        """Watermark-only partials for logical partitions whose watermark moved without a
        record (a source went idle, or markers arrived in a batch without counts before).

        Stage 2 closes windows only when partials arrive; without this, the last windows
        before a quiet spell stayed open until traffic resumed. A heartbeat has no counts
        and covers no offsets (hi -1), so stage 2 applies its watermark and nothing else.
        """
        out: list[tuple[int, Partial]] = []
        for p, w in self._wm.items():
            wm = w.combined(wall_ms, self._settled)
            if wm is None or wm == self._shipped.get(p):
                continue
            self._shipped[p] = wm
            settled = all(self._settled(src) for src in w.event_ms)
            for q in range(self.builder.partitions):
                out.append((q, Partial(f"hb{p}", p, -1, -1, wm, caught_up=settled)))
        return out
