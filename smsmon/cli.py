"""The `smsmon` command line: worker, topics, reference loading, sample traffic, schemas."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from smsmon.config.settings import Settings


def _producer(settings: Settings) -> Any:
    from kafka import KafkaProducer

    from smsmon.admin import kafka_client_config

    return KafkaProducer(linger_ms=20, acks="all", **kafka_client_config(settings))


def cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    """Run one Faust worker (more workers with the same app id share the partitions)."""
    from smsmon.agents.worker import run_worker

    return run_worker(settings)


def cmd_topics(settings: Settings, _: argparse.Namespace) -> int:
    """Create the topics smsmon needs and check the partition layout."""
    from smsmon.admin import ensure_topics

    ensure_topics(settings)
    print("topics ok")
    return 0


def produce_reference(settings: Settings, scenario: Any) -> None:
    """Publish a scenario's ports, signatures and consent to the reference topics."""
    producer = _producer(settings)
    ref = scenario.reference
    for topic, rows in (
        (settings.topic_ports, ref.ports),
        (settings.topic_signatures, ref.signatures),
        (settings.topic_consent, ref.consent),
    ):
        for key, value in rows:
            payload = None if value is None else json.dumps(value, ensure_ascii=False).encode()
            producer.send(topic, key=key.encode(), value=payload)
    producer.flush()
    producer.close()


def cmd_sample(settings: Settings, args: argparse.Namespace) -> int:
    """Produce the deterministic sample scenario (reference data, then events)."""
    from smsmon.tools.scenario import Builder

    scenario = Builder(args.seed).build(args.stories, spacing_seconds=args.spacing)
    if args.truth:
        Path(args.truth).write_text(
            "\n".join(json.dumps({"event_id": e, "rule": r}) for e, r in sorted(scenario.expected))
            + "\n"
        )
    if args.jsonl:
        from smsmon.tools.scenario import events_jsonl

        Path(args.jsonl).write_text("\n".join(events_jsonl(scenario)) + "\n")
        print(f"wrote {len(scenario.events)} events to {args.jsonl}")
        return 0
    produce_reference(settings, scenario)
    producer = _producer(settings)
    delay = 1.0 / args.rate if args.rate else 0.0
    for key, ev in scenario.events:
        producer.send(
            settings.topic_events,
            key=key.encode(),
            value=json.dumps(ev, ensure_ascii=False).encode(),
        )
        if delay:
            time.sleep(delay)
    producer.flush()
    producer.close()
    print(
        f"produced {len(scenario.events)} events; expecting {len(scenario.expected)} alerts: "
        + ", ".join(f"{r}={n}" for r, n in sorted(Counter(r for _, r in scenario.expected).items()))
    )
    return 0


def cmd_schemas(_: Settings, args: argparse.Namespace) -> int:
    """Write the JSON Schema of every wire model to a directory."""
    from smsmon.contract.models import json_schemas

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (out / name).write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(json_schemas())} schemas to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsmon",
        description="Streaming compliance monitor for SMS traffic. Settings come from "
        "SMSMON_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help=cmd_worker.__doc__).set_defaults(func=cmd_worker)
    sub.add_parser("topics", help=cmd_topics.__doc__).set_defaults(func=cmd_topics)
    p = sub.add_parser("sample", help=cmd_sample.__doc__)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stories", type=int, default=2000)
    p.add_argument("--spacing", type=float, default=1.0, help="event-time seconds per story")
    p.add_argument("--rate", type=float, default=0.0, help="events/s (0 = as fast as possible)")
    p.add_argument("--truth", help="write the expected (event_id, rule) set here as JSONL")
    p.add_argument("--jsonl", help="write the events to this file instead of Kafka")
    p.set_defaults(func=cmd_sample)
    from smsmon.console.cli import register_cli as register_console
    from smsmon.store.cli import register_cli as register_store

    register_store(sub)
    register_console(sub)
    from smsmon.tools.simulator import register_cli

    register_cli(sub)
    from smsmon.tools.archive import register_cli as register_archive
    from smsmon.tools.audit import register_cli as register_audit
    from smsmon.tools.report import register_cli as register_report

    register_audit(sub)
    register_archive(sub)
    register_report(sub)
    p = sub.add_parser("schemas", help=cmd_schemas.__doc__)
    p.add_argument("--out", default="docs/schemas")
    p.set_defaults(func=cmd_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError: name the bad variable
        print(f"smsmon: invalid configuration: {exc}", file=sys.stderr)
        return 2
    result: int = args.func(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
