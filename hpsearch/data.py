"""Datasets: read once with torchvision's readers, then resident on the training device.

A dataset is registered by name with a reader for its official splits. ``load`` turns the
training data into a train/validation pair of device tensors, once per process: the
official validation split where the dataset has one, else a fixed share held out of the
official training split. The official test split is read only by ``read(name, "test", ...)``,
which the search never calls.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hpsearch.atomic import replacing
from hpsearch.errors import UsageError, first_line
from hpsearch.locations import cache_dir


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


_LOADED: dict[tuple, SearchData] = {}


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

    Cached per process: every trial of a worker shares the same device tensors.
    """
    csv_key = str(Path(train_csv).resolve()) if train_csv is not None else None
    key = (name, str(device), str(root.resolve()), subset, val_fraction, split_seed, csv_key, standardize)
    if key not in _LOADED:
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
        _LOADED[key] = SearchData(
            train=_to_device(*train_xy, mean, std, device),
            val=_to_device(*val_xy, mean, std, device),
            classes=raw.classes,
            mean=mean,
            std=std,
        )
    return _LOADED[key]


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


def _to_device(images: torch.Tensor, labels: torch.Tensor, mean, std, device) -> Split:
    # The uint8 tensor crosses to the device (4x fewer bytes); normalisation happens there.
    x = normalize(images.contiguous().to(device), mean, std)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)  # matches the model's layout (train.fit)
    return Split(x=x, y=labels.to(device=device, dtype=torch.long))


# --- Fashion-MNIST CSV form ----------------------------------------------------------------

_INT_CELL = re.compile(r"[ \t\r]*[+-]?[0-9]+[ \t\r]*\Z")  # what numpy's parser takes as an integer


def read_csv(
    path: Path, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, classes: list[str] | None = None
) -> RawSplit:
    """Images from a CSV in the Fashion-MNIST CSV form: each row is the label (0..num_classes-1)
    then prod(image_shape) pixel values (0..255), optionally under a header row (a first row
    whose first cell is not an integer, e.g. "label,pixel1,...").

    Bad input raises UsageError naming the file and the first bad 1-based line. Blank lines
    are skipped; ``classes`` defaults to "0".."num_classes-1".
    """
    n_cols = 1 + int(np.prod(image_shape))
    form = f"each row must be a label 0..{num_classes - 1} and then {n_cols - 1} pixel values 0..255"
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first cell.
        text = Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UsageError(f"{path}: no such file: pass the path of a CSV where {form}") from None
    first, _, rest = text.partition("\n")
    header = bool(first.strip()) and not _INT_CELL.match(first.split(",", 1)[0])
    body, first_line = (rest, 2) if header else (text, 1)
    if not body.strip():
        raise UsageError(f"{path} holds no data rows: {form}")
    try:
        # Fast path: numpy's C parser, ~60,000 rows a second or more. It rejects cells
        # that are not 0..255, rows of unequal length, and text.
        rows = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.uint8, comments=None, ndmin=2)
        ok = rows.shape[1] == n_cols and bool((rows[:, 0] < num_classes).all())
    except ValueError:
        ok = False
    if not ok:
        # numpy's messages neither count lines the way an editor does nor say what to fix.
        rows = _csv_rows_line_by_line(path, body.splitlines(), first_line, n_cols, num_classes, form)
    images = torch.from_numpy(rows[:, 1:].astype(np.uint8)).reshape(-1, *image_shape)
    labels = torch.from_numpy(rows[:, 0].astype(np.int64))
    return RawSplit(images=images, labels=labels, classes=classes or [str(c) for c in range(num_classes)])


