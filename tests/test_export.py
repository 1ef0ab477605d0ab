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
from synthetic import learnable_images, write_fashion_csv, write_fashion_mnist, write_idx_gz

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


@pytest.fixture(scope="module")
def exported(searched, tmp_path_factory) -> Path:
    """A checkpoint written by `hpsearch export` from the searched study."""
    _, url, _ = searched
    good = tmp_path_factory.mktemp("exported") / "good.pt"
    assert hpsearch("export fashion-lenet --out", good, "--storage", url) == 0
    return good


def _one_line_refusal(path, capsys) -> str:
    capsys.readouterr()
    assert hpsearch("evaluate", path, "--data-dir", ".") == 2
    out, err = capsys.readouterr()
    assert not out and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(path) in err
    return err


def _truncated(path, request):
    good = request.getfixturevalue("exported").read_bytes()
    path.write_bytes(good[: len(good) // 2])


NOT_A_ZIP = "is not an hpsearch checkpoint: it is not a zip archive written by torch.save"
TEXT = "is not an hpsearch checkpoint: it looks like text, not a zip archive written by torch.save"


@pytest.mark.parametrize(
    "write, expected",
    [
        pytest.param(lambda p, _: p.write_text("hello\n"), TEXT, id="hello"),
        pytest.param(lambda p, _: p.write_text("abc"), TEXT, id="abc"),
        pytest.param(lambda p, _: p.write_bytes(np.random.default_rng(0).bytes(4096)), NOT_A_ZIP, id="random-bytes"),
        pytest.param(
            lambda p, _: write_fashion_csv(p, 100),
            "looks like a CSV, not a checkpoint; score a CSV with: hpsearch evaluate CHECKPOINT --csv",
            id="csv",
        ),
        pytest.param(
            lambda p, _: p.write_text("<!DOCTYPE html>\n<html><head><title>Model</title></head><body></body></html>\n"),
            TEXT,
            id="html",
        ),
        pytest.param(lambda p, _: p.write_bytes(b""), "is not an hpsearch checkpoint: the file is empty", id="empty"),
        pytest.param(
            _truncated,
            "is a truncated or damaged checkpoint (its zip archive is incomplete); export it again",
            id="truncated",
        ),
        pytest.param(
            lambda p, _: torch.save({"format": ckpt.FORMAT, "payload": _RunsCode(p.parent / "pwned")}, p),
            f"refused: it holds pickled code ({os.system.__module__}.system), which hpsearch never runs",
            id="runs-code",
        ),
    ],
)
def test_evaluate_refuses_what_is_not_a_checkpoint_in_one_line_naming_what_it_is(
    write, expected, request, tmp_path, capsys
):
    path = tmp_path / "model.pt"
    write(path, request)
    err = _one_line_refusal(path, capsys)
    assert expected in err
    # "pickled code" alarms, and --csv redirects: each belongs to its one case only.
    assert ("pickled code" in err) == (request.node.callspec.id == "runs-code")
    assert ("--csv" in err) == (request.node.callspec.id == "csv")
    assert not (tmp_path / "pwned").exists()


def test_foreign_edited_and_missing_checkpoints_are_refused(exported, tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert "not an hpsearch checkpoint: it has no 'hpsearch-checkpoint/1' marker" in _one_line_refusal(foreign, capsys)

    edited = tmp_path / "edited.pt"
    saved = torch.load(exported, weights_only=True)
    first = next(iter(saved["state_dict"]))
    saved["state_dict"][first] = saved["state_dict"][first] + 1
    torch.save(saved, edited)
    assert "sha256" in _one_line_refusal(edited, capsys)

    assert "no such checkpoint" in _one_line_refusal(tmp_path / "missing.pt", capsys)


def test_export_takes_the_confirmed_best_and_scores_each_seeds_weights(noisy_fashion, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    common = ["--storage", url, "--data-dir", noisy_fashion]
    assert hpsearch("run fashion-lenet --trials 3 --epochs 2 --pruner none --seed 0", *common, *FAST) == 0
    assert hpsearch("confirm fashion-lenet --top 2 --seeds 2", *common) == 0
    confirmation = optuna.load_study(study_name="fashion-lenet", storage=url).user_attrs["confirmation"]
    best = confirmation["best"]
    capsys.readouterr()
    assert hpsearch("export fashion-lenet --score --out", tmp_path / "best.pt", *common) == 0
    out = capsys.readouterr().out
    assert f"exporting trial {best}, the confirmed best" in out, out
    checkpoint = ckpt.load(tmp_path / "best.pt")
    assert checkpoint["trial"] == best
    seeds = checkpoint["seeds"]
    assert seeds["n"] == 2 and seeds["seeds"] == [2**31, 2**31 + 1]
    assert seeds["mean"] == pytest.approx(sum(seeds["values"]) / 2) and all(0 <= v <= 1 for v in seeds["values"])
    assert f"test_accuracy of the 2 seeds' weights: {seeds['mean']:.4f} ± {seeds['std']:.4f}" in out, out
    # Each seed's weights are its own training: scored again from the replicate study, they agree.
    reps = optuna.load_study(study_name="fashion-lenet:replicates", storage=url)
    assert sum(t.user_attrs.get("config_id") is not None for t in reps.trials) == 4
    # --trial still picks any trial, and says nothing of a confirmation.
    other = next(r["trial"] for r in confirmation["rows"] if r["trial"] != best)
    assert hpsearch(f"export fashion-lenet --trial {other} --out", tmp_path / "other.pt", *common) == 0
    assert "confirmed best" not in capsys.readouterr().out
    assert ckpt.load(tmp_path / "other.pt")["trial"] == other


def test_the_per_class_table_is_aligned_for_class_names_shorter_than_its_header(
    exported, noisy_fashion, tmp_path, capsys
):
    digits = tmp_path / "digits.pt"
    saved = torch.load(exported, weights_only=True)
    saved["classes"] = [str(c) for c in range(10)]  # names of one character, as a study's own dataset may have
    torch.save(saved, digits)
    capsys.readouterr()
    assert hpsearch("evaluate", digits, "--data-dir", noisy_fashion) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("class "))
    rows = lines[header + 1 :]
    assert [row.split()[0] for row in rows] == saved["classes"]
    count_end = re.search(r"\bn\b", lines[header]).end()
    metric_start = lines[header].index("test_accuracy")
    for row in rows:  # each count ends under "n", each value starts under the metric's name
        assert row[count_end - 1] != " " and row[count_end:metric_start].isspace() and row[metric_start] != " ", rows
