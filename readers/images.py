"""Image files decoded once into one cached uint8 tensor: the image-folder layout, and the
decoding that the Flowers-102 reader shares."""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from hpsearch.atomic import replacing
from hpsearch.data import DataUnavailable, RawSplit
from hpsearch.errors import UsageError, first_line
from hpsearch.locations import cache_dir


def decode_rgb(path) -> torch.Tensor:
    """One image file -> uint8 (3, H, W)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError) as e:
        if not Path(path).is_file():
            raise DataUnavailable(f"{path} is missing: put the image file back (or the whole folder)") from None
        reason = first_line(e)
        raise UsageError(f"cannot decode {path} ({reason}): replace it with a valid JPEG or PNG") from None


def cached_decode(key: str, decode: Callable[[], dict]) -> dict:
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
        images = _stack_same_size([decode_rgb(p) for p in paths], paths)
        return {"images": images, "labels": torch.tensor(listing.targets, dtype=torch.long), "classes": listing.classes}

    d = cached_decode(f"image-folder|{Path(folder).resolve()}|{len(paths)}|{newest}", decode)
    return RawSplit(images=d["images"], labels=d["labels"], classes=list(d["classes"]))
