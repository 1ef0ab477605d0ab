"""A throwaway PostgreSQL server for the tests and the storage benchmark.

initdb -D DIR/data -U hp --auth=md5 --pwfile=DIR/pwfile; pg_ctl start on a free port with
its socket in DIR, listening on 127.0.0.1 only; pg_ctl stop -m fast at the end. Postgres
refuses to run as root, so as root both run as the ``postgres`` user (runuser).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why and what to install."""


class PostgresServer:
    """A running throwaway PostgreSQL server: user ``hp`` with a password (md5 auth), on
    127.0.0.1:``port``. ``new_database()`` makes an empty database and returns its URL."""

    def __init__(self, port: int, password: str, pg_ctl):
        self.port, self.password = port, password
        self._pg_ctl = pg_ctl  # runs pg_ctl with the given action: "stop" or "start"
        self._count = 0

    def stop(self) -> None:
        """Stop the server at once (pg_ctl -m fast: open connections are cut)."""
        self._pg_ctl("stop")

    def start(self) -> None:
        self._pg_ctl("start")

    def url(self, database: str, password: str | None = None, port: int | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql+psycopg://hp:{pw}@127.0.0.1:{port or self.port}/{database}"

    def connect(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="hp", password=self.password, dbname=dbname, autocommit=True
        )

    def new_database(self, prefix: str = "t") -> str:
        self._count += 1
        name = f"{prefix}_{self._count}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def connections(self) -> int:
        """Client connections open on the server now (this query's own not counted)."""
        with self.connect() as conn:
            return conn.execute(
                "SELECT count(*) - 1 FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).fetchone()[0]


def _postgres_bin() -> Path | None:
    """Debian keeps initdb and pg_ctl off PATH, under /usr/lib/postgresql/<version>/bin/."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.parent.name.split(".")],
    )
    for pg_ctl in reversed(found):
        if (Path(pg_ctl).parent / "initdb").is_file():
            return Path(pg_ctl).parent
    if shutil.which("pg_ctl") and shutil.which("initdb"):
        return Path(shutil.which("pg_ctl")).parent
    return None


@contextlib.contextmanager
def throwaway_postgres(max_connections: int = 100) -> Iterator[PostgresServer]:
    """Start a server in a temp dir; stop it and remove the dir on exit. Raises Unavailable."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("psycopg (the PostgreSQL driver of postgresql+psycopg:// URLs) is not installed") from None
    bindir = _postgres_bin()
    if bindir is None:
        raise Unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
            "or on PATH: install them with 'apt-get install postgresql' (.ci/run does)"
        )
    as_user: list[str] = []
    owner = None
    if os.getuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable(
                "running as root and there is no 'postgres' user to run the PostgreSQL server as"
            ) from None
        as_user = ["runuser", "-u", "postgres", "--"]

    root = Path(tempfile.mkdtemp(prefix="hpsearch-pg-"))  # short: the socket path must fit 107 bytes
    password = "pw-" + secrets.token_hex(8)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if owner is not None:
        for path in (root, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, log = root / "data", root / "server.log"

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*as_user, *args],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )

    def fail(step: str, proc: subprocess.CompletedProcess):
        server_log = log.read_text(errors="replace") if log.exists() else ""
        raise RuntimeError(f"PostgreSQL {step} failed ({proc.returncode}): {proc.stdout}\n{server_log}")

    def pg_ctl(action: str) -> None:
        # pg_ctl -l sends the server's output to the log, so no pipe stays open behind it.
        options = [
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections={max_connections}",
            "-l",
            str(log),
        ]
        proc = pg(
            str(bindir / "pg_ctl"), "-D", str(data), *(options if action == "start" else ["-m", "fast"]), "-w", action
        )
        if proc.returncode != 0:
            fail(f"pg_ctl {action}", proc)

    try:
        proc = pg(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "hp",
            "--auth=md5",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-sync",
        )
        if proc.returncode != 0:
            fail("initdb", proc)
        pg_ctl("start")
        try:
            yield PostgresServer(port, password, pg_ctl)
        finally:
            pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
