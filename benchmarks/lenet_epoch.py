"""One epoch of report 004's base LeNet-5 on Fashion-MNIST, two ways, in one process:

1. the reports' way: torchvision FashionMNIST + ToTensor + DataLoader(batch 100, shuffle),
   each batch copied to the device;
2. hpsearch's loop: the dataset resident on the device, batches sliced from an on-device
   permutation, one host sync per epoch (``hpsearch.train.fit``, validation included), in fp32
   and at the engine's default precision (``--precision auto``: bf16 autocast where the
   device computes bf16 natively, else fp32 again).

Same model (tanh, avg pool, 6/16/120), same optimizer (Adam 1e-3), same batch size.
Prints images/s for each (the median of --repeat epochs each) and the engine's ratio to the reports' loop.

    python benchmarks/lenet_epoch.py --data-dir ../shared/data [--device cpu|cuda] [--batch-size 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms

from hpsearch import data as datasets
from hpsearch import models, precision
from hpsearch.locations import data_dir
from hpsearch.readers import idx
from hpsearch.runner import resolve_device
from hpsearch.train import Recipe, fit

BASE = {"channels": [6, 16, 120], "activation": "tanh", "pooling": "avg", "batch_norm": False, "dropout": 0.0}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reports_way(root, device, batch_size: int) -> tuple[int, float]:
    """The loop of the course reports. Returns (images trained, seconds)."""
    staged = idx.stage_idx_files(torchvision.datasets.FashionMNIST, root)
    train = torchvision.datasets.FashionMNIST(str(staged), train=True, transform=transforms.ToTensor())
    loader = DataLoader(train, batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = models.create("lenet5", **BASE).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # Warm-up outside the timing: one batch (allocator, cuDNN heuristics).
    imgs, labels = next(iter(loader))
    F.cross_entropy(model(imgs.to(device)), labels.to(device)).backward()
    sync(device)
    started = time.perf_counter()
    seen = 0
    for imgs, labels in loader:
        imgs, labels = imgs.to(device), labels.to(device)
        loss = F.cross_entropy(model(imgs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
    sync(device)
    return seen, time.perf_counter() - started


def engine_way(root, device, batch_size: int, chosen: str = "fp32") -> tuple[int, float]:
    """hpsearch's loop, validation pass (10,000 images) included in the time.
    Returns (images trained, seconds)."""
    data = datasets.load("fashion_mnist", device, root)
    torch.manual_seed(0)
    model = models.create("lenet5", **BASE).to(device)
    warm = Recipe(epochs=1, batch_size=batch_size, lr=1e-3, precision=chosen)
    fit(
        models.create("lenet5", **BASE).to(device),
        datasets.SearchData(
            train=datasets.Split(data.train.x[: batch_size * 4], data.train.y[: batch_size * 4]),
            val=data.val,
            classes=data.classes,
            mean=data.mean,
            std=data.std,
        ),
        warm,
    )
    sync(device)
    started = time.perf_counter()
    fit(model, data, warm)
    sync(device)
    steps = len(data.train) // batch_size
    return steps * batch_size, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding FashionMNIST/raw (default: $HPSEARCH_DATA_DIR, else ./data)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="epochs timed per way; the median is printed")
    args = parser.parse_args()
    root = data_dir(args.data_dir)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"machine: {name}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads; batch {args.batch_size}")

    default = precision.resolve("auto", device)
    ways = {
        "reports' DataLoader loop": reports_way,
        "hpsearch engine, fp32": engine_way,
        f"hpsearch engine, default ({default})": lambda *a: engine_way(*a, chosen=default),
    }
    rates = {}
    for label, way in ways.items():
        runs = [way(root, device, args.batch_size) for _ in range(args.repeat)]
        rates[label] = statistics.median(n / t for n, t in runs)
        seconds = ", ".join(f"{t:.2f}" for _, t in runs)
        print(
            f"{label:32s} {rates[label]:12,.0f} images/s  "
            f"(median of {args.repeat} epochs of {runs[0][0]} images: {seconds} s)"
        )
    ref, fp32, at_default = rates.values()
    print(f"speed-up over the reports' loop: fp32 {fp32 / ref:.2f}x, default ({default}) {at_default / ref:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
