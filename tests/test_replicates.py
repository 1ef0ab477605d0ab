"""Replicates, ``hpsearch confirm`` and ``hpsearch ablate`` on the noisy stand-in study,
whose metric is a known function of its parameters plus seed noise."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from invoke import hpsearch
from noisy_study import EXTRA_GAIN, GAINS, truth
from optuna.trial import TrialState
from processes import interruptible

from hpsearch import ablation, confirmation, registry, replicates

NOISY = str(Path(__file__).with_name("noisy_study.py"))
LUCKY = "--set a=true --set b=true --set luck=0.9"  # true 0.65, a single search run 0.92
STRONG = "--set a=true --set b=true --set c=true --set extra=true --set extra_level=1 --set luck=0"  # true 0.69


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'noisy.db'}"


def run(url, trials, extra=""):
    assert hpsearch(f"run {NOISY} --trials {trials} --pruner none --seed 0 {extra} --storage", url) == 0


@pytest.fixture
def three_trials(url):
    """Trial 0 the baseline, trial 1 lucky but weaker, trial 2 the strongest configuration."""
    run(url, 1)
    run(url, 2, LUCKY)
    run(url, 3, STRONG)
    return url


def load(url, name="noisy"):
    return optuna.load_study(study_name=name, storage=url)


def test_confirm_picks_the_best_mean_not_the_best_single_run(three_trials, capsys):
    study = load(three_trials)
    assert study.best_trial.number == 1  # the lucky draw wins the search
    capsys.readouterr()
    assert hpsearch(f"confirm {NOISY} --top 3 --seeds 3 --storage", three_trials) == 0
    out = capsys.readouterr().out
    assert "confirmed best: trial 2" in out and "the best single run was trial 1" in out, out
    stored = confirmation.stored(load(three_trials))
    assert stored["best"] == 2
    rows = {r["trial"]: r for r in stored["rows"]}
    assert [r["trial"] for r in stored["rows"]] == [2, 1, 0]  # best mean first
    for number, params in ((0, {"a": False, "b": False, "c": False}), (2, {"a": True, "b": True, "c": True})):
        expected = truth({**params, "extra_level": 1.0 if number == 2 else 0.0})
        assert rows[number]["mean"] == pytest.approx(expected, abs=0.01)
        assert rows[number]["n"] == 3 and 0 < rows[number]["std"] < 0.01
    assert rows[1]["value"] > 0.9 > rows[1]["mean"]


def test_replicates_never_change_n_nor_reach_the_search(three_trials, capsys):
    assert hpsearch(f"confirm {NOISY} --top 2 --seeds 2 --storage", three_trials) == 0
    search = load(three_trials)
    reps = load(three_trials, "noisy" + replicates.SUFFIX)
    assert len(search.trials) == 3
    assert sorted(t.user_attrs["seed"] for t in reps.trials) == [2**31, 2**31, 2**31 + 1, 2**31 + 1]
    assert {t.state for t in reps.trials} == {TrialState.COMPLETE}
    # No replicate seed is a search seed: the search's trials keep their own.
    assert [t.user_attrs["seed"] for t in search.trials] == [0, 1, 2]
    run(three_trials, 3)  # holds 3 already: nothing runs
    assert len(load(three_trials).trials) == 3
    run(three_trials, 5)  # exactly two more search trials
    assert len(load(three_trials).trials) == 5 and len(load(three_trials, "noisy:replicates").trials) == 4
    # A rerun of the same confirmation trains nothing more.
    capsys.readouterr()
    assert hpsearch(f"confirm {NOISY} --trial 2 --trial 1 --seeds 2 --storage", three_trials) == 0
    assert len(load(three_trials, "noisy:replicates").trials) == 4
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(three_trials)}
    assert names == {"noisy": 5, "noisy:replicates": 4}


def test_the_path_follows_the_true_gains(three_trials, capsys):
    assert hpsearch(f"confirm {NOISY} --top 3 --seeds 2 --storage", three_trials) == 0
    capsys.readouterr()
    assert hpsearch(f"ablate {NOISY} --seeds 2 --storage", three_trials) == 0
    out = capsys.readouterr().out
    assert "target: trial 2, the confirmed best" in out
    assert "3 difference(s): a, b, c" not in out and "4 difference(s)" in out, out
    assert "at most 22 trainings" in out, out  # 2 seeds x (baseline + 4 + 3 + 2 + 1 candidates)
    stored = load(three_trials).user_attrs["ablation"]
    assert [s["parameter"] for s in stored["steps"]] == ["baseline", "a", "b", "extra + extra_level", "c (= target)"]
    gains = [s["gain"] for s in stored["steps"][1:]]
    assert gains == pytest.approx([GAINS["a"], GAINS["b"], EXTRA_GAIN, GAINS["c"]], abs=1e-9)  # paired seeds
    assert sum(s["share"] for s in stored["steps"][1:]) == pytest.approx(1.0)
    # Each step's replicates are stored once: a rerun trains nothing.
    before = len(load(three_trials, "noisy:replicates").trials)
    assert hpsearch(f"ablate {NOISY} --seeds 2 --storage", three_trials) == 0
    assert len(load(three_trials, "noisy:replicates").trials) == before


def test_leave_one_out_finds_the_parameter_that_matters(three_trials, capsys):
    assert hpsearch(f"ablate {NOISY} --to 2 --method leave-one-out --seeds 2 --storage", three_trials) == 0
    stored = load(three_trials).user_attrs["ablation"]
    lost = {s["parameter"]: s["gain"] for s in stored["steps"] if s["gain"] is not None}
    assert max(lost, key=lost.get) == "a"
    assert lost == pytest.approx({"a": 0.10, "b": 0.05, "c": 0.01, "extra + extra_level": 0.03}, abs=1e-9)


def test_a_switch_the_space_cannot_hold_is_skipped():
    def space(trial):
        p = {"width": trial.suggest_float("width", 0.0, 1.0)}
        if p["width"] > 0.5:  # a condition on a float: the space reader cannot see it
            p["deep"] = trial.suggest_categorical("deep", [False, True])
        return p

    spec = dataclasses.replace(registry.get(NOISY), space=space, baseline={"width": 0.2})
    base, target = {"width": 0.2}, {"width": 0.8, "deep": True}
    groups = ablation.groups(spec, base, target)
    assert [g.names for g in groups] == [("width",), ("deep",)]
    assert ablation.switch(spec, base, groups[0], target) is None  # width alone needs deep
    assert ablation.switch(spec, base, groups[1], target) is None  # deep alone is not read
    assert ablation.switch(spec, {"width": 0.8, "deep": False}, groups[1], target) == target


@pytest.mark.parametrize(
    "command, message",
    [
        ("confirm {study} --seeds 0", "--seeds: 0 must be at least 1"),
        ("confirm {study} --top 4", "--top 4: study 'noisy' has only 3 complete trial(s)"),
        ("confirm {study} --trial 7", "--trial 7: no such trial"),
        ("ablate {study} --to 0", "nothing to ablate"),
        ("ablate nosuchstudy", "unknown study 'nosuchstudy'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(three_trials, capsys, command, message):
    capsys.readouterr()
    assert hpsearch(command.format(study=NOISY) + " --storage", three_trials) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert len(load(three_trials, "noisy").trials) == 3


def test_confirm_of_a_study_without_a_complete_trial_is_one_line(url, capsys):
    study = optuna.create_study(study_name="noisy", storage=url, direction="maximize")
    study.enqueue_trial({"a": True})  # a study whose only trial is still waiting
    capsys.readouterr()
    assert hpsearch(f"confirm {NOISY} --storage", url) == 2
    assert "has no complete trial to confirm" in capsys.readouterr().err
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["noisy"]


def replicate_trials(url):
    try:
        return load(url, "noisy" + replicates.SUFFIX).get_trials(deepcopy=False)
    except KeyError:
        return []


def replicate_states(url):
    return [(t.user_attrs.get("replicate"), t.state, t.value) for t in replicate_trials(url)]


def wait_for(url, complete, proc, timeout=180):
    """Until the replicate study holds ``complete`` complete replicates and one running that
    has reported an epoch: mid-training, its heartbeat beating."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trials = replicate_trials(url)
        states = [t.state for t in trials]
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        if states.count(TrialState.COMPLETE) >= complete and running:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f"no running replicate after {complete} complete: {replicate_states(url)}")


