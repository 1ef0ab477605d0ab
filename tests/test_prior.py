"""The baseline prior sampler on a stand-in objective whose optimum is known: a prior at the
optimum finds it sooner than plain TPE, and a prior far from it still finds it."""

import math
import statistics
import warnings

import optuna
import pytest

from hpsearch.prior import BaselinePriorSampler

OPTIMUM = {"lr": 1e-3, "width": 128, "optimizer": "b", "dropout": 0.1}
FAR = {"lr": 1e-5, "width": 8, "optimizer": "d", "dropout": 0.5}
BEST = 1.0
EPSILON = 0.1
SEEDS = range(5)
BUDGET = 150


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1.0, log=True),
        "width": trial.suggest_int("width", 8, 1024, log=True),
        "optimizer": trial.suggest_categorical("optimizer", ["a", "b", "c", "d"]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }


def value(p) -> float:
    """1 at the optimum, falling off with each parameter's distance from it in its own scale."""
    miss = (math.log10(p["lr"]) + 3) ** 2 / 4 + (math.log2(p["width"]) - 7) ** 2 / 9 + 4 * (p["dropout"] - 0.1) ** 2
    return BEST - miss - (0 if p["optimizer"] == "b" else 0.3)


def trials_to_reach(sampler) -> int:
    """Trials until one is within EPSILON of the optimum (BUDGET + 1 if none is)."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for n in range(1, BUDGET + 1):
        trial = study.ask()
        v = value(space(trial))
        study.tell(trial, v)
        if v >= BEST - EPSILON:
            return n
    return BUDGET + 1


@pytest.fixture(autouse=True)
def quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@pytest.fixture(scope="module")
def tpe():
    """Plain TPE's trials to the optimum, seed by seed (8, 28, 35, 31, 135 with Optuna 5.1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return [trials_to_reach(optuna.samplers.TPESampler(seed=s)) for s in SEEDS]


def test_a_prior_at_the_optimum_finds_it_sooner_than_tpe(tpe):
    prior = [trials_to_reach(BaselinePriorSampler(OPTIMUM, seed=s)) for s in SEEDS]
    assert statistics.mean(prior) < statistics.mean(tpe) / 2, (prior, tpe)  # 13.4 against 47.4
    assert max(prior) <= 25, prior


def test_a_prior_far_from_the_optimum_costs_little(tpe):
    far = [trials_to_reach(BaselinePriorSampler(FAR, seed=s)) for s in SEEDS]
    assert max(far) <= BUDGET, far  # every seed reaches the optimum within 150 trials
    assert statistics.mean(far) <= 1.2 * statistics.mean(tpe), (far, tpe)  # 47.0 against 47.4


def test_prior_draws_stay_in_the_space_and_centre_on_the_baseline():
    sampler = BaselinePriorSampler(OPTIMUM, seed=0, n_startup_trials=1000)  # the start-up mix only
    study = optuna.create_study(direction="maximize", sampler=sampler)
    drawn = []
    for _ in range(200):
        trial = study.ask()
        params = space(trial)
        study.tell(trial, value(params))
        drawn.append(params)
    assert all(1e-5 <= p["lr"] <= 1.0 and 8 <= p["width"] <= 1024 and 0 <= p["dropout"] <= 0.5 for p in drawn)
    assert all(isinstance(p["width"], int) for p in drawn)
    near = [p for p in drawn if abs(math.log10(p["lr"]) + 3) < 0.5]
    # Half the trials are prior draws (about 40 % of them within 0.5 decades of 1e-3) and half
    # uniform (10 % of 5 decades): well above the 10 % a uniform sampler gives.
    assert len(near) / len(drawn) > 0.2
    share_b = sum(p["optimizer"] == "b" for p in drawn) / len(drawn)
    assert 0.35 < share_b < 0.6  # 0.5 * (0.6 + 0.4 / 4) + 0.5 / 4 = 0.475


def test_a_conditional_parameter_the_baseline_lacks_is_drawn_uniformly():
    def conditional(trial):
        p = {"opt": trial.suggest_categorical("opt", ["sgd", "adam"])}
        if p["opt"] == "sgd":
            p["momentum"] = trial.suggest_float("momentum", 0.0, 0.99)
        return p

    sampler = BaselinePriorSampler({"opt": "adam"}, seed=1, n_startup_trials=1000)
    study = optuna.create_study(sampler=sampler)
    momenta = []
    for _ in range(100):
        trial = study.ask()
        p = conditional(trial)
        study.tell(trial, 0.0)
        momenta += [p["momentum"]] if "momentum" in p else []
    assert momenta and min(momenta) < 0.3 and max(momenta) > 0.7


def test_run_with_the_prior_sampler_ends_at_exactly_n(tmp_path):
    """Through hpsearch's run, with Hyperband's brackets and a --set value pinned."""
    from pathlib import Path

    from invoke import hpsearch

    noisy = str(Path(__file__).with_name("noisy_study.py"))
    url = f"sqlite:///{tmp_path / 'noisy.db'}"
    assert hpsearch(f"run {noisy} --trials 12 --sampler prior --seed 0 --set c=true --storage", url) == 0
    trials = optuna.load_study(study_name="noisy", storage=url).trials
    assert len(trials) == 12 and all(t.params["c"] is True for t in trials)
    assert {t.state for t in trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
