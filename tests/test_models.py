import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hpsearch import models

# (name, kwargs, input shape, output shape); batch 2 so that BatchNorm can train.
CASES = [
    ("lenet5", {}, (2, 1, 28, 28), (2, 10)),
    (
        "lenet5",
        {"channels": [8, 12, 30], "activation": "leaky_relu", "pooling": "max", "batch_norm": True, "dropout": 0.2},
        (2, 1, 28, 28),
        (2, 10),
    ),
    ("fc_net", {}, (2, 1, 28, 28), (2, 10)),
    ("fc_net", {"hidden": 32, "num_classes": 4}, (2, 1, 28, 28), (2, 4)),
    ("cnn_small", {}, (2, 1, 28, 28), (2, 10)),
    ("cnn_small", {"c1": 8, "c2": 12, "hidden": [40, 20], "num_classes": 5}, (2, 1, 28, 28), (2, 5)),
    ("resnet20", {}, (2, 1, 28, 28), (2, 10)),
    ("resnet20", {"widths": [8, 12, 20], "in_channels": 3}, (2, 3, 28, 28), (2, 10)),
    ("resnet18", {}, (2, 1, 28, 28), (2, 10)),
    ("resnet18", {"num_classes": 7, "in_channels": 3}, (2, 3, 32, 32), (2, 7)),
    ("mlp", {}, (2, 3, 32, 32), (2, 10)),
    ("mlp", {"in_features": 784, "widths": [64, 32], "dropouts": [0.5, 0.0], "num_classes": 4}, (2, 1, 28, 28), (2, 4)),
    ("linear_ae", {}, (2, 1, 28, 28), (2, 1, 28, 28)),
    ("linear_ae", {"code": 16, "in_shape": [3, 8, 8]}, (2, 3, 8, 8), (2, 3, 8, 8)),
    ("mlp_ae", {}, (2, 1, 28, 28), (2, 1, 28, 28)),
    ("mlp_ae", {"hidden": 64, "code": 8}, (2, 1, 28, 28), (2, 1, 28, 28)),
    ("conv_ae", {}, (2, 1, 28, 28), (2, 1, 28, 28)),
    ("conv_ae", {"widths": [4, 8, 8, 16, 24]}, (2, 1, 28, 28), (2, 1, 28, 28)),
    ("flowers_ae", {}, (2, 3, 100, 100), (2, 102)),
    ("flowers_ae", {"batch_norm": False, "num_classes": 5}, (2, 3, 100, 100), (2, 5)),
]
IDS = [f"{name}-{i}" for i, (name, *_) in enumerate(CASES)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These batches are tiny: with 2 intra-op threads on a busy 2-core machine the threads
    # mostly wait on each other (resnet20 fwd+bwd took 1.4 s instead of 0.03 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_registered_model_is_built_and_trained_here():
    assert set(models.names()) <= {name for name, *_ in CASES}
    with pytest.raises(KeyError, match="unknown model 'no_such_model'; known: "):
        models.create("no_such_model")


@pytest.mark.parametrize("name,kwargs,in_shape,out_shape", CASES, ids=IDS)
def test_output_shape_rebuild_and_one_training_step(name, kwargs, in_shape, out_shape):
    torch.manual_seed(0)
    a, b = models.create(name, **kwargs), models.create(name, **kwargs)
    # Same (name, kwargs) -> same architecture: a checkpoint of one loads into the other.
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    b.load_state_dict(a.state_dict())
    x = torch.rand(in_shape)
    a.eval(), b.eval()
    with torch.no_grad():
        out = a(x)
        assert out.shape == out_shape and torch.isfinite(out).all()
        assert torch.equal(out, b(x))

    a.train()
    opt = torch.optim.Adam(a.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in a.parameters()]
    out = a(x)
    loss = F.mse_loss(out, x) if out.shape == x.shape else F.cross_entropy(out, torch.tensor([0, 1]))
    if name == "flowers_ae":  # both training stages, so the decoder gets gradients too
        loss = loss + a.reconstruction_loss(x, None)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in a.parameters())
    assert all(not torch.equal(p0, p) for p0, p in zip(before, a.parameters(), strict=True))


def test_mlp_layers_follow_the_report():
    model = models.create("mlp")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (3072, 1024),
        (1024, 512),
        (512, 64),
        (64, 64),
        (64, 32),
        (32, 16),
        (16, 10),
    ]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.6, 0.6, 0.4, 0.4, 0.25]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 6


def test_mlp_needs_one_dropout_per_layer():
    with pytest.raises(ValueError, match="dropout"):
        models.create("mlp", widths=[64, 32], dropouts=[0.5])


def test_resnet20_is_20_layers_deep():
    model = models.create("resnet20")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 3x3 convs + the fc; the two 1x1 shortcuts are not counted
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules()) == 2


def test_flowers_ae_stages():
    model = models.create("flowers_ae")
    x = torch.rand(2, 3, 100, 100)
    assert model.encoder(x).shape == (2, 32, 25, 25)
    assert model.reconstruct(x).shape == (2, 3, 100, 100)
    assert model(x).shape == (2, 102)
    assert torch.equal(model(x), model.classifier(model.encoder(x)))
    plain = models.create("flowers_ae", batch_norm=False)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plain.modules())
    assert plain.reconstruct(x).shape == (2, 3, 100, 100)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_resnet18_pretrained_without_cached_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub cache, for certain
    with pytest.raises(ValueError, match="not in the torch hub cache") as info:
        models.create("resnet18", pretrained=True)
    assert str(tmp_path / "hub" / "checkpoints") in str(info.value)
    assert "pretrained=False" in str(info.value)


@pytest.mark.parametrize("num_classes,in_channels", [(10, 1), (1000, 3)])
def test_resnet18_adapts_cached_imagenet_weights(tmp_path, monkeypatch, num_classes, in_channels):
    # A real weights file (random values, ImageNet layout) in a real cache folder.
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    imagenet = torchvision.models.resnet18().state_dict()
    torch.save(imagenet, tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")

    model = models.create("resnet18", num_classes=num_classes, in_channels=in_channels, pretrained=True)
    stem = imagenet["conv1.weight"][:, :, 2:5, 2:5]
    assert torch.equal(model.conv1.weight, stem if in_channels == 3 else stem.sum(1, keepdim=True))
    assert torch.equal(model.layer3[0].conv1.weight, imagenet["layer3.0.conv1.weight"])
    assert torch.equal(model.bn1.running_var, imagenet["bn1.running_var"])
    assert model.fc.weight.shape == (num_classes, 512)
    assert torch.equal(model.fc.weight, imagenet["fc.weight"]) == (num_classes == 1000)
    assert model(torch.rand(2, in_channels, 28, 28)).shape == (2, num_classes)
