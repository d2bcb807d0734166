"""bench.quiet: the machine's busy fraction from /proc/stat, and the wait for a quiet one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench import quiet


def stat(user: int, idle: int, iowait: int = 0, steal: int = 0) -> str:
    return (
        f"cpu  {user} 0 0 {idle} {iowait} 0 0 {steal} 0 0\n"
        f"cpu0 {user} 0 0 {idle} {iowait} 0 0 {steal} 0 0\nintr 1 2 3\n"
    )


def test_iowait_is_idle_and_steal_is_busy() -> None:
    assert quiet.cpu_times(stat(10, 80, iowait=5, steal=5)) == (15, 100)


def test_a_stat_without_the_aggregate_line_is_an_error() -> None:
    with pytest.raises(ValueError):
        quiet.cpu_times("cpu0 1 2 3 4\n")


def reader(samples: list[str]) -> Iterator[str]:
    yield from samples


def test_it_waits_until_one_interval_was_quiet() -> None:
    # busy 90 %, then 50 %, then 10 % of the interval
    samples = [(0, 0), (90, 10), (90, 10), (140, 60), (140, 60), (150, 150)]
    it = reader([stat(u, i) for u, i in samples])
    seen: list[str] = []
    got = quiet.wait_quiet(seen.append, threshold=0.2, interval=0.0, read=lambda: next(it))
    assert got["quiet"] is True and got["busy"] == pytest.approx(0.1)


def test_it_gives_up_after_max_s_and_says_so() -> None:
    ticks = iter(range(10_000))
    it = reader([stat(t, t) for t in range(0, 20_000, 1)])
    seen: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quiet.time, "monotonic", lambda: float(next(ticks)))
        got = quiet.wait_quiet(seen.append, interval=0.0, max_s=5.0, read=lambda: next(it))
    assert got["quiet"] is False and got["busy"] == pytest.approx(0.5)
    assert seen and "still 50% busy" in seen[0]
