"""`hpsearch run --slurm K` on a real one-host SLURM cluster (tests/slurmcluster.py) with the
throwaway PostgreSQL: a job array of workers finishes exactly N trials, also when one task
is cancelled mid-trial; Ctrl-C on the submitting command cancels the array; SQLite, a
storage this host cannot open and a missing submitit are refused in one line, exit 2."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from invoke import hpsearch
from processes import interruptible

TESTS = Path(__file__).resolve().parent
BOOKKEEPING, SLEEPY = TESTS / "bookkeeping_study.py", TESTS / "sleepy_study.py"


def needs_submitit():
    pytest.importorskip("submitit", reason="submitit is not installed: pip install 'hpsearch[slurm]'")


def submit(cluster, study: Path, tmp_path: Path, *args: str, epoch_seconds: float = 0) -> subprocess.Popen:
    """The submitting command in ``tmp_path``, its output going to out.txt and err.txt there."""
    needs_submitit()
    env = {**cluster.env, "SLEEPY_EPOCH_SECONDS": str(epoch_seconds)}
    command = [sys.executable, "-m", "hpsearch", "run", str(study), "--heartbeat", "2", *args]
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=err, preexec_fn=interruptible)


def wait_for(what: str, ready, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not (value := ready()):
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.2)
    return value


def job_id(tmp_path: Path) -> str:
    found = re.search(r"submitted SLURM job (\d+)", (tmp_path / "out.txt").read_text())
    return found.group(1) if found else ""


def squeue(cluster, job: str) -> dict[str, str]:
    """The array's tasks that are still pending, running or completing, with their state."""
    out = cluster.command("squeue", "--noheader", "--array", "--jobs", job, "--format=%i %T").stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def states(url: str, name: str) -> Counter:
    return Counter(t.state.name for t in optuna.load_study(study_name=name, storage=url).get_trials())


