"""What ``benchmarks/gpu_check.py`` asks of torch, hpsearch and Optuna, in a child process
(gpu_check itself imports only the standard library). Its last line of output is the answer:

    python benchmarks/gpu_probe.py machine --device cuda   # GPU, driver, CPU, memory, versions
    python benchmarks/gpu_probe.py data --device cuda      # read Fashion-MNIST once, load it on the device
    python benchmarks/gpu_probe.py study sqlite:///jobs-1.db    # JSON: trials by state, epochs, best value

``machine`` exits 1 (its last line says why) when the check cannot run here: a package
missing, or no CUDA GPU for ``--device cuda``. ``data`` reads ``$HPSEARCH_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _proc_field(path: str, key: str) -> str | None:
    try:
        return next(ln.split(":", 1)[1].strip() for ln in Path(path).read_text().splitlines() if ln.startswith(key))
    except (OSError, StopIteration):
        return None


def _nvidia_smi() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        rows = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    parts = [[p.strip() for p in row.split(",")] for row in rows]
    return [f"{p[0]} ({p[1]}, driver {p[2]})" for p in parts if len(p) == 3]


def machine(device: str) -> int:
    import torch

    gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    shown = _nvidia_smi() or [
        f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs" for p in gpus
    ]
    versions = {}
    for name in ("torchvision", "optuna", "optuna_dashboard", "sqlalchemy", "numpy"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except Exception as exc:  # the line says what is missing; the check below decides
            versions[name] = f"missing ({type(exc).__name__})"
    cpu = _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()
    mem = _proc_field("/proc/meminfo", "MemTotal")
    mem_gib = f"{int(mem.split()[0]) / 2**20:.0f}" if mem else "?"
    print(
        f"{'; '.join(shown) or 'no GPU visible'}; CPU {cpu}, {os.cpu_count()} cores, {mem_gib} GiB; "
        f"Python {platform.python_version()}, "
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), torchvision {versions['torchvision']}, "
        f"optuna {versions['optuna']}, optuna-dashboard {versions['optuna_dashboard']}, "
        f"SQLAlchemy {versions['sqlalchemy']}, numpy {versions['numpy']}"
    )
    missing = [k for k in ("optuna", "optuna_dashboard", "sqlalchemy") if versions[k].startswith("missing")]
    if missing:
        print(f"{', '.join(missing)} not importable; the install step did not provide them")
        return 1
    if device.startswith("cuda") and not gpus:
        print(f"--device {device} but torch sees no CUDA GPU here; use --device cpu for a dry run")
        return 1
    return 0


def data(device_name: str) -> int:
    from hpsearch import data as datasets
    from hpsearch.locations import data_dir
    from hpsearch.runner import resolve_device

    started = time.perf_counter()
    train, test = (datasets.read("fashion_mnist", split, data_dir()) for split in ("train", "test"))
    read = time.perf_counter() - started
    device = resolve_device(device_name)
    started = time.perf_counter()
    loaded = datasets.load("fashion_mnist", device, data_dir())
    float(loaded.train.x.sum())  # waits for the device
    print(
        f"{len(train.labels)} train + {len(test.labels)} test images read in {read:.1f} s; "
        f"{len(loaded.train)} train / {len(loaded.val)} validation resident on {device} in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0


def study(url: str) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "epochs": 0, "best": None}
    try:
        found = optuna.load_study(study_name=None, storage=url).get_trials(deepcopy=False)
    except ValueError:  # no study there: the run stopped before it made one
        found = []
    for trial in found:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        counts["epochs"] += len(trial.intermediate_values)
    values = [t.value for t in found if t.state == optuna.trial.TrialState.COMPLETE]
    counts["best"] = max(values) if values else None
    print(json.dumps(counts))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("machine", "data", "study"))
    parser.add_argument("storage", nargs="?", help="study: its storage URL")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.what == "study":
        return study(args.storage)
    return machine(args.device) if args.what == "machine" else data(args.device)


if __name__ == "__main__":
    sys.exit(main())
