"""`smsmon simulate`: the command line of the simulator, to files or to Kafka."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from smsmon.tools.simulator.config import SCENARIOS, SimConfig
from smsmon.tools.simulator.run import SimRun
from smsmon.tools.simulator.simulation import Simulation, generate
from smsmon.tools.simulator.sinks import (
    KafkaSink,
    PumpResult,
    kafka_span,
    pump,
    write_expected,
    write_files,
    write_truth,
)

if TYPE_CHECKING:
    from smsmon.config.settings import Settings

log = logging.getLogger("smsmon.simulate")


def _scenarios(values: list[str] | None) -> frozenset[str]:
    names = {n.strip() for v in values or ["normal"] for n in v.split(",") if n.strip()}
    return frozenset(names)


def _parse_start(text: str, tz: ZoneInfo) -> dt.datetime:
    ts = dt.datetime.fromisoformat(text)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=tz)


def _summary(sim: Simulation, run: SimRun, sent: int | None = None) -> str:
    c = run.counts
    mt = c["marketing"] + c["notification"] + c["verification"]
    parts = [
        f"{sent if sent is not None else mt + c['mo'] + c['dlr'] + c['complaints']:,} records",
        f"mt {mt:,} (marketing {c['marketing']:,}, notification {c['notification']:,}, "
        f"verification {c['verification']:,})",
        f"mo {c['mo']:,} (unsubscribe {c['unsubscribes']:,})",
        f"dlr {c['dlr']:,}",
        f"complaints {c['complaints']:,}",
        f"violations {c['violations']:,}",
        f"truth rows {len(sim.truth)}",
    ]
    return "; ".join(parts)


def _kafka_span(
    settings: Settings,
    args: argparse.Namespace,
    scenarios: frozenset[str],
    start: dt.datetime | None,
    duration: float | None,
) -> tuple[dt.datetime, float]:
    """(start, duration) of a Kafka run; ValueError if its last events would lie further
    in the future than the worker accepts."""
    now = dt.datetime.now(dt.UTC)
    skew = float(settings.max_future_skew_seconds)
    if duration is None and args.speed and args.seconds:
        duration = min(args.speed * args.seconds, skew - 3600.0)
    if start is None:
        start, duration = kafka_span(now, settings.tz, scenarios, duration, max_future_skew=skew)
    elif duration is None:
        duration = 86_400.0
    if start + dt.timedelta(seconds=duration) > now + dt.timedelta(seconds=skew):
        raise ValueError(
            f"the span {start.isoformat()} + {duration:.0f}s ends more "
            f"than SMSMON_MAX_FUTURE_SKEW_SECONDS={skew:.0f}s after now, so the worker "
            "would dead-letter its last events; start earlier or shorten --duration"
        )
    return start, duration


def _msisdn_secret(settings: Settings) -> bytes | None:
    if settings.msisdn_secret is not None and settings.msisdn_secret.get_secret_value():
        return settings.msisdn_secret.get_secret_value().encode()
    log.warning("SMSMON_MSISDN_SECRET is not set: truth rows carry no msisdn_hash")
    return None


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Simulate gateway traffic with scenarios and ground truth, to Kafka or to files."""
    try:
        scenarios = _scenarios(args.scenario)
        start = _parse_start(args.start, settings.tz) if args.start else None
        duration = args.duration
        if args.out is None:
            start, duration = _kafka_span(settings, args, scenarios, start, duration)
        cfg = SimConfig(
            seed=args.seed,
            start=start,
            duration=duration if duration is not None else 86_400.0,
            base_rate=args.base_rate,
            scenarios=scenarios,
            violation_rate=args.violation_rate,
            enterprises=args.enterprises,
            subscribers=args.subscribers,
            consent_fraction=args.consent_fraction,
            timezone=settings.timezone,
            incidents=args.incidents,
            msisdn_secret=_msisdn_secret(settings),
            msisdn_key_id=settings.msisdn_key_id,
            recent_capacity=settings.recent_ports_per_msisdn,
        )
        sim = generate(cfg)
    except ValueError as exc:
        print(f"smsmon simulate: {exc}", file=sys.stderr)
        return 2
    log.info(
        "simulating %s to %s (%.0fs), scenarios %s, seed %d",
        sim.start.isoformat(),
        sim.end.isoformat(),
        cfg.duration,
        ",".join(sorted(scenarios)),
        cfg.seed,
    )
    if args.out is not None:
        run = write_files(sim, Path(args.out))
        if args.truth:
            write_truth(Path(args.truth), sim.truth)
        print(f"wrote {args.out}: {_summary(sim, run)}")
        return 0
    return _simulate_to_kafka(settings, sim, args)


