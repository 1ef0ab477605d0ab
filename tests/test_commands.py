"""`hpsearch list`, `hpsearch show`, `--help`, and the package outside the checkout."""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from invoke import hpsearch

from hpsearch.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def test_list_names_every_study_with_its_dataset_metric_and_direction(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["study", "dataset"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert sorted(rows) == [
        "cifar10-mlp",
        "fashion-fc",
        "fashion-lenet",
        "fashion-resnet",
        "flowers-ae",
        "mnist-denoise",
    ]
    assert rows["fashion-lenet"].split() == [
        "fashion-lenet",
        "fashion_mnist",
        "LeNet-5",
        "val_accuracy",
        "maximize",
        "20",
    ]
    assert rows["mnist-denoise"].split()[-3:] == ["val_mse", "minimize", "20"]


@pytest.mark.parametrize("command", ["run", "show", "export", "evaluate", "dashboard", "report", "list"])
def test_help_lists_every_option_the_parser_takes(command, capsys):
    # argparse has no public list of a parser's options: read its actions.
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = [o for action in subparsers.choices[command]._actions for o in action.option_strings]
    if command == "run":
        assert {"--jobs", "--keep-weights", "--artifacts", "--heartbeat", "--trials"} <= set(options)
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in options:
        assert option in out, option


def test_show_summarises_the_stored_study(fashion_root, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert (
        hpsearch(
            "run fashion-lenet --trials 3 --epochs 1 --subset 300 --seed 1 --storage", url, "--data-dir", fashion_root
        )
        == 0
    )
    capsys.readouterr()
    assert main(["show", "fashion-lenet", "--storage", url]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="fashion-lenet", storage=url)
    states = [t.state.name for t in study.trials]
    assert f"trials: 3 (COMPLETE {states.count('COMPLETE')}, PRUNED {states.count('PRUNED')}" in out
    assert f"best value: {study.best_value:.4f} (trial {study.best_trial.number})" in out
    table = out.split("top ")[1].splitlines()[1:]
    assert table[0].split()[:2] == ["trial", "value"]
    assert table[1].split()[:2] == [str(study.best_trial.number), f"{study.best_value:.4f}"]


def test_a_plain_install_works_outside_the_checkout(tmp_path):
    """`pip install .` (not editable) ships the engine, the studies and the models."""
    # A copy, because pip builds in the source tree and would leave build/ in the checkout.
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "*.db", "__pycache__", ".pytest_cache", "data", ".device"
        ),
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            *"-m pip install --quiet --no-deps --no-build-isolation --target".split(),
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert not (target / "tests").exists()
    # Dependencies installed with --target (as on the GPU machine) stay on the path; the checkout does not.
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *kept])}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import hpsearch, studies, models, sys; "
            "print(hpsearch.__file__); sys.exit(__import__('hpsearch.cli').cli.main(['list']))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(str(target))
    assert "fashion-lenet" in proc.stdout
