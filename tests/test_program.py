"""The torch.export program beside a checkpoint: same outputs at any batch size, and no
archive that would unpickle something is ever handed to torch.export.load."""

import argparse
import io
import json
import zipfile

import pytest
import torch

from hpsearch import models, program
from hpsearch.errors import UsageError

META = {"format": "hpsearch-checkpoint/1", "model": {"name": "lenet5", "kwargs": {}}, "task": "classify"}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    torch.manual_seed(0)
    model = models.create("lenet5", batch_norm=True).eval()
    path = program.write(
        model,
        {**META, "state_dict": model.state_dict()},
        torch.rand(2, 1, 28, 28),
        tmp_path_factory.mktemp("program") / "best.pt2",
    )
    return model, path


def test_the_program_computes_what_the_model_does_at_any_batch_size(written):
    model, path = written
    loaded, meta = program.load(path)
    assert meta == META  # the metadata, without the weights
    for n in (1, 3, 64):
        x = torch.rand(n, 1, 28, 28)
        with torch.no_grad():
            assert torch.allclose(loaded(x), model(x), atol=1e-5)


def _rewritten(path, out, edit):
    """A copy of the archive at ``path`` with ``edit(name, data) -> data`` applied to each member."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, edit(info.filename, src.read(info.filename)))
    return out


def test_a_program_marked_as_holding_pickles_is_refused_before_torch_reads_it(written, tmp_path, monkeypatch):
    def mark(name, data):
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    bad = _rewritten(written[1], tmp_path / "bad.pt2", mark)
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: pytest.fail("torch.export.load was reached"))
    with pytest.raises(UsageError, match="holds pickled payloads .*weight_0"):
        program.load(bad)


def test_sample_inputs_that_only_a_full_unpickle_reads_are_refused(written, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    torch.save(argparse.Namespace(x=1), buffer)  # an object, not tensors: weights_only refuses it

    def swap(name, data):
        return buffer.getvalue() if "/data/sample_inputs/" in name else data

    bad = _rewritten(written[1], tmp_path / "bad.pt2", swap)
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: pytest.fail("torch.export.load was reached"))
    with pytest.raises(UsageError, match="no torch.export program hpsearch can read safely"):
        program.load(bad)


def test_a_checkpoint_or_any_other_file_is_no_program(tmp_path):
    other = tmp_path / "best.pt2"
    other.write_text("label,pixel1\n1,2\n")
    with pytest.raises(UsageError, match="no torch.export program hpsearch can read safely"):
        program.load(other)
    with pytest.raises(UsageError, match="no such program file"):
        program.load(tmp_path / "missing.pt2")
