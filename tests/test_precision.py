"""--precision: bf16 autocast where the device has it natively, fp32 weights everywhere; and
the training levers beyond the reports (schedules, label smoothing)."""

from types import SimpleNamespace

import optuna
import pytest
import torch
import torch.nn.functional as F

from hpsearch import data, models, precision, replicates, tasks
from hpsearch.cli import main
from hpsearch.train import Recipe, _scheduler, fit

CPU = torch.device("cpu")
FAST = [*"--set c1=4 --set c2=8 --set c3=32 --set batch_size=64".split()]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx512f", "avx512_bf16"}, "bf16"),
        ({"avx512f", "amx_bf16", "amx_tile"}, "bf16"),
        ({"avx512f", "avx2"}, "fp32"),
    ],
)
def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    assert precision.resolve("auto", CPU) == expected
    assert precision.resolve("auto", CPU, allow_bf16=False) == "fp32"  # the study says no
    assert precision.resolve("fp32", CPU) == "fp32" and precision.resolve("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        precision.resolve("fp16", CPU)


def test_bf16_trains_and_keeps_fp32_weights(fashion_root, device):
    loaded = data.load("fashion_mnist", device, fashion_root)
    torch.manual_seed(0)
    model = models.create("lenet5", channels=[6, 16, 32], activation="relu", pooling="max", batch_norm=True)
    model = model.to(device)
    result = fit(model, loaded, Recipe(epochs=3, batch_size=50, lr=3e-3, precision="bf16"))
    assert result.best_value > 0.8  # learnable synthetic classes; chance is 0.1
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {v.dtype for v in result.best_state.values() if v.is_floating_point()} == {torch.float32}


def test_each_trial_records_its_precision_and_the_run_says_it(fashion_root, tmp_path, capsys, monkeypatch):
    """The trial stores the precision it trained in, and its model computed in it: every
    convolution and linear layer of the training passes outputs bf16 under ``--precision
    bf16`` (autocast) and fp32 under ``--precision fp32``."""
    trained_in: set[torch.dtype] = set()  # what the layers output while the model trains
    real_create = models.create

    def record(module, args, output):
        if module.training:  # validation runs outside autocast either way
            trained_in.add(output.dtype)

    def create(name, **kwargs):
        model = real_create(name, **kwargs)
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.register_forward_hook(record)
        return model

    monkeypatch.setattr(models, "create", create)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["--trials", "1", "--epochs", "1", "--storage", url, "--data-dir", str(fashion_root), *FAST]
    assert main(["run", "fashion-lenet", "--precision", "bf16", *common]) == 0
    assert "images on cpu, bf16" in capsys.readouterr().out
    assert trained_in == {torch.bfloat16}
    trained_in.clear()
    assert main(["run", "fashion-lenet", "--precision", "fp32", *common, "--study-name", "other"]) == 0
    assert trained_in == {torch.float32}
    (bf16,) = optuna.load_study(study_name="fashion-lenet", storage=url).get_trials()
    (fp32,) = optuna.load_study(study_name="other", storage=url).get_trials()
    assert bf16.user_attrs["precision"] == "bf16" and fp32.user_attrs["precision"] == "fp32"


def test_bf16_replicates_are_other_replicates_than_fp32_ones():
    def cfg(chosen, subset=None):
        return SimpleNamespace(subset=subset, train_csv=None, precision=chosen)

    assert replicates.data_tag(cfg("fp32")) == ""  # ids stored before --precision stay valid
    assert replicates.data_tag(cfg("bf16")) == "bf16"
    assert replicates.data_tag(cfg("bf16", 100)) == "subset 100, bf16"


def _lrs(schedule: str, epochs=3, steps=10, lr=0.1):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.7)
    scheduler = _scheduler(Recipe(epochs=epochs, batch_size=1, lr=lr, lr_schedule=schedule), optimizer, steps)
    seen = []
    for _ in range(epochs * steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen, optimizer


def test_cosine_and_one_cycle_span_all_the_epochs():
    cosine, _ = _lrs("cosine")
    assert cosine[0] == pytest.approx(0.1) and cosine[-1] < 0.001 and cosine == sorted(cosine, reverse=True)
    onecycle, optimizer = _lrs("onecycle")
    peak = onecycle.index(max(onecycle))
    assert max(onecycle) == pytest.approx(0.1, rel=1e-3) and 0 < peak < len(onecycle) - 1
    assert onecycle[0] < 0.01 and onecycle[-1] < 0.001
    assert optimizer.param_groups[0]["momentum"] == 0.7  # the trial's momentum, not OneCycle's cycle
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert _scheduler(Recipe(epochs=1, batch_size=1, lr=0.1, lr_schedule="constant"), optimizer, 5) is None
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        _scheduler(Recipe(epochs=1, batch_size=1, lr=0.1, lr_schedule="linear"), optimizer, 5)


def test_one_cycle_steps_exactly_as_often_as_fit_trains(fashion_root, device):
    # OneCycleLR raises when stepped past its total: a fit that ends proves the count matches.
    loaded = data.load("fashion_mnist", device, fashion_root)
    model = models.create("lenet5", channels=[4, 8, 32]).to(device)
    result = fit(model, loaded, Recipe(epochs=2, batch_size=64, lr=3e-3, lr_schedule="onecycle"))
    assert len(result.history) == 2


def test_label_smoothing_is_cross_entropys_own():
    model = torch.nn.Identity()
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    smoothed = tasks.CLASSIFY.batch_loss(model, "cross_entropy", 10, 0.0, None, label_smoothing=0.1)
    plain = tasks.CLASSIFY.batch_loss(model, "cross_entropy", 10, 0.0, None)
    assert smoothed(logits, labels) == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item())
    assert plain(logits, labels) == pytest.approx(F.cross_entropy(logits, labels).item())
    assert smoothed(logits, labels) != pytest.approx(plain(logits, labels))
