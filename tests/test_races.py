"""Races between workers, each forced into its bad interleaving instead of left to chance.

1. Two workers claim the same WAITING trial (Optuna's read-then-write claim is not atomic
   on SQLite): one must win, the other must see it taken.
2. A worker whose trial another worker ended while it ran says so in one line and goes on.
3. A signal inside Optuna's bookkeeping around a trial (just after the claim, or while
   the heartbeat thread starts) must neither leave the trial RUNNING nor the process alive;
   one between trials must stop the run before it claims another.
4. SIGTERM while ``--jobs`` starts its workers reaches every worker.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from processes import interruptible

from hpsearch.storage import open_storage

BOOKKEEPING = str(Path(__file__).with_name("bookkeeping_study.py"))
PAUSE = 3.0  # how long the first claimant holds still for the second to overtake it


def plain_optuna_storage(url):
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


@pytest.mark.parametrize(
    "opener, both_win",
    [(plain_optuna_storage, True), (open_storage, False)],
    ids=["optuna-default-sqlite", "hpsearch-sqlite"],
)
def test_two_claims_of_one_waiting_trial(opener, both_win, tmp_path):
    """A reads the WAITING trial and holds still; B claims it meanwhile; then A writes.
    With Optuna's default SQLite engine both win, the lost update that crashed a --jobs
    worker with "Cannot tell a COMPLETE trial" (the control: the interleaving is real).
    With hpsearch's storage A holds the write lock from its read on, so B waits and loses."""
    url = f"sqlite:///{tmp_path / 'claim.db'}"
    first, second = opener(url), opener(url)
    study = optuna.create_study(storage=first, study_name="claim")
    study.enqueue_trial({"x": 1.0})
    trial_id = study.get_trials()[0]._trial_id

    a_has_read, b_done = threading.Event(), threading.Event()

    @sqlalchemy.event.listens_for(first.engine, "after_cursor_execute")
    def hold_after_read(conn, cursor, statement, parameters, context, executemany):
        reads_trial = statement.lstrip().startswith("SELECT") and "FROM trials" in statement
        if threading.current_thread().name == "A" and reads_trial and not a_has_read.is_set():
            a_has_read.set()
            b_done.wait(PAUSE)  # B overtakes here, unless A's lock keeps it out

    won = {}

    def claim(name, storage, done=None):
        won[name] = storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        if done is not None:
            done.set()

    a = threading.Thread(target=claim, args=("A", first), name="A")
    a.start()
    assert a_has_read.wait(30)
    b = threading.Thread(target=claim, args=("B", second, b_done), name="B")
    b.start()
    a.join(60)
    b.join(60)
    assert sorted(won) == ["A", "B"]
    if both_win:
        assert won == {"A": True, "B": True}
    else:
        assert sorted(won.values()) == [False, True]
        assert won["A"] is True  # the first to read is the one that claims


