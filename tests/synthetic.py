"""Small synthetic datasets written in the real on-disk formats, so the real readers run.

The writers of the newer formats return what they wrote, as uint8 (N, C, H, W) images and
int64 labels per split, in the order the reader must give them back.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def learnable_images(n: int, seed: int, size: int = 28, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, size, size) whose class is a bright bar at a class-specific row,
    under noise: learnable within an epoch or two, but not trivially by every model."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.uint8)
    return _bar_images(labels, rng, size, size, classes), labels


def _bar_images(labels: np.ndarray, rng: np.random.Generator, height: int, width: int, classes: int) -> np.ndarray:
    images = rng.integers(0, 90, (len(labels), height, width)).astype(np.uint8)
    rows = (np.arange(classes) * (height - 3) // (classes - 1)).astype(int)
    for i, label in enumerate(labels):
        images[i, rows[label] : rows[label] + 3, 4:-4] = 230
    return images


def _rgb(gray: np.ndarray) -> np.ndarray:
    """(n, H, W) -> (n, 3, H, W) with different coarse content per channel, so that a reader
    that mixes up channels or axes is caught even through JPEG: R the image, G it rolled down
    by half its height (the bar moves), B its negative."""
    return np.stack([gray, np.roll(gray, gray.shape[1] // 2, axis=1), 255 - gray], axis=1)


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


def write_mnist(root: Path, n_train: int = 600, n_test: int = 100) -> Path:
    """MNIST's four official ``.gz`` files (same names and format) under ``root/MNIST/raw``."""
    return write_fashion_mnist(root, n_train, n_test, folder="MNIST")


def write_fashion_csv(path: Path, n: int, header: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The Fashion-MNIST CSV form: ``label,pixel1..pixel784`` (when ``header``), then one row
    per image: the label and 784 pixel values. Returns (images (n, 1, 28, 28), labels)."""
    images, labels = learnable_images(n, seed)
    rows = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
    lines = ["label," + ",".join(f"pixel{i}" for i in range(1, 785))] if header else []
    lines += [",".join(map(str, row)) for row in rows.tolist()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return images[:, None], labels.astype(np.int64)


def write_cifar10_pickles(root: Path, n_train: int = 250, n_test: int = 50) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``root/cifar-10-batches-py/``: data_batch_1..5 and test_batch, each a pickled dict with
    "data" (n, 3072) uint8 rows in C-H-W order and "labels" (list of int), and batches.meta with
    "label_names". The official files are Python 2 pickles whose str keys torchvision's
    ``pickle.load(..., encoding="latin1")`` returns as str, which is what these str keys give.
    (Their md5s are not the official ones: tests patch only that check.)"""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n, seed in (("train", n_train, 2), ("test", n_test, 3)):
        gray, labels = learnable_images(n, seed, size=32)
        images, labels = _rgb(gray), labels.astype(np.int64)
        written[split] = (images, labels)
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        for name, idx in zip(names, np.array_split(np.arange(n), len(names)), strict=True):
            batch = {"batch_label": name, "data": images[idx].reshape(len(idx), -1), "labels": labels[idx].tolist()}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": max(1, n_train // 5), "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    import torch
    from torchvision.io import encode_jpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points at TorchCodec
        path.write_bytes(encode_jpeg(torch.from_numpy(np.ascontiguousarray(image)), quality=95).numpy().tobytes())


def write_image_folder(
    root: Path, n_per_class: int, size: int = 32, n_test_per_class: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``root/{train,test}/<class>/NNNN.jpg`` for the 10 CIFAR-10 class names (the layout of
    shared/data/cifar10-jpeg). Returns the images before JPEG compression, in ImageFolder order."""
    written = {}
    for split, n, seed in (("train", n_per_class, 4), ("test", n_test_per_class or n_per_class, 5)):
        labels = np.repeat(np.arange(10), n)  # class by class, as ImageFolder lists them
        images = _rgb(_bar_images(labels, np.random.default_rng(seed), size, size, 10))
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            _write_jpeg(root / split / CIFAR10_CLASSES[label] / f"{i % n:04d}.jpg", image)
        written[split] = (images, labels.astype(np.int64))
    return written


FLOWERS_SIZES = ((128, 160), (160, 128), (144, 200))  # (H, W): the reader must resize every one


def write_flowers102(
    root: Path, n_per_class: tuple[int, int, int] = (2, 2, 3), classes: tuple[int, ...] = (0, 1, 2, 50, 100, 101)
) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """``root/flowers-102/``: jpg/image_00001.jpg..., imagelabels.mat ("labels", 1..102, shape
    (1, N)) and setid.mat ("trnid", "valid", "tstid": 1-based image ids, shape (1, K)), as the
    official files. ``n_per_class`` images per listed class (0-based) in train, val and test;
    the splits' ids interleave as in the official files. Images are 128x160, 160x128 or
    144x200. Returns, per split, the images as written (3, H, W) and their 0-based labels."""
    from scipy.io import savemat

    base = root / "flowers-102"
    rng = np.random.default_rng(6)
    per_split = [np.repeat(np.array(classes), k) for k in n_per_class]
    all_labels = np.concatenate(per_split)
    order = rng.permutation(len(all_labels))  # image id (1-based) = position in this order + 1
    ids = np.empty(len(all_labels), dtype=np.int64)
    ids[order] = np.arange(1, len(all_labels) + 1)
    label_of_id = np.empty(len(all_labels), dtype=np.int64)
    label_of_id[ids - 1] = all_labels
    written, start = {}, 0
    images_by_id = {}
    for i, label in enumerate(label_of_id):
        h, w = FLOWERS_SIZES[i % len(FLOWERS_SIZES)]
        gray = _bar_images(np.array([label * 9 // 101]), rng, h, w, 10)  # bar row: label / 10ish
        image = _rgb(gray)[0]
        image[0] = np.clip(image[0].astype(int) + label, 0, 255)  # and a class-specific red level
        _write_jpeg(base / "jpg" / f"image_{i + 1:05d}.jpg", image)
        images_by_id[i + 1] = image
    setids = {}
    for split, key, labels in zip(("train", "val", "test"), ("trnid", "valid", "tstid"), per_split, strict=True):
        split_ids = ids[start : start + len(labels)]
        start += len(labels)
        setids[key] = split_ids[None].astype(np.uint16)
        written[split] = ([images_by_id[int(j)] for j in split_ids], labels.astype(np.int64))
    savemat(base / "imagelabels.mat", {"labels": (label_of_id + 1)[None].astype(np.uint8)})
    savemat(base / "setid.mat", setids)
    return written
