"""`smsmon console serve` and `smsmon console add-user`."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from sqlalchemy import Engine, inspect

from smsmon.console.settings import ConsoleSettings


def _engine(settings: ConsoleSettings) -> Engine:
    from smsmon.store.db import make_engine

    engine = make_engine(settings.alert_db_url)
    missing = {"alerts", "users", "case_events"} - set(inspect(engine).get_table_names())
    if missing:
        raise SystemExit(
            f"the alert database has no {', '.join(sorted(missing))} table: create the schema "
            "with the store's migrations first (`smsmon store migrate`), with the same "
            "SMSMON_ALERT_DB_URL."
        )
    return engine


def cmd_serve(_worker_settings: object, args: argparse.Namespace) -> int:
    """Serve the compliance console (binds 127.0.0.1 unless told otherwise)."""
    import uvicorn

    from smsmon.console.app import create_app

    settings = ConsoleSettings()
    settings.session_secret()
    host = args.host or settings.console_host
    port = args.port or settings.console_port
    app = create_app(settings, _engine(settings))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(app, host=host, port=port, proxy_headers=False, server_header=False,
                log_level="info")  # fmt: skip
    return 0


def cmd_add_user(_worker_settings: object, args: argparse.Namespace) -> int:
    """Create a console user or reset one's password and role (password from prompt/stdin)."""
    from smsmon.console.auth import add_user

    settings = ConsoleSettings()
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        add_user(_engine(settings), args.name, password, args.role)
    except ValueError as exc:
        print(f"add-user: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.name} ({args.role}) saved")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `smsmon console serve|add-user`."""
    p = sub.add_parser("console", help="the compliance web console (docs/console.md)")
    csub = p.add_subparsers(dest="console_command", required=True)
    serve = csub.add_parser("serve", help=cmd_serve.__doc__)
    serve.add_argument("--host", help="bind address (default SMSMON_CONSOLE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default SMSMON_CONSOLE_PORT, 8088)")
    serve.set_defaults(func=cmd_serve)
    add = csub.add_parser(
        "add-user",
        help=cmd_add_user.__doc__,
        description="The password is read from the terminal (twice) or, when stdin is not a "
        "terminal, from its first line; never from the command line.",
    )
    add.add_argument("name")
    add.add_argument("--role", choices=("viewer", "handler"), required=True)
    add.set_defaults(func=cmd_add_user)


def main(argv: list[str] | None = None) -> int:
    """`python -m smsmon.console ...` (the same subcommands without the `console` word)."""
    parser = argparse.ArgumentParser(prog="python -m smsmon.console")
    sub = parser.add_subparsers(dest="top", required=True)
    register_cli(sub)
    args = parser.parse_args(["console", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.func(None, args)
    return result
