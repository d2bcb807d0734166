"""`make demo`: local broker, one worker, sample traffic, the alert store and the compliance
console, and a live terminal view.

Everything it starts (broker, worker, store, console, Prometheus if installed, traffic) is
stopped on Ctrl-C, on SIGTERM, or after `--seconds`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "kafka-local.sh"
# the demo's console login (a local demo on 127.0.0.1 only; never a production account)
DEMO_USER, DEMO_PASSWORD = "demo", "demo-only-password"


class Demo:
    """Owns the processes the demo starts and stops them all."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = REPO / ".demo"
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.broker_dir = self.state / "kafka"
        self.bootstrap = f"127.0.0.1:{args.kafka_port}"
        self.env = dict(
            os.environ,
            SMSMON_KAFKA_BOOTSTRAP=self.bootstrap,
            SMSMON_MSISDN_SECRET=os.environ.get("SMSMON_MSISDN_SECRET", "demo-only-secret"),
            SMSMON_DATA_DIR=str(self.state / "data"),
            SMSMON_METRICS_PORT=str(args.metrics_port),
            SMSMON_PARTITIONS="4",
            SMSMON_PYTHON=sys.executable,
            SMSMON_ALERT_DB_URL=f"sqlite:///{self.state / 'alerts.db'}",
            SMSMON_CONSOLE_SECRET=os.environ.get(
                "SMSMON_CONSOLE_SECRET", "demo-only-console-session-secret"
            ),
            SMSMON_CONSOLE_PORT=str(args.console_port),
        )

    def start(self) -> None:
        shutil.rmtree(self.state / "data", ignore_errors=True)
        self.state.mkdir(exist_ok=True)
        print(f"starting Apache Kafka on {self.bootstrap} …", flush=True)
        subprocess.run(
            [
                str(SCRIPT),
                "start",
                "--port",
                str(self.args.kafka_port),
                "--controller-port",
                str(self.args.kafka_port + 1),
                "--dir",
                str(self.broker_dir),
            ],
            check=True,
            env=self.env,
        )
        print("starting smsmon worker …", flush=True)
        self._spawn("worker", [sys.executable, "-m", "smsmon.cli", "worker"])
        (self.state / "alerts.db").unlink(missing_ok=True)
        self._setup_step(["store", "migrate"])
        self._setup_step(["console", "add-user", DEMO_USER, "--role", "handler"], DEMO_PASSWORD)
        print("starting the alert store and the compliance console …", flush=True)
        self._spawn("store", [sys.executable, "-m", "smsmon.cli", "store"])
        self._spawn("console", [sys.executable, "-m", "smsmon.cli", "console", "serve"])
        print(
            f"compliance console: http://127.0.0.1:{self.args.console_port}/  "
            f"(login {DEMO_USER} / {DEMO_PASSWORD})",
            flush=True,
        )
        prom = shutil.which("prometheus")
        if prom:
            self._prometheus(prom)

    def _setup_step(self, args: list[str], stdin: str | None = None) -> None:
        """Run `smsmon <args>` to completion; its output only if it fails."""
        done = subprocess.run(
            [sys.executable, "-m", "smsmon.cli", *args],
            input=None if stdin is None else (stdin + "\n").encode(),
            env=self.env,
            capture_output=True,
        )
        if done.returncode != 0:
            sys.stderr.write(done.stdout.decode(errors="replace") + done.stderr.decode())
            raise SystemExit(f"smsmon {' '.join(args)} failed ({done.returncode})")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = (self.state / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append((name, proc))

    def _prometheus(self, binary: str) -> None:
        cfg = self.state / "prometheus.yml"
        rules = REPO / "smsmon" / "config" / "prometheus" / "alerts.yml"
        cfg.write_text(
            "global: {scrape_interval: 5s, evaluation_interval: 5s}\n"
            + (f"rule_files: ['{rules}']\n" if rules.exists() else "")
            + "scrape_configs:\n  - job_name: smsmon\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.args.metrics_port}']\n"
        )
        self._spawn(
            "prometheus",
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={self.state / 'prometheus'}",
                "--web.listen-address=127.0.0.1:9090",
            ],
        )
        print("Prometheus on http://127.0.0.1:9090", flush=True)

    def traffic(self) -> None:
        """Reference data first, wait until the worker holds the consent, then traffic."""
        base = [sys.executable, "-m", "smsmon.cli", "simulate", "--scenario", "double11"]
        subprocess.run(
            [*base, "--phase", "reference"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print("reference data published; waiting for the worker to load consent …", flush=True)
        last, stable_since = -1.0, time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(1)
            with contextlib.suppress(OSError):
                n = self.metrics().get('smsmon_reference_entries{table="consent"}', 0.0)
                if n != last:
                    last, stable_since = n, time.monotonic()
                elif n > 0 and time.monotonic() - stable_since > 3:
                    break
        print(f"{last:,.0f} consent pairs loaded; starting Double 11 traffic", flush=True)
        rate, seconds = str(self.args.rate), str(self.args.seconds or 10**9)
        self._spawn(
            "simulator", [*base, "--phase", "traffic", "--rate", rate, "--seconds", seconds]
        )

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.args.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("smsmon_") and " " in line:
                name, value = line.rsplit(" ", 1)
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def view(self, m: dict[str, float], rate: float, started: float) -> Group:
        head = Table.grid(padding=(0, 2))
        events = sum(v for k, v in m.items() if k.startswith("smsmon_events_total{"))
        dead = sum(v for k, v in m.items() if k.startswith("smsmon_invalid_events_total{"))
        head.add_row(
            "uptime",
            f"{time.monotonic() - started:,.0f} s",
            "events",
            f"{events:,.0f}",
            "events/s",
            f"{rate:,.0f}",
            "dead letters",
            f"{dead:,.0f}",
        )
        rules = Table(title="alerts by rule", expand=True)
        rules.add_column("rule")
        rules.add_column("severity")
        rules.add_column("count", justify="right")
        rows = []
        for k, v in m.items():
            if k.startswith("smsmon_alerts_total{"):
                labels = dict(p.split("=", 1) for p in k[k.index("{") + 1 : -1].split(","))
                rows.append((labels["rule"].strip('"'), labels["severity"].strip('"'), v))
        for rule, sev, v in sorted(rows, key=lambda r: -r[2]):
            rules.add_row(rule, sev, f"{v:,.0f}")
        console = (
            f"console http://127.0.0.1:{self.args.console_port}/ ({DEMO_USER} / {DEMO_PASSWORD})"
        )
        return Group(
            Panel(head, title="smsmon demo — Ctrl-C stops everything", subtitle=console), rules
        )

    def run(self) -> None:
        started = time.monotonic()
        deadline = started + self.args.seconds if self.args.seconds else None
        self.traffic()
        last_events, last_t = 0.0, time.monotonic()
        with Live(refresh_per_second=2, transient=False) as live:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(1)
                for name, proc in self.procs:
                    if proc.poll() is not None and name in ("worker", "store", "console"):
                        raise SystemExit(f"{name} exited; see {self.state / (name + '.log')}")
                try:
                    m = self.metrics()
                except OSError:
                    continue
                events = sum(v for k, v in m.items() if k.startswith("smsmon_events_total{"))
                now = time.monotonic()
                rate = (events - last_events) / max(now - last_t, 1e-6)
                last_events, last_t = events, now
                live.update(self.view(m, rate, started))

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            print(f"stopped {name}", flush=True)
        subprocess.run(
            [str(SCRIPT), "stop", "--dir", str(self.broker_dir)], env=self.env, check=False
        )
        print("stopped Kafka; nothing left running", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="smsmon-demo", description=__doc__)
    p.add_argument("--kafka-port", type=int, default=int(os.environ.get("DEMO_KAFKA_PORT", 19092)))
    p.add_argument("--metrics-port", type=int, default=9108)
    p.add_argument("--console-port", type=int, default=8088)
    p.add_argument("--rate", type=float, default=300.0, help="simulated events per second")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0 = Ctrl-C)")
    args = p.parse_args(argv)
    demo = Demo(args)

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        demo.start()
        demo.run()
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
    finally:
        demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
