"""The PostgreSQL server the storage benchmarks are given by URL (``--storage
postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB``): a fresh database for each run, made and
dropped through that URL (its user needs CREATEDB), and the server's client connections. Use a
server of the benchmark's own: the count is of every client connection on the server.
"""

from __future__ import annotations

import os

import sqlalchemy


class Server:
    """The server of ``url``; as a context manager, drops the databases it made on exit."""

    def __init__(self, url: str):
        self.url = sqlalchemy.make_url(url)
        self.engine = sqlalchemy.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool)
        self.made: list[str] = []

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        for name in self.made:
            self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.engine.dispose()

    def _run(self, sql: str):
        with self.engine.connect() as conn:
            result = conn.execute(sqlalchemy.text(sql))
            return result.scalar() if result.returns_rows else None

    def new_database(self, prefix: str) -> str:
        """An empty database, as a URL with the same user and password."""
        name = f"{prefix}_{os.getpid()}_{len(self.made) + 1}"
        self._run(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def connections(self) -> int:
        """Client connections open on the server now (this query's own not counted)."""
        return self._run("SELECT count(*) - 1 FROM pg_stat_activity WHERE backend_type = 'client backend'")

    def max_connections(self) -> int:
        return int(self._run("SHOW max_connections"))
