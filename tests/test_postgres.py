"""hpsearch on a real PostgreSQL server (postgresql+psycopg://): run, show, export and report
work on it, Optuna's own command line reads the same study, heartbeats retry a trial whose
worker died, and the password never appears in what the commands print or log.

The server is the session fixture ``postgres_server`` (tests/conftest.py); these tests skip,
saying why, where no PostgreSQL server binaries are installed (.ci/run installs them)."""

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import torch
from optuna.trial import TrialState

from hpsearch import storage
from hpsearch.cli import main
from hpsearch.study import epochs_reported

FAST = [*"--epochs 2 --subset 300 --pruner none --set c1=4 --set c2=8 --set c3=32 --set batch_size=64".split()]
TRIALS = 3
STUDY = "fashion-lenet"


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@contextlib.contextmanager
def everything_printed():
    """stdout, stderr and the log records (root logger at DEBUG, SQLAlchemy's at INFO, which
    logs every statement and connection error, and Optuna's, which does not propagate) while
    the block runs, as one dict of strings."""
    out, err, logs = io.StringIO(), io.StringIO(), _Collect()
    loggers = [logging.getLogger(), optuna.logging.get_logger("optuna"), logging.getLogger("sqlalchemy")]
    levels = [lg.level for lg in loggers]
    for lg in loggers[:2]:
        lg.addHandler(logs)
    loggers[0].setLevel(logging.DEBUG)
    loggers[2].setLevel(logging.INFO)
    seen: dict[str, str] = {}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield seen
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(logs)
            lg.setLevel(level)
        seen.update(out=out.getvalue(), err=err.getvalue(), logs="\n".join(logs.lines))


def assert_no_password(password: str, **texts: str) -> None:
    for name, text in texts.items():
        assert password not in text, f"the password appears in {name}: {text[-2000:]}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HPSEARCH_STORAGE", "OPTUNA_STORAGE")}
    return {**env, **extra}


def run_optuna_cli(*args: str, url: str) -> subprocess.CompletedProcess:
    """Optuna's own command line (the ``optuna`` script of this environment); the storage URL
    goes through OPTUNA_STORAGE, so the password is not in the process list."""
    script = Path(sys.executable).with_name("optuna")
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "import sys; from optuna.cli import main; sys.exit(main())"]
    )
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, env=subprocess_env(OPTUNA_STORAGE=url)
    )


@pytest.fixture(scope="module")
def searched(postgres_server, fashion_root, tmp_path_factory):
    """A fashion-lenet study of TRIALS complete trials in its own PostgreSQL database,
    with the weights of its best two kept in a temporary artifact store."""
    url = postgres_server.new_database("search")
    artifacts = tmp_path_factory.mktemp("pg-artifacts")
    with everything_printed() as printed:
        code = main(
            [
                "run",
                STUDY,
                "--trials",
                str(TRIALS),
                *"--seed 0 --keep-weights 2 --storage".split(),
                url,
                "--artifacts",
                str(artifacts),
                "--data-dir",
                str(fashion_root),
                *FAST,
            ]
        )
    assert code == 0, printed
    return url, artifacts, printed


def test_run_stores_every_trial_and_optuna_reads_them_back(searched, postgres_server):
    url, _, printed = searched
    assert f"{TRIALS}/{TRIALS} finished" in printed["out"]
    assert storage.mask(url) in printed["out"] and "hp:***@127.0.0.1" in printed["out"]
    assert_no_password(postgres_server.password, **printed)
    assert "INSERT INTO trials" in printed["logs"]  # the capture did see SQLAlchemy's statements

    study = optuna.load_study(study_name=STUDY, storage=url)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * TRIALS
    assert all(sorted(epochs_reported(t)) == [1, 2] for t in trials)
    assert all(t.value == max(t.intermediate_values.values()) for t in trials)
    assert all({"c1": 4, "c2": 8, "c3": 32, "batch_size": 64}.items() <= t.params.items() for t in trials)
    assert "baseline" in trials[0].user_attrs and trials[0].user_attrs["ended"] == "complete"
    assert study.user_attrs["metric"] == "val_accuracy"
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_show_prints_the_study_and_masks_the_password(searched, postgres_server, capsys):
    url, _, _ = searched
    assert main(["show", STUDY, "--storage", url]) == 0
    out, err = capsys.readouterr()
    assert_no_password(postgres_server.password, out=out, err=err)
    best = optuna.load_study(study_name=STUDY, storage=url).best_trial
    assert f"in {storage.mask(url)}:" in out
    assert f"trials: {TRIALS} (COMPLETE {TRIALS}, PRUNED 0, FAIL 0, RUNNING 0, WAITING 0)" in out
    assert f"best value: {best.value:.4f} (trial {best.number})" in out


