"""Benchmark of the alert store's write path on SQLite and PostgreSQL, and a fast filler.

Throughput mode (default): N alert records of a heavy mix (every rule of the catalog, a few
thousand enterprises, ports, signatures and accounts, a tenth of them repeated as a worker's
replay would) are stored through `smsmon.store.writer.Writer` in poll-sized batches, i.e.
decode with the contract's models + one transaction per batch with the idempotent inserts.
Kafka's fetch is not part of it. Prints rows/s per backend with machine, commit and command.

Fill mode (`--fill N --db-url URL`): writes N synthetic alerts straight into the table (no
decoding), for benchmarks that need a large store, e.g. the console's list page at 1,000,000.

    python -m bench.store --rows 100000
    python -m bench.store --rows 100000 --prefill 1000000 --backends postgresql
    python -m bench.store --fill 1000000 --db-url sqlite:///data/bench-alerts.db

PostgreSQL: `--pg-url` names a database, otherwise a temporary server is started from Debian's
`postgresql` package (as the `postgres` user when run as root) and removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import pwd
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, Table, func, insert, select, text

from smsmon.contract.canonical import MsisdnHasher, mask_msisdn
from smsmon.contract.codec import DecodeContext
from smsmon.rules.catalog import PER_MESSAGE_RULES
from smsmon.rules.traffic import COMPLAINT_RATE, PORT_SUBLET, RECIPIENT_FLOOD, VOLUME_SPIKE
from smsmon.store import schema
from smsmon.store.db import make_engine, migrate
from smsmon.store.records import Source
from smsmon.store.writer import Topics, Writer

REPO = Path(__file__).resolve().parents[1]
TOPICS = Topics("sms.alerts", "sms.ref.consent", "sms.ref.ports", "sms.ref.signatures")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
AGGREGATE = (VOLUME_SPIKE, RECIPIENT_FLOOD, PORT_SUBLET, COMPLAINT_RATE)
SUBJECT_TYPE = {
    VOLUME_SPIKE.id: "port",
    RECIPIENT_FLOOD.id: "msisdn",
    PORT_SUBLET.id: "port",
    COMPLAINT_RATE.id: "signature",
}
CASES = ("open",) * 80 + ("acknowledged",) * 8 + ("resolved",) * 8 + ("false_positive",) * 4


class Mix:
    """A heavy, skewed alert mix: a few rules, enterprises and ports carry most alerts."""

    def __init__(self, seed: int, days: float = 30.0, prefix: str = "gw") -> None:
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.hasher = MsisdnHasher(b"bench-secret", "k1")
        self.days = days
        rules = [(r.id, str(r.severity)) for r in PER_MESSAGE_RULES]
        rules += [(r.id, str(r.severity)) for r in AGGREGATE]
        self.rules = rules
        # Zipf-like weights: rule i carries weight 1/(i+1)
        self.rule_weights = [1.0 / (i + 1) for i in range(len(rules))]
        self.enterprises = [f"91310000{i:010d}" for i in range(2_000)]
        self.ports = [f"1069{i:06d}" for i in range(5_000)]
        self.signatures = [f"商户{i}" for i in range(3_000)]
        self.accounts = [f"acct{i:05d}" for i in range(3_000)]
        self.gateways = [f"gw-{c}" for c in "abcdefgh"]
        self.numbers = [f"13{self.rng.randrange(10**9):09d}" for _ in range(20_000)]
        self.hashes = {n: self.hasher(n) for n in self.numbers}

    def _pick(self, seq: list[str]) -> str:
        # paretovariate skews the choice towards the head of the list
        i = int(self.rng.paretovariate(1.2)) - 1
        return seq[i % len(seq)]

    def alert(self, n: int) -> dict[str, Any]:
        """One contract-valid alert (a dict as it goes to JSON)."""
        rng = self.rng
        rule, severity = rng.choices(self.rules, self.rule_weights)[0]
        ts = NOW - dt.timedelta(seconds=rng.random() * self.days * 86_400)
        event_id = f"{self.prefix}-{n:012d}"
        number = rng.choice(self.numbers)
        body: dict[str, Any] = {
            "schema_version": 1,
            "alert_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule}|{event_id}")),
            "rule": rule,
            "severity": severity,
            "ts": ts.isoformat(),
            "detected_at": (ts + dt.timedelta(milliseconds=rng.randrange(5, 900))).isoformat(),
        }
        if rule in SUBJECT_TYPE:
            subject_type = SUBJECT_TYPE[rule]
            start = ts.replace(second=0, microsecond=0)
            body.update(
                event_id="",
                subject_type=subject_type,
                subject=self.hashes[number] if subject_type == "msisdn" else self._pick(self.ports),
                window_start=start.isoformat(),
                window_end=(start + dt.timedelta(minutes=1)).isoformat(),
                observed=float(rng.randrange(50, 5_000)),
                threshold=40.0,
                baseline=round(rng.random() * 30, 2),
                detail="aggregate over one minute",
            )
        else:
            body.update(
                event_id=event_id,
                gateway=rng.choice(self.gateways),
                account=self._pick(self.accounts),
                port=self._pick(self.ports) + f"{rng.randrange(100):02d}",
                signature=self._pick(self.signatures),
                enterprise=self._pick(self.enterprises),
                category=rng.choice(("marketing", "marketing", "notification", "verification")),
                msisdn_hash=self.hashes[number],
                msisdn_masked=mask_msisdn(number),
                detail=f"{rule}: expected a registered, consented sender; saw port and account",
            )
        return body

    def records(self, n: int, duplicates: float) -> list[Source]:
        """`n` records for `sms.alerts`, a `duplicates` share repeating earlier alert ids."""
        out: list[Source] = []
        seen: list[bytes] = []
        for i in range(n):
            if seen and self.rng.random() < duplicates:
                value = self.rng.choice(seen)
            else:
                value = json.dumps(self.alert(i), ensure_ascii=False).encode()
                seen.append(value)
            out.append(Source(TOPICS.alerts, i % 8, i // 8, None, value, None))
        return out

    def rows(self, start: int, n: int) -> list[dict[str, Any]]:
        """`n` ready `alerts` rows (fill mode: no JSON decoding, case statuses mixed)."""
        out = []
        for i in range(start, start + n):
            body = self.alert(i)
            row: dict[str, Any] = dict.fromkeys(c.name for c in schema.Alert.__table__.columns)
            row.update(body)
            for name in ("ts", "detected_at", "window_start", "window_end"):
                if row[name] is not None:
                    row[name] = dt.datetime.fromisoformat(row[name])
            row.update(
                payload=json.dumps(body, ensure_ascii=False),
                src_partition=i % 8,
                src_offset=i // 8,
                stored_at=NOW,
                case_status=self.rng.choice(CASES),
                event_id=row["event_id"] or "",
                detail=row["detail"] or "",
            )
            out.append(row)
        return out


def fill(engine: Engine, n: int, seed: int, chunk: int = 10_000) -> float:
    """Write `n` synthetic alerts into `engine`'s store; returns rows/s."""
    migrate(engine)
    mix = Mix(seed)
    with engine.connect() as conn:
        start = int(conn.scalar(select(func.count()).select_from(schema.Alert)) or 0)
    t0 = time.perf_counter()
    # Into an empty table, build the secondary indexes once at the end (a sorted build)
    # instead of maintaining eleven of them row by row: about three times faster.
    table: Table = schema.Alert.__table__  # type: ignore[assignment]
    indexes = list(table.indexes) if start == 0 else []
    with engine.begin() as conn:
        for ix in indexes:
            ix.drop(conn)
    done = 0
    try:
        while done < n:
            rows = mix.rows(start + done, min(chunk, n - done))
            with engine.begin() as conn:
                conn.execute(insert(schema.Alert), rows)
            done += len(rows)
            if done % 100_000 < chunk:
                print(f"  filled {done:,} / {n:,}", file=sys.stderr)
    finally:
        with engine.begin() as conn:
            for ix in indexes:
                ix.create(conn)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE alerts"))
    return n / (time.perf_counter() - t0)