def run_python(code, cwd, timeout=120, **kwargs):
    """Run ``code`` in a fresh interpreter (SIGINT at its default, as in a terminal)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        preexec_fn=interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc, timeout=90):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the run did not exit within {timeout} s of the signal:\n{out[-2000:]}\n{err[-2000:]}")
    return out, err


def test_a_trial_ended_elsewhere_while_it_runs_is_one_line_not_a_crash(tmp_path):
    """Trial 1's heartbeat is taken for stale by another worker, which fails it (and
    queues its retry) while trial 1 is still reporting here."""
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    code = f"""
        import sys
        import optuna
        from optuna.trial import TrialState
        from hpsearch import registry
        from hpsearch.cli import main

        spec = registry.get({BOOKKEEPING!r})
        curve = spec.trainer

        class EndedElsewhere(curve):
            def __call__(self, ctx):
                if ctx.trial.number == 1:
                    other = optuna.load_study(study_name="bookkeeping", storage={url!r})
                    frozen = other.get_trials()[1]
                    other._storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
                    optuna.storages.RetryHeartbeatStaleTrialCallback()(other, frozen)
                return super().__call__(ctx)

        object.__setattr__(spec, "trainer", EndedElsewhere)
        sys.exit(main(["run", {BOOKKEEPING!r}, "--trials", "4", "--seed", "0", "--storage", {url!r}]))
    """
    out, err = finish(run_python(code, tmp_path))
    assert "Traceback" not in err, err
    assert "trial 1 was ended by another worker while it ran here (FAIL" in out, out
    trials = optuna.load_study(study_name="bookkeeping", storage=url).get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 4
    assert trials[1].state == TrialState.FAIL
    assert [t.system_attrs.get("failed_trial") for t in trials].count(1) == 1  # retried once, here


@pytest.mark.parametrize("moment", ["after the claim", "while the heartbeat thread starts"])
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_inside_optunas_bookkeeping(moment, signum, status, tmp_path):
    """The process sends itself the signal at the moment named, for trial 2. Before the fix
    "after the claim" left trial 2 RUNNING without a heartbeat, so nothing would ever fail
    it, and "while the heartbeat thread starts" left a heartbeat thread that nobody stops,
    so the process hung after printing its last line."""
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    hooks = {
        "after the claim": """
            real_ask = optuna.Study.ask
            def ask(self, *args, **kwargs):
                trial = real_ask(self, *args, **kwargs)
                if trial.number == 2:
                    os.kill(os.getpid(), SIGNUM)
                return trial
            optuna.Study.ask = ask
        """,
        "while the heartbeat thread starts": """
            real_start = threading.Thread.start
            started = []
            def start(self):
                real_start(self)
                if self.name.endswith("(_record_heartbeat)"):
                    started.append(self)
                    if len(started) == 3:
                        os.kill(os.getpid(), SIGNUM)
            threading.Thread.start = start
        """,
    }
    code = (
        textwrap.dedent(f"""
        import os, sys, threading
        import optuna
        from hpsearch.cli import main
        SIGNUM = {int(signum)}
    """)
        + textwrap.dedent(hooks[moment])
        + textwrap.dedent(f"""
        sys.exit(main(["run", {BOOKKEEPING!r}, "--trials", "5", "--seed", "0", "--heartbeat", "1",
                       "--storage", {url!r}]))
    """)
    )
    proc = run_python(code, tmp_path)
    _out, err = finish(proc)
    assert proc.returncode == status, err
    assert "Traceback" not in err, err
    trials = optuna.load_study(study_name="bookkeeping", storage=url).get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    assert trials[2].state == TrialState.FAIL and trials[2].user_attrs["ended"] == "interrupted"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 2]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING and retry[0].params == trials[2].params
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials[:2])


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_between_trials_claims_no_further_trial(signum, status, tmp_path):
    """The process sends itself the signal just after trial 1 has been told and its callbacks
    have run, before the loop claims trial 2. Before the fix the held signal waited for the
    next trial's training, so trial 2 was claimed only to be failed as interrupted and queued
    again: a trial and a retry that the next run had to redo for nothing."""
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    code = f"""
        import os, sys
        import optuna
        from hpsearch.cli import main
        real_optimize = optuna.Study.optimize
        def optimize(self, *args, **kwargs):
            real_optimize(self, *args, **kwargs)
            if len(self.get_trials(deepcopy=False)) == 2:
                os.kill(os.getpid(), {int(signum)})
        optuna.Study.optimize = optimize
        sys.exit(main(["run", {BOOKKEEPING!r}, "--trials", "5", "--seed", "0", "--storage", {url!r}]))
    """
    proc = run_python(code, tmp_path)
    _out, err = finish(proc)
    assert proc.returncode == status, err
    assert "Traceback" not in err, err
    trials = optuna.load_study(study_name="bookkeeping", storage=url).get_trials()
    assert [t.number for t in trials] == [0, 1]  # trial 2 was never claimed
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


def worker_pids(marker: str) -> list[int]:
    """Processes whose environment holds HPSEARCH_TEST_MARK=marker and HPSEARCH_WORKER."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"HPSEARCH_TEST_MARK={marker}".encode() in environ and any(
            e.startswith(b"HPSEARCH_WORKER=") for e in environ
        ):
            pids.append(int(entry.name))
    return pids


