"""`smsmon audit` on the command line (registered by smsmon.cli; also `python -m
smsmon.tools.audit`)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from smsmon.config.settings import Settings
from smsmon.tools.audit.readers import AuditError
from smsmon.tools.audit.runner import Audit, AuditOptions
from smsmon.tools.report import register_cli as register_report


def parse_when(text: str, tz: ZoneInfo) -> dt.datetime:
    """`2026-10-01` or `2026-10-01T08:00[+08:00]`; naive times are in `tz`."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or time: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    """Look-back audit: replay archived records through the live rules, offline."""
    options = AuditOptions(
        events=args.events,
        ports=args.ports,
        signatures=args.signatures,
        consent=args.consent,
        complaints=args.complaints or [],
        out=Path(args.out),
        close_all=args.close_all,
        rules=args.rules,
        consent_order=args.consent_order,
        progress=False if args.no_progress else None,
        title=args.title,
        since=parse_when(args.since, settings.tz) if args.since else None,
        until=parse_when(args.until, settings.tz) if args.until else None,
    )
    try:
        result = Audit(settings, options).run()
    except AuditError as exc:
        print(f"smsmon audit: {exc}", file=sys.stderr)
        return 2
    t = result.totals
    rate = t["events"] / result.seconds if result.seconds > 0 else 0.0
    print(
        f"audited {t['events']:,} events ({t['duplicates']:,} repeated, "
        f"{t['malformed']:,} malformed lines skipped) in {result.seconds:.1f} s "
        f"({rate:,.0f} events/s): {t['alerts']:,} alerts"
    )
    for (rule, sev), n in sorted(result.alerts_by_rule.items()):
        print(f"  {rule:<28} {sev:<9} {n:>10,}")
    print(f"wrote {result.out}/alerts.jsonl, summary.csv, malformed.csv, report.html")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `smsmon audit`."""
    p = sub.add_parser(
        "audit",
        help=cmd_audit.__doc__,
        description="Replay gateway events (JSONL or CSV, plain or gzip, files or "
        "directories) with reference data through the live pipeline's rules in event-time "
        "order; write alerts.jsonl, summary.csv, malformed.csv and report.html. See "
        "docs/audit.md.",
    )
    p.add_argument("--events", nargs="+", required=True, metavar="PATH")
    p.add_argument("--ports", nargs="+", required=True, metavar="PATH")
    p.add_argument("--signatures", nargs="+", required=True, metavar="PATH")
    p.add_argument("--consent", nargs="+", required=True, metavar="PATH")
    p.add_argument("--complaints", nargs="+", default=[], metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--close-all",
        action="store_true",
        help="also judge the windows still open at the end of the input",
    )
    p.add_argument(
        "--rules",
        choices=("all", "per-message"),
        default="all",
        help="per-message: skip the aggregate (windowed) rules",
    )
    p.add_argument(
        "--consent-order",
        choices=("ts", "first"),
        default="ts",
        help="ts: apply consent records at their ts (history); first: all before any event "
        "(a current snapshot)",
    )
    p.add_argument(
        "--since",
        metavar="TIME",
        help="report from this event time on (ISO date or time, naive = SMSMON_TIMEZONE); "
        "earlier events only build state (give the 30 days before for unsubscribe attribution)",
    )
    p.add_argument("--until", metavar="TIME", help="stop before this event time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--title", default="smsmon look-back audit 回头看")
    p.set_defaults(func=cmd_audit)


def main(argv: list[str] | None = None) -> int:
    """`python -m smsmon.tools.audit ...` (same as `smsmon audit ...`)."""
    parser = argparse.ArgumentParser(prog="smsmon")
    sub = parser.add_subparsers(dest="command", required=True)
    register_cli(sub)
    register_report(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    result: int = args.func(Settings(), args)
    return result
