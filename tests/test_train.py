import pytest
import torch
import torch.nn as nn

import models
from hpsearch import data
from hpsearch.train import Diverged, Recipe, fit


def test_fit_learns_and_reports_every_epoch(fashion_root, device):
    loaded = data.load("fashion_mnist", device, fashion_root)
    torch.manual_seed(0)
    model = models.create("lenet5", channels=[6, 16, 32], activation="relu", pooling="max").to(device)
    seen = []
    result = fit(model, loaded, Recipe(epochs=3, batch_size=50, lr=3e-3), seen.append)
    assert [r.epoch for r in seen] == [1, 2, 3]
    assert result.best_value == max(r.value for r in seen)
    assert result.best_value > 0.8  # the synthetic classes are learnable; chance is 0.1


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


def test_same_name_and_kwargs_rebuild_the_same_architecture():
    kwargs = {"channels": [32, 64, 256], "activation": "leaky_relu", "pooling": "max", "batch_norm": True}
    a, b = models.create("lenet5", **kwargs), models.create("lenet5", **kwargs)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    b.load_state_dict(a.state_dict())
    assert models.create("lenet5")(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(KeyError):
        models.create("no_such_model")