def test_sigterm_while_jobs_starts_its_workers_reaches_every_worker(tmp_path):
    """The launcher gets SIGTERM right after starting its first worker, before the others
    exist. Before the fix the launcher died there with 143 and the started worker ran on
    alone, an orphan finishing the study."""
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    marker = f"{os.getpid()}-{time.monotonic_ns()}"
    code = f"""
        import os, signal, subprocess, sys
        from hpsearch.cli import main
        real_init = subprocess.Popen.__init__
        count = []
        def init(self, *args, **kwargs):
            real_init(self, *args, **kwargs)
            count.append(1)
            if len(count) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
        subprocess.Popen.__init__ = init
        sys.exit(main(["run", {BOOKKEEPING!r}, "--trials", "400", "--jobs", "3", "--heartbeat", "1",
                       "--storage", {url!r}]))
    """
    proc = run_python(code, tmp_path, env={**os.environ, "HPSEARCH_TEST_MARK": marker})
    try:
        out, err = finish(proc)
        survivors = worker_pids(marker)
    finally:
        for pid in worker_pids(marker):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert "starting 3 workers" in out
    assert survivors == [], f"workers still running after the launcher exited: {survivors}"
    trials = optuna.load_study(study_name="bookkeeping", storage=url).get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) < 400


def test_two_workers_removing_the_same_pushed_out_weights_is_no_error(tmp_path, monkeypatch):
    """Two workers each push trial 0's weights out of the top 1, and both remove its file.
    Forced: the other worker's removal lands between this worker's check of the file and its
    own removal. The second removal finds nothing, and that fails no trial."""
    import torch
    from optuna.artifacts import FileSystemArtifactStore

    from hpsearch import weights

    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    (tmp_path / "artifacts").mkdir()
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")  # no heartbeat: ask and tell here
    study = optuna.create_study(storage=storage, direction="maximize")
    state = {"w": torch.zeros(2)}
    first = study.ask()
    assert weights.offer(first, 0.5, state, store, keep=1)
    study.tell(first, 0.5)

    checked = weights._exists

    def removed_elsewhere_after_the_check(store_, artifact_id):
        found = checked(store_, artifact_id)
        if found:
            store_.remove(artifact_id)  # the other worker, pushing trial 0 out as well
        return found

    monkeypatch.setattr(weights, "_exists", removed_elsewhere_after_the_check)
    second = study.ask()
    assert weights.offer(second, 0.9, state, store, keep=1)
    study.tell(second, 0.9)
    monkeypatch.undo()
    trials = study.get_trials()
    assert weights.stored_weights(trials[0], store, storage) is None
    assert torch.equal(weights.stored_weights(trials[1], store, storage)["w"], state["w"])


def test_a_trial_claimed_and_never_beaten_is_failed_and_retried(tmp_path):
    """A worker killed (or cut from the storage) between Optuna's claim and its first
    heartbeat leaves a RUNNING trial with no heartbeat at all, which Optuna never finds
    stale: the next run, waiting for it as the last place, must still fail it, train its
    parameters again and end with exactly N."""
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    run = ["run", BOOKKEEPING, "--seed", "0", "--heartbeat", "1", "--storage", url]
    code = "import sys; from hpsearch.cli import main; sys.exit(main({argv!r}))"
    out, err = finish(run_python(code.format(argv=[*run, "--trials", "1"]), tmp_path))
    study = optuna.load_study(study_name="bookkeeping", storage=url)  # no heartbeat: as the claim left it
    orphan = study.ask()
    params = {"x": orphan.suggest_float("x", -3.0, 3.0), "y": orphan.suggest_float("y", -3.0, 3.0)}
    params["width"] = orphan.suggest_int("width", 8, 512, log=True)

    # Without the fix the run waits for ever: finish() fails the test after 60 s.
    out, err = finish(run_python(code.format(argv=[*run, "--trials", "2"]), tmp_path), timeout=60)
    assert "Traceback" not in err, err
    trials = optuna.load_study(study_name="bookkeeping", storage=url).get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL], out
    assert trials[2].state in (TrialState.COMPLETE, TrialState.PRUNED), out  # trained again, to its end or a rung
    assert trials[2].params == params and trials[2].system_attrs.get("failed_trial") == orphan.number
