"""Reliability against the real broker: what arrives on the input topics, reference changes in
flight, hostile and oversized records, compressed batches, a backlog older than the group.
Helpers: test_reliability.py."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import KafkaError

from bench.harness import settings_of
from smsmon.tools.scenario import Builder
from tests.integration.conftest import Env, wait_ready
from tests.integration.reliability import (
    DROP,
    ENT0,
    NOTIFICATION,
    Row,
    assert_alert_set,
    at,
    bad,
    consent,
    enc,
    event_rows,
    events_seen,
    mt,
    produce_reference,
    produce_rows,
    read_topic,
    reference_only,
    try_produce,
    wait_for,
    wait_settled,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


# -- 5. reference data changes while traffic flows ---------------------------------------------


def test_reference_changes_take_effect_for_later_events(kenv: Env) -> None:
    """A port suspended, a consent revoked and a port deleted (tombstone) on sms.ref.* apply to
    the events produced after the worker consumed the change, and not to earlier ones."""
    subscriber = "13712345678"
    scenario = reference_only(5)
    scenario.reference.consent = [
        (f"{subscriber}|{ENT0}", json.loads(consent(subscriber, "granted", at(-30 * 86_400))[1]))
    ]
    ports, events = kenv.topic("sms.ref.ports"), kenv.topic("sms.events")
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    produce_reference(kenv, scenario, [worker])
    n_ports = len(scenario.reference.ports)
    found = next(v for k, v in scenario.reference.ports if k == "10690001")
    port = dict(found or {})

    def produce_events(*evs: tuple[str, dict[str, Any]]) -> None:
        produce_rows(kenv.bootstrap, events, event_rows(list(evs)))

    # before any change: a notification on 10690001 and granted marketing are clean
    produce_events(
        mt(
            "n-before",
            "13700000001",
            0,
            port="10690001",
            category="notification",
            text=NOTIFICATION,
        ),
        mt("m-before", subscriber, 1),
    )
    wait_settled(kenv, [worker])
    assert_alert_set(kenv, set())

    # suspend 10690001; a new marker port after it (same partition) shows the loader got there
    produce_rows(
        kenv.bootstrap,
        ports,
        [
            (b"10690001", enc({**port, "status": "suspended"})),
            (b"10695555", enc({**port, "port": "10695555"})),
        ],
    )
    wait_for(
        [worker],
        lambda: worker.sample("smsmon_reference_entries", {"table": "ports"}) == n_ports + 1,
        30,
        "suspension consumed",
    )
    produce_events(
        mt(
            "n-suspended",
            "13700000002",
            10,
            port="10690001",
            category="notification",
            text=NOTIFICATION,
        )
    )

    # revoke the subscriber's consent on sms.ref.consent
    applied = worker.sample("smsmon_consent_updates_total", {"result": "applied"})
    produce_rows(
        kenv.bootstrap, kenv.topic("sms.ref.consent"), [consent(subscriber, "revoked", at(-86_400))]
    )
    wait_for(
        [worker],
        lambda: worker.sample("smsmon_consent_updates_total", {"result": "applied"}) == applied + 1,
        30,
        "revocation consumed",
    )
    produce_events(mt("m-revoked", subscriber, 20))

    # delete 10690001 with a tombstone
    produce_rows(kenv.bootstrap, ports, [(b"10690001", None)])
    wait_for(
        [worker],
        lambda: worker.sample("smsmon_reference_entries", {"table": "ports"}) == n_ports,
        30,
        "tombstone consumed",
    )
    produce_events(
        mt(
            "n-deleted",
            "13700000003",
            30,
            port="10690001",
            category="notification",
            text=NOTIFICATION,
        )
    )
    wait_settled(kenv, [worker])
    assert_alert_set(
        kenv,
        {
            ("n-suspended", "port.suspended"),
            ("m-revoked", "consent.revoked"),
            ("n-deleted", "port.unregistered"),
        },
    )
    assert worker.sample("smsmon_invalid_events_total") == 0  # a tombstone is no dead letter


def hostile_records() -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, expected dead-letter reason): what a broken or hostile gateway may send."""
    k = b"13912345678"
    far_future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    return [
        (k, b"{not json", "json"),
        (k, bad()[:60], "json"),  # truncated (in its ASCII part)
        (k, b'{"event_id": "a\x00b", "kind": "mt"}', "json"),  # raw NUL byte inside a string
        (k, b"", "json"),
        (k, b"\xff\xfe\x00garbage", "encoding"),
        (k, bad(text="x").replace(b'"x"', b'"\xc3\x28"'), "encoding"),  # invalid UTF-8 in text
        (k, bad(text="nul\x00inside"), "schema:text"),  # escaped \u0000
        (k, bad(event_id="e\x00"), "schema:event_id"),
        (k, bad(event_id=42), "schema:event_id"),  # wrong types
        (k, bad(segments="many"), "schema:segments"),
        (k, bad(category=7), "schema:category"),
        (k, bad(text=["list"]), "schema:text"),
        (k, bad(msisdn=13912345678), "schema:msisdn"),  # numbers where strings belong
        (k, bad(gateway=5), "schema:gateway"),
        (k, bad(account=123), "schema:account"),
        (k, bad(text=DROP), "schema:text"),  # missing fields
        (k, bad(ts=DROP), "schema:ts"),
        (k, bad(msisdn=DROP), "schema:msisdn"),
        (k, bad(kind=DROP), "schema:kind"),
        (k, bad(kind="fax"), "schema:kind"),
        (k, bad(ts="2999-01-01T00:00:00+08:00"), "schema:ts"),  # far timestamps
        (k, bad(ts="1970-01-02T00:00:00Z"), "schema:ts"),
        (k, bad(ts=10**25), "schema:ts"),
        (k, bad(ts=far_future), "schema:ts"),
        (b"13700000000", bad(), "schema:key"),  # the key names another msisdn
        (b"not-a-number", bad(), "schema:key"),
        (k, None, "schema:value"),  # a tombstone on the events topic
        (k, b"[1,2,3]", "schema:value"),
        (k, b'"text"', "schema:value"),
        (k, bad(text="长" * 5_000), "schema:text"),  # over SMSMON_MAX_TEXT_CHARS
        (k, bad(text="x" * 100_000), "too_large"),  # over SMSMON_MAX_EVENT_BYTES
        (k, bad(text="y" * 900_000), "too_large"),  # near the broker's 1 MB limit
    ]


