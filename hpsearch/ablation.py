"""``hpsearch ablate``: which of the differences between the study's baseline and the best
configuration carry the gain, each step measured over seeds.

The ablation path (Fawcett & Hoos, J. Heuristics 2016): from the baseline, each round tries
switching each parameter that still differs to its value in the target, trains every
candidate with S seeds (replicates, ``hpsearch.replicates``), keeps the one that gains most,
and repeats until the target is reached: about d(d+1)/2 candidates for d differences.
Leave-one-out: revert each difference of the target alone, d candidates. A conditional
parameter moves with the parameter it depends on (``hpsearch.space``); a switch that gives a
configuration the space cannot hold is skipped, and said.

The result is stored on the search study (user attribute ``ablation``) for the HTML report.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial

from hpsearch import notes, replicates, space
from hpsearch.errors import UsageError
from hpsearch.progress import format_duration, format_spread, format_table, format_value, plural
from hpsearch.spec import StudySpec
from hpsearch.study import baseline_trial

ATTR = "ablation"
METHODS = ("path", "leave-one-out")


@dataclass(frozen=True)
class Group:
    """Parameters that switch together: one, and the differing ones that depend on it."""

    names: tuple[str, ...]

    @property
    def label(self) -> str:
        return " + ".join(self.names)


def groups(spec: StudySpec, baseline: dict[str, Any], target: dict[str, Any]) -> list[Group]:
    """The differences between two configurations, in the space's order, each conditional
    parameter grouped with the differing parameters its condition names."""
    params = space.parameters(spec.space)
    # The space reader does not walk branches behind a float: what it missed comes last.
    names = [p.name for p in params] + [k for k in {**baseline, **target} if k not in {p.name for p in params}]
    differing = [name for name in names if baseline.get(name, _ABSENT) != target.get(name, _ABSENT)]
    owner = {name: name for name in differing}

    def root(name: str) -> str:
        while owner[name] != name:
            name = owner[name]
        return name

    for p in params:
        if p.name in owner:
            for condition in p.only_when:
                if condition in owner:
                    owner[root(p.name)] = root(condition)
    found: dict[str, list[str]] = {}
    for name in differing:
        found.setdefault(root(name), []).append(name)
    return [Group(tuple(names)) for names in found.values()]


_ABSENT = object()


def switch(spec: StudySpec, current: dict[str, Any], group: Group, toward: dict[str, Any]) -> dict[str, Any] | None:
    """``current`` with ``group`` set as in ``toward``, as the space takes it; None when the
    space cannot hold that configuration, or reads nothing of the switch."""
    candidate = {k: v for k, v in current.items() if k not in group.names}
    candidate.update({k: toward[k] for k in group.names if k in toward})
    try:
        realized = replicates.realize(spec, candidate)
    except ValueError:
        return None
    return None if realized == current else realized


@dataclass
class Step:
    label: str  # the group switched, or "baseline" / "target"
    change: str  # from -> to
    summary: replicates.Summary


def endpoints(spec: StudySpec, study: optuna.Study, to: int | None, out: TextIO) -> tuple[FrozenTrial, FrozenTrial]:
    """The baseline trial and the target: ``to``, else the confirmed best, else the best
    single trial (said). One line, exit 2, where there is nothing to ablate."""
    from hpsearch.confirmation import stored as stored_confirmation
    from hpsearch.exporting import pick_trial

    baseline = baseline_trial(study)
    if baseline is None:
        raise UsageError(
            f"study {study.study_name!r} has no complete baseline trial (trial 0 of a new study) to ablate from"
        )
    if to is None:
        confirmation = stored_confirmation(study)
        if confirmation is not None:
            to = confirmation["best"]
            print(f"target: trial {to}, the confirmed best", file=out)
        else:
            target = pick_trial(study, None)
            print(f"target: trial {target.number}, the best single run (no 'hpsearch confirm' yet)", file=out)
            to = target.number
    target = pick_trial(study, to)
    if not groups(spec, replicates.realize(spec, baseline.params), replicates.realize(spec, target.params)):
        raise UsageError(
            f"trial {target.number} has the baseline's own parameters: nothing to ablate; pass --to TRIAL "
            "with another complete trial"
        )
    if target.number == baseline.number:
        raise UsageError(f"the target is the baseline itself (trial {baseline.number}): nothing to ablate")
    return baseline, target


def cost(method: str, d: int, seeds: int) -> int:
    """Trainings the method needs for d differences at most: the endpoints and the candidates."""
    candidates = d * (d + 1) // 2 - 1 if method == "path" else d
    return seeds * (2 + candidates)


def ablate(
    cfg,
    study: optuna.Study,
    baseline_trial: FrozenTrial,
    target_trial: FrozenTrial,
    *,
    method: str,
    seeds: int,
    argv: list[str],
    epochs: int | None = None,
    out: TextIO | None = None,
) -> dict:
    """Run the ablation, print its table and store it on the study; return what is stored."""
    out = out or sys.stdout
    spec = cfg.spec
    epochs = epochs or replicates.epochs_of(target_trial)
    data = replicates.data_tag(cfg)
    base = replicates.realize(spec, baseline_trial.params)
    target = replicates.realize(spec, target_trial.params)
    diffs = groups(spec, base, target)
    sign = 1 if spec.direction == "maximize" else -1
    seconds = [t.user_attrs.get("epoch_seconds") for t in (baseline_trial, target_trial)]
    known = [s for s in seconds if s]
    trainings = cost(method, len(diffs), seeds)
    estimate = (
        f", about {format_duration(trainings * epochs * sum(known) / len(known))} for one worker at the stored "
        f"epoch times of trials {baseline_trial.number} and {target_trial.number}, on the data they trained on "
        "(replicates already stored are not redone)"
        if known
        else ""
    )
    print(
        f"ablation ({method}) of {study.study_name}: trial {baseline_trial.number} (baseline) -> trial "
        f"{target_trial.number}, {len(diffs)} difference(s): {', '.join(g.label for g in diffs)}; at most "
        f"{plural(trainings, 'training')} of {plural(epochs, 'epoch')} ({plural(seeds, 'seed')} each){estimate}",
        file=out,
        flush=True,
    )

    def measure(configs: list[replicates.Config]) -> list[replicates.Summary]:
        found = replicates.train(cfg, configs, seeds, argv, keep_weights=False, out=out)
        return [found[c.id] for c in configs]

    def change(group: Group, old: dict, new: dict) -> str:
        def side(p: dict) -> str:
            return ", ".join(format_value(p[k]) if k in p else "-" for k in group.names)

        return f"{side(old)} -> {side(new)}"

    start = replicates.Config(base, epochs, f"trial {baseline_trial.number}", data)
    end = replicates.Config(target, epochs, f"trial {target_trial.number}", data)
    skipped: list[str] = []
    if method == "path":
        base_summary, end_summary = measure([start, end])
        steps = [Step("baseline", f"trial {baseline_trial.number}", base_summary)]
        current, remaining = base, list(diffs)
        while remaining:
            candidates = []
            for group in remaining:
                config = switch(spec, current, group, target)
                if config is None:
                    skipped.append(f"{group.label} alone from step {len(steps) - 1}")
                    print(
                        f"skipped: switching {group.label} alone gives a configuration the space cannot hold", file=out
                    )
                else:
                    candidates.append((group, config))
            if not candidates:  # nothing switches alone any more: the rest together
                group = Group(tuple(n for g in remaining for n in g.names))
                candidates = [(group, target)]
            label = f"ablation step {len(steps)}"
            configs = [replicates.Config(c, epochs, f"{label}: + {g.label}", data) for g, c in candidates]
            results = measure(configs)
            pick = max(
                range(len(candidates)),
                key=lambda i: (sign * results[i].mean if results[i].mean is not None else float("-inf"), -i),
            )
            group, config = candidates[pick]
            steps.append(Step(group.label, change(group, current, config), results[pick]))
            current = config
            remaining = [g for g in remaining if not set(g.names) & set(group.names)]
        steps[-1].label += " (= target)"
    else:
        base_summary, end_summary = measure([start, end])
        steps = [Step("target", f"trial {target_trial.number}", end_summary)]
        reverted = []
        for group in diffs:
            config = switch(spec, target, group, base)
            if config is None:
                skipped.append(f"{group.label} alone")
                print(f"skipped: reverting {group.label} alone gives a configuration the space cannot hold", file=out)
            else:
                reverted.append((group, config))
        configs = [replicates.Config(c, epochs, f"leave-one-out: - {g.label}", data) for g, c in reverted]
        for (group, config), summary in zip(reverted, measure(configs), strict=True):
            steps.append(Step(group.label, change(group, target, config), summary))
        steps.append(Step("baseline", f"trial {baseline_trial.number}", base_summary))
    about = {
        "method": method,
        "seeds": seeds,
        "epochs": epochs,
        "data": data,
        "metric": spec.metric,
        "baseline": baseline_trial.number,
        "target": target_trial.number,
        "skipped": skipped,
    }
    stored = _store(study, about, steps, base_summary, end_summary, sign)
    notes.write(spec, study)
    print(table(stored), file=out)
    return stored


def _store(study, about: dict, steps: list[Step], base, end, sign: int) -> dict:
    """Store ``about`` (what was ablated) with each step's mean, gain and share of the total."""
    path = about["method"] == "path"
    total = sign * (end.mean - base.mean) if end.mean is not None and base.mean is not None else None
    rows = []
    previous = None
    for step in steps:
        mean = step.summary.mean
        if path:
            gain = sign * (mean - previous) if mean is not None and previous is not None else None
            previous = mean
        else:  # what reverting this difference alone costs the target
            gain = (
                sign * (end.mean - mean)
                if mean is not None and end.mean is not None and step.label not in ("target", "baseline")
                else None
            )
        share = gain / total if gain is not None and total else None
        rows.append(
            {"parameter": step.label, "change": step.change, **step.summary.as_dict(), "gain": gain, "share": share}
        )
    stored = {**about, "total_gain": total, "steps": rows}
    study.set_user_attr(ATTR, stored)
    return stored


def table(stored: dict) -> str:
    """The stored ablation as aligned text."""
    path = stored["method"] == "path"
    head = ("step", "parameter", "from -> to", "mean ± std", "n", "gain" if path else "lost when reverted", "share")
    rows = [head]
    for i, r in enumerate(stored["steps"]):
        rows.append(
            (
                str(i),
                r["parameter"],
                r["change"],
                format_spread(r),
                str(r["n"]),
                "" if r["gain"] is None else f"{r['gain']:+.4f}",
                "" if r["share"] is None else f"{100 * r['share']:.0f} %",
            )
        )
    total = stored["total_gain"]
    line = (
        f"{stored['method']} from trial {stored['baseline']} to trial {stored['target']}: total gain "
        + ("-" if total is None else f"{total:+.4f}")
        + f" ({stored['metric']}, validation, {plural(stored['seeds'], 'seed')}, {plural(stored['epochs'], 'epoch')})"
    )
    return format_table(rows) + "\n" + line