def throughput(
    engine: Engine, rows: int, batch: int, seed: int, duplicates: float
) -> dict[str, Any]:
    """Store `rows` records through the Writer; rows/s and records/s of the write path."""
    migrate(engine)
    mix = Mix(seed + 1, prefix="bench")
    records = mix.records(rows, duplicates)
    writer = Writer(
        engine,
        TOPICS,
        MsisdnHasher(b"bench-secret", "k1"),
        DecodeContext(tz=ZoneInfo("Asia/Shanghai")),
    )
    inserted = 0
    plan_s = 0.0
    t0 = time.perf_counter()
    for i in range(0, len(records), batch):
        part = records[i : i + batch]
        p0 = time.perf_counter()
        writer.plan(part)  # decode cost alone, measured on the side
        plan_s += time.perf_counter() - p0
        inserted += writer.write(part).rows["alerts"]
    total = time.perf_counter() - t0 - plan_s
    return {
        "records": len(records),
        "inserted": inserted,
        "seconds": total,
        "records_per_s": len(records) / total,
        "rows_per_s": inserted / total,
        "decode_share": plan_s / total,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def temporary_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL (initdb + pg_ctl on a loopback port); yields its URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL is not installed: apt-get install -y postgresql")
    bindir = Path(found[-1]).parent
    directory = Path(tempfile.mkdtemp(prefix="smsmon-bench-pg-"))
    data, sock = directory / "data", directory / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (directory, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    pg_ctl = str(bindir / "pg_ctl")
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-l", str(directory / "log"), "-o", options,
             "-w", "start"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


def machine() -> dict[str, str]:
    """What the figures were measured on: CPU model, cores, commit, versions, command."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "smsmon/store", "bench/store.py"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": f"{model} ({os.cpu_count()} cores)",
        "commit": commit + (" + uncommitted smsmon/store changes" if dirty else ""),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "command": " ".join(["python -m bench.store", *sys.argv[1:]]),
        # the machine is shared: the load says how much of it the run had
        "load average at start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def _pg_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(text("SHOW server_version")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=100_000, help="alert records to store")
    parser.add_argument("--batch", type=int, default=5_000, help="records per transaction")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of repeated ids")
    parser.add_argument("--prefill", type=int, default=0, help="alerts already in the table")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", help="PostgreSQL database to use (default: a temporary one)")
    parser.add_argument("--sqlite-dir", default=None, help="where the SQLite file goes (tmp)")
    parser.add_argument("--fill", type=int, metavar="N", help="fill mode: write N alerts")
    parser.add_argument("--db-url", help="fill mode: the database to fill")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    info = machine()

    if args.fill is not None:
        if not args.db_url:
            parser.error("--fill needs --db-url")
        engine = make_engine(args.db_url)
        rate = fill(engine, args.fill, args.seed)
        with engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(schema.Alert))
        engine.dispose()
        print(f"filled {args.fill:,} alerts at {rate:,.0f} rows/s; the table holds {total:,}")
        for k, v in info.items():
            print(f"  {k}: {v}")
        return 0

    results: list[tuple[str, dict[str, Any], str]] = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            own = args.sqlite_dir is None
            folder = Path(args.sqlite_dir or tempfile.mkdtemp(prefix="smsmon-bench-sqlite-"))
            path = folder / f"bench-{uuid.uuid4().hex[:8]}.db"
            engine = make_engine(f"sqlite:///{path}")
            try:
                if args.prefill:
                    fill(engine, args.prefill, args.seed)
                results.append(
                    (
                        "sqlite",
                        throughput(engine, args.rows, args.batch, args.seed, args.duplicates),
                        info["sqlite"],
                    )
                )
            finally:
                engine.dispose()
                for p in folder.glob(path.name + "*"):
                    p.unlink()
                if own:
                    folder.rmdir()
        elif backend == "postgresql":
            with temporary_postgres() if args.pg_url is None else _given(args.pg_url) as url:
                engine = make_engine(url)
                try:
                    if args.prefill:
                        fill(engine, args.prefill, args.seed)
                    version = _pg_version(engine)
                    results.append(
                        (
                            "postgresql",
                            throughput(engine, args.rows, args.batch, args.seed, args.duplicates),
                            version,
                        )
                    )
                finally:
                    engine.dispose()
        else:
            parser.error(f"unknown backend {backend!r}")

    print(
        f"alert store write path: {args.rows:,} records ({args.duplicates:.0%} repeated ids), "
        f"batches of {args.batch:,}, {args.prefill:,} alerts already stored"
    )
    for backend, r, version in results:
        print(
            f"  {backend:<10} {version:<8} {r['rows_per_s']:>9,.0f} new rows/s  "
            f"{r['records_per_s']:>9,.0f} records/s  ({r['inserted']:,} rows in "
            f"{r['seconds']:.1f} s; decoding {r['decode_share']:.0%} of it)"
        )
    for k, v in info.items():
        print(f"  {k}: {v}")
    return 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    sys.exit(main())
