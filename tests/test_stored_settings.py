"""What a study stores is what it says: replicates trained only under the settings they were
queued with, a retried search trial under the run's settings, a study opened only by the
study file that made it, trial 0 queued once however many workers start together, and no
replicate seed that a search trial can have."""

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from invoke import hpsearch
from optuna.trial import TrialState
from processes import interruptible, wait_until_training

from hpsearch import registry, replicates, runner
from hpsearch.objective import SEARCH_SEEDS
from hpsearch.study import epochs_trained

HERE = Path(__file__).parent
NOISY = str(HERE / "noisy_study.py")
BOOKKEEPING = str(HERE / "bookkeeping_study.py")
STRONG = "--set a=true --set b=true --set c=true --set extra=true --set extra_level=1 --set luck=0"


def load(url, name="noisy"):
    return optuna.load_study(study_name=name, storage=url)


@pytest.fixture
def two_trials(tmp_path):
    """Trial 0 the baseline, trial 1 the strongest configuration."""
    url = f"sqlite:///{tmp_path / 'noisy.db'}"
    assert hpsearch(f"run {NOISY} --trials 1 --pruner none --seed 0 --storage", url) == 0
    assert hpsearch(f"run {NOISY} --trials 2 --pruner none --seed 0 {STRONG} --storage", url) == 0
    return url


def leave_waiting(url, epochs: int, data: str, seeds: int) -> set:
    """What an interrupted ``confirm --trial 1 --epochs E --subset N --seeds S`` leaves: its
    replicates queued, none trained. Returns their keys."""
    spec = registry.get(NOISY)
    study = load(url, "noisy" + replicates.SUFFIX) if _exists(url) else _replicate_study(url)
    config = replicates.of_trial(spec, load(url).trials[1], epochs, data)
    replicates.enqueue(study, replicates.missing(study, [config], seeds))
    return {(config.id, i) for i in range(seeds)}


def _exists(url) -> bool:
    return "noisy" + replicates.SUFFIX in [s.study_name for s in optuna.get_all_study_summaries(url)]


def _replicate_study(url):
    cfg = runner.RunConfig(
        spec=registry.get(NOISY), trials=1, storage_url=url, study_name="noisy", epochs=2, sampler="random",
        pruner="none", device=None, data_root=Path("data"),
    )  # fmt: skip
    return replicates.open_replicates(cfg, create=True)


@pytest.mark.parametrize(
    "command", ["confirm {study} --trial 1 --seeds 1", "ablate {study} --method leave-one-out --seeds 1 --to 1"]
)
def test_a_command_never_trains_replicates_queued_with_other_settings(two_trials, command, capsys):
    url = two_trials
    leftovers = leave_waiting(url, epochs=1, data="subset 3000", seeds=3)
    capsys.readouterr()
    assert hpsearch(command.format(study=NOISY) + " --storage", url) == 0
    out = capsys.readouterr().out
    assert "3 replicates waiting in noisy:replicates were queued by another command (1 epoch, subset 3000)" in out
    trials = load(url, "noisy" + replicates.SUFFIX).trials
    theirs = [t for t in trials if (t.user_attrs["config_id"], t.user_attrs["replicate"]) in leftovers]
    # None of them trained under this command's settings: each still waits, or was set aside unrun.
    assert theirs and all(t.state in (TrialState.WAITING, TrialState.FAIL) for t in theirs), theirs
    assert all(not t.intermediate_values for t in theirs)
    assert all(t.user_attrs["ended"].startswith("surplus: set aside") for t in theirs if t.state == TrialState.FAIL)
    # Everything this command trained is its own: its data (the whole split) and its budget (2 epochs).
    mine = [t for t in trials if t.state == TrialState.COMPLETE]
    assert mine and all("data" not in t.user_attrs and len(t.intermediate_values) == 2 for t in mine)

    # The command that queued them, run again, queues what was set aside anew and trains it as asked.
    assert hpsearch(f"confirm {NOISY} --trial 1 --seeds 3 --epochs 1 --subset 3000 --storage", url) == 0
    trials = load(url, "noisy" + replicates.SUFFIX).trials
    done = {
        (t.user_attrs["config_id"], t.user_attrs["replicate"])
        for t in trials
        if t.state == TrialState.COMPLETE and t.user_attrs.get("data") == "subset 3000"
    }
    assert done == leftovers
    theirs = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("data") == "subset 3000"]
    assert [len(t.intermediate_values) for t in theirs] == [1, 1, 1]


