"""Reading a define-by-run search space without running a study: which parameters it can
suggest and their distributions, so ``--set KEY=VALUE`` is checked before anything starts."""

from __future__ import annotations

from collections.abc import Callable
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

    def suggest_float(self, name, low, high, *, step=None, log=False):
        self.distributions[name] = FloatDistribution(low, high, log=log, step=step)
        return low

    def suggest_int(self, name, low, high, *, step=1, log=False):
        self.distributions[name] = IntDistribution(low, high, log=log, step=step)
        values = range(low, high + 1, step)
        # A small integer range may decide what else is suggested (a layer count): walk it.
        return self._branch(values) if len(values) <= SMALL_INT_RANGE else low

    def suggest_categorical(self, name, choices):
        self.distributions[name] = CategoricalDistribution(choices)
        return self._branch(choices)

    def _branch(self, choices):
        index = self.script[len(self.path)] if len(self.path) < len(self.script) else 0
        self.path.append((index, len(choices)))
        return choices[index]


def distributions(space: Callable[[Any], dict], limit: int = 100_000) -> dict[str, BaseDistribution]:
    """Every parameter ``space`` can suggest, found by walking each branch of categorical
    and small-integer suggestions (depth first, odometer order). Branches that depend on a
    float or a wide integer range are not walked."""
    found: dict[str, BaseDistribution] = {}
    script: list[int] = []
    for _ in range(limit):
        probe = _Probe(script)
        space(probe)
        found.update(probe.distributions)
        path = probe.path
        while path and path[-1][0] + 1 >= path[-1][1]:
            path.pop()
        if not path:
            break
        script = [index for index, _ in path[:-1]] + [path[-1][0] + 1]
    return found


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
