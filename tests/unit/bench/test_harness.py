"""bench/harness.py without a broker: waiting, a worker that exits, a worker's environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness import (
    REPO,
    WORKER_OWNED,
    WaitTimeout,
    Worker,
    WorkerExitedError,
    app_env,
    wait_until,
    worker_process_env,
)

pytestmark = pytest.mark.unit


def test_a_wait_that_times_out_is_a_test_failure_and_a_timeout() -> None:
    with pytest.raises(WaitTimeout) as caught:
        wait_until(lambda: False, 0.05, "never", every=0.01)
    assert isinstance(caught.value, AssertionError)  # pytest reports a failure
    assert isinstance(caught.value, TimeoutError)  # the bench scripts catch this
    assert "waiting for never" in str(caught.value)


def test_wait_until_returns_the_first_truthy_value_and_retries_the_listed_errors() -> None:
    calls = iter([OSError("refused"), 0, "ready"])

    def predicate() -> object:
        value = next(calls)
        if isinstance(value, BaseException):
            raise value
        return value

    assert wait_until(predicate, 5, "ready", every=0.0, retry=(OSError,)) == "ready"


def test_an_error_not_listed_in_retry_ends_the_wait() -> None:
    def predicate() -> bool:
        raise KeyError("bad parse")

    with pytest.raises(KeyError):
        wait_until(predicate, 5, "x", every=0.0, retry=(OSError,))


def test_a_watched_worker_that_exits_fails_the_wait_at_once(tmp_path: Path) -> None:
    log_path = tmp_path / "worker-w.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "print('[ERROR] cannot read the model'); raise SystemExit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc.wait(timeout=30)
    worker = Worker(proc, 0, log_path, {}, "w")
    t0 = time.monotonic()
    with pytest.raises(WorkerExitedError) as caught:
        wait_until(lambda: False, 60, "worker ready", workers=[worker])
    assert time.monotonic() - t0 < 30, "must not wait for the timeout"
    text = str(caught.value)
    assert "worker w exited (3) waiting for worker ready" in text
    assert "[ERROR] cannot read the model" in text


def test_the_worker_env_keeps_the_callers_settings_unless_isolated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SMSMON_BATCH_MAX", "7")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    settings = {"SMSMON_APP_ID": "t1", "SMSMON_METRICS_PORT": "1", "SMSMON_DATA_DIR": "/x"}

    shared = worker_process_env(settings, 9100, tmp_path / "data-w1")
    assert shared["SMSMON_BATCH_MAX"] == "7"
    assert shared["PYTHONPATH"] == "/elsewhere"

    isolated = worker_process_env(settings, 9100, tmp_path / "data-w1", isolated=True)
    assert "SMSMON_BATCH_MAX" not in isolated
    assert isolated["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]

    for env in (shared, isolated):
        assert env["SMSMON_APP_ID"] == "t1"
        # the process's own port and data dir win over what the caller passed
        assert env["SMSMON_METRICS_PORT"] == "9100"
        assert env["SMSMON_DATA_DIR"] == str(tmp_path / "data-w1")


def test_an_app_env_names_only_its_own_topics_and_group() -> None:
    env = app_env("127.0.0.1:9092", "b123", 8, "s3cret")
    assert env["SMSMON_APP_ID"] == "b123"
    topics = {k: v for k, v in env.items() if k.startswith("SMSMON_TOPIC_")}
    assert topics and all(v.startswith("b123.sms.") for v in topics.values())
    assert not WORKER_OWNED & set(env)