def test_the_replicate_lines_count_this_commands_replicates_and_their_own_pace(two_trials, capsys):
    url = two_trials
    assert hpsearch(f"confirm {NOISY} --trial 1 --seeds 2 --storage", url) == 0
    capsys.readouterr()
    assert hpsearch(f"confirm {NOISY} --trial 1 --seeds 3 --storage", url) == 0
    out = capsys.readouterr().out
    assert "2/3 of this command's finished" in out
    assert "trial 1, replicate 3/3: seed 2147483650, 2 epochs (stored as trial 2 of noisy:replicates)" in out
    assert "  trial 1, replicate 3 epoch 1/2:" in out
    assert "trial 1, replicate 3 complete" in out and "| 3/3 replicates finished |" in out
    assert "1 epochs" not in out and "1 seeds" not in out


def test_a_retried_search_trial_trains_for_the_runs_epochs(tmp_path):
    url = f"sqlite:///{tmp_path / 'noisy.db'}"
    cmd = [sys.executable, "-m", "hpsearch", "run", NOISY, "--pruner", "none", "--seed", "5", "--storage", url]
    env = {**os.environ, "NOISY_EPOCH_SECONDS": "2"}  # trial 1 is seen mid-training for 2 s
    proc = subprocess.Popen(
        [*cmd, "--trials", "3", "--epochs", "2"],
        env=env,
        preexec_fn=interruptible,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until_training(url, "noisy", 1, proc)  # trial 1 mid-training: one epoch reported
    proc.send_signal(subprocess.signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read()
    interrupted = load(url).trials[1]
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs["epochs"] == 2

    done = subprocess.run([*cmd, "--trials", "2", "--epochs", "1"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    retried = load(url).trials[2]  # the interrupted trial, redone first
    assert retried.params == interrupted.params and retried.user_attrs["seed"] == interrupted.user_attrs["seed"]
    assert retried.state == TrialState.COMPLETE
    assert retried.user_attrs["epochs"] == 1 and epochs_trained(retried) == 1
    assert "trial 2 epoch 1/1:" in done.stdout and "epoch 2/" not in done.stdout


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_study_made_by_another_study_file_is_refused_and_left_alone(two_trials, capsys):
    url = two_trials
    for command in ("run", "show", "confirm"):
        extra = " --trials 3" if command == "run" else ""
        assert hpsearch(f"{command} {BOOKKEEPING}{extra} --study-name noisy --storage", url) == 2
        assert "study 'noisy' in " in (err := one_line_error(capsys))
        assert "was made by the study 'noisy', not by 'bookkeeping'; choose another --study-name" in err
    assert len(load(url).trials) == 2


def test_a_study_whose_file_changed_its_space_is_not_searched_again(two_trials, tmp_path, capsys):
    changed = tmp_path / "noisy_changed.py"
    text = (HERE / "noisy_study.py").read_text()
    changed.write_text(text.replace('trial.suggest_float("luck", 0.0, 1.0)', 'trial.suggest_float("luck", 0.0, 2.0)'))
    shutil.copy(HERE / "noisy_study.py", tmp_path / "noisy_same.py")
    assert hpsearch(f"run {changed} --trials 3 --pruner none --storage", two_trials) == 2
    assert "was made with another search space (changed since: luck)" in one_line_error(capsys)
    assert len(load(two_trials).trials) == 2
    assert hpsearch(f"show {changed} --storage", two_trials) == 0  # reading it is fine
    assert hpsearch(f"run {tmp_path / 'noisy_same.py'} --trials 3 --pruner none --storage", two_trials) == 0


def test_workers_starting_together_on_a_new_storage_queue_the_baseline_once(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    spec = registry.get(BOOKKEEPING)
    cfg = runner.RunConfig(
        spec=spec, trials=8, storage_url=url, study_name=spec.name, epochs=3, sampler="random", pruner="none",
        device=None, data_root=Path("data"),
    )  # fmt: skip
    # Storing a trial made slow: a worker that checks for the baseline and then queues it leaves
    # the others time to find the study still empty (one start in sixty did, at full speed).
    add_trial = optuna.Study.add_trial

    def slow_add_trial(study, trial):
        time.sleep(0.5)
        return add_trial(study, trial)

    monkeypatch.setattr(optuna.Study, "add_trial", slow_add_trial)
    start, errors = threading.Barrier(4), []

    def worker():
        try:
            start.wait()
            runner.prepare(cfg)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    trials = load(url, spec.name).trials
    assert [(t.number, t.state, "baseline" in t.user_attrs) for t in trials] == [(0, TrialState.WAITING, True)]


def test_a_study_made_with_optuna_gets_its_baseline_from_the_first_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'made.db'}"
    optuna.create_study(study_name="noisy", storage=url, direction="maximize")
    assert hpsearch(f"run {NOISY} --trials 1 --pruner none --storage", url) == 0
    assert [("baseline" in t.user_attrs, t.state) for t in load(url).trials] == [(True, TrialState.COMPLETE)]


def test_no_replicate_has_a_seed_that_a_search_trial_can_have(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'noisy.db'}"
    top = SEARCH_SEEDS - 1
    assert hpsearch(f"run {NOISY} --trials 2 --pruner none --seed {top} --storage", url) == 0
    assert [t.user_attrs["seed"] for t in load(url).trials] == [top, 0]  # wrapped below SEARCH_SEEDS
    assert hpsearch(f"confirm {NOISY} --trial 0 --seeds 2 --storage", url) == 0
    seeds = [t.user_attrs["seed"] for t in load(url, "noisy" + replicates.SUFFIX).trials]
    assert seeds == [SEARCH_SEEDS, SEARCH_SEEDS + 1]
    for bad in (-1, SEARCH_SEEDS, 10**12):
        assert hpsearch(f"run {NOISY} --trials 3 --seed {bad} --storage", url) == 2
        assert "outside 0 to 2147483647" in one_line_error(capsys)


def test_a_seed_of_10000_no_longer_makes_trial_0_its_own_replicate(tmp_path):
    url = f"sqlite:///{tmp_path / 'noisy.db'}"
    assert hpsearch(f"run {NOISY} --trials 1 --pruner none --seed 10000 --storage", url) == 0
    assert hpsearch(f"confirm {NOISY} --trial 0 --seeds 1 --storage", url) == 0
    search, replicate = load(url).trials[0], load(url, "noisy" + replicates.SUFFIX).trials[0]
    assert search.user_attrs["seed"] == 10000 != replicate.user_attrs["seed"]
    assert search.intermediate_values != replicate.intermediate_values


@pytest.mark.parametrize(
    "url, message",
    [
        ("sqlit:///x.db", "names no database SQLAlchemy knows ('sqlit'): use sqlite:///FILE or postgresql"),
        ("sqlite:////proc/hpsearch-test.db", "cannot write the SQLite file /proc/hpsearch-test.db (its folder /proc"),
    ],
)
def test_a_storage_that_cannot_be_used_is_said_before_the_data_loads(url, message, tmp_path, capsys):
    empty = tmp_path / "no-data"  # the data is missing too: the storage is what is said
    empty.mkdir()
    assert hpsearch("run fashion-lenet --trials 1 --storage", url, "--data-dir", empty) == 2
    assert message in one_line_error(capsys)


def test_create_makes_the_study_with_its_baseline_and_nothing_else(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'made.db'}"
    assert hpsearch(f"create {NOISY} --set c=true --storage", url) == 0
    assert "created study noisy (noisy) in " in capsys.readouterr().out
    (trial,) = load(url).trials
    assert trial.state == TrialState.WAITING
    assert trial.user_attrs["baseline"] == "every gain off; changed by --set: c=True"
    assert hpsearch(f"create {NOISY} --storage", url) == 0  # again: checked, left alone
    assert "exists already, with 1 trial; left as it is" in capsys.readouterr().out
    assert hpsearch(f"create {BOOKKEEPING} --study-name noisy --storage", url) == 2
    assert "was made by the study 'noisy'" in one_line_error(capsys)
    assert hpsearch(f"run {NOISY} --trials 1 --pruner none --storage", url) == 0  # the queued baseline runs
    assert [(t.number, t.state, t.params["c"]) for t in load(url).trials] == [(0, TrialState.COMPLETE, True)]


def test_one_seed_and_one_epoch_are_said_in_the_singular(two_trials, capsys):
    url = two_trials
    capsys.readouterr()
    assert hpsearch(f"confirm {NOISY} --trial 1 --seeds 1 --epochs 1 --storage", url) == 0
    assert hpsearch(f"ablate {NOISY} --method leave-one-out --seeds 1 --epochs 1 --to 1 --storage", url) == 0
    out = capsys.readouterr().out
    assert "over 1 seed" in out and "(1 seed each)" in out and "of 1 epoch " in out, out
    assert not re.search(r"\b1 (seeds|epochs|trainings)\b", out), out
