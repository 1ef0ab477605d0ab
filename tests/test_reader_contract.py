"""A dataset registered by a study file: a reader's output that breaks the contract
(``hpsearch.data.RawSplit``), or a ``DatasetInfo`` whose mean/std are not on [0, 1], ends
``hpsearch run`` in one line naming what is wrong, exit 2, before a study is stored."""

import optuna
import pytest

from hpsearch.cli import main

# A study file with a dataset of its own, generated in the reader; {returned} is what the
# reader returns, {mean} the registered mean.
STUDY = """
import torch

from hpsearch.data import DatasetInfo, RawSplit, register
from hpsearch.spec import StudySpec

CLASSES = [str(c) for c in range(10)]


def read_tiny(root, split):
    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.randint(0, 10, (60,), generator=generator)
    images = torch.randint(0, 256, (60, 1, 8, 8), generator=generator, dtype=torch.uint8)
    return {returned}


register(DatasetInfo("tiny", read_tiny, mean=({mean},), std=(0.29,), image_shape=(1, 8, 8), classes=tuple(CLASSES)))

SPEC = StudySpec(
    name="tiny-mlp",
    description="a reader under test",
    dataset="tiny",
    model_family="MLP",
    max_epochs=1,
    space=lambda trial: {{"lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True)}},
    training_params=("lr", "batch_size"),
    training_fixed={{"batch_size": 16}},
    model=lambda p: ("mlp", {{"in_features": 64, "widths": [8], "dropouts": [0.0]}}),
    baseline={{"lr": 1e-2}},
    baseline_source="by hand",
)
"""

CONTRACT = "the reader read_tiny of dataset 'tiny' breaks the contract for the 'train' split: "


@pytest.mark.parametrize(
    "returned, mean, expected",
    [
        pytest.param("RawSplit(images=images, labels=labels, classes=CLASSES)", 0.5, None, id="keeps-the-contract"),
        pytest.param(
            "images, labels",
            0.5,
            CONTRACT + "it returned a tuple, not an hpsearch.data.RawSplit: "
            "return RawSplit(images=..., labels=..., classes=[...])",
            id="tuple",
        ),
        pytest.param(
            "RawSplit(images=images.float() / 255, labels=labels, classes=CLASSES)",
            0.5,
            CONTRACT + "images are torch.float32, not torch.uint8 pixels 0..255",
            id="float-images",
        ),
        pytest.param(
            "RawSplit(images=images[:, 0], labels=labels, classes=CLASSES)",
            0.5,
            CONTRACT + "images have shape (60, 8, 8), not (N, C, H, W): add the channel axis, images[:, None]",
            id="no-channel-axis",
        ),
        pytest.param(
            "RawSplit(images=images, labels=labels.int(), classes=CLASSES)",
            0.5,
            CONTRACT + "labels are a torch.int32 of shape (60,), not a torch.int64 tensor (N,)",
            id="int32-labels",
        ),
        pytest.param(
            "RawSplit(images=images, labels=labels + 1, classes=CLASSES)",
            0.5,
            CONTRACT + "labels run from 1 to 10, but 10 classes allow 0 to 9",
            id="labels-from-1",
        ),
        pytest.param(
            "RawSplit(images=images, labels=labels, classes=CLASSES)",
            127.5,
            "dataset 'tiny': mean (127.5,) and std (0.29,) are not statistics of pixels on [0, 1] "
            "(mean in [0, 1], std in (0, 1]): compute them from the images divided by 255",
            id="mean-on-0-255",
        ),
    ],
)
def test_a_reader_that_breaks_the_contract_ends_the_run_in_one_line(returned, mean, expected, tmp_path, capsys):
    study = tmp_path / "tiny_study.py"
    study.write_text(STUDY.format(returned=returned, mean=mean))
    db = tmp_path / "study.db"
    code = main(
        ["run", str(study), *"--trials 1 --epochs 1 --data-dir".split(), str(tmp_path), "--storage", f"sqlite:///{db}"]
    )
    err = capsys.readouterr().err.strip()
    if expected is None:  # the template itself is a study that runs
        assert code == 0 and err == "", err
        return
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("hpsearch: error: ") and expected in err, err
    assert not db.exists() or optuna.get_all_study_names(f"sqlite:///{db}") == []  # the data is read first
