"""`hpsearch run --jobs K`: K worker processes share one study and stop at exactly N."""

import os
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

FAST = [*"--set c1=4 --set c2=8 --set c3=32 --set batch_size=64".split()]


def run_jobs(args, cwd, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", "run", "fashion-lenet", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ,
        timeout=timeout,
    )


def assert_exactly(url, n):
    trials = optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # Any failed trial is a worker giving way for the last place, never lost work.
    assert all(t.user_attrs.get("ended", "").startswith("surplus") for t in trials if t.state == TrialState.FAIL)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))
    sampled = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(sampled)) == len(sampled)  # no trial proposed twice by two workers
    return trials


def test_three_workers_on_the_default_sqlite_file_finish_exactly_n(fashion_root, tmp_path):
    proc = run_jobs(
        [*"--trials 6 --epochs 1 --jobs 3 --seed 0 --subset 300 --data-dir".split(), str(fashion_root), *FAST],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "database is locked" not in proc.stderr + proc.stdout
    assert proc.stderr == ""  # a worker giving way for the last place is no warning either
    assert "3 workers done: 6/6 trials finished" in proc.stdout
    assert {f"[worker {i}]" for i in range(3)} <= {line[:10] for line in proc.stdout.splitlines()}
    assert_exactly(f"sqlite:///{tmp_path / 'hpsearch.db'}", 6)

    # The same command again has nothing left to do.
    again = run_jobs(
        [*"--trials 6 --epochs 1 --jobs 3 --seed 0 --subset 300 --data-dir".split(), str(fashion_root), *FAST],
        cwd=tmp_path,
    )
    assert again.returncode == 0 and "6/6 trials finished" in again.stdout
    assert_exactly(f"sqlite:///{tmp_path / 'hpsearch.db'}", 6)


def test_a_run_on_a_cpu_of_two_cores_starts_two_one_thread_workers_by_default(fashion_root, tmp_path, monkeypatch):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("the default is one worker on a CPU of one core")
    monkeypatch.delenv("HPSEARCH_JOBS")
    cores = os.cpu_count()
    proc = run_jobs(
        [*"--trials 4 --epochs 1 --seed 0 --subset 300 --device cpu --data-dir".split(), str(fashion_root), *FAST],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first == (
        f"starting 2 workers on cpu, {cores // 2} CPU thread(s) each "
        f"(the default on a CPU of {cores} cores; --jobs 1 for one worker)"
    )
    assert "2 workers done: 4/4 trials finished" in proc.stdout
    assert_exactly(f"sqlite:///{tmp_path / 'hpsearch.db'}", 4)
    monkeypatch.setenv("HPSEARCH_JOBS", "1")  # the variable sets the default: one process, no launcher
    proc = run_jobs(
        [*"--trials 5 --epochs 1 --seed 0 --subset 300 --data-dir".split(), str(fashion_root), *FAST], tmp_path
    )
    assert proc.returncode == 0 and "starting" not in proc.stdout and "[worker" not in proc.stdout, proc.stdout


def test_bad_input_is_reported_once_not_by_every_worker(tmp_path):
    proc = run_jobs(["--trials", "3", "--jobs", "3", "--set", "nope=1"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_three_workers_on_postgresql_finish_exactly_n(fashion_root, postgres_url, tmp_path):
    proc = run_jobs(
        [
            *"--trials 6 --epochs 1 --jobs 3 --seed 0 --subset 300 --storage".split(),
            postgres_url,
            "--data-dir",
            str(fashion_root),
            *FAST,
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 workers done: 6/6 trials finished" in proc.stdout
    password = postgres_url.split(":")[2].split("@")[0]
    assert password not in proc.stdout + proc.stderr
    assert_exactly(postgres_url, 6)
