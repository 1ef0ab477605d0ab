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
# The default pruner's rungs: asynchronous successive halving (ASHA, Li et al., MLSys 2020) in
# training images seen, so that its first look at a trial is a fraction of an epoch and trials
# of every batch size are compared after the same work. A trial passes a rung if it is in the
# best 1/ASHA_REDUCTION of the trials that reached it. Chosen from the rank correlation
# between a rung's value and the final one (benchmarks/rung_correlation.py, docs/search.md).
ASHA_FIRST_RUNG = 0.25  # epochs
ASHA_REDUCTION = 3


def _first_rung(images_per_epoch: int) -> int:
    return max(1, round(ASHA_FIRST_RUNG * images_per_epoch))


def _asha(epochs: int, images_per_epoch: int) -> pruners.BasePruner:
    return pruners.SuccessiveHalvingPruner(min_resource=_first_rung(images_per_epoch), reduction_factor=ASHA_REDUCTION)


# name -> the pruner, for trials of at most ``epochs`` epochs whose steps count
# ``images_per_epoch`` a epoch (1 where a trainer reports epochs).
PRUNERS = {
    "asha": _asha,
    "hyperband": lambda epochs, per_epoch: pruners.HyperbandPruner(
        min_resource=per_epoch, max_resource=epochs * per_epoch, reduction_factor=3
    ),
    "median": lambda epochs, per_epoch: pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=per_epoch),
    "percentile": lambda epochs, per_epoch: pruners.PercentilePruner(
        25.0, n_startup_trials=5, n_warmup_steps=per_epoch
    ),
    "sha": lambda epochs, per_epoch: pruners.SuccessiveHalvingPruner(min_resource=per_epoch, reduction_factor=3),
    "none": lambda epochs, per_epoch: pruners.NopPruner(),
}
# Every study has a baseline, the best point anyone knew: the default sampler starts from it
# and hands over to multivariate TPE, which sees every trial, pruned ones too (ASHA keeps no
# brackets that would hide two thirds of them, as Hyperband does).
DEFAULT_SAMPLER = "prior"
DEFAULT_PRUNER = "asha"


def make_sampler(
    name: str, seed: int | None, fixed: dict[str, Any] | None = None, baseline: dict[str, Any] | None = None
) -> samplers.BaseSampler:
    """The sampler ``name`` (``prior`` draws around ``baseline``, the study's); parameters in
    ``fixed`` are pinned (``--set``)."""
    with warnings.catch_warnings():  # experimental features of Optuna's; a warning per run says nothing new
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        base = SAMPLERS[name](seed, {**(baseline or {}), **(fixed or {})})
        return samplers.PartialFixedSampler(fixed, base) if fixed else base


def make_pruner(name: str, max_epochs: int, images_per_epoch: int | None = None) -> pruners.BasePruner:
    """The pruner ``name``, sized for trials of at most ``max_epochs`` epochs whose steps are
    training images seen, ``images_per_epoch`` a epoch (None: the steps are epochs)."""
    return PRUNERS[name](max_epochs, images_per_epoch or 1)


def rung_steps(name: str, images_per_epoch: int, epochs: int) -> list[int]:
    """The steps (images seen) inside a trial of ``epochs`` epochs at which the pruner ``name``
    compares trials: where its trainer must take the validation metric besides each epoch's end.
    Only ``asha`` has rungs finer than an epoch."""
    if name != "asha":
        return []
    step, steps = _first_rung(images_per_epoch), []
    while step < epochs * images_per_epoch:
        if step % images_per_epoch:
            steps.append(step)
        step *= ASHA_REDUCTION
    return steps
