"""``hpsearch run --slurm K``: a SLURM job array of K tasks, each one worker of the study.

The submitting command refuses SQLite, checks its input and creates the study once, as
``--jobs`` does, then submits the array through submitit. Each task runs what a ``--jobs``
worker runs (``python -m hpsearch ARGV``, ``HPSEARCH_WORKER`` set to its index), so the
search loop keeps the study at exactly ``--trials`` finished trials whichever tasks start
late, end early or are killed. The command then follows the study in the storage (a local
run's progress lines) and the tasks with ``squeue`` (``sacct`` would need accounting), and
returns once the study is done, or at once with ``--detach``. Ctrl-C or SIGTERM there
cancels the array. A task that SLURM stops (scancel, time limit, preemption) stops its worker
with SIGTERM: the running trial is failed as interrupted and queued again for the others; a
worker killed outright leaves its trial to the heartbeat, which fails and re-queues it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time

from hpsearch import interrupts
from hpsearch.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, StudyAborted, Terminated, UsageError, first_line

POLL_SECONDS = 2.0  # between two looks at the study and the array
DRAIN_SECONDS = 60  # after the last trial, how long to wait for the running tasks to end
STOP_SECONDS = 60  # a task's worker gets this long to tidy up after SIGTERM
# squeue's states of a task that has ended; any other state is a task still to come or running.
ENDED = set("COMPLETED CANCELLED FAILED TIMEOUT PREEMPTED NODE_FAIL BOOT_FAIL DEADLINE OUT_OF_MEMORY REVOKED".split())


def add_options(p, count, amount) -> None:
    """Add ``--slurm`` and the options of its array to the ``run`` parser ``p``; ``count`` and
    ``amount`` are the argparse types of a positive int and a positive float."""
    g = p.add_argument_group("SLURM", "a job array of workers of this study (needs submitit and PostgreSQL)")
    g.add_argument("--slurm", type=count, metavar="K", help="submit K SLURM tasks, each a worker, and follow them")
    g.add_argument("--slurm-partition", metavar="NAME", help="partition (default: the cluster's default)")
    g.add_argument("--slurm-time", type=count, default=60, metavar="MIN", help="time limit per task (default: 60)")
    g.add_argument("--slurm-cpus", type=count, default=1, metavar="C", help="CPUs (and threads) per task (default: 1)")
    g.add_argument("--slurm-gpus", type=count, metavar="G", help="GPUs per task (default: none)")
    g.add_argument("--slurm-mem", type=amount, metavar="GB", help="memory per task (default: the cluster's)")
    extra = "an extra #SBATCH option in its long form, as --slurm-sbatch=--account=proj (repeatable)"
    g.add_argument("--slurm-sbatch", action="append", default=[], metavar="OPTION", help=extra)
    setup = "a shell line the job runs before its worker, as 'module load cuda' (repeatable)"
    g.add_argument("--slurm-setup", action="append", default=[], metavar="LINE", help=setup)
    folder = "task logs, on a filesystem all nodes share (default: ./hpsearch-slurm)"
    g.add_argument("--slurm-folder", default="hpsearch-slurm", metavar="DIR", help=folder)
    g.add_argument("--detach", action="store_true", help="with --slurm: return once the array is submitted")


class Worker:
    """One task's body (pickled by submitit): ``python -m hpsearch ARGV`` as worker ``index``
    in ``cwd``, with ``env`` over the task's environment. Returns its exit status, 0 or 143
    (SIGTERM: SLURM ended the task), and raises on another. Whatever stops this process
    first (submitit's handler of SLURM's USR2, sent before the time limit and on preemption)
    stops the worker with SIGTERM and waits for it."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str]):
        self.argv, self.cwd, self.env = argv, cwd, env

    def __call__(self, index: int) -> int:
        from hpsearch.workers import WORKER_ENV

        env = {**os.environ, **self.env, WORKER_ENV: str(index)}
        # USR2 is submitit's signal; it reaches every process of the task, and would kill the worker.
        ignore = lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # noqa: E731
        command = [sys.executable, "-m", "hpsearch", *self.argv]
        proc = subprocess.Popen(command, cwd=self.cwd, env=env, preexec_fn=ignore)
        try:
            code = proc.wait()
        except BaseException:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):  # past it, SLURM kills what is left
                proc.wait(timeout=STOP_SECONDS)
            raise
        if code not in (0, EXIT_TERMINATED):  # 143: SLURM cancelled the task, as squeue says
            raise RuntimeError(f"hpsearch worker {index} ended with exit status {code}")
        return code


