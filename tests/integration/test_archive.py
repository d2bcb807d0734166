"""`smsmon archive` against the real broker: every record lands once in the file of its local
date, a second run resumes without duplicating, a torn write is repaired, retention deletes
old files; and `smsmon audit` over the archive gives the live pipeline's alerts."""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from smsmon.config.settings import Settings
from smsmon.contract.canonical import partition_for
from smsmon.tools import audit
from smsmon.tools.scenario import Builder, Scenario
from tests.integration.conftest import Env, wait_ready, wait_until
from tests.integration.test_compliance_pipeline import produce, read_all

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")
ENC = lambda v: None if v is None else json.dumps(v, ensure_ascii=False).encode()  # noqa: E731


def topics_env(env: Env, **extra: str) -> dict[str, str]:
    return env.settings_env(SMSMON_TOPIC_COMPLAINTS=env.topic("sms.complaints"), **extra)


def create_topics(env: Env) -> None:
    admin = KafkaAdminClient(bootstrap_servers=env.bootstrap)
    compact = {"cleanup.policy": "compact"}
    admin.create_topics(
        [
            NewTopic(env.topic("sms.events"), env.partitions, 1),
            NewTopic(env.topic("sms.ref.consent"), env.partitions, 1, topic_configs=compact),
            NewTopic(env.topic("sms.alerts"), env.partitions, 1),
            NewTopic(env.topic("sms.complaints"), env.partitions, 1),
        ]
    )
    admin.close()


def archive_cmd(directory: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "smsmon.tools.archive",
        "archive",
        "--dir",
        str(directory),
        "--flush-seconds",
        "1",
        *extra,
    ]


