"""One worker with every CPU thread, or one worker per thread? Training throughput of each
study's model at its baseline configuration, in training images a second summed over the
workers, with ``hpsearch run``'s own training loop (``hpsearch.train.fit``).

    python benchmarks/cpu_workers.py [--studies fashion-lenet ...] [--seconds 20] [--data-dir DIR]

For each study it trains the baseline for ``--seconds`` (after a warm-up batch pass) in one
process with all of ``os.cpu_count()`` threads, then in one process per thread, all at once,
each with one thread (what ``--jobs K`` sets up: ``OMP_NUM_THREADS``); every process loads the
data before any of them starts the clock. The ratio is what two workers gain in trials an
hour where training dominates a trial.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDIES = ("fashion-fc", "fashion-lenet", "fashion-resnet", "cifar10-mlp", "mnist-denoise", "flowers-ae")


class _Done(Exception):
    pass


def measure(study: str, seconds: float, data_dir: str | None, ready: Path, go: Path) -> dict:
    """Train ``study``'s baseline for ``seconds`` once ``go`` exists; images a second."""
    import optuna
    import torch

    from hpsearch import api, registry
    from hpsearch.train import build_model, fit
    from hpsearch.trainer import TorchTrainer

    spec = registry.get(study)
    cfg = api.config(spec, 1, storage="sqlite:///:memory:", device="cpu", data_dir=data_dir)
    trainer = TorchTrainer(cfg)
    params = spec.space(optuna.trial.FixedTrial(spec.baseline))
    name, kwargs = spec.model(params)
    model = build_model(name, kwargs, seed=0, device=cfg.device)
    recipe = spec.recipe(params, epochs=spec.max_epochs, seed=0, precision=cfg.precision)
    batch = min(recipe.batch_size, len(trainer.data.train))
    clock = {"start": None, "batches": 0}

    def on_batch(what, done, total):
        if done == 0 or what.startswith("pre"):
            return
        now = time.perf_counter()
        if clock["start"] is None:
            if done < 5:  # warm-up: the first batches allocate and pick kernels
                return
            ready.touch()
            while not go.exists():
                time.sleep(0.01)
            clock["start"] = time.perf_counter()
            return
        clock["batches"] += 1
        if now - clock["start"] >= seconds:
            raise _Done

    try:
        fit(model, trainer.data, recipe, on_batch=on_batch)
    except _Done:
        pass
    elapsed = time.perf_counter() - clock["start"]
    return {"images_per_s": clock["batches"] * batch / elapsed, "threads": torch.get_num_threads(), "batch": batch}


def run_group(study: str, procs: int, threads: int, seconds: float, data_dir: str | None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp, "go")
        children = []
        for i in range(procs):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            argv = [sys.executable, __file__, "--child", study, "--seconds", str(seconds)]
            argv += ["--ready", str(Path(tmp, f"ready{i}")), "--go", str(go)]
            if data_dir:
                argv += ["--data-dir", data_dir]
            children.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True))
        while not all(Path(tmp, f"ready{i}").exists() for i in range(procs)):
            if any(c.poll() is not None for c in children):
                raise SystemExit(f"{study}: a measuring process ended early")
            time.sleep(0.05)
        go.touch()
        return [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", nargs="+", default=list(STUDIES))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--data-dir")
    parser.add_argument("--child")
    parser.add_argument("--ready")
    parser.add_argument("--go")
    args = parser.parse_args()
    if args.child:
        result = measure(args.child, args.seconds, args.data_dir, Path(args.ready), Path(args.go))
        print(json.dumps(result), flush=True)
        return
    cores = os.cpu_count() or 1
    print(f"{cores} CPU threads; {args.seconds:g} s of training each; baseline configurations")
    one_worker, per_thread = f"1 x {cores} threads", f"{cores} x 1 thread"
    print(f"{'study':<16} {'batch':>5}  {one_worker:>15}  {per_thread:>14}  ratio")
    for study in args.studies:
        one = run_group(study, 1, cores, args.seconds, args.data_dir)
        many = run_group(study, cores, 1, args.seconds, args.data_dir)
        a, b = one[0]["images_per_s"], sum(r["images_per_s"] for r in many)
        print(f"{study:<16} {one[0]['batch']:>5}  {a:>11.0f} im/s  {b:>10.0f} im/s  {b / a:.2f}", flush=True)


if __name__ == "__main__":
    main()
