"""`smsmon audit` reads each input once when its files are in `ts` order (or out of order by
less than the window) and falls back to the two passes otherwise: either way every output
is the two passes' output (alerts and their order, summary.csv, malformed.csv, report.json
and report.html apart from the time of the run)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from smsmon.config.settings import Settings
from smsmon.streams import audit
from smsmon.streams.scenario import Builder, Scenario

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret"


def settings() -> Settings:
    return Settings(msisdn_secret=SECRET)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Builder(seed=23).build(400)


def lines_of(rows: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r, ensure_ascii=False) for r in rows]


def write(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def ts_of(row: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(row["ts"])


def reference(tmp: Path, sc: Scenario) -> dict[str, Path]:
    ref = sc.reference
    return {
        "ports": write(tmp / "ports.jsonl", lines_of([v for _, v in ref.ports if v])),
        "signatures": write(tmp / "sigs.jsonl", lines_of([v for _, v in ref.signatures if v])),
    }


def sorted_rows(sc: Scenario) -> list[dict[str, Any]]:
    return sorted((ev for _, ev in sc.events), key=ts_of)  # stable: equal ts keep their order


def consent_rows(sc: Scenario) -> list[dict[str, Any]]:
    return sorted((v for _, v in sc.reference.consent if v), key=ts_of)


def run(
    tmp: Path,
    name: str,
    events: list[Path],
    consent: list[Path],
    ref: dict[str, Path],
    **extra: Any,
) -> tuple[audit.Audit, dict[str, Any]]:
    out = tmp / name
    opt = audit.AuditOptions(
        events=[str(p) for p in events],
        ports=[str(ref["ports"])],
        signatures=[str(ref["signatures"])],
        consent=[str(p) for p in consent],
        out=out,
        progress=False,
        **extra,
    )
    a = audit.Audit(settings(), opt)
    a.run()
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    report.pop("generated_at")
    html = (out / "report.html").read_text(encoding="utf-8")
    alerts = (out / "alerts.jsonl").read_text(encoding="utf-8")
    return a, {
        "alerts": re.sub(r'"detected_at":"[^"]*",?', "", alerts),
        "summary": (out / "summary.csv").read_text(encoding="utf-8"),
        "malformed": (out / "malformed.csv").read_text(encoding="utf-8"),
        "report": json.dumps(report, ensure_ascii=False),  # key order included
        "html": re.sub(r'"detected_at": "[^"]*"|\d{4}-\d\d-\d\dT[\d:]+[+-]\d\d:\d\d by', "", html),
    }


def both(
    tmp: Path, events: list[Path], consent: list[Path], ref: dict[str, Path], **extra: Any
) -> tuple[int, dict[str, Any]]:
    """Run single-pass-first and two-pass-only; assert identical outputs; return the
    passes the first run took and its outputs."""
    one, got = run(tmp, "single", events, consent, ref, **extra)
    two, want = run(tmp, "two", events, consent, ref, single_pass=False, **extra)
    assert two.passes == 2
    for key in want:
        assert got[key] == want[key], key
    return one.passes, got


def test_sorted_files_are_read_once_with_the_two_pass_outputs(
    scenario: Scenario, tmp_path: Path
) -> None:
    rows = sorted_rows(scenario)
    third = len(rows) // 3
    # three files in ts order (like the archive's dated files), one overlapping the next
    ev = [
        write(tmp_path / "a.jsonl.gz", lines_of(rows[:third])),
        write(tmp_path / "b.jsonl", lines_of(rows[third - 20 : 2 * third])),  # 20 repeated
        write(tmp_path / "c.jsonl.gz", lines_of(rows[2 * third :])),
    ]
    half = len(consent_rows(scenario)) // 2
    cons = [
        write(tmp_path / "c1.jsonl", lines_of(consent_rows(scenario)[:half])),
        write(tmp_path / "c2.jsonl.gz", lines_of(consent_rows(scenario)[half:])),
    ]
    passes, got = both(tmp_path, ev, cons, reference(tmp_path, scenario))
    assert passes == 1
    assert got["alerts"].count("\n") > 100
    assert ",duplicates,,,,,,20\n" in got["summary"]


def test_disorder_within_the_window_is_read_once(scenario: Scenario, tmp_path: Path) -> None:
    """The scenario's own event order is a little out of ts order (replies after their
    message): the window re-orders it; the same file with a window of 2 cannot."""
    ref = reference(tmp_path, scenario)
    ev = [write(tmp_path / "e.jsonl.gz", lines_of([e for _, e in scenario.events]))]
    cons = [write(tmp_path / "c.jsonl", lines_of(consent_rows(scenario)))]
    assert both(tmp_path, ev, cons, ref)[0] == 1
    assert both(tmp_path / "w", ev, cons, ref, window=2)[0] == 2


def test_an_unsorted_file_falls_back_to_two_passes(scenario: Scenario, tmp_path: Path) -> None:
    rows = sorted_rows(scenario)
    late = rows[len(rows) // 2 :]
    early = rows[: len(rows) // 2]
    ref = reference(tmp_path, scenario)
    cons = [write(tmp_path / "c.jsonl", lines_of(consent_rows(scenario)))]
    # a late record far behind the rest (written after later ones), at the end of a file
    ev = [
        write(tmp_path / "a.jsonl", lines_of(early[1:] + early[:1])),
        write(tmp_path / "b.jsonl", lines_of(late)),
    ]
    passes, _got = both(tmp_path, ev, cons, ref, window=16)
    assert passes == 2
    # shuffled: out of order from the start
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    ev = [write(tmp_path / "s.jsonl.gz", lines_of(shuffled))]
    assert both(tmp_path / "s", ev, cons, ref, window=16)[0] == 2
    # ... which a window larger than the file re-orders in memory
    assert both(tmp_path / "m", ev, cons, ref)[0] == 1
    # consent out of order (a grant dated long before the others, at the end)
    c = consent_rows(scenario)
    cons2 = [write(tmp_path / "c2.jsonl", lines_of(c[1:] + c[:1]))]
    assert both(tmp_path / "c", [ev[0]], cons2, ref, window=8)[0] == 2


def test_equal_timestamps_across_kinds_files_and_lines_keep_the_two_pass_order(
    tmp_path: Path,
) -> None:
    """At equal ts: consent before events, files in the order given, then lines. A grant at
    the same ts as a message covers it; two files with the same ts interleave by file."""
    base = dt.datetime(2026, 10, 20, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    port = {
        "port": "10660001",
        "enterprise": "ENT",
        "accounts": ["a"],
        "categories": ["marketing"],
        "status": "active",
    }
    sig = {"signature": "店", "enterprise": "ENT", "ports": [], "status": "active"}
    ref = {
        "ports": write(tmp_path / "p.jsonl", lines_of([port])),
        "signatures": write(tmp_path / "s.jsonl", lines_of([sig])),
    }

    def mt(eid: str, minute: int, msisdn: str, text: str = "【店】上新了,回T退订") -> str:
        return json.dumps(
            {
                "event_id": eid,
                "ts": (base + dt.timedelta(minutes=minute)).isoformat(),
                "kind": "mt",
                "gateway": "g",
                "port": "10660001",
                "msisdn": msisdn,
                "account": "a",
                "category": "marketing",
                "text": text,
            },
            ensure_ascii=False,
        )

    def grant(minute: int, msisdn: str, status: str = "granted") -> str:
        ts = (base + dt.timedelta(minutes=minute)).isoformat()
        return json.dumps({"msisdn": msisdn, "enterprise": "ENT", "status": status, "ts": ts})

    numbers = [f"1380000{i:04d}" for i in range(6)]
    a = [mt(f"a{i}", i // 3, numbers[i % 6]) for i in range(30)]
    b = [mt(f"b{i}", i // 3, numbers[(i + 1) % 6]) for i in range(30)]
    b[5] = mt("a5", 1, numbers[0])  # same event id and ts as a line of the first file
    c = [grant(m, n) for m in range(0, 10, 2) for n in numbers[:3]]
    c += [grant(m, numbers[1], "revoked") for m in (3, 7)]
    c.sort(key=lambda line: json.loads(line)["ts"])
    ev = [write(tmp_path / "a.jsonl", a), write(tmp_path / "b.jsonl", b)]
    cons = [write(tmp_path / "c.jsonl", c)]
    passes, got = both(tmp_path, ev, cons, ref)
    assert passes == 1
    assert ",duplicates,,,,,,1\n" in got["summary"]
    # consent order "first", and the same records swapped between the files
    assert both(tmp_path / "f", ev, cons, ref, consent_order="first")[0] == 1
    assert both(tmp_path / "r", ev[::-1], cons, ref)[0] == 1


def test_malformed_lines_are_reported_alike_on_both_paths(
    scenario: Scenario, tmp_path: Path
) -> None:
    rows = sorted_rows(scenario)
    ref = reference(tmp_path, scenario)
    ok = lines_of(rows)
    bad_json = [*ok[:10], "{not json", "", "[1, 2, 3]", *ok[10:40]]
    schema = [
        json.dumps({**rows[40], "event_id": "bad-msisdn", "msisdn": "12345"}),  # fast key
        json.dumps({**rows[40], "event_id": "bad-ts", "ts": "yesterday"}),  # decoded in pass 1
        json.dumps({**rows[41], "event_id": "bad-kind", "kind": "fax"}),
    ]
    b = bad_json + schema + ok[40:80]
    truncated = gzip.compress(("\n".join(ok[80:200]) + "\n").encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(truncated[: len(truncated) // 2])
    junk = write(tmp_path / "junk.jsonl", ["nope", "{}", "{also not json"])  # no valid record
    ev = [
        write(tmp_path / "a.jsonl", [*ok[:10], "{broken", *ok[200:]]),
        write(tmp_path / "b.jsonl", b),
        cut,
        junk,
    ]
    cons = [write(tmp_path / "c.jsonl", ["{x", *lines_of(consent_rows(scenario))])]
    passes, got = both(tmp_path, ev, cons, ref)
    assert passes == 1
    mal = got["malformed"].splitlines()
    assert len(mal) == 1 + 11
    reasons = {line.split(",")[2] for line in mal[1:]}
    assert {"json", "schema:msisdn", "schema:ts", "schema:kind", "gzip"} <= reasons
    # the same malformed lines when the run falls back (z.jsonl is out of order and a
    # window of 0 re-orders nothing)
    ev2 = [ev[1], cut, junk, write(tmp_path / "z.jsonl", [ok[150], "{", ok[3]])]
    passes, got2 = both(tmp_path / "fb", ev2, cons, ref, window=0)
    assert passes == 2
    assert got2["malformed"].count("\n") == 1 + 11


@pytest.mark.parametrize("unsorted_after_stop", [False, True])
def test_since_and_until_on_both_paths(
    scenario: Scenario, tmp_path: Path, unsorted_after_stop: bool
) -> None:
    """--until stops the replay; the rest is still read (lines counted, malformed lines
    reported). A record out of order after the stop falls back only when it sorts before it."""
    rows = sorted_rows(scenario)
    tz = settings().tz
    since = ts_of(rows[len(rows) // 3]).astimezone(tz)
    until = ts_of(rows[2 * len(rows) // 3]).astimezone(tz)
    ref = reference(tmp_path, scenario)
    tail = [*lines_of(rows[len(rows) // 2 :]), "{bad"]
    if unsorted_after_stop:
        tail.append(lines_of(rows[:1])[0])  # sorts before the stop: the two passes see it
    ev = [
        write(tmp_path / "a.jsonl", lines_of(rows[: len(rows) // 2])),
        write(tmp_path / "b.jsonl", tail),
        write(tmp_path / "d.jsonl", ["{also bad"]),
    ]
    cons = [write(tmp_path / "c.jsonl", lines_of(consent_rows(scenario)))]
    passes, got = both(tmp_path, ev, cons, ref, since=since, until=until, window=4)
    assert passes == (2 if unsorted_after_stop else 1)
    assert got["malformed"].count("\n") == 3


@pytest.mark.parametrize("seed", range(6))
def test_random_inputs_give_the_two_pass_outputs(
    scenario: Scenario, tmp_path: Path, seed: int
) -> None:
    """Random splits, small disorder, repeats, malformed lines and windows: whichever path a
    run takes, its outputs are the two passes' outputs."""
    rng = random.Random(seed)
    rows = sorted_rows(scenario)
    ref = reference(tmp_path, scenario)
    files: list[list[str]] = [[] for _ in range(rng.randint(1, 4))]
    for r in rows:
        files[rng.randrange(len(files))].append(json.dumps(r, ensure_ascii=False))
    for lines in files:
        for _ in range(rng.randint(0, 3)):  # local swaps
            if len(lines) > 2:
                i = rng.randrange(len(lines) - 1)
                lines[i], lines[i + 1] = lines[i + 1], lines[i]
        for _ in range(rng.randint(0, 2)):
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(["{", "[]", "{}"]))
    ev = [write(tmp_path / f"e{i}.jsonl", lines) for i, lines in enumerate(files)]
    cons = [write(tmp_path / "c.jsonl", lines_of(consent_rows(scenario)))]
    both(tmp_path, ev, cons, ref, window=rng.choice([1, 3, 64, audit.WINDOW]))


def test_stream_merge_raises_on_a_record_before_the_last_one(tmp_path: Path) -> None:
    src = audit.Source(audit.EVENTS, tmp_path / "x.jsonl", 0)
    entries = [(1, 0, 1, b"a"), (3, 1, 2, b"b"), (2, 2, 3, b"c")]
    merge = audit.StreamMerge([((1, audit.EVENTS, 0, 0), src)], lambda s: iter(entries))
    got = []
    with pytest.raises(audit.Unsorted):
        for _, line, _ in merge:
            got.append(line)
    assert got == [1, 2]
