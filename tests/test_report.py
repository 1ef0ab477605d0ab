"""`hpsearch.report.write_report` on a real stored study, read as text and rendered by
headless Chromium."""

import html
import json
import os
import re
from pathlib import Path

import optuna
import pytest
from browser import render
from invoke import hpsearch, stored_study
from optuna.trial import TrialState
from PIL import Image

from hpsearch import registry
from hpsearch.cli import main
from hpsearch.study import epochs_reported, open_study

pytest.importorskip("plotly", reason="plotly (which draws the report's figures) is not installed")
from hpsearch.report import SECTIONS, write_report  # noqa: E402

SPEC = registry.get("fashion-lenet")
FIGURES = ["history", "learning-curves", "importances", "parallel", "slices"]
PLOTLY_BANNER = "* plotly.js v"  # the first line of the library's licence comment


@pytest.fixture(scope="module")
def study_url(fashion_root, tmp_path_factory) -> str:
    """Four complete trials of the real search on synthetic data (about 10 s on 2 CPU
    cores). No pruner: importances need at least two complete trials."""
    return stored_study(
        tmp_path_factory,
        fashion_root,
        "report",
        "run fashion-lenet --trials 4 --epochs 2 --subset 300 --seed 0 --pruner none",
    )


@pytest.fixture(scope="module")
def study(study_url) -> optuna.Study:
    return open_study(SPEC, study_url, "fashion-lenet")


@pytest.fixture(scope="module")
def report(study, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "sub" / "report.html"
    assert write_report(study, SPEC, out) == out
    return out


def sections(page: str) -> dict[str, str]:
    """Each section's inner text, by id."""
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.S))


def figures_in(sid: str, study: optuna.Study) -> int:
    """Figures a section holds: a slice per parameter of the complete trials, else one."""
    return len({name for t in study.trials for name in t.params}) if sid == "slices" else 1


def test_report_has_every_section_and_plotly_once(report, study):
    page = report.read_text(encoding="utf-8")
    assert list(sections(page)) == list(SECTIONS)
    assert page.count(PLOTLY_BANNER) == 1  # inlined once, in <head>
    assert not re.search(r"<script[^>]*\bsrc=", page)  # works offline: no script is fetched
    for sid in FIGURES:
        assert sections(page)[sid].count('class="plotly-graph-div"') == figures_in(sid, study), sid
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]  # no temporary file left


def plotted(part: str) -> tuple[list[dict], dict]:
    """The traces and the layout of a section's first figure, as the page hands them to
    Plotly.newPlot(div id, traces, layout, config)."""
    decoder, at = json.JSONDecoder(), part.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    values = []
    for _ in range(3):
        while part[at] in " \n,":
            at += 1
        value, at = decoder.raw_decode(part, at)
        values.append(value)
    return values[1], values[2]


def test_the_learning_curves_have_a_legend_naming_each_trial_and_the_baseline(report, study):
    traces, layout = plotted(sections(report.read_text(encoding="utf-8"))["learning-curves"])
    assert layout["showlegend"] is True
    best = study.best_trial.number
    labels = {0: ["baseline"]}
    labels.setdefault(best, []).append("best")
    assert [t["name"] for t in traces] == [
        f"trial {t.number}" + (f" ({', '.join(labels[t.number])})" if t.number in labels else "") for t in study.trials
    ]
    for trace, trial in zip(traces, study.trials, strict=True):  # each named line is that trial's curve
        curve = epochs_reported(trial)
        assert trace["x"] == sorted(curve)
        assert trace["y"] == [curve[e] for e in sorted(curve)]


