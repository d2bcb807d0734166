"""Records due later (delivery reports, replies, complaints, incident steps), by offset."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any

from smsmon.tools.simulator.kinds import Record

Builder = Callable[..., Record | None]
"""Builds the record due at an offset: `builder(offset, *args)`; None if it came to nothing."""

Steps = Iterator[tuple[float, Builder, tuple[Any, ...]]]
"""An incident's records to come: (offset, builder, builder arguments), in offset order."""


class Schedule:
    """A heap of (offset, sequence, builder, args); equal offsets come out in push order.

    The run pops it itself (`heap`), interleaved with the background arrivals.
    """

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.heap: list[tuple[float, int, Builder, tuple[Any, ...]]] = []
        self._seq = 0

    def push(self, t: float, fn: Builder, args: tuple[Any, ...]) -> None:
        """Build `fn(t, *args)` at offset `t`; nothing due after the span's end is kept."""
        if t < self.duration:
            self._seq += 1
            heapq.heappush(self.heap, (t, self._seq, fn, args))

    def follow(self, steps: Steps) -> None:
        """Schedule the next step of an incident; when it is built, the one after it.

        One step at a time keeps the heap small whatever the size of the incident.
        """
        item = next(steps, None)
        if item is not None:
            t, fn, args = item
            self.push(t, self._step, (steps, fn, args))

    def _step(self, t: float, steps: Steps, fn: Builder, args: tuple[Any, ...]) -> Record | None:
        rec = fn(t, *args)
        self.follow(steps)
        return rec
