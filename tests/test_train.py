import pytest
import torch
import torch.nn as nn

from hpsearch import data, models
from hpsearch.train import RUNG_VAL_IMAGES, Diverged, Recipe, fit, rung_split


def test_fit_learns_and_reports_every_epoch(fashion_root, device):
    loaded = data.load("fashion_mnist", device, fashion_root)
    torch.manual_seed(0)
    model = models.create("lenet5", channels=[6, 16, 32], activation="relu", pooling="max").to(device)
    seen = []
    result = fit(model, loaded, Recipe(epochs=3, batch_size=50, lr=3e-3), seen.append)
    assert [r.epoch for r in seen] == [1, 2, 3]
    assert result.best_value == max(r.value for r in seen)
    assert result.best_value > 0.8  # the synthetic classes are learnable; chance is 0.1


def test_rungs_inside_an_epoch_are_scored_on_a_fixed_part_of_the_validation_split(fashion_root, device):
    loaded = data.load("fashion_mnist", device, fashion_root)
    n = len(loaded.train)
    torch.manual_seed(0)
    model = models.create("lenet5", channels=[6, 16, 32], activation="relu", pooling="max").to(device)
    checks, epochs = [], []
    points = [n // 4, 3 * n // 4, n, 2 * n + n // 4]  # the one at the epoch's end is that epoch's report
    fit(
        model,
        loaded,
        Recipe(epochs=3, batch_size=50, lr=3e-3),
        epochs.append,
        checks=points,
        on_check=lambda *c: checks.append(c),
    )
    assert [images for images, _ in checks] == [n // 4, 3 * n // 4, 2 * n + n // 4]
    assert [r.images for r in epochs] == [n, 2 * n, 3 * n]
    assert all(0.0 <= value <= 1.0 for _, value in checks)

    sorted_by_class = data.Split(torch.arange(10000.0).view(-1, 1, 1, 1), torch.arange(10000) // 1000)
    part = rung_split(sorted_by_class)
    assert len(part) == RUNG_VAL_IMAGES == 2500 and part.y.bincount().tolist() == [250] * 10  # every class kept
    small = data.Split(torch.zeros(1020, 1, 1, 1), torch.zeros(1020, dtype=torch.long))
    assert rung_split(small) is small  # a split of 2,500 or fewer is scored whole


@pytest.mark.parametrize("loss", ["cross_entropy", "mse_softmax", "multi_margin"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_every_loss_and_optimizer_trains(fashion_root, device, loss, optimizer):
    loaded = data.load("fashion_mnist", device, fashion_root)
    torch.manual_seed(0)
    model = models.create("lenet5", batch_norm=True, dropout=0.2).to(device)
    recipe = Recipe(
        epochs=1,
        batch_size=64,
        lr=0.3 if optimizer == "sgd" else 1e-3,  # plain SGD needs a larger step to learn in one epoch
        loss=loss,
        optimizer=optimizer,
        momentum=0.5,
        weight_decay=1e-4,
        lr_step_size=3,
        lr_gamma=0.5,
    )
    result = fit(model, loaded, recipe)
    assert len(result.history) == 1
    assert result.best_value > 0.3  # one epoch on learnable synthetic classes; chance is 0.1


class _Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


def test_non_finite_loss_raises_diverged_in_the_first_epoch(fashion_root, device):
    loaded = data.load("fashion_mnist", device, fashion_root)
    reported = []
    with pytest.raises(Diverged) as info:
        fit(_Exploding().to(device), loaded, Recipe(epochs=5, batch_size=100, lr=1e-3), reported.append)
    assert info.value.epoch == 1 and reported == []


def test_a_models_penalty_is_added_to_every_training_batch(fashion_root, device):
    model = models.create("mlp", in_features=784, widths=[32, 16], dropouts=[0.0, 0.0], l2_lambda=0.5, l2_layers=1)
    first = model[1]  # after the Flatten
    assert model.penalty(10).item() == pytest.approx(0.5 / 20 * first.weight.pow(2).sum().item())
    assert models.create("mlp", in_features=784, widths=[32], dropouts=[0.0]).penalty(10) == 0.0
    loaded = data.load("fashion_mnist", device, fashion_root)
    norms = {}
    for l2_lambda in (0.0, 200.0):
        torch.manual_seed(0)
        model = models.create(
            "mlp", in_features=784, widths=[32, 16], dropouts=[0.0, 0.0], l2_lambda=l2_lambda, l2_layers=1
        )
        fit(model.to(device), loaded, Recipe(epochs=2, batch_size=50, lr=3e-3))
        norms[l2_lambda] = model[1].weight.norm().item()
    assert norms[200.0] < 0.5 * norms[0.0]  # the penalised layer shrank


class _Staged(nn.Module):
    """An encoder trained first on a loss of its own, then a head on the task's."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 16))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.encoder(x))

    def spread_loss(self, x, y):
        return -self.encoder(x).std(0).mean()

    def encoder_parameters(self):
        return list(self.encoder.parameters())


def test_stages_run_the_models_own_loss_over_its_own_parameters_first(fashion_root, device):
    from hpsearch.recipe import Stage

    loaded = data.load("fashion_mnist", device, fashion_root)
    torch.manual_seed(0)
    model = _Staged().to(device)
    head, encoder = model.head.weight.detach().clone(), model.encoder[1].weight.detach().clone()
    seen = {}

    def on_batch(what, done, total):
        if done == 0:  # each pass starts: what had changed by then
            seen[what] = (torch.equal(model.head.weight, head), torch.equal(model.encoder[1].weight, encoder))

    stage = Stage("warm-up", epochs=2, lr=1e-2, loss="spread_loss", parameters="encoder_parameters")
    result = fit(model, loaded, Recipe(epochs=1, batch_size=50, lr=3e-3, stages=(stage,)), on_batch=on_batch)
    assert list(seen) == ["warm-up epoch 1/2", "warm-up epoch 2/2", "epoch 1/1"]
    assert seen["epoch 1/1"] == (True, False)  # the stage moved the encoder only
    assert result.best_value > 0.5


def test_a_resnet_with_strided_1x1_shortcuts_trains_an_odd_batch_on_the_cpu():
    """In a process of its own: the crash it guards against (oneDNN's channels-last backward
    of a strided 1x1 convolution with 8 input channels and a batch of 51, on a 2-core AMD
    EPYC) kills the process, not just the test."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import torch
        from hpsearch import data as d, models
        from hpsearch.train import Recipe, fit
        x = torch.rand(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (64,))
        split = d.SearchData(d.Split(x[:51], y[:51]), d.Split(x[51:], y[51:]), list("0123456789"), (0.0,), (1.0,))
        for crop in (0, 4):
            fit(models.create("resnet20", widths=[8, 16, 32]), split, Recipe(epochs=1, batch_size=103, lr=1e-3,
                crop_padding=crop, hflip=bool(crop)))
        print("trained")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "trained", done.stderr[-2000:]
