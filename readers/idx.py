"""MNIST and Fashion-MNIST: the official idx files (``.gz`` or extracted), read by torchvision."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import shutil
from pathlib import Path

from hpsearch.atomic import replacing
from hpsearch.data import DatasetInfo, DataUnavailable, RawSplit, register
from hpsearch.locations import cache_dir


def stage_idx_files(dataset_cls, root: Path) -> Path | None:
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
        staged = stage_idx_files(dataset_cls, root)
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
