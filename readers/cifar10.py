"""CIFAR-10: the official python pickles (md5-checked by torchvision), or an image folder
(such as the lossy JPEG copy in ``cifar10-jpeg/``)."""

from __future__ import annotations

from pathlib import Path

import torch

from hpsearch.data import DatasetInfo, DataUnavailable, RawSplit, register
from hpsearch.errors import UsageError
from hpsearch.readers.images import read_image_folder

_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


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