def test_hostile_input_is_dead_lettered_once_and_valid_events_are_exact(kenv: Env) -> None:
    """Invalid records mixed with valid ones: each lands in the DLQ exactly once with its
    reason, the worker keeps running, and the valid events' alert set is exact."""
    scenario = Builder(seed=6).build(stories=800)
    expected = set(scenario.expected)
    valid = event_rows(scenario.events)
    # valid events may carry unknown (extra) fields: they are processed like any other
    proto = next(
        ev for _, ev in scenario.events if (ev["event_id"], "port.unregistered") in expected
    )
    extra = {**proto, "event_id": "extra-fields", "priority": 5, "meta": {"x": [1, None]}}
    valid.append((proto["msisdn"][-11:].encode(), enc(extra)))
    expected |= {("extra-fields", r) for e, r in scenario.expected if e == proto["event_id"]}

    hostile = hostile_records()
    rows: list[Row] = []
    step = len(valid) // len(hostile)
    for i, (key, value, _) in enumerate(hostile):  # spread through the valid stream
        rows += valid[i * step : (i + 1) * step]
        rows.append((key, value))
    rows += valid[len(hostile) * step :]
    hostile_at = [i for i, r in enumerate(rows) if r in {(k, v) for k, v, _ in hostile}]

    worker = kenv.start_worker("w1")
    wait_ready(worker)
    produce_reference(kenv, scenario, [worker])

    # a record over the broker's limit (1 MB by default) cannot even be produced
    huge = bad(text="z" * 3_000_000)
    _, refused = try_produce(
        kenv.bootstrap,
        kenv.topic("sms.events"),
        [(b"13912345678", huge)],
        **{"message.max.bytes": 10_000_000, "enable.idempotence": False},
    )
    assert [e.code() for e in refused] == [KafkaError.MSG_SIZE_TOO_LARGE]

    placed = produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows)
    wait_for(
        [worker],
        lambda: worker.sample("smsmon_invalid_events_total") >= len(hostile),
        90,
        "hostile records dead-lettered",
    )
    wait_settled(kenv, [worker])
    assert worker.proc.poll() is None, "the worker must survive hostile input"

    # every hostile record is in the DLQ exactly once, with its reason and original bytes
    dlq = read_topic(kenv.bootstrap, kenv.topic("sms.events.dlq"))
    dead = [json.loads(r.value or b"null") for r in dlq]
    by_place = Counter((d["source_topic"], d["partition"], d["offset"]) for d in dead)
    assert all(n == 1 for n in by_place.values()), by_place.most_common(3)
    assert len(dead) == len(hostile), "only the hostile records are dead letters"
    reasons = {(d["source_topic"], d["partition"], d["offset"]): d["reason"] for d in dead}
    for (_, value, reason), i in zip(hostile, hostile_at, strict=True):
        p, o = placed[i]
        got = reasons.get((kenv.topic("sms.events"), p, o))
        assert got == reason, (value[:80] if value else value, got, reason)
    for d in dead:
        assert (
            d.get("value_text") is not None
            or d.get("value_base64") is not None
            or (d["reason"] == "schema:value")
        )
    # the 900 KB record: its first 64 KiB are kept, with the size and hash of the whole
    big = max(dead, key=lambda d: d.get("original_size") or 0)
    assert big.get("truncated") is True and big["original_size"] > 900_000, big.keys()
    assert len(big.get("value_text") or big.get("value_base64") or "") >= 60_000
    for reason, n in Counter(r for _, _, r in hostile).items():
        assert worker.sample("smsmon_invalid_events_total", {"reason": reason}) == n, reason
    assert worker.sample("smsmon_invalid_events_total") == len(hostile)

    # the valid events around them: exact alerts
    assert_alert_set(kenv, expected)


