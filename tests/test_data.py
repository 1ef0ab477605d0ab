import dataclasses

import numpy as np
import pytest
import torch
from invoke import hpsearch
from synthetic import learnable_images

from hpsearch import data


def test_idx_gz_files_are_read_by_torchvision_reader_and_extracted_into_the_cache(fashion_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    before = sorted(p.name for p in (fashion_root / "FashionMNIST" / "raw").iterdir())

    train = data.read("fashion_mnist", "train", fashion_root)
    test = data.read("fashion_mnist", "test", fashion_root)

    images, labels = learnable_images(600, seed=0)
    assert train.images.shape == (600, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.equal(train.images[:, 0], torch.from_numpy(images))
    assert torch.equal(train.labels, torch.from_numpy(labels.astype(np.int64)))
    assert test.images.shape == (100, 1, 28, 28)
    assert train.classes[0] == "T-shirt/top" and len(train.classes) == 10
    # The source folder is left as it was (it may be read-only); extraction went to the cache.
    assert sorted(p.name for p in (fashion_root / "FashionMNIST" / "raw").iterdir()) == before
    assert list((tmp_path / "cache").rglob("train-images-idx3-ubyte"))


def test_search_split_holds_out_a_fixed_sixth_and_never_touches_test(fashion_root, device):
    loaded = data.load("fashion_mnist", device, fashion_root, split_seed=0)
    assert len(loaded.train) == 500 and len(loaded.val) == 100 and loaded.train.x.device.type == device.type
    again = data.load("fashion_mnist", device, fashion_root, split_seed=0)
    assert again is loaded  # loaded once per process

    train = data.read("fashion_mnist", "train", fashion_root)
    normalised = data.normalize(
        train.images.to(device), data.DATASETS["fashion_mnist"].mean, data.DATASETS["fashion_mnist"].std
    )
    rows = {tuple(x.flatten().tolist()[:40]) for x in normalised}
    # Every validation and training image comes from the official training split.
    assert all(tuple(x.flatten().tolist()[:40]) in rows for x in loaded.val.x)
    assert loaded.train.x.dtype == torch.float32
    assert abs(float(loaded.train.x.mean())) < 1.5  # standardised, not raw 0..255


def test_the_search_data_never_reads_the_test_split(fashion_root, device, monkeypatch):
    info = data.DATASETS["fashion_mnist"]
    splits_read = []

    def guarded(root, split):
        splits_read.append(split)
        if split == "test":
            raise AssertionError("the search read the official test split")
        return info.read(root, split)

    monkeypatch.setitem(data.DATASETS, "fashion_mnist", dataclasses.replace(info, read=guarded))
    loaded = data.load("fashion_mnist", device, fashion_root, split_seed=12345)  # a seed no other test caches
    assert splits_read == ["train"] and len(loaded.val) > 0
    with pytest.raises(AssertionError, match="test split"):
        data.read("fashion_mnist", "test", fashion_root)  # the guard is the one in use


def test_subset_takes_the_first_examples(fashion_root, device):
    loaded = data.load("fashion_mnist", device, fashion_root, subset=120)
    assert len(loaded.train) + len(loaded.val) == 120 and len(loaded.val) == 20


def test_a_validation_split_smaller_than_the_classes_is_said_in_one_line(fashion_root, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run = "run fashion-fc --trials 1 --epochs 1 --seed 0 --data-dir"
    assert hpsearch(run, fashion_root, "--subset", 3, "--storage", url) == 0
    out, err = capsys.readouterr()
    assert "2 train / 1 validation images" in out  # it runs, as asked
    assert err.strip() == (
        "note: --subset 3 leaves 1 validation image, fewer than the 10 classes: validation scores move in steps "
        "of 1/1; --subset 57 or more holds out 10"
    )
    assert hpsearch(run, fashion_root, "--subset", 57, "--storage", f"sqlite:///{tmp_path / 'other.db'}") == 0
    out, err = capsys.readouterr()
    assert "47 train / 10 validation images" in out and err == ""
