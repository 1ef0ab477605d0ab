"""Many workers on one study: does the storage side hold, and how fast does it go?

Runs the stand-in study ``tests/bookkeeping_study.py`` (no training, no torch: 20 epochs
reported at once) with W worker processes to N finished trials, half of them as
``hpsearch run --jobs J`` launchers and half as separate ``hpsearch run`` processes, all
on one storage. It checks that the study ends with exactly N finished trials, none
RUNNING, no duplicate trial numbers and no line on any worker's stderr; it samples the
server's connection count and its processes' CPU time (PostgreSQL) and polls ``hpsearch
dashboard`` over HTTP (``--dashboard``) the whole time; with ``--restart CMD`` it runs CMD,
a command that restarts the PostgreSQL server, when a third of the trials are done, lets
the workers end, runs the same commands again and checks that the rerun reaches N and that
no finished trial changed.

    python benchmarks/storage_load.py --storage "$PG" --workers 32 --trials 1000 --restart "pg_ctl -D $PGDATA restart"
    python benchmarks/storage_load.py --storage sqlite --workers 8 --trials 500 --dashboard
    python benchmarks/storage_load.py --storage sqlite --sweep 1,2,4,8,16 --trials 300 --sampler random

``--storage sqlite`` uses a file in a temporary folder for each run; a ``postgresql`` URL
names a server of the benchmark's own, on which each run makes (and at the end drops) a
database of its own (``benchmarks/postgres_url.py``); any other value is used as the URL.
Prints a summary per run; exit status 0 when every run held, 1 when one did not.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy
from postgres_url import Server  # beside this file

ROOT = Path(__file__).resolve().parent.parent
STUDY_FILE = ROOT / "tests" / "bookkeeping_study.py"  # run by hpsearch, never imported here


@dataclass
class LoadResult:
    workers: int
    trials: int
    seconds: float = 0.0
    finished: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0
    duplicate_numbers: int = 0
    reports: int = 0
    sustained_trials_per_s: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)
    max_connections: int | None = None
    polls_ok: int = 0
    polls_failed: int = 0
    slowest_poll_s: float = 0.0
    changed_after_restart: int | None = None
    server_cpu_s: float | None = None
    launchers: int = 0
    jobs: int = 1

    @property
    def trials_per_s(self) -> float:
        return self.finished / self.seconds if self.seconds else 0.0

    @property
    def reports_per_s(self) -> float:
        return self.reports / self.seconds if self.seconds else 0.0

    def holds(self) -> bool:
        return (
            self.finished == self.trials
            and self.running == 0
            and self.duplicate_numbers == 0
            and not self.error_lines
            and self.polls_failed == 0
            and not self.changed_after_restart
        )

    def summary(self) -> str:
        separate = self.workers - self.launchers * self.jobs
        lines = [
            f"{self.workers} workers, N = {self.trials}: {self.finished} finished, {self.running} running, "
            f"{self.waiting} waiting, {self.failed} failed, {self.duplicate_numbers} duplicate numbers, "
            f"{len(self.error_lines)} error lines; exit codes {sorted(set(self.exit_codes))}",
            f"  processes: {self.launchers} x hpsearch run --jobs {self.jobs}, {separate} x hpsearch run",
            f"  {self.seconds:.1f} s: {self.trials_per_s:.1f} trials/s and {self.reports_per_s:.0f} reports/s "
            f"overall; {self.sustained_trials_per_s:.1f} trials/s sustained (10th to 90th percentile of completions)",
        ]
        if self.max_connections is not None:
            lines.append(f"  server connections: at most {self.max_connections}")
        if self.server_cpu_s is not None and self.finished:
            per_trial = self.server_cpu_s / self.finished
            lines.append(
                f"  server CPU: {self.server_cpu_s:.1f} s, {per_trial * 1000:.1f} ms a trial: one server "
                f"core would saturate near {1 / per_trial:.0f} trials/s"
            )
        if self.polls_ok or self.polls_failed:
            lines.append(
                f"  dashboard: {self.polls_ok} polls answered, {self.polls_failed} failed, "
                f"slowest {self.slowest_poll_s:.2f} s"
            )
        if self.changed_after_restart is not None:
            lines.append(f"  restart: {self.changed_after_restart} finished trials changed by it or the rerun")
        lines += [f"  error: {line}" for line in self.error_lines[:10]]
        lines.append("  HOLDS" if self.holds() else "  DOES NOT HOLD")
        return "\n".join(lines)


def commands(url: str, workers: int, trials: int, jobs: int, heartbeat: int, sampler: str) -> list[list[str]]:
    """About half the workers as --jobs launchers, the rest as separate processes."""
    base = [
        sys.executable,
        "-m",
        "hpsearch",
        "run",
        str(STUDY_FILE),
        "--trials",
        str(trials),
        "--storage",
        url,
        "--heartbeat",
        str(heartbeat),
        "--sampler",
        sampler,
    ]
    launchers = (workers // 2) // jobs if jobs > 1 else 0
    singles = workers - launchers * jobs
    return [[*base, "--jobs", str(jobs)]] * launchers + [base] * singles


def _scalar(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(sql)).scalar_one()


def _finished_trials(engine) -> dict[int, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "SELECT t.number, t.state, v.value FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id "
                "WHERE t.state IN ('COMPLETE', 'PRUNED')"
            )
        )
        return {number: (state, value) for number, state, value in rows}


def _postgres_cpu(seen: dict[int, float]) -> None:
    """Add the CPU seconds (user + system) of every running postgres process to ``seen``
    (by pid; a process that has exited keeps its last reading)."""
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat[stat.index("(") + 1 : stat.rindex(")")] == "postgres":
                fields = stat[stat.rindex(")") + 2 :].split()
                seen[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick


class _Poller(threading.Thread):
    """Polls the dashboard's study list and study detail until stopped."""

    def __init__(self, port: int, result: LoadResult):
        super().__init__(daemon=True)
        self.port, self.result, self.stop = port, result, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                studies = self._get("/api/studies")["study_summaries"]
                for study in studies:
                    self._get(f"/api/studies/{study['study_id']}?after=0")
                self.result.polls_ok += 1
            except (OSError, ValueError, KeyError):
                self.result.polls_failed += 1
            self.result.slowest_poll_s = max(self.result.slowest_poll_s, time.monotonic() - started)
            self.stop.wait(0.2)

    def _get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as response:
            return json.load(response)


