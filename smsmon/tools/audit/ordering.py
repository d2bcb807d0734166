"""Event-time order over all inputs: pass 1 (`scan`, one sort key per line) and pass 2
(`merged`, a k-way merge of the files read again).

The order is `(ts, input kind, file index, line)`: consent records before events before
complaints at equal `ts`, then files in the order given, then lines. A file that is in `ts`
order (the archive's files nearly are) streams through; a file that is not is re-ordered with
a heap that holds only the lines still waiting for an earlier one. Memory is therefore about
8 bytes per input line, not the records.
"""

from __future__ import annotations

import array
import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from smsmon.contract.codec import DecodeError
from smsmon.contract.times import to_us
from smsmon.tools.audit.readers import Reader, Tombstone, fast_ts_us

INVALID = 2**63 - 1  # sort key of a line that is skipped (malformed or blank)
PROGRESS_EVERY = 16_384

Entry = tuple[int, int, int, bytes]  # key, ordinal, line, raw
BadLine = Callable[[str, int, str, str], None]  # file, line, reason, error


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


def scan(
    src: Source,
    decode: Callable[[bytes], Any],
    tz: ZoneInfo,
    bad: BadLine,
    advance: Callable[[int], None],
    *,
    at_zero: bool = False,
) -> None:
    """Pass 1 of one file: a sort key per line (`at_zero`: every valid record sorts at 0,
    for `--consent-order first`), whether the file is in order, and its first record.

    A line the fast scan cannot read is decoded; one that does not decode is reported to
    `bad` and gets INVALID. `advance` is told the bytes read, for the progress bar.
    """
    keys = src.keys
    append = keys.append
    top, low, low_i, ordered = -1, INVALID, -1, True
    reader = Reader(src.path)
    done = 0
    for i, (line, raw, hint, err) in enumerate(reader):
        if err is not None or raw is None:
            bad(src.name, line, *(err or ("value", "unreadable")))
            src.malformed += 1
            append(INVALID)
            continue
        k = fast_ts_us(raw, hint, tz)
        if k is None:
            try:
                rec = decode(raw)
            except DecodeError as exc:
                bad(src.name, line, exc.reason, exc.error)
                src.malformed += 1
                append(INVALID)
                continue
            k = rec.ts_us if isinstance(rec, Tombstone) else to_us(rec.ts)
        if at_zero:
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