def test_export_and_report_work_on_the_server_study(searched, postgres_server, tmp_path, monkeypatch, capsys):
    url, artifacts, _ = searched
    monkeypatch.chdir(tmp_path)  # nothing may land in ./hpsearch-artifacts
    password = postgres_server.password
    assert main(["export", STUDY, "--out", "best.pt", "--storage", url, "--artifacts", str(artifacts)]) == 0
    export_out, export_err = capsys.readouterr()
    checkpoint = torch.load(tmp_path / "best.pt", weights_only=True)
    best = optuna.load_study(study_name=STUDY, storage=url).best_trial
    assert checkpoint["trial"] == best.number and checkpoint["study"] == STUDY
    assert f"wrote best.pt: trial {best.number} of {STUDY}" in export_out
    assert password.encode() not in (tmp_path / "best.pt").read_bytes()

    assert main(["report", STUDY, "--out", "r.html", "--storage", url]) == 0
    report_out, report_err = capsys.readouterr()
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<html" in page.lower() and "plotly" in page.lower()
    assert_no_password(
        password,
        export_out=export_out,
        export_err=export_err,
        report_out=report_out,
        report_err=report_err,
        report_page=page,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "best.pt2", "r.html"]


def test_hpsearch_show_and_optuna_cli_agree(searched, postgres_server):
    url, _, _ = searched
    password = postgres_server.password
    trials_cmd = run_optuna_cli("trials", "--study-name", STUDY, "-f", "json", url=url)
    assert trials_cmd.returncode == 0, trials_cmd.stderr
    rows = json.loads(trials_cmd.stdout)
    best_cmd = run_optuna_cli("best-trial", "--study-name", STUDY, "-f", "json", url=url)
    assert best_cmd.returncode == 0, best_cmd.stderr
    optuna_best = json.loads(best_cmd.stdout)

    show = subprocess.run(
        [sys.executable, "-m", "hpsearch", "show", STUDY, "--storage", url],
        capture_output=True,
        text=True,
        timeout=180,
        env=subprocess_env(),
    )
    assert show.returncode == 0, show.stderr
    assert_no_password(password, show_out=show.stdout, show_err=show.stderr)
    lines = show.stdout.splitlines()
    counts = next(line for line in lines if line.startswith("trials: "))
    best_line = next(line for line in lines if line.startswith("best value: "))

    # Same trial count and states.
    assert len(rows) == TRIALS and counts.startswith(f"trials: {len(rows)} (")
    states = [row["state"] for row in rows]
    for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"):
        assert f"{state} {states.count(state)}" in counts
    # Same best value and trial; Optuna's CLI names the value by the study's metric name.
    best_value = optuna_best["value"]["val_accuracy"]
    assert best_value == max(row["value"]["val_accuracy"] for row in rows if row["state"] == "COMPLETE")
    assert best_line == f"best value: {best_value:.4f} (trial {optuna_best['number']})"


