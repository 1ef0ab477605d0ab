"""Trial weights kept as artifacts (top k), `hpsearch export`, `hpsearch evaluate`, and
refusing checkpoints that are truncated, foreign, edited or crafted to run code."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from invoke import hpsearch
from optuna.trial import TrialState
from optuna_dashboard._note import get_note_from_system_attrs
from synthetic import learnable_images, write_fashion_mnist, write_idx_gz

from hpsearch import checkpoint as ckpt
from hpsearch.cli import main

FAST = [*"--set c1=4 --set c2=8 --set c3=32 --set batch_size=64".split()]


@pytest.fixture(scope="module")
def noisy_fashion(tmp_path_factory) -> Path:
    """Synthetic Fashion-MNIST whose test labels are 30 % wrong, so a test accuracy is a
    number to compare, not a certain 1.0."""
    root = write_fashion_mnist(tmp_path_factory.mktemp("noisy"))
    _, labels = learnable_images(100, seed=1)
    rng = np.random.default_rng(9)
    flip = rng.random(len(labels)) < 0.3
    labels[flip] = (labels[flip] + rng.integers(1, 10, flip.sum())) % 10
    write_idx_gz(root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="module")
def searched(noisy_fashion, tmp_path_factory):
    """A study of 4 complete trials that kept the weights of its best 2."""
    work = tmp_path_factory.mktemp("study")
    url = f"sqlite:///{work / 'hp.db'}"
    assert (
        hpsearch(
            "run fashion-lenet --trials 4 --epochs 2 --pruner none --seed 0 --keep-weights 2 --storage",
            url,
            "--data-dir",
            noisy_fashion,
            *FAST,
        )
        == 0
    )
    return work, url, optuna.load_study(study_name="fashion-lenet", storage=url)


def test_only_the_best_k_trials_keep_weights(searched):
    work, url, study = searched
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4

    def artifact_ids(trial):
        return {m.artifact_id for m in optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)}

    stored = {p.name for p in (work / "hp-artifacts").iterdir()}
    ranked = sorted(trials, key=lambda t: t.value, reverse=True)
    assert len(stored) == 2  # disk holds k models, not one per trial
    assert stored == artifact_ids(ranked[0]) | artifact_ids(ranked[1])


def test_each_trial_has_a_dashboard_note(searched):
    _, _, study = searched
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    for trial in study.get_trials():
        note = get_note_from_system_attrs(system_attrs, trial._trial_id)["body"]
        assert note.startswith("**complete**")
        assert "parameters" in note and "epoch time" in note and "lenet5" in note and "Conv2d" in note


def test_export_then_evaluate_in_a_fresh_process_gives_the_stored_metric(searched, noisy_fashion, tmp_path):
    work, url, study = searched
    out = tmp_path / "best.pt"
    assert hpsearch("export fashion-lenet --out", out, "--score", "--storage", url, "--data-dir", noisy_fashion) == 0
    saved = torch.load(out, weights_only=True)  # plain data: no pickled code needed
    best = study.best_trial
    assert saved["trial"] == best.number and saved["params"] == best.params
    assert saved["model"] == {"name": "lenet5", "kwargs": best.user_attrs["model_kwargs"]}
    assert saved["metrics"]["val_accuracy"] == best.value
    assert saved["normalization"] == {"mean": [0.2860], "std": [0.3530]}
    assert saved["classes"][0] == "T-shirt/top" and {"torch", "optuna"} <= set(saved["versions"])
    stored_test = saved["metrics"]["test_accuracy"]
    assert 0.2 < stored_test < 0.95  # 30 % of the test labels are wrong

    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch", "evaluate", str(out), "--data-dir", str(noisy_fashion)],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    printed = float(re.search(r"test_accuracy ([0-9.]+) on 100 images", proc.stdout).group(1))
    assert printed == pytest.approx(stored_test, abs=5e-5)
    assert (
        len(
            re.findall(
                r"^(T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot) ", proc.stdout, re.M
            )
        )
        == 10
    )


def test_evaluate_on_a_csv_of_the_test_images(searched, noisy_fashion, tmp_path, capsys):
    work, url, study = searched
    out = tmp_path / "best.pt"
    assert hpsearch("export fashion-lenet --out", out, "--score", "--storage", url, "--data-dir", noisy_fashion) == 0
    from hpsearch import data

    test = data.read("fashion_mnist", "test", noisy_fashion)
    rows = np.concatenate([test.labels.numpy()[:, None], test.images.reshape(len(test.labels), -1).numpy()], 1)
    np.savetxt(
        tmp_path / "test.csv",
        rows,
        fmt="%d",
        delimiter=",",
        header="label," + ",".join(f"p{i}" for i in range(784)),
        comments="",
    )
    capsys.readouterr()
    assert main(["evaluate", str(out), "--csv", str(tmp_path / "test.csv")]) == 0
    printed = float(re.search(r"test_accuracy ([0-9.]+)", capsys.readouterr().out).group(1))
    assert printed == pytest.approx(torch.load(out, weights_only=True)["metrics"]["test_accuracy"], abs=5e-5)


def test_a_trial_without_kept_weights_needs_retrain(searched, noisy_fashion, tmp_path, capsys):
    work, url, study = searched
    worst = min(study.get_trials(), key=lambda t: t.value)
    out = tmp_path / "worst.pt"
    assert main(["export", "fashion-lenet", "--trial", str(worst.number), "--out", str(out), "--storage", url]) == 2
    assert "--retrain" in capsys.readouterr().err and not out.exists()
    assert (
        hpsearch(
            "export fashion-lenet --trial",
            worst.number,
            "--out",
            out,
            "--retrain",
            "--storage",
            url,
            "--data-dir",
            noisy_fashion,
        )
        == 0
    )
    printed = capsys.readouterr().out
    epochs = worst.user_attrs["best_epoch"]
    assert f"retraining trial {worst.number} on " in printed and f"retrain epoch {epochs}/{epochs}: loss" in printed
    saved = ckpt.load(out)
    assert saved["retrained_on"] == "train+validation" and saved["trial"] == worst.number
    model = ckpt.rebuild(saved)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line_refusal(path, capsys) -> str:
    assert main(["evaluate", str(path), "--data-dir", "."]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_a_checkpoint_crafted_to_run_code_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "payload": _RunsCode(marker)}, evil)
    assert "pickled code" in _one_line_refusal(evil, capsys)
    assert not marker.exists()


def test_truncated_foreign_and_edited_checkpoints_are_refused(searched, noisy_fashion, tmp_path, capsys):
    work, url, study = searched
    good = tmp_path / "good.pt"
    assert main(["export", "fashion-lenet", "--out", str(good), "--storage", url]) == 0

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "truncated or foreign" in _one_line_refusal(truncated, capsys)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert "not an hpsearch checkpoint" in _one_line_refusal(foreign, capsys)

    edited = tmp_path / "edited.pt"
    saved = torch.load(good, weights_only=True)
    first = next(iter(saved["state_dict"]))
    saved["state_dict"][first] = saved["state_dict"][first] + 1
    torch.save(saved, edited)
    assert "sha256" in _one_line_refusal(edited, capsys)

    assert "no such checkpoint" in _one_line_refusal(tmp_path / "missing.pt", capsys)