class LostDeadLetterError(AssertionError):
    """A record was counted as a dead letter but never reached the dead-letter topic."""


def test_a_too_large_record_whose_dead_letter_exceeds_the_producer_limit(kenv: Env) -> None:
    """A 900 KB record of invalid UTF-8 (base64 grows it by 4/3) or of characters JSON must
    escape is still dead-lettered exactly once, and the worker goes on."""
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    scenario = Builder(seed=8).build(stories=200)
    produce_reference(kenv, scenario, [worker])
    hostile = [
        (b"13912345678", b"\xff" * 900_000, "too_large"),
        (b"13912345678", b'"' * 900_000, "too_large"),
    ]
    rows = [(k, v) for k, v, _ in hostile] + event_rows(scenario.events)
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows)
    wait_settled(kenv, [worker], timeout=90)
    assert worker.proc.poll() is None
    dlq = read_topic(kenv.bootstrap, kenv.topic("sms.events.dlq"))
    dead = [json.loads(r.value or b"null") for r in dlq]
    counted = worker.sample("smsmon_invalid_events_total", {"reason": "too_large"})
    if Counter(d["reason"] for d in dead) != Counter(r for _, _, r in hostile):
        raise LostDeadLetterError(
            f"{counted:.0f} counted as dead letters, {len(dead)} on the dead-letter topic, and "
            "the group committed past them"
        )
    assert_alert_set(kenv, scenario.expected)


# -- 9. compressed input ------------------------------------------------------------------------


def test_compressed_input_from_gateways_is_read(kenv: Env) -> None:
    """Gateways commonly compress: events and consent written with lz4, snappy, zstd and gzip
    give the exact alert set, and the worker keeps running (aiokafka needs cramjam for the
    first three; without it the fetcher crashed and the worker exited)."""
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    scenario = Builder(seed=10).build(stories=400)
    ref = scenario.reference
    for name, rows in (
        ("sms.ref.ports", ref.ports),
        ("sms.ref.signatures", ref.signatures),
    ):
        produce_rows(kenv.bootstrap, kenv.topic(name), [(k.encode(), enc(v)) for k, v in rows])
    produce_rows(
        kenv.bootstrap,
        kenv.topic("sms.ref.consent"),
        [(k.encode(), enc(v)) for k, v in ref.consent],
        **{"compression.type": "zstd"},
    )
    pairs = len({k for k, _ in ref.consent})
    wait_for(
        [worker],
        lambda: (
            worker.sample("smsmon_reference_entries", {"table": "consent"}) == pairs
            and worker.sample("smsmon_reference_entries", {"table": "ports"}) == len(ref.ports)
        ),
        timeout=120,
        what="compressed consent and the ports loaded",
    )
    events = event_rows(scenario.events)
    codecs = ["lz4", "snappy", "zstd", "gzip"]
    step = -(-len(events) // len(codecs))
    for i, codec in enumerate(codecs):
        chunk = events[i * step : (i + 1) * step]
        produce_rows(kenv.bootstrap, kenv.topic("sms.events"), chunk, **{"compression.type": codec})
    wait_settled(kenv, [worker], timeout=120)
    assert worker.proc.poll() is None, worker.log()[-3000:]
    assert_alert_set(kenv, scenario.expected)


# -- 10. first start of a consumer group over a backlog -------------------------------------------


def test_first_start_processes_records_produced_before_it(kenv: Env) -> None:
    """A new deployment over topics that already hold reference data and events: the new
    consumer group starts from the earliest offsets and judges every event."""
    from smsmon.admin import ensure_topics

    ensure_topics(settings_of(kenv.settings_env()))
    scenario = Builder(seed=12).build(stories=300)
    ref = scenario.reference
    for name, rows in (
        ("sms.ref.ports", ref.ports),
        ("sms.ref.signatures", ref.signatures),
        ("sms.ref.consent", ref.consent),
    ):
        produce_rows(kenv.bootstrap, kenv.topic(name), [(k.encode(), enc(v)) for k, v in rows])
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), event_rows(scenario.events))
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    wait_settled(kenv, [worker])
    assert events_seen([worker]) == len(scenario.events)
