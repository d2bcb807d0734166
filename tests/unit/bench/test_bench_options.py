"""The benchmark's `--worker-env` option: settings for the workers of one run."""

from __future__ import annotations

import argparse

import pytest

from bench.throughput import worker_env_option

pytestmark = pytest.mark.unit


def test_worker_env_items_become_settings() -> None:
    ap = argparse.ArgumentParser()
    got = worker_env_option(ap, ["SMSMON_BATCH_MAX=2000", "SMSMON_FAST_DRAIN=false"])
    assert got == {"SMSMON_BATCH_MAX": "2000", "SMSMON_FAST_DRAIN": "false"}


@pytest.mark.parametrize(
    "item",
    [
        "BATCH_MAX=2000",  # not a smsmon setting
        "SMSMON_BATCH_MAX",  # no value
        "SMSMON_APP_ID=other",  # isolates the bench's app: the bench sets it
        "SMSMON_TOPIC_EVENTS=sms.events",
        "SMSMON_DATA_DIR=/tmp/x",
    ],
)
def test_worker_env_refuses_what_the_bench_owns_or_cannot_parse(item: str) -> None:
    with pytest.raises(SystemExit):
        worker_env_option(argparse.ArgumentParser(), [item])