def run_archive(env: Env, directory: Path, idle: float = 5) -> str:
    proc = subprocess.run(
        archive_cmd(directory, "--until-idle", str(idle)),
        env={**os.environ, **topics_env(env)},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=env.tmp,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and " ERROR " not in proc.stderr, proc.stderr
    return proc.stdout


def lines_by_file(directory: Path) -> dict[str, list[bytes]]:
    """Every line of every archive file of a topic directory, by file name."""
    out: dict[str, list[bytes]] = {}
    for path in sorted(directory.glob("*.jsonl.gz")):
        out[path.name] = gzip.decompress(path.read_bytes()).splitlines()
    return out


def local_date(ts: Any) -> str:
    if isinstance(ts, int):
        return dt.datetime.fromtimestamp(ts / 1000, TZ).date().isoformat()
    d = dt.datetime.fromisoformat(ts)
    return (d if d.tzinfo else d.replace(tzinfo=TZ)).astimezone(TZ).date().isoformat()


def event_rows(sc: Scenario) -> list[tuple[bytes | None, bytes | None]]:
    return [(k.encode(), json.dumps(ev, ensure_ascii=False).encode()) for k, ev in sc.events]


def closing_ticks(sc: Scenario, partitions: int) -> list[tuple[bytes | None, bytes | None]]:
    """One harmless `mo` per partition, 20 minutes after the scenario's last event.

    The live worker and the audit (without --close-all) judge a window once event time has
    passed it (on every partition, live). With these ticks both judge every window of the
    scenario; only the ticks' own windows, which hold no alert, stay open."""
    last = max(dt.datetime.fromisoformat(ev["ts"]) for _, ev in sc.events)
    ts = (last + dt.timedelta(minutes=20)).isoformat()
    rows: list[tuple[bytes | None, bytes | None]] = []
    i = 0
    for p in range(partitions):
        while partition_for(msisdn := f"1390000{i:04d}", partitions) != p:
            i += 1
        tick = {
            "event_id": f"tick-{p}",
            "ts": ts,
            "kind": "mo",
            "gateway": "gw-tick",
            "port": "106600000123",
            "msisdn": msisdn,
            "text": "ok",
        }
        rows.append((msisdn.encode(), json.dumps(tick).encode()))
    return rows


def write_reference(tmp: Path, sc: Scenario) -> dict[str, Path]:
    paths = {}
    for name, rows in (("ports", sc.reference.ports), ("signatures", sc.reference.signatures)):
        p = tmp / f"{name}.jsonl"
        p.write_text("".join(json.dumps(v, ensure_ascii=False) + "\n" for _, v in rows if v))
        paths[name] = p
    return paths


def run_audit(env: Env, out: Path, events: Path, consent: Path, ref: dict[str, Path]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    audit.register_cli(sub)
    args = parser.parse_args(
        [
            "audit",
            "--no-progress",
            "--events",
            str(events),
            "--consent",
            str(consent),
            "--ports",
            str(ref["ports"]),
            "--signatures",
            str(ref["signatures"]),
            "--out",
            str(out),
        ]
    )
    settings = Settings(
        **{k.removeprefix("SMSMON_").lower(): v for k, v in topics_env(env).items()}
    )
    assert args.func(settings, args) == 0


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def dlr(i: int, ts: Any, indent: int | None = None) -> tuple[bytes, bytes]:
    ev = {
        "event_id": f"dlr-{i}",
        "ts": ts,
        "kind": "dlr",
        "gateway": "g",
        "port": "10690001",
        "msisdn": "13911112222",
        "status": "DELIVRD",
    }
    return b"13911112222", json.dumps(ev, indent=indent).encode()


def test_archive_keeps_every_record_once_resumes_and_expires(kenv: Env, tmp_path: Path) -> None:
    create_topics(kenv)
    sc = Builder(seed=21).build(300)
    events_topic, consent_topic = kenv.topic("sms.events"), kenv.topic("sms.ref.consent")
    archive = tmp_path / "archive"
    ev_dir, consent_dir = archive / events_topic, archive / consent_topic

    # old files are deleted by retention, other files are left alone
    ev_dir.mkdir(parents=True)
    (ev_dir / "2020-01-01.jsonl.gz").write_bytes(gzip.compress(b'{"old": 1}\n'))
    (ev_dir / "README.txt").write_text("keep me\n")

    rows = event_rows(sc)
    first, rest = rows[: len(rows) * 2 // 3], rows[len(rows) * 2 // 3 :]
    extras = [
        dlr(1, "2026-10-31T17:30:00Z"),  # 2026-11-01 01:30 in Asia/Shanghai
        dlr(2, "2026-10-31T23:30:00"),  # naive: already local
        dlr(3, 1_793_000_000_000),  # epoch ms
        dlr(4, "2026-10-21T09:00:00+08:00", indent=2),  # pretty-printed: one line in the archive
        (b"13911112222", b"{not json"),  # no usable ts: dated by its Kafka timestamp (today)
    ]
    produce(kenv.bootstrap, events_topic, [*first, *extras])
    consent_rows = [(k.encode(), ENC(v)) for k, v in sc.reference.consent]
    old_grant = {  # years old, and still the standing record: consent is kept forever
        "msisdn": "13911113333",
        "enterprise": "91330100MA2AAAAA1X",
        "status": "granted",
        "ts": "2020-01-01T12:00:00+08:00",
    }
    consent_rows.append((b"13911113333|91330100MA2AAAAA1X", ENC(old_grant)))
    tombstone = (b"13911112222|91330100MA2AAAAA1X", None)
    produce(kenv.bootstrap, consent_topic, [*consent_rows, tombstone])

    out1 = run_archive(kenv, archive)
    assert not (ev_dir / "2020-01-01.jsonl.gz").exists()
    assert (ev_dir / "README.txt").exists()
    files = lines_by_file(ev_dir)
    today = dt.datetime.now(TZ).date().isoformat()
    want_files = {f"{local_date(json.loads(v)['ts'])}.jsonl.gz" for _, v in first}
    want_files |= {"2026-11-01.jsonl.gz", "2026-10-31.jsonl.gz", "2026-10-21.jsonl.gz"}
    want_files.add(f"{today}.jsonl.gz")
    want_files.add(f"{local_date(1_793_000_000_000)}.jsonl.gz")
    assert set(files) == want_files, out1
    for _, value in first:
        ev = json.loads(value)
        assert files[f"{local_date(ev['ts'])}.jsonl.gz"].count(value) == 1
    assert files["2026-11-01.jsonl.gz"] == [extras[0][1]]
    assert extras[1][1] in files["2026-10-31.jsonl.gz"]
    pretty = extras[3][1].replace(b"\n", b" ")
    assert files["2026-10-21.jsonl.gz"] == [pretty]
    assert b"{not json" in files[f"{today}.jsonl.gz"]
    assert sum(len(v) for v in files.values()) == len(first) + len(extras)

    consent_lines = [line for v in lines_by_file(consent_dir).values() for line in v]
    assert Counter(consent_lines) == Counter(
        [v for _, v in consent_rows if v is not None]
        + [
            next(
                line
                for line in consent_lines
                if json.loads(line).get("_key") == tombstone[0].decode()
            )
        ]
    )
    assert (consent_dir / "2020-01-01.jsonl.gz").exists()
    tomb = next(json.loads(line) for line in consent_lines if b"_tombstone" in line)
    assert tomb["_tombstone"] is True and isinstance(tomb["_timestamp"], int)

    # a second run with nothing new writes nothing
    sizes = {p: p.stat().st_size for p in archive.rglob("*.jsonl.gz")}
    out2 = run_archive(kenv, archive, idle=3)
    assert "archived 0 records" in out2
    assert {p: p.stat().st_size for p in archive.rglob("*.jsonl.gz")} == sizes

    # a crash mid-write leaves a torn gzip member: the next run cuts it off
    victim = ev_dir / "2026-11-01.jsonl.gz"
    good_size = victim.stat().st_size
    with victim.open("ab") as fh:
        fh.write(b"\x1f\x8b\x08\x00torn")

    # the rest arrives while an archiver runs; SIGTERM stops it cleanly
    proc = subprocess.Popen(
        archive_cmd(archive),
        env={**os.environ, **topics_env(kenv)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=kenv.tmp,
    )
    try:
        produce(kenv.bootstrap, events_topic, rest)

        def archived_all() -> bool:
            total = sum(len(v) for v in lines_by_file(ev_dir).values())
            return total == len(rows) + len(extras)

        wait_until(archived_all, 90, "the rest archived")
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and " ERROR " not in stderr, stderr
    assert f"archived {len(rest)} records" in stdout
    assert victim.stat().st_size == good_size
    everything = Counter(line for v in lines_by_file(ev_dir).values() for line in v)
    assert all(n == 1 for n in everything.values())
    assert {v for _, v in rows} <= set(everything)

    # the audit reads the archive directly and finds the scenario's exact alerts
    out = tmp_path / "audit"
    run_audit(kenv, out, ev_dir, consent_dir, write_reference(tmp_path, sc))
    got = {
        (a["event_id"], a["rule"]) for a in read_jsonl(out / "alerts.jsonl") if a.get("event_id")
    }
    assert got == sc.expected
    malformed = (out / "malformed.csv").read_text().splitlines()[1:]
    assert len(malformed) == 1 and ",json," in malformed[0]


def test_live_pipeline_and_audit_of_the_archive_agree(kenv: Env, tmp_path: Path) -> None:
    """The simulator's scenario through the live worker and through `smsmon audit` of what
    `smsmon archive` kept: the same alerts, ids included."""
    sc = Builder(seed=8).build(400)
    worker = kenv.start_worker(SMSMON_TOPIC_COMPLAINTS=kenv.topic("sms.complaints"))
    wait_ready(worker)
    ref = sc.reference
    produce(
        kenv.bootstrap, kenv.topic("sms.ref.ports"), [(k.encode(), ENC(v)) for k, v in ref.ports]
    )
    produce(
        kenv.bootstrap,
        kenv.topic("sms.ref.signatures"),
        [(k.encode(), ENC(v)) for k, v in ref.signatures],
    )
    produce(
        kenv.bootstrap,
        kenv.topic("sms.ref.consent"),
        [(k.encode(), ENC(v)) for k, v in ref.consent],
    )
    pairs = len({k for k, _ in ref.consent})
    wait_until(
        lambda: worker.sample("smsmon_reference_entries", {"table": "consent"}) == pairs,
        90,
        "consent loaded",
    )
    produce(kenv.bootstrap, kenv.topic("sms.events"), event_rows(sc))
    produce(kenv.bootstrap, kenv.topic("sms.events"), closing_ticks(sc, kenv.partitions))
    want = Counter(rule for _, rule in sc.expected)

    def live_done() -> bool:
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited:\n{worker.log()[-4000:]}")
        return all(worker.sample("smsmon_alerts_total", {"rule": r}) == n for r, n in want.items())

    wait_until(live_done, 180, "the live worker's alerts")

    archive = tmp_path / "archive"

    def archived() -> tuple[list[dict[str, Any]], list[bytes]] | None:
        """Archive (again: a run resumes where the last one stopped) until it holds every
        live alert and every revocation the worker published."""
        run_archive(kenv, archive, idle=4)
        alerts = [
            json.loads(line)
            for lines in lines_by_file(archive / kenv.topic("sms.alerts")).values()
            for line in lines
        ]
        revocations = [
            line
            for lines in lines_by_file(archive / kenv.topic("sms.ref.consent")).values()
            for line in lines
            if json.loads(line).get("source") == "mo"
        ]
        pairs = {(a["event_id"], a["rule"]) for a in alerts if a.get("event_id")}
        done = pairs == sc.expected and len(revocations) == sc.unsubscribes
        return (alerts, revocations) if done else None

    live, _ = wait_until(archived, 180, "the archive to hold the live alerts", every=0)

    out = tmp_path / "audit"
    run_audit(
        kenv,
        out,
        archive / kenv.topic("sms.events"),
        archive / kenv.topic("sms.ref.consent"),
        write_reference(tmp_path, sc),
    )
    offline = read_jsonl(out / "alerts.jsonl")
    per_message = lambda alerts: {a["alert_id"] for a in alerts if a.get("event_id")}  # noqa: E731
    assert {(a["event_id"], a["rule"]) for a in offline if a.get("event_id")} == sc.expected
    assert per_message(offline) == per_message(live)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["unsubscribes"]["tracked"] == sc.unsubscribes
    # Aggregate (windowed) alerts too: the same set, ids included (the closing ticks moved
    # event time past every window on every partition; the alerts follow the per-message ones).
    offline_aggregate = {a["alert_id"] for a in offline if not a.get("event_id")}
    assert offline_aggregate, "the scenario raises windowed alerts"

    def live_alerts() -> list[dict[str, Any]] | None:
        got = [json.loads(r.value) for r in read_all(kenv.bootstrap, kenv.topic("sms.alerts"))]
        return got if offline_aggregate <= {a["alert_id"] for a in got} else None

    try:
        live = wait_until(live_alerts, 120, "the live windowed alerts", every=2.0)
    except AssertionError:
        for a in offline:
            if not a.get("event_id"):
                print("offline:", a["rule"], a.get("subject"), a.get("window_start"))
        print(worker.metrics_text())
        raise
    live_aggregate = {a["alert_id"] for a in live if not a.get("event_id")}
    assert live_aggregate == offline_aggregate, (
        sorted(live_aggregate - offline_aggregate)[:5],
        sorted(offline_aggregate - live_aggregate)[:5],
    )
    assert {a["alert_id"] for a in live} == {a["alert_id"] for a in offline}
