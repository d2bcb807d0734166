"""A real PostgreSQL for the alert store tests: Debian's `postgresql` package, started once per
session with initdb + pg_ctl on a free loopback port in a temporary directory.

PostgreSQL refuses to run as root, and CI runs as root: the directory then belongs to the
`postgres` system user the package creates, and initdb/pg_ctl run through `runuser`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import free_port


@dataclass(frozen=True)
class Postgres:
    """A running server: connect as superuser `postgres` over TCP on 127.0.0.1:`port`."""

    port: int
    directory: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


def _bin_dir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not found:
        pytest.fail(
            "PostgreSQL is not installed: the alert store's integration tests need Debian's "
            "`postgresql` package (apt-get install -y postgresql)"
        )
    return Path(found[-1]).parent


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Start PostgreSQL for the session (trust auth on loopback only) and stop it after."""
    bindir = _bin_dir()
    # Not under pytest's tmp dir: that one is private to root and the server user must
    # reach its data directory.
    directory = Path(tempfile.mkdtemp(prefix="smsmon-pg-"))
    data, sock, log = directory / "data", directory / "sock", directory / "server.log"
    sock.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (directory, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
    port = free_port()
    init = subprocess.run(
        _as_server_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=50"
    pg_ctl = str(bindir / "pg_ctl")
    start = subprocess.run(
        _as_server_user([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if start.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start:\n{start.stdout}\n{start.stderr}\n{text}")
    try:
        yield Postgres(port, directory)
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


def create_database(server: Postgres) -> str:
    """A fresh database on `server`; returns its SQLAlchemy URL."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on an embedded SQLite file and on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'alerts.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    return create_database(server)
