"""The Markdown notes optuna-dashboard shows beside a study, and what they say about the
parameter importances it draws."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard import save_note

from hpsearch.progress import format_spread, plural
from hpsearch.spec import StudySpec
from hpsearch.study import baseline_trial

# Optuna's PedAnovaImportanceEvaluator (the evaluator of the report and of optuna-dashboard)
# wants at least 5 trials above its target quantile of 10 %: 50 complete trials.
IMPORTANCE_MIN_COMPLETE = 50


def importance_caveat(complete: int) -> str:
    """One sentence on how many complete trials the importances rest on; a warning below
    ``IMPORTANCE_MIN_COMPLETE``."""
    said = f"Parameter importances rest on {complete} complete trial{'' if complete == 1 else 's'}"
    if complete < IMPORTANCE_MIN_COMPLETE:
        return f"{said}: too few to trust, they settle from about {IMPORTANCE_MIN_COMPLETE} on."
    return f"{said}."


class StudyNote:
    """An Optuna callback that writes the study's note: what is searched, and the
    importance caveat while it changes. After ``IMPORTANCE_MIN_COMPLETE`` complete trials
    each worker writes it once more and then leaves it, so a long study pays nothing."""

    def __init__(self, spec: StudySpec):
        self.spec, self.settled = spec, False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.settled or trial.state != TrialState.COMPLETE:
            return
        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        self.settled = complete >= IMPORTANCE_MIN_COMPLETE
        write(self.spec, study, complete)


def write(spec: StudySpec, study: optuna.Study, complete: int | None = None) -> None:
    """Write the study's note: the search, and the confirmation and ablation where stored."""
    if complete is None:
        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    attrs = study.user_attrs
    # Trial 0's own label, in any state: it says so where --set changed the study's baseline.
    baseline = baseline_trial(study, states=None)
    label = baseline.user_attrs["baseline"] if baseline else spec.baseline_source
    parts = [
        f"**{spec.name}**: {spec.description}\n\n"
        f"- {spec.direction} `{spec.metric}`; baseline (trial 0): {label}\n"
        f"- {importance_caveat(complete)}\n"
    ]
    per_epoch = baseline.user_attrs.get("images_per_epoch") if baseline else None
    if per_epoch:
        parts[0] += (
            f"- Steps of the intermediate values are training images seen, {per_epoch:,} an epoch: "
            "trials of every batch size compare after the same work, and the pruner's first rungs "
            "lie inside the first epoch.\n"
        )
    if attrs.get("confirmation", {}).get("rows"):
        parts.append(_confirmation(attrs["confirmation"]))
    if attrs.get("ablation"):
        parts.append(_ablation(attrs["ablation"]))
    save_note(study, "\n".join(parts))


def _confirmation(confirmation: dict) -> str:
    lines = [
        f"### Confirmed over seeds: best trial {confirmation['best']}",
        "",
        "| trial | single run | mean ± std | seeds | differs from the baseline |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['trial']} | {r['value']:.4f} | {format_spread(r)} | {r['n']} | {r['differs']} |"
        for r in confirmation["rows"]
    ]
    return "\n".join(lines) + "\n"


def _ablation(ablation: dict) -> str:
    lines = [
        f"### Ablation ({ablation['method']}) from trial {ablation['baseline']} to trial {ablation['target']}, "
        f"{plural(ablation['seeds'], 'seed')}",
        "",
        "| step | parameter | from -> to | mean ± std | gain | share |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(ablation["steps"]):
        gain = "" if r["gain"] is None else f"{r['gain']:+.4f}"
        share = "" if r["share"] is None else f"{100 * r['share']:.0f} %"
        lines.append(f"| {i} | {r['parameter']} | {r['change']} | {format_spread(r)} | {gain} | {share} |")
    return "\n".join(lines) + "\n"
