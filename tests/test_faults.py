"""The fault suite: a search survives killed workers, signals, diverging and out-of-memory
trials and a database that goes away, without losing or corrupting a finished trial.

The process tests run the real command (``python -m hpsearch run``) and watch the storage
from outside, the way a second terminal would; the heartbeat is 1 s so a dead worker's
trial goes stale in 3 s instead of 3 minutes.
"""

import os
import signal
import subprocess
import sys
import time
import weakref

import optuna
import pytest
import sqlalchemy
import torch
from optuna.trial import TrialState
from processes import interruptible
from synthetic import write_fashion_mnist

from hpsearch import models
from hpsearch.cli import main

STUDY = "fashion-lenet"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture(scope="module")
def slow_fashion(tmp_path_factory):
    """Enough images that a trial lasts seconds, so there is a 'middle' to hit."""
    return write_fashion_mnist(tmp_path_factory.mktemp("slow-fashion"), n_train=2000, n_test=100)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_storage(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hpsearch.db'}"
    return request.getfixturevalue("postgres_url")


def command(url, data_root, tmp_path, trials):
    return [
        sys.executable,
        *"-m hpsearch run".split(),
        STUDY,
        "--trials",
        str(trials),
        *"--epochs 4 --pruner none --seed 0 --heartbeat 1 --storage".split(),
        url,
        "--artifacts",
        str(tmp_path / "artifacts"),
        "--data-dir",
        str(data_root),
        *"--set c1=6 --set c2=16 --set c3=64 --set batch_size=32".split(),
    ]


def child_env() -> dict:
    # One thread: with the test process polling beside it, two threads on a 2-core machine
    # oversubscribe it and make the tiny model's epochs ten times slower.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def start(cmd, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cmd, preexec_fn=interruptible, env=child_env(), **kwargs)


def rerun(cmd) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=300)


def trial_rows(url):
    """(number, state) of every trial, read with plain SQL: () until the worker has made the tables."""
    if url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
        return ()
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(
                conn.execute(
                    sqlalchemy.text(
                        "SELECT t.number, t.state, (SELECT count(*) FROM trial_intermediate_values v "
                        "WHERE v.trial_id = t.trial_id) FROM trials t ORDER BY t.number"
                    )
                )
            )
    except sqlalchemy.exc.SQLAlchemyError:
        return ()
    finally:
        engine.dispose()


