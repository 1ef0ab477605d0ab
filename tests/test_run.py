"""`hpsearch run` end to end on synthetic Fashion-MNIST, read back with Optuna itself."""

import optuna
import torch
from optuna.trial import TrialState

import models
from hpsearch import registry, search
from hpsearch.cli import main

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
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    assert all(t.value == max(t.intermediate_values.values()) for t in trials)
    # Trial 0 is the report's configuration (with the --set values on top).
    expected = {**SPEC.baseline, "c1": 4, "c2": 8, "c3": 32, "batch_size": 64}
    assert trials[0].params == expected
    assert "report 004" in trials[0].user_attrs["baseline"]
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
