"""Broker and worker processes for the benchmarks and the integration tests.

One place that starts the repo's local Kafka (scripts/kafka-local.sh) on free loopback ports,
stops, kills and restarts it on its data dir, and runs `python -m smsmon.cli worker`
subprocesses with their SMSMON_* settings, data dirs and logs: readiness and metrics come from
each worker's /metrics page. bench.throughput, bench.recovery and tests/integration/conftest.py
use it; pytest imports it as `bench.harness` (pythonpath ".").

Waits raise `WaitTimeout`, which is both an AssertionError (a test failure in pytest) and a
TimeoutError (what the benchmark scripts catch).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "kafka-local.sh"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class WaitTimeout(AssertionError, TimeoutError):
    """A condition did not hold in time."""


class WorkerExitedError(AssertionError):
    """A worker process ended while the caller expected it to run."""


# ------------------------------------------------------------------------------------------
# ports, waiting, /proc accounting


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    every: float = 0.25,
    *,
    workers: Iterable[Worker] = (),
    retry: tuple[type[BaseException], ...] = (Exception,),
) -> Any:
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` seconds pass.

    Exceptions of the `retry` types count as "not yet" (a /metrics page not up yet); the last
    one is named on timeout. Each of `workers` is checked first on every round, so a worker
    that exits fails the wait at once instead of at the timeout.
    """
    watched = list(workers)
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        for w in watched:
            w.check(what)
        try:
            value = predicate()
            if value:
                return value
        except retry as exc:
            last_exc = exc
        time.sleep(every)
    raise WaitTimeout(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmHWM, VmRSS, ...); 0 when absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def wait_quiescent(pids: list[int], timeout: float = 180.0, max_util: float = 0.10) -> float:
    """Wait until each process uses less than `max_util` of a core over 2 s (background work
    such as changelog writes or standby replication done); returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = [cpu_seconds(p) for p in pids]
        time.sleep(2.0)
        if all((cpu_seconds(p) - b) / 2.0 < max_util for p, b in zip(pids, before, strict=True)):
            break
    return time.monotonic() - t0


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60.0
) -> None:
    """Send `sig` and wait; SIGKILL when the process has not exited after `timeout` s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


class Processes:
    """Every child process a script started; `stop_all` ends them (TERM, then KILL), also
    after Ctrl-C, so a benchmark leaves nothing running on a shared machine."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def add(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(proc)
        return proc

    def start_worker(self, name: str, settings: Mapping[str, str], root: Path) -> Worker:
        """`start_worker(..., isolated=True)`, stopped with the others by `stop_all`."""
        w = start_worker(name, settings, root, isolated=True)
        self.add(w.proc)
        return w

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                stop_process(proc, timeout=30.0)


# ------------------------------------------------------------------------------------------
# the broker


class Broker:
    """A dedicated single-node broker from scripts/kafka-local.sh: its own ports and data dir.

    With `sasl` the script also opens a SASL_PLAINTEXT listener on `port + 2`, so that port
    must be free too.
    """

    def __init__(self, directory: Path, *, sasl: bool = False) -> None:
        self.directory = directory
        self.sasl = sasl
        while True:
            self.port, self.cport = free_port(), free_port()
            if self.cport == self.port:
                continue
            if not sasl or (port_free(self.port + 2) and self.cport != self.port + 2):
                break
        self.pid = 0
        self.started = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.port + 2}"

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # the script's readiness probe uses kafka-python from this interpreter
        env = dict(os.environ, SMSMON_PYTHON=sys.executable)
        return subprocess.run(
            [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    def start(self, keep: bool = False) -> None:
        """Start and wait until it serves; `keep` reuses the data dir (a restart), otherwise
        the script formats it afresh."""
        args = ["start", "--port", str(self.port), "--controller-port", str(self.cport)]
        args += ["--dir", str(self.directory)]
        args += ["--sasl"] if self.sasl else []
        args += ["--keep"] if keep else []
        self.started = True  # stop() is safe even if start fails half-way
        done = self._run(*args, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"broker did not start:\n{done.stdout}\n{done.stderr}")
        self.pid = int((self.directory / "broker.pid").read_text().split()[0])

    def stop(self, check: bool = True) -> None:
        """SIGTERM (the script waits, then SIGKILLs); a no-op when it was never started."""
        if not self.started:
            return
        done = self._run("stop", "--dir", str(self.directory), timeout=90)
        self.started = False
        if check and done.returncode != 0:
            raise RuntimeError(f"broker did not stop:\n{done.stdout}\n{done.stderr}")

    def kill(self, timeout: float = 30.0) -> None:
        """SIGKILL the broker (a crash: no clean shutdown); `start(keep=True)` brings it back."""
        pid = self.pid
        # The script starts the broker in its own session: kill the whole process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _running(pid):
            raise RuntimeError(f"broker pid {pid} still running {timeout}s after SIGKILL")

    def restart(self) -> None:
        """Stop and start again on the same data dir (topics, offsets and ports kept)."""
        self.stop()
        self.start(keep=True)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


@contextlib.contextmanager
def running_broker(directory: Path, *, sasl: bool = False) -> Iterator[Broker]:
    """A started broker, stopped when the block ends."""
    broker = Broker(directory, sasl=sasl)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# ------------------------------------------------------------------------------------------
# workers


def app_env(bootstrap: str, prefix: str, partitions: int, secret: str) -> dict[str, str]:
    """SMSMON_* settings of one isolated app: its own app id (consumer group) and topics."""
    p = prefix
    return {
        "SMSMON_KAFKA_BOOTSTRAP": bootstrap,
        "SMSMON_APP_ID": p,
        "SMSMON_PARTITIONS": str(partitions),
        "SMSMON_TOPIC_EVENTS": f"{p}.sms.events",
        "SMSMON_TOPIC_PORTS": f"{p}.sms.ref.ports",
        "SMSMON_TOPIC_SIGNATURES": f"{p}.sms.ref.signatures",
        "SMSMON_TOPIC_CONSENT": f"{p}.sms.ref.consent",
        "SMSMON_TOPIC_COMPLAINTS": f"{p}.sms.complaints",
        "SMSMON_TOPIC_EXEMPTIONS": f"{p}.sms.ref.exemptions",
        "SMSMON_TOPIC_ALERTS": f"{p}.sms.alerts",
        "SMSMON_TOPIC_DLQ": f"{p}.sms.events.dlq",
        "SMSMON_MSISDN_SECRET": secret,
        "SMSMON_STORE": "rocksdb://",
    }


def settings_of(env: Mapping[str, str]) -> Any:
    """The worker's `Settings` for an SMSMON_* environment (topic names, app id, ...)."""
    from smsmon.config.settings import Settings

    fields: dict[str, Any] = {k[len("SMSMON_") :].lower(): v for k, v in env.items()}
    return Settings(**fields)


