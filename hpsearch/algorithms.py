"""Optuna samplers and pruners by the names the command line accepts."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("hyperband", "median", "percentile", "sha", "none")
DEFAULT_SAMPLER = "tpe"
# Optuna's benchmarks found TPE + Hyperband the strongest pair for budgets of tens to
# hundreds of trials; it also stops weak trials from the first epochs without a warm-up
# of unpruned trials, which matters when a study has 20 epochs per trial.
DEFAULT_PRUNER = "hyperband"


def make_sampler(name: str, seed: int | None, fixed: dict[str, Any] | None = None) -> optuna.samplers.BaseSampler:
    """The sampler ``name``; parameters in ``fixed`` are pinned (``--set``)."""
    samplers = optuna.samplers
    base = {
        "tpe": lambda: samplers.TPESampler(seed=seed),
        "random": lambda: samplers.RandomSampler(seed=seed),
        "cmaes": lambda: samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda: samplers.GPSampler(seed=seed),
        "qmc": lambda: samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
    }[name]()
    if not fixed:
        return base
    with warnings.catch_warnings():  # experimental since Optuna 2.4; a warning per run says nothing new
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return samplers.PartialFixedSampler(fixed, base)


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    """The pruner ``name``, sized for trials of at most ``max_epochs`` reports."""
    pruners = optuna.pruners
    return {
        "hyperband": lambda: pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3),
        "median": lambda: pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        "percentile": lambda: pruners.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=1),
        "sha": lambda: pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        "none": lambda: pruners.NopPruner(),
    }[name]()
