"""`smsmon store`, `smsmon store migrate`, `smsmon store prune`: registered by smsmon.cli."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from smsmon.config.settings import Settings
from smsmon.store.settings import StoreSettings

log = logging.getLogger("smsmon.store")


def _store_settings() -> StoreSettings:
    return StoreSettings()


def _unreachable(settings: StoreSettings, exc: Exception) -> int:
    from smsmon.store.db import normalise_url

    where = normalise_url(settings.alert_db_url).render_as_string(hide_password=True)
    cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
    print(
        f"smsmon store: cannot use the alert database {where}: {cause}. Check "
        "SMSMON_ALERT_DB_URL and that the database server is up.",
        file=sys.stderr,
    )
    return 1


def cmd_store(_settings: Settings, args: argparse.Namespace) -> int:
    """Consume sms.alerts, sms.ref.consent and the registries into the alert database."""
    from smsmon.store.service import StoreService

    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    settings = _store_settings()
    if args.metrics_port is not None:
        settings = settings.model_copy(update={"store_metrics_port": args.metrics_port})
    from sqlalchemy.exc import OperationalError

    service = StoreService(settings, until_idle=args.until_idle)
    try:
        code = service.run()
    except OperationalError as exc:
        return _unreachable(settings, exc)
    log.info("stopped after %d batches", service.batches)
    return code


def cmd_migrate(_settings: Settings, _args: argparse.Namespace) -> int:
    """Create or upgrade the alert database schema (Alembic upgrade head)."""
    from smsmon.store.db import current_revision, make_engine, migrate

    settings = _store_settings()
    from sqlalchemy.exc import OperationalError

    engine = make_engine(settings.alert_db_url)
    try:
        before = current_revision(engine)
        migrate(engine)
        after = current_revision(engine)
    except OperationalError as exc:
        return _unreachable(settings, exc)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    print(f"alert store {where}: schema {before or 'empty'} -> {after}")
    return 0


def cmd_prune(_settings: Settings, args: argparse.Namespace) -> int:
    """Delete alerts, their case events, consent events and rejects older than N days."""
    from smsmon.store.db import make_engine, migrate, prune

    if args.older_than <= 0:
        print("smsmon store prune: --older-than must be a positive number of days", file=sys.stderr)
        return 2
    settings = _store_settings()
    engine = make_engine(settings.alert_db_url)
    try:
        migrate(engine)
        counts = prune(engine, dt.timedelta(days=args.older_than), keep_open=args.keep_open)
    finally:
        engine.dispose()
    print("pruned " + ", ".join(f"{n} {table}" for table, n in counts.items()))
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `smsmon store` and its subcommands."""
    p = sub.add_parser(
        "store",
        help=cmd_store.__doc__,
        description="Without a subcommand: run the alert store service (consumer group "
        "<app_id>-store; database SMSMON_ALERT_DB_URL, default sqlite:///./data/alerts.db). "
        "Migrates the schema at start. Runs until SIGTERM/SIGINT. See docs/store.md.",
    )
    p.add_argument(
        "--until-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after no new records for this long (tests, one-off catch-up runs)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics on this port (default SMSMON_STORE_METRICS_PORT, 0: off)",
    )
    p.set_defaults(func=cmd_store)
    commands = p.add_subparsers(dest="store_command", metavar="{migrate,prune}")
    m = commands.add_parser("migrate", help=cmd_migrate.__doc__)
    m.set_defaults(func=cmd_migrate)
    r = commands.add_parser("prune", help=cmd_prune.__doc__)
    r.add_argument(
        "--older-than",
        type=float,
        required=True,
        metavar="DAYS",
        help="delete what is older than this many days (by alert ts)",
    )
    r.add_argument(
        "--keep-open",
        action="store_true",
        help="keep alerts whose case is still open or acknowledged",
    )
    r.set_defaults(func=cmd_prune)


def main(argv: list[str] | None = None) -> int:
    """`python -m smsmon.store [migrate|prune ...]`: the same as `smsmon store ...`."""
    parser = argparse.ArgumentParser(prog="python -m smsmon.store")
    sub = parser.add_subparsers(dest="command")
    register_cli(sub)
    args = parser.parse_args(["store", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = _store_settings()
    except Exception as exc:  # pydantic ValidationError: name the bad variable
        print(f"smsmon store: invalid configuration: {exc}", file=sys.stderr)
        return 2
    result: int = args.func(settings, args)
    return result
