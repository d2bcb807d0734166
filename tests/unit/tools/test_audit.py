"""`smsmon audit` end to end on files: the scenario's exact alert set from gzip, plain and CSV
inputs, malformed lines reported with file, line and reason, event-time ordering across and
within files, and parity with the in-process OfflineRunner (aggregate rules included)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from smsmon.config.settings import Settings
from smsmon.contract.times import to_us
from smsmon.rules.catalog import ALERT_NAMESPACE
from smsmon.tools import audit
from smsmon.tools.scenario import Builder, Scenario

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret"
STORIES = 500


def settings(**extra: Any) -> Settings:
    return Settings(msisdn_secret=SECRET, **extra)


def run_cli(argv: list[str], **extra: Any) -> int:
    """Parse like `smsmon audit ...` (cli.py registers audit.register_cli) and run it."""
    parser = argparse.ArgumentParser(prog="smsmon")
    sub = parser.add_subparsers(dest="command", required=True)
    audit.register_cli(sub)
    args = parser.parse_args(["audit", "--no-progress", *argv])
    result: int = args.func(settings(**extra), args)
    return result


def write_jsonl(path: Path, rows: list[dict[str, Any]] | list[str], gz: bool = False) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    data = ("\n".join(lines) + "\n").encode()
    if gz:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


EVENT_COLUMNS = [
    "event_id",
    "ts",
    "kind",
    "gateway",
    "port",
    "msisdn",
    "account",
    "category",
    "text",
    "signature",
    "segments",
    "source_ip",
    "status",
]


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]], gz: bool = False) -> Path:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, list):
            return ";".join(str(x) for x in v)
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for r in rows:
        w.writerow([cell(r.get(c)) for c in columns])
    data = buf.getvalue().encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def reference_files(tmp: Path, sc: Scenario, fmt: str = "jsonl") -> dict[str, Path]:
    ref = sc.reference
    ports = [v for _, v in ref.ports if v is not None]
    sigs = [v for _, v in ref.signatures if v is not None]
    consent = [v for _, v in ref.consent if v is not None]
    if fmt == "jsonl":
        return {
            "ports": write_jsonl(tmp / "ports.jsonl", ports),
            "signatures": write_jsonl(tmp / "signatures.jsonl", sigs),
            "consent": write_jsonl(tmp / "consent.jsonl.gz", consent, gz=True),
        }
    return {
        "ports": write_csv(
            tmp / "ports.csv",
            ["port", "enterprise", "accounts", "categories", "status", "shared", "max_per_minute"],
            ports,
        ),
        "signatures": write_csv(
            tmp / "signatures.csv", ["signature", "enterprise", "ports", "status"], sigs
        ),
        "consent": write_csv(
            tmp / "consent.csv.gz",
            ["msisdn", "enterprise", "status", "ts", "source"],
            consent,
            True,
        ),
    }


def ref_args(files: dict[str, Path]) -> list[str]:
    return [
        "--ports",
        str(files["ports"]),
        "--signatures",
        str(files["signatures"]),
        "--consent",
        str(files["consent"]),
    ]


def read_alerts(out: Path) -> list[dict[str, Any]]:
    text = (out / "alerts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


def pairs(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(a["event_id"], a["rule"]) for a in alerts if a.get("event_id")}


def summary_totals(out: Path) -> dict[str, int]:
    with (out / "summary.csv").open(encoding="utf-8") as fh:
        return {r["name"]: int(r["count"]) for r in csv.DictReader(fh) if r["section"] == "total"}


def malformed_rows(out: Path) -> list[tuple[str, int, str]]:
    with (out / "malformed.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert all(set(r) == {"file", "line", "reason", "error"} for r in rows)
    return [(Path(r["file"]).name, int(r["line"]), r["reason"]) for r in rows]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Builder(seed=11).build(STORIES)


def events(sc: Scenario) -> list[dict[str, Any]]:
    return [ev for _, ev in sc.events]


# -- the exact alert set ------------------------------------------------------------------


def test_gzip_jsonl_gives_the_scenarios_exact_alerts(scenario: Scenario, tmp_path: Path) -> None:
    files = reference_files(tmp_path, scenario)
    ev = write_jsonl(tmp_path / "events.jsonl.gz", events(scenario), gz=True)
    out = tmp_path / "out"
    assert run_cli(["--events", str(ev), *ref_args(files), "--out", str(out)]) == 0
    alerts = read_alerts(out)
    assert pairs(alerts) == scenario.expected
    for a in alerts:
        if a.get("event_id"):
            assert a["alert_id"] == str(uuid.uuid5(ALERT_NAMESPACE, f"{a['rule']}|{a['event_id']}"))
        assert "msisdn" not in a and "text" not in a
    totals = summary_totals(out)
    assert totals["events"] == len(scenario.events)
    assert totals["malformed"] == 0
    assert totals["alerts"] == len(alerts)
    assert totals["unsubscribes_attributed"] == scenario.unsubscribes
    assert (out / "report.html").stat().st_size > 0
    assert malformed_rows(out) == []


def test_csv_and_plain_and_split_files_give_the_same_alert_ids(
    scenario: Scenario, tmp_path: Path
) -> None:
    """Events spread over a CSV.gz, a plain JSONL and a shuffled JSONL.gz, reference data as
    CSV: the audit merges them in ts order and gets the same alerts, ids included."""
    rows = events(scenario)
    first = tmp_path / "a"
    first.mkdir()
    ev_one = write_jsonl(first / "events.jsonl.gz", rows, gz=True)
    out1 = tmp_path / "out1"
    files = reference_files(first, scenario)
    assert run_cli(["--events", str(ev_one), *ref_args(files), "--out", str(out1)]) == 0

    second = tmp_path / "b"
    (second / "events").mkdir(parents=True)
    rng = random.Random(3)
    parts: list[list[dict[str, Any]]] = [[], [], []]
    for row in rows:
        parts[rng.randrange(3)].append(row)
    write_csv(second / "events" / "part-0.csv.gz", EVENT_COLUMNS, parts[0], gz=True)
    write_jsonl(second / "events" / "part-1.jsonl", parts[1])
    shuffled = list(parts[2])
    rng.shuffle(shuffled)  # a file out of ts order is re-ordered, not judged out of order
    write_jsonl(second / "events" / "part-2.jsonl.gz", shuffled, gz=True)
    (second / "events" / "notes.txt").write_text("not an input\n")
    files2 = reference_files(second, scenario, fmt="csv")
    out2 = tmp_path / "out2"
    argv = ["--events", str(second / "events"), *ref_args(files2), "--out", str(out2)]
    assert run_cli(argv) == 0

    a1, a2 = read_alerts(out1), read_alerts(out2)
    assert pairs(a2) == scenario.expected
    assert sorted(a["alert_id"] for a in a1) == sorted(a["alert_id"] for a in a2)
    assert summary_totals(out2)["events"] == len(rows)
    assert malformed_rows(out2) == []


def test_malformed_lines_are_reported_with_file_line_and_reason(
    scenario: Scenario, tmp_path: Path
) -> None:
    rows = events(scenario)
    files = reference_files(tmp_path, scenario)
    good = write_jsonl(tmp_path / "good.jsonl.gz", rows, gz=True)
    ok = json.dumps(rows[0], ensure_ascii=False)
    bad_lines = [
        ok.replace(rows[0]["event_id"], "bad-ok-1"),  # line 1: fine
        "{not json",  # line 2
        "",  # line 3: blank, not a record
        json.dumps({**rows[1], "event_id": "bad-2", "msisdn": "12345"}, ensure_ascii=False),
        json.dumps({**rows[1], "event_id": "bad-3", "ts": "yesterday"}, ensure_ascii=False),
        json.dumps({**rows[1], "event_id": "bad-4", "kind": "fax"}, ensure_ascii=False),
        "[1, 2, 3]",  # line 7
    ]
    bad = write_jsonl(tmp_path / "bad.jsonl", bad_lines)
    bad_csv = write_csv(
        tmp_path / "bad.csv",
        EVENT_COLUMNS,
        [
            {**rows[2], "event_id": "csv-ok"},  # line 2 (after the header)
            {**rows[2], "event_id": "csv-bad", "ts": "not-a-time"},  # line 3
        ],
    )
    truncated = tmp_path / "cut.jsonl.gz"
    whole = gzip.compress(("\n".join(json.dumps(r) for r in rows[:50]) + "\n").encode())
    truncated.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    argv = ["--events", str(good), str(bad), str(bad_csv), str(truncated), *ref_args(files)]
    assert run_cli([*argv, "--out", str(out)]) == 0

    got = malformed_rows(out)
    want = {
        ("bad.jsonl", 2, "json"),
        ("bad.jsonl", 4, "schema:msisdn"),
        ("bad.jsonl", 5, "schema:ts"),
        ("bad.jsonl", 6, "schema:kind"),
        ("bad.jsonl", 7, "schema:value"),
        ("bad.csv", 3, "schema:ts"),
    }
    assert want <= set(got)
    gz_rows = [r for r in got if r[0] == "cut.jsonl.gz"]
    assert [r[2] for r in gz_rows] == ["gzip"]
    assert len(got) == len(want) + 1
    totals = summary_totals(out)
    assert totals["malformed"] == len(got)
    with (out / "summary.csv").open(encoding="utf-8") as fh:
        by_reason = {
            r["name"]: int(r["count"]) for r in csv.DictReader(fh) if r["section"] == "malformed"
        }
    assert by_reason == dict(Counter(r for _, _, r in got))
    # the readable events of every file were still audited, each once
    alerts = read_alerts(out)
    assert scenario.expected <= pairs(alerts)
    # nothing of the malformed lines' content is copied out
    text = (out / "malformed.csv").read_text(encoding="utf-8")
    assert "12345" not in text and "yesterday" not in text and "not-a-time" not in text


def test_repeated_event_ids_are_processed_once(scenario: Scenario, tmp_path: Path) -> None:
    rows = events(scenario)
    files = reference_files(tmp_path, scenario)
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    b = write_jsonl(tmp_path / "b.jsonl", rows[:40])
    out = tmp_path / "out"
    assert run_cli(["--events", str(a), str(b), *ref_args(files), "--out", str(out)]) == 0
    totals = summary_totals(out)
    assert totals["duplicates"] == 40
    assert totals["events"] == len(rows)
    assert pairs(read_alerts(out)) == scenario.expected
    ids = [x["alert_id"] for x in read_alerts(out)]
    assert len(ids) == len(set(ids))


def test_per_message_mode_skips_only_the_aggregate_rules(
    scenario: Scenario, tmp_path: Path
) -> None:
    files = reference_files(tmp_path, scenario)
    ev = write_jsonl(tmp_path / "events.jsonl.gz", events(scenario), gz=True)
    out = tmp_path / "out"
    argv = ["--events", str(ev), *ref_args(files), "--out", str(out), "--rules", "per-message"]
    assert run_cli(argv) == 0
    alerts = read_alerts(out)
    assert pairs(alerts) == scenario.expected
    assert all(a.get("event_id") for a in alerts)


def test_audit_equals_the_offline_runner_including_aggregate_alerts(
    scenario: Scenario, tmp_path: Path
) -> None:
    """The audit's batching closes no window early: same alerts as a per-record OfflineRunner
    fed the same records in ts order (the live twin), with and without --close-all."""
    from smsmon.contract.codec import DecodeContext, decode_event, decode_model
    from smsmon.contract.models import ConsentRecord
    from smsmon.rules.offline import OfflineRunner
    from smsmon.rules.reference import ReferenceBook, apply_reference
    from smsmon.rules.traffic import TrafficConfig

    s = settings()
    ctx = DecodeContext(tz=s.tz)
    book = ReferenceBook()
    for key, value in scenario.reference.ports:
        apply_reference(book, s, s.topic_ports, key.encode(), json.dumps(value).encode(), ctx)
    for key, value in scenario.reference.signatures:
        apply_reference(book, s, s.topic_signatures, key.encode(), json.dumps(value).encode(), ctx)
    consent = [
        decode_model(ConsentRecord, json.dumps(v).encode(), ctx)
        for _, v in scenario.reference.consent
    ]
    evs = [decode_event(json.dumps(e).encode(), None, ctx) for e in events(scenario)]
    records: list[Any] = sorted([*consent, *evs], key=lambda r: r.ts)  # stable, consent first
    cfg = audit.Audit(s, audit.AuditOptions([], [], [], [], tmp_path)).engine_config()

    files = reference_files(tmp_path, scenario)
    ev_file = write_jsonl(tmp_path / "events.jsonl.gz", events(scenario), gz=True)
    for close_all in (False, True):
        runner = OfflineRunner(book, cfg, TrafficConfig(), batch=1)
        want = list(runner.run(records)) + (runner.finish() if close_all else [])
        out = tmp_path / f"out-{close_all}"
        argv = ["--events", str(ev_file), *ref_args(files), "--out", str(out)]
        assert run_cli([*argv, "--close-all"] if close_all else argv) == 0
        got = read_alerts(out)
        assert sorted(a["alert_id"] for a in got) == sorted(a.alert_id for a in want)
        assert any(not a.get("event_id") for a in got), "the scenario has aggregate alerts"


def test_consent_is_applied_at_its_ts_and_archived_tombstones_delete(tmp_path: Path) -> None:
    """History: a grant dated after a message does not cover it; an archived deletion
    (tombstone line) removes the pair's consent from its Kafka timestamp on."""
    base = dt.datetime(2026, 10, 20, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    ms = lambda d: int(d.timestamp() * 1000)  # noqa: E731
    port = {
        "port": "10660001",
        "enterprise": "ENT",
        "accounts": ["a"],
        "categories": ["marketing"],
        "status": "active",
    }
    sig = {"signature": "店", "enterprise": "ENT", "ports": [], "status": "active"}
    msisdn = "13800001111"

    def mt(i: int, minutes: int) -> dict[str, Any]:
        return {
            "event_id": f"e{i}",
            "ts": (base + dt.timedelta(minutes=minutes)).isoformat(),
            "kind": "mt",
            "gateway": "g",
            "port": "10660001",
            "msisdn": msisdn,
            "account": "a",
            "category": "marketing",
            "text": "【店】上新了,回T退订",
        }

    consent = [
        json.dumps(
            {
                "msisdn": msisdn,
                "enterprise": "ENT",
                "status": "granted",
                "ts": (base + dt.timedelta(minutes=5)).isoformat(),
            }
        ),
        json.dumps(
            {
                "_key": f"{msisdn}|ENT",
                "_tombstone": True,
                "_timestamp": ms(base + dt.timedelta(minutes=15)),
            }
        ),
    ]
    files = {
        "ports": write_jsonl(tmp_path / "p.jsonl", [port]),
        "signatures": write_jsonl(tmp_path / "s.jsonl", [sig]),
        "consent": write_jsonl(tmp_path / "c.jsonl", consent),
    }
    ev = write_jsonl(tmp_path / "e.jsonl", [mt(1, 0), mt(2, 10), mt(3, 20)])
    out = tmp_path / "out"
    assert run_cli(["--events", str(ev), *ref_args(files), "--out", str(out)]) == 0
    assert pairs(read_alerts(out)) == {("e1", "consent.missing"), ("e3", "consent.missing")}
    totals = summary_totals(out)
    assert totals["consent_records"] == 1 and totals["consent_deletions"] == 1

    out2 = tmp_path / "out2"  # a snapshot: every consent record before any event
    argv = ["--events", str(ev), *ref_args(files), "--out", str(out2), "--consent-order", "first"]
    assert run_cli(argv) == 0
    assert pairs(read_alerts(out2)) == {(e, "consent.missing") for e in ("e1", "e2", "e3")}


def test_missing_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--events", str(tmp_path / "nope"), "--ports", str(tmp_path / "nope")]
    argv += ["--signatures", str(tmp_path), "--consent", str(tmp_path), "--out", str(tmp_path)]
    assert run_cli(argv) == 2
    assert "input not found" in capsys.readouterr().err


# -- ordering machinery -------------------------------------------------------------------


@pytest.mark.parametrize(
    "ts",
    [
        "2026-10-20T10:00:00+08:00",
        "2026-10-20T10:00:00.123456",
        "2026-10-20 02:00:00Z",
        1792461600123,
    ],
)
def test_sort_key_is_the_decoded_ts(ts: Any) -> None:
    from smsmon.contract.codec import DecodeContext, decode_event

    s = settings()
    ev = {
        "event_id": "x",
        "ts": ts,
        "kind": "mo",
        "gateway": "g",
        "port": "1069",
        "msisdn": "13800001111",
        "text": 'hi, "ts": 1',
    }
    raw = json.dumps(ev).encode()
    decoded = decode_event(raw, None, DecodeContext(tz=s.tz))
    assert audit.fast_ts_us(raw, None, s.tz) == to_us(decoded.ts)
    nested = json.dumps({**ev, "meta": {"ts": "2001-01-01T00:00:00"}}).encode()
    assert audit.fast_ts_us(nested, None, s.tz) is None  # two candidates: decode instead
    escaped = raw.replace(b'"ts"', b'"\\u0074s"')
    assert audit.fast_ts_us(escaped, None, s.tz) is None


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "America/New_York"])
def test_naive_sort_keys_equal_the_aware_arithmetic_across_dst(zone: str) -> None:
    """The sort key of a naive `ts` is computed without building the aware datetime; it
    equals `to_us(ts.replace(tzinfo=tz))`, also in DST gaps and repeated hours, and the
    decoder's local time is that same aware datetime."""
    from zoneinfo import ZoneInfo

    from smsmon.contract.models import _iso_ts

    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    start = dt.datetime.fromisoformat("1985-01-01T00:00:00")
    probes = [
        start + dt.timedelta(seconds=rng.randrange(0, 50 * 365 * 86_400)) for _ in range(3000)
    ]
    # every hour around the transitions of 2026 (gaps and folds in Berlin and New York)
    for day in (
        dt.datetime.fromisoformat("2026-03-08T00:00:00"),
        dt.datetime.fromisoformat("2026-03-29T00:00:00"),
        dt.datetime.fromisoformat("2026-10-25T00:00:00"),
        dt.datetime.fromisoformat("2026-11-01T00:00:00"),
    ):
        probes += [day + dt.timedelta(minutes=m, microseconds=7) for m in range(0, 24 * 60, 15)]
    for naive in probes:
        text = naive.isoformat()
        aware = naive.replace(tzinfo=tz)
        assert audit.fast_ts_us(json.dumps({"ts": text}).encode(), None, tz) == to_us(aware)
        decoded = _iso_ts(text, tz)
        assert decoded == aware and decoded.fold == aware.fold == 0
        assert decoded.utcoffset() == aware.utcoffset()


