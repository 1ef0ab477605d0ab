"""The product on a GPU machine, in one command of at most 10 minutes (docs/benchmarks.md).

The GPU machine has Python 3.12 with torch, torchvision, numpy, scipy, pytest and pillow, no
package registry and no internet, and gets only this repository's working tree; ``make
gpu-bundle`` (``benchmarks/gpu_bundle.py``, here) puts the wheels it lacks and Fashion-MNIST
in ``.device/``. There, with ``.device`` carried, ``make gpu-check`` installs the wheels
(``pip install --no-index --no-deps --target``; that folder and the checkout go on
``PYTHONPATH``), prints the machine, checks the data against its sums and reads it once, then
runs the steps: ``lenet`` (``benchmarks/lenet_epoch.py`` at batch 100 and 1000), ``tests``
(the suite, training on the device) and ``jobs`` (trials per minute of ``hpsearch run
fashion-lenet --trials 40 --seed 0`` with ``--jobs`` 1, 2, 4 and 8, each on a fresh SQLite file).

Each step runs within a share of ``--budget`` seconds (one that reaches its share is stopped
and says so), every figure is printed with its command, and a Markdown summary ends the
output; with ``$OUT`` set, gpu-check.log, pytest.log and gpu-check-summary.md go there too.

    python3 benchmarks/gpu_check.py [--device cuda] [--steps lenet,tests,jobs]
    python3 benchmarks/gpu_check.py --no-install --device cpu --sweep-trials 4 --sweep-epochs 1   # a CPU dry run

Only the standard library is imported here; torch, hpsearch and Optuna run in child processes
(``benchmarks/gpu_probe.py`` reads the machine, the data and the sweeps' studies). Exit
status: 0 when every step passed, 1 when a step failed or was stopped, 2 when the check could
not start (no bundle, no GPU for --device cuda, a bad argument).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, namedtuple
from pathlib import Path

from gpu_bundle import BUNDLE, FASHION_FILES, RAW, REPO, bad_sums  # beside this file

PROBE = REPO / "benchmarks" / "gpu_probe.py"
STEPS = ("lenet", "tests", "jobs")  # the order they run in
HEADER = ["--jobs", "finished", "complete / pruned / failed", "epochs", "wall s", "trials/min", "epochs/min"]
HEADER += ["best val acc", "ended by"]  # of the jobs table
Ran = namedtuple("Ran", "code seconds lines")  # code None: stopped at its time limit
Outcome = namedtuple("Outcome", "step ok note figures", defaults=[()])  # figures: Markdown lines for the summary


def shown(cmd: list[str], env_shown: dict | None = None) -> str:
    """The command as one would type it in the checkout (``python`` for this interpreter)."""
    words = ["python" if w == sys.executable else w.removeprefix(f"{REPO}/") for w in cmd]
    return " ".join([*(f"{k}={v}" for k, v in (env_shown or {}).items()), shlex.join(words)])


class Check:
    def __init__(self, args):
        self.args, self.device, self.started = args, args.device, time.monotonic()
        self.steps = [s for s in STEPS if s in args.steps.split(",")]
        self.work = Path(args.workdir)
        self.out_dir = Path(args.log_dir or os.environ.get("OUT") or self.work)
        for folder in (self.work, self.out_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out_dir / "gpu-check.log"
        self.log_file, self.lock = open(self.log_path, "w", encoding="utf-8"), threading.Lock()
        self.env = {k: v for k, v in os.environ.items() if k != "HPSEARCH_STORAGE"} | {"PYTHONUNBUFFERED": "1"}
        self.machine_line, self.outcomes = "", []

    def say(self, line: str = "", echo: bool = True) -> None:
        """To stdout (unless not ``echo``) and to gpu-check.log."""
        with self.lock:
            if echo:
                print(line, flush=True)
            self.log_file.write(line + "\n")
            self.log_file.flush()

    def run_child(self, cmd, limit, env=None, echo=False, stop_signal=signal.SIGTERM, grace=10.0) -> Ran:
        """Run ``cmd`` (in its own process group) with its output to the log (and to stdout when
        ``echo``). It may take ``limit`` seconds in all: ``grace`` seconds before that it gets
        ``stop_signal`` (time to say what it did), and at ``limit`` its whole group gets SIGKILL."""
        started, lines, stopped, grace = time.monotonic(), [], False, min(grace, limit / 4)
        pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "errors": "replace"}
        pipe |= {"cwd": REPO, "env": env or self.env, "stdin": subprocess.DEVNULL, "start_new_session": True}
        proc = subprocess.Popen(cmd, **pipe)

        def pump():
            for raw in proc.stdout:
                lines.append(raw.rstrip("\n"))
                self.say(f"    {lines[-1]}", echo)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=max(1.0, limit - grace))
        except subprocess.TimeoutExpired:
            stopped = True
            self.say(f"    ... stopped at its limit of {limit:.0f} s")
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
        return Ran(None if stopped else proc.returncode, time.monotonic() - started, lines)

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.started)

    def share(self, cap: float, reserve: float = 0.0) -> float:
        """Seconds a step may take: its cap, within what the budget leaves after ``reserve``."""
        return max(0.0, min(cap, self.left() - reserve))

    def reserve_after(self, step: str) -> float:
        """Seconds to keep for the steps after ``step`` (a minimum that still gives a figure)."""
        minimum = {"lenet": 45.0 * len(self.args.lenet_batch_sizes.split(",")), "tests": 60.0}
        minimum["jobs"] = 30.0 * len(self.args.sweep_jobs.split(","))
        return sum(minimum[s] for s in STEPS[STEPS.index(step) + 1 :] if s in self.steps)

    def probe(self, step: str, *words: str, limit: float = 120) -> Ran | None:
        """``gpu_probe.py STEP WORDS``; None, with its last lines (the reason) in the log, when it failed."""
        ran = self.run_child([sys.executable, str(PROBE), step, *words], self.share(limit))
        if ran.code == 0 and ran.lines:
            return ran
        for line in [f"failed ({'stopped' if ran.code is None else f'exit {ran.code}'}):", *ran.lines[-14:]]:
            self.say(f"{step}: {line}")
        return None

    # what must work for the steps to mean anything

    def install(self) -> bool:
        path = [str(REPO)]
        if self.args.no_install:
            self.say("install: skipped (--no-install): using the packages this Python already has")
        else:
            wheels = sorted(Path(self.args.wheels).glob("*.whl"))
            if not wheels:
                self.say(
                    f"install: no wheels in {self.args.wheels}; run 'make gpu-bundle' where ../shared is and carry "
                    ".device, or pass --no-install where the packages are installed"
                )
                return False
            pip = "-m pip install --quiet --no-index --no-deps --no-cache-dir --disable-pip-version-check --upgrade"
            cmd = [sys.executable, *pip.split(), "--target", self.args.site, *map(str, wheels)]
            env = {**self.env, "PIP_ROOT_USER_ACTION": "ignore"}  # the machine runs commands as root
            ran = self.run_child(cmd, self.share(180), env=env, echo=True)
            failed = "" if ran.code == 0 else f": FAILED (pip exit {ran.code})"
            self.say(f"install: {len(wheels)} wheels into {self.args.site} in {ran.seconds:.1f} s{failed}")
            if ran.code != 0:
                return False
            path.insert(0, self.args.site)
        inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env["PYTHONPATH"] = os.pathsep.join(path + inherited)
        return True

    def machine(self) -> bool:
        ran = self.probe("machine", "--device", self.device)
        if ran:
            self.machine_line = ran.lines[-1]
            self.say(f"machine: {self.machine_line}")
        return ran is not None

    def data(self) -> bool:
        bundled = BUNDLE / "data" if (BUNDLE / "data" / RAW).is_dir() else None
        root = Path(self.args.data_dir or bundled or os.environ.get("HPSEARCH_DATA_DIR") or REPO.parent / "shared/data")
        missing = [f for f in FASHION_FILES if not (root / RAW / f).is_file()]
        if missing:
            self.say(f"data: {', '.join(missing)} missing in {root / RAW}; run 'make gpu-bundle' and carry .device")
            return False
        bad = bad_sums("data/") if root.resolve() == (BUNDLE / "data").resolve() else []
        if bad:
            self.say(f"data: {', '.join(bad)} differ from .device/SHA256SUMS (a broken transfer?)")
            return False
        self.env["HPSEARCH_DATA_DIR"] = str(root)
        self.env["HPSEARCH_CACHE_DIR"] = os.environ.get("HPSEARCH_CACHE_DIR") or str(self.work / "cache")
        ran = self.probe("data", "--device", self.device, limit=180)
        if ran:
            self.say(f"data: {root}: {ran.lines[-1]} (cache {self.env['HPSEARCH_CACHE_DIR']})")
        return ran is not None

    # the steps

    def lenet(self) -> Outcome:
        sizes = [int(b) for b in self.args.lenet_batch_sizes.split(",") if b]
        deadline = time.monotonic() + self.share(self.args.lenet_timeout, reserve=self.reserve_after("lenet"))
        figures, notes, ok = [], [], True
        for i, size in enumerate(sizes):
            cmd = [sys.executable, str(REPO / "benchmarks" / "lenet_epoch.py"), "--device", self.device]
            cmd += ["--batch-size", str(size), "--repeat", str(self.args.lenet_repeat)]
            cap = max(0.0, deadline - time.monotonic()) / (len(sizes) - i)
            self.say(f"$ {shown(cmd)}    (limit {cap:.0f} s)")
            ran = self.run_child(cmd, cap, echo=True)
            text = "\n".join(ran.lines)
            engine = re.search(r"^hpsearch engine, default \S+\s+([\d,]+) images/s", text, re.M)
            loader = re.search(r"^reports' DataLoader loop\s+([\d,]+) images/s", text, re.M)
            speedup = re.search(r"^speed-up[^:]*: (.*)$", text, re.M)
            if ran.code == 0 and engine and loader and speedup:
                notes.append(
                    f"batch {size}: engine {engine[1]} images/s, DataLoader loop {loader[1]} images/s, "
                    f"speed-up {speedup[1]}"
                )
            else:
                ok = False
                notes.append(f"batch {size}: no figure ({'stopped' if ran.code is None else f'exit {ran.code}'})")
            figures += ["```", f"$ {shown(cmd)}", *ran.lines, "```"]
            figures += [f"(stopped at its limit of {cap:.0f} s: no figure)"] if ran.code is None else []
        self.say("lenet: " + "; ".join(notes))
        return Outcome("lenet", ok, "; ".join(notes), figures)

    def tests(self) -> Outcome:
        # -v: each test's outcome is in the output as it ends, also when the run is stopped.
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--durations=15"]
        cmd += shlex.split(self.args.pytest_args)
        device = {"HPSEARCH_TEST_DEVICE": "cuda" if self.device.startswith("cuda") else "cpu"}
        limit = self.share(self.args.tests_timeout, reserve=self.reserve_after("tests"))
        self.say(f"$ {shown(cmd, device)}    (limit {limit:.0f} s)")
        ran = self.run_child(cmd, limit, env=self.env | device, stop_signal=signal.SIGINT, grace=30)
        (self.out_dir / "pytest.log").write_text("".join(f"{line}\n" for line in ran.lines))
        # pytest's last '== N passed, ... ==' line and the -ra summary's failures and errors; for a
        # run stopped hard, the -v lines' outcomes.
        ended = re.compile(r"=.*\b(passed|failed|error|skipped|no tests ran)\b")
        final = next((ln.strip("= ") for ln in reversed(ran.lines) if ended.match(ln)), "")
        report = [ln[:300] for ln in ran.lines if ln.startswith(("FAILED ", "ERROR "))]
        verbose = re.compile(r"(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
        outcomes = [found.groups() for found in map(verbose.match, ran.lines) if found]
        if not final and outcomes:
            counts = Counter(outcome.lower() for _, outcome in outcomes)
            final = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) + " before it was stopped"
        report = report or [f"{outcome} {test}" for test, outcome in outcomes if outcome in ("FAILED", "ERROR")]
        for text in [ln for ln in ran.lines if ln.startswith("training device:")][:1] + report:
            self.say(f"    {text}")
        final = final or f"no pytest summary line (exit {ran.code})"
        if ran.code is None:
            note = f"stopped after {ran.seconds:.0f} s (limit): {final}"
        else:
            note = f"{final} (exit {ran.code}, {ran.seconds:.0f} s)"
        self.say(f"tests: {note}")
        return Outcome("tests", ran.code == 0, note, [f"`{shown(cmd, device)}`: {note}", *(f"- {t}" for t in report)])

    def jobs(self) -> Outcome:
        args, folder = self.args, self.work / "jobs"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

        def command(jobs) -> list[str]:
            cmd = [sys.executable, "-m", "hpsearch", "run", "fashion-lenet", "--trials", str(args.sweep_trials)]
            cmd += ["--seed", str(args.sweep_seed), "--jobs", str(jobs), "--device", self.device]
            cmd += ["--storage", f"sqlite:///{folder / f'jobs-{jobs}.db'}"]
            cmd += ["--artifacts", str(folder / f"artifacts-{jobs}")]
            cmd += ["--epochs", str(args.sweep_epochs)] if args.sweep_epochs else []
            return cmd + (["--subset", str(args.sweep_subset)] if args.sweep_subset else [])

        counts, rows, ok = [int(j) for j in args.sweep_jobs.split(",") if j], [], True
        for i, jobs in enumerate(counts):
            cap = self.share(1e9, reserve=5) / (len(counts) - i)
            if cap < 20:
                rows.append(f"| {jobs} | not run: {cap:.0f} s of the budget left | | | | | | | |")
                self.say(f"jobs {jobs}: not run, {cap:.0f} s of the budget left for it")
                ok = False
                continue
            # No trial starts in the last 15 % of the run's share; what still runs at its end is stopped.
            soft = max(1, int(cap * 0.85))
            cmd = [*command(jobs), "--timeout", str(soft)]
            self.say(f"$ {shown(cmd)}    (limit {cap:.0f} s)")
            ran = self.run_child(cmd, cap, grace=20)
            for line in ran.lines[-3:]:
                self.say(f"    {line}")
            got = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "epochs": 0, "best": None}
            if (folder / f"jobs-{jobs}.db").exists():  # what Optuna's API says of the study, in a child
                study = self.probe("study", f"sqlite:///{folder / f'jobs-{jobs}.db'}", limit=60)
                got = json.loads(study.lines[-1]) if study else got
            finished, per_minute = got["COMPLETE"] + got["PRUNED"], 60 / ran.seconds
            if ran.code is None:
                ended = f"stopped at {cap:.0f} s"
            elif ran.code:
                ended, ok = f"exit {ran.code}", False
            else:
                ended = "all trials" if finished >= args.sweep_trials else f"its --timeout {soft} s"
            cells = [
                str(jobs),
                f"{finished}/{args.sweep_trials}",
                f"{got['COMPLETE']} / {got['PRUNED']} / {got['FAIL']}",
            ]
            cells += [str(got["epochs"]), f"{ran.seconds:.1f}", f"{finished * per_minute:.2f}"]
            cells += [f"{got['epochs'] * per_minute:.1f}", "-" if got["best"] is None else f"{got['best']:.4f}", ended]
            rows.append(f"| {' | '.join(cells)} |")
            self.say(
                f"jobs {jobs}: " + ", ".join(f"{name} {cell}" for name, cell in zip(HEADER[1:], cells[1:], strict=True))
            )
        intro = (
            f"`{shown(command('K'))}`, with `--timeout` at 85 % of each run's share of the budget "
            "(trials/min = finished trials / wall time of the whole command, start-up included):"
        )
        table = [f"| {' | '.join(HEADER)} |", "|---" * len(HEADER) + "|", *rows]
        return Outcome("jobs", ok, f"{len(rows)} run(s)", [intro, "", *table])

    def run(self) -> int:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.say(
            f"gpu-check {stamp}: device {self.device}, steps {','.join(self.steps)}, budget {self.args.budget:.0f} s, "
            f"log {self.log_path}"
        )
        if not (self.install() and self.machine() and self.data()):
            self.say(f"gpu-check: stopped before measuring ({time.monotonic() - self.started:.0f} s)")
            return 2
        for step in self.steps:
            self.say(f"\n== {step} ({self.left():.0f} s of the budget left)")
            try:
                self.outcomes.append(getattr(self, step)())
            except Exception as exc:  # a broken step must not cost the others their minutes
                self.say(f"{step}: the step itself failed: {type(exc).__name__}: {exc}")
                self.outcomes.append(Outcome(step, False, f"the step failed: {exc}"))
        oks = ", ".join(f"{o.step} {'ok' if o.ok else 'NOT ok'}" for o in self.outcomes)
        wall = time.monotonic() - self.started
        summary = [f"### gpu-check, {stamp}, --device {self.device}", "", f"Machine: {self.machine_line}.", ""]
        summary.append(f"Whole check: {wall:.0f} s of a {self.args.budget:.0f} s budget; {oks}.")
        for outcome in self.outcomes:
            summary += ["", f"**{outcome.step}**", "", *(outcome.figures or [outcome.note])]
        (self.out_dir / "gpu-check-summary.md").write_text("\n".join(summary) + "\n")
        self.say("\n" + "\n".join(summary))
        return 0 if all(o.ok for o in self.outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def add(*names, **kwargs):
        if kwargs.get("default") not in (None, ""):
            kwargs["help"] = f"{kwargs.get('help', '')} (default: %(default)s)".lstrip()
        parser.add_argument(*names, **kwargs)

    add("--device", default="cuda", help="cuda, cuda:N or cpu (a dry run)")
    add("--steps", default=",".join(STEPS), help="which of lenet,tests,jobs to run")
    add("--budget", type=float, default=540, help="seconds for the whole check (inside a 10-minute call)")
    add("--wheels", default=str(BUNDLE / "wheels"), help="wheels to install (make gpu-bundle puts them there)")
    add("--site", default="/tmp/hpsearch-site", help="pip --target folder")
    add("--no-install", action="store_true", help="use the packages this Python already has")
    add("--data-dir", help="folder with FashionMNIST/raw (default: .device/data, $HPSEARCH_DATA_DIR, ../shared/data)")
    add("--workdir", default="/tmp/hpsearch-gpu-check", help="scratch folder: cache, sweep databases")
    add("--log-dir", help="for gpu-check.log, pytest.log, gpu-check-summary.md (default: $OUT, else the workdir)")
    add("--pytest-args", default="", help="extra pytest arguments, e.g. 'tests/test_train.py -x'")
    add("--tests-timeout", type=float, default=300, help="seconds for the test suite")
    add("--lenet-batch-sizes", default="100,1000")
    add("--lenet-repeat", type=int, default=3, help="epochs timed per way")
    add("--lenet-timeout", type=float, default=240, help="seconds for all lenet_epoch runs together")
    add("--sweep-jobs", default="1,2,4,8", help="--jobs values")
    add("--sweep-trials", type=int, default=40, help="trials per run")
    add("--sweep-seed", type=int, default=0)
    add("--sweep-epochs", type=int, help="max epochs per trial (default: the study's, 20)")
    add("--sweep-subset", type=int, help="only the first N training images (dry runs)")
    args = parser.parse_args(argv)
    if any(s and s not in STEPS for s in args.steps.split(",")) or not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        print(f"gpu-check: --steps takes {','.join(STEPS)} and --device cpu, cuda or cuda:N", file=sys.stderr)
        return 2
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
