"""Every registered study runs two short trials end to end on synthetic data in its real
on-disk format (fashion-lenet has its own, longer tests in test_run.py)."""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from invoke import hpsearch
from optuna.trial import TrialState
from synthetic import write_cifar10_pickles, write_fashion_csv, write_flowers102, write_mnist

from hpsearch import data, registry
from hpsearch.cli import main
from hpsearch.study import epochs_trained

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def _run(study, root, tmp_path, *extra):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    code = main(
        ["run", study, *"--trials 2 --epochs 1 --seed 0 --storage".split(), url, "--data-dir", str(root), *extra]
    )
    assert code == 0
    return optuna.load_study(study_name=study, storage=url)


def _check(study, spec_name, fixed=None):
    spec = registry.get(spec_name)
    trials = study.get_trials()
    assert len(trials) == 2 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert trials[0].params == {**spec.baseline, **(fixed or {})}
    assert trials[0].state == TrialState.COMPLETE and epochs_trained(trials[0]) == 1
    assert study.direction.name.lower() == spec.direction
    assert all(math.isfinite(v) for t in trials for v in t.intermediate_values.values())
    return trials


def test_fashion_fc(fashion_root, tmp_path):
    trials = _check(_run("fashion-fc", fashion_root, tmp_path), "fashion-fc")
    assert trials[0].user_attrs["model_kwargs"] == {"hidden": 512, "dropout": 0.0} and trials[0].value > 0.5


def test_fashion_resnet_on_torchvision_files(fashion_root, tmp_path):
    trials = _check(_run("fashion-resnet", fashion_root, tmp_path, "--subset", "64"), "fashion-resnet")
    assert trials[0].user_attrs["model"] == "resnet18"


def test_fashion_resnet_on_a_csv_split_four_to_one(tmp_path, capsys):
    write_fashion_csv(tmp_path / "train.csv", 100, header=True)
    empty = tmp_path / "no-files-here"
    empty.mkdir()
    _check(
        _run("fashion-resnet", empty, tmp_path, "--train-csv", str(tmp_path / "train.csv"), "--set", "model=cnn"),
        "fashion-resnet",
        {"model": "cnn"},
    )
    assert "80 train / 20 validation images" in capsys.readouterr().out


