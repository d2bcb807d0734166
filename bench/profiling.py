"""Summary of a py-spy raw profile of the worker: time per group of frames and top frames."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

# (label, regex on one frame of a py-spy raw stack "Class.func (path/file.py:line)"); a stack
# counts for a group once if any of its frames matches (inclusive time).
PROFILE_GROUPS: list[tuple[str, str]] = [
    ("event loop thread (all of it)", r"^cmd_worker \("),
    ("  check_events: Pipeline.process_batch (ours)", r"^Pipeline\.process_batch \("),
    ("    decode_event (msgspec, pydantic fallback)", r"^decode_event \("),
    ("    Engine.on_event (per-message rules)", r"^Engine\.on_event \("),
    ("    Stage1.on_* (traffic stage 1 partials)", r"^Stage1\.on_\w+ \("),
    ("    table reads (TableState/BatchOverlay.get)", r"^BatchOverlay\.get \("),
    ("    Pipeline._flush_tables (table writes)", r"^Pipeline\._flush_tables \("),
    ("      Faust changelog send_soon per key", r"^Collection\.send_changelog \("),
    ("  RocksDB store calls (all callers)", r"\(faust/stores/rocksdb\.py"),
    ("  aggregate_counts: Aggregation.process_batch", r"^Aggregation\.process_batch \("),
    ("  BatchOutput.flush (alerts, partials)", r"^BatchOutput\.flush \("),
    ("  Faust ProducerBuffer (changelog -> aiokafka)", r"^ProducerBuffer\.\w+ \("),
    ("  aiokafka producer (send, sender, conn)", r"\(aiokafka/(producer/|client\.py|conn\.py)"),
    (
        "  Faust commit (Consumer.commit/_commit_*)",
        r"^Consumer\.(commit|force_commit|_commit\w*) \("
        r"faust/",
    ),
    ("  Faust stream/ack (Stream.*, Event.ack)", r"^(Stream\.\w+|Event\.ack|Message\.ack) \("),
    (
        "  Faust consumer dispatch (Fetcher, Conductor)",
        r"^(Fetcher\._fetcher|Consumer\._drain_messages"
        r"|Conductor\.\S+) \(faust/",
    ),
    ("  Pipeline.refresh_gauges (2 s timer)", r"^Pipeline\.(refresh_gauges|_refresh_lag) \("),
    ("  epoll wait on the event loop", r"^EpollSelector\.select \(selectors"),
    ("Faust consumer thread (aiokafka fetch)", r"^WorkerThread\.run \("),
    ("prometheus /metrics server thread", r"^BaseServer\.serve_forever \("),
]


def _frame_name(frame: str) -> str:
    """`Class.func (path/file.py:123)` -> `Class.func (dir/file.py)`, short enough for a table."""
    m = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    short = "/".join(m.group(2).split("/")[-2:])
    return f"{m.group(1)} ({short})"


def summarize_profile(path: Path, seconds: float, rate: float, top: int = 25) -> dict[str, Any]:
    """Inclusive and self shares of a py-spy raw profile, in % of the wall time sampled
    (`seconds` x `rate` samples = 100 %: one thread busy all the time). py-spy records only
    threads that are not idle, so the event-loop thread's total is how busy it was."""
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.strip().rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    full = seconds * rate

    def pct(n: float) -> float:
        return round(100 * n / full, 1) if full else 0.0

    groups = []
    for label, pattern in PROFILE_GROUPS:
        rx = re.compile(pattern)
        n = sum(c for frames, c in stacks if any(rx.search(f) for f in frames))
        groups.append({"group": label, "pct": pct(n)})
    incl: Counter[str] = Counter()
    selfc: Counter[str] = Counter()
    for frames, c in stacks:
        for name in {_frame_name(f) for f in frames}:
            incl[name] += c
        if frames:
            selfc[_frame_name(frames[-1])] += c
    return {
        "samples": sum(c for _, c in stacks),
        "seconds": seconds,
        "rate_hz": rate,
        "groups": groups,
        "top_inclusive": [(k, pct(v)) for k, v in incl.most_common(top)],
        "top_self": [(k, pct(v)) for k, v in selfc.most_common(top)],
    }
