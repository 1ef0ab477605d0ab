"""``hpsearch confirm``: the K best trials trained again with S new seeds each, and the
confirmed best, the trial with the best mean over its seeds.

The confirmation is stored on the search study (user attribute ``confirmation``), rows of
earlier confirmations of other trials kept, so that ``export``, the HTML report and the
study's dashboard note all name the same confirmed best.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import notes, replicates
from hpsearch.errors import UsageError
from hpsearch.progress import format_spread, format_table, format_value, plural
from hpsearch.spec import StudySpec

ATTR = "confirmation"


def select(study: optuna.Study, spec: StudySpec, top: int, numbers: list[int]) -> list[FrozenTrial]:
    """The ``top`` best complete trials, then trials ``numbers``, each once, all complete."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UsageError(f"study {study.study_name!r} has no complete trial to confirm; run it first")
    if top > len(complete):
        raise UsageError(
            f"--top {top}: study {study.study_name!r} has only {len(complete)} complete trial(s); use --top "
            f"{len(complete)} or fewer"
        )
    ranked = sorted(complete, key=lambda t: t.value, reverse=spec.direction == "maximize")[:top]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in numbers:
        trial = by_number.get(number)
        if trial is None or trial.state != TrialState.COMPLETE:
            what = "no such trial" if trial is None else trial.state.name
            raise UsageError(f"--trial {number}: {what} in {study.study_name!r}; confirm takes complete trials")
        if trial not in ranked:
            ranked.append(trial)
    return ranked


def differs(spec: StudySpec, params: dict[str, Any]) -> str:
    """The parameters that differ from the study's baseline, as ``name=value`` words."""
    baseline = replicates.realize(spec, spec.baseline)
    words = [f"{k}={format_value(v)}" for k, v in params.items() if baseline.get(k, object()) != v]
    words += [f"-{k}" for k in baseline if k not in params]
    return " ".join(words) or "(the baseline)"


def confirm(
    cfg,
    study: optuna.Study,
    trials: list[FrozenTrial],
    seeds: int,
    argv: list[str],
    epochs: int | None = None,
    out: TextIO | None = None,
):
    """Train ``seeds`` replicates of each trial (those not stored yet) at ``epochs`` (default:
    each trial's own budget), print the table and store the confirmation; return it."""
    out = out or sys.stdout
    spec = cfg.spec
    configs = [replicates.of_trial(spec, t, epochs, replicates.data_tag(cfg)) for t in trials]
    result = replicates.train(cfg, configs, seeds, argv, keep_weights=True, out=out)
    rows = {row["trial"]: row for row in study.user_attrs.get(ATTR, {}).get("rows", [])}
    for trial, config in zip(trials, configs, strict=True):
        summary = result[config.id]
        rows[trial.number] = {
            "trial": trial.number,
            "value": trial.value,
            **summary.as_dict(),
            "epochs": config.epochs,
            "data": config.data,
            "n_params": trial.user_attrs.get("n_params"),
            "differs": differs(spec, config.params),
        }
    maximize = spec.direction == "maximize"
    ranked = sorted((r for r in rows.values() if r["mean"] is not None), key=lambda r: r["mean"], reverse=maximize)
    confirmation = {
        "metric": spec.metric,
        "direction": spec.direction,
        "best": ranked[0]["trial"] if ranked else None,
        "rows": ranked,
    }
    study.set_user_attr(ATTR, confirmation)
    notes.write(spec, study)
    print(table(confirmation, [t.number for t in trials]), file=out)
    return confirmation


def stored(study: optuna.Study) -> dict | None:
    """The study's confirmation, or None before ``hpsearch confirm`` ran on it."""
    confirmation = study.user_attrs.get(ATTR)
    return confirmation if confirmation and confirmation.get("best") is not None else None


def table(confirmation: dict, asked: list[int] | None = None) -> str:
    """The confirmation as aligned text: a row per confirmed trial, best mean first."""
    rows = [("trial", "single run", "mean ± std over seeds", "seeds", "epochs", "params", "differs from the baseline")]
    for r in confirmation["rows"]:
        if asked is not None and r["trial"] not in asked:
            continue
        diverged = f" ({r['diverged']} diverged)" if r["diverged"] else ""
        rows.append(
            (
                str(r["trial"]),
                f"{r['value']:.4f}",
                format_spread(r),
                f"{r['n']}{diverged}",
                str(r["epochs"]),
                f"{r['n_params']:,}" if r.get("n_params") else "-",
                r["differs"],
            )
        )
    best = next(r for r in confirmation["rows"] if r["trial"] == confirmation["best"])
    pick = max if confirmation["direction"] == "maximize" else min
    single = pick(confirmation["rows"], key=lambda r: r["value"])
    line = (
        f"confirmed best: trial {best['trial']}, {confirmation['metric']} {format_spread(best)} "
        f"over {plural(best['n'], 'seed')}"
    )
    if single["trial"] != best["trial"]:
        line += f" (the best single run was trial {single['trial']}, {single['value']:.4f})"
    return format_table(rows) + "\n" + line
