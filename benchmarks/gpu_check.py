"""The product on a GPU machine, in one command of at most 10 minutes.

The GPU machine has Python 3.12 with torch, torchvision, numpy, scipy, pytest and pillow, no
package registry and no internet, and gets only this repository's working tree. So the
check has two halves:

``--bundle`` (``make gpu-bundle``), here, beside ``../shared``: copies the carried wheels
(optuna, optuna-dashboard, sqlalchemy, alembic, mako, colorlog, greenlet, cmaes, bottle) and
the four Fashion-MNIST ``.gz`` files into ``.device/`` (git-ignored), writes their sha256
sums, and checks that the working tree plus ``.device/`` stays under the 64 MiB that travel.

The check itself (``make gpu-check``), there, with ``.device`` carried:

1. installs the wheels with ``pip install --no-index --no-deps --target`` and puts that
   folder and the checkout on ``PYTHONPATH`` for everything it starts;
2. prints the machine (GPU, driver, CPU, torch, CUDA, Python, optuna);
3. checks the carried Fashion-MNIST files and reads them once (``HPSEARCH_DATA_DIR``,
   extracted into ``HPSEARCH_CACHE_DIR``);
4. ``tests``: the test suite with training on the device (``HPSEARCH_TEST_DEVICE``);
5. ``lenet``: ``benchmarks/lenet_epoch.py`` at batch 100 and 1000 (engine vs the reports'
   DataLoader loop, images/s);
6. ``jobs``: trials per minute of ``hpsearch run fashion-lenet --trials 40 --seed 0`` with
   ``--jobs`` 1, 2, 4 and 8 on the one device, each on a fresh SQLite file.

Every step runs within a share of ``--budget`` seconds (a step that reaches its share is
stopped and says so), every figure is printed with the command behind it, and a summary in
Markdown ends the output. With ``$OUT`` set, the full log, the test suite's output and the
summary are also written there.

    python3 benchmarks/gpu_check.py --bundle                      # here
    python3 benchmarks/gpu_check.py [--device cuda] [--steps tests,lenet,jobs]   # there
    python3 benchmarks/gpu_check.py --device cpu --sweep-trials 4 --sweep-epochs 1   # a CPU dry run

Only the standard library is imported here; torch and hpsearch run in child processes.
Exit status: 0 when every step passed, 1 when a step failed or was stopped, 2 when the
check could not start (no bundle, no GPU for --device cuda, a bad argument).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / ".device"
WHEELS_FROM = REPO.parent / "shared" / "wheels" / "h200-py312"
DATA_FROM = REPO.parent / "shared" / "data"
FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# What the machine lacks and hpsearch needs; each must be among the carried wheels.
NEEDED = ("optuna", "optuna_dashboard", "sqlalchemy", "alembic", "mako", "colorlog", "greenlet", "cmaes", "bottle")
TRAVEL_LIMIT = 64 * 2**20  # the working tree that travels to the machine, .device/ included
STEPS = ("lenet", "tests", "jobs")  # the order they run in
MIB = 2**20


# --- bundle (here) ---------------------------------------------------------------------------


def _copy(src: Path, dst: Path) -> None:
    """A real copy (a symbolic link would travel as a link), writable so a later bundle can replace it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.chmod(0o644)
    shutil.copyfile(src, dst)
    dst.chmod(0o644)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tree_bytes() -> int | None:
    """Bytes of what travels besides .device/: tracked and untracked-but-not-ignored files."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    paths = {REPO / p for p in listed.decode().split("\0") if p}
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def bundle(args) -> int:
    wheels_from, data_from = Path(args.wheels_from), Path(args.data_from)
    raw_from = data_from / "FashionMNIST" / "raw"
    wheels = sorted(wheels_from.glob("*.whl"))
    missing = [f for f in FASHION_FILES if not (raw_from / f).is_file()]
    if not wheels:
        return _fail(f"no wheels in {wheels_from} (--wheels-from)")
    if missing:
        return _fail(f"{', '.join(missing)} missing in {raw_from} (--data-from)")
    names = {w.name.split("-")[0].lower() for w in wheels}
    lacking = [n for n in NEEDED if n not in names]
    if lacking:
        return _fail(f"{wheels_from} has no wheel for {', '.join(lacking)}")
    shutil.rmtree(BUNDLE / "wheels", ignore_errors=True)
    files = []
    for wheel in wheels:
        _copy(wheel, BUNDLE / "wheels" / wheel.name)
        files.append(BUNDLE / "wheels" / wheel.name)
    for name in FASHION_FILES:
        _copy(raw_from / name, BUNDLE / "data" / "FashionMNIST" / "raw" / name)
        files.append(BUNDLE / "data" / "FashionMNIST" / "raw" / name)
    sums = "".join(f"{_sha256(f)}  {f.relative_to(BUNDLE)}\n" for f in files)
    (BUNDLE / "SHA256SUMS").write_text(sums)
    size = sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file())
    tree = _tree_bytes()
    print(
        f"{BUNDLE.relative_to(REPO)}/: {len(wheels)} wheels ({sum(w.stat().st_size for w in wheels) / MIB:.1f} MiB), "
        f"Fashion-MNIST ({sum((raw_from / f).stat().st_size for f in FASHION_FILES) / MIB:.1f} MiB), "
        f"{size / MIB:.1f} MiB in all"
    )
    if tree is None:
        print("not a git checkout: the size of the rest of the working tree is unknown")
        return 0
    total = tree + size
    print(
        f"working tree without .device/: {tree / MIB:.1f} MiB; with it: {total / MIB:.1f} MiB "
        f"of the {TRAVEL_LIMIT // MIB} MiB that travel"
    )
    if total > TRAVEL_LIMIT:
        return _fail("too large to travel: remove untracked files or wheels from .device/")
    print("on the GPU machine, carry .device and run: make gpu-check (or python3 benchmarks/gpu_check.py)")
    return 0


def _fail(message: str) -> int:
    print(f"gpu-check: {message}", file=sys.stderr)
    return 2


# --- output ----------------------------------------------------------------------------------


class Log:
    """Prints to stdout and appends to the log file; ``detail`` goes to the file only."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = open(path, "w", encoding="utf-8")
        self.lock = threading.Lock()

    def say(self, line: str = "") -> None:
        with self.lock:
            print(line, flush=True)
            self.file.write(line + "\n")
            self.file.flush()

    def detail(self, line: str) -> None:
        with self.lock:
            self.file.write(line + "\n")
            self.file.flush()


@dataclass
class Outcome:
    step: str
    ok: bool
    note: str
    figures: list[str] = field(default_factory=list)  # Markdown lines for the summary


@dataclass
class Ran:
    code: int | None  # None: stopped at its time limit
    seconds: float
    lines: list[str]


def run_child(
    log: Log,
    cmd: list[str],
    env: dict,
    limit: float,
    echo=False,
    tee: Path | None = None,
    stop_signal=signal.SIGTERM,
    grace: float = 10.0,
) -> Ran:
    """Run ``cmd`` (in its own process group) with its output to the log (and to stdout when
    ``echo``). It may take ``limit`` seconds in all: ``grace`` seconds before that it gets
    ``stop_signal`` (time to say what it did), and at ``limit`` its whole group gets SIGKILL."""
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    lines: list[str] = []
    out = open(tee, "w", encoding="utf-8") if tee else None

    def pump():
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            if out:
                out.write(raw)
                out.flush()
            (log.say if echo else log.detail)(f"    {line}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    grace = min(grace, limit / 4)
    stopped = False
    try:
        proc.wait(timeout=max(1.0, limit - grace))
    except subprocess.TimeoutExpired:
        stopped = True
        log.say(f"    ... stopped at its limit of {limit:.0f} s")
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    reader.join(timeout=10)
    if out:
        out.close()
    return Ran(None if stopped else proc.returncode, time.monotonic() - started, lines)


def shown(cmd: list[str], env_shown: dict | None = None) -> str:
    """The command as one would type it in the checkout (``python`` for this interpreter)."""
    words = [
        "python" if w == sys.executable else os.path.relpath(w, REPO) if w.startswith(str(REPO) + "/") else w
        for w in cmd
    ]
    prefix = " ".join(f"{k}={v}" for k, v in (env_shown or {}).items())
    return (prefix + " " if prefix else "") + shlex.join(words)


# --- the check (there) -------------------------------------------------------------------------


class Check:
    def __init__(self, args):
        self.args = args
        self.started = time.monotonic()
        self.device = args.device
        self.test_device = "cuda" if args.device.startswith("cuda") else "cpu"
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        out = os.environ.get("OUT")
        self.out_dir = Path(args.log_dir) if args.log_dir else Path(out) if out else self.work
        self.log = Log(self.out_dir / "gpu-check.log")
        self.env = dict(os.environ)
        self.env.pop("HPSEARCH_STORAGE", None)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.machine_line = ""
        self.outcomes: list[Outcome] = []

    # time

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.started)

    def share(self, cap: float, reserve: float = 0.0) -> float:
        """Seconds a step may take: its cap, within what the budget leaves after ``reserve``."""
        return max(0.0, min(cap, self.left() - reserve))

    # steps that must work for the rest to mean anything

    def install(self) -> bool:
        args, say = self.args, self.log.say
        site = Path(args.site)
        path = [str(REPO)]
        if args.no_install:
            say("install: skipped (--no-install): using the packages this Python already has")
        else:
            wheels = sorted(Path(args.wheels).glob("*.whl"))
            if not wheels:
                say(
                    f"install: no wheels in {args.wheels}; run 'make gpu-bundle' where ../shared is and carry .device, "
                    "or pass --no-install where the packages are installed"
                )
                return False
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-deps",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
                str(site),
                *map(str, wheels),
            ]
            env = {**self.env, "PIP_ROOT_USER_ACTION": "ignore"}  # the machine runs commands as root
            ran = run_child(self.log, cmd, env, self.share(180), echo=True)
            say(
                f"install: {len(wheels)} wheels into {site} in {ran.seconds:.1f} s"
                + ("" if ran.code == 0 else f": FAILED (pip exit {ran.code})")
            )
            if ran.code != 0:
                return False
            path.insert(0, str(site))
        self.env["PYTHONPATH"] = os.pathsep.join(
            path + [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        return True

    def machine(self) -> bool:
        probe = (
            "import json, platform, torch\n"
            "info = {'python': platform.python_version(), 'torch': torch.__version__, 'cuda': torch.version.cuda,\n"
            "        'threads': torch.get_num_threads(), 'gpus': []}\n"
            "if torch.cuda.is_available():\n"
            "    for i in range(torch.cuda.device_count()):\n"
            "        p = torch.cuda.get_device_properties(i)\n"
            "        info['gpus'].append(\n"
            "            f'{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs')\n"
            "for name in ('torchvision', 'optuna', 'optuna_dashboard', 'sqlalchemy', 'numpy'):\n"
            "    try:\n"
            "        info[name] = __import__(name).__version__\n"
            "    except Exception as exc:\n"
            "        info[name] = f'missing ({type(exc).__name__})'\n"
            "print(json.dumps(info))\n"
        )
        ran = run_child(self.log, [sys.executable, "-c", probe], self.env, self.share(120))
        if ran.code != 0:
            self.log.say("machine: the probe failed:")
            for line in ran.lines[-15:]:
                self.log.say(f"    {line}")
            return False
        info = json.loads(ran.lines[-1])
        cpu = _cpu_model()
        smi = _nvidia_smi()
        gpu = "; ".join(smi or info["gpus"]) or "no GPU visible"
        self.machine_line = (
            f"{gpu}; CPU {cpu}, {os.cpu_count()} cores, {_mem_gib()} GiB; Python {info['python']}, "
            f"torch {info['torch']} (CUDA {info['cuda']}), torchvision {info['torchvision']}, "
            f"optuna {info['optuna']}, optuna-dashboard {info['optuna_dashboard']}, "
            f"SQLAlchemy {info['sqlalchemy']}, numpy {info['numpy']}"
        )
        self.log.say(f"machine: {self.machine_line}")
        missing = [k for k in ("optuna", "optuna_dashboard", "sqlalchemy") if str(info[k]).startswith("missing")]
        if missing:
            self.log.say(f"machine: {', '.join(missing)} not importable; the install step did not provide them")
            return False
        if self.device.startswith("cuda") and not info["gpus"]:
            self.log.say(
                f"machine: --device {self.device} but torch sees no CUDA GPU here; use --device cpu for a dry run"
            )
            return False
        return True

    def data(self) -> bool:
        root = Path(self.args.data_dir) if self.args.data_dir else _default_data_dir()
        raw = root / "FashionMNIST" / "raw"
        missing = [f for f in FASHION_FILES if not (raw / f).is_file()]
        if missing:
            self.log.say(f"data: {', '.join(missing)} missing in {raw}; run 'make gpu-bundle' and carry .device")
            return False
        sums = BUNDLE / "SHA256SUMS"
        if root.resolve() == (BUNDLE / "data").resolve() and sums.is_file():
            bad = [
                name
                for digest, name in (line.split("  ", 1) for line in sums.read_text().splitlines() if line)
                if name.startswith("data/") and _sha256(BUNDLE / name) != digest
            ]
            if bad:
                self.log.say(f"data: {', '.join(bad)} differ from .device/SHA256SUMS (a broken transfer?)")
                return False
        self.env["HPSEARCH_DATA_DIR"] = str(root)
        self.env["HPSEARCH_CACHE_DIR"] = os.environ.get("HPSEARCH_CACHE_DIR") or str(self.work / "cache")
        prepare = (
            "import time, torch\n"
            "from hpsearch import data\n"
            "from hpsearch.locations import data_dir\n"
            "from hpsearch.runner import resolve_device\n"
            "t = time.perf_counter()\n"
            "train, test = (data.read('fashion_mnist', s, data_dir()) for s in ('train', 'test'))\n"
            "read = time.perf_counter() - t\n"
            f"device = resolve_device({self.device!r})\n"
            "t = time.perf_counter()\n"
            "loaded = data.load('fashion_mnist', device, data_dir())\n"
            "x = float(loaded.train.x.sum())  # waits for the device\n"
            "print(f'{len(train.labels)} train + {len(test.labels)} test images read in {read:.1f} s; '\n"
            "      f'{len(loaded.train)} train / {len(loaded.val)} validation resident on {device} in '\n"
            "      f'{time.perf_counter() - t:.1f} s')\n"
        )
        ran = run_child(self.log, [sys.executable, "-c", prepare], self.env, self.share(180))
        if ran.code != 0:
            self.log.say(f"data: reading Fashion-MNIST from {root} failed:")
            for line in ran.lines[-15:]:
                self.log.say(f"    {line}")
            return False
        self.log.say(f"data: {root}: {ran.lines[-1]} (cache {self.env['HPSEARCH_CACHE_DIR']})")
        return True

    # measured steps

    def tests(self) -> Outcome:
        extra = shlex.split(self.args.pytest_args)
        # -v: each test's outcome reaches pytest.log as it ends, also when the run is stopped.
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--durations=15", *extra]
        env = {**self.env, "HPSEARCH_TEST_DEVICE": self.test_device}
        limit = self.share(self.args.tests_timeout, reserve=self.reserve_after("tests"))
        line = shown(cmd, {"HPSEARCH_TEST_DEVICE": self.test_device})
        self.log.say(f"$ {line}    (limit {limit:.0f} s)")
        ran = run_child(self.log, cmd, env, limit, tee=self.out_dir / "pytest.log", stop_signal=signal.SIGINT, grace=30)
        summary = _pytest_summary(ran.lines)
        for text in [ln for ln in ran.lines if ln.startswith("training device:")][:1] + summary["report"]:
            self.log.say(f"    {text}")
        final = summary["final"] or f"no pytest summary line (exit {ran.code})"
        if ran.code is None:
            note = f"stopped after {ran.seconds:.0f} s (limit): {final}"
        else:
            note = f"{final} (exit {ran.code}, {ran.seconds:.0f} s)"
        ok = ran.code == 0
        self.log.say(f"tests: {note}")
        figures = [f"`{line}`: {note}"]
        figures += [f"- {t}" for t in summary["report"] if t.startswith(("FAILED", "ERROR"))]
        return Outcome("tests", ok, note, figures)

    def lenet(self) -> Outcome:
        sizes = [int(b) for b in self.args.lenet_batch_sizes.split(",") if b]
        deadline = time.monotonic() + self.share(self.args.lenet_timeout, reserve=self.reserve_after("lenet"))
        figures, ok, notes = [], True, []
        for i, size in enumerate(sizes):
            cmd = [
                sys.executable,
                str(REPO / "benchmarks" / "lenet_epoch.py"),
                "--device",
                self.device,
                "--batch-size",
                str(size),
                "--repeat",
                str(self.args.lenet_repeat),
            ]
            cap = max(0.0, deadline - time.monotonic()) / (len(sizes) - i)
            self.log.say(f"$ {shown(cmd)}    (limit {cap:.0f} s)")
            ran = run_child(self.log, cmd, self.env, cap, echo=True)
            rates = {}
            for line in ran.lines:
                found = re.match(r"(reports' DataLoader loop|hpsearch engine, default \S+)\s+([\d,]+) images/s", line)
                if found:
                    rates["engine" if found.group(1).startswith("hpsearch") else "loader"] = found.group(2)
            speedup = next((ln.split(":", 1)[1].strip() for ln in ran.lines if ln.startswith("speed-up")), None)
            if ran.code == 0 and speedup:
                note = (
                    f"batch {size}: engine {rates.get('engine')} images/s, DataLoader loop "
                    f"{rates.get('loader')} images/s, speed-up {speedup}"
                )
            else:
                ok = False
                note = f"batch {size}: no figure ({'stopped at its limit' if ran.code is None else f'exit {ran.code}'})"
            notes.append(note)
            figures += ["```", f"$ {shown(cmd)}", *ran.lines, "```"]
            if ran.code is None:
                figures.append(f"(stopped at its limit of {cap:.0f} s: no figure)")
        self.log.say("lenet: " + "; ".join(notes))
        return Outcome("lenet", ok, "; ".join(notes), figures)

    def jobs(self) -> Outcome:
        args = self.args
        counts = [int(j) for j in args.sweep_jobs.split(",") if j]
        folder = self.work / "jobs"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

        def command(jobs) -> list[str]:
            cmd = [
                sys.executable,
                "-m",
                "hpsearch",
                "run",
                "fashion-lenet",
                "--trials",
                str(args.sweep_trials),
                "--seed",
                str(args.sweep_seed),
                "--jobs",
                str(jobs),
                "--device",
                self.device,
                "--storage",
                f"sqlite:///{folder / f'jobs-{jobs}.db'}",
                "--artifacts",
                str(folder / f"artifacts-{jobs}"),
            ]
            cmd += ["--epochs", str(args.sweep_epochs)] if args.sweep_epochs else []
            cmd += ["--subset", str(args.sweep_subset)] if args.sweep_subset else []
            return cmd

        rows, ok = [], True
        for i, jobs in enumerate(counts):
            cap = self.share(1e9, reserve=5) / (len(counts) - i)
            if cap < 20:
                self.log.say(f"jobs {jobs}: not run, {cap:.0f} s of the budget left for it")
                rows.append(f"| {jobs} | not run: {cap:.0f} s of the budget left | | | | | | | |")
                ok = False
                continue
            # No trial starts in the last 15 % of the run's share; what still runs at its end is stopped.
            soft = max(1, int(cap * 0.85))
            cmd = [*command(jobs), "--timeout", str(soft)]
            self.log.say(f"$ {shown(cmd)}    (limit {cap:.0f} s)")
            ran = run_child(self.log, cmd, self.env, cap, grace=20)
            for line in ran.lines[-3:]:
                self.log.say(f"    {line}")
            got = _count_trials(folder / f"jobs-{jobs}.db")
            finished = got["COMPLETE"] + got["PRUNED"]
            per_minute = 60 / ran.seconds
            if finished >= args.sweep_trials and ran.code == 0:
                ended = "all trials"
            elif ran.code is None:
                ended = f"stopped at {cap:.0f} s"
            elif ran.code == 0:
                ended = f"its --timeout {soft} s"
            else:
                ended, ok = f"exit {ran.code}", False
            best = f"{got['best']:.4f}" if got["best"] is not None else "-"
            rows.append(
                f"| {jobs} | {finished}/{args.sweep_trials} | {got['COMPLETE']} / {got['PRUNED']} / {got['FAIL']} "
                f"| {got['epochs']} | {ran.seconds:.1f} | {finished * per_minute:.2f} | "
                f"{got['epochs'] * per_minute:.1f} | {best} | {ended} |"
            )
            self.log.say(
                f"jobs {jobs}: {finished}/{args.sweep_trials} trials finished ({got['COMPLETE']} complete, "
                f"{got['PRUNED']} pruned, {got['FAIL']} failed; {got['epochs']} epochs) in {ran.seconds:.1f} s: "
                f"{finished * per_minute:.2f} trials/min, {got['epochs'] * per_minute:.1f} epochs/min, "
                f"best {best}; ended by {ended}"
            )
        template = shown(command("K"))
        intro = (
            f"`{template}`, with `--timeout` at 85 % of each run's share of the budget "
            "(trials/min = finished trials / wall time of the whole command, start-up included):"
        )
        header = (
            "| --jobs | finished | complete / pruned / failed | epochs | wall s | trials/min | epochs/min "
            "| best val acc | ended by |"
        )
        figures = [intro, "", header, "|---|---|---|---|---|---|---|---|---|", *rows]
        return Outcome("jobs", ok, f"{len(rows)} run(s)", figures)

    def reserve_after(self, step: str) -> float:
        """Seconds to keep for the steps after ``step`` (a minimum that still gives a figure)."""
        minimum = {
            "lenet": 45.0 * len(self.args.lenet_batch_sizes.split(",")),
            "tests": 60.0,
            "jobs": 30.0 * len(self.args.sweep_jobs.split(",")),
        }
        later = STEPS[STEPS.index(step) + 1 :]
        return sum(minimum[s] for s in later if s in self.steps)

    # the whole

    def run(self) -> int:
        args, say = self.args, self.log.say
        self.steps = [s for s in STEPS if s in args.steps.split(",")]
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        say(
            f"gpu-check {stamp}: device {self.device}, steps {','.join(self.steps)}, budget {args.budget:.0f} s, "
            f"log {self.log.path}"
        )
        if not (self.install() and self.machine() and self.data()):
            say(f"gpu-check: stopped before measuring ({time.monotonic() - self.started:.0f} s)")
            return 2
        for step in self.steps:
            say("")
            say(f"== {step} ({self.left():.0f} s of the budget left)")
            try:
                self.outcomes.append(getattr(self, step)())
            except Exception as exc:  # a broken step must not cost the others their minutes
                say(f"{step}: the step itself failed: {type(exc).__name__}: {exc}")
                self.outcomes.append(Outcome(step, False, f"the step failed: {exc}"))
        wall = time.monotonic() - self.started
        summary = self.summary(stamp, wall)
        (self.out_dir / "gpu-check-summary.md").write_text("\n".join(summary) + "\n")
        say("")
        for line in summary:
            say(line)
        return 0 if all(o.ok for o in self.outcomes) else 1

    def summary(self, stamp: str, wall: float) -> list[str]:
        lines = [
            f"### gpu-check, {stamp}, --device {self.device}",
            "",
            f"Machine: {self.machine_line}.",
            "",
            f"Whole check: {wall:.0f} s of a {self.args.budget:.0f} s budget; "
            + ", ".join(f"{o.step} {'ok' if o.ok else 'NOT ok'}" for o in self.outcomes)
            + ".",
        ]
        for outcome in self.outcomes:
            lines += ["", f"**{outcome.step}**", "", *(outcome.figures or [outcome.note])]
        return lines


# --- helpers -----------------------------------------------------------------------------------


def _default_data_dir() -> Path:
    if (BUNDLE / "data" / "FashionMNIST" / "raw").is_dir():
        return BUNDLE / "data"
    if os.environ.get("HPSEARCH_DATA_DIR"):
        return Path(os.environ["HPSEARCH_DATA_DIR"])
    return DATA_FROM


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.0f}"
    except OSError:
        pass
    return "?"


def _nvidia_smi() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for row in out.strip().splitlines():
        parts = [p.strip() for p in row.split(",")]
        if len(parts) == 3:
            gpus.append(f"{parts[0]} ({parts[1]}, driver {parts[2]})")
    return gpus


def _pytest_summary(lines: list[str]) -> dict:
    """The ``-ra`` short summary lines and the final '== N passed, ... ==' line."""
    report, inside = [], False
    for line in lines:
        if "short test summary info" in line:
            inside = True
            continue
        if inside:
            if line.startswith("="):
                inside = False
            else:
                report.append(line[:300])
    final = next(
        (
            ln.strip("= ")
            for ln in reversed(lines)
            if ln.startswith("=") and re.search(r"\b(passed|failed|error|skipped|no tests ran)\b", ln)
        ),
        "",
    )
    # Without that line (a run stopped hard), the -v lines say how far it got.
    outcomes: dict[str, list[str]] = {}
    for line in lines:
        found = re.match(r"(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", line)
        if found:
            outcomes.setdefault(found.group(2).lower(), []).append(found.group(1))
    if not final and outcomes:
        final = ", ".join(f"{len(v)} {k}" for k, v in outcomes.items()) + " before it was stopped"
    if not report:
        report = [f"{k.upper()} {t}" for k in ("failed", "error") for t in outcomes.get(k, [])]
    return {"report": report, "final": final}


def _count_trials(db: Path) -> dict:
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "epochs": 0, "best": None}
    if not db.exists():
        return counts
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        try:
            for state, n in conn.execute("SELECT state, count(*) FROM trials GROUP BY state"):
                counts[state] = n
            counts["epochs"] = conn.execute("SELECT count(*) FROM trial_intermediate_values").fetchone()[0]
            counts["best"] = conn.execute(
                "SELECT max(v.value) FROM trial_values v JOIN trials t USING (trial_id) WHERE t.state = 'COMPLETE'"
            ).fetchone()[0]
        except sqlite3.Error:
            pass
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle",
        action="store_true",
        help="fill .device/ with the wheels and Fashion-MNIST (run here, beside ../shared), then stop",
    )
    parser.add_argument("--wheels-from", default=str(WHEELS_FROM), help="--bundle: the wheels to carry (%(default)s)")
    parser.add_argument(
        "--data-from", default=str(DATA_FROM), help="--bundle: folder with FashionMNIST/raw (%(default)s)"
    )
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu (a dry run)")
    parser.add_argument("--steps", default=",".join(STEPS), help="which of lenet,tests,jobs to run (default: all)")
    parser.add_argument(
        "--budget",
        type=float,
        default=540,
        help="seconds for the whole check; each step gets a share (default: 540, inside a 10-minute call)",
    )
    parser.add_argument("--wheels", default=str(BUNDLE / "wheels"), help="wheels to install (default: .device/wheels)")
    parser.add_argument("--site", default="/tmp/hpsearch-site", help="pip --target folder (default: %(default)s)")
    parser.add_argument("--no-install", action="store_true", help="use the packages this Python already has")
    parser.add_argument(
        "--data-dir",
        help="folder with FashionMNIST/raw (default: .device/data, else $HPSEARCH_DATA_DIR, else ../shared/data)",
    )
    parser.add_argument(
        "--workdir",
        default="/tmp/hpsearch-gpu-check",
        help="scratch folder: cache, sweep databases (default: %(default)s)",
    )
    parser.add_argument(
        "--log-dir",
        help="where gpu-check.log, pytest.log and gpu-check-summary.md go (default: $OUT, else the workdir)",
    )
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, e.g. 'tests/test_train.py -x'")
    parser.add_argument("--tests-timeout", type=float, default=300, help="seconds for the test suite (default: 300)")
    parser.add_argument("--lenet-batch-sizes", default="100,1000", help="default: 100,1000")
    parser.add_argument("--lenet-repeat", type=int, default=3, help="epochs timed per way (default: 3)")
    parser.add_argument(
        "--lenet-timeout", type=float, default=240, help="seconds for all lenet_epoch runs together (default: 240)"
    )
    parser.add_argument("--sweep-jobs", default="1,2,4,8", help="--jobs values (default: 1,2,4,8)")
    parser.add_argument("--sweep-trials", type=int, default=40, help="trials per run (default: 40)")
    parser.add_argument("--sweep-seed", type=int, default=0, help="default: 0")
    parser.add_argument("--sweep-epochs", type=int, help="max epochs per trial (default: the study's, 20)")
    parser.add_argument("--sweep-subset", type=int, help="only the first N training images (dry runs)")
    args = parser.parse_args(argv)
    if args.bundle:
        return bundle(args)
    unknown = [s for s in args.steps.split(",") if s and s not in STEPS]
    if unknown or not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        return _fail(f"--steps takes {','.join(STEPS)} and --device cpu, cuda or cuda:N")
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
