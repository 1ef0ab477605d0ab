"""Optuna's GrpcStorageProxy in front of PostgreSQL, against workers connected directly.

W worker processes run plain Optuna (no hpsearch) on one study to N trials: random
sampler, Hyperband pruner, 20 epochs reported per trial and nothing trained, the same
storage traffic as ``tests/bookkeeping_study.py`` minus hpsearch's own notes. ``direct``
workers open ``RDBStorage`` with hpsearch's pool (2 connections, no overflow) and a
heartbeat; ``proxy`` workers open ``GrpcStorageProxy`` to one ``run_grpc_proxy_server``
process in front of the same database (Optuna 5.0 proxies have no heartbeat). Prints,
per mode and W: trials finished, sustained trials/s (first trial start to last trial
end), peak server connections, failed workers and their first error line.

    python benchmarks/grpc_proxy.py --storage "$PG" --workers 4,16,32,64 --trials 640

Needs grpcio and protobuf (pip install grpcio protobuf) and a PostgreSQL server of its own,
given by URL (``--storage postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB``): each mode and
W gets a fresh database there (``benchmarks/postgres_url.py``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import socket
import sys
import threading
import time
import warnings

import optuna
from postgres_url import Server  # beside this file

EPOCHS = 20
POOL = {"pool_size": 2, "max_overflow": 0, "pool_pre_ping": True}  # hpsearch.storage.POOL_SIZE


def objective(trial: optuna.Trial) -> float:
    x, y = trial.suggest_float("x", -3, 3), trial.suggest_float("y", -3, 3)
    width = trial.suggest_int("width", 8, 512, log=True)
    score = 0.0
    for epoch in range(EPOCHS):
        score = (1 - 1 / (epoch + 2)) / (1 + x * x + y * y) + width * 1e-5
        trial.report(score, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return score


def worker(mode: str, url: str, port: int, trials: int, errors) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    try:
        if mode == "proxy":
            storage = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)
        else:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=POOL, heartbeat_interval=60, grace_period=180)
        study = optuna.load_study(
            study_name="load",
            storage=storage,
            sampler=optuna.samplers.RandomSampler(),
            pruner=optuna.pruners.HyperbandPruner(max_resource=EPOCHS),
        )
        study.optimize(objective, n_trials=trials)
    except Exception as exc:  # noqa: BLE001 - the figure is how many workers fail, and why
        errors.put(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200])
        raise SystemExit(1) from None


def proxy_server(url: str, port: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    # get_storage wraps RDBStorage in Optuna's trial cache, as the proxy's documentation asks.
    optuna.storages.run_grpc_proxy_server(optuna.storages.get_storage(url), host="127.0.0.1", port=port)


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the proxy did not listen on {port}")


def measure(pg: Server, mode: str, workers: int, trials: int) -> str:
    ctx = multiprocessing.get_context("spawn")  # no engine or gRPC channel crosses a fork
    url = pg.new_database(f"{mode}{workers}")
    optuna.create_study(study_name="load", storage=url, direction="maximize")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = None
    if mode == "proxy":
        server = ctx.Process(target=proxy_server, args=(url, port), daemon=True)
        server.start()
        wait_for_port(port)
    errors = ctx.Queue()
    share = [trials // workers + (i < trials % workers) for i in range(workers)]
    procs = [ctx.Process(target=worker, args=(mode, url, port, n, errors)) for n in share]
    peak, full, done = 0, False, threading.Event()

    def sample() -> None:
        nonlocal peak, full
        while not done.is_set():
            try:
                peak = max(peak, pg.connections())
            except Exception:  # noqa: BLE001 - a full server refuses this count too
                full = True
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    done.set()
    sampler.join()
    if server is not None:
        server.terminate()
        server.join()
    failed = sum(p.exitcode != 0 for p in procs)
    reasons = sorted({errors.get() for _ in range(failed) if not errors.empty()})
    study = optuna.load_study(study_name="load", storage=url)
    ended = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.datetime_complete]
    span = (max(t.datetime_complete for t in ended) - min(t.datetime_start for t in ended)).total_seconds()
    rate = len(ended) / span if span else 0.0
    line = (
        f"{mode:6} {workers:3} workers: {len(ended)}/{trials} trials, {rate:5.1f} trials/s sustained, "
        f"peak {peak} connections{' (server full)' if full else ''}, {failed} workers failed"
    )
    return line + (f" ({'; '.join(reasons)})" if reasons else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="4,16,32,64", help="comma-separated worker counts")
    parser.add_argument("--trials", type=int, default=640)
    parser.add_argument("--modes", default="direct,proxy")
    parser.add_argument("--storage", required=True, metavar="URL", help="a postgresql URL of a server of its own")
    args = parser.parse_args()
    with Server(args.storage) as pg:
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs; optuna {optuna.__version__}; "
            f"PostgreSQL max_connections={pg.max_connections()}; N = {args.trials}",
            flush=True,
        )
        for workers in (int(w) for w in args.workers.split(",")):
            for mode in args.modes.split(","):
                print(measure(pg, mode, workers, args.trials), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
