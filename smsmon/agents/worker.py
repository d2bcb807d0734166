"""Run one worker process: topics, the Faust app, the agents, the metrics endpoint."""

from __future__ import annotations

import gc
import logging
import sys

from faust.worker import Worker
from prometheus_client import CollectorRegistry, start_http_server

from smsmon.admin import ensure_topics, set_sasl_probe
from smsmon.agents.pipeline import Pipeline
from smsmon.config.settings import Settings
from smsmon.streams.app import build_app
from smsmon.streams.faust_compat import UnsupportedFaust, require_supported_faust
from smsmon.streams.metrics import Metrics
from smsmon.streams.sasl import sasl_rejected

log = logging.getLogger(__name__)


def tune_gc(threshold0: int) -> None:
    """Collect the young generation every `threshold0` allocations instead of 700.

    A batch's short-lived objects (decoded events, verdicts, output records) then die before
    the first collection instead of being promoted; promoted ones set off full collections
    that found nothing to collect (docs/performance.md). The older
    generations keep Python's thresholds, so cyclic garbage is still collected."""
    _, threshold1, threshold2 = gc.get_threshold()
    gc.set_threshold(threshold0, threshold1, threshold2)


def run_worker(settings: Settings) -> int:
    """Run one Faust worker until it stops; the process's exit status."""
    try:
        require_supported_faust()
    except UnsupportedFaust as exc:
        print(f"smsmon worker: {exc}", file=sys.stderr)
        return 2
    settings.require_secret()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    set_sasl_probe(sasl_rejected)  # kafka-python may report wrong credentials as a lost link
    ensure_topics(settings)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    wiring = build_app(settings)
    Pipeline(settings, wiring, metrics).register()
    start_http_server(settings.metrics_port, addr=settings.metrics_addr, registry=registry)
    log.info("metrics at http://%s:%d/metrics", settings.metrics_addr, settings.metrics_port)
    tune_gc(settings.gc_threshold0)
    worker = Worker(wiring.app, loglevel=settings.log_level, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