def assert_exactly(url: str, name: str, n: int) -> list[optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    count = Counter(t.state.name for t in trials)
    assert count["COMPLETE"] + count["PRUNED"] == n, count
    assert count["RUNNING"] == 0 and count["WAITING"] == 0, count
    for t in trials:  # a failed trial is an interrupted one (retried) or a worker giving way
        assert t.state.name != "FAIL" or t.user_attrs.get("ended", "").startswith(("interrupted", "surplus")), t
    return trials


def test_three_tasks_finish_exactly_n_trials(slurm_cluster, postgres_url, tmp_path):
    proc = submit(slurm_cluster, BOOKKEEPING, tmp_path, "--trials", "6", "--slurm", "3", "--storage", postgres_url)
    assert proc.wait(timeout=120) == 0, (tmp_path / "err.txt").read_text()
    out = (tmp_path / "out.txt").read_text()
    assert "3 SLURM tasks done: 6/6 trials finished" in out
    assert re.search(r"\| 6/6 finished \|", out)  # a local run's progress lines
    assert (tmp_path / "err.txt").read_text() == ""
    assert postgres_url.split(":")[2].split("@")[0] not in out  # the password
    assert_exactly(postgres_url, "bookkeeping", 6)
    assert squeue(slurm_cluster, job_id(tmp_path)) == {}


def test_a_task_cancelled_mid_trial_loses_nothing(slurm_cluster, postgres_url, tmp_path):
    args = ("--trials", "4", "--epochs", "3", "--pruner", "none", "--slurm", "3", "--storage", postgres_url)
    proc = submit(slurm_cluster, SLEEPY, tmp_path, *args, epoch_seconds=0.7)
    job = wait_for("job id", lambda: job_id(tmp_path))

    def inside_a_trial(task: str) -> bool:  # the task's worker well inside its 2.1-second trial
        log = tmp_path / "hpsearch-slurm" / f"{task}_0_log.out"
        started = re.findall(r"^trial (\d+): ", log.read_text(), re.MULTILINE) if log.exists() else []
        if not started:
            return False
        trial = optuna.load_study(study_name="sleepy", storage=postgres_url).trials[int(started[-1])]
        age = (datetime.datetime.now() - trial.datetime_start).total_seconds()
        return trial.state.name == "RUNNING" and 0.2 < age < 1.2

    wait_for("task 1 inside a trial", lambda: inside_a_trial(f"{job}_1"))
    assert slurm_cluster.command("scancel", f"{job}_1").returncode == 0
    assert proc.wait(timeout=120) == 0, (tmp_path / "err.txt").read_text()
    out = (tmp_path / "out.txt").read_text()
    assert "CANCELLED" in out and "3 SLURM tasks done: 4/4 trials finished" in out
    trials = assert_exactly(postgres_url, "sleepy", 4)
    interrupted = [t for t in trials if t.user_attrs.get("ended") == "interrupted"]
    assert len(interrupted) == 1  # the cancelled task's trial, failed on SIGTERM ...
    retried = [t for t in trials if t.state.name == "COMPLETE" and t.params == interrupted[0].params]
    assert retried  # ... and trained again by another task


def test_ctrl_c_cancels_the_array(slurm_cluster, postgres_url, tmp_path):
    args = ("--trials", "50", "--epochs", "3", "--slurm", "2", "--storage", postgres_url)
    proc = submit(slurm_cluster, SLEEPY, tmp_path, *args, epoch_seconds=1)
    job = wait_for("job id", lambda: job_id(tmp_path))
    wait_for("a running trial", lambda: states(postgres_url, "sleepy")["RUNNING"] > 0)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    err = (tmp_path / "err.txt").read_text().strip().splitlines()
    assert err == [
        f"hpsearch: interrupted; cancelled SLURM job {job}; finished trials are stored, submit again to continue"
    ]
    wait_for("the array gone from squeue", lambda: squeue(slurm_cluster, job) == {}, seconds=30)
    assert states(postgres_url, "sleepy")["RUNNING"] == 0  # each worker failed and re-queued its trial


def test_sqlite_is_refused_and_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "study.db"
    assert hpsearch(f"run {BOOKKEEPING} --trials 3 --slurm 2 --storage", f"sqlite:///{db}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not SQLite" in err[0] and "postgresql+psycopg://" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_without_submitit_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    assert hpsearch(f"run {BOOKKEEPING} --trials 3 --slurm 2 --storage postgresql+psycopg://u:pw@127.0.0.1:1/x") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hpsearch: error: --slurm needs submitit: pip install 'hpsearch[slurm]' (or pip install submitit)"]
    assert list(tmp_path.iterdir()) == []


def test_a_storage_this_host_cannot_open_is_refused(tmp_path, monkeypatch, capsys):
    needs_submitit()
    if shutil.which("sbatch") is None:
        pytest.skip("SLURM is not installed: 'apt-get install slurm-wlm munge' (.ci/run does)")
    monkeypatch.chdir(tmp_path)
    url = "postgresql+psycopg://u:secret-pw@127.0.0.1:1/x"  # nothing listens on port 1
    assert hpsearch(f"run {BOOKKEEPING} --trials 3 --slurm 2 --storage", url) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot open storage" in err[0] and "secret-pw" not in err[0], err
    assert list(tmp_path.iterdir()) == []


SBATCH = TESTS.parent / "docker" / "slurm" / "hpsearch-array.sbatch"


def test_the_sbatch_script_runs_an_array_of_workers_to_exactly_n(slurm_cluster, postgres_url, tmp_path):
    """docker/slurm/hpsearch-array.sbatch, submitted by hand as its header says: the study
    made once without training, then a 2-task array of workers that ends at exactly N."""
    assert hpsearch(f"run {BOOKKEEPING} --trials 5 --timeout 1e-9 --device cpu --storage", postgres_url) == 0
    env = {**slurm_cluster.env, "HPSEARCH_STORAGE": postgres_url, "HPSEARCH": f"{sys.executable} -m hpsearch"}
    export = f"--export=ALL,STUDY={BOOKKEEPING},TRIALS=5,HPSEARCH_ARGS=--heartbeat 2"
    command = ["sbatch", "--parsable", "--wait", "--array=0-1", "--cpus-per-task=1", "--mem=1G", export, str(SBATCH)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("slurm-*.out")))
    assert done.returncode == 0, done.stderr + logs
    assert len(list(tmp_path.glob("slurm-*_[01].out"))) == 2  # both tasks ran, each a worker
    assert_exactly(postgres_url, "bookkeeping", 5)


def test_the_sbatch_script_refuses_sqlite_in_one_line(tmp_path):
    env = {**os.environ, "STUDY": "fashion-lenet", "TRIALS": "3", "HPSEARCH_STORAGE": f"sqlite:///{tmp_path}/x.db"}
    done = subprocess.run(["bash", str(SBATCH)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "postgresql+psycopg://" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []
