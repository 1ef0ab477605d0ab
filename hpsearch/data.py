"""Datasets: read once with torchvision's readers, then resident on the training device.

A dataset is registered by name with a reader for its official splits. ``load`` turns the
official training split into a train/validation pair of device tensors, once per process;
the official test split is read only by ``read(name, "test", ...)``, which the search never
calls.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


@dataclass(frozen=True)
class Split:
    """Normalised float images (N, C, H, W) and int64 labels, on the training device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class SearchData:
    """What a trial trains on: a train split and a held-out validation split."""

    train: Split
    val: Split
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASETS: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    DATASETS[info.name] = info
    return info


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where the user keeps datasets: ``--data-dir``, else ``$HPSEARCH_DATA_DIR``, else ``./data``."""
    return Path(explicit or os.environ.get("HPSEARCH_DATA_DIR") or "data").expanduser()


def cache_dir() -> Path:
    """hpsearch's own writable cache (extracted archives, downloads): ``$HPSEARCH_CACHE_DIR``
    or ``~/.cache/hpsearch``. The data directory itself may be read-only."""
    root = os.environ.get("HPSEARCH_CACHE_DIR") or Path.home() / ".cache" / "hpsearch"
    return Path(root).expanduser()


def read(name: str, split: str, root: Path) -> RawSplit:
    """Read an official split ("train" or "test") of dataset ``name`` from ``root``."""
    return DATASETS[name].read(root, split)


_LOADED: dict[tuple, SearchData] = {}


def load(
    name: str,
    device: torch.device,
    root: Path,
    *,
    subset: int | None = None,
    val_fraction: float = 1 / 6,
    split_seed: int = 0,
) -> SearchData:
    """The search data for dataset ``name``: the first ``subset`` examples of the official
    training split (all when None), of which ``val_fraction`` is held out for validation by
    a permutation fixed by ``split_seed`` (60,000 -> 50,000 train + 10,000 validation).

    Cached per process: every trial of a worker shares the same device tensors.
    """
    key = (name, str(device), str(root.resolve()), subset, val_fraction, split_seed)
    if key not in _LOADED:
        info = DATASETS[name]
        raw = info.read(root, "train")
        images, labels = raw.images, raw.labels
        if subset is not None:
            images, labels = images[:subset], labels[:subset]
        n_val = max(1, round(len(labels) * val_fraction))
        if len(labels) - n_val < 1:
            raise UsageError(f"--subset {subset} leaves no training examples; use at least 2")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
        val_idx, train_idx = order[:n_val], order[n_val:]
        _LOADED[key] = SearchData(
            train=_to_device(images[train_idx], labels[train_idx], info, device),
            val=_to_device(images[val_idx], labels[val_idx], info, device),
            classes=raw.classes,
            mean=info.mean,
            std=info.std,
        )
    return _LOADED[key]


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 standardised per channel, on the images' device."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return images.float().div_(255).sub_(m).div_(s)


def _to_device(images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, device) -> Split:
    # The uint8 tensor crosses to the device (4x fewer bytes); normalisation happens there.
    x = normalize(images.contiguous().to(device), info.mean, info.std)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)  # matches the model's layout (train.fit)
    return Split(x=x, y=labels.to(device=device, dtype=torch.long))


# --- idx-format datasets (MNIST, Fashion-MNIST) ----------------------------------------


def _stage_idx_files(dataset_cls, root: Path) -> Path | None:
    """A root from which torchvision's reader finds the uncompressed idx files.

    ``root/<Name>/raw`` may hold the official ``.gz`` files (as shipped) or the extracted
    ones. Extracted files are read in place; ``.gz`` files are extracted once into the
    cache, keyed by their path, size and mtime, because ``root`` may be read-only.
    Returns None when the files are not there.
    """
    raw = root / dataset_cls.__name__ / "raw"
    names = [Path(url).name for url, _ in dataset_cls.resources]  # "...-idx3-ubyte.gz"
    plain = [n.removesuffix(".gz") for n in names]
    if all((raw / p).is_file() for p in plain):
        return root
    if not all((raw / n).is_file() for n in names):
        return None
    stamp = "|".join(f"{(raw / n).resolve()}:{(raw / n).stat().st_size}:{(raw / n).stat().st_mtime_ns}" for n in names)
    staged_root = cache_dir() / "extracted" / hashlib.sha1(stamp.encode()).hexdigest()[:16]
    staged_raw = staged_root / dataset_cls.__name__ / "raw"
    staged_raw.mkdir(parents=True, exist_ok=True)
    for n, p in zip(names, plain):
        if not (staged_raw / p).is_file():
            tmp = staged_raw / f".{p}.{os.getpid()}.tmp"
            with gzip.open(raw / n, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(staged_raw / p)  # atomic: a concurrent worker never sees half a file
    return staged_root


def _idx_reader(dataset_cls, pretty: str):
    def read_split(root: Path, split: str) -> RawSplit:
        staged = _stage_idx_files(dataset_cls, root)
        if staged is not None:
            ds = dataset_cls(str(staged), train=split == "train", download=False)
        else:
            ds = _try_download(dataset_cls, pretty, root, split)
        return RawSplit(images=ds.data.unsqueeze(1), labels=ds.targets.long(), classes=list(ds.classes))

    return read_split


def _try_download(dataset_cls, pretty: str, root: Path, split: str):
    target = cache_dir() / "downloads"
    names = ", ".join(Path(url).name for url, _ in dataset_cls.resources)
    try:
        target.mkdir(parents=True, exist_ok=True)
        # torchvision narrates each mirror it tries; the user gets our one line instead.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return dataset_cls(str(target), train=split == "train", download=True)
    except Exception:
        raise DataUnavailable(
            f"{pretty} not found and the download failed: put {names} in "
            f"{root / dataset_cls.__name__ / 'raw'} (or point --data-dir / HPSEARCH_DATA_DIR "
            f"at a folder that holds {dataset_cls.__name__}/raw/)"
        ) from None


def _register_torchvision_idx() -> None:
    from torchvision import datasets as tvd

    register(DatasetInfo("fashion_mnist", _idx_reader(tvd.FashionMNIST, "Fashion-MNIST"), (0.2860,), (0.3530,)))
    register(DatasetInfo("mnist", _idx_reader(tvd.MNIST, "MNIST"), (0.1307,), (0.3081,)))


_register_torchvision_idx()