# Settings the harness sets per worker process; callers cannot override them.
WORKER_OWNED = frozenset({"SMSMON_METRICS_PORT", "SMSMON_DATA_DIR"})


@dataclass
class Worker:
    """One `smsmon worker` process, its /metrics endpoint and its log file."""

    proc: subprocess.Popen[bytes]
    metrics_port: int
    log_path: Path
    env: dict[str, str]
    name: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self, what: str = "") -> None:
        """Raise WorkerExitedError, with the log's first error and its tail, if it exited."""
        if self.alive():
            return
        text = self.log()
        lines = text.splitlines()
        first = next(
            (i for i, ln in enumerate(lines) if "[ERROR]" in ln or "[CRITICAL]" in ln), None
        )
        head = "\n".join(lines[first : first + 60]) if first is not None else "(none)"
        during = f" waiting for {what}" if what else ""
        raise WorkerExitedError(
            f"worker {self.name} exited ({self.proc.returncode}){during}, log {self.log_path}; "
            f"first error:\n{head}\n...\n{text[-6000:]}"
        )

    def metrics_text(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())

    def samples(self) -> list[Any]:
        """Every sample of the /metrics page (prometheus_client's parser)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.metrics_text()
        return [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0.0 when absent)."""
        want = labels or {}
        return sum(
            float(s.value)
            for s in self.samples()
            if s.name == name and all(s.labels.get(k) == v for k, v in want.items())
        )

    def try_sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """`sample`, or -1.0 while the page does not answer."""
        try:
            return self.sample(name, labels)
        except OSError:
            return -1.0

    def latency_buckets(self) -> list[tuple[float, float]]:
        """Cumulative (le, count) of smsmon_detection_latency_seconds."""
        out = [
            (float(s.labels["le"]), float(s.value))
            for s in self.samples()
            if s.name == "smsmon_detection_latency_seconds_bucket"
        ]
        return sorted(out)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def copy_log(self, suffix: str) -> Path:
        """Keep the log before a restart under the same name overwrites it."""
        dest = self.log_path.with_name(f"{self.log_path.stem}-{suffix}.log")
        dest.write_bytes(self.log_path.read_bytes())
        return dest

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        """Send `sig` (SIGTERM: a clean leave of the group) and wait; SIGKILL after `timeout`."""
        stop_process(self.proc, sig, timeout)

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def hwm_mib(self) -> float:
        """Peak resident memory (VmHWM)."""
        return status_kib(self.pid, "VmHWM") / 1024


def worker_process_env(
    settings: Mapping[str, str], metrics_port: int, data_dir: Path, *, isolated: bool = False
) -> dict[str, str]:
    """The environment of one worker process: this one, `settings` on top, then the metrics
    port and data dir, which belong to the process (WORKER_OWNED).

    `isolated` (the benchmarks) drops the caller's own SMSMON_* settings and puts this
    checkout first on PYTHONPATH, so a run from a `git worktree` measures that worktree's
    worker rather than whatever the venv's editable install points at.
    """
    if isolated:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSMON_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    else:
        env = dict(os.environ)
    env.update(settings)
    env["SMSMON_METRICS_PORT"] = str(metrics_port)
    env["SMSMON_DATA_DIR"] = str(data_dir)
    return env


def start_worker(
    name: str, settings: Mapping[str, str], root: Path, *, isolated: bool = False
) -> Worker:
    """Start `python -m smsmon.cli worker` with `settings` (see worker_process_env); its data
    dir is `root/data-<name>`, its log `root/worker-<name>.log`, its cwd `root`."""
    port = free_port()
    log_path = root / f"worker-{name}.log"
    env = worker_process_env(settings, port, root / f"data-{name}", isolated=isolated)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smsmon.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    return Worker(proc, port, log_path, env, name)


def wait_ready(worker: Worker, timeout: float = 120) -> None:
    """Wait until the worker loaded its reference data and processes events."""

    try:
        wait_until(
            lambda: worker.sample("smsmon_reference_ready") == 1.0,
            timeout,
            "worker ready",
            workers=[worker],
        )
    except AssertionError:
        print(worker.log()[-6000:])
        raise
