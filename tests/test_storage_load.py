"""Many workers on one study, scaled down from benchmarks/storage_load.py (which gives the
full figures in docs/reliability.md), run through its command line: the stand-in study, no
training, mixed ``--jobs`` launchers and separate processes, exactly N finished at the end."""

import re
import subprocess
import sys
from pathlib import Path

from hpsearch.storage import POOL_SIZE

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "storage_load.py"
TRIALS = 150
COUNTS = ("finished", "running", "waiting", "failed", "duplicate numbers", "error lines")


def storage_load(*args: str) -> tuple[int, str]:
    """The exit status and output of ``python benchmarks/storage_load.py ARGS``."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), *args], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    print(proc.stdout, proc.stderr)
    return proc.returncode, proc.stdout


def counts(out: str) -> dict[str, int]:
    """The summary's first line, 'W workers, N = 150: 150 finished, 0 running, ...', as numbers."""
    found = re.search(r"workers, N = \d+: " + ", ".join(rf"(\d+) {name}" for name in COUNTS), out)
    assert found, out
    return dict(zip(COUNTS, map(int, found.groups()), strict=True))


def test_twelve_workers_on_postgresql_finish_exactly_n_within_the_connection_budget(postgres_server):
    url = postgres_server.url("postgres")  # the benchmark makes a database of its own there
    code, out = storage_load("--storage", url, "--workers", "12", "--trials", str(TRIALS), "--jobs", "4")
    got = counts(out)
    assert (got["finished"], got["running"], got["duplicate numbers"], got["error lines"]) == (TRIALS, 0, 0, 0)
    assert code == 0 and out.rstrip().endswith("HOLDS")
    assert "processes: 1 x hpsearch run --jobs 4, 8 x hpsearch run" in out
    # A worker holds at most POOL_SIZE connections, and so does a launcher (its own storage);
    # the harness's count adds one.
    peak = int(re.search(r"server connections: at most (\d+)", out).group(1))
    assert 0 < peak <= POOL_SIZE * (12 + 1) + 1
    assert re.search(r"server CPU: \d+\.\d s, ", out)
    with postgres_server.connect() as conn:  # and dropped that database at the end
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'load%'").fetchone()[0] == 0


def test_six_workers_on_sqlite_while_the_dashboard_is_polled():
    code, out = storage_load("--storage", "sqlite", "--workers", "6", "--trials", "60", "--jobs", "3", "--dashboard")
    got = counts(out)
    assert (got["finished"], got["running"], got["duplicate numbers"], got["error lines"]) == (60, 0, 0, 0)
    assert code == 0 and out.rstrip().endswith("HOLDS") and "locked" not in out
    answered, failed = map(int, re.search(r"dashboard: (\d+) polls answered, (\d+) failed", out).groups())
    assert answered > 0 and failed == 0


def test_restart_needs_a_postgresql_server():
    code, _ = storage_load("--storage", "sqlite", "--restart", "true")
    assert code == 2