@pytest.mark.parametrize("case", ["wrong password", "unreachable port"])
@pytest.mark.parametrize("command", ["run", "show", "export", "report"])
def test_unusable_server_is_one_masked_line(case, command, postgres_server, fashion_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if case == "wrong password":
        url, secret = postgres_server.url("postgres", password="WRONGPASS"), "WRONGPASS"
    else:
        with __import__("socket").socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        url, secret = postgres_server.url("postgres", port=closed), postgres_server.password
    args = {
        "run": ["run", STUDY, "--trials", "1", "--data-dir", str(fashion_root), *FAST],
        "show": ["show", STUDY],
        "export": ["export", STUDY, "--out", "x.pt"],
        "report": ["report", STUDY, "--out", "r.html"],
    }[command] + ["--storage", url]
    with everything_printed() as printed:
        assert main(args) == 2
    err = printed["err"].strip()
    assert len(err.splitlines()) == 1 and err.startswith("hpsearch: error: cannot open storage "), err
    assert "Traceback" not in err and "hp:***@127.0.0.1" in err
    assert ("password authentication failed" if case == "wrong password" else "Connection refused") in err
    assert_no_password(secret, **printed)
    assert_no_password(postgres_server.password, **printed)
    assert list(tmp_path.iterdir()) == []


def test_the_installed_command_masks_a_wrong_password(postgres_server, tmp_path):
    url = postgres_server.url("postgres", password="WRONGPASS")
    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch", "show", STUDY, "--storage", url],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=subprocess_env(),
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "password authentication failed" in lines[0] and "hp:***@" in lines[0], proc.stderr
    assert_no_password("WRONGPASS", out=proc.stdout, err=proc.stderr)


def test_the_password_from_the_environment_is_masked_too(postgres_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HPSEARCH_STORAGE", postgres_server.url("postgres", password="WRONGPASS"))
    assert main(["show", STUDY]) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "hp:***@" in err
    assert_no_password("WRONGPASS", out=out, err=err)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://hp:TYPOPASS@127.0.0.1:notaport/db",  # port is not a number
        "postgresql+psycopg//hp:TYPOPASS@127.0.0.1/db",  # no ':' after the scheme
        "hp:TYPOPASS@127.0.0.1/db",  # no scheme at all
    ],
)
def test_a_malformed_url_is_one_line_without_the_password(url, capsys):
    """No server needed: the URL is refused before any connection."""
    assert main(["show", STUDY, "--storage", url]) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "malformed storage URL" in err and "Traceback" not in err
    assert "***" in err
    assert_no_password("TYPOPASS", out=out, err=err)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_heartbeats_fail_and_retry_a_trial_whose_worker_died(postgres_url, fashion_root, tmp_path, capsys):
    """RDB storages get heartbeats: a RUNNING trial whose heartbeat stopped (its worker was
    killed) is failed by the next run and queued again, then run to completion."""
    rdb = storage.open_storage(postgres_url)
    assert rdb.get_heartbeat_interval() == storage.HEARTBEAT_SECONDS
    assert isinstance(rdb.get_heartbeat_stale_trial_callback(), optuna.storages.RetryHeartbeatStaleTrialCallback)

    common = [
        "--storage",
        postgres_url,
        "--artifacts",
        str(tmp_path / "art"),
        "--data-dir",
        str(fashion_root),
        *"--seed 0 --keep-weights 0".split(),
        *FAST,
    ]
    assert main(["run", STUDY, "--trials", "1", *common]) == 0
    study = optuna.load_study(study_name=STUDY, storage=rdb)
    assert study._storage.get_heartbeat_interval() == storage.HEARTBEAT_SECONDS

    # A worker took a trial, beat once, and died an hour ago.
    dead = study.ask()
    rdb.record_heartbeat(dead._trial_id)
    with rdb.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '1 hour' WHERE trial_id = :id"
            ),
            {"id": dead._trial_id},
        )
    capsys.readouterr()

    assert main(["run", STUDY, "--trials", "2", *common]) == 0
    trials = optuna.load_study(study_name=STUDY, storage=postgres_url).get_trials()
    by_number = {t.number: t for t in trials}
    assert by_number[dead.number].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retried[0]) == dead.number
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