def test_fashion_resnet_csv_with_a_bad_row_exits_2_naming_the_line(tmp_path, capsys):
    csv = tmp_path / "train.csv"
    write_fashion_csv(csv, 10, header=True)
    lines = csv.read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0]  # line 5: one pixel short
    csv.write_text("\n".join(lines) + "\n")
    db = tmp_path / "study.db"
    assert (
        hpsearch(
            "run fashion-resnet --trials 1 --train-csv", csv, "--storage", f"sqlite:///{db}", "--data-dir", tmp_path
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "line 5" in err and "784" in err
    assert not db.exists()  # the storage is checked without creating its file


def test_cifar10_mlp_on_the_python_pickles(tmp_path, without_md5_checks):
    write_cifar10_pickles(tmp_path, n_train=250, n_test=50)
    trials = _check(_run("cifar10-mlp", tmp_path, tmp_path), "cifar10-mlp")
    assert trials[0].user_attrs["model_kwargs"]["widths"] == [1024, 512, 64, 64, 32, 16]
    assert trials[0].user_attrs["model_kwargs"]["dropouts"] == [0.6, 0.6, 0.4, 0.4, 0.25, 0.0]


def test_mnist_denoise_minimises_validation_mse(tmp_path):
    write_mnist(tmp_path)
    trials = _check(_run("mnist-denoise", tmp_path, tmp_path), "mnist-denoise")
    # Pixels are in [0, 1]; an MSE against them lies in [0, 1] (0.01 is the noise alone).
    assert all(0 < v < 1 for t in trials for v in t.intermediate_values.values())
    assert trials[0].user_attrs["model"] == "conv_ae"


def test_flowers_ae_trains_both_stages_on_the_official_split(tmp_path, without_md5_checks, capsys):
    write_flowers102(tmp_path)
    trials = _check(
        _run("flowers-ae", tmp_path, tmp_path, "--set", "pretrain_epochs=1"), "flowers-ae", {"pretrain_epochs": 1}
    )
    assert trials[0].user_attrs["model"] == "flowers_ae"
    assert "12 train / 12 validation images" in capsys.readouterr().out  # 6 classes x 2 each


@pytest.mark.parametrize("path", sorted(STUDIES.glob("[!_]*.py")), ids=lambda p: p.stem)
def test_every_study_file_is_named_after_its_study_and_declares_a_consistent_spec(path):
    spec = registry.get(str(path))  # loaded from the file, as a user's own study would be
    assert spec.name == path.stem.replace("_", "-")  # the file a user looks for is named after the study
    assert spec.name in registry.all_specs()  # and `hpsearch list` finds it
    assert spec.metric.startswith("val_") and spec.max_epochs > 0 and spec.baseline_source
    assert spec.direction in ("maximize", "minimize")


def test_a_misspelt_training_setting_is_an_error_when_the_study_is_defined():
    spec = registry.get("fashion-lenet")
    with pytest.raises(ValueError, match="study fashion-lenet: not a training setting: weight_decy"):
        dataclasses.replace(spec, training_params=(*spec.training_params, "weight_decy"))
    with pytest.raises(ValueError, match="not a training setting: epochs"):  # the run's, not the study's
        dataclasses.replace(spec, training_fixed={"epochs": 3})


class _Reads(dict):
    """A dict that remembers which keys were read."""

    def __init__(self, items):
        super().__init__(items)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


@pytest.mark.parametrize("name", sorted(registry.all_specs()))
def test_every_searched_parameter_reaches_the_model_or_the_training(name):
    spec = registry.get(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(100):  # random configurations, conditional branches included
        trial = study.ask()
        params = _Reads(spec.space(trial))
        study.tell(trial, 0.0)
        spec.model(params)
        if spec.stages:
            spec.stages(params)
        unused = set(params) - params.read - set(spec.training_params)
        assert not unused, f"searched but never applied: {sorted(unused)}"


WRITING_A_STUDY = Path(__file__).resolve().parents[1] / "docs" / "writing-a-study.md"


def _python_blocks() -> list[str]:
    """The Python blocks of docs/writing-a-study.md in order, so that its examples are run as written."""
    return [block.split("```", 1)[0] for block in WRITING_A_STUDY.read_text().split("```python\n")[1:]]


def _readme_study() -> str:
    """The example study file of docs/writing-a-study.md, with a model of its own."""
    return _python_blocks()[0]


def _evaluate_in(folder, *args):
    """``hpsearch evaluate ARGS`` in a fresh process run in ``folder``: nothing of the test's
    own process (a study file imported, a dataset registered) is there."""
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", "evaluate", *map(str, args)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _accuracy_line(proc) -> str:
    assert proc.returncode == 0, proc.stderr
    return next(line for line in proc.stdout.splitlines() if line.startswith("test_accuracy"))


def _evaluate_elsewhere(tmp_path, data_root):
    """``hpsearch evaluate`` in fresh processes from another folder: the checkpoint through
    its study file (moved, changed), the .pt2 program with no study file at all."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def evaluate(*args):
        return _evaluate_in(elsewhere, *args, "--data-dir", data_root)

    first = evaluate(tmp_path / "best.pt")
    accuracy = _accuracy_line(first)
    assert "sparse_fc from trial" in first.stdout
    assert _accuracy_line(evaluate(tmp_path / "best.pt2")) == accuracy

    moved = tmp_path / "moved" / "my_study.py"
    moved.parent.mkdir()
    (tmp_path / "mine" / "my_study.py").rename(moved)
    gone = evaluate(tmp_path / "best.pt")
    assert gone.returncode == 2 and gone.stdout == "" and len(gone.stderr.strip().splitlines()) == 1
    assert "which is not there: give its new place with --study PATH" in gone.stderr
    assert evaluate(tmp_path / "best.pt2").returncode == 0  # the program needs no study file
    moved.write_text(moved.read_text() + "\n# edited after the export\n")
    changed = evaluate(tmp_path / "best.pt", "--study", moved)
    assert changed.returncode == 0, changed.stderr
    assert "note: the study file" in changed.stdout and "changed since the export" in changed.stdout
    moved.rename(tmp_path / "mine" / "my_study.py")  # back, for the rest of the test


def test_a_study_file_from_anywhere_runs_and_is_found_again_by_its_path(fashion_root, tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "my_study.py").write_text(_readme_study())
    monkeypatch.chdir(mine)  # the path as a user types it, relative to where they are
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run = "run my_study.py --trials 2 --epochs 1 --subset 300 --seed 0 --storage"
    assert hpsearch(run, url, "--data-dir", fashion_root) == 0
    study = optuna.load_study(study_name="my-fc", storage=url)  # stored under SPEC's name
    assert study.trials[0].params == {"lr": 1e-3, "batch_size": 100, "hidden": 512, "l1": 1e-4}
    assert study.trials[0].user_attrs["model"] == "sparse_fc"  # the file's own model
    capsys.readouterr()

    monkeypatch.chdir(tmp_path)
    assert hpsearch("show mine/my_study.py --storage", url) == 0
    out = capsys.readouterr().out
    assert out.startswith("study my-fc (my-fc)") and "trials: 2 (" in out
    assert hpsearch("export mine/my_study.py --out best.pt --storage", url, "--data-dir", fashion_root) == 0
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "best.pt2").is_file()
    _evaluate_elsewhere(tmp_path, fashion_root)
    assert hpsearch("list mine/my_study.py") == 0
    assert "hidden      int 64 .. 2048, log" in capsys.readouterr().out
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert hpsearch("show mine/my_study.py --storage", empty) == 2  # the hint names the file, not "run my-fc"
    assert "start one with 'hpsearch run mine/my_study.py'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, words",
    [
        (None, "no study file"),
        ("X = 1\n", "defines no SPEC"),
        ((STUDIES / "fashion_fc.py").read_text(), "the name of the packaged study in studies/fashion_fc.py"),
        ("SPEC = (\n", "at line 1: SyntaxError"),
        ("import math\n\nmath.sqrt(-1)\n", "at line 3: ValueError: math domain error"),
    ],
    ids=["missing", "no-spec", "packaged-name", "syntax", "raises"],
)
def test_a_bad_study_file_is_one_line_and_exit_2(text, words, tmp_path, capsys):
    path = tmp_path / "my_study.py"
    if text is not None:
        path.write_text(text)
    for command in ("run", "list", "show", "export", "report"):
        extra = {"run": ["--trials", "1"], "export": ["--out", "x.pt"], "report": ["--out", "x.html"]}.get(command, [])
        db = tmp_path / "study.db"
        assert main([command, str(path), *extra, *(["--storage", f"sqlite:///{db}"] if command != "list" else [])]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith("hpsearch: error: ") and words in err, err
        assert not db.exists()


def test_the_dataset_example_runs_as_written_and_its_program_evaluates_anywhere(tmp_path, monkeypatch):
    study_file, make_data = _python_blocks()[1:3]
    assert 'dataset="digits8"' in study_file and "np.savez" in make_data  # the blocks this test means
    (tmp_path / "digits8_study.py").write_text(study_file)
    (tmp_path / "make_digits8.py").write_text(make_data)
    subprocess.run([sys.executable, "make_digits8.py"], cwd=tmp_path, check=True, timeout=60)
    # The mean and std the example declares are its data's, as the doc says.
    pixels = torch.from_numpy(np.load(tmp_path / "data" / "digits8" / "train.npz")["images"]).float().div(255)
    registry.get(str(tmp_path / "digits8_study.py"))  # imports the file, which registers digits8
    info = data.DATASETS["digits8"]
    assert info.mean == pytest.approx((float(pixels.mean()),), abs=1e-4)
    assert info.std == pytest.approx((float(pixels.std()),), abs=1e-4)

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert hpsearch("run digits8_study.py --trials 2 --epochs 1 --seed 0 --data-dir data --storage", url) == 0
    assert hpsearch("export digits8_study.py --out digits.pt --data-dir data --storage", url) == 0
    assert (tmp_path / "digits.pt2").is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data_dir = ("--data-dir", tmp_path / "data")
    accuracy = _accuracy_line(_evaluate_in(elsewhere, tmp_path / "digits.pt", *data_dir))
    assert accuracy.endswith("on 300 images (digits8 test split in " + str(tmp_path / "data") + ")")
    assert _accuracy_line(_evaluate_in(elsewhere, tmp_path / "digits.pt2", *data_dir)) == accuracy

    moved = tmp_path / "moved" / "digits8_study.py"
    moved.parent.mkdir()
    (tmp_path / "digits8_study.py").rename(moved)
    gone = _evaluate_in(elsewhere, tmp_path / "digits.pt2", *data_dir)
    assert gone.returncode == 2 and gone.stdout == "" and len(gone.stderr.strip().splitlines()) == 1, gone.stderr
    assert "dataset 'digits8' is registered by the study file" in gone.stderr
    assert "which is not there: give its new place with --study PATH" in gone.stderr
    assert _accuracy_line(_evaluate_in(elsewhere, tmp_path / "digits.pt2", *data_dir, "--study", moved)) == accuracy