def start_dashboard(url: str, folder: Path) -> tuple[subprocess.Popen, int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "dashboard", "--storage", url, "--port", str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "dashboard.err", "wb"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/meta", timeout=5):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((folder / "dashboard.err").read_text()) from None
            time.sleep(0.2)  # the server is still importing
    proc.kill()
    raise RuntimeError("the dashboard did not answer within 60 s")


def run_load(
    url: str,
    *,
    workers: int,
    trials: int,
    folder: Path,
    jobs: int = 4,
    heartbeat: int = 60,
    sampler: str = "tpe",
    dashboard: bool = False,
    server: Server | None = None,
    restart: str | None = None,
) -> LoadResult:
    """Run the load once; ``server`` (PostgreSQL) is sampled for its connection count and,
    with ``restart`` (a shell command), restarted a third of the way through."""
    cmds = commands(url, workers, trials, jobs, heartbeat, sampler)
    result = LoadResult(workers, trials, launchers=sum("--jobs" in cmd for cmd in cmds), jobs=jobs)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    poller = dash = None
    if dashboard:
        # The dashboard needs the study to exist: one worker makes it first.
        subprocess.run(
            [*commands(url, 1, 1, 1, heartbeat, sampler)[0]], cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL
        )
        dash, port = start_dashboard(url, folder)
        poller = _Poller(port, result)
        poller.start()
    started = time.monotonic()
    rounds = [False, True] if restart else [False]
    before_restart: dict[int, tuple] = {}
    procs: list = []
    cpu_start: dict[int, float] = {}
    cpu_seen: dict[int, float] = {}
    if server is not None:
        _postgres_cpu(cpu_start)
    try:
        for rerun in rounds:
            procs = []
            for i, cmd in enumerate(cmds):
                err = open(folder / f"{'re' if rerun else ''}run{i}.err", "wb")
                procs.append((subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=err), err))
            restarted = False
            while any(p.poll() is None for p, _ in procs):
                if server is not None:
                    result.max_connections = max(result.max_connections or 0, _try(server.connections, 0))
                    _postgres_cpu(cpu_seen)
                if (
                    restart
                    and not rerun
                    and not restarted
                    and _try(
                        lambda: _scalar(engine, "SELECT count(*) FROM trials WHERE state IN ('COMPLETE','PRUNED')"), 0
                    )
                    >= trials // 3
                ):
                    subprocess.run(
                        restart, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    )
                    restarted = True
                time.sleep(0.25)
            for p, err in procs:
                err.close()
                result.exit_codes.append(p.returncode)
            if restart and not rerun:
                before_restart = _finished_trials(engine)
            for path in sorted(folder.glob(f"{'re' if rerun else ''}run*.err")):
                lines = path.read_text(errors="replace").splitlines()
                # The restart ends the first round's workers with one line each, by design.
                expected = restart and not rerun
                result.error_lines += [
                    f"{path.name}: {line}"
                    for line in lines
                    if not (expected and line.startswith("hpsearch: error: lost the storage"))
                ]
    finally:
        result.seconds = time.monotonic() - started
        for p, _ in procs:
            if p.poll() is None:  # interrupted: leave no worker behind
                p.kill()
                p.wait()
        if cpu_seen:  # a server on this machine
            result.server_cpu_s = sum(cpu - cpu_start.get(pid, 0.0) for pid, cpu in cpu_seen.items())
        if poller is not None:
            poller.stop.set()
            poller.join()
        if dash is not None:
            dash.terminate()
            dash.wait()
    with engine.connect() as conn:
        states = dict(conn.execute(sqlalchemy.text("SELECT state, count(*) FROM trials GROUP BY state")).all())
        result.duplicate_numbers = conn.execute(
            sqlalchemy.text("SELECT count(*) - count(DISTINCT number) FROM trials")
        ).scalar_one()
        result.reports = conn.execute(sqlalchemy.text("SELECT count(*) FROM trial_intermediate_values")).scalar_one()
        completions = sorted(
            _datetime(row[0])
            for row in conn.execute(
                sqlalchemy.text("SELECT datetime_complete FROM trials WHERE state IN ('COMPLETE', 'PRUNED')")
            )
        )
    result.finished = states.get("COMPLETE", 0) + states.get("PRUNED", 0)
    result.running, result.waiting, result.failed = (states.get(s, 0) for s in ("RUNNING", "WAITING", "FAIL"))
    if len(completions) >= 10:
        lo, hi = completions[len(completions) // 10], completions[len(completions) * 9 // 10]
        span = (hi - lo).total_seconds()
        result.sustained_trials_per_s = (len(completions) * 8 // 10) / span if span > 0 else 0.0
    if restart:
        after = _finished_trials(engine)
        result.changed_after_restart = sum(after.get(k) != v for k, v in before_restart.items())
    engine.dispose()
    return result


def _datetime(value) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value) if isinstance(value, str) else value  # SQLite: text


def _try(fn, default):
    try:
        return fn()
    except Exception:  # the server is down (restart) or not up yet: a sample is skipped
        return default


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="sqlite", help="sqlite (default), a postgresql URL or another URL")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--sweep", help="comma-separated worker counts, one run each (throughput vs workers)")
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=4, help="workers per --jobs launcher (default: 4)")
    parser.add_argument("--heartbeat", type=int, default=60)
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--dashboard", action="store_true", help="poll hpsearch dashboard over HTTP throughout")
    parser.add_argument(
        "--restart", metavar="CMD", help="a shell command that restarts the PostgreSQL server, run a third of the way"
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.sweep.split(",")] if args.sweep else [args.workers]
    postgres = args.storage.startswith("postgresql")
    if args.restart and not postgres:
        parser.error("--restart needs a postgresql --storage URL")
    shown = args.storage if args.storage == "sqlite" else sqlalchemy.make_url(args.storage).render_as_string()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; storage {shown}; sampler {args.sampler}; "
        f"jobs per launcher {args.jobs}; heartbeat {args.heartbeat} s",
        flush=True,
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="hpsearch-load-") as tmp, contextlib.ExitStack() as stack:
        server = stack.enter_context(Server(args.storage)) if postgres else None
        for n, workers in enumerate(counts):
            folder = Path(tmp) / f"run{n}"
            folder.mkdir()
            if server is not None:
                url = server.new_database("load")
            elif args.storage == "sqlite":
                url = f"sqlite:///{folder / 'hpsearch.db'}"
            else:
                url = args.storage
            result = run_load(
                url,
                workers=workers,
                trials=args.trials,
                folder=folder,
                jobs=args.jobs,
                heartbeat=args.heartbeat,
                sampler=args.sampler,
                dashboard=args.dashboard,
                server=server,
                restart=args.restart,
            )
            print(result.summary(), flush=True)
            ok = ok and result.holds()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
