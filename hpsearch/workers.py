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

import torch

from hpsearch import runner
from hpsearch.cli import EXIT_INTERRUPTED, EXIT_TERMINATED
from hpsearch.errors import Terminated

WORKER_ENV = "HPSEARCH_WORKER"


def worker_index() -> int | None:
    """This process's worker index, or None when it is not a worker."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None else None


def _gpu_ids(device: torch.device) -> list[str]:
    if device.type != "cuda" or device.index is not None:
        return []  # the CPU, or one GPU named by the user: every worker uses it
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [i.strip() for i in visible.split(",") if i.strip()] if visible else [str(i) for i in range(torch.cuda.device_count())]
    return ids if len(ids) > 1 else []


def launch(cfg: runner.RunConfig, argv: list[str]) -> int:
    """Start ``cfg.jobs`` workers running ``hpsearch`` with ``argv``; return their worst exit status."""
    runner.prepare(cfg, device=torch.device("cpu"))  # one check of data and storage, one study
    gpus = _gpu_ids(cfg.device)
    threads = max(1, (os.cpu_count() or 1) // cfg.jobs)
    print(f"starting {cfg.jobs} workers on {'GPUs ' + ','.join(gpus) if gpus else cfg.device}, "
          f"{threads} CPU thread(s) each", flush=True)
    procs = []
    for index in range(cfg.jobs):
        env = {**os.environ, WORKER_ENV: str(index), "OMP_NUM_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        procs.append(subprocess.Popen([sys.executable, "-m", "hpsearch", *argv], env=env))

    def forward(signum, frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        codes = []
        for proc in procs:
            while True:
                try:
                    codes.append(proc.wait())
                    break
                except KeyboardInterrupt:
                    # Ctrl-C reached the workers too (same process group); let them end their trials.
                    forward(signal.SIGINT, None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    study = runner.open_study(cfg.spec, cfg.storage_url, cfg.study_name)
    finished = runner.count_finished(study)
    try:
        best = f"; best {cfg.spec.metric} {study.best_value:.4f} (trial {study.best_trial.number})"
    except ValueError:
        best = ""
    print(f"{cfg.jobs} workers done: {finished}/{cfg.trials} trials finished{best}", flush=True)
    if EXIT_TERMINATED in codes:
        raise Terminated()
    if EXIT_INTERRUPTED in codes:
        raise KeyboardInterrupt
    return max(codes, key=abs)
