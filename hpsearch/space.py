"""Reading a define-by-run search space without running a study: which parameters it can
suggest, their distributions and the choices they depend on, so ``--set KEY=VALUE`` is
checked before anything starts and ``hpsearch list STUDY`` can show the space."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from hpsearch.errors import UsageError

SMALL_INT_RANGE = 16


class _Probe:
    """Stands in for ``optuna.Trial``: records each suggestion's distribution and answers
    categorical and small-integer suggestions from a script of choice indices (other
    numbers get their low end)."""

    def __init__(self, script: list[int]):
        self.script = script
        self.path: list[tuple[int, int]] = []  # (chosen index, number of choices) per categorical
        self.distributions: dict[str, BaseDistribution] = {}
        self.decisions: dict[str, Any] = {}  # name -> value of each walked suggestion on this branch

    def suggest_float(self, name, low, high, *, step=None, log=False):
        self.distributions[name] = FloatDistribution(low, high, log=log, step=step)
        return low

    def suggest_int(self, name, low, high, *, step=1, log=False):
        self.distributions[name] = IntDistribution(low, high, log=log, step=step)
        values = range(low, high + 1, step)
        # A small integer range may decide what else is suggested (a layer count): walk it.
        return self._branch(name, values) if len(values) <= SMALL_INT_RANGE else low

    def suggest_categorical(self, name, choices):
        self.distributions[name] = CategoricalDistribution(choices)
        return self._branch(name, choices)

    def _branch(self, name, choices):
        index = self.script[len(self.path)] if len(self.path) < len(self.script) else 0
        self.path.append((index, len(choices)))
        self.decisions[name] = choices[index]
        return choices[index]


def _branches(space: Callable[[Any], dict], limit: int) -> Iterator[_Probe]:
    """One probe per branch of categorical and small-integer suggestions (depth first,
    odometer order). Branches that depend on a float or a wide integer range are not walked."""
    script: list[int] = []
    for _ in range(limit):
        probe = _Probe(script)
        space(probe)
        yield probe
        path = probe.path
        while path and path[-1][0] + 1 >= path[-1][1]:
            path.pop()
        if not path:
            return
        script = [index for index, _ in path[:-1]] + [path[-1][0] + 1]


def distributions(space: Callable[[Any], dict], limit: int = 100_000) -> dict[str, BaseDistribution]:
    """Every parameter ``space`` can suggest, in the order the space suggests them."""
    return _union(list(_branches(space, limit)))


def _union(probes: list[_Probe]) -> dict[str, BaseDistribution]:
    # The walk meets a conditional parameter after branches without it: each one goes in
    # before the parameter its branch suggests next, so the order reads like the study file.
    order: list[str] = []
    found: dict[str, BaseDistribution] = {}
    for probe in probes:
        following = None
        for name in reversed(probe.distributions):
            if name not in found:
                order.insert(order.index(following) if following else len(order), name)
                found[name] = probe.distributions[name]
            following = name
    return {name: found[name] for name in order}


@dataclass(frozen=True)
class Parameter:
    """A searched parameter, and the values of other walked suggestions that every branch
    suggesting it has (``{"optimizer": ("sgd",)}``: suggested only when optimizer is sgd)."""

    name: str
    distribution: BaseDistribution
    only_when: dict[str, tuple[Any, ...]]


def parameters(space: Callable[[Any], dict], limit: int = 100_000) -> list[Parameter]:
    """Every parameter ``space`` can suggest, in the order the space suggests them, with the
    conditions it is suggested under. A condition holds on every branch that suggests the
    parameter; several conditions are a summary (an "or" across branches reads as the
    values each choice takes there), and conditions on floats or wide integer ranges are
    not seen."""
    probes = list(_branches(space, limit))
    found = _union(probes)
    seen = {name: {} for name in found}  # ordered sets: dicts of value -> None
    for probe in probes:
        for name, value in probe.decisions.items():
            seen[name][value] = None
    result = []
    for name, dist in found.items():
        suggesting = [p.decisions for p in probes if name in p.distributions]
        only_when = {}
        for other, values in seen.items():
            # Where this parameter is also suggested without that choice being asked, no value
            # of the choice is required (what asks the choice shows as its own condition).
            if other == name or not values or any(other not in d for d in suggesting):
                continue
            taken = {d[other] for d in suggesting}
            if len(taken) < len(values):
                only_when[other] = tuple(v for v in values if v in taken)
        result.append(Parameter(name, dist, only_when))
    return result


def parse_fixed(assignments: list[str], space: Callable[[Any], dict], study: str) -> dict[str, Any]:
    """Turn ``["lr=0.01", "pooling=max"]`` into typed values inside the space.

    Raises UsageError naming the assignment and what would be accepted.
    """
    dists = distributions(space)
    fixed: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=0.001")
        if key not in dists:
            raise UsageError(
                f"--set {item!r}: {study} has no parameter {key!r}; its parameters: {', '.join(sorted(dists))}"
            )
        fixed[key] = _parse_value(item, key, text, dists[key])
    return fixed


def _parse_value(item: str, key: str, text: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        for choice in dist.choices:
            if str(choice).lower() == text.lower():
                return choice
        raise UsageError(f"--set {item!r}: {key} must be one of {', '.join(map(str, dist.choices))}")
    try:
        value = int(text) if isinstance(dist, IntDistribution) else float(text)
    except ValueError:
        kind = "an integer" if isinstance(dist, IntDistribution) else "a number"
        raise UsageError(f"--set {item!r}: {key} must be {kind} in [{dist.low}, {dist.high}]") from None
    if not _within(dist, value):
        raise UsageError(f"--set {item!r}: {value} is outside {key}'s range [{dist.low}, {dist.high}]")
    return value


def _within(dist: IntDistribution | FloatDistribution, value: float) -> bool:
    """Whether ``value`` lies in ``dist``'s range and on its step (Optuna's own check is private)."""
    if not dist.low <= value <= dist.high:
        return False
    steps = 0.0 if dist.step is None else (value - dist.low) / dist.step
    return abs(steps - round(steps)) < 1e-8