def _csv_rows_line_by_line(path, lines, first_line: int, n_cols: int, num_classes: int, form: str) -> np.ndarray:
    """The careful parse: raises UsageError at the first bad line, else returns the rows."""
    rows = []
    for lineno, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        cells = line.split(",")
        if len(cells) != n_cols:
            raise UsageError(
                f"{where} has {len(cells)} values, expected {n_cols} (label + {n_cols - 1} pixels): {form}"
            )
        try:
            values = np.fromstring(line, dtype=np.int64, sep=",")
        except ValueError:
            values = None
        if values is None or len(values) != n_cols:
            # _INT_CELL accepts what numpy does, so some cell fails it; 1 only guards the lookup.
            column = next((c for c, v in enumerate(cells, 1) if not _INT_CELL.match(v)), 1)
            raise UsageError(f"{where}, column {column}: {cells[column - 1][:20]!r} is not a whole number: {form}")
        if not 0 <= values[0] < num_classes:
            raise UsageError(f"{where}: label {values[0]} is outside 0..{num_classes - 1}: {form}")
        bad = np.flatnonzero((values[1:] < 0) | (values[1:] > 255))
        if len(bad):
            column = int(bad[0]) + 2
            raise UsageError(f"{where}, column {column}: pixel value {values[column - 1]} is outside 0..255: {form}")
        rows.append(values)
    return np.stack(rows)


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
    for n, p in zip(names, plain, strict=True):
        if not (staged_raw / p).is_file():
            with replacing(staged_raw / p) as tmp, gzip.open(raw / n, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
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

    for name, cls, pretty, mean, std in (
        ("fashion_mnist", tvd.FashionMNIST, "Fashion-MNIST", 0.2860, 0.3530),
        ("mnist", tvd.MNIST, "MNIST", 0.1307, 0.3081),
    ):
        reader = _idx_reader(cls, pretty)
        register(DatasetInfo(name, reader, (mean,), (std,), image_shape=(1, 28, 28), classes=tuple(cls.classes)))


_register_torchvision_idx()


# --- decoded-image datasets (CIFAR-10 as an image folder, Oxford Flowers-102) ------------


def _decode_rgb(path) -> torch.Tensor:
    """One image file -> uint8 (3, H, W)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError) as e:
        if not Path(path).is_file():
            raise DataUnavailable(f"{path} is missing: put the image file back (or the whole folder)") from None
        reason = first_line(e)
        raise UsageError(f"cannot decode {path} ({reason}): replace it with a valid JPEG or PNG") from None


def _cached_decode(key: str, decode: Callable[[], dict]) -> dict:
    """``decode()`` (a dict of tensors and class names), computed once and kept as a .pt file
    under ``cache_dir()/decoded``: decoding thousands of image files takes seconds to minutes,
    reading the .pt back well under one."""
    path = cache_dir() / "decoded" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        with contextlib.suppress(Exception):  # unreadable (e.g. another torch's format): decode again
            return torch.load(path, weights_only=True)
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates torchvision.io's decoders (for TorchCodec, which we do not
        # depend on) with one warning per image; they still work, and PIL would be ~2x slower.
        warnings.filterwarnings(
            "ignore", "The image decoding and encoding capabilities of TorchVision", DeprecationWarning
        )
        value = decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        torch.save(value, tmp)
    return value


def _stack_same_size(images: list[torch.Tensor], paths: list) -> torch.Tensor:
    for image, path in zip(images, paths, strict=True):
        if image.shape != images[0].shape:
            raise UsageError(
                f"{path} is {image.shape[2]}x{image.shape[1]} pixels but {paths[0]} is "
                f"{images[0].shape[2]}x{images[0].shape[1]}: every image of the folder must have the same size"
            )
    return torch.stack(images)


def read_image_folder(folder: Path) -> RawSplit:
    """Every image under ``folder/<class>/`` in torchvision's ImageFolder order (classes sorted
    by name, which is the official order for CIFAR-10's class names; files sorted within a
    class), decoded as RGB into one uint8 tensor. All images must have the same size.

    Decoded once and cached, keyed by the folder's path, file count and newest file mtime:
    adding, removing or replacing an image decodes again.
    """
    from torchvision.datasets import ImageFolder

    try:
        listing = ImageFolder(str(folder))  # used only for its (path, label) list and classes
    except FileNotFoundError as e:
        raise DataUnavailable(f"{folder}: {e}: put the images in {folder}/<class>/") from None
    paths = [p for p, _ in listing.samples]
    newest = max(os.stat(p).st_mtime_ns for p in paths)

    def decode() -> dict:
        images = _stack_same_size([_decode_rgb(p) for p in paths], paths)
        return {"images": images, "labels": torch.tensor(listing.targets, dtype=torch.long), "classes": listing.classes}

    d = _cached_decode(f"image-folder|{Path(folder).resolve()}|{len(paths)}|{newest}", decode)
    return RawSplit(images=d["images"], labels=d["labels"], classes=list(d["classes"]))


def _read_cifar10(root: Path, split: str) -> RawSplit:
    from torchvision.datasets import CIFAR10

    pickles, folder = root / CIFAR10.base_folder, root / "cifar10-jpeg"
    if pickles.is_dir():
        try:
            ds = CIFAR10(str(root), train=split == "train", download=False)  # checks the official md5s
        except RuntimeError:
            raise DataUnavailable(
                f"{pickles} is incomplete or fails torchvision's md5 check: put the official python pickles "
                "there (data_batch_1..5, test_batch, batches.meta from cifar-10-python.tar.gz)"
            ) from None
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        return RawSplit(images=images, labels=torch.tensor(ds.targets, dtype=torch.long), classes=list(ds.classes))
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        # An image folder: the lossy JPEG copy of CIFAR-10, or the user's own 32x32 images.
        raw = read_image_folder(folder / split)
        if tuple(raw.images.shape[1:]) != (3, 32, 32):
            h, w = raw.images.shape[2:]
            raise UsageError(f"{folder / split} holds {w}x{h} images; CIFAR-10's are 32x32: resize them to 32x32")
        return raw
    raise DataUnavailable(
        f"CIFAR-10 not found: put the official python pickles in {pickles}/ or an image folder in "
        f"{folder}/{{train,test}}/<class>/ (or point --data-dir / HPSEARCH_DATA_DIR at a folder that holds either)"
    )


FLOWERS_SIZE = (100, 100)  # every image resized to 3x100x100


def _read_flowers102(root: Path, split: str) -> RawSplit:
    from torchvision.datasets import Flowers102

    # v2's resize works on uint8 directly: ~0.3 ms an image, v1's float path up to 40x slower.
    from torchvision.transforms.v2.functional import resize

    base = root / "flowers-102"
    mats = [base / "imagelabels.mat", base / "setid.mat"]
    if not (base / "jpg").is_dir() or not all(m.is_file() for m in mats):
        raise DataUnavailable(
            f"Oxford Flowers-102 not found: put the official images in {base / 'jpg'}/ (image_00001.jpg ...) and "
            f"imagelabels.mat and setid.mat in {base}/ "
            "(or point --data-dir / HPSEARCH_DATA_DIR at a folder that holds flowers-102/)"
        )
    try:
        ds = Flowers102(
            str(root),
            split=split,
            download=False,  # checks the md5s of the two .mat files
            loader=_decode_rgb,
            transform=lambda image: resize(image, list(FLOWERS_SIZE), antialias=True),
        )
    except RuntimeError:
        raise DataUnavailable(
            f"{mats[0]} or {mats[1]} fails torchvision's md5 check: put the official files there"
        ) from None

    def decode() -> dict:
        images, labels = zip(*(ds[i] for i in range(len(ds))), strict=True)
        return {"images": torch.stack(images), "labels": torch.tensor(labels, dtype=torch.long)}

    stamp = "|".join(f"{m.stat().st_size}:{m.stat().st_mtime_ns}" for m in mats)
    d = _cached_decode(f"flowers102|{base.resolve()}|{split}|{stamp}|{FLOWERS_SIZE}", decode)
    return RawSplit(images=d["images"], labels=d["labels"], classes=list(Flowers102.classes))


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _register_decoded_image_datasets() -> None:
    from torchvision.datasets import Flowers102

    # Normalisation constants: statistics of the official training split.
    register(
        DatasetInfo(
            "cifar10",
            _read_cifar10,
            (0.4914, 0.4822, 0.4465),
            (0.247, 0.243, 0.261),
            image_shape=(3, 32, 32),
            classes=_CIFAR10_CLASSES,
        )
    )
    # Mean: shared/data/README.md, over all 8,189 images at their stored size on [0, 1].
    # Std measured the same way (per-channel population std over every pixel of every image,
    # decoded as RGB by torchvision.io; that pass reproduced the mean to 4 places). At
    # 3x100x100 the stds are ~0.005 lower: (0.2877, 0.2369, 0.2603).
    register(
        DatasetInfo(
            "flowers102",
            _read_flowers102,
            (0.4330, 0.3753, 0.2866),
            (0.2926, 0.2423, 0.2648),
            official_val=True,
            image_shape=(3, *FLOWERS_SIZE),
            classes=tuple(Flowers102.classes),
        )
    )


_register_decoded_image_datasets()