def _simulate_to_kafka(settings: Settings, sim: Simulation, args: argparse.Namespace) -> int:
    try:
        if not args.no_topics:
            _ensure_topics(settings)
        sink = KafkaSink(settings)
    except Exception as exc:  # kafka-python raises many types; say which broker failed
        print(
            f"smsmon simulate: cannot use Kafka at {settings.kafka_bootstrap}: {exc!r} "
            "(set SMSMON_KAFKA_BOOTSTRAP, or write files with --out)",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("signal %d: flushing and stopping", signum)
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    run = sim.run()
    result = PumpResult(0, None, False)
    try:
        if args.phase in ("all", "reference"):
            n_ref = sink.reference(sim.reference)
            log.info("published %d reference records", n_ref)
        if args.phase == "reference":
            result = PumpResult(0, None, True)
            return 0
        result = pump(
            run,
            sink,
            speed=args.speed or 0.0,
            rate=args.rate or 0.0,
            seconds=args.seconds,
            stop=stop,
        )
    finally:
        sink.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        # Only what was sent: incidents begun by the last record, their ends clipped to it.
        offset = None if result.finished else result.last_offset
        offset = -1.0 if offset is None and not result.finished else offset
        if args.truth:
            write_truth(Path(args.truth), sim.truth_until(offset))
        if args.expected:
            write_expected(Path(args.expected), run.expected)
    print(f"sent {_summary(sim, run, result.sent)}")
    return 0


def _ensure_topics(settings: Settings) -> None:
    """Create smsmon's topics if missing (and the complaints topic, keyed by msisdn)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from smsmon.admin import ensure_topics, kafka_client_config, topic_specs

    ensure_topics(settings)
    if settings.topic_complaints in {s.name for s in topic_specs(settings)}:
        return
    admin = KafkaAdminClient(
        client_id=f"{settings.app_id}-simulate", **kafka_client_config(settings)
    )
    try:
        if settings.topic_complaints not in set(admin.list_topics()):
            topic = NewTopic(
                name=settings.topic_complaints,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
            )
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic], raise_errors=False)
    finally:
        admin.close()


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `smsmon simulate` to the command line."""
    p = sub.add_parser(
        "simulate",
        help=cmd_simulate.__doc__,
        description="Simulate SMS gateway traffic (reference data, events, complaints) with "
        "scenarios and a ground-truth file. Writes to Kafka (default) or, with --out, to files. "
        "See docs/simulator.md.",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help=f"one of {', '.join(SCENARIOS)}; repeat or comma-separate to combine "
        "(default: normal)",
    )
    p.add_argument(
        "--start",
        help="simulated start, ISO-8601 (naive = SMSMON_TIMEZONE); default: Kafka runs start a "
        "few minutes before now (double11: at the latest 18:30), files today 00:00",
    )
    p.add_argument(
        "--duration",
        type=float,
        help="simulated seconds (default: files 86400; Kafka 82800, or speed x seconds)",
    )
    p.add_argument("--base-rate", type=float, default=20.0, help="mean events per simulated second")
    p.add_argument("--violation-rate", type=float, default=0.01)
    p.add_argument("--incidents", type=int, default=1, help="incidents per anomaly scenario")
    p.add_argument("--enterprises", type=int, default=30)
    p.add_argument("--subscribers", type=int, default=50_000)
    p.add_argument("--consent-fraction", type=float, default=0.6)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="simulated seconds per wall second")
    pace.add_argument(
        "--rate", type=float, help="records per wall second (0 = as fast as possible, default)"
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        help="stop after this many wall seconds (0 = no limit)",
    )
    p.add_argument("--out", help="write files to this directory instead of Kafka")
    p.add_argument("--truth", help="write the ground truth (JSON lines) to this file")
    p.add_argument("--expected", help="write the expected per-message (event_id, rule) pairs")
    p.add_argument(
        "--no-topics", action="store_true", help="don't create missing topics before producing"
    )
    p.add_argument(
        "--phase",
        choices=("all", "reference", "traffic"),
        default="all",
        help="Kafka runs: publish reference data and traffic (all), only the reference data, "
        "or only the traffic (load reference first and let the worker read it, as in a first "
        "deployment)",
    )
    p.set_defaults(func=cmd_simulate)
