"""`hpsearch dashboard`: the real optuna-dashboard, started as `python -m hpsearch dashboard`
on a study the real `hpsearch run` stored, asked over HTTP and rendered by headless Chromium."""

import html
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import torch
from browser import render
from invoke import hpsearch, stored_study
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState
from PIL import Image
from processes import interruptible

from hpsearch import dashboard, storage, weights
from hpsearch.cli import main
from hpsearch.errors import UsageError

STARTUP_S = 60  # bound on a server coming up (about 5 s on 2 CPU cores: imports)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command_env() -> dict[str, str]:
    """The environment, without the variables that would point the command elsewhere."""
    env = dict(os.environ)
    env.pop("HPSEARCH_STORAGE", None)
    env.pop("HPSEARCH_ARTIFACTS", None)
    return env


class Dashboard:
    """`python -m hpsearch dashboard ARGS` in the background; stdout and stderr go to files."""

    def __init__(self, args: list[str], folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.stdout, self.stderr = folder / "stdout.txt", folder / "stderr.txt"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hpsearch", "dashboard", *args],
                cwd=folder,
                env=command_env(),
                stdout=out,
                stderr=err,
                preexec_fn=interruptible,
            )

    def wait_until_serving(self, port: int) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"dashboard exited with {self.process.returncode}: {self.stderr.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/meta", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)  # polling a server that is still importing
        pytest.fail(f"dashboard did not answer on port {port} within {STARTUP_S} s: {self.stderr.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def get_json(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        assert response.status == 200
        return json.load(response)


@pytest.fixture(scope="module")
def study_url(fashion_root, tmp_path_factory) -> str:
    """Three trials of the real search on synthetic data (about 10 s on 2 CPU cores); the
    complete one keeps its weights in the artifact store beside the SQLite file."""
    return stored_study(
        tmp_path_factory, fashion_root, "dashboard", "run fashion-lenet --trials 3 --epochs 1 --subset 300 --seed 0"
    )


@pytest.fixture(scope="module")
def study(study_url) -> optuna.Study:
    return optuna.load_study(study_name="fashion-lenet", storage=study_url)


@pytest.fixture(scope="module")
def server(study_url, tmp_path_factory):
    """The dashboard as a user starts it: only --storage and --port, so the artifact store and
    the bind address are the defaults."""
    port = free_port()
    running = Dashboard(["--storage", study_url, "--port", str(port)], tmp_path_factory.mktemp("server"))
    try:
        running.wait_until_serving(port)
        running.port = port
        yield running
    finally:
        running.stop()


def test_api_serves_the_study_its_trials_and_the_best_trials_weights(server, study, study_url):
    summaries = get_json(server.port, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["fashion-lenet"]
    assert summaries[0]["directions"] == ["maximize"]
    study_id = summaries[0]["study_id"]

    detail = get_json(server.port, f"/api/studies/{study_id}?after=0")
    assert detail["name"] == "fashion-lenet"
    assert detail["objective_names"] == ["val_accuracy"]  # the dashboard's label, instead of "Objective 0"
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    assert f"Parameter importances rest on {complete} complete trial" in detail["note"]["body"]
    assert "too few to trust" in detail["note"]["body"]
    served = {t["number"]: t for t in detail["trials"]}
    assert sorted(served) == [0, 1, 2] == [t.number for t in study.trials]
    for trial in study.trials:
        got = served[trial.number]
        assert got["state"] == trial.state.name.capitalize()  # "Complete" / "Pruned"
        assert {p["name"]: p["param_external_value"] for p in got["params"]} == {
            k: str(v) for k, v in trial.params.items()
        }
        assert got["values"] == [trial.value]
        stored = [m.filename for m in get_all_artifact_meta(trial, storage=study._storage)]
        assert [a["filename"] for a in got["artifacts"]] == stored

    best = study.best_trial
    assert [t["number"] for t in detail["best_trials"]] == [best.number]
    artifacts = served[best.number]["artifacts"]
    assert [a["filename"] for a in artifacts] == [weights.FILENAME]

    # The file behind the listed artifact is the one `hpsearch run` kept: same store, same tensors.
    trial_id = served[best.number]["trial_id"]
    with urllib.request.urlopen(
        f"http://127.0.0.1:{server.port}/artifacts/{study_id}/{trial_id}/{artifacts[0]['artifact_id']}", timeout=30
    ) as response:
        downloaded = torch.load(io.BytesIO(response.read()), map_location="cpu", weights_only=True)
    store = storage.artifact_store(storage.artifacts_dir(study_url))
    kept = weights.stored_weights(best, store, storage.open_storage(study_url))
    assert kept is not None and downloaded.keys() == kept.keys()
    assert all(torch.equal(downloaded[k], kept[k]) for k in kept)


def test_a_taken_port_ends_in_one_line_and_status_2(study_url, tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "hpsearch", "dashboard", "--storage", study_url, "--port", str(port)],
            cwd=tmp_path,
            env=command_env(),
            capture_output=True,
            text=True,
            timeout=STARTUP_S,
        )
    assert done.returncode == 2
    assert done.stdout == ""  # nothing announced that is not served
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("hpsearch: error: ") and f"port {port}" in lines[0] and "--port" in lines[0]


def test_help_says_the_default_bind_is_loopback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", "dashboard", "--help"],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=STARTUP_S,
    )
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert re.search(r"--host HOST address to bind \(default: 127\.0\.0\.1\b", text), text
    assert "--port PORT port (default: 8080)" in text


