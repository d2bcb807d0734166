"""Wait for a quiet machine before a timed phase.

On the shared 2-vCPU machines the second of two back-to-back runs was 15-30 % slower
whichever commit it ran (docs/performance.md, "A/B on this machine"): something of the
previous run (its broker's shutdown, the deletion of its temp dir, page-cache writeback)
still used the CPU. A timed phase therefore starts only once the whole machine's CPU has been
mostly idle for one interval, or after `max_s` (logged; the figure is then marked).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

STAT = Path("/proc/stat")


def cpu_times(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from the `cpu` line of /proc/stat's `text`.

    Idle is idle + iowait (a CPU waiting for the disk could run us); steal counts as busy
    (another guest has the core)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            fields = [int(x) for x in line.split()[1:]]
            # user nice system idle iowait irq softirq steal guest guest_nice; guest time is
            # already in user/nice
            values = fields[:8] + [0] * (8 - len(fields[:8]))
            total = sum(values)
            idle = values[3] + values[4]
            return total - idle, total
    raise ValueError("no aggregate cpu line in /proc/stat")


def busy_fraction(interval: float, read: Callable[[], str] = STAT.read_text) -> float:
    """The fraction of the machine's CPU time busy over the next `interval` seconds."""
    b0, t0 = cpu_times(read())
    time.sleep(interval)
    b1, t1 = cpu_times(read())
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def wait_quiet(
    log: Callable[[str], None],
    threshold: float = 0.2,
    interval: float = 2.0,
    max_s: float = 120.0,
    read: Callable[[], str] = STAT.read_text,
) -> dict[str, float | bool]:
    """Block until one `interval` had the machine busy below `threshold` (a fraction of all
    CPUs), at most `max_s`. Returns what it saw, for the run's JSON."""
    start = time.monotonic()
    busy = busy_fraction(interval, read)
    while busy >= threshold and time.monotonic() - start < max_s:
        busy = busy_fraction(interval, read)
    waited = time.monotonic() - start
    quiet = busy < threshold
    if not quiet:
        log(f"machine still {busy:.0%} busy after {waited:.0f}s: timing anyway (marked)")
    elif waited > 2 * interval:
        log(f"waited {waited:.0f}s for a quiet machine ({busy:.0%} busy)")
    return {"waited_s": waited, "busy": busy, "quiet": quiet}
