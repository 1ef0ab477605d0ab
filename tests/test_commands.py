"""`hpsearch list`, `hpsearch show`, `--help`, and the package outside the checkout."""

import os
import re
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


def _commands() -> list[str]:
    """The commands ``hpsearch --help`` lists under COMMAND, one a line."""
    return re.findall(r"^    ([a-z][a-z-]*)", build_parser().format_help(), flags=re.M)


def _documented_options() -> dict[str, dict[str, str]]:
    """The options the docs show each command with, and where: ``hpsearch COMMAND ... --opt``
    in README.md and docs/*.md (up to the end of the code span, a comment or a pipe), and the
    options table of docs/running.md for ``run``."""
    found: dict[str, dict[str, str]] = {}
    call = re.compile(rf"\bhpsearch ({'|'.join(_commands())})\b([^`#|]*)")
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for line in doc.read_text().splitlines():
            for command, rest in call.findall(line):
                for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest):
                    found.setdefault(command, {}).setdefault(option, doc.name)
    table = (REPO / "docs" / "running.md").read_text().split("## Options of `hpsearch run`")[1].split("\n#")[0]
    for option in re.findall(r"^\| `(--[a-z][a-z0-9-]*)", table, flags=re.M):
        found.setdefault("run", {}).setdefault(option, "running.md")
    return found


def test_the_docs_show_options_of_most_commands():
    documented = _documented_options()
    assert {"run", "export", "evaluate", "report"} <= set(documented)
    assert len(documented["run"]) >= 15  # docs/running.md's table
    assert {"--jobs", "--keep-weights", "--artifacts", "--heartbeat", "--trials"} <= set(documented["run"])


@pytest.mark.parametrize("command", _commands())
def test_help_lists_every_option_the_docs_show(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hpsearch {command} ")
    listed = set(re.findall(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*)", out, flags=re.M))
    missing = {o: doc for o, doc in _documented_options().get(command, {}).items() if o not in listed}
    assert missing == {}, f"documented for 'hpsearch {command}' but not in its --help: {missing}"


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


def test_a_plain_install_works_outside_the_checkout_beside_a_users_own_models_and_studies(tmp_path):
    """`pip install .` (not editable) ships the engine, the studies and the models inside
    hpsearch's namespace: run from a project folder with a models.py and a studies/ package
    of its own, neither side shadows the other, and a study file written for the old
    top-level imports is told what to import instead."""
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
    assert not (target / "models").exists() and not (target / "studies").exists()  # no top-level packages
    project = tmp_path / "project"
    (project / "studies").mkdir(parents=True)
    (project / "models.py").write_text("OURS = 'the project models.py'\n")
    (project / "studies" / "__init__.py").write_text("")
    (project / "old_study.py").write_text("from models.registry import register\n")
    # Dependencies installed with --target (as on the GPU machine) stay on the path; the checkout does not.
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *kept])}

    def python(*code):
        return subprocess.run(
            [sys.executable, *code], capture_output=True, text=True, cwd=project, env=env, timeout=120
        )

    proc = python(
        "-c",
        "import hpsearch, hpsearch.studies, hpsearch.models, models, studies, sys; "
        "print(hpsearch.__file__); print(hpsearch.models.__file__); print(models.OURS); print(studies.__file__); "
        "sys.exit(__import__('hpsearch.cli').cli.main(['list']))",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(str(target)) and lines[1].startswith(str(target))
    assert lines[2] == "the project models.py" and lines[3] == str(project / "studies" / "__init__.py")
    listed = [line.split()[0] for line in lines[5:]]
    assert listed == ["cifar10-mlp", "fashion-fc", "fashion-lenet", "fashion-resnet", "flowers-ae", "mnist-denoise"]
    old = python("-m", "hpsearch", "list", "old_study.py")
    assert old.returncode == 2 and old.stdout == ""
    assert old.stderr.strip().splitlines() == [
        "hpsearch: error: study file 'old_study.py' fails at line 1: no module named 'models.registry': "
        "hpsearch's models are inside its namespace now: import hpsearch.models.registry"
    ]


def _parameter_rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["parameter", "values"])
    rows = {}
    for line in lines[start + 1 :]:
        if line.startswith(("fixed training settings:", "baseline:")):
            break
        rows[line.split()[0]] = line.split()
    return rows


