"""Each dataset reader on synthetic files in the real on-disk format, through the public
functions (read, load, read_csv); and, when HPSEARCH_DATA_DIR has them, on the real data."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic import (
    CIFAR10_CLASSES,
    learnable_images,
    write_cifar10_pickles,
    write_fashion_csv,
    write_flowers102,
    write_image_folder,
    write_mnist,
)

from hpsearch import data, locations
from hpsearch.errors import UsageError
from hpsearch.readers import flowers102
from hpsearch.readers import images as image_files
from hpsearch.readers.fashion_csv import read_csv

CPU = torch.device("cpu")
# conftest gives every test a fresh HPSEARCH_CACHE_DIR; the real-data test reuses the user's.
USER_CACHE_DIR = os.environ.get("HPSEARCH_CACHE_DIR")


def no_decoding(*args, **kwargs):
    raise AssertionError("decoded an image although the decoded cache was there")


def decoded_cache_files() -> list[Path]:
    return sorted((locations.cache_dir() / "decoded").glob("*.pt"))


# --- CSV -----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [True, False])
def test_csv_is_read_with_or_without_header(tmp_path, header):
    images, labels = write_fashion_csv(tmp_path / "train.csv", 40, header=header)
    raw = read_csv(tmp_path / "train.csv")
    assert raw.images.shape == (40, 1, 28, 28) and raw.images.dtype == torch.uint8
    assert raw.labels.dtype == torch.int64
    assert torch.equal(raw.images, torch.from_numpy(images))
    assert torch.equal(raw.labels, torch.from_numpy(labels))
    assert raw.classes == [str(c) for c in range(10)]


def _bad_csv(tmp_path: Path, line: int, change) -> Path:
    """A 20-row CSV with header whose 1-based ``line`` is changed by ``change(cells)``, and
    with a wrong column count further down, so only the first bad line may be named."""
    path = tmp_path / "bad.csv"
    write_fashion_csv(path, 20)
    lines = path.read_text().splitlines()
    lines[line - 1] = ",".join(change(lines[line - 1].split(",")))
    lines[15] = ",".join(lines[15].split(",")[:100])
    path.write_text("\n".join(lines) + "\n")
    return path


def _set(column: int, value: str):
    def change(cells):
        cells[column - 1] = value
        return cells

    return change


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda cells: cells[:700], "line 7 has 700 values, expected 785 (label + 784 pixels)"),
        (lambda cells: cells + ["0"], "line 7 has 786 values, expected 785"),
        (_set(100, "abc"), "line 7, column 100: 'abc' is not a whole number"),
        (_set(3, ""), "line 7, column 3: '' is not a whole number"),
        (_set(50, "1.5"), "line 7, column 50: '1.5' is not a whole number"),
        (_set(1, "10"), "line 7: label 10 is outside 0..9"),
        (_set(1, "-1"), "line 7: label -1 is outside 0..9"),
        (_set(10, "300"), "line 7, column 10: pixel value 300 is outside 0..255"),
        (_set(785, "-3"), "line 7, column 785: pixel value -3 is outside 0..255"),
    ],
)
def test_csv_errors_name_the_file_and_the_first_bad_line(tmp_path, change, expected):
    path = _bad_csv(tmp_path, 7, change)
    with pytest.raises(UsageError) as e:
        read_csv(path)
    message = str(e.value)
    assert expected in message
    assert message.startswith(str(path)) and "\n" not in message
    assert "each row must be a label 0..9 and then 784 pixel values 0..255" in message  # the fix


def test_csv_line_numbers_count_the_header_and_blank_lines(tmp_path):
    path = tmp_path / "blank.csv"
    write_fashion_csv(path, 5, header=True)
    lines = path.read_text().splitlines()
    lines.insert(3, "")  # file line 4 is blank; the old line 4 is now line 5
    lines[4] = lines[4] + ",7"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match="line 5 has 786 values"):
        read_csv(path)

    write_fashion_csv(path, 5, header=False)
    lines = path.read_text().splitlines()
    lines[0] = "11" + lines[0][1:]  # no header: the first line is data line 1
    path.write_text("\n".join(lines))
    with pytest.raises(UsageError, match="line 1: label 11 is outside 0..9"):
        read_csv(path)


def test_csv_missing_or_empty_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="nowhere.csv: no such file"):
        read_csv(tmp_path / "nowhere.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UsageError, match="empty.csv holds no data rows"):
        read_csv(tmp_path / "empty.csv")
    (tmp_path / "header_only.csv").write_text("label," + ",".join(f"pixel{i}" for i in range(1, 785)) + "\n\n")
    with pytest.raises(UsageError, match="header_only.csv holds no data rows"):
        read_csv(tmp_path / "header_only.csv")


def test_train_csv_replaces_the_training_source_in_load(fashion_root, tmp_path):
    images, labels = write_fashion_csv(tmp_path / "train.csv", 90, seed=7)
    loaded = data.load("fashion_mnist", CPU, fashion_root, train_csv=tmp_path / "train.csv")
    assert len(loaded.train) + len(loaded.val) == 90 and len(loaded.val) == 15  # not the 600 idx images
    assert loaded.classes[0] == "T-shirt/top"  # the dataset's class names
    expected = data.normalize(torch.from_numpy(images), loaded.mean, loaded.std)
    rows = {x.flatten()[:200].numpy().tobytes() for x in expected}
    assert all(x.flatten()[:200].numpy().tobytes() in rows for x in torch.cat([loaded.train.x, loaded.val.x]))
    assert sorted(torch.cat([loaded.train.y, loaded.val.y]).tolist()) == sorted(labels.tolist())

    subset = data.load("fashion_mnist", CPU, fashion_root, train_csv=tmp_path / "train.csv", subset=30)
    assert len(subset.train) + len(subset.val) == 30
    with pytest.raises(UsageError, match="1x28x28 grayscale images of 10 classes.*fashion_mnist, mnist"):
        data.load("cifar10", CPU, tmp_path, train_csv=tmp_path / "train.csv")


def test_standardize_false_only_scales_to_the_unit_interval(fashion_root):
    loaded = data.load("fashion_mnist", CPU, fashion_root, standardize=False)
    assert loaded.mean == (0.0,) and loaded.std == (1.0,)
    x = torch.cat([loaded.train.x, loaded.val.x])
    assert float(x.min()) == 0.0 and 0.9 <= float(x.max()) <= 1.0
    pixels = data.read("fashion_mnist", "train", fashion_root).images.float() / 255
    assert torch.allclose(x.sum(), pixels.sum(), rtol=1e-5)  # the same pixels, only divided by 255
    standardized = data.load("fashion_mnist", CPU, fashion_root)
    assert standardized is not loaded and standardized.mean == (0.2860,)
    assert float(standardized.train.x.min()) < 0


# --- MNIST ---------------------------------------------------------------------------------


def test_mnist_idx_files(tmp_path):
    root = write_mnist(tmp_path, n_train=120, n_test=30)
    train, test = data.read("mnist", "train", root), data.read("mnist", "test", root)
    images, labels = learnable_images(120, seed=0)
    assert train.images.shape == (120, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.equal(train.images[:, 0], torch.from_numpy(images))
    assert torch.equal(train.labels, torch.from_numpy(labels.astype(np.int64)))
    assert test.images.shape == (30, 1, 28, 28) and train.classes[3] == "3 - three"


# --- CIFAR-10 ------------------------------------------------------------------------------


def test_cifar10_pickles_are_read_by_torchvision_reader(tmp_path, without_md5_checks):
    written = write_cifar10_pickles(tmp_path, n_train=60, n_test=20)
    for split in ("train", "test"):
        raw = data.read("cifar10", split, tmp_path)
        images, labels = written[split]
        assert raw.images.shape == (len(labels), 3, 32, 32) and raw.images.dtype == torch.uint8
        assert torch.equal(raw.images, torch.from_numpy(images))  # (N, 32, 32, 3) went back to (N, 3, 32, 32)
        assert torch.equal(raw.labels, torch.from_numpy(labels)) and raw.labels.dtype == torch.int64
        assert raw.classes == CIFAR10_CLASSES
    loaded = data.load("cifar10", CPU, tmp_path)
    assert len(loaded.train) == 50 and len(loaded.val) == 10 and loaded.mean == (0.4914, 0.4822, 0.4465)
    assert loaded.train.x.shape[1:] == (3, 32, 32) and loaded.train.x.is_contiguous(memory_format=torch.channels_last)
    assert not decoded_cache_files()  # the pickles need no decoded cache
    with pytest.raises(UsageError, match="cifar10 has no official 'val' split: use train or test"):
        data.read("cifar10", "val", tmp_path)


def test_cifar10_pickles_keep_torchvision_md5_check(tmp_path):
    write_cifar10_pickles(tmp_path, n_train=10, n_test=5)
    with pytest.raises(UsageError, match="fails torchvision's md5 check: put the official python pickles there"):
        data.read("cifar10", "train", tmp_path)


def test_cifar10_image_folder_is_decoded_once_and_cached(tmp_path, monkeypatch):
    written = write_image_folder(tmp_path / "cifar10-jpeg", n_per_class=6, n_test_per_class=2)
    train = data.read("cifar10", "train", tmp_path)
    images, labels = written["train"]
    assert train.images.shape == (60, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.labels, torch.from_numpy(labels)) and train.classes == CIFAR10_CLASSES
    # The pixels an independent decoder (Pillow) gives, in class-then-file-name order ...
    files = [f for c in CIFAR10_CLASSES for f in sorted((tmp_path / "cifar10-jpeg" / "train" / c).iterdir())]
    pillow = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
    assert (train.images.int() - pillow.int()).abs().max() <= 2
    # ... and, JPEG being lossy, what was written, at 8x8 blocks, each channel where it belongs.
    coarse = lambda x: torch.nn.functional.avg_pool2d(x.float(), 8)  # noqa: E731
    error = (coarse(train.images) - coarse(torch.from_numpy(images))).abs().mean(dim=(0, 2, 3))
    assert error.max() < 3, error
    swapped = (coarse(train.images[:, [1, 0, 2]]) - coarse(torch.from_numpy(images))).abs().mean()
    assert swapped > 10, swapped
    [cache] = decoded_cache_files()
    stamp = cache.stat().st_mtime_ns

    decode = image_files.decode_rgb
    monkeypatch.setattr(image_files, "decode_rgb", no_decoding)
    again = data.read("cifar10", "train", tmp_path)
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    assert decoded_cache_files() == [cache] and cache.stat().st_mtime_ns == stamp

    # The test split is a folder of its own, so a cache of its own.
    with pytest.raises(AssertionError, match="decoded an image"):
        data.read("cifar10", "test", tmp_path)
    monkeypatch.setattr(image_files, "decode_rgb", decode)
    assert data.read("cifar10", "test", tmp_path).images.shape == (20, 3, 32, 32)
    assert len(decoded_cache_files()) == 2


def test_image_folder_decodes_again_when_an_image_is_added(tmp_path):
    write_image_folder(tmp_path / "cifar10-jpeg", n_per_class=2, n_test_per_class=1)
    assert len(data.read("cifar10", "test", tmp_path).labels) == 10
    extra = tmp_path / "cifar10-jpeg" / "test" / "cat" / "0001.jpg"
    extra.write_bytes((tmp_path / "cifar10-jpeg" / "test" / "cat" / "0000.jpg").read_bytes())
    raw = data.read("cifar10", "test", tmp_path)
    assert raw.labels.tolist() == [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9]
    assert len(decoded_cache_files()) == 2


def test_cifar10_missing_says_where_the_files_go(tmp_path):
    with pytest.raises(UsageError) as e:
        data.read("cifar10", "train", tmp_path)
    message = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and str(tmp_path / "cifar10-jpeg") in message


# --- Oxford Flowers-102 --------------------------------------------------------------------


def test_flowers102_splits_are_resized_to_100x100_and_cached(tmp_path, without_md5_checks, monkeypatch):
    written = write_flowers102(tmp_path)
    raws = {split: data.read("flowers102", split, tmp_path) for split in ("train", "val", "test")}
    for split, raw in raws.items():
        images, labels = written[split]
        assert raw.images.shape == (len(labels), 3, 100, 100) and raw.images.dtype == torch.uint8
        assert torch.equal(raw.labels, torch.from_numpy(labels))
        # Resizing keeps each image's per-channel mean (JPEG adds a little noise).
        means = torch.stack([torch.from_numpy(i).float().mean(dim=(1, 2)) for i in images])
        assert (raw.images.float().mean(dim=(2, 3)) - means).abs().max() < 4
        assert raw.classes[0] == "pink primrose" and len(raw.classes) == 102
    assert {i.shape for i in written["train"][0]} != {(3, 100, 100)}  # so the resize was needed
    assert raws["train"].labels.tolist() == [0, 0, 1, 1, 2, 2, 50, 50, 100, 100, 101, 101]
    caches = decoded_cache_files()
    assert len(caches) == 3
    stamps = [c.stat().st_mtime_ns for c in caches]

    monkeypatch.setattr(flowers102, "decode_rgb", no_decoding)
    for split, raw in raws.items():
        again = data.read("flowers102", split, tmp_path)
        assert torch.equal(again.images, raw.images) and torch.equal(again.labels, raw.labels)
    assert decoded_cache_files() == caches and [c.stat().st_mtime_ns for c in caches] == stamps


def test_load_uses_the_official_flowers102_validation_split(tmp_path, without_md5_checks):
    written = write_flowers102(tmp_path)
    loaded = data.load("flowers102", CPU, tmp_path, val_fraction=0.5)
    assert len(loaded.train) == 12 and len(loaded.val) == 12  # val_fraction ignored
    assert torch.equal(loaded.val.y, torch.from_numpy(written["val"][1]))
    assert torch.equal(loaded.train.y, torch.from_numpy(written["train"][1]))  # in file order, not shuffled
    assert loaded.train.x.shape[1:] == (3, 100, 100) and loaded.std == (0.2926, 0.2423, 0.2648)

    subset = data.load("flowers102", CPU, tmp_path, subset=5)
    assert len(subset.train) == 5 and len(subset.val) == 12  # --subset shrinks the training side only
    plain = data.load("flowers102", CPU, tmp_path, standardize=False)
    assert plain.mean == (0.0, 0.0, 0.0) and 0 <= float(plain.val.x.min()) and float(plain.val.x.max()) <= 1


def test_flowers102_missing_says_where_the_files_go(tmp_path):
    with pytest.raises(UsageError) as e:
        data.read("flowers102", "train", tmp_path)
    message = str(e.value)
    base = tmp_path / "flowers-102"
    assert str(base / "jpg") in message and "imagelabels.mat" in message and "setid.mat" in message
    assert "\n" not in message


def test_flowers102_keeps_torchvision_md5_check(tmp_path):
    write_flowers102(tmp_path, n_per_class=(2, 2, 2), classes=(0, 1))
    with pytest.raises(UsageError, match="fails torchvision's md5 check"):
        data.read("flowers102", "val", tmp_path)


# --- the real data -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_cache_dir(tmp_path_factory) -> Path:
    """The user's cache when HPSEARCH_CACHE_DIR was set (decoded once across runs), else one
    for this session."""
    return Path(USER_CACHE_DIR) if USER_CACHE_DIR else tmp_path_factory.mktemp("real-cache")


def test_real_flowers102_and_cifar10_jpeg(real_cache_dir, monkeypatch):
    """Slow the first time: decodes 60,000 CIFAR-10 JPEGs (~20 s on 2 cores) and 8,189
    flowers (~7 s) into the decoded cache; later runs with the same cache read it back."""
    root = locations.data_dir()
    if not ((root / "flowers-102").is_dir() and (root / "cifar10-jpeg").is_dir()):
        pytest.skip("real data absent: set HPSEARCH_DATA_DIR to a folder with flowers-102/ and cifar10-jpeg/")
    monkeypatch.setenv("HPSEARCH_CACHE_DIR", str(real_cache_dir))
    timings = {}
    for name, sizes, shape in (
        ("flowers102", {"train": 1020, "val": 1020, "test": 6149}, (3, 100, 100)),
        ("cifar10", {"train": 50_000, "test": 10_000}, (3, 32, 32)),
    ):
        for split, n in sizes.items():
            started = time.perf_counter()
            raw = data.read(name, split, root)
            timings[f"{name}/{split}"] = round(time.perf_counter() - started, 2)
            assert raw.images.shape == (n, *shape) and raw.images.dtype == torch.uint8
            assert raw.labels.shape == (n,)
            assert int(raw.labels.min()) == 0 and int(raw.labels.max()) == len(raw.classes) - 1
    assert data.read("cifar10", "train", root).labels.bincount().tolist() == [5000] * 10
    print("read times (s):", timings)