def test_kill_9_and_ctrl_c_mid_confirm_lose_nothing_and_a_rerun_redoes_nothing(three_trials):
    url = three_trials
    cmd = [sys.executable, "-m", "hpsearch", "confirm", NOISY, "--trial", "0", "--seeds", "4"]
    cmd += ["--heartbeat", "1", "--storage", url]
    env = {**os.environ, "NOISY_EPOCH_SECONDS": "0.4"}

    def start():
        return subprocess.Popen(cmd, env=env, preexec_fn=interruptible, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    proc = start()
    wait_for(url, 1, proc)
    proc.kill()
    proc.wait()
    first = [(r, v) for r, s, v in replicate_states(url) if s == TrialState.COMPLETE]
    proc = start()
    wait_for(url, len(first) + 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err.decode() and "ExperimentalWarning" not in err.decode(), err
    assert len(err.decode().strip().splitlines()) == 1, err  # the one line of an interrupted command
    done = subprocess.run(
        cmd[:-4] + ["--jobs", "2", "--heartbeat", "1", "--storage", url], env=env, capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    states = replicate_states(url)
    complete = sorted(r for r, s, _ in states if s == TrialState.COMPLETE)
    assert complete == [0, 1, 2, 3]  # each replicate once: nothing redone, nothing lost
    assert not [s for _, s, _ in states if s in (TrialState.RUNNING, TrialState.WAITING)]
    assert {(r, v) for r, s, v in states if s == TrialState.COMPLETE} >= set(first)
    assert [s for _, s, _ in states].count(TrialState.FAIL) >= 2  # the killed and the interrupted one
    assert "mean" in done.stdout.decode() and len(load(url).trials) == 3


def test_report_and_dashboard_note_show_the_confirmation_and_the_path(three_trials, tmp_path):
    from optuna_dashboard._note import get_note_from_system_attrs

    from hpsearch import report

    assert hpsearch(f"confirm {NOISY} --top 3 --seeds 2 --storage", three_trials) == 0
    assert hpsearch(f"report {NOISY} --out", tmp_path / "before.html", "--storage", three_trials) == 0
    assert "No ablation yet" in (tmp_path / "before.html").read_text()
    assert hpsearch(f"ablate {NOISY} --seeds 2 --storage", three_trials) == 0
    assert hpsearch(f"report {NOISY} --out", tmp_path / "r.html", "--storage", three_trials) == 0
    page = (tmp_path / "r.html").read_text()
    confirmation = page[page.index('<section id="confirmation">') : page.index('<section id="ablation">')]
    assert "Confirmed best: trial 2" in confirmation and '"error_y"' in confirmation
    path = page[page.index('<section id="ablation">') :]
    assert "hpsearch (validation, 2 seeds)" in path and "<td>extra + extra_level</td>" in path
    assert "<td>+0.1000</td><td>53 %</td>" in path
    study = load(three_trials)
    storage = optuna.storages.RDBStorage(three_trials)
    system_attrs = storage.get_study_system_attrs(storage.get_study_id_from_name("noisy"))
    note = get_note_from_system_attrs(system_attrs, None)["body"]
    assert "### Confirmed over seeds: best trial 2" in note and f"| 2 | {study.trials[2].value:.4f} | " in note, note
    assert "### Ablation (path) from trial 0 to trial 2" in note and "| 1 | a | False -> True |" in note, note
    spec = registry.get(NOISY)
    shown = report._ablation(study, dataclasses.replace(spec, reference_ablation=(("+ a, by hand", 0.61),)))
    assert "<h3>reference (1 run)</h3>" in shown and "<td>+ a, by hand</td><td>0.61</td>" in shown


def test_replicates_at_another_budget_or_on_other_data_are_other_replicates(three_trials):
    assert hpsearch(f"confirm {NOISY} --trial 0 --seeds 1 --storage", three_trials) == 0
    assert hpsearch(f"confirm {NOISY} --trial 0 --seeds 1 --epochs 3 --storage", three_trials) == 0
    assert hpsearch(f"confirm {NOISY} --trial 0 --seeds 1 --epochs 3 --subset 5 --storage", three_trials) == 0
    reps = load(three_trials, "noisy" + replicates.SUFFIX).trials
    assert [(t.user_attrs["epochs"], t.user_attrs.get("data"), len(t.intermediate_values)) for t in reps] == [
        (2, None, 2),
        (3, None, 3),
        (3, "subset 5", 3),
    ]
    assert len({t.user_attrs["config_id"] for t in reps}) == 3
