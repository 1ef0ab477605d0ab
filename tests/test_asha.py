"""The default search: ASHA's rungs in training images seen, which a resumed study continues,
and proposals that never repeat a running trial's point. On the curve stand-in study (a known
learning curve in images seen, 1000 images an epoch) and on the sampler alone."""

import sqlite3
import warnings
from pathlib import Path

import optuna
from invoke import hpsearch
from optuna.trial import TrialState

from hpsearch.algorithms import ASHA_FIRST_RUNG, ASHA_REDUCTION, rung_steps
from hpsearch.prior import BaselinePriorSampler

CURVE = str(Path(__file__).with_name("curve_study.py"))
PER_EPOCH = 1000
RUNGS = [250, 750, 2250, 6750]  # 0.25 epoch, times 3 while below the 8 epochs


def search(url, trials):
    assert hpsearch(f"run {CURVE} --trials {trials} --seed 3 --storage", url) == 0
    return optuna.load_study(study_name="curve", storage=url).get_trials()


def test_the_rungs_are_images_seen_from_a_quarter_epoch():
    assert (ASHA_FIRST_RUNG, ASHA_REDUCTION) == (0.25, 3)
    assert rung_steps("asha", PER_EPOCH, 8) == RUNGS
    assert rung_steps("asha", 60000, 2) == [15000, 45000]  # 0.25 and 0.75 of an epoch
    assert rung_steps("hyperband", PER_EPOCH, 8) == []  # its rungs are epochs' ends


def test_the_default_pruner_prunes_at_images_seen_rungs(tmp_path):
    trials = search(f"sqlite:///{tmp_path / 'curve.db'}", 30)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(pruned) + len(complete) == 30 and len(pruned) >= 15, (len(pruned), len(complete))
    for t in pruned:
        step = t.last_step
        assert step in RUNGS, step
        assert t.user_attrs["ended"] == f"pruned at {step:,} images (epoch {step / PER_EPOCH:.2f})"
    assert any(t.last_step == RUNGS[0] for t in pruned)  # a quarter epoch decided these
    epochs_ends = [PER_EPOCH * e for e in range(1, 9)]
    for t in complete:
        assert sorted(t.intermediate_values) == sorted(RUNGS + epochs_ends)
        assert t.user_attrs["images_per_epoch"] == PER_EPOCH


def test_a_study_whose_trials_reported_epochs_is_not_searched_in_images(tmp_path, capsys):
    """A study stored before steps were images seen (no ``steps`` attribute, trials without
    ``images_per_epoch``) would mix the units in the pruner's rungs: refused in one line. One
    stored between the two (trials with ``images_per_epoch``) goes on."""
    db = tmp_path / "curve.db"
    url = f"sqlite:///{db}"
    search(url, 3)
    with sqlite3.connect(db) as conn:  # as 0f25453 left a study: the unit only on its trials
        conn.execute("DELETE FROM study_user_attributes WHERE key = 'steps'")
    assert len(search(url, 4)) == 4
    with sqlite3.connect(db) as conn:  # as every study before images seen
        conn.execute("DELETE FROM study_user_attributes WHERE key = 'steps'")
        conn.execute("DELETE FROM trial_user_attributes WHERE key = 'images_per_epoch'")
    capsys.readouterr()
    assert hpsearch(f"run {CURVE} --trials 6 --storage", url) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "steps are epochs, and this run's trials report images" in err[0], err
    assert len(optuna.load_study(study_name="curve", storage=url).trials) == 4  # nothing written
    assert hpsearch(f"show {CURVE} --storage", url) == 0


def promoted(value, competing):
    """Optuna's successive-halving rule at one rung (maximising): in the best 1/3 of the values
    that reached it, this one included; among fewer than 3, the best."""
    ranked = sorted([*competing, value], reverse=True)
    return value >= ranked[max(0, len(ranked) // ASHA_REDUCTION - 1)]


def test_a_resumed_study_continues_its_rungs(tmp_path):
    url = f"sqlite:///{tmp_path / 'curve.db'}"
    first = len(search(url, 12))
    trials = search(url, 24)  # a new process's pruner: the rungs are read back from the storage
    at_first_rung = [t for t in sorted(trials, key=lambda t: t.number) if RUNGS[0] in t.intermediate_values]
    resumed_only_would_differ = False
    for i, t in enumerate(at_first_rung):
        value = t.intermediate_values[RUNGS[0]]
        earlier = [o.intermediate_values[RUNGS[0]] for o in at_first_rung[:i]]
        went_on = t.last_step > RUNGS[0]
        assert went_on == promoted(value, earlier), t.number  # judged against both runs' trials
        if t.number >= first:
            this_run_only = [o.intermediate_values[RUNGS[0]] for o in at_first_rung[:i] if o.number >= first]
            resumed_only_would_differ |= promoted(value, this_run_only) != went_on
    assert resumed_only_would_differ  # a pruner that forgot the first run would have decided otherwise


def discrete(trial):
    return {name: trial.suggest_categorical(name, [0, 1, 2, 3]) for name in ("a", "b", "c")}


def test_two_workers_are_never_proposed_the_point_the_other_is_running():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = BaselinePriorSampler({"a": 1, "b": 1, "c": 1}, seed=0)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        score = lambda p: -abs(p["a"] - 2) - abs(p["b"] - 2) - abs(p["c"] - 2)  # noqa: E731
        running = study.ask()
        running_params = discrete(running)
        for _ in range(80):  # the prior's start-up, then the model: a worker asks while the other runs
            trial = study.ask()
            params = discrete(trial)
            assert params != running_params, trial.number
            study.tell(running, score(running_params))
            running, running_params = trial, params


def test_a_pruned_trial_is_evidence_for_the_prior(tmp_path):
    """The prior's schedule counts pruned trials as TPE does: under ASHA most trials end pruned."""
    url = f"sqlite:///{tmp_path / 'curve.db'}"
    assert hpsearch(f"run {CURVE} --trials 16 --seed 3 --storage", url) == 0
    study = optuna.load_study(study_name="curve", storage=url)
    sampler = BaselinePriorSampler({"quality": 0.5, "kind": "a"}, seed=0)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) < 10
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 16
    ways = {sampler.way(study) for _ in range(50)}
    assert "model" in ways  # past the 10 start-up trials, though fewer than 10 are complete