def wait_mid_trial(proc, url, timeout=180) -> tuple[int, int]:
    """Wait until at least one trial has finished and a later one is RUNNING with one or two
    of its four epochs reported; return that trial's number and its epochs reported."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        rows = trial_rows(url)
        if any(state in ("COMPLETE", "PRUNED") for _, state, _ in rows):
            running = [(number, epochs) for number, state, epochs in rows if state == "RUNNING" and 1 <= epochs <= 2]
            if running:
                return running[0]
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no trial reached its middle in time")


def load(url):
    return optuna.load_study(study_name=STUDY, storage=url).get_trials()


def snapshot(url):
    return {t.number: (t.state, t.value, t.params) for t in load(url) if t.state in FINISHED}


def assert_completed_to_n(url, n, before):
    trials = load(url)
    assert sum(t.state in FINISHED for t in trials) == n
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    after = snapshot(url)
    assert {k: after[k] for k in before} == before  # finished trials untouched
    observed(trials, lost=sum(after.get(k) != v for k, v in before.items()))
    return {t.number: t for t in trials}


def observed(trials, **extra):
    """One line for docs/reliability.md (shown by pytest -rP)."""
    counts = {
        "finished": sum(t.state in FINISHED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "retried": sum("failed_trial" in t.system_attrs for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        **extra,
    }
    print("observed: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def test_kill_9_mid_trial_fails_and_retries_it_and_still_finishes_exactly_n(any_storage, slow_fashion, tmp_path):
    cmd = command(any_storage, slow_fashion, tmp_path, trials=2)
    proc = start(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim, _ = wait_mid_trial(proc, any_storage)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert {t.number: t.state for t in load(any_storage)}[victim] == TrialState.RUNNING  # nobody could tidy up
    before = snapshot(any_storage)
    assert len(before) >= 1

    again = rerun(cmd)
    assert again.returncode == 0, again.stderr
    trials = assert_completed_to_n(any_storage, 2, before)
    assert trials[victim].state == TrialState.FAIL
    retried = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == trials[victim].params
    assert retried[0].user_attrs["seed"] == trials[victim].user_attrs["seed"]  # an exact redo


@pytest.mark.parametrize(
    "signum, status, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_a_signal_mid_trial_exits_in_seconds_and_a_rerun_continues_to_n(signum, status, word, slow_fashion, tmp_path):
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    cmd = command(url, slow_fashion, tmp_path, trials=2)
    proc = start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, epochs_seen = wait_mid_trial(proc, url)
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    print(f"observed: exit {proc.returncode} {time.monotonic() - sent:.1f} s after the signal")
    assert proc.returncode == status, err
    assert err.strip().splitlines() == [
        f"hpsearch: {word}; finished trials are stored, run the same command again to continue"
    ]
    trials = {t.number: t for t in load(url)}
    assert trials[victim].state == TrialState.FAIL and trials[victim].user_attrs["ended"] == "interrupted"
    # Stopped at once, not when the trial ended: at most the epoch under way when the signal
    # came was still reported, and the trial's four epochs were never all run.
    assert len(trials[victim].intermediate_values) <= min(epochs_seen + 1, 3)
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]
    before = snapshot(url)
    assert len(before) == 1

    again = rerun(cmd)
    assert again.returncode == 0, again.stderr
    trials = assert_completed_to_n(url, 2, before)
    # The interrupted configuration was queued again, so the rerun did it rather than lose it.
    retried = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == trials[victim].params
    assert retried[0].user_attrs["seed"] == trials[victim].user_attrs["seed"]  # an exact redo


def test_sigterm_reaches_every_worker_of_jobs(slow_fashion, tmp_path):
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    cmd = [*command(url, slow_fashion, tmp_path, trials=3), "--jobs", "2"]
    proc = start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_mid_trial(proc, url)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not [t for t in load(url) if t.state == TrialState.RUNNING]
    observed(load(url))


@pytest.mark.parametrize("failure", ["cpu allocator", "cuda"])
def test_out_of_memory_fails_the_trial_frees_it_and_the_next_trial_runs(
    failure, fashion_root, tmp_path, monkeypatch, capsys
):
    """Trial 1's model asks for more memory than exists: on the CPU, a real allocation of
    1 EiB that the allocator refuses; for CUDA, the error type CUDA raises."""

    class MemoryHog(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if failure == "cuda":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            torch.empty(1 << 60, dtype=torch.uint8, device=x.device)
            return self.inner(x)

    real_create = models.create
    built = []

    def create(name, **kwargs):
        if len(built) == 2:  # trial 2 starts: nothing may still hold trial 1's model
            assert built[1]() is None, "the out-of-memory trial's model is still alive"
        model = real_create(name, **kwargs)
        model = MemoryHog(model) if len(built) == 1 else model
        built.append(weakref.ref(model))
        return model

    monkeypatch.setattr(models, "create", create)
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    assert (
        main(
            [
                "run",
                STUDY,
                *"--trials 3 --epochs 2 --pruner none --storage".split(),
                url,
                "--data-dir",
                str(fashion_root),
                *"--set c1=4 --set c2=8 --set c3=32".split(),
                *(["--device", "cpu"] if failure == "cpu allocator" else []),
            ]
        )
        == 0
    )  # the host allocator's own error
    trials = load(url)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    ended = trials[1].user_attrs["ended"]
    assert ended.startswith("failed: out of memory: ")
    assert ("can't allocate memory" if failure == "cpu allocator" else "CUDA out of memory") in ended
    assert len(built) == 4
    assert "trial 1 failed: out of memory" in capsys.readouterr().out
    observed(trials, lost=0)


def test_postgresql_going_away_mid_run_is_one_line_and_a_rerun_after_it_returns_finishes(
    postgres_server, postgres_url, slow_fashion, tmp_path
):
    cmd = command(postgres_url, slow_fashion, tmp_path, trials=2)
    proc = start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_mid_trial(proc, postgres_url)
    before = snapshot(postgres_url)
    postgres_server.stop()
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        postgres_server.start()
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if line.startswith("hpsearch:")]
    print(f"observed: {errors}")
    assert len(errors) == 1 and errors[0].startswith("hpsearch: error: lost the storage postgresql+psycopg://hp:***@")
    assert "run the same command to continue" in errors[0]
    assert "Traceback" not in err
    assert postgres_server.password not in out + err
    after = snapshot(postgres_url)
    assert {k: after[k] for k in before} == before

    again = rerun(cmd)
    assert again.returncode == 0, again.stderr
    trials = assert_completed_to_n(postgres_url, 2, before)
    # The trial cut off mid-write could not be marked; its heartbeat went stale instead.
    failed = [t for t in trials.values() if t.state == TrialState.FAIL]
    assert len(failed) == 1
    assert [t.state for t in trials.values() if t.system_attrs.get("failed_trial") == failed[0].number] == [
        TrialState.COMPLETE
    ]
