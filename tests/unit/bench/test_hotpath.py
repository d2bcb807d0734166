"""bench.hotpath: a short run drives the real Pipeline to the offline path's stage-1 alerts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import hotpath
from tests.unit.agents import crashkit

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("mix", "keying"), [("light", "java"), ("heavy", "librdkafka")])
def test_a_short_run_equals_the_offline_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mix: str, keying: str
) -> None:
    monkeypatch.setattr(crashkit, "PARTITIONS", crashkit.PARTITIONS)  # the bench sets it
    out = tmp_path / "hot.json"
    args = ["--events", "2000", "--rounds", "1", "--mix", mix, "--keying", keying]
    assert hotpath.main([*args, "--json", str(out)]) == 0
    [row] = json.loads(out.read_text())
    assert row["equal"] and row["alerts"] == row["expected"] > 0
    assert row["records"] >= 2000 and row["batches"] > 0 and row["us_per_record_best"] > 0
