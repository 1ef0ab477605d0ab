"""fp32 against bf16 autocast, per study: one epoch of the study's baseline (trial 0: the
report's configuration, its model, batch size, augmentation and pre-training) through the
engine's own loop (``hpsearch.train.fit``, validation included), on the first --subset
training images of the real dataset. Prints seconds per epoch, images/s and the bf16/fp32
ratio, the median of --repeat epochs after one warm-up epoch each.

    python benchmarks/precision_speed.py --data-dir ../shared/data [--study fashion-lenet ...] [--subset 6000]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import optuna
import torch

from hpsearch import data as datasets
from hpsearch import models, precision, registry
from hpsearch.locations import data_dir
from hpsearch.runner import resolve_device
from hpsearch.train import fit


def epoch_seconds(spec, data, device, chosen: str, repeat: int) -> list[float]:
    params = spec.space(optuna.trial.FixedTrial(spec.baseline))
    name, kwargs = spec.model(params)
    times = []
    for run in range(repeat + 1):  # the first epoch warms up allocators and oneDNN's kernel choice
        torch.manual_seed(run)
        model = models.create(name, **kwargs).to(device)
        recipe = spec.recipe(params, epochs=1, seed=run, precision=chosen)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fit(model, data, recipe)  # fit's one host sync per epoch ends the timing
        times.append(time.perf_counter() - started)
    return times[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="dataset folder (default: $HPSEARCH_DATA_DIR, else ./data)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--study", action="append", help="a study to measure (default: every torch study)")
    parser.add_argument("--subset", type=int, default=6000, help="training images per epoch (default: 6000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs per precision (default: 3)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(
        f"machine: {name}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
        f"native bf16: {precision.native_bf16(device)}"
    )
    specs = registry.all_specs()
    for study in args.study or [n for n, s in specs.items() if s.trainer is None]:
        spec = specs[study]
        data = datasets.load(
            spec.dataset,
            device,
            data_dir(args.data_dir),
            subset=args.subset,
            val_fraction=spec.val_fraction,
            standardize=spec.standardize,
        )
        medians = {}
        for chosen in ("fp32", "bf16"):
            times = epoch_seconds(spec, data, device, chosen, args.repeat)
            medians[chosen] = statistics.median(times)
            print(
                f"{study:15s} {chosen}: {medians[chosen]:7.2f} s/epoch, "
                f"{len(data.train) / medians[chosen]:9,.0f} train images/s "
                f"({', '.join(f'{t:.2f}' for t in times)} s)",
                flush=True,
            )
        print(f"{study:15s} bf16 speed-up: {medians['fp32'] / medians['bf16']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
