"""Aggregate traffic rules, stage 2 (per subject partition): windows by port, signature and
account; `volume.spike`, `port.sublet` and `complaint.rate`.

Partials from stage 1 are applied exactly once (per source, offsets at or below the applied
mark are skipped). Thresholds that do not depend on history (a port's quota, the sublet
counts) fire the moment they are crossed; the learned baseline and the complaint rate are
judged when a window closes, in window order, so the set of alerts does not depend on how
partials interleave: a live run and an offline audit of the same traffic agree.

**Early firing of the hourly complaint windows.** `complaint.rate` does not wait an hour: its
sends and complaints are also counted per minute, and each minute is folded into the hour's
"folded" counts once the watermark has passed it by the complaint window's grace.
After each fold the rate of the folded part of the hour is judged with the same thresholds;
the first minute at which they hold fires the window's alert (the same `alert_id` as a
close-time alert; `ts` is that minute's end, `window_end` the hour's end). A window that
fired early is not judged again at its close; one that crosses only with its last minutes is
judged at its close as before. Since only minutes the watermark has passed are judged, the
early alert, like the close-time one, does not depend on how partials interleave. The other
aggregate windows are at most five minutes long and are judged when they close.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from smsmon.contract.canonical import compact_json
from smsmon.contract.models import Alert
from smsmon.contract.times import from_ms
from smsmon.rules.traffic import (
    COMPLAINT_PREFIX,
    COMPLAINT_RATE,
    DIM_PORT,
    DIM_SIGNATURE,
    PORT_SUBLET,
    SET_ACCOUNT,
    SET_IP,
    SET_SIGNATURE,
    SUBLET_COUNTS,
    VOLUME_SPIKE,
    Partial,
    TrafficConfig,
    aggregate_alert_id,
)
from smsmon.rules.windows import Watermarks, Windowing


@dataclass(slots=True)
class SubjectState:
    """Open windows and learned baseline of one (dimension, subject)."""

    volume: dict[int, list[int]] = field(default_factory=dict)  # start -> [count, fired]
    sublet: dict[int, dict[str, Any]] = field(default_factory=dict)  # start -> sets, counts
    # start -> [sent, complaints, sent in folded minutes, complaints in folded minutes, fired]
    hours: dict[int, list[int]] = field(default_factory=dict)
    # complaints and sends of the minutes not folded yet: minute start -> count
    cmin: dict[int, int] = field(default_factory=dict)
    smin: dict[int, int] = field(default_factory=dict)
    ewma: float = 0.0
    windows_seen: int = 0
    prev_hour: list[int] = field(default_factory=lambda: [-1, 0])  # [start, sent]
    enterprise: str | None = None
    quota: int | None = None

    def encode(self) -> bytes:
        return compact_json(
            {
                "v": self.volume,
                "s": self.sublet,
                "h": self.hours,
                "cm": self.cmin,
                "sm": self.smin,
                "e": self.ewma,
                "n": self.windows_seen,
                "ph": self.prev_hour,
                "ent": self.enterprise,
                "q": self.quota,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> SubjectState:
        if not raw:
            return cls()
        d = json.loads(raw)
        return cls(
            volume={int(k): v for k, v in d["v"].items()},
            sublet={int(k): v for k, v in d["s"].items()},
            # values written before early firing hold [sent, complaints]
            hours={int(k): v + [0, 0, 0][: 5 - len(v)] for k, v in d["h"].items()},
            cmin={int(k): v for k, v in d.get("cm", {}).items()},
            smin={int(k): v for k, v in d.get("sm", {}).items()},
            ewma=d["e"],
            windows_seen=d["n"],
            prev_hour=d.get("ph", [-1, 0]),
            enterprise=d["ent"],
            quota=d["q"],
        )

    def empty(self) -> bool:
        return not (self.volume or self.sublet or self.hours or self.cmin or self.smin)


class SubjectStore(Protocol):
    """Where stage 2 keeps subject states (a Faust table overlay live, a dict offline)."""

    def get(self, key: str) -> SubjectState: ...

    def put(self, key: str, state: SubjectState) -> None: ...


@dataclass(slots=True)
class Progress:
    """Per stage-2 partition: applied offsets per source, watermarks, closed horizons."""

    applied: dict[str, int] = field(default_factory=dict)
    watermarks: Watermarks = field(default_factory=Watermarks)
    open_index: dict[str, set[str]] = field(default_factory=dict)  # kind|end -> keys
    # Per window kind ("v" volume, "s" sublet, "h" complaint hour): every window ending at
    # or before this instant has been judged. Contributions to such windows are late. Kept
    # separately from the watermark because the combined watermark can move backwards when
    # an idle source rejoins; a judged window must never be reopened.
    closed: dict[str, int] = field(default_factory=dict)
    # per logical partition: did its last partial say it had nothing pending? (idleness)
    caught_up: dict[int, bool] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "a": self.applied,
                "w": {str(k): v for k, v in self.watermarks.event_ms.items()},
                "c": self.closed,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | None, idle_ms: int) -> Progress:
        p = cls(watermarks=Watermarks(idle_ms))
        if raw:
            d = json.loads(raw)
            p.applied = d["a"]
            p.watermarks.event_ms = {int(k): v for k, v in d["w"].items()}
            p.closed = d.get("c", {})
        return p

    def is_closed(self, kind: str, window_end: int) -> bool:
        """True if the window of `kind` ending at `window_end` was already judged."""
        return window_end <= self.closed.get(kind, -1)


PortQuota = Callable[[str], tuple[str | None, int | None]]

# The order in which the windows ending at one instant are judged (see `Aggregator.close`).
_CLOSE_ORDER = {"v": 0, "s": 1, "m": 2, "h": 3}


class Aggregator:
    """Applies partials and closes windows for one stage-2 partition."""

    def __init__(self, cfg: TrafficConfig, quota: PortQuota) -> None:
        self.cfg = cfg
        self.quota = quota
        self.late = 0
        # (dim, subject, count) of volume windows closed since the caller last cleared it
        self.closed_counts: list[tuple[str, str, int]] = []

    @staticmethod
    def key(dim: str, subject: str) -> str:
        return f"{dim}|{subject}"

    def apply(
        self,
        partial: Partial,
        progress: Progress,
        store: SubjectStore,
        wall_ms: int,
        detected_at: dt.datetime,
    ) -> list[Alert]:
        """Apply one partial; returns the alerts of thresholds crossed by it."""
        cfg = self.cfg
        progress.caught_up[partial.logical] = partial.caught_up
        if partial.watermark is not None:
            progress.watermarks.advance(partial.logical, partial.watermark, wall_ms)
        else:
            progress.watermarks.seen_wall_ms.setdefault(partial.logical, wall_ms)
        after = progress.applied.get(partial.source, -1)
        if partial.hi <= after:
            return []  # a replay of something already applied
        alerts: list[Alert] = []
        touched: dict[str, SubjectState] = {}

        def state(dim: str, subject: str) -> SubjectState:
            k = self.key(dim.removeprefix(COMPLAINT_PREFIX), subject)
            st = touched.get(k)
            if st is None:
                st = touched[k] = store.get(k)
            return st

        for (dim, subject, w), offsets in partial.counts.items():
            n = sum(1 for o in offsets if o > after)
            if n == 0:
                continue
            if dim in SUBLET_COUNTS:
                st = state(DIM_PORT, subject)
                if progress.is_closed("s", cfg.sublet.end(w)):
                    self.late += n if dim == SUBLET_COUNTS[0] else 0
                    continue
                counts = st.sublet.setdefault(w, {}).setdefault("n", [0, 0, 0])
                counts[SUBLET_COUNTS.index(dim)] += n
                progress.open_index.setdefault(f"s|{cfg.sublet.end(w)}", set()).add(
                    self.key(DIM_PORT, subject)
                )
                continue
            st = state(dim, subject)
            k = self.key(dim.removeprefix(COMPLAINT_PREFIX), subject)
            if dim.startswith(COMPLAINT_PREFIX):
                # `w` is the complaint's minute (an hour's start from earlier versions)
                h = cfg.complaint.start(w)
                if progress.is_closed("h", cfg.complaint.end(h)):
                    self.late += n
                    continue
                st.hours.setdefault(h, [0, 0, 0, 0, 0])[1] += n
                progress.open_index.setdefault(f"h|{cfg.complaint.end(h)}", set()).add(k)
                m = cfg.volume.start(w)
                if not progress.is_closed("m", cfg.volume.end(m)):
                    st.cmin[m] = st.cmin.get(m, 0) + n
                    progress.open_index.setdefault(f"m|{cfg.volume.end(m)}", set()).add(k)
                continue
            if progress.is_closed("v", cfg.volume.end(w)):
                self.late += n
                continue
            ent = partial.meta.get((dim, subject))
            if ent is not None:
                st.enterprise = ent
            if dim == DIM_PORT:
                st.enterprise, st.quota = self.quota(subject)
            win = st.volume.setdefault(w, [0, 0])
            win[0] += n
            progress.open_index.setdefault(f"v|{cfg.volume.end(w)}", set()).add(k)
            h = cfg.complaint.start(w)
            if dim in (DIM_PORT, DIM_SIGNATURE) and not progress.is_closed(
                "h", cfg.complaint.end(h)
            ):
                st.hours.setdefault(h, [0, 0, 0, 0, 0])[0] += n
                progress.open_index.setdefault(f"h|{cfg.complaint.end(h)}", set()).add(k)
                if not progress.is_closed("m", cfg.volume.end(w)):
                    st.smin[w] = st.smin.get(w, 0) + n
                    progress.open_index.setdefault(f"m|{cfg.volume.end(w)}", set()).add(k)
            if st.quota is not None and win[0] > st.quota and not win[1]:
                win[1] = 1
                # Fired at the crossing, before the window closes: `observed` is the message
                # that crossed (quota + 1), not the count so far, which depends on how the
                # window's partials were cut into batches (a crash or a slow worker cuts them
                # differently) and would make the same alert differ between runs.
                alerts.append(
                    self._spike(
                        dim,
                        subject,
                        w,
                        st.quota + 1,
                        st.quota,
                        None,
                        st,
                        detected_at,
                        f"more than the port's quota of {st.quota}/min",
                    )
                )
        for (kind, port, w), values in partial.sets.items():
            st = state(DIM_PORT, port)
            k = self.key(DIM_PORT, port)
            if progress.is_closed("s", cfg.sublet.end(w)):
                self.late += 1
                continue
            sets = st.sublet.setdefault(w, {})
            vals = sets.setdefault(kind, [])
            for v in sorted(values):
                if v not in vals and len(vals) < cfg.max_set_values:
                    vals.append(v)
            progress.open_index.setdefault(f"s|{cfg.sublet.end(w)}", set()).add(k)
        progress.applied[partial.source] = max(after, partial.hi)
        for k, st in touched.items():
            store.put(k, st)
        return alerts

    def close(
        self, progress: Progress, store: SubjectStore, wall_ms: int, detected_at: dt.datetime
    ) -> list[Alert]:
        """Close every window the watermark has passed, oldest first; judge and forget them."""
        cfg = self.cfg
        wm = progress.watermarks.combined(
            wall_ms,
            lambda p: progress.caught_up.get(int(str(p)), True),
        )
        if wm is None:
            return []
        alerts: list[Alert] = []
        # "m": the minutes of the complaint windows, folded for early firing with the
        # complaint window's grace
        minutes = Windowing(cfg.volume.size_ms, cfg.complaint.grace_ms)
        windowing = {"v": cfg.volume, "s": cfg.sublet, "h": cfg.complaint, "m": minutes}
        for kind, spec in windowing.items():
            # every window ending at or before wm - grace is closed from now on
            horizon = spec.start(wm - spec.grace_ms)
            if horizon > progress.closed.get(kind, -1):
                progress.closed[kind] = horizon
        # at one instant: volume windows close, then minutes fold, then hours close
        due = sorted(
            (int(ik.split("|", 1)[1]), _CLOSE_ORDER[ik[0]], ik)
            for ik in progress.open_index
            if progress.is_closed(ik[0], int(ik.split("|", 1)[1]))
        )
        for end, _, ik in due:
            kind = ik.split("|", 1)[0]
            for k in sorted(progress.open_index.pop(ik)):
                st = store.get(k)
                dim, subject = k.split("|", 1)
                if kind == "v":
                    start = end - cfg.volume.size_ms
                    win = st.volume.pop(start, None)
                    if win is not None:
                        self.closed_counts.append((dim, subject, win[0]))
                        alerts += self._close_volume(dim, subject, start, win, st, detected_at)
                elif kind == "m":
                    alerts += self._fold_minute(dim, subject, end - cfg.volume.size_ms, st,
                                                detected_at)  # fmt: skip
                elif kind == "s":
                    start = end - cfg.sublet.size_ms
                    sets = st.sublet.pop(start, None)
                    if sets is not None:
                        alert = self._sublet(subject, start, sets, st, detected_at)
                        if alert is not None:
                            alerts.append(alert)
                else:
                    start = end - cfg.complaint.size_ms
                    hour = st.hours.pop(start, None)
                    if hour is not None:
                        alerts += self._close_hour(dim, subject, start, hour, st, detected_at)
                store.put(k, st)
        return alerts

    def rebuild_index(
        self, progress: Progress, records: Iterable[tuple[str, SubjectState]]
    ) -> None:
        """Recreate the open-window index from stored subject states (after a restart)."""
        cfg = self.cfg
        for k, st in records:
            for w in st.volume:
                progress.open_index.setdefault(f"v|{cfg.volume.end(w)}", set()).add(k)
            for w in st.sublet:
                progress.open_index.setdefault(f"s|{cfg.sublet.end(w)}", set()).add(k)
            for w in st.hours:
                progress.open_index.setdefault(f"h|{cfg.complaint.end(w)}", set()).add(k)
            for m in set(st.cmin) | set(st.smin):
                progress.open_index.setdefault(f"m|{cfg.volume.end(m)}", set()).add(k)

    # -- judgements ----------------------------------------------------------------------

    def _close_volume(
        self,
        dim: str,
        subject: str,
        start: int,
        win: list[int],
        st: SubjectState,
        detected_at: dt.datetime,
    ) -> list[Alert]:
        cfg = self.cfg
        count, fired = win
        out: list[Alert] = []
        baseline = st.ewma if st.windows_seen >= cfg.spike_warmup_windows else None
        if (
            baseline is not None
            and not fired
            and count >= cfg.spike_min_count
            and count > cfg.spike_factor * baseline
        ):
            threshold = max(cfg.spike_min_count, cfg.spike_factor * baseline)
            out.append(
                self._spike(
                    dim,
                    subject,
                    start,
                    count,
                    threshold,
                    baseline,
                    st,
                    detected_at,
                    f"{cfg.spike_factor:g}x its learned baseline",
                )
            )
        # Learn only from windows that did not alert (spike or quota), so a spike lasting ten
        # minutes alerts in every one of its windows instead of becoming the new normal.
        if out or fired:
            return out
        st.ewma = (
            float(count)
            if st.windows_seen == 0
            else cfg.ewma_alpha * count + (1 - cfg.ewma_alpha) * st.ewma
        )
        st.windows_seen += 1
        return out

    def _close_hour(
        self,
        dim: str,
        subject: str,
        start: int,
        hour: list[int],
        st: SubjectState,
        detected_at: dt.datetime,
    ) -> list[Alert]:
        cfg = self.cfg
        sent, complaints = hour[0], hour[1]
        for pending in (st.cmin, st.smin):  # minutes not folded: counted in the totals above
            for m in [m for m in pending if cfg.complaint.start(m) == start]:
                del pending[m]
        # Complaints trail the messages they are about: rate them against the sends of this
        # window and the one before it.
        sent += self._previous_sent(start, st)
        st.prev_hour = [start, hour[0]]
        if hour[4]:  # fired early
            return []
        alert = self._complaint_rate(dim, subject, start, sent, complaints, None, st, detected_at)
        return [] if alert is None else [alert]

    def _previous_sent(self, start: int, st: SubjectState) -> int:
        prev_start, prev_sent = st.prev_hour
        return prev_sent if prev_start == start - self.cfg.complaint.size_ms else 0

    def _fold_minute(
        self,
        dim: str,
        subject: str,
        minute: int,
        st: SubjectState,
        detected_at: dt.datetime,
    ) -> list[Alert]:
        """The watermark passed the minute starting at `minute` by the complaint grace: fold
        its sends and complaints into its hour's folded counts and judge the hour so far."""
        cfg = self.cfg
        complaints = st.cmin.pop(minute, 0)
        sends = st.smin.pop(minute, 0)
        if not (complaints or sends):
            return []
        start = cfg.complaint.start(minute)
        hour = st.hours.get(start)
        if hour is None:
            return []
        hour[2] += sends
        hour[3] += complaints
        if hour[4] or hour[3] < cfg.complaint_min:
            return []
        upto = minute + cfg.volume.size_ms
        sent = hour[2] + self._previous_sent(start, st)
        alert = self._complaint_rate(dim, subject, start, sent, hour[3], upto, st, detected_at)
        if alert is None:
            return []
        hour[4] = 1
        return [alert]

    def _complaint_rate(
        self,
        dim: str,
        subject: str,
        start: int,
        sent: int,
        complaints: int,
        upto: int | None,
        st: SubjectState,
        detected_at: dt.datetime,
    ) -> Alert | None:
        """The `complaint.rate` alert of the hour starting at `start`, if its thresholds hold
        for these counts; `upto` is where an early judgement stopped (None: the whole hour)."""
        cfg = self.cfg
        if complaints < cfg.complaint_min:
            return None
        rate = complaints * 1_000_000 / max(sent, 1)
        if rate < cfg.complaint_per_million:
            return None
        end = start + cfg.complaint.size_ms
        so_far = (
            ""
            if upto is None
            else f"; fired early, {(upto - start) // 60_000} of its "
            f"{cfg.complaint.size_ms // 60_000} minutes judged"
        )
        return Alert(
            alert_id=aggregate_alert_id(COMPLAINT_RATE.id, dim, subject, start),
            rule=COMPLAINT_RATE.id,
            severity=COMPLAINT_RATE.severity,
            ts=from_ms(end if upto is None else upto),
            detected_at=detected_at,
            subject_type=dim,
            subject=subject,
            port=subject if dim == DIM_PORT else None,
            signature=subject if dim == DIM_SIGNATURE else None,
            enterprise=st.enterprise,
            window_start=from_ms(start),
            window_end=from_ms(end),
            observed=round(rate, 1),
            threshold=cfg.complaint_per_million,
            detail=f"{complaints} complaints against {sent} messages sent in this and the "
            "previous window "
            f"({rate:,.0f} per million; limit {cfg.complaint_per_million:,.0f} per million "
            f"and at least {cfg.complaint_min} complaints){so_far}",
        )

    def _spike(
        self,
        dim: str,
        subject: str,
        start: int,
        count: int,
        threshold: float,
        baseline: float | None,
        st: SubjectState,
        detected_at: dt.datetime,
        why: str,
    ) -> Alert:
        end = start + self.cfg.volume.size_ms
        return Alert(
            alert_id=aggregate_alert_id(VOLUME_SPIKE.id, dim, subject, start),
            rule=VOLUME_SPIKE.id,
            severity=VOLUME_SPIKE.severity,
            ts=from_ms(start),
            detected_at=detected_at,
            subject_type=dim,
            subject=subject,
            port=subject if dim == DIM_PORT else None,
            signature=subject if dim == DIM_SIGNATURE else None,
            account=subject if dim == "account" else None,
            enterprise=st.enterprise,
            window_start=from_ms(start),
            window_end=from_ms(end),
            observed=count,
            threshold=round(threshold, 3),
            baseline=None if baseline is None else round(baseline, 3),
            detail=f"{count} messages in {self.cfg.volume.size_ms // 1000} s, {why}",
        )

    def _sublet(
        self,
        port: str,
        start: int,
        sets: dict[str, Any],
        st: SubjectState,
        detected_at: dt.datetime,
    ) -> Alert | None:
        """Judged when the window closes: distinct foreign signatures, unregistered accounts
        or their source IPs, each carrying at least `sublet_min_share` of the port's
        messages in the window (stray per-message violations don't make a resold port)."""
        cfg = self.cfg
        sigs = len(sets.get(SET_SIGNATURE, []))
        accts = len(sets.get(SET_ACCOUNT, []))
        ips = len(sets.get(SET_IP, []))
        total, foreign, unregistered = sets.get("n", [0, 0, 0])
        share_sig = foreign / total if total else 0.0
        share_acct = unregistered / total if total else 0.0
        hits = []
        if sigs >= cfg.sublet_signatures and share_sig >= cfg.sublet_min_share:
            hits.append(
                f"{sigs} signatures of other enterprises (limit {cfg.sublet_signatures}) "
                f"on {share_sig:.0%} of its {total} messages"
            )
        if accts >= cfg.sublet_accounts and share_acct >= cfg.sublet_min_share:
            hits.append(
                f"{accts} accounts not registered on it (limit {cfg.sublet_accounts}) "
                f"sending {share_acct:.0%} of its {total} messages"
            )
        if ips >= cfg.sublet_ips and share_acct >= cfg.sublet_min_share:
            hits.append(f"{ips} source IPs of unregistered accounts (limit {cfg.sublet_ips})")
        if not hits:
            return None
        end = start + cfg.sublet.size_ms
        observed = max(sigs, accts, ips)
        return Alert(
            alert_id=aggregate_alert_id(PORT_SUBLET.id, DIM_PORT, port, start),
            rule=PORT_SUBLET.id,
            severity=PORT_SUBLET.severity,
            ts=from_ms(start),
            detected_at=detected_at,
            subject_type="port",
            subject=port,
            port=port,
            enterprise=st.enterprise,
            window_start=from_ms(start),
            window_end=from_ms(end),
            observed=observed,
            threshold=min(cfg.sublet_signatures, cfg.sublet_accounts, cfg.sublet_ips),
            detail="; ".join(hits) + f" within {cfg.sublet.size_ms // 1000} s",
        )
