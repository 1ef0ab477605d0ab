"""One self-contained HTML page about a stored study: header, Optuna's figures (the learning
curves drawn here, to name each curve in a legend), and the best trial's parameters beside
the study's hand-tuned baseline.

The page works offline: plotly.js is inlined once in ``<head>`` and every figure is a
``<div>`` that uses it. Each part is a ``<section>`` with a fixed id (``SECTIONS``).
"""

from __future__ import annotations

import html
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import optuna.visualization as vis
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.offline import get_plotlyjs

from hpsearch.atomic import replacing
from hpsearch.notes import importance_caveat
from hpsearch.progress import format_spread
from hpsearch.spec import StudySpec
from hpsearch.study import baseline_trial, best_trial, epochs_reported

SECTIONS = {
    "history": "Optimisation history",
    "learning-curves": "Learning curves (validation metric per epoch)",
    "importances": "Parameter importances",
    "parallel": "Parallel coordinates",
    "slices": "Slices",
    "best-vs-baseline": "Best trial vs the baseline",
    "confirmation": "Confirmed over seeds",
    "ablation": "Ablation path from the baseline",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: .2em; } section { margin-top: 2em; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
td.differs { background: #fff3c4; } .note { color: #555; font-style: italic; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: .5em; }
"""


def write_report(study: optuna.Study, spec: StudySpec, out: Path) -> Path:
    """Write the report on ``study`` (searched as ``spec``) to ``out`` and return ``out``.

    The page is built completely in memory, then written to a temporary file beside
    ``out`` and moved over it with ``os.replace``: a failure leaves ``out`` as it was
    (absent or the previous report), never half-written. Missing parent folders are
    created. A study with few or no trials still gets a page: figures Optuna cannot draw
    yet are empty, and the importances become a sentence saying why they are missing.
    """
    out = Path(out)
    page = _page(study, spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def _page(study: optuna.Study, spec: StudySpec) -> str:
    metric = spec.metric
    bodies = {
        "history": _figure(vis.plot_optimization_history(study, target_name=metric)),
        "learning-curves": _figure(_learning_curves(study, metric)),
        "importances": _importances(study, metric),
        "parallel": _figure(vis.plot_parallel_coordinate(study, target_name=metric)),
        "slices": _slices(study, metric),
        "best-vs-baseline": _best_vs_baseline(study, spec),
        "confirmation": _confirmation(study, metric),
        "ablation": _ablation(study, spec),
    }
    sections = "\n".join(
        f'<section id="{sid}"><h2>{html.escape(SECTIONS[sid])}</h2>\n{body}\n</section>' for sid, body in bodies.items()
    )
    title = html.escape(f"hpsearch report: {study.study_name}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>\n'
        f"<style>{_STYLE}</style>\n<script>{get_plotlyjs()}</script></head>\n"
        f"<body>\n{_header(study, spec)}\n{sections}\n</body></html>\n"
    )


def _figure(fig, height: str = "480px") -> str:
    """The figure as a <div> and a script that draws it with the page's one plotly.js."""
    return fig.to_html(full_html=False, include_plotlyjs=False, default_height=height)


def _learning_curves(study: optuna.Study, metric: str) -> go.Figure:
    """The validation metric per epoch of every trial that reported one (complete, pruned or
    running), one line per trial, with a legend that names each line by its trial: the
    baseline (trial 0 as ``hpsearch run`` enqueued it) and the best trial are labelled as
    such and drawn wider, so the search's curves can be read against the baseline's.
    Optuna's ``plot_intermediate_values`` draws the same lines with its legend switched off."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    trial0, best = baseline_trial(study, states=None), best_trial(study)
    fig = go.Figure()
    for t in trials:
        if not t.intermediate_values:
            continue
        roles = [
            role
            for role, other in (("baseline", trial0), ("best", best))
            if other is not None and other.number == t.number
        ]
        if t.state != TrialState.COMPLETE:
            roles.append(t.state.name.lower())
        curve = epochs_reported(t)
        epochs = sorted(curve)
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=[curve[e] for e in epochs],
                mode="lines+markers",
                name=f"trial {t.number}" + (f" ({', '.join(roles)})" if roles else ""),
                line={"width": 4 if {"baseline", "best"} & set(roles) else 1.5},
            )
        )
    return fig.update_layout(
        xaxis_title="epoch (training images seen / training split)",
        yaxis_title=metric,
        showlegend=True,
        legend_title_text="trial",
    )


def _slices(study: optuna.Study, metric: str) -> str:
    """One small slice plot per parameter, in a grid that wraps to the page's width (Optuna's
    single figure puts every parameter side by side and scrolls sideways)."""
    names = sorted({name for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) for name in t.params})
    if not names:
        return _figure(vis.plot_slice(study, target_name=metric))
    cells = (_figure(vis.plot_slice(study, params=[name], target_name=metric), height="340px") for name in names)
    return '<div class="grid">' + "".join(f"<div>{cell}</div>" for cell in cells) + "</div>"


def _header(study: optuna.Study, spec: StudySpec) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state for t in trials)
    by_state = ", ".join(f"{counts[s]} {s.name.lower()}" for s in TrialState if counts[s]) or "none"
    best = best_trial(study)
    best_text = f"{best.value:.6g} (trial {best.number})" if best else "no complete trial yet"
    rows = {
        "study": study.study_name,
        "search": f"{spec.name}: {spec.description}",
        "metric": spec.metric,
        "direction": study.direction.name.lower(),
        "trials": f"{len(trials)} ({by_state})",
        "best value": best_text,
    }
    cells = "".join(
        f'<tr><th>{k}</th><td class="{k.replace(" ", "-")}">{html.escape(v)}</td></tr>' for k, v in rows.items()
    )
    return f"<header><h1>{html.escape(study.study_name)}</h1>\n<table>{cells}</table></header>"


def _importances(study: optuna.Study, metric: str) -> str:
    # PED-ANOVA: Optuna 5's default, and it needs nothing beyond Optuna itself; fANOVA and
    # mean decrease impurity would need scikit-learn, which hpsearch does not install.
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = {name for t in complete for name in t.params}
    varying = any(len({repr(t.params.get(name)) for t in complete}) > 1 for name in names)
    if len(complete) < 2 or not varying:
        why = (
            f"{len(complete)} complete trial(s)"
            if len(complete) < 2
            else "no parameter varies across the complete trials"
        )
        return _note(
            "Importances cannot be computed yet: they need at least two complete trials with varying parameters "
            f"({why})."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PED-ANOVA's "too few trials" warnings; we check the result instead
            raw = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=False)
            if not raw or sum(raw.values()) <= 0:
                return _note(
                    "Importances cannot be computed yet: with these trials no parameter stands out from the others."
                )
            figure = _figure(vis.plot_param_importances(study, evaluator=evaluator, target_name=metric))
            return _note(importance_caveat(len(complete))) + figure
    except (ValueError, RuntimeError) as exc:
        return _note(f"Importances cannot be computed: {exc}")


def _confirmation(study: optuna.Study, metric: str) -> str:
    confirmation = study.user_attrs.get("confirmation")
    if not confirmation or not confirmation.get("rows"):
        return _note("Not confirmed yet: 'hpsearch confirm STUDY --top K --seeds S' trains the best trials again.")
    rows = confirmation["rows"]
    labels = [f"trial {r['trial']}" for r in rows]
    fig = go.Figure(
        [
            go.Bar(
                x=labels,
                y=[r["mean"] for r in rows],
                error_y={"type": "data", "array": [r["std"] or 0 for r in rows]},
                name="mean ± std over seeds",
                text=[f"n={r['n']}" for r in rows],
            ),
            go.Scatter(x=labels, y=[r["value"] for r in rows], mode="markers", name="single search run"),
        ]
    )
    low = min(min(r["value"] for r in rows), min(r["mean"] - (r["std"] or 0) for r in rows))
    high = max(max(r["value"] for r in rows), max(r["mean"] + (r["std"] or 0) for r in rows))
    pad = (high - low) * 0.3 or 0.01
    fig.update_layout(yaxis_title=f"{metric} (validation)", yaxis_range=[low - pad, high + pad])
    verdict = f"Confirmed best: trial {confirmation['best']} (the best mean over its seeds)."
    return _note(verdict) + _figure(fig, height="420px")


def _ablation(study: optuna.Study, spec: StudySpec) -> str:
    ablation = study.user_attrs.get("ablation")
    reference = ""
    if spec.reference_ablation:
        cells = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{value:.4g}</td></tr>" for label, value in spec.reference_ablation
        )
        reference = (
            f"<div><h3>{html.escape(spec.reference_label)}</h3><table><tr><th>change</th><th>value</th></tr>{cells}"
            "</table></div>"
        )
    if not ablation:
        text = _note("No ablation yet: 'hpsearch ablate STUDY' measures which differences carry the gain.")
        return text + (f'<div class="grid">{reference}</div>' if reference else "")
    steps = ablation["steps"]
    fig = go.Figure(
        go.Scatter(
            x=[f"{i}: {r['parameter']}" for i, r in enumerate(steps)],
            y=[r["mean"] for r in steps],
            error_y={"type": "data", "array": [r["std"] or 0 for r in steps]},
            mode="lines+markers",
            name="mean ± std",
        )
    )
    fig.update_layout(yaxis_title=f"{spec.metric} (validation)", xaxis_title=f"step ({ablation['method']})")
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(r['parameter'])}</td><td>{html.escape(r['change'])}</td>"
        f"<td>{format_spread(r)}</td><td>{_signed(r['gain'])}</td><td>{_percent(r['share'])}</td></tr>"
        for i, r in enumerate(steps)
    )
    ours = (
        f"<div><h3>hpsearch (validation, {ablation['seeds']} seeds)</h3><table><tr><th>step</th><th>parameter</th>"
        f"<th>from → to</th><th>mean ± std</th><th>gain</th><th>share</th></tr>{rows}</table></div>"
    )
    skipped = _note("Skipped: " + "; ".join(ablation["skipped"])) if ablation["skipped"] else ""
    return _figure(fig, height="420px") + skipped + f'<div class="grid">{ours}{reference}</div>'


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"


def _percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.0f} %"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _best_vs_baseline(study: optuna.Study, spec: StudySpec) -> str:
    best = best_trial(study)
    best_params: dict[str, Any] = best.params if best else {}
    trial0 = baseline_trial(study)
    # Trial 0 as it ran: the study's baseline with any --set values, labelled as stored.
    baseline = trial0.params if trial0 else spec.baseline
    source = trial0.user_attrs["baseline"] if trial0 else spec.baseline_source
    missing = "—"

    def cell(params: dict[str, Any], key: str, other: dict[str, Any]) -> str:
        value = str(params[key]) if key in params else missing
        differs = best and params.get(key, missing) != other.get(key, missing)
        return f"<td{' class=differs' if differs else ''}>{html.escape(value)}</td>"

    names = list(baseline) + [k for k in best_params if k not in baseline]
    rows = [
        f"<tr><th>{html.escape(k)}</th>{cell(best_params, k, baseline)}{cell(baseline, k, best_params)}</tr>"
        for k in names
    ]
    values = (f"{best.value:.6g}" if best else missing, f"{trial0.value:.6g}" if trial0 else missing)
    rows.append(
        f"<tr><th>{html.escape(spec.metric)} in this study</th>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>"
    )
    best_head = f"best trial {best.number}" if best else "best trial (none complete yet)"
    if best and trial0 and best.number == trial0.number:
        verdict = f"The baseline is still the best trial (trial {best.number}): no searched trial has beaten it yet."
        return (
            f"<p>Baseline: {html.escape(source)}.</p>\n{_note(verdict)}\n"
            f"<table><tr><th>parameter</th><th>{best_head}, the baseline</th></tr>"
            + "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in best_params.items()
            )
            + f"<tr><th>{html.escape(spec.metric)} in this study</th><td>{values[0]}</td></tr></table>"
        )
    return (
        f"<p>Baseline: {html.escape(source)}. Highlighted cells differ.</p>\n"
        f"<table><tr><th>parameter</th><th>{best_head}</th><th>baseline</th></tr>{''.join(rows)}</table>"
    )
