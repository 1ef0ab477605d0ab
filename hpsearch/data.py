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

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from hpsearch.errors import UsageError


class DataUnavailable(UsageError):
    """The dataset's files are not where they must be and could not be downloaded."""


@dataclass(frozen=True)
class RawSplit:
    """One official split as a reader returns it, the reader contract:

    ``images``: a ``torch.uint8`` tensor (N, C, H, W) of pixels 0..255, N >= 1, with as
    many channels C as the dataset's ``mean`` and ``std`` have values.
    ``labels``: a ``torch.int64`` tensor (N,), each label in 0 .. len(classes) - 1.
    ``classes``: the class names (``str``), by label.

    ``read`` checks every split a reader returns and ends in one line (UsageError) naming
    the first thing that breaks the contract."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset by name, for ``register``.

    ``read(root, split)`` returns the official split ``split`` ("train", "test", and "val"
    where ``official_val``) as a ``RawSplit``, from the data folder ``root`` (``--data-dir``);
    where the files are missing it raises ``DataUnavailable`` saying where they go.
    ``mean`` and ``std`` are per-channel statistics of the training pixels scaled to [0, 1]
    (pixel / 255), one value per channel: training standardises with them.
    ``image_shape`` (C, H, W), where every image has it, lets ``export`` write the ``.pt2``
    program. ``classes``, where known without reading the files, name the classes in a
    checkpoint (and allow ``--train-csv`` for 1x28x28 datasets of 10 classes)."""

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
    """Make ``info`` the dataset of its name. Raises ValueError naming what is wrong with
    ``mean``, ``std`` or ``image_shape`` (in a study file: its line, in one line)."""
    problem = _info_problem(info)
    if problem:
        raise ValueError(f"dataset {info.name!r}: {problem}")
    DATASETS[info.name] = info
    return info


def _info_problem(info: DatasetInfo) -> str | None:
    if not callable(info.read):
        return f"read is a {type(info.read).__name__}, not a function read(root, split) -> RawSplit"
    stats = (info.mean, info.std)
    channels = len(info.mean) if isinstance(info.mean, tuple | list) else 0
    if (
        not channels
        or not all(isinstance(s, tuple | list) and len(s) == channels for s in stats)
        or not all(isinstance(v, int | float) for s in stats for v in s)
    ):
        return f"mean {info.mean!r} and std {info.std!r} must be tuples of one number per channel, as many of each"
    if not all(0 <= m <= 1 for m in info.mean) or not all(0 < s <= 1 for s in info.std):
        return (
            f"mean {tuple(info.mean)} and std {tuple(info.std)} are not statistics of pixels on [0, 1] "
            "(mean in [0, 1], std in (0, 1]): compute them from the images divided by 255"
        )
    shape = info.image_shape
    if shape is not None and (len(shape) != 3 or shape[0] != channels):
        return f"image_shape {shape!r} is not (C, H, W) with the {channels} channel(s) of its mean and std"
    return None


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
    return _read(info, root, split)


def _read(info: DatasetInfo, root: Path, split: str) -> RawSplit:
    """``info.read(root, split)``, checked against the reader contract (``RawSplit``)."""
    raw = info.read(root, split)
    problem = _raw_problem(info, raw)
    if problem:
        reader = getattr(info.read, "__qualname__", repr(info.read))
        raise UsageError(
            f"the reader {reader} of dataset {info.name!r} breaks the contract for the {split!r} split: {problem}"
        )
    return raw


def _raw_problem(info: DatasetInfo, raw) -> str | None:
    """What is wrong with a reader's output ``raw``, the first thing found, with its fix; None
    when it keeps the contract."""
    if not isinstance(raw, RawSplit):
        return (
            f"it returned a {type(raw).__name__}, not an hpsearch.data.RawSplit: "
            "return RawSplit(images=..., labels=..., classes=[...])"
        )
    images, labels, classes = raw.images, raw.labels, raw.classes
    channels = len(info.mean)
    if not isinstance(images, torch.Tensor):
        return f"images is a {type(images).__name__}, not a torch.Tensor: use torch.from_numpy(images)"
    if images.dtype != torch.uint8:
        return f"images are {images.dtype}, not torch.uint8 pixels 0..255: convert them, e.g. images.to(torch.uint8)"
    if images.dim() == 3:
        return f"images have shape {tuple(images.shape)}, not (N, C, H, W): add the channel axis, images[:, None]"
    if images.dim() == 4 and images.shape[1] != channels and images.shape[3] == channels:
        return (
            f"images have shape {tuple(images.shape)}, channels last, not (N, C, H, W): use images.permute(0, 3, 1, 2)"
        )
    if images.dim() != 4 or images.shape[1] != channels:
        return (
            f"images have shape {tuple(images.shape)}, not (N, C, H, W) with the {channels} channel(s) of "
            "the dataset's mean and std"
        )
    if info.image_shape is not None and tuple(images.shape[1:]) != tuple(info.image_shape):
        return f"images are {tuple(images.shape[1:])}, but the dataset's image_shape is {tuple(info.image_shape)}"
    if len(images) == 0:
        return "the split holds no images"
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        what = type(labels).__name__
        if isinstance(labels, torch.Tensor):
            what = f"{labels.dtype} of shape {tuple(labels.shape)}"
        return f"labels are a {what}, not a torch.int64 tensor (N,): use torch.as_tensor(labels, dtype=torch.long)"
    if len(labels) != len(images):
        return f"{len(images)} images but {len(labels)} labels"
    if not isinstance(classes, list | tuple) or not classes or not all(isinstance(c, str) for c in classes):
        return f"classes is {str(classes)[:60]}, not a list of class names (str), one per label"
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= len(classes):
        return f"labels run from {low} to {high}, but {len(classes)} classes allow 0 to {len(classes) - 1}"
    return None


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

    A held-out validation split smaller than the number of classes (``--subset 3``: one
    image) is said in one line on stderr, with the subset that holds out one image per
    class, and not refused: ``--subset`` is for smoke runs, where a tiny split is what was
    asked for, but a validation score that can only be 0 or 1 should not pass unsaid.

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
            val = _read(info, root, "val")
            train_xy, val_xy = (images, labels), (val.images, val.labels)
            if len(labels) < 1:
                raise UsageError(f"--subset {subset} leaves no training examples; use at least 1")
        else:
            n_val = max(1, round(len(labels) * val_fraction))
            if len(labels) - n_val < 1:
                raise UsageError(f"--subset {subset} leaves no training examples; use at least 2")
            if n_val < len(raw.classes):
                print(
                    _small_validation(name, subset, n_val, len(raw.labels), val_fraction, raw.classes), file=sys.stderr
                )
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


def _small_validation(name: str, subset: int | None, n_val: int, available: int, fraction: float, classes) -> str:
    """The note for a held-out validation split smaller than the number of classes."""
    source = f"--subset {subset}" if subset is not None else f"the {available} training images of {name}"
    note = (
        f"note: {source} leave{'s' * (subset is not None)} {n_val} validation image{'s' * (n_val != 1)}, fewer than "
        f"the {len(classes)} classes: validation scores move in steps of 1/{n_val}"
    )
    # The smallest subset that holds out one image per class, where the training split has it.
    enough = next((n for n in range(available + 1) if round(n * fraction) >= len(classes)), None)
    return note + (f"; --subset {enough} or more holds out {len(classes)}" if enough else "")


_CSV_SHAPE, _CSV_CLASSES = (1, 28, 28), 10


def _training_source(info: DatasetInfo, root: Path, train_csv: Path | None) -> RawSplit:
    if train_csv is None:
        return _read(info, root, "train")
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
