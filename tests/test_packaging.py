"""hpsearch as a user installs it: a wheel built from this checkout, installed (not
editable) into a fresh virtual environment, run from a project folder that has a
``models.py`` and a ``studies/`` package of its own."""

import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args, cwd=None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a fresh venv holding the wheel; torch, optuna and the rest come from
    this interpreter's site-packages by a .pth line (a fresh copy of torch is gigabytes)."""
    tmp = tmp_path_factory.mktemp("wheel")
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(tmp / "dist"), str(REPO))
    (wheel,) = (tmp / "dist").glob("hpsearch-*.whl")
    _run(sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv"))
    python = tmp / "venv" / "bin" / "python"
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel))
    return python


def test_a_users_own_models_and_studies_neither_shadow_nor_are_shadowed(installed, tmp_path):
    project = tmp_path / "project"
    (project / "studies").mkdir(parents=True)
    (project / "models.py").write_text("OURS = 'the user models.py'\n")
    (project / "studies" / "__init__.py").write_text("")
    (project / "studies" / "theirs.py").write_text("X = 1\n")

    listed = _run(str(installed), "-m", "hpsearch", "list", cwd=project)
    names = [line.split()[0] for line in listed.splitlines()[1:]]
    assert names == ["cifar10-mlp", "fashion-fc", "fashion-lenet", "fashion-resnet", "flowers-ae", "mnist-denoise"]
    where = _run(
        str(installed),
        "-c",
        "import models, studies, hpsearch.models, hpsearch.studies; "
        "print(models.OURS); print(studies.__file__); "
        "print(hpsearch.models.__file__); print(hpsearch.studies.__file__); print(hpsearch.models.names())",
        cwd=project,
    ).splitlines()
    assert where[0] == "the user models.py" and where[1] == str(project / "studies" / "__init__.py")
    site = installed.parents[1]
    assert all(Path(p).is_relative_to(site) for p in where[2:4]), where  # the wheel's, not the checkout's
    assert "lenet5" in where[4]


def test_a_study_file_written_for_the_old_imports_is_told_what_to_import(installed, tmp_path):
    study = tmp_path / "old_study.py"
    study.write_text("from models.registry import register\n")
    done = subprocess.run(
        [str(installed), "-m", "hpsearch", "list", str(study)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().endswith(
        "fails at line 1: no module named 'models': hpsearch's own is inside its namespace now; "
        "write 'from hpsearch import models'"
    ), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
