"""The operator-facing files: Prometheus rules and config, Alertmanager, Grafana, compose, docs.

Runs the real checkers (promtool, amtool, docker-compose) and checks that every alert and
dashboard expression uses only metrics the worker exports. A missing checker fails the test
(`make test` installs them: scripts/test-deps.sh).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry

from smsmon.streams.metrics import Metrics

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PROM_DIR = REPO / "smsmon" / "config" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
AM_CONFIG = REPO / "smsmon" / "config" / "alertmanager" / "alertmanager.yml"
GRAFANA = REPO / "smsmon" / "config" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
COMPOSE = REPO / "docker-compose.yml"
OPERATIONS = REPO / "docs" / "operations.md"

# apt package that provides each checker (also what CI installs).
TOOLS = {
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "docker-compose": "docker-compose",
}

PANEL_TYPES = {"timeseries", "stat", "table", "bargauge"}


def tool(name: str) -> str:
    """Path of a checker binary. A missing one fails the test: `make test` installs it
    (scripts/test-deps.sh), and a skipped check would claim coverage it did not give."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not installed: scripts/test-deps.sh install (Debian {TOOLS[name]})")
    return path


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def load_yaml(path: Path) -> Any:
    with path.open("rb") as f:
        return yaml.safe_load(f)


# --------------------------------------------------------------------------- expressions


@cache
def exported_metrics() -> frozenset[str]:
    """Sample names the worker can expose, from its own registry, plus Prometheus' `up`."""
    registry = CollectorRegistry()
    Metrics(registry)
    names = {"up"}
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return frozenset(names)


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (strings, matchers, ranges, label lists removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\b\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y)\b", " ", s)  # durations (offset 5m)
    s = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", " ", s)  # numbers
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end() :].lstrip().startswith("(") or m.group(0).lower() in _KEYWORDS:
            continue  # a function or aggregation, or an operator keyword
        names.add(m.group(0))
    return names


def test_metric_name_extraction() -> None:
    """The extractor sees through functions, matchers, label lists, offsets and numbers."""
    expr = (
        'sum by (rule) (x_total{rule="a.b", job=~"up|y"} and (count_over_time(x_total[5m]) '
        "< on (job, instance) group_left () sum_over_time(up[5m]) offset 1h)) > 1e3 or vector(0)"
    )
    assert metric_names(expr) == {"x_total", "up"}
    assert metric_names(
        "histogram_quantile(0.99, sum(rate(h_bucket[$__rate_interval])) by (le)) > bool 1"
    ) == {"h_bucket"}
    assert metric_names('topk(10, sum by (subject) (w{subject_type="port"}))') == {"w"}


