"""A real Prometheus scrapes a worker fed with the scenario, evaluating the shipped alert rules.

Through Prometheus' HTTP API: every dashboard panel query and every alert rule query runs
without error and returns data where the scenario guarantees it, the alerts the scenario must
trigger fire, and the pipeline-health alerts do not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smsmon.rules.catalog import RULES_BY_ID
from smsmon.tools.scenario import Builder
from tests.integration.conftest import REPO, Env, free_port, wait_ready, wait_until
from tests.integration.test_compliance_pipeline import produce
from tests.unit.config.test_operational_config import metric_names

pytestmark = pytest.mark.integration

ALERT_RULES = REPO / "smsmon" / "config" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((REPO / "smsmon" / "config" / "grafana" / "dashboards").glob("*.json"))

# Metrics the scenario guarantees data for (labelled counters exist once incremented).
GUARANTEED = {
    "up",
    "smsmon_events_total",
    "smsmon_alerts_total",
    "smsmon_invalid_events_total",
    "smsmon_detection_latency_seconds_bucket",
    "smsmon_detection_latency_seconds_sum",
    "smsmon_detection_latency_seconds_count",
    "smsmon_batch_events_bucket",
    "smsmon_batch_events_sum",
    "smsmon_batch_events_count",
    "smsmon_reference_entries",
    "smsmon_reference_ready",
    "smsmon_recovering",
    "smsmon_build_info",
    "smsmon_unsubscribes_total",
    "smsmon_duplicate_events_total",
    "smsmon_rekeyed_total",
    "smsmon_consent_updates_total",
    "smsmon_rebalances_total",
    "smsmon_consumer_lag",
}
# Rules the scenario never produces (aggregate traffic rules).
AGGREGATE_RULES = ("volume.spike", "recipient.flood", "port.sublet", "complaint.rate")
# Must not fire on a healthy single worker (and the first three must not even be pending).
HEALTH_NEVER_PENDING = ("SmsmonWorkerDown", "SmsmonWorkersAbsent", "SmsmonConsumerLagGrowing")
HEALTH_NOT_FIRING = (
    *HEALTH_NEVER_PENDING,
    "SmsmonDetectionLatencyHigh",
    "SmsmonRecovering",
    "SmsmonReferenceNotReady",
    "SmsmonDeadLetterRateHigh",
    "SmsmonProcessingErrors",
)


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query; keep the error text
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), data
        result: list[dict[str, Any]] = (
            data["result"] if data["resultType"] == "vector" else [{"value": data["result"]}]
        )
        return result

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else float("nan")

    def alerts(self, state: str) -> set[tuple[str, str]]:
        """(alertname, rule label or '') of the alerts in `state` (pending or firing)."""
        return {
            (a["labels"]["alertname"], a["labels"].get("rule", ""))
            for a in self.api("alerts")["alerts"]
            if a["state"] == state
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[list[int]], Prometheus]]:
    """Start /usr/bin/prometheus on loopback, scraping the given worker ports every second."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.fail("prometheus not installed: scripts/test-deps.sh install (Debian prometheus)")
    started: list[Prometheus] = []

    def start(worker_ports: list[int]) -> Prometheus:
        port = free_port()
        config = {  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERT_RULES)],
            "scrape_configs": [
                {
                    "job_name": "smsmon",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in worker_ports]}],
                }
            ],
        }
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2))
        log_path = tmp_path / "prometheus.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        prom = Prometheus(proc, f"http://127.0.0.1:{port}", log_path)
        started.append(prom)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{prom.log()[-4000:]}")
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)

        wait_until(ready, 60, "prometheus ready")
        return prom

    try:
        yield start
    finally:
        for prom in started:
            if prom.proc.poll() is None:
                prom.proc.terminate()
                try:
                    prom.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    prom.proc.kill()
                    prom.proc.wait()


def grafana_to_promql(expr: str) -> str:
    """Substitute Grafana's variables as a dashboard would at a 5-minute range."""
    expr = expr.replace("$__rate_interval", "30s").replace("$__interval", "30s")
    expr = expr.replace("$__range", "5m")
    return re.sub(r"\$\{?\w+(?::\w+)?\}?", ".*", expr)


def panel_queries() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            for t in panel.get("targets", []):
                out.append((f"{path.stem}: {panel['title']}", grafana_to_promql(t["expr"])))
    return out


def feed_scenario(env: Env, worker: Any) -> Any:
    """Reference data, then events (some repeated) and malformed records, as the pipeline test."""
    scenario = Builder(seed=7).build(stories=1500)
    ref = scenario.reference

    def enc(v: Any) -> bytes | None:
        return None if v is None else json.dumps(v, ensure_ascii=False).encode()

    for name, rows in (
        ("sms.ref.ports", ref.ports),
        ("sms.ref.signatures", ref.signatures),
        ("sms.ref.consent", ref.consent),
    ):
        produce(env.bootstrap, env.topic(name), [(k.encode(), enc(v)) for k, v in rows])
    pairs = len({k for k, _ in ref.consent})
    wait_until(
        lambda: worker.sample("smsmon_reference_entries", {"table": "consent"}) == pairs,
        90,
        f"{pairs} consent pairs loaded",
    )
    events = [(k.encode(), enc(ev)) for k, ev in scenario.events]
    rows: list[tuple[bytes | None, bytes | None]] = [*events, *events[:25:5]]
    rows += [(k, v) for k, v, _ in scenario.malformed]
    produce(env.bootstrap, env.topic("sms.events"), rows)
    return scenario


