"""Benchmark of the console's alert list at 1,000,000 alerts on SQLite and PostgreSQL.

Fills (or reuses) a SQLite file and a PostgreSQL database with N synthetic alerts through the
store's migrations, then requests the list page in-process (Starlette TestClient: routing,
session check, queries, template rendering; no network) for a set of typical filters and prints
p50/p95 per filter. A script, not a test: `python -m bench.console --help`.
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
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text
from starlette.testclient import TestClient

from smsmon.console.app import create_app
from smsmon.console.auth import add_user
from smsmon.console.rules_info import RULES
from smsmon.console.settings import ConsoleSettings
from smsmon.contract.canonical import MsisdnHasher, mask_msisdn
from smsmon.store.db import make_engine, migrate
from smsmon.store.schema import Alert

CACHE = Path(os.environ.get("SMSMON_BENCH_CACHE", "/var/tmp/smsmon-bench-console"))
PASSWORD = "bench password 123"
END = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
DAYS = 180
HASHER = MsisdnHasher(b"bench-secret", "k1")


def _rows(n: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Skewed synthetic alerts over DAYS days, oldest first."""
    rnd = random.Random(seed)
    rules = sorted(RULES.values(), key=lambda r: r.id)
    common = [30, 20, 5, 5, 8, 8, 6, 4, 10, 6, 5, 2]
    weights = [common[i] if i < len(common) else 1 for i in range(len(rules))]
    start = END - dt.timedelta(days=DAYS)
    step = DAYS * 86400 / n
    statuses = ("open",) * 17 + ("acknowledged", "resolved", "false_positive")
    for i in range(n):
        r = rnd.choices(rules, weights)[0]
        e = int(rnd.paretovariate(1.2)) % 200
        ts = start + dt.timedelta(seconds=i * step)
        msisdn = f"1{rnd.randrange(30, 90)}{rnd.randrange(100_000_000):08d}"
        port = f"1069{e:04d}{rnd.randrange(3)}"
        yield {
            "alert_id": f"bench-{i:08d}", "rule": r.id, "severity": r.severity, "ts": ts,
            "detected_at": ts, "event_id": f"ev-{i // 2:08d}", "gateway": f"gw{rnd.randrange(10)}",
            "account": f"acc{e}-{rnd.randrange(10)}", "port": port, "signature": f"签名{e}",
            "enterprise": f"企业{e}", "category": "marketing", "msisdn_hash": HASHER(msisdn),
            "msisdn_masked": mask_msisdn(msisdn), "detail": f"{r.id} on {port}",
            "schema_version": 1, "payload": json.dumps({"rule": r.id, "port": port}),
            "src_partition": i % 8, "src_offset": i, "stored_at": ts,
            "case_status": rnd.choice(statuses),
        }  # fmt: skip


def fill(engine: Engine, n: int, refill: bool = False) -> float:
    """Migrate and insert `n` alerts unless the table already has exactly `n` (and not
    `refill`); seconds spent."""
    migrate(engine)
    with engine.connect() as conn:
        have = conn.execute(select(func.count()).select_from(Alert)).scalar_one()
    if have == n and not refill:
        return 0.0
    t0 = time.monotonic()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM case_events"))
        conn.execute(text("DELETE FROM alerts"))
    batch: list[dict[str, Any]] = []
    stmt = insert(Alert)
    for i, row in enumerate(_rows(n), 1):
        batch.append(row)
        if len(batch) == 20_000 or i == n:
            with engine.begin() as conn:
                conn.execute(stmt, batch)
            batch = []
            print(f"  {i:,} rows", end="\r", file=sys.stderr, flush=True)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    print(file=sys.stderr)
    return time.monotonic() - t0