def own_non_loopback_address() -> str | None:
    """This machine's IPv4 address on its default route (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only a route lookup
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_the_default_bind_is_loopback_and_announced(server, study_url):
    lines = server.stdout.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"optuna-dashboard on http://127.0.0.1:{server.port}/ for {study_url} (1 study, ")
    artifacts = storage.artifacts_dir(study_url)
    assert f"trial weights in {artifacts})" in lines[0] and artifacts.is_dir()
    assert server.stderr.read_text() == ""  # no warning, no banner, no per-request log
    get_json(server.port, "/api/meta")  # reachable on 127.0.0.1
    address = own_non_loopback_address()
    if address is not None:  # and not on the machine's other address
        with pytest.raises(OSError):
            socket.create_connection((address, server.port), timeout=2).close()


def test_is_loopback():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert dashboard.is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "203.0.113.5"):
        assert not dashboard.is_loopback(host), host


def test_any_other_bind_warns_and_ctrl_c_ends_quietly(study_url, tmp_path):
    port = free_port()
    running = Dashboard(["--storage", study_url, "--host", "0.0.0.0", "--port", str(port)], tmp_path)
    try:
        running.wait_until_serving(port)
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=30) == 0
    finally:
        running.stop()
    assert running.stdout.read_text().splitlines()[0].startswith(f"optuna-dashboard on http://0.0.0.0:{port}/ ")
    warning = running.stderr.read_text().splitlines()
    assert len(warning) == 1, warning  # the warning only: no traceback, no "interrupted" message
    assert warning[0].startswith("hpsearch: warning: listening on 0.0.0.0") and "no authentication" in warning[0]


def test_bad_storage_or_study_name_is_one_line_before_serving(tmp_path, capsys):
    missing = f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}"
    port = free_port()
    assert main(["dashboard", "--storage", missing, "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert "no-such-folder" in captured.err and "does not exist" in captured.err
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(UsageError, match="no study 'nope'"):
        dashboard.serve(url, tmp_path / "artifacts", port=port, study_name="nope")


@pytest.mark.parametrize("held", [["fashion-lenet", "other"], []], ids=["other studies", "no study"])
def test_a_study_name_the_storage_lacks_is_one_line_and_status_2_naming_the_fix(held, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    for name in held:
        optuna.create_study(storage=url, study_name=name)
    port, artifacts = free_port(), tmp_path / "artifacts"
    args = ["dashboard", "--storage", url, "--artifacts", str(artifacts), "--port", str(port)]
    assert main([*args, "--study-name", "fashion-lenett"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no "optuna-dashboard on ..." line: nothing was served
    (line,) = captured.err.splitlines()
    assert line.startswith(f"hpsearch: error: no study 'fashion-lenett' in {url}, which holds "), line
    if held:
        assert "'fashion-lenet', 'other'; give one of those to --study-name" in line, line
    else:
        assert f"no study yet; start one with 'hpsearch run STUDY --storage {url}'" in line, line
    assert not artifacts.exists()
    with socket.socket() as s:  # the port was let go
        s.bind(("127.0.0.1", port))


def test_chromium_renders_the_trials_page(server, study, tmp_path):
    study_id = study._study_id
    png = tmp_path / "dashboard.png"
    best = study.best_trial
    # ?numbers= selects the trial whose details the page shows (without it, the first listed one).
    page = f"http://127.0.0.1:{server.port}/dashboard/studies/{study_id}/trials?numbers={best.number}"
    dom = render(page, png, width=1400, height=1900, wait_ms=15000)
    # The page's text once React rendered it from the API: nothing of this is in the HTML shell.
    text = html.unescape(
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)))
    )
    assert f"fashion-lenet (id={study_id})" in text, text[:500]
    assert "3 Trials" in text
    for trial in study.trials:
        assert re.search(rf"Trial {trial.number} {trial.state.name.capitalize()}\b", text), trial.number
    assert f"Trial {best.number} (trial_id={best._trial_id})" in text  # the selected trial's details
    for name, value in best.params.items():
        assert f"{name} {value}" in text, name
    assert re.search(rf"Artifacts {weights.FILENAME}\b", text)

    assert 20_000 < png.stat().st_size < 400_000
    with Image.open(png) as image:
        assert image.size == (1400, 1900)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 100  # text, chips and icons, not a blank page


def test_the_dashboard_serves_a_postgresql_study(fashion_root, postgres_url, tmp_path):
    assert (
        hpsearch(
            "run fashion-lenet --trials 2 --epochs 1 --subset 300 --seed 0 --storage",
            postgres_url,
            "--artifacts",
            tmp_path / "weights",
            "--data-dir",
            fashion_root,
        )
        == 0
    )
    port = free_port()
    running = Dashboard(
        ["--storage", postgres_url, "--artifacts", str(tmp_path / "weights"), "--port", str(port)], tmp_path / "server"
    )
    try:
        running.wait_until_serving(port)
        studies = get_json(port, "/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["fashion-lenet"]
        detail = get_json(port, f"/api/studies/{studies[0]['study_id']}?after=0")
        assert [t["number"] for t in detail["trials"]] == [0, 1]
        password = postgres_url.split(":")[2].split("@")[0]
        assert "hp:***@" in running.stdout.read_text() and password not in running.stdout.read_text()
    finally:
        running.stop()


def test_the_dashboard_shows_a_confirmed_study_and_its_replicates(tmp_path):
    noisy = str(Path(__file__).with_name("noisy_study.py"))
    url = f"sqlite:///{tmp_path / 'noisy.db'}"
    assert hpsearch(f"run {noisy} --trials 3 --pruner none --seed 0 --storage", url) == 0
    assert hpsearch(f"confirm {noisy} --top 2 --seeds 2 --storage", url) == 0
    port = free_port()
    running = Dashboard(["--storage", url, "--port", str(port)], tmp_path / "server")
    try:
        running.wait_until_serving(port)
        summaries = {s["study_name"]: s for s in get_json(port, "/api/studies")["study_summaries"]}
        assert sorted(summaries) == ["noisy", "noisy:replicates"]
        search = get_json(port, f"/api/studies/{summaries['noisy']['study_id']}?after=0")
        assert len(search["trials"]) == 3
        assert "### Confirmed over seeds: best trial" in search["note"]["body"]
        reps = get_json(port, f"/api/studies/{summaries['noisy:replicates']['study_id']}?after=0")
        assert len(reps["trials"]) == 4 and {t["state"] for t in reps["trials"]} == {"Complete"}
        attrs = [{a["key"]: a["value"] for a in t["user_attrs"]} for t in reps["trials"]]
        assert sorted(a["seed"] for a in attrs) == [str(2**31), str(2**31), str(2**31 + 1), str(2**31 + 1)]
        labels = {a["label"] for a in attrs}  # the top 2 of the 3 trials, each replicated twice
        assert len(labels) == 2 and labels <= {"trial 0", "trial 1", "trial 2"}
    finally:
        running.stop()