def test_a_pruned_trials_curve_says_so(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(SPEC.baseline, user_attrs={"baseline": SPEC.baseline_source})

    def objective(trial):
        SPEC.space(trial)
        trial.report(0.5 + 0.1 * trial.number, 1)
        if trial.number == 1:
            raise optuna.TrialPruned()
        return 0.5 + 0.1 * trial.number

    study.optimize(objective, n_trials=3)
    traces, _ = plotted(sections(write_report(study, SPEC, tmp_path / "r.html").read_text())["learning-curves"])
    assert [t["name"] for t in traces] == ["trial 0 (baseline)", "trial 1 (pruned)", "trial 2 (best)"]


def test_header_counts_trials_and_names_the_best(report, study):
    page = report.read_text(encoding="utf-8")
    best = study.best_trial
    assert len(study.trials) == 4 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert '<td class="trials">4 (4 complete)</td>' in page
    assert f'<td class="best-value">{best.value:.6g} (trial {best.number})</td>' in page
    assert '<td class="metric">val_accuracy</td>' in page and '<td class="direction">maximize</td>' in page


def stand_in_study(best: int, baseline: dict | None = None, label: str = SPEC.baseline_source) -> optuna.Study:
    """Three trials of fashion-lenet's space, the baseline first, trial ``best`` scoring 0.9."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(baseline or SPEC.baseline, user_attrs={"baseline": label})
    study.optimize(lambda trial: SPEC.space(trial) and (0.9 if trial.number == best else 0.5), n_trials=3)
    return study


def test_table_puts_best_params_beside_the_baseline(tmp_path):
    study = stand_in_study(best=2)
    table = sections(write_report(study, SPEC, tmp_path / "r.html").read_text(encoding="utf-8"))["best-vs-baseline"]
    assert html.escape(SPEC.baseline_source) in table
    best = study.best_trial
    assert f"best trial {best.number}" in table
    rows = dict(re.findall(r"<tr><th>([^<]+)</th>(.*?)</tr>", table))
    for name, value in SPEC.baseline.items():
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", rows[name])
        assert cells[1] == html.escape(str(value)), name
        assert cells[0] == html.escape(str(best.params.get(name, "—"))), name
    for name, value in best.params.items():  # conditional parameters the baseline lacks too
        assert re.findall(r"<td[^>]*>([^<]*)</td>", rows[name])[0] == html.escape(str(value)), name


def test_the_table_shows_trial_0_as_it_ran_when_set_changed_the_baseline(tmp_path):
    label = f"{SPEC.baseline_source}; changed by --set: c1=4"
    study = stand_in_study(best=2, baseline={**SPEC.baseline, "c1": 4}, label=label)
    table = sections(write_report(study, SPEC, tmp_path / "r.html").read_text(encoding="utf-8"))["best-vs-baseline"]
    assert f"Baseline: {html.escape(label)}." in table
    rows = dict(re.findall(r"<tr><th>([^<]+)</th>(.*?)</tr>", table))
    assert re.findall(r"<td[^>]*>([^<]*)</td>", rows["c1"])[1] == "4"


def test_importances_say_how_many_trials_they_rest_on(report, study):
    part = sections(report.read_text(encoding="utf-8"))["importances"]
    assert "plotly-graph-div" in part
    assert f"rest on {len(study.trials)} complete trials: too few to trust" in part


def test_a_baseline_that_is_still_the_best_is_said_so(tmp_path):
    study = stand_in_study(best=0)
    table = sections(write_report(study, SPEC, tmp_path / "r.html").read_text(encoding="utf-8"))["best-vs-baseline"]
    assert "The baseline is still the best trial (trial 0)" in table
    assert "Highlighted cells differ" not in table and "best trial 0</th><th>baseline" not in table
    rows = dict(re.findall(r"<tr><th>([^<]+)</th>(.*?)</tr>", table))
    assert all(html.escape(str(v)) in rows[k] for k, v in study.trials[0].params.items())


def test_importances_become_a_sentence_when_they_cannot_be_computed(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(SPEC.baseline)
    study.optimize(lambda trial: SPEC.space(trial) and 0.5, n_trials=1)
    page = write_report(study, SPEC, tmp_path / "r.html").read_text(encoding="utf-8")
    part = sections(page)["importances"]
    assert "cannot be computed yet" in part and "plotly-graph-div" not in part
    assert '<td class="trials">1 (1 complete)</td>' in page


def test_an_empty_study_still_gets_a_page(tmp_path):
    page = write_report(optuna.create_study(), SPEC, tmp_path / "r.html").read_text(encoding="utf-8")
    assert list(sections(page)) == list(SECTIONS) and "no complete trial yet" in page


def test_a_failed_write_leaves_the_old_report_and_no_temporary_file(study, tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("old report")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report(study, SPEC, out)
    assert out.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_chromium_renders_every_figure(report, study, tmp_path):
    png = tmp_path / "report.png"
    dom = render(report.as_uri(), png, width=1400, height=3000, wait_ms=10000)
    rendered = sections(dom)
    assert list(rendered) == list(SECTIONS), "Chromium printed no rendered page"
    for sid in FIGURES:  # plotly.js replaced each figure's empty div by a drawn plot
        assert rendered[sid].count('class="plot-container plotly"') == figures_in(sid, study), sid
        assert 'class="main-svg"' in rendered[sid], sid
    legend = re.findall(r'class="legendtext"[^>]*>([^<]+)<', rendered["learning-curves"])
    assert legend[0].startswith("trial 0 (baseline") and len(legend) == len(study.trials), legend
    # Every slice fits the 1400 px window, laid out in rows instead of one figure scrolling sideways.
    widths = [int(w) for w in re.findall(r'<svg class="main-svg"[^>]*? width="(\d+)"', rendered["slices"])]
    assert len(widths) >= figures_in("slices", study) and max(widths) <= 700, widths

    assert png.stat().st_size > 20_000
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 100  # lines, text and shading, not a blank page


def test_the_report_command_writes_the_page(study_url, tmp_path, capsys):
    url = study_url
    out = tmp_path / "sub" / "report.html"
    assert main(["report", "fashion-lenet", "--storage", url, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert list(sections(out.read_text())) == list(SECTIONS)
    assert hpsearch("report fashion-lenet --storage", url, *"--study-name nope --out".split(), tmp_path / "x.html") == 2
    assert not (tmp_path / "x.html").exists()