def filters(engine: Engine) -> list[tuple[str, dict[str, str]]]:
    """Typical officer queries; the values are picked from the data."""
    with engine.connect() as conn:
        a = conn.execute(select(Alert).where(Alert.alert_id == "bench-00500000")).one_or_none()
        a = a or conn.execute(select(Alert).limit(1)).one()
    day = (END - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    week = (END - dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    return [
        ("newest, no filter", {}),
        ("no filter, page 20", {"page": "20"}),
        ("oldest first", {"sort": "ts"}),
        ("rule", {"rule": "consent.revoked"}),
        ("rare rule", {"rule": "complaint.rate"}),
        ("severity + open", {"severity": "critical", "case_status": "open"}),
        ("enterprise (big)", {"enterprise": "企业1"}),
        ("enterprise (small) + 7 d", {"enterprise": a.enterprise, "since": week}),
        ("signature + rule", {"signature": "签名2", "rule": "consent.missing"}),
        ("port", {"port": a.port}),
        ("account", {"account": a.account}),
        ("gateway + last day", {"gateway": "gw3", "since": day}),
        ("subscriber hash", {"msisdn_hash": a.msisdn_hash}),
        ("last day, sort by rule", {"since": day, "sort": "rule"}),
        ("case acknowledged", {"case_status": "acknowledged"}),
    ]


def measure(engine: Engine, repeat: int) -> list[tuple[str, float, float]]:
    add_user(engine, "bench", PASSWORD, "viewer")
    settings = ConsoleSettings(console_secret="b" * 32, console_login_attempts=1000)
    out = []
    with TestClient(create_app(settings, engine)) as client:
        page = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        client.post("/login", data={"csrf": csrf.group(1), "username": "bench",
                                    "password": PASSWORD})  # fmt: skip
        for name, params in filters(engine):
            times = []
            for i in range(repeat + 2):
                t0 = time.perf_counter()
                r = client.get("/alerts", params=params)
                elapsed = time.perf_counter() - t0
                assert r.status_code == 200, (name, r.status_code, r.text[:300])
                if i >= 2:  # two warm-ups
                    times.append(elapsed * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
            out.append((name, statistics.median(times), p95))
            print(f"  {name:28s} p50 {out[-1][1]:7.1f} ms   p95 {p95:7.1f} ms", flush=True)
    return out


# --- PostgreSQL: Debian's server, as the store's test fixture starts it ----------------------


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres(port: int) -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1:`port` with its data kept in CACHE/pg for reuse."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL is not installed: apt-get install -y postgresql")
    bindir = Path(found[-1]).parent
    base = CACHE / "pg"
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for p in (CACHE, base, sock):
            os.chown(p, user.pw_uid, user.pw_gid)
    if not (data / "PG_VERSION").exists():
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                     "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
                                     "--no-sync"]), check=True, capture_output=True)  # fmt: skip
    opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c shared_buffers=512MB "
            "-c work_mem=32MB -c fsync=off")  # fmt: skip
    pg_ctl = str(bindir / "pg_ctl")
    subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-l", str(log), "-o", opts, "-w",
                                 "start"]), check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, check=False)  # fmt: skip


def run(label: str, url: str, n: int, repeat: int, refill: bool) -> list[tuple[str, float, float]]:
    engine = make_engine(url)
    print(f"{label}: filling {n:,} alerts (or reusing)", flush=True)
    took = fill(engine, n, refill)
    print(f"{label}: fill {took:.0f} s" if took else f"{label}: reused", flush=True)
    try:
        return measure(engine, repeat)
    finally:
        engine.dispose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=20, help="timed requests per filter")
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--pg-port", type=int, default=55432)
    p.add_argument("--refill", action="store_true", help="refill even when the count matches")
    args = p.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}; "
          f"python {platform.python_version()}; commit {commit}")  # fmt: skip
    results: dict[str, list[tuple[str, float, float]]] = {}
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.backend in ("sqlite", "both"):
        sqlite_url = f"sqlite:///{CACHE / 'alerts.db'}"
        results["sqlite"] = run("sqlite", sqlite_url, args.rows, args.repeat, args.refill)
    if args.backend in ("postgresql", "both"):
        with postgres(args.pg_port) as url:
            results["postgresql"] = run("postgresql", url, args.rows, args.repeat, args.refill)
    worst = {k: max(p95 for _, _, p95 in v) for k, v in results.items()}
    print("worst p95: " + ", ".join(f"{k} {v:.0f} ms" for k, v in worst.items()))
    return 0 if all(v < 300 for v in worst.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
