"""Storage URLs: the default, validation, password masking, and the Optuna storage itself."""

from __future__ import annotations

import gc
import os
import random
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote, quote_plus

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from hpsearch.errors import UsageError, first_line

DEFAULT_URL = "sqlite:///hpsearch.db"
HEARTBEAT_SECONDS = 60
GRACE_BEATS = 3  # a trial is stale after this many heartbeat intervals without one
MAX_RETRY = 3
# What a storage call raises when the database stops answering mid-run.
STORAGE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


def resolve_url(explicit: str | None = None) -> str:
    """``--storage``, else ``$HPSEARCH_STORAGE``, else an SQLite file in the working directory."""
    return explicit or os.environ.get("HPSEARCH_STORAGE") or DEFAULT_URL


def mask(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return _mask_unparsed(url)


def _mask_unparsed(text: str) -> str:
    """A URL SQLAlchemy cannot parse, with whatever could be a password (from the first ':'
    of the user part to the last '@') replaced by ***: a typo must not print the password."""
    at = text.rfind("@")
    if at < 0:
        return text
    start = text.find("//")
    start = start + 2 if 0 <= start < at else 0
    colon = text.find(":", start, at)
    return text if colon < 0 else f"{text[: colon + 1]}***{text[at:]}"


def grace_seconds(heartbeat: int) -> int:
    """Seconds without a heartbeat after which a RUNNING trial counts as dead."""
    return GRACE_BEATS * heartbeat


def describe_error(exc: BaseException, url: str) -> str:
    """The first line of a database error, with the URL and any password masked."""
    reason = first_line(exc).replace(url, mask(url))
    try:
        password = make_url(url).password
    except (sqlalchemy.exc.ArgumentError, ValueError):
        password = None
    if password:
        for form in {password, quote(password, safe=""), quote_plus(password)}:
            reason = reason.replace(form, "***")
    return reason


# Connections a worker holds on a server database: one for the search, one for its
# heartbeat thread. 32 workers then need 64, within PostgreSQL's default max_connections
# of 100 (docs/reliability.md).
POOL_SIZE = 2
SQLITE_LOCK_TIMEOUT = 60  # seconds a writer waits for the file's lock before failing
SCHEMA_RACE_TRIES = 5


def open_storage(url: str, heartbeat: int = HEARTBEAT_SECONDS) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage for ``url`` with a heartbeat every ``heartbeat`` seconds, so a
    trial whose worker died is failed after ``grace_seconds(heartbeat)`` and re-queued (up to
    ``MAX_RETRY`` times) by the next worker that starts a trial or waits for one.

    On SQLite every transaction begins with ``BEGIN IMMEDIATE``: Optuna claims a WAITING
    trial by reading its state and then writing RUNNING, relying on ``SELECT ... FOR
    UPDATE``, which SQLite ignores, and Python's sqlite3 runs that read outside any
    transaction; two processes could both read WAITING and both train the trial. Taking
    the write lock at the start makes the read and the write one atomic step.

    Raises UsageError, with the password masked, when the URL is malformed or the database
    cannot be opened. An SQLite file is created only when its folder exists.
    """
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise UsageError(
            f"malformed storage URL {_mask_unparsed(url)!r}: use an SQLAlchemy URL such as sqlite:///hpsearch.db "
            "or postgresql+psycopg://user:password@host/dbname"
        ) from None
    sqlite = parsed.get_backend_name() == "sqlite"
    db_file = _sqlite_file(parsed)
    if sqlite:
        if db_file is not None:
            folder = db_file.resolve().parent
            if not folder.is_dir():
                raise UsageError(
                    f"cannot open storage {mask(url)}: folder {folder} does not exist; create it or choose another path"
                )
        # isolation_level=None: sqlite3 leaves BEGIN to SQLAlchemy, which the listener below
        # makes BEGIN IMMEDIATE (SQLAlchemy's documented recipe for SQLite transactions).
        engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT, "isolation_level": None}}
    else:
        engine_kwargs = {"pool_size": POOL_SIZE, "max_overflow": 0, "pool_pre_ping": True}
    try:
        storage = _rdb_storage(url, engine_kwargs, heartbeat)
        if sqlite:
            if db_file is not None:
                # Write-ahead logging lets readers (the dashboard, a second terminal) read
                # while a worker writes; the mode is stored in the file, so once is enough.
                # (Outside a transaction: before the listener below exists.)
                with storage.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            sqlalchemy.event.listen(storage.engine, "begin", _begin_immediate)
        return storage
    except sqlalchemy.exc.NoSuchModuleError:
        raise UsageError(_unknown_database(url, parsed.drivername)) from None
    except Exception as exc:
        if db_file is not None and "unable to open database file" in str(exc):
            raise UsageError(_unwritable(db_file)) from None
        raise UsageError(f"cannot open storage {mask(url)}: {describe_error(exc, url)}") from None


def check(url: str) -> None:
    """Raise UsageError (one line, in hpsearch's words) unless ``url`` names a storage that
    a run can write, without writing anything to an SQLite file: a malformed URL, a database
    kind SQLAlchemy does not know, an SQLite file or folder that cannot be written, a server
    that does not answer. What ``run`` does first, before it loads any data."""
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise UsageError(_unknown_database(url, parsed.drivername)) from None
    except (sqlalchemy.exc.ArgumentError, ValueError):
        open_storage(url)  # says what is malformed
    db_file = _sqlite_file(parsed)
    if parsed.get_backend_name() != "sqlite":
        open_storage(url).engine.dispose()  # connects: a server that does not answer is said now
    elif db_file is not None:
        folder = db_file.resolve().parent
        if not folder.is_dir():
            open_storage(url)  # says which folder is missing
        # Never open an existing database file here: closing any descriptor of it drops the
        # POSIX locks that this process's SQLite connections hold on it, which corrupts it.
        if db_file.exists():
            if not os.access(db_file, os.W_OK):
                raise UsageError(_unwritable(db_file))
            return
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError:
            raise UsageError(_unwritable(db_file)) from None


def storage_absent(url: str) -> bool:
    """Whether ``url`` is an SQLite file that does not exist (opening it would create it)."""
    try:
        db_file = _sqlite_file(make_url(url))
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return False
    return db_file is not None and not db_file.exists()


def _unknown_database(url: str, drivername: str) -> str:
    return (
        f"storage URL {mask(url)!r} names no database SQLAlchemy knows ({drivername!r}): use sqlite:///FILE or "
        "postgresql+psycopg://user:password@host/dbname"
    )


def _unwritable(db_file: Path) -> str:
    return (
        f"cannot write the SQLite file {db_file} (its folder {db_file.resolve().parent} is read-only, or the file "
        "is); choose a folder you can write: --storage sqlite:///PATH"
    )


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat: int) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage. Workers started together on an empty database all create its
    tables; the losers of that race fail on a table or a version row that just appeared,
    and on a second try find the schema in place."""
    for attempt in range(SCHEMA_RACE_TRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=grace_seconds(heartbeat),
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRY
                    ),
                )
        except sqlalchemy.exc.DBAPIError as exc:
            message = str(exc.orig).lower()
            if attempt + 1 == SCHEMA_RACE_TRIES or not any(
                w in message for w in ("already exists", "unique", "duplicate")
            ):
                raise
        # The failed attempt's engine is reachable only from the traceback just dropped:
        # collect it now, so that its pooled connection closes instead of idling on.
        gc.collect()
        time.sleep(random.uniform(0.1, 0.5))
    raise AssertionError("unreachable")


def _begin_immediate(connection: sqlalchemy.engine.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def artifacts_dir(url: str, explicit: str | None = None) -> Path:
    """Where trial weights are kept (an Optuna file-system artifact store): ``--artifacts``,
    else ``$HPSEARCH_ARTIFACTS``, else next to an SQLite file (``hpsearch.db`` ->
    ``hpsearch-artifacts/``), else ``./hpsearch-artifacts`` for server databases."""
    chosen = explicit or os.environ.get("HPSEARCH_ARTIFACTS")
    if chosen:
        return Path(chosen).expanduser()
    try:
        db_file = _sqlite_file(make_url(url))
    except (sqlalchemy.exc.ArgumentError, ValueError):
        db_file = None
    return Path("hpsearch-artifacts") if db_file is None else db_file.with_name(f"{db_file.stem}-artifacts")


def _sqlite_file(parsed: sqlalchemy.engine.URL) -> Path | None:
    """The database file of an SQLite URL; None for other databases and in-memory SQLite."""
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def artifact_store(path: str | os.PathLike) -> optuna.artifacts.FileSystemArtifactStore:
    """The Optuna file-system artifact store at ``path`` (created if missing)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(path))
