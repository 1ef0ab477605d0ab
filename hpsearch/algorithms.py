"""Optuna samplers and pruners by the names the command line accepts: adding one is an entry
in ``SAMPLERS`` or ``PRUNERS``."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna import pruners, samplers

from hpsearch.prior import BaselinePriorSampler

# name -> the sampler, given the run's seed (None: unseeded) and the study's baseline.
SAMPLERS = {
    "tpe": lambda seed, baseline: samplers.TPESampler(seed=seed),
    "prior": lambda seed, baseline: BaselinePriorSampler(baseline, seed=seed),
    "random": lambda seed, baseline: samplers.RandomSampler(seed=seed),
    "cmaes": lambda seed, baseline: samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    "gp": lambda seed, baseline: samplers.GPSampler(seed=seed),
    "qmc": lambda seed, baseline: samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
}
# name -> the pruner, sized for trials of at most ``max_epochs`` epochs.
PRUNERS = {
    "hyperband": lambda epochs: pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3),
    "median": lambda max_epochs: pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    "percentile": lambda max_epochs: pruners.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=1),
    "sha": lambda max_epochs: pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    "none": lambda max_epochs: pruners.NopPruner(),
}
DEFAULT_SAMPLER = "tpe"
# Optuna's benchmarks found TPE + Hyperband the strongest pair for budgets of tens to
# hundreds of trials; it also stops weak trials from the first epochs without a warm-up
# of unpruned trials, which matters when a study has 20 epochs per trial.
DEFAULT_PRUNER = "hyperband"


def make_sampler(
    name: str, seed: int | None, fixed: dict[str, Any] | None = None, baseline: dict[str, Any] | None = None
) -> samplers.BaseSampler:
    """The sampler ``name`` (``prior`` draws around ``baseline``, the study's); parameters in
    ``fixed`` are pinned (``--set``)."""
    with warnings.catch_warnings():  # experimental features of Optuna's; a warning per run says nothing new
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        base = SAMPLERS[name](seed, {**(baseline or {}), **(fixed or {})})
        return samplers.PartialFixedSampler(fixed, base) if fixed else base


def make_pruner(name: str, max_epochs: int) -> pruners.BasePruner:
    """The pruner ``name``, sized for trials of at most ``max_epochs`` epochs."""
    return PRUNERS[name](max_epochs)
