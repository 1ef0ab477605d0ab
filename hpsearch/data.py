"""Datasets: read once with torchvision's readers, then resident on the training device.

A dataset is registered by name with a reader for its official splits (``register``; the
readers of the packaged datasets are ``hpsearch.readers``, a module each, so adding a
dataset is a new file there or in a study file). ``load`` turns the
training data into a train/validation pair of device tensors, once per process: the
official validation split where the dataset has one, else a fixed share held out of the
official training split. The official test split is read only by ``read(name, "test", ...)``,
which the search never calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from hpsearch.errors import UsageError


class DataUnavailable(UsageError):
    """The dataset's files are not where they must be and could not be downloaded."""


@dataclass(frozen=True)
class RawSplit:
    """One official split as read from disk: uint8 images (N, C, H, W) and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    read: Callable[[Path, str], RawSplit]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    official_val: bool = False  # the dataset has an official validation split ("val")
    image_shape: tuple[int, ...] | None = None  # (C, H, W) of every image, where fixed
    classes: tuple[str, ...] = ()  # known without reading the files (e.g. for a CSV source)


@dataclass(frozen=True)
class Split:
    """Normalised float images (N, C, H, W) and int64 labels, on the training device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class SearchData:
    """What a trial trains on: a train split and a held-out validation split.

    ``mean``/``std`` are what the [0, 1] pixels were standardised with: the dataset's
    per-channel statistics, or 0 / 1 when the images are only scaled to [0, 1]."""

    train: Split
    val: Split
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASETS: dict[str, DatasetInfo] = {}

SPLITS = ("train", "val", "test")


def register(info: DatasetInfo) -> DatasetInfo:
    DATASETS[info.name] = info
    return info


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}: use one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def read(name: str, split: str, root: Path) -> RawSplit:
    """Read an official split of dataset ``name`` from ``root``: "train", "test", or "val"
    where the dataset has an official validation split."""
    info = _info(name)
    if split not in SPLITS or (split == "val" and not info.official_val):
        usable = [s for s in SPLITS if s != "val" or info.official_val]
        raise UsageError(f"{name} has no official {split!r} split: use {' or '.join(usable)}")
    return info.read(root, split)


# The process-wide cache of ``load``, by all of its arguments: every trial of a worker trains
# on the same device tensors. ``LOADED.clear()`` frees them (the next ``load`` reads again).
LOADED: dict[tuple, SearchData] = {}


def load(
    name: str,
    device: torch.device,
    root: Path,
    *,
    subset: int | None = None,
    val_fraction: float = 1 / 6,
    split_seed: int = 0,
    train_csv: Path | None = None,
    standardize: bool = True,
) -> SearchData:
    """The search data for dataset ``name``.

    Training source: the official training split, or the CSV ``train_csv`` (``read_csv``
    form; only for 1x28x28 grayscale datasets with 10 classes). Of it, the first ``subset``
    examples are used (all when None).
    Validation: the official validation split where the dataset has one (``val_fraction``
    is then ignored); otherwise ``val_fraction`` of the training examples, held out by a
    permutation fixed by ``split_seed`` (60,000 -> 50,000 train + 10,000 validation).
    Pixels are scaled to [0, 1] and, when ``standardize``, standardised per channel with
    the dataset's mean/std; ``SearchData.mean``/``std`` say which.

    Cached per process in ``LOADED``: every trial of a worker shares the same device tensors.
    """
    csv_key = str(Path(train_csv).resolve()) if train_csv is not None else None
    key = (name, str(device), str(root.resolve()), subset, val_fraction, split_seed, csv_key, standardize)
    if key not in LOADED:
        info = _info(name)
        raw = _training_source(info, root, train_csv)
        images, labels = raw.images, raw.labels
        if subset is not None:
            images, labels = images[:subset], labels[:subset]
        if info.official_val:
            # The dataset's own validation split keeps results comparable with published
            # ones; --subset shrinks only the training side.
            val = info.read(root, "val")
            train_xy, val_xy = (images, labels), (val.images, val.labels)
            if len(labels) < 1:
                raise UsageError(f"--subset {subset} leaves no training examples; use at least 1")
        else:
            n_val = max(1, round(len(labels) * val_fraction))
            if len(labels) - n_val < 1:
                raise UsageError(f"--subset {subset} leaves no training examples; use at least 2")
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
            val_idx, train_idx = order[:n_val], order[n_val:]
            train_xy, val_xy = (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])
        mean, std = normalization(name, standardize)
        LOADED[key] = SearchData(
            train=to_split(*train_xy, mean, std, device),
            val=to_split(*val_xy, mean, std, device),
            classes=raw.classes,
            mean=mean,
            std=std,
        )
    return LOADED[key]


_CSV_SHAPE, _CSV_CLASSES = (1, 28, 28), 10


def _training_source(info: DatasetInfo, root: Path, train_csv: Path | None) -> RawSplit:
    if train_csv is None:
        return info.read(root, "train")
    if info.image_shape != _CSV_SHAPE or len(info.classes) != _CSV_CLASSES:
        usable = ", ".join(
            n for n, i in DATASETS.items() if i.image_shape == _CSV_SHAPE and len(i.classes) == _CSV_CLASSES
        )
        raise UsageError(
            f"a training CSV holds 1x28x28 grayscale images of 10 classes, which {info.name} does not have: "
            f"use it with {usable}, or drop the CSV"
        )
    from hpsearch.readers.fashion_csv import read_csv

    return read_csv(Path(train_csv), info.image_shape, len(info.classes), list(info.classes))


def normalization(name: str, standardize: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel (mean, std) applied to [0, 1] pixels of dataset ``name``: its own
    statistics when ``standardize``, else 0 and 1 (pixels stay in [0, 1])."""
    info = _info(name)
    if standardize:
        return info.mean, info.std
    return (0.0,) * len(info.mean), (1.0,) * len(info.mean)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 standardised per channel, on the images' device."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return images.float().div_(255).sub_(m).div_(s)


def to_split(images: torch.Tensor, labels: torch.Tensor, mean, std, device) -> Split:
    """uint8 images and their labels as a normalised ``Split`` on ``device``, channels-last."""
    # The uint8 tensor crosses to the device (4x fewer bytes); normalisation happens there.
    x = normalize(images.contiguous().to(device), mean, std)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)  # matches the model's layout (train.fit)
    return Split(x=x, y=labels.to(device=device, dtype=torch.long))


from hpsearch import readers  # noqa: E402,F401 - registers the packaged datasets, which import this module