def test_merge_orders_records_across_and_within_files(tmp_path: Path) -> None:
    rng = random.Random(5)
    sources = []
    expected = []
    for f in range(4):
        keys = [rng.randrange(1_000, 1_050) for _ in range(300)]
        if f % 2 == 0:
            keys.sort()
        path = tmp_path / f"f{f}.jsonl"
        path.write_text("".join(f'{{"k": {k}, "f": {f}, "i": {i}}}\n' for i, k in enumerate(keys)))
        src = audit.Source(audit.EVENTS, path, f)
        for k in keys:
            src.keys.append(k)
        src.ordered = f % 2 == 0
        i_min = min(range(len(keys)), key=lambda i: (keys[i], i))
        src.first = (keys[i_min], audit.EVENTS, f, i_min)
        sources.append(src)
        expected += [(k, f, i) for i, k in enumerate(keys)]
    got = [json.loads(raw) for _, _, raw, _ in audit.merged(sources)]
    assert [(d["k"], d["f"], d["i"]) for d in got] == sorted(expected)


def test_since_and_until_judge_a_period_with_earlier_events_as_warm_up(
    scenario: Scenario, tmp_path: Path
) -> None:
    """Only alerts of events in [since, until) come out, judged with the state that earlier
    events built (an unsubscribe before `since` still makes later marketing consent.revoked)."""
    rows = events(scenario)
    tz = settings().tz
    ts = {r["event_id"]: audit.parse_when(r["ts"], tz) for r in rows}
    ordered = sorted(ts.values())
    since, until = ordered[len(ordered) // 3], ordered[2 * len(ordered) // 3]
    files = reference_files(tmp_path, scenario)
    ev = write_jsonl(tmp_path / "events.jsonl.gz", rows, gz=True)
    out = tmp_path / "out"
    argv = ["--events", str(ev), *ref_args(files), "--out", str(out)]
    argv += ["--since", since.isoformat(), "--until", until.isoformat()]
    assert run_cli(argv) == 0
    want = {(e, r) for e, r in scenario.expected if since <= ts[e] < until}
    got = read_alerts(out)
    assert pairs(got) == want
    assert all(since <= dt.datetime.fromisoformat(a["ts"]) for a in got)
    totals = summary_totals(out)
    assert totals["events"] == sum(1 for t in ts.values() if since <= t < until)
    assert totals["warmup_events"] == sum(1 for t in ts.values() if t < since)


def test_archived_unsubscribe_revocations_keep_the_unsubscribe_cases(
    scenario: Scenario, tmp_path: Path
) -> None:
    """The consent archive holds the revocations the worker derived from 退订 replies (same
    ts as the reply): the audit still attributes and tracks every unsubscribe."""
    from smsmon.contract.codec import DecodeContext, decode_event, decode_model
    from smsmon.contract.models import ConsentRecord
    from smsmon.rules.engine import DictState, Engine
    from smsmon.rules.reference import ReferenceBook, apply_reference

    s = settings()
    ctx = DecodeContext(tz=s.tz)
    book = ReferenceBook()
    for key, value in scenario.reference.ports:
        apply_reference(book, s, s.topic_ports, key.encode(), json.dumps(value).encode(), ctx)
    for key, value in scenario.reference.signatures:
        apply_reference(book, s, s.topic_signatures, key.encode(), json.dumps(value).encode(), ctx)
    cfg = audit.Audit(s, audit.AuditOptions([], [], [], [], tmp_path)).engine_config()
    engine, state = Engine(book, cfg), DictState()
    for _, v in scenario.reference.consent:
        rec = decode_model(ConsentRecord, json.dumps(v).encode(), ctx)
        engine.on_consent(rec.msisdn, rec.enterprise, rec, state)
    published = []
    for row in sorted(events(scenario), key=lambda r: r["ts"]):
        out = engine.on_event(decode_event(json.dumps(row).encode(), None, ctx), state, T_NOW)
        published += [r.model_dump_json(exclude_none=True) for r in out.revocations]
    assert len(published) == scenario.unsubscribes

    files = reference_files(tmp_path, scenario)
    consent = [json.dumps(v, ensure_ascii=False) for _, v in scenario.reference.consent]
    files["consent"] = write_jsonl(tmp_path / "consent-archive.jsonl", [*consent, *published])
    ev = write_jsonl(tmp_path / "events.jsonl.gz", events(scenario), gz=True)
    out_dir = tmp_path / "out"
    assert run_cli(["--events", str(ev), *ref_args(files), "--out", str(out_dir)]) == 0
    assert pairs(read_alerts(out_dir)) == scenario.expected
    assert summary_totals(out_dir)["unsubscribes_attributed"] == scenario.unsubscribes
    data = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    assert data["unsubscribes"]["tracked"] == scenario.unsubscribes
    assert data["unsubscribes"]["with_marketing_after"] == scenario.unsubscribes


T_NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


# -- the archive's files, without a broker ---------------------------------------------------


def test_archive_store_files_are_audit_inputs_and_survive_a_torn_write(
    scenario: Scenario, tmp_path: Path
) -> None:
    """Records appended by the archive's store in several flushes (gzip members) read back
    whole; a torn member is cut off on the next start; expired files are swept."""
    from smsmon.tools.archive import ArchiveStore, archive_line, good_gzip_prefix, record_date

    s = settings()
    root = tmp_path / "archive"
    store = ArchiveStore(root, s.tz, retention_days=183)
    store.open()
    rows = events(scenario)
    for i, row in enumerate(rows):
        value = json.dumps(row, ensure_ascii=False).encode()
        day = record_date(value, 0, s.tz, s.max_future_skew_seconds)
        store.add("sms.events", 0, i, day, archive_line(False, None, value, 0))
        if i % 200 == 199:
            store.flush()
    store.flush()
    store.close()
    path = root / "sms.events" / "2026-10-20.jsonl.gz"
    size = path.stat().st_size
    assert good_gzip_prefix(path) == size
    with path.open("ab") as fh:  # a crash in the middle of the next member
        fh.write(gzip.compress(b'{"torn": true}\n')[:15])
    assert good_gzip_prefix(path) == size

    store = ArchiveStore(root, s.tz, retention_days=183)
    store.open()  # recovery: back to the recorded length
    assert path.stat().st_size == size
    assert store.already("sms.events", 0, len(rows) - 1)
    assert not store.already("sms.events", 0, len(rows))
    old = root / "sms.events" / "2020-01-01.jsonl.gz"
    old.write_bytes(gzip.compress(b"{}\n"))
    assert store.sweep(["sms.events"]) == [old]
    store.close()

    files = reference_files(tmp_path, scenario)
    out = tmp_path / "out"
    assert run_cli(["--events", str(root / "sms.events"), *ref_args(files), "--out", str(out)]) == 0
    assert pairs(read_alerts(out)) == scenario.expected
    assert malformed_rows(out) == []


def test_archive_lines_keep_the_value_and_tombstones_keep_the_key() -> None:
    from smsmon.tools.archive import archive_line, record_date

    tz = settings().tz
    assert archive_line(False, b"k", b'{"a":\n 1}', 5) == b'{"a":  1}'
    assert archive_line(False, b"k", None, 5) == b"null"
    tomb = json.loads(archive_line(True, b"13800001111|ENT", None, 1234))
    assert tomb == {"_key": "13800001111|ENT", "_tombstone": True, "_timestamp": 1234}
    ts = b'{"ts": "2026-10-31T17:30:00Z", "x": 1}'
    assert record_date(ts, 0, tz, 86_400).isoformat() == "2026-11-01"  # local date
    kafka_ms = int(dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)
    assert record_date(b"{not json", kafka_ms, tz, 86_400).isoformat() == "2026-05-01"
    assert record_date(b'{"ts": "3026-01-01"}', kafka_ms, tz, 86_400).isoformat() == "2026-05-01"