def test_run_study_help_lists_its_parameters_with_ranges_and_conditions(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "fashion-lenet", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--trials" in out  # the options first
    rows = _parameter_rows(out)
    assert rows["lr"] == ["lr", "float", "0.0001", "..", "0.1,", "log", "0.001"]
    assert rows["activation"] == ["activation", "tanh", "|", "relu", "|", "leaky_relu", "leaky_relu"]
    assert rows["momentum"] == ["momentum", "float", "0", "..", "0.99", "-", "optimizer=sgd"]
    assert rows["lr_step_size"][-1] == "step_lr=True"
    # `hpsearch list STUDY` says the same.
    assert main(["list", "fashion-lenet"]) == 0
    assert _parameter_rows(capsys.readouterr().out) == rows


def test_list_study_shows_the_fixed_training_settings(capsys):
    assert main(["list", "cifar10-mlp"]) == 0
    out = capsys.readouterr().out
    assert "fixed training settings: optimizer=adam\n" in out
    assert " ".join(_parameter_rows(out)["width5"]).endswith("32 hidden_layers=5, 6 or 7")


STUDY_FILE = Path(__file__).with_name("bookkeeping_study.py")


@pytest.mark.parametrize(
    "command",
    [["list"], ["list", "fashion-lenet"], ["run", "fashion-lenet", "--help"], ["show", str(STUDY_FILE)]],
    ids=["list", "list-study", "run-help", "show"],
)
def test_a_reader_that_went_away_ends_the_command_quietly(command, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    if command[0] == "show":
        assert hpsearch("run", STUDY_FILE, "--trials", "2", "--storage", url) == 0
        command = [*command, "--storage", url]
    # The read end is closed before the command starts, so its first write must fail, as
    # `hpsearch show STUDY | head -1` fails once head has gone.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "hpsearch", *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141  # what a shell reports for a tool that SIGPIPE ended


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse's wrapping undone


def test_every_command_describes_itself_and_its_defaults_truly(capsys):
    for command in ("show", "report", "create"):
        text = _help(command, capsys)
        usage_end = text.index("options:") if "options:" in text else len(text)
        description = text[text.index("STUDY") + len("STUDY") : usage_end].strip()
        assert len(description) > 60, (command, description)  # a sentence, not the usage alone
    assert "(default: the confirmed best of 'hpsearch confirm', else the best single trial)" in _help("export", capsys)
    assert "the training settings it fixes, where it fixes any" in _help("list", capsys)
    dashboard = _help("dashboard", capsys)
    assert "--study-name NAME the study whose page the printed URL opens (default: the list of every study)" in (
        dashboard
    )


def test_make_and_hpsearch_read_the_data_from_one_place(tmp_path):
    """`make` passes no data folder of its own: it links ./data, where hpsearch looks, to
    ../shared/data in a checkout beside it, and leaves ./data alone when it exists or
    $HPSEARCH_DATA_DIR names another folder."""
    checkout, shared = tmp_path / "checkout", tmp_path / "shared" / "data"
    checkout.mkdir()
    shared.mkdir(parents=True)
    shutil.copy(REPO / "Makefile", checkout)
    (checkout / "pyproject.toml").touch()
    env = {k: v for k, v in os.environ.items() if k not in ("HPSEARCH_DATA_DIR", "MAKEFLAGS")}
    dry_run = subprocess.run(["make", "-n", "run"], cwd=checkout, env=env, capture_output=True, text=True)
    (search,) = [line for line in dry_run.stdout.splitlines() if " run fashion-lenet " in line]
    assert search.endswith("hpsearch run fashion-lenet --trials 200") and "--data-dir" not in search
    subprocess.run(["make", "-s", "data"], cwd=checkout, env=env, check=True, capture_output=True)
    assert (checkout / "data").is_symlink() and (checkout / "data").resolve() == shared.resolve()
    subprocess.run(["make", "-s", "data"], cwd=checkout, env=env, check=True, capture_output=True)  # again: kept
    (checkout / "data").unlink()
    env["HPSEARCH_DATA_DIR"] = str(tmp_path / "elsewhere")
    subprocess.run(["make", "-s", "data"], cwd=checkout, env=env, check=True, capture_output=True)
    assert not (checkout / "data").exists()


def test_what_a_run_writes_in_the_checkout_is_ignored_by_git():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    written = ["hpsearch.db", "hpsearch-artifacts/fashion-lenet/weights.pt", "data"]
    ignored = subprocess.run(["git", "check-ignore", *written], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == written
