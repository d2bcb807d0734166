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


def test_the_heavy_mix_repeats_events_after_their_originals() -> None:
    from bench.traffic import with_repeats

    records = [("event", b"k", f'{{"event_id":"e{i}"}}'.encode()) for i in range(2_000)]
    records += [("complaint", b"k", b'{"complaint_id":"c1"}')]
    out = with_repeats(records, 0.02, seed=6)
    originals = [r for i, r in enumerate(out) if r not in out[:i]]
    assert originals == records  # every record once, in order, before its repeat
    repeats = len(out) - len(records)
    assert 20 <= repeats <= 70  # about 2 % of 2,000 events
    assert all(r[0] == "event" for r in out if out.count(r) > 1)
    assert with_repeats(records, 0.0, seed=6) == records


def test_keying_none_may_differ_only_in_order_dependent_rules() -> None:
    from bench.phases import ORDER_DEPENDENT

    assert {"consent.revoked", "consent.missing"} <= ORDER_DEPENDENT
    assert not {"port.unregistered", "volume.spike", "recipient.flood"} & ORDER_DEPENDENT
