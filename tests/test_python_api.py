"""``import hpsearch`` as a notebook uses it: a study defined in the notebook itself, run,
confirmed, exported and loaded back, with the command line's storage, exact N, resume and
Ctrl-C."""

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from processes import interruptible, wait_until_training
from torch import nn

import hpsearch
from hpsearch.models import register
from hpsearch.models import registry as model_registry

NOISY = str(Path(__file__).with_name("noisy_study.py"))


class Quadratic:
    """A trainer of the notebook's own: the value rises with ``x`` towards 1, plus seed noise."""

    summary = "no data: a known curve"

    def __init__(self, cfg):
        pass

    def __call__(self, ctx):
        noise = random.Random(ctx.seed).gauss(0.0, 0.001)
        for epoch in range(1, ctx.epochs + 1):
            ctx.on_epoch(epoch, 1.0 - (ctx.params["x"] - 1.0) ** 2 + noise, 0.0, 0.0)
        return 1.0 - (ctx.params["x"] - 1.0) ** 2 + noise


NOTEBOOK_SPEC = hpsearch.StudySpec(
    name="notebook-quadratic",
    description="defined in the notebook",
    dataset="none",
    model_family="none",
    max_epochs=2,
    space=lambda trial: {"x": trial.suggest_float("x", -2.0, 2.0)},
    model=lambda p: ("none", {}),
    baseline={"x": 0.0},
    baseline_source="x = 0",
    trainer=Quadratic,
)


def test_the_public_surface_is_small_and_named_as_optuna_names_things():
    assert hpsearch.__all__ == ["StudySpec", "UsageError", "confirm", "export", "load", "run"]
    assert all(callable(getattr(hpsearch, name)) for name in hpsearch.__all__)
    assert {"run", "confirm", "export", "load"} <= set(dir(hpsearch))


