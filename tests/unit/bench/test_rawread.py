"""bench/rawread.py and `raw_ceiling` without a broker: the reads run in a child process,
which reports its figures as JSON and its failure as an error."""

from __future__ import annotations

import json
import socket

import pytest

from bench import rawread
from bench.clients import raw_ceiling

pytestmark = pytest.mark.unit


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: a connect is refused


def test_a_read_that_fails_in_the_child_is_an_error_with_its_reason() -> None:
    with pytest.raises(RuntimeError, match=r"bench\.rawread failed") as caught:
        raw_ceiling(f"127.0.0.1:{_closed_port()}", "events", 1, 10)
    assert "KafkaConnectionError" in str(caught.value)  # the child's own traceback


def test_the_child_prints_one_rate_per_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = iter([(90_000, 0.5), (90_000, 0.25), (0, 0.0)])

    async def fake_read(
        bootstrap: str, topic: str, partitions: int, total: int
    ) -> tuple[int, float]:
        assert (bootstrap, topic, partitions, total) == ("b:1", "t", 8, 100_000)
        return next(results)

    monkeypatch.setattr(rawread, "raw_read", fake_read)
    argv = ["--bootstrap", "b:1", "--topic", "t", "--partitions", "8", "--total", "100000"]
    assert rawread.main([*argv, "--runs", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"runs": [180_000.0, 360_000.0, 0.0]}