def submit(cfg, args) -> int:
    """Submit ``args.slurm`` tasks running ``args.argv``, then follow them (see the module's
    docstring); the exit status. Raises UsageError, with nothing written, for an SQLite
    storage, a storage or data this host cannot open, no submitit or no sbatch here, or an
    array that sbatch refuses (then the study exists, with no trial run)."""
    from hpsearch import runner
    from hpsearch.progress import Progress
    from hpsearch.storage import mask
    from hpsearch.study import count_finished

    executor = _executor(cfg, args)
    trainer, study = runner.prepare(cfg, device="cpu")  # one check of data and storage, one study
    summary, trainer = trainer.summary, None  # its data, loaded for the check, is the workers' to hold
    if count_finished(study) >= cfg.trials:  # nothing left for a worker to do: no array
        progress = Progress(cfg)
        progress.header(study, summary)
        progress.footer(study)
        return 0
    passed = {k: v for k, v in os.environ.items() if k == "PYTHONPATH" or k.startswith("HPSEARCH_")}
    env = {**passed, "OMP_NUM_THREADS": str(args.slurm_cpus)}
    job_id = None
    try:
        with interrupts.deferred(), contextlib.redirect_stderr(io.StringIO()) as said:  # Ctrl-C: once job_id is known
            try:
                jobs = executor.map_array(Worker(args.argv, os.getcwd(), env), range(args.slurm))
            except Exception as exc:  # submitit prints sbatch's complaint, and raises it again
                lines = [line for line in f"{exc}\n{said.getvalue()}".splitlines() if "error" in line.lower()]
                raise UsageError(f"sbatch refused the array: {lines[-1] if lines else first_line(exc)}") from None
            job_id = jobs[0].job_id.split("_")[0]
        print(f"submitted SLURM job {job_id}: {args.slurm} tasks, each a worker; logs in {executor.folder}", flush=True)
        if not args.detach:
            return _follow(cfg, study, summary, job_id, executor.folder, args.slurm)
        url = f"--storage {mask(cfg.storage_url)}"
        print(f"follow it: 'hpsearch show {args.study} {url}', 'hpsearch dashboard {url}', 'squeue -j {job_id}'")
        return 0
    except KeyboardInterrupt as exc:
        if job_id is None:
            raise
        with interrupts.deferred():
            done = subprocess.run(["scancel", job_id], capture_output=True, text=True).returncode == 0
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        cancelled = f"cancelled SLURM job {job_id}" if done else f"could not cancel SLURM job {job_id}: run scancel"
        print(f"hpsearch: {what}; {cancelled}; finished trials are stored, submit again to continue", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def _executor(cfg, args):
    """submitit's executor for the array, once the input is known to be fit for SLURM."""
    from hpsearch.storage import mask

    if args.jobs and args.jobs > 1:
        raise UsageError("--jobs with --slurm: each SLURM task is one worker; ask for more tasks with --slurm K")
    if cfg.storage_url.startswith("sqlite"):  # sqlite:// and sqlite+driver://
        raise UsageError(
            f"--slurm needs a database server, not SQLite ({mask(cfg.storage_url)}): SLURM tasks run on several "
            "hosts, and an SQLite file on a shared filesystem gets corrupted there; use --storage "
            "postgresql+psycopg://user:password@host/dbname"
        )
    try:
        import submitit
    except ImportError:
        raise UsageError("--slurm needs submitit: pip install 'hpsearch[slurm]' (or pip install submitit)") from None
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise UsageError("--slurm: sbatch and srun are not on PATH here; run this on a host that submits SLURM jobs")
    executor = submitit.SlurmExecutor(folder=os.path.abspath(args.slurm_folder))
    mem = f"{round(args.slurm_mem * 1024)}M" if args.slurm_mem else None  # sbatch's form: submitit passes it as is
    options = {"partition": args.slurm_partition, "gpus_per_task": args.slurm_gpus, "mem": mem}
    executor.update_parameters(
        job_name=f"hpsearch-{cfg.study_name}",
        time=args.slurm_time,
        cpus_per_task=args.slurm_cpus,
        array_parallelism=args.slurm,
        additional_parameters=dict(_sbatch_option(text) for text in args.slurm_sbatch),
        setup=args.slurm_setup,
        **{key: value for key, value in options.items() if value is not None},
    )
    return executor


def _sbatch_option(text: str) -> tuple[str, object]:
    """``--account=proj`` (or ``account=proj``) -> ("account", "proj"); ``--exclusive`` -> ("exclusive", True)."""
    key, sep, value = text.lstrip("-").partition("=")
    if not key or " " in key:
        raise UsageError(f"--slurm-sbatch {text!r}: give one sbatch option in its long form, as --account=proj")
    return key, value if sep else True


def task_states(job_id: str) -> dict[str, str] | None:
    """Each task of the array ``job_id`` (``123_0``: state) as squeue shows it, recently ended
    tasks included; {} once SLURM has forgotten the job; None when squeue does not answer."""
    command = ["squeue", "--noheader", "--array", "--states=all", "--jobs", job_id, "--format=%i %T"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return {} if "invalid job id" in proc.stderr.lower() else None
    return dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.strip())


def _follow(cfg, study, summary: str, job_id: str, folder, tasks: int) -> int:
    """Print the study's progress and the tasks' states until the study holds ``cfg.trials``
    finished trials (then cancel the tasks still pending, which would have nothing to do, and
    wait up to DRAIN_SECONDS for the running ones to end) or every task has ended (StudyAborted)."""
    from collections import Counter

    from hpsearch.progress import Progress
    from hpsearch.study import count_finished
    from hpsearch.workers import say_done

    progress = Progress(cfg)
    progress.header(study, summary)
    shown = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    said, drain_until = "", None
    while True:
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in shown:
                shown.add(trial.number)
                progress.trial_done(study, trial)
        states = task_states(job_id)
        if states:
            tally = ", ".join(f"{n} {state}" for state, n in sorted(Counter(states.values()).items()))
            if tally != said:
                print(f"SLURM job {job_id}: {tally}", flush=True)
                said = tally
        running = states is None or any(state not in ENDED for state in states.values())
        finished = count_finished(study)
        if finished >= cfg.trials and drain_until is None:
            drain_until = time.monotonic() + DRAIN_SECONDS
            if states and "PENDING" in states.values():
                subprocess.run(["scancel", "--state=PENDING", job_id], capture_output=True)
        if drain_until is not None and (not running or time.monotonic() > drain_until):
            break
        if drain_until is None and not running:
            raise StudyAborted(
                f"SLURM job {job_id} ended with {finished}/{cfg.trials} trials finished ({said or 'no task seen'}); "
                f"its tasks' logs are {folder}/{job_id}_*_log.*; submit again to continue"
            )
        time.sleep(POLL_SECONDS)
    progress.footer(study)
    say_done(cfg, study, f"{tasks} SLURM tasks")
    return 0
