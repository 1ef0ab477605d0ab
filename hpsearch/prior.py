"""A sampler that starts from the expert's configuration: the study's baseline as a prior.

In the spirit of piBO (Hvarfner et al., ICLR 2022) and PriorBand (Mallik et al., NeurIPS
2023): the best point anyone knows should shape the first trials, not only trial 0, and the
model of the results should take over as they accumulate, so that a misleading prior costs
a few trials, not the search.

Each trial is drawn one of three ways, decided when the trial starts:

- **prior**: every parameter from a distribution centred on the baseline, in the
  parameter's own scale (log where the space is log): a normal of ``PRIOR_WIDTH`` times the
  range, truncated to the range; a categorical keeps the baseline's choice with probability
  ``PRIOR_MASS`` and else draws uniformly. A parameter the baseline does not hold (a
  conditional one off in the baseline) is drawn uniformly.
- **uniform**: Optuna's ``RandomSampler``.
- **model**: Optuna's multivariate ``TPESampler`` (``group=True`` for conditional spaces,
  ``constant_liar=True`` so that workers running at once are not proposed the same point).

While fewer than ``n_startup_trials`` trials are complete, the trials are prior draws and
uniform ones, half each at first and, from ``MIN_EVIDENCE`` complete trials on, prior draws
with probability ``0.5 * support``. After that the model draws most trials and the prior
keeps a share of ``support * n_startup_trials / n`` for ``n`` complete trials. ``support`` is
the part of the best quarter of the complete trials that the prior finds likelier than a
uniform draw would (PriorBand's test of a prior against the evidence): a prior that the best
trials bear out keeps pulling the search towards it, one that they contradict stops being
drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

PRIOR_WIDTH = 0.2  # the prior's standard deviation, as a fraction of the parameter's range (in its scale)
PRIOR_MASS = 0.6  # the probability that a categorical prior draw keeps the baseline's choice
N_STARTUP_TRIALS = 10
MIN_EVIDENCE = 4  # complete trials before the prior's share depends on how the best of them lie


class BaselinePriorSampler(BaseSampler):
    """Draws early trials around ``baseline`` (a dict of the space's parameters), mixed with
    uniform draws, then hands over to multivariate TPE as trials complete (module docstring).
    Usable by any study whose space the baseline's names belong to; ``seed`` makes its draws
    repeatable."""

    def __init__(
        self, baseline: Mapping[str, Any], *, n_startup_trials: int = N_STARTUP_TRIALS, seed: int | None = None
    ):
        self.baseline = dict(baseline)
        self.n_startup_trials = n_startup_trials
        self._rng = np.random.RandomState(seed)
        self._uniform = RandomSampler(seed=seed)
        self._model = TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=n_startup_trials
        )
        self._ways: dict[tuple[str, int], str] = {}  # (study, trial number) -> how it is drawn

    def way(self, study: optuna.Study) -> str:
        """How the study's next trial is drawn: ``prior``, ``uniform`` or ``model`` (at random,
        by the schedule of the module docstring)."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        u = self._rng.uniform()
        if len(complete) < self.n_startup_trials:
            # Once a few trials are in, the prior's half of the start-up depends on them too.
            share = 0.5 * (self.support(complete, study.direction) if len(complete) >= MIN_EVIDENCE else 1.0)
            return "prior" if u < share else "uniform"
        share = self.support(complete, study.direction) * self.n_startup_trials / len(complete)
        return "prior" if u < share else "model"

    def support(self, complete: list[FrozenTrial], direction: optuna.study.StudyDirection) -> float:
        """The part of the best quarter of ``complete`` (at least one trial) whose parameters
        the prior finds likelier than a uniform draw would (a mean log density ratio above 0)."""
        ranked = sorted(complete, key=lambda t: t.value, reverse=direction == optuna.study.StudyDirection.MAXIMIZE)
        best = ranked[: max(1, len(ranked) // 4)]
        return sum(self._log_ratio(t) > 0 for t in best) / len(best)

    def _log_ratio(self, trial: FrozenTrial) -> float:
        """The mean over the baseline's parameters of log(prior density / uniform density) at
        the trial's values."""
        ratios = []
        for name, dist in trial.distributions.items():
            center = self.baseline.get(name, _ABSENT)
            if not _holds(dist, center):
                continue
            value = trial.params[name]
            if isinstance(dist, CategoricalDistribution):
                k = len(dist.choices)
                prior = (1 - PRIOR_MASS) / k + (PRIOR_MASS if value == center else 0.0)
                ratios.append(math.log(prior * k))
                continue
            scale = _scale(dist)
            width = scale(dist.high) - scale(dist.low)
            if width <= 0:
                continue
            z = (scale(value) - scale(center)) / (PRIOR_WIDTH * width)
            ratios.append(-0.5 * z * z - math.log(PRIOR_WIDTH * math.sqrt(2 * math.pi)))
        return sum(ratios) / len(ratios) if ratios else 0.0

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._ways[(study.study_name, trial.number)] = self.way(study)
        self._model.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._ways.get((study.study_name, trial.number)) != "model":
            return {}
        return self._model.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        return self._model.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        way = self._ways.get((study.study_name, trial.number), "uniform")
        if way == "model":
            return self._model.sample_independent(study, trial, param_name, param_distribution)
        if way == "prior" and _holds(param_distribution, self.baseline.get(param_name, _ABSENT)):
            return self._around(self.baseline[param_name], param_distribution)
        return self._uniform.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._ways.pop((study.study_name, trial.number), None)
        self._model.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._uniform.reseed_rng()
        self._model.reseed_rng()

    def _around(self, center: Any, dist: BaseDistribution) -> Any:
        """A draw from the prior centred on ``center``, inside ``dist``."""
        if isinstance(dist, CategoricalDistribution):
            if self._rng.uniform() < PRIOR_MASS:
                return center
            return dist.choices[self._rng.randint(len(dist.choices))]
        scale = _scale(dist)
        low, high, mu = scale(dist.low), scale(dist.high), scale(center)
        sigma = PRIOR_WIDTH * (high - low)
        x = mu
        for _ in range(100):  # a truncated normal by rejection: the range is never far from the centre
            x = self._rng.normal(mu, sigma) if sigma > 0 else mu
            if low <= x <= high:
                break
        x = min(max(x, low), high)
        value = math.exp(x) if dist.log else x
        if dist.step is not None:  # onto the distribution's grid
            value = dist.low + round((value - dist.low) / dist.step) * dist.step
        value = min(max(value, dist.low), dist.high)
        return int(round(value)) if isinstance(dist, IntDistribution) else float(value)


_ABSENT = object()


def _scale(dist: FloatDistribution | IntDistribution):
    """The parameter's own scale: log where the space is log."""
    return math.log if dist.log else float


def _holds(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is a point of ``dist`` (the baseline's value fits the space)."""
    if value is _ABSENT:
        return False
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(dist, FloatDistribution | IntDistribution):
        return isinstance(value, int | float) and not isinstance(value, bool) and dist.low <= value <= dist.high
    return False
