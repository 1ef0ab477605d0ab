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

Evidence is every finished trial with a value, complete or pruned, as TPE counts it: under
a pruner most trials end pruned, and they still say where not to look. While fewer than
``n_startup_trials`` trials are evidence, the trials are prior draws and uniform ones, half
each at first and, from ``MIN_EVIDENCE`` on, prior draws with probability ``0.5 * support``.
After that the model draws most trials and the prior keeps a share of
``support * n_startup_trials / n`` for ``n`` trials of evidence. ``support`` is the part of
the best quarter of the evidence (ranked as TPE ranks it: complete above pruned, pruned by
how far they got) that the prior finds likelier than a uniform draw would (PriorBand's test
of a prior against the evidence): a prior that the best trials bear out keeps pulling the
search towards it, one that they contradict stops being drawn.

A point that repeats a running trial's (workers started together, a discrete space) is drawn
again, whichever way it was drawn.
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
REDRAWS = 20  # draws of a point before one that repeats a running trial's is kept after all
MIN_EVIDENCE = 4  # finished trials before the prior's share depends on how the best of them lie


class BaselinePriorSampler(BaseSampler):
    """Draws early trials around ``baseline`` (a dict of the space's parameters), mixed with
    uniform draws, then hands over to multivariate TPE as trials finish (module docstring).
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
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        evidence = [t for t in finished if _reached(t) is not None]
        u = self._rng.uniform()
        if len(evidence) < self.n_startup_trials:
            # Once a few trials are in, the prior's half of the start-up depends on them too.
            share = 0.5 * (self.support(evidence, study.direction) if len(evidence) >= MIN_EVIDENCE else 1.0)
            return "prior" if u < share else "uniform"
        share = self.support(evidence, study.direction) * self.n_startup_trials / len(evidence)
        return "prior" if u < share else "model"

    def support(self, trials: list[FrozenTrial], direction: optuna.study.StudyDirection) -> float:
        """The part of the best quarter of ``trials`` (at least one) whose parameters the prior
        finds likelier than a uniform draw would (a mean log density ratio above 0). Trials
        rank as TPE ranks them: a complete trial above a pruned one, a pruned one by how far
        it got, then by its value there."""
        sign = 1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        ranked = sorted(trials, key=lambda t: _reached(t, sign), reverse=True)
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
        if self._ways.get((study.study_name, trial.number)) == "model":
            return self._model.infer_relative_search_space(study, trial)
        # The parameters every other trial has, running ones included, are drawn together, so
        # that the point as a whole can be checked against the running trials' (sample_relative).
        return _shared_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """A point of ``search_space`` that no other running trial holds: redrawn (up to
        ``REDRAWS`` times) where it repeats one, so that workers started together train
        different configurations, also in a discrete space where TPE's constant liar alone
        can propose a running point again."""
        if not search_space:
            return {}
        way = self._ways.get((study.study_name, trial.number), "uniform")
        running = [
            t.params for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number != trial.number
        ]
        # Where the model keeps proposing a running point (it has converged on it), the prior and
        # then uniform draws take over for the rest of the draws.
        fallback = ["model"] * (REDRAWS // 2) if way == "model" else []
        fallback += ["prior"] * (REDRAWS // 4) if way != "uniform" else []
        for draw in [*fallback, *["uniform"] * (REDRAWS - len(fallback))]:
            if draw == "model":
                point = self._model.sample_relative(study, trial, search_space)
            else:
                point = {name: self._draw(draw, name, dist, study, trial) for name, dist in search_space.items()}
            if not any(all(other.get(k, _ABSENT) == v for k, v in point.items()) for other in running):
                break
        return point

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        way = self._ways.get((study.study_name, trial.number), "uniform")
        if way == "model":
            return self._model.sample_independent(study, trial, param_name, param_distribution)
        return self._draw(way, param_name, param_distribution, study, trial)

    def _draw(self, way: str, name: str, dist: BaseDistribution, study: optuna.Study, trial: FrozenTrial) -> Any:
        """One parameter of a prior or uniform draw."""
        if way == "prior" and _holds(dist, self.baseline.get(name, _ABSENT)):
            return self._around(self.baseline[name], dist)
        return self._uniform.sample_independent(study, trial, name, dist)

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


def _shared_space(study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
    """The parameters, with their distributions, that every finished or running trial but
    ``trial`` has (Optuna's intersection search space counts finished trials only)."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    spaces = [t.distributions for t in study.get_trials(deepcopy=False, states=states) if t.number != trial.number]
    spaces = [space for space in spaces if space]
    if not spaces:
        return {}
    first = spaces[0]
    return {name: dist for name, dist in first.items() if all(space.get(name) == dist for space in spaces)}


def _reached(trial: FrozenTrial, sign: float = 1.0) -> tuple[float, float] | None:
    """How far the trial got and its value there (times ``sign``: larger is better); None for
    a trial with no value at all. A complete trial's value is its own (its best epoch)."""
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        return (float("inf"), sign * trial.value)
    if not trial.intermediate_values:
        return None
    step = max(trial.intermediate_values)
    return (float(step), sign * trial.intermediate_values[step])


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