def test_a_study_defined_in_the_notebook_runs_to_exactly_n_and_resumes(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    study = hpsearch.run(NOTEBOOK_SPEC, n_trials=4, storage=url, seed=0, pruner="none")
    assert isinstance(study, optuna.Study) and study.study_name == "notebook-quadratic"
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert study.trials[0].params == {"x": 0.0} and "baseline" in study.trials[0].user_attrs
    # The same storage as the command line: it reads the study, and a rerun continues to N.
    again = hpsearch.run(NOTEBOOK_SPEC, n_trials=6, storage=url, seed=0, pruner="none")
    assert len(again.trials) == 6 and len(optuna.load_study(study_name="notebook-quadratic", storage=url).trials) == 6
    out = capsys.readouterr().out.splitlines()
    # A line per finished trial and the run's first and last lines; no epoch lines to flood a notebook.
    assert sum(" complete, " in line for line in out) == 6
    assert not [line for line in out if line.startswith("  trial ") or line.startswith("trial 0:")], out
    assert len(out) <= 6 + 2 * 3


def test_progress_none_prints_nothing_and_epoch_prints_what_the_command_line_does(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    hpsearch.run(NOTEBOOK_SPEC, n_trials=1, storage=url, progress="none")
    assert capsys.readouterr().out == ""
    hpsearch.run(NOTEBOOK_SPEC, n_trials=2, storage=url, pruner="none", progress="epoch")
    assert "  trial 1 epoch 2/2:" in capsys.readouterr().out
    with pytest.raises(hpsearch.UsageError, match="progress='lots': use one of 'epoch', 'trial', 'none'"):
        hpsearch.run(NOTEBOOK_SPEC, n_trials=3, storage=url, progress="lots")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda url: hpsearch.run("fashion-lent", 3, storage=url), "unknown study 'fashion-lent'"),
        (lambda url: hpsearch.run(NOISY, 0, storage=url), "n_trials=0: a whole number of at least 1"),
        (lambda url: hpsearch.run(NOISY, 3, storage=url, fixed={"a": "maybe"}), "a must be one of False, True"),
        (lambda url: hpsearch.run(NOISY, 3, storage=url, seed=-1), "seed=-1: outside 0 to 2147483647"),
        (lambda url: hpsearch.confirm(NOISY, storage=url), "no study 'noisy'"),
    ],
)
def test_bad_input_raises_usage_error_and_writes_nothing(tmp_path, call, message):
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    with pytest.raises(hpsearch.UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(url)
    assert not (tmp_path / "nb.db").exists()


def notebook_mlp(hidden: int = 32) -> nn.Module:
    """A model the notebook registers (in the test, so that other tests see only the packaged
    models), by name, as every model is."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))


TORCH_SPEC = hpsearch.StudySpec(
    name="notebook-mlp",
    description="an MLP defined in the notebook",
    dataset="fashion_mnist",
    model_family="MLP",
    max_epochs=2,
    space=lambda trial: {
        "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True),
        "hidden": trial.suggest_int("hidden", 16, 64, log=True),
    },
    training_params=("lr",),
    training_fixed={"batch_size": 50},
    model=lambda p: ("notebook_mlp", {"hidden": p["hidden"]}),
    baseline={"lr": 3e-3, "hidden": 32},
    baseline_source="lr 3e-3, 32 hidden",
)


@pytest.fixture
def notebook_model():
    """``notebook_mlp`` registered as a notebook registers it, for this test only: the other
    tests see the packaged models alone (the registry has no public way to forget a model)."""
    register(notebook_mlp)
    yield
    model_registry._REGISTRY.pop("notebook_mlp")


def test_run_confirm_export_load_from_a_notebook(notebook_model, fashion_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default storage, sqlite:///hpsearch.db, lands here
    study = hpsearch.run(TORCH_SPEC, n_trials=3, seed=0, data_dir=fashion_root, subset=300, pruner="none")
    assert len(study.trials) == 3 and (tmp_path / "hpsearch.db").exists()
    confirmation = hpsearch.confirm(TORCH_SPEC, top=2, seeds=2, data_dir=fashion_root, subset=300)
    rows = {r["trial"]: r for r in confirmation["rows"]}
    assert confirmation["best"] in rows and len(rows) == 2 and all(r["n"] == 2 for r in rows.values())
    path = hpsearch.export(TORCH_SPEC, tmp_path / "best.pt", score=True, data_dir=fashion_root)
    assert path == tmp_path / "best.pt" and path.exists() and path.with_suffix(".pt2").exists()
    model = hpsearch.load(path)
    program = hpsearch.load(path.with_suffix(".pt2"))  # no model code needed
    assert isinstance(model, nn.Module) and not model.training
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert model(x).shape == (5, 10)
        assert torch.allclose(model(x), program(x), atol=1e-5)
    best = confirmation["best"]
    assert torch.load(path, weights_only=True)["trial"] == best


def test_ctrl_c_in_a_notebook_is_keyboard_interrupt_and_loses_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    cell = textwrap.dedent(
        f"""
        import hpsearch
        try:
            hpsearch.run({NOISY!r}, n_trials=4, storage={url!r}, pruner="none", seed=3)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
        """
    )
    env = {**os.environ, "NOISY_EPOCH_SECONDS": "0.4"}
    proc = subprocess.Popen(
        [sys.executable, "-c", cell], env=env, preexec_fn=interruptible, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_until_training(url, "noisy", 1, proc)  # trial 1 mid-training: one epoch reported
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"KeyboardInterrupt" in out, err
    assert b"Traceback" not in err and b"ExperimentalWarning" not in err, err
    trials = optuna.load_study(study_name="noisy", storage=url).trials
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[2].state == TrialState.WAITING and trials[2].params == trials[1].params  # queued again
    study = hpsearch.run(NOISY, n_trials=4, storage=url, pruner="none", seed=3)
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 4 and finished[1].user_attrs["seed"] == trials[1].user_attrs["seed"]