def test_dashboards_and_alerts_against_a_real_prometheus(
    kenv: Env, start_prometheus: Callable[[list[int]], Prometheus]
) -> None:
    worker = kenv.start_worker()
    prom = start_prometheus([worker.metrics_port])

    # Prometheus must know the worker before any violation happens (first alerts page too)
    def scraped() -> bool:
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.log()[-4000:]}")
        return prom.value('up{job="smsmon"}') == 1

    try:
        wait_until(scraped, 90, "worker scraped")
    except AssertionError:
        print(worker.log()[-4000:])
        raise
    wait_ready(worker)

    loaded = prom.api("rules")["groups"]
    rules = [r for g in loaded for r in g["rules"] if r["type"] == "alerting"]
    assert rules, f"no alert rules loaded from {ALERT_RULES}:\n{prom.log()[-3000:]}"
    assert all(r["health"] != "err" for r in rules), [r for r in rules if r["health"] == "err"]

    scenario = feed_scenario(kenv, worker)
    counts = Counter(rule for _, rule in scenario.expected)
    n_valid, n_bad = len(scenario.events), len(scenario.malformed)

    # the whole scenario processed by the worker and scraped by Prometheus
    wait_until(
        lambda: prom.value("sum(smsmon_events_total)") >= n_valid,
        180,
        f"Prometheus sees {n_valid} events",
    )
    wait_until(
        lambda: prom.value("sum(smsmon_invalid_events_total)") >= n_bad,
        60,
        f"Prometheus sees {n_bad} dead letters",
    )
    wait_until(
        lambda: prom.value("sum(smsmon_detection_latency_seconds_count)") >= len(scenario.expected),
        90,
        "Prometheus sees every alert's detection latency",
    )
    by_rule = {
        s["metric"]["rule"]: float(s["value"][1])
        for s in prom.query("sum by (rule) (smsmon_alerts_total)")
    }
    assert {r: by_rule.get(r) for r in counts} == {r: float(n) for r, n in counts.items()}

    # (b) the alerts the scenario must trigger fire ----------------------------------------
    threshold = {
        r["name"]: float(m.group(1)) if (m := re.search(r">\s*([\d.]+)\s*$", r["query"])) else 0.0
        for r in rules
    }
    must_fire: set[tuple[str, str]] = set()
    for rule, n in counts.items():
        severity = RULES_BY_ID[rule].severity.value
        if rule == "consent.revoked":
            name = "SmsmonConsentRevoked"
        elif rule == "port.account":
            name = "SmsmonPortAccountMisuse"
        else:
            name = {
                "critical": "SmsmonCriticalViolation",
                "major": "SmsmonMajorViolations",
                "minor": "SmsmonMinorViolations",
            }[severity]
        assert n > threshold[name], f"scenario too small to trigger {name} for {rule}"
        must_fire.add((name, rule))
    assert ("SmsmonConsentRevoked", "consent.revoked") in must_fire
    assert ("SmsmonPortAccountMisuse", "port.account") in must_fire
    try:
        wait_until(
            lambda: must_fire <= prom.alerts("firing"), 60, f"alerts firing: {sorted(must_fire)}"
        )
    except AssertionError:
        print(
            "firing:", sorted(prom.alerts("firing")), "\npending:", sorted(prom.alerts("pending"))
        )
        raise

    # (a) every panel and every alert query evaluates, with data where guaranteed -----------
    # rate()/increase() need two samples of each series: wait for 5 more scrapes
    scrapes = 'count_over_time(up{job="smsmon"}[1h])'
    seen = prom.value(scrapes)
    wait_until(lambda: prom.value(scrapes) >= seen + 5, 30, "5 more scrapes")
    failures = []
    for where, expr in [*panel_queries(), *((f"alert {r['name']}", r["query"]) for r in rules)]:
        try:
            result = prom.query(expr)
        except AssertionError as exc:
            failures.append(f"{where}: query failed: {exc}\n  {expr}")
            continue
        if where.startswith("alert "):
            guaranteed = any(where == f"alert {name}" for name, _ in must_fire)
        else:
            guaranteed = metric_names(expr) <= GUARANTEED and not any(
                r in expr.replace("\\", "") for r in AGGREGATE_RULES
            )
        if guaranteed and not result:
            failures.append(f"{where}: no data although the scenario guarantees some\n  {expr}")
        if (
            not where.startswith("alert ")
            and metric_names(expr) == {"smsmon_alerts_total"}
            and re.search(r"by \(rule\b", expr)
            and "rule=" not in expr
        ):
            missing = set(counts) - {s["metric"].get("rule") for s in result}
            if missing:
                failures.append(f"{where}: rules missing from the panel: {sorted(missing)}")
    assert not failures, "\n".join(failures)

    # the pipeline is healthy: its alerts stay quiet ------------------------------------------
    firing, pending = prom.alerts("firing"), prom.alerts("pending")
    assert not {(n, r) for n, r in firing if n in HEALTH_NOT_FIRING}, firing
    assert not {(n, r) for n, r in pending if n in HEALTH_NEVER_PENDING}, pending
    assert worker.proc.poll() is None
