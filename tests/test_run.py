"""`hpsearch run` end to end on synthetic Fashion-MNIST, read back with Optuna itself."""

import io
import os
import re
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import optuna
import torch
from optuna.trial import TrialState

from hpsearch import models, registry, search
from hpsearch.cli import main
from hpsearch.progress import Progress
from hpsearch.study import epochs_reported

SPEC = registry.get("fashion-lenet")
FAST = [*"--set c1=4 --set c2=8 --set c3=32 --set batch_size=64".split()]


def run_cli(*args):
    return main(["run", "fashion-lenet", *args])


def test_run_stores_every_trial_with_per_epoch_values(fashion_root, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert (
        run_cli(
            "--trials",
            "3",
            "--epochs",
            "2",
            "--pruner",
            "none",
            "--seed",
            "0",
            "--storage",
            url,
            "--data-dir",
            str(fashion_root),
            *FAST,
        )
        == 0
    )

    study = optuna.load_study(study_name="fashion-lenet", storage=url)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(sorted(epochs_reported(t)) == [1, 2] for t in trials)  # steps: images seen
    assert all(t.value == max(t.intermediate_values.values()) for t in trials)
    # Trial 0 is the report's configuration (with the --set values on top).
    expected = {**SPEC.baseline, "c1": 4, "c2": 8, "c3": 32, "batch_size": 64}
    assert trials[0].params == expected
    assert trials[0].user_attrs["baseline"] == (
        f"{SPEC.baseline_source}; changed by --set: c1=4, c2=8, c3=32, batch_size=64"
    )
    assert trials[0].user_attrs["model"] == "lenet5" and trials[0].user_attrs["ended"] == "complete"
    assert all(t.params["c1"] == 4 for t in trials)  # --set holds for sampled trials too
    assert study.user_attrs["metric"] == "val_accuracy"
    assert trials[0].value > 0.5

    out = capsys.readouterr().out
    assert "trial 2 epoch 2/2: val_accuracy" in out and "3/3 finished" in out and "best val_accuracy" in out


def test_a_bad_trial_is_pruned_and_the_study_goes_on(fashion_root, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="fashion-lenet", storage=url, direction="maximize")
    good = {**SPEC.baseline, "c1": 4, "c2": 8, "c3": 32, "batch_size": 32, "lr": 3e-3}
    bad = {**good, "optimizer": "sgd", "momentum": 0.0, "lr": 1e-4, "loss": "mse_softmax"}
    study.enqueue_trial(good)
    study.enqueue_trial(bad)
    assert (
        run_cli("--trials", "2", "--epochs", "3", "--pruner", "sha", "--storage", url, "--data-dir", str(fashion_root))
        == 0
    )
    first, second = optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()
    assert first.state == TrialState.COMPLETE and len(first.intermediate_values) == 3
    assert second.state == TrialState.PRUNED
    assert second.user_attrs["ended"] == "pruned at epoch 1"


def test_a_diverging_trial_is_pruned_with_its_reason(fashion_root, tmp_path, monkeypatch):
    class NaNOut(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) * float("nan")

    real_create = models.create
    monkeypatch.setattr(models, "create", lambda name, **kw: NaNOut(real_create(name, **kw)))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert run_cli("--trials", "2", "--epochs", "3", "--storage", url, "--data-dir", str(fashion_root), *FAST) == 0
    trials = optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    assert all(t.user_attrs["ended"].startswith("diverged: non-finite training loss or outputs") for t in trials)


def test_a_trial_that_learns_nothing_is_pruned_in_every_bracket_with_its_reason(fashion_root, tmp_path, monkeypatch):
    class Silent(torch.nn.Module):
        """Constant logits: the loss stays finite, no gradient reaches the weights, every
        image is called class 0."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) * 0.0

    real_create = models.create
    monkeypatch.setattr(models, "create", lambda name, **kw: Silent(real_create(name, **kw)))
    args = ["--epochs", "4", "--seed", "0", "--data-dir", str(fashion_root), *FAST]
    url = f"sqlite:///{tmp_path / 'study.db'}"
    # ASHA alone would let both run all 4 epochs: the second ties the first at every rung.
    assert run_cli("--trials", "2", "--storage", url, *args) == 0
    trials = optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    for t in trials:
        assert sorted(epochs_reported(t)) == [0.25, 0.75, 1, 2]  # ASHA's rungs, then the epochs
        assert re.fullmatch(
            r"pruned at epoch 2: learned nothing \(best 0\.\d{4}, chance 0\.1000\)", t.user_attrs["ended"]
        )
    # --pruner none trains every trial to its end, at chance or not.
    url = f"sqlite:///{tmp_path / 'unpruned.db'}"
    assert run_cli("--trials", "1", "--pruner", "none", "--storage", url, *args) == 0
    (trial,) = optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()
    assert trial.state == TrialState.COMPLETE and sorted(epochs_reported(trial)) == [1, 2, 3, 4]


def test_chance_is_one_over_the_classes_or_the_mse_of_the_mean_image():
    from hpsearch import tasks

    train, val = torch.rand(50, 1, 4, 4), torch.rand(20, 1, 4, 4)
    assert tasks.CLASSIFY.chance(train, val, 10) == 0.1
    expected = ((val - train.mean(0)) ** 2).mean().item()
    assert abs(tasks.DENOISE.chance(train, val, 10) - expected) < 1e-7


def test_failing_trials_are_recorded_and_stop_the_search_after_three_in_a_row(
    fashion_root, tmp_path, monkeypatch, capsys
):
    def broken(name, **kw):
        raise RuntimeError("simulated allocation failure")

    monkeypatch.setattr(models, "create", broken)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert run_cli("--trials", "5", "--storage", url, "--data-dir", str(fashion_root)) == 1
    trials = optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * search.MAX_CONSECUTIVE_FAILURES
    assert trials[0].user_attrs["ended"] == "failed: RuntimeError: simulated allocation failure"
    assert "3 trials in a row failed" in capsys.readouterr().err


def test_same_seed_same_parameters(fashion_root, tmp_path):
    params = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        assert (
            run_cli(
                "--trials",
                "4",
                "--epochs",
                "1",
                "--seed",
                "7",
                "--subset",
                "300",
                "--storage",
                url,
                "--data-dir",
                str(fashion_root),
            )
            == 0
        )
        params.append([t.params for t in optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()])
    assert len(params[0]) == 4 and params[0] == params[1]
    assert params[0][1] != params[0][2]  # sampled, not repeated


def test_smoke_on_real_fashion_mnist(real_data_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert (
        run_cli(
            "--trials",
            "2",
            "--epochs",
            "1",
            "--subset",
            "2000",
            "--seed",
            "0",
            "--storage",
            url,
            "--data-dir",
            str(real_data_dir),
        )
        == 0
    )
    trials = optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()
    assert len(trials) == 2 and trials[0].state == TrialState.COMPLETE
    assert trials[0].value > 0.6  # the report's best configuration, one epoch on 1,667 images


def test_a_piped_run_prints_its_pace_and_an_estimate_in_plain_lines(fashion_root, tmp_path):
    """One epoch a trial: none is called pruned, though the pruner (SHA) would stop the bad
    second trial at its first report, which is also its last. Within-epoch lines are due at
    every batch (interval 0), so the run shows them, and what a pipe gets of them."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="fashion-lenet", storage=url, direction="maximize")
    good = {**SPEC.baseline, "c1": 4, "c2": 8, "c3": 32, "batch_size": 32, "lr": 3e-3}
    study.enqueue_trial(good)
    study.enqueue_trial({**good, "optimizer": "sgd", "momentum": 0.0, "lr": 1e-4, "loss": "mse_softmax"})
    args = [*"run fashion-lenet --trials 4 --epochs 1 --pruner sha --seed 0 --subset 300 --storage".split(), url]
    code = f"""
        import sys
        from hpsearch import progress
        from hpsearch.cli import main

        progress.PIPED_TICK_SECONDS = 0.0
        sys.exit(main({[*args, "--data-dir", str(fashion_root), *FAST]!r}))
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, cwd=tmp_path, env=os.environ, timeout=300
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"\r" not in proc.stdout
    assert out.splitlines()[0].endswith(", up to 1 epoch")
    assert re.search(r"^  trial 0 epoch 1/1: \d+% of batches, \d+s$", out, re.MULTILINE), out
    ends = re.findall(r"^trial \d+ .* \| (\d)/4 finished \| (.*)$", out, re.MULTILINE)
    assert [n for n, _ in ends] == ["1", "2", "3", "4"], out
    duration = r"(?:\d+[hms])+"  # 12s, 3m04s, 48m, 2h10m
    for n, pace in ends:
        eta = f", ETA {duration}" if n != "4" else ""  # none once the study is done
        assert re.fullmatch(rf"{duration} elapsed, [\d.]+ trials/min{eta}", pace), pace
    assert "pruned at epoch 1" not in out
    first, second = optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()[:2]
    assert first.state == second.state == TrialState.COMPLETE and second.user_attrs["ended"] == "complete"
    estimates = re.findall(
        r"^estimate: about \S+ for the 3 trials left, at [\d.]+ trials/min so far", out, re.MULTILINE
    )
    assert len(estimates) == 1, out
    assert "to finish sooner" not in out  # a run of seconds needs no advice


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _cfg(jobs=1, **kw):
    return SimpleNamespace(
        jobs=jobs,
        worker=0,
        trials=200,
        epochs=20,
        pruner="hyperband",
        device=torch.device("cpu"),
        spec=SimpleNamespace(metric="val_accuracy"),
        **kw,
    )


def test_progress_within_an_epoch_is_a_line_every_few_seconds_or_one_redrawn_line(monkeypatch):
    now = [0.0]
    piped = io.StringIO()
    progress = Progress(_cfg(), piped, clock=lambda: now[0])
    for t, done in [(0, 0), (5, 1), (10, 4), (15, 6), (20.4, 9), (30, 10), (31, 0), (40, 5)]:
        now[0] = t
        progress.batch(3, "epoch 2/20", done, 10)
    # Due every PIPED_TICK_SECONDS from the pass's start; none for the last batch, whose epoch
    # line follows; a new pass starts its own count.
    assert piped.getvalue() == "  trial 3 epoch 2/20: 40% of batches, 10s\n  trial 3 epoch 2/20: 90% of batches, 20s\n"

    terminal = _Terminal()
    progress = Progress(_cfg(), terminal, clock=lambda: now[0])
    now[0] = 0
    progress.batch(1, "pre-training epoch 1/5", 0, 4)
    for t, done in [(1, 1), (2, 2)]:
        now[0] = t
        progress.batch(1, "pre-training epoch 1/5", done, 4)
    progress.say("  trial 1 epoch 1/20: val_accuracy 0.5000")
    line1, line2 = (
        "  trial 1 pre-training epoch 1/5: 25% of batches, 1s",
        "  trial 1 pre-training epoch 1/5: 50% of batches, 2s",
    )
    blank = "\r" + " " * len(line2) + "\r"
    assert terminal.getvalue() == f"\r{line1}\r{line2}{blank}  trial 1 epoch 1/20: val_accuracy 0.5000\n"

    # Workers share one terminal: plain lines there, as on a pipe.
    shared = _Terminal()
    progress = Progress(_cfg(jobs=2), shared, clock=lambda: now[0])
    progress.batch(0, "epoch 1/20", 0, 4)
    now[0] += 10
    progress.batch(0, "epoch 1/20", 1, 4)
    assert shared.getvalue() == "[worker 0]   trial 0 epoch 1/20: 25% of batches, 10s\n"


def test_a_long_run_is_estimated_once_with_the_flags_that_make_it_shorter():
    now = [0.0]
    out = io.StringIO()
    progress = Progress(_cfg(), out, clock=lambda: now[0])
    study = optuna.create_study(direction="maximize")
    for number in range(4):
        now[0] += 60  # a trial a minute: 200 trials take hours
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs={"best_epoch": 20}))
        progress.trial_done(study, study.trials[number])
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("| 1/200 finished | 1m00s elapsed, 1.0 trials/min, ETA 3h19m")
    assert lines[1] == (
        "estimate: about 3h19m for the 199 trials left, at 1.0 trials/min so far, likely less as pruning sets in"
    )
    advice = lines[2]
    assert advice.startswith("to finish sooner, stop with Ctrl-C (finished trials are kept) and run again with: ")
    for flag in ("--trials 31 ", "--timeout 1800 ", "--epochs 5 ", "--subset N ", "--device cuda "):
        assert flag in advice
    assert lines[4].endswith("| 3/200 finished | 3m00s elapsed, 1.0 trials/min, ETA 3h17m")
    assert len(lines) == 6 and lines[5].startswith("trial 3 complete")  # said once