def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(ALERTS)
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard_targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard file name, panel, target) for every query target of every panel."""
    for path in DASHBOARDS:
        dash = json.loads(path.read_text(encoding="utf-8"))
        for panel in dash["panels"]:
            for sub in [panel, *panel.get("panels", [])]:
                for target in sub.get("targets", []):
                    yield path.name, sub, target


def test_metrics_allow_list_is_derived_from_the_worker() -> None:
    names = exported_metrics()
    assert {"smsmon_events_total", "smsmon_alerts_total", "smsmon_consumer_lag"} <= names
    assert "smsmon_detection_latency_seconds_bucket" in names
    assert "smsmon_events" not in names


def test_alert_rules_use_only_exported_metrics() -> None:
    unknown = {
        r["alert"]: sorted(metric_names(r["expr"]) - exported_metrics()) for r in alert_rules()
    }
    assert not {k: v for k, v in unknown.items() if v}, "alerts on metrics the worker lacks"


def test_dashboard_panels_use_only_exported_metrics() -> None:
    allowed = exported_metrics()
    bad = [
        (name, panel["title"], sorted(metric_names(t["expr"]) - allowed))
        for name, panel, t in dashboard_targets()
        if metric_names(t["expr"]) - allowed
    ]
    assert not bad
    used = set().union(*(metric_names(t["expr"]) for _, _, t in dashboard_targets()))
    assert "smsmon_alerts_suppressed_total" in used, "suppressed alerts must have a panel"


# --------------------------------------------------------------------------- Prometheus


def test_promtool_check_rules() -> None:
    done = run(tool("promtool"), "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    done = run(tool("promtool"), "test", "rules", str(ALERTS_TEST))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_config() -> None:
    """The compose Prometheus config (rule path relative to it) is valid and finds the rules."""
    done = run(tool("promtool"), "check", "config", str(PROM_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    config = load_yaml(PROM_CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "smsmon"]
    assert job["dns_sd_configs"] == [
        {"names": ["worker"], "type": "A", "port": 9108, "refresh_interval": "15s"}
    ]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = load_yaml(ALERTS_TEST)
    assert tests["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for t in tests["tests"]:
        for case in t.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested not firing"
    assert (firing | silent) - names == set(), "tests for alerts that do not exist"


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    text = heading.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N"))
    return text.replace(" ", "-")


def doc_anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    anchors = {github_anchor(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}
    anchors |= set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', text))
    return anchors


def test_alerts_are_actionable_and_have_a_runbook_section() -> None:
    anchors = doc_anchors(OPERATIONS)
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["labels"]["team"], name
        notes = rule["annotations"]
        assert len(notes["summary"]) > 20, name
        assert len(notes["description"]) > 120, f"{name}: say what it means and what to check"
        doc, _, anchor = notes["runbook_url"].partition("#")
        assert doc == "docs/operations.md", name
        assert anchor in anchors, f"{name}: no section #{anchor} in docs/operations.md"


def test_required_alerts_exist() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    for name in ("SmsmonConsentRevoked", "SmsmonPortAccountMisuse"):
        assert rules[name]["for"] == "0m" and rules[name]["labels"]["severity"] == "page"
    assert "consent.revoked" in rules["SmsmonConsentRevoked"]["expr"]
    assert "port.account" in rules["SmsmonPortAccountMisuse"]["expr"]
    exprs = " ".join(r["expr"] for r in alert_rules())
    for rule in ("recipient.flood", "volume.spike", "port.sublet", "complaint.rate"):
        assert f'rule="{rule}"' in exprs, rule
    assert rules["SmsmonWorkerDown"]["for"] == "2m"
    assert 'up{job="smsmon"} == 0' in rules["SmsmonWorkerDown"]["expr"]
    assert "histogram_quantile(0.99" in rules["SmsmonDetectionLatencyHigh"]["expr"]
    assert "deriv(smsmon_consumer_lag[10m])" in rules["SmsmonConsumerLagGrowing"]["expr"]
    assert "smsmon_recovering" in rules["SmsmonRecovering"]["expr"]
    assert "smsmon_reference_ready" in rules["SmsmonReferenceNotReady"]["expr"]
    assert "smsmon_invalid_events_total" in rules["SmsmonDeadLetterRateHigh"]["expr"]


# --------------------------------------------------------------------------- Alertmanager


def test_alertmanager_config() -> None:
    done = run(tool("amtool"), "check-config", str(AM_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    config = load_yaml(AM_CONFIG)
    routes = {tuple(r["matchers"]): r["receiver"] for r in config["route"]["routes"]}
    assert routes == {('severity="page"',): "page", ('severity="ticket"',): "ticket"}
    assert {r["name"] for r in config["receivers"]} == {"page", "ticket"}


# --------------------------------------------------------------------------- Grafana


def test_grafana_provisioning() -> None:
    ds = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = ds["datasources"]
    assert (source["uid"], source["type"], source["url"]) == (
        "prometheus",
        "prometheus",
        "http://prometheus:9090",
    )
    prov = load_yaml(GRAFANA / "provisioning" / "dashboards" / "smsmon.yml")
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboards_are_valid_grafana_json() -> None:
    assert {p.name for p in DASHBOARDS} == {"smsmon-overview.json", "smsmon-pipeline.json"}
    uids = set()
    for path in DASHBOARDS:
        dash = json.loads(path.read_text(encoding="utf-8"))
        assert dash["uid"] not in uids
        uids.add(dash["uid"])
        assert 36 <= dash["schemaVersion"] <= 41 and dash["title"]
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        panels = [p for p in dash["panels"] if p["type"] != "row"]
        assert len(panels) >= 8
        for p in panels:
            where = f"{path.name}: {p.get('title')}"
            assert p["type"] in PANEL_TYPES, where
            assert p["title"] and p["targets"], where
            assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}, where
            assert {"h", "w", "x", "y"} <= p["gridPos"].keys(), where
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, where
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "prometheus", where
                assert t["expr"].strip() and t["refId"], where
                # rate windows follow the dashboard: $__rate_interval, or $__range for totals
                for window in re.findall(
                    r"\b(?:rate|increase|irate)\([^\[]*\[([^\]]+)\]", t["expr"]
                ):
                    assert window in ("$__rate_interval", "$__range"), f"{where}: [{window}]"
        for var in dash.get("templating", {}).get("list", []):
            assert var["datasource"]["uid"] == "prometheus"


def test_dashboards_cover_the_issue() -> None:
    """Overview: traffic, violations by rule, unsubscribes, complaints, suppressed; pipeline:
    throughput, lag per partition, dead letters, latency, rebalances, recovering, batches."""
    exprs: dict[str, str] = {}
    for name, _, t in dashboard_targets():
        exprs[name] = exprs.get(name, "") + "\n" + t["expr"]
    overview, pipeline = exprs["smsmon-overview.json"], exprs["smsmon-pipeline.json"]
    for needle in (
        "sum by (kind) (rate(smsmon_events_total",
        "sum by (category)",
        "sum by (rule)",
        "topk(10, sum by (rule)",
        "smsmon_unsubscribes_total",
        "smsmon_complaints_total",
        "smsmon_alerts_suppressed_total",
        "smsmon_window_messages",
    ):
        assert needle in overview, needle
    for needle in (
        "max by (topic, partition) (smsmon_consumer_lag",
        "sum by (reason, source) (rate(smsmon_invalid_events_total",
        "histogram_quantile(0.5, sum by (le) (rate(smsmon_detection_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(smsmon_detection_latency_seconds_bucket",
        "smsmon_rebalances_total",
        "smsmon_recovering",
        "smsmon_batch_events_bucket",
        "smsmon_reference_entries",
    ):
        assert needle in pipeline, needle


# --------------------------------------------------------------------------- docker-compose


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (syntax check; no Docker engine needed)."""
    binary = tool("docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "SMSMON_MSISDN_SECRET"}
    done = subprocess.run(
        [binary, "-f", str(COMPOSE), "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path_factory.mktemp("compose") / "resolved.yml"
    out.write_text(done.stdout, encoding="utf-8")
    resolved: dict[str, Any] = load_yaml(out)
    return resolved


def test_compose_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "kafka",
        "topics",
        "worker",
        "simulator",
        "prometheus",
        "alertmanager",
        "grafana",
        "postgres",
        "store",
        "console-user",
        "console",
    }
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    kafka_version = re.search(
        r"KAFKA_VERSION=(\S+)", (REPO / "scripts" / "kafka-local.sh").read_text()
    )
    assert kafka_version and kafka_version.group(1) == "4.1.1", "keep compose and script in step"
    assert services["topics"]["command"] == ["topics"]
    assert services["simulator"]["command"] == [
        "simulate",
        "--scenario",
        "double11",
        "--rate",
        "200",
    ]
    for name in ("prometheus", "alertmanager", "grafana"):
        assert services[name]["image"].split("/")[0] in ("prom", "grafana"), name


def test_compose_store_and_console(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["store"]["command"] == ["store"]
    assert services["console"]["command"] == ["console", "serve"]
    for name in ("store", "console", "console-user"):
        url = services[name]["environment"]["SMSMON_ALERT_DB_URL"]
        assert url.startswith("postgresql+psycopg://") and url.endswith("@postgres/smsmon"), name
    # the console is published on the host's loopback only
    (port,) = services["console"]["ports"]
    if isinstance(port, str):  # docker-compose v1 keeps the short form
        assert port.removesuffix("/tcp") == "127.0.0.1:8088:8088"
    else:
        assert port["host_ip"] == "127.0.0.1" and port["target"] == 8088
    assert "SMSMON_CONSOLE_SECRET" in services["console"]["environment"]


def test_compose_worker_is_scalable(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "build" in worker and worker["command"] == ["worker"]
    assert "container_name" not in worker and "ports" not in worker, "would break --scale"
    assert not any(
        isinstance(v, dict) and v.get("type") == "volume" for v in worker.get("volumes", [])
    ), "a named volume cannot be shared by scaled replicas"
    env = worker["environment"]
    assert env["SMSMON_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["SMSMON_MSISDN_SECRET"] == "change-me-demo-only"
    assert (env["SMSMON_METRICS_ADDR"], env["SMSMON_METRICS_PORT"]) == ("0.0.0.0", "9108")
    assert env["SMSMON_PARTITIONS"] == "8"


def test_compose_mounts_the_shipped_configs(compose: dict[str, Any]) -> None:
    def mounts(service: str) -> dict[str, str]:
        out = {}
        for v in compose["services"][service].get("volumes", []):
            source, target = (v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2]
            out[target] = source
        return out

    assert Path(mounts("prometheus")["/etc/prometheus"]) == PROM_DIR
    assert Path(mounts("alertmanager")["/etc/alertmanager"]) == AM_CONFIG.parent
    grafana = mounts("grafana")
    assert Path(grafana["/etc/grafana/provisioning"]) == GRAFANA / "provisioning"
    assert Path(grafana["/var/lib/grafana/dashboards"]) == GRAFANA / "dashboards"
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    ports = {
        s: [str(p.get("published")) if isinstance(p, dict) else p for p in svc.get("ports", [])]
        for s, svc in compose["services"].items()
    }
    assert "9090" in ports["prometheus"][0] and "9093" in ports["alertmanager"][0]
    assert "3000" in ports["grafana"][0]


def test_dockerfile() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^USER (?!root)\S+", text, re.M), "run as a non-root user"
    assert 'ENTRYPOINT ["smsmon"]' in text and 'CMD ["worker"]' in text
    assert re.search(r"^EXPOSE 9108$", text, re.M)
    assert "SMSMON_METRICS_ADDR=0.0.0.0" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)
