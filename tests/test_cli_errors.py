"""Bad input: exit status 2, one line on stderr, no traceback, nothing written."""

import os
import subprocess
import sys

import pytest
from invoke import hpsearch

from hpsearch.cli import main


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("hpsearch: error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "fashion-lent", "--trials", "3"], "did you mean 'fashion-lenet'"),
        (["run", "fashion-lenet", "--trials", "0"], "must be at least 1"),
        (["run", "fashion-lenet", "--trials", "-4"], "must be at least 1"),
        (["run", "fashion-lenet", "--trials", "3", "--set", "nope=1"], "no parameter 'nope'"),
        (["run", "fashion-lenet", "--trials", "3", "--set", "lr=9"], "outside lr's range"),
        (["run", "fashion-lenet", "--trials", "3", "--set", "lr"], "KEY=VALUE"),
        (["run", "fashion-lenet", "--trials", "3", "--sampler", "bayes"], "invalid choice"),
        (["run", "fashion-lenet", "--trials", "3", "--device", "tpu"], "--device"),
        (["show", "no-such-study"], "unknown study"),
    ],
)
def test_bad_arguments(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert words in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []  # no hpsearch.db left behind


@pytest.mark.parametrize(
    "url, words",
    [
        ("not a url", "malformed storage URL"),
        ("sqlite:////no/such/folder/study.db", "does not exist"),
        ("postgresql+psycopg://hp:s3cret@127.0.0.1:1/none", "cannot open storage"),
    ],
)
def test_unusable_storage(url, words, fashion_root, capsys):
    assert hpsearch("run fashion-lenet --trials 1 --storage", url, "--data-dir", fashion_root) == 2
    err = one_line_error(capsys)
    assert words in err and "s3cret" not in err


def test_missing_data_says_where_the_files_go_and_writes_no_study(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    db = tmp_path / "study.db"
    assert hpsearch("run fashion-lenet --trials 1 --storage", f"sqlite:///{db}", "--data-dir", empty) == 2
    err = one_line_error(capsys)
    assert f"in {empty / 'FashionMNIST' / 'raw'}" in err and "train-images-idx3-ubyte.gz" in err
    assert not db.exists()


def test_show_of_a_study_that_was_never_run(tmp_path, capsys):
    db = tmp_path / "study.db"
    assert main(["show", "fashion-lenet", "--storage", f"sqlite:///{db}"]) == 2
    assert "no study 'fashion-lenet'" in one_line_error(capsys)


@pytest.mark.parametrize("direction, metric", [("minimize", None), ("maximize", "val_loss")])
def test_a_study_name_taken_by_another_direction_or_metric_is_refused(
    direction, metric, fashion_root, tmp_path, capsys
):
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    taken = optuna.create_study(study_name="taken", storage=url, direction=direction)
    if metric:
        taken.set_user_attr("metric", metric)
    assert hpsearch("run fashion-lenet --trials 1 --study-name taken --storage", url, "--data-dir", fashion_root) == 2
    assert "choose another --study-name" in one_line_error(capsys)
    assert len(optuna.load_study(study_name="taken", storage=url).trials) == 0


def test_the_installed_command_exits_2_with_one_line(tmp_path):
    """The console entry point itself, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch", "run", "fashion-lent", "--trials", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=os.environ,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("hpsearch: error: unknown study 'fashion-lent'; did you mean 'fashion-lenet'")
    assert lines[0].endswith("'hpsearch list' shows the 6 studies")
