"""``hpsearch run --jobs K``: K worker processes on this host sharing one study.

Processes, not threads: each trains with its own interpreter, so the GIL never serialises
the training loops. The launcher checks the input and creates the study once (so K workers
do not race to create it or print the same error K times), then starts K copies of the same
command. Each worker runs ``runner.run`` against the shared storage, which keeps the total
at exactly ``--trials`` finished trials. CPU threads are split between the workers; with
several visible GPUs the workers are spread over them round-robin, one GPU each
(``CUDA_VISIBLE_DEVICES``).

Workers know they are workers from ``HPSEARCH_WORKER`` (their index) in their environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from hpsearch import interrupts, runner
from hpsearch.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated
from hpsearch.study import best_trial, count_finished, open_study

WORKER_ENV = "HPSEARCH_WORKER"


def worker_index() -> int | None:
    """This process's worker index, or None when it is not a worker."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None else None


def _gpu_ids(device) -> list[str]:
    if device is None or device.type != "cuda" or device.index is not None:
        return []  # the CPU, or one GPU named by the user: every worker uses it
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = (
        [i.strip() for i in visible.split(",") if i.strip()]
        if visible
        else [str(i) for i in range(torch.cuda.device_count())]
    )
    return ids if len(ids) > 1 else []


# On a CPU, two workers of half the threads each trained every study's baseline faster than one
# worker of all threads (1.04x to 1.46x on 2 cores, docs/search.md), and they overlap one
# trial's bookkeeping with the other's training, which counts where most trials end at a
# quarter epoch. More than two is not measured.
CPU_WORKERS = 2
JOBS_ENV = "HPSEARCH_JOBS"  # the default of --jobs, where set


def default_jobs(device) -> int:
    """``run``'s worker count when ``--jobs`` is not given: ``$HPSEARCH_JOBS``, else
    ``CPU_WORKERS`` on a CPU with that many cores, else one."""
    if os.environ.get(JOBS_ENV):
        return max(1, int(os.environ[JOBS_ENV]))
    cpu = device is not None and device.type == "cpu"
    return CPU_WORKERS if cpu and (os.cpu_count() or 1) >= CPU_WORKERS else 1


def launch(cfg: runner.RunConfig, argv: list[str], why: str = "") -> int:
    """Start ``cfg.jobs`` workers running ``hpsearch`` with ``argv``; return their worst exit
    status. ``why`` follows the first line's worker count (a default says so)."""
    runner.prepare(cfg, device="cpu")  # one check of data and storage, one study
    try:
        codes = spawn(cfg.jobs, cfg.device, argv, why=why)
    finally:  # also after a forwarded Ctrl-C or SIGTERM: what the workers left stored
        say_done(cfg, open_study(cfg.spec, cfg.storage_url, cfg.study_name), f"{cfg.jobs} workers")
    return worst(codes)


def say_done(cfg: runner.RunConfig, study, who: str) -> None:
    """The launcher's last line: ``WHO done: F/N trials finished; best METRIC V (trial T)``."""
    best = best_trial(study)
    best_text = f"; best {cfg.spec.metric} {best.value:.4f} (trial {best.number})" if best else ""
    print(f"{who} done: {count_finished(study)}/{cfg.trials} trials finished{best_text}", flush=True)


def spawn(jobs: int, device, argv: list[str], env: dict[str, str] | None = None, why: str = "") -> list[int]:
    """Run ``jobs`` workers of ``hpsearch ARGV`` on this host, with ``env`` added to their
    environment, and return their exit statuses.

    SIGINT and SIGTERM are forwarded to every worker, once each, also while the workers are
    being started: then no further worker is started, and once they have ended the signal is
    raised here (Terminated or KeyboardInterrupt). Workers are born with both signals
    blocked (``interrupts.blocked``) and take a forwarded one once their handler is in place.
    """
    gpus = _gpu_ids(device)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    print(
        f"starting {jobs} workers on {'GPUs ' + ','.join(gpus) if gpus else device or 'the CPU'}, "
        f"{threads} CPU thread(s) each{why}",
        flush=True,
    )
    procs: list[subprocess.Popen] = []
    received: list[int] = []
    sent: set[tuple[int, int]] = set()

    def forward(signum, frame):
        received.append(signum)
        for proc in procs:
            if proc.poll() is None and (proc.pid, signum) not in sent:
                sent.add((proc.pid, signum))
                proc.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in interrupts.SIGNALS}
    try:
        with interrupts.blocked():
            for index in range(jobs):
                if received:
                    break
                worker_env = {**os.environ, **(env or {}), WORKER_ENV: str(index), "OMP_NUM_THREADS": str(threads)}
                if gpus:
                    worker_env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
                procs.append(subprocess.Popen([sys.executable, "-m", "hpsearch", *argv], env=worker_env))
        if received:  # the handler may have run inside Popen, before that worker was listed
            forward(received[-1], None)
        codes = [proc.wait() for proc in procs]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if EXIT_TERMINATED in codes or signal.SIGTERM in received:
        raise Terminated()
    if EXIT_INTERRUPTED in codes or signal.SIGINT in received:
        raise KeyboardInterrupt
    return codes


def worst(codes: list[int]) -> int:
    """The exit status that speaks for a set of workers: the largest in magnitude."""
    return max(codes, key=abs)
