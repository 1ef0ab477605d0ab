"""Small synthetic datasets written in the real on-disk formats, so the real readers run."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def learnable_images(n: int, seed: int, size: int = 28, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, size, size) whose class is a bright bar at a class-specific row,
    under noise: learnable within an epoch or two, but not trivially by every model."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.uint8)
    images = rng.integers(0, 90, (n, size, size)).astype(np.uint8)
    rows = (np.arange(classes) * (size - 3) // (classes - 1)).astype(int)
    for i, label in enumerate(labels):
        images[i, rows[label] : rows[label] + 3, 4:-4] = 230
    return images, labels


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the idx format (big-endian dims after a magic number), gzipped."""
    magic = 0x0800 | array.ndim  # 0x08 = unsigned byte
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(root: Path, n_train: int = 600, n_test: int = 100, folder: str = "FashionMNIST") -> Path:
    """The four official ``.gz`` files under ``root/<folder>/raw``; returns ``root``."""
    raw = root / folder / "raw"
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = learnable_images(n, seed)
        write_idx_gz(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_gz(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root
