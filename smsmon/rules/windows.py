"""Event-time windowing: tumbling windows, watermarks per source with grace and idleness.

The one windowing implementation of smsmon, used by the live agents and the offline audit.
Time is epoch milliseconds of the events' `ts`; wall-clock time only decides when a source
that has gone quiet stops holding the watermark back (idleness).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Windowing:
    """Tumbling windows of `size_ms`, accepting events up to `grace_ms` behind the watermark."""

    size_ms: int
    grace_ms: int = 10_000

    def start(self, ts_ms: int) -> int:
        """Start of the window holding `ts_ms`."""
        return ts_ms - ts_ms % self.size_ms

    def end(self, start_ms: int) -> int:
        """End (exclusive) of the window starting at `start_ms`."""
        return start_ms + self.size_ms

    def is_late(self, ts_ms: int, watermark_ms: int | None) -> bool:
        """A window is closed once the watermark minus grace reaches its end."""
        if watermark_ms is None:
            return False
        return self.end(self.start(ts_ms)) <= watermark_ms - self.grace_ms

    def closable(self, start_ms: int, watermark_ms: int | None) -> bool:
        """True when the window starting at `start_ms` can be closed for good."""
        return watermark_ms is not None and self.end(start_ms) <= watermark_ms - self.grace_ms


class Watermarks:
    """Event-time progress of several sources; the combined watermark is their minimum.

    A source that has not advanced for `idle_ms` of wall-clock time *and has nothing pending*
    (caught up: no consumer lag) no longer holds the combined watermark back, so quiet
    partitions don't stall window closing; it rejoins when it advances again. A source with
    pending records is never idle, however long it has been silent: in a backlog, or on a busy
    machine, silence means "not read yet", and skipping it would make its records late.
    """

    def __init__(self, idle_ms: int = 30_000) -> None:
        self.idle_ms = idle_ms
        self.event_ms: dict[Hashable, int] = {}
        self.seen_wall_ms: dict[Hashable, int] = {}
        # sources known to exist that have not reported yet -> wall ms since expected
        self.expected: dict[Hashable, int] = {}

    def expect(self, sources: Iterable[Hashable], wall_ms: int) -> None:
        """Declare sources that exist but may not have reported yet.

        An expected source that has not reported holds the combined watermark back (it is
        None) until it reports, or until it has been expected for `idle_ms` with nothing
        pending. Without this, the first sources to report would set the watermark alone,
        and the records of a source that starts later (a partition read after the others,
        re-keyed records) would all be judged late.
        """
        for src in sources:
            if src not in self.event_ms:
                self.expected.setdefault(src, wall_ms)

    def advance(self, source: Hashable, ts_ms: int, wall_ms: int) -> None:
        """Record that `source` has reached event time `ts_ms` (never moves backwards)."""
        if self.expected:
            self.expected.pop(source, None)
        if ts_ms > self.event_ms.get(source, -1):
            self.event_ms[source] = ts_ms
            self.seen_wall_ms[source] = wall_ms
        elif source not in self.seen_wall_ms:
            self.seen_wall_ms[source] = wall_ms

    def is_active(self, source: Hashable, wall_ms: int) -> bool:
        """True if `source` has reported and has not been idle for `idle_ms`."""
        seen = self.seen_wall_ms.get(source)
        return seen is not None and source in self.event_ms and wall_ms - seen < self.idle_ms

    def combined(
        self, wall_ms: int, caught_up: Callable[[Hashable], bool] | None = None
    ) -> int | None:
        """Minimum event time over the active sources (None before any source reported).

        `caught_up(source)` tells whether a source has nothing pending; by default every
        source counts as caught up (offline, where input is read in order).
        """
        for src, since in self.expected.items():
            if wall_ms - since < self.idle_ms or (caught_up is not None and not caught_up(src)):
                return None  # an expected source has not reported yet
        active = [
            ts
            for src, ts in self.event_ms.items()
            if wall_ms - self.seen_wall_ms.get(src, wall_ms) < self.idle_ms
            or (caught_up is not None and not caught_up(src))
        ]
        if active:
            return min(active)
        return max(self.event_ms.values()) if self.event_ms else None
