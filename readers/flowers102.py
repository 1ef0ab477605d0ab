"""Oxford Flowers-102 with its official train/val/test splits, resized to 3x100x100 once
and cached."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import Flowers102

from hpsearch.data import DatasetInfo, DataUnavailable, RawSplit, register
from hpsearch.readers.images import cached_decode, decode_rgb

FLOWERS_SIZE = (100, 100)  # every image resized to 3x100x100


def _read_flowers102(root: Path, split: str) -> RawSplit:
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
            loader=decode_rgb,
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
    d = cached_decode(f"flowers102|{base.resolve()}|{split}|{stamp}|{FLOWERS_SIZE}", decode)
    return RawSplit(images=d["images"], labels=d["labels"], classes=list(Flowers102.classes))


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
