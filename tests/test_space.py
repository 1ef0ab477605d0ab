import pytest

from hpsearch import registry, space
from hpsearch.errors import UsageError

SPEC = registry.get("fashion-lenet")


def test_probe_finds_conditional_parameters():
    found = space.distributions(SPEC.space)
    assert {"lr", "batch_size", "momentum", "weight_decay", "lr_step_size", "lr_gamma", "c1", "c2", "c3"} <= set(found)
    assert found["lr"].low == 1e-4 and found["lr"].high == 1e-1 and found["lr"].log
    assert found["batch_size"].low == 10 and found["batch_size"].high == 1280
    assert found["lr_step_size"].low == 100 and found["lr_step_size"].high == 3200


def test_parse_fixed_types_values():
    fixed = space.parse_fixed(["lr=0.01", "batch_norm=true", "c1=8", "optimizer=sgd"], SPEC.space, SPEC.name)
    assert fixed == {"lr": 0.01, "batch_norm": True, "c1": 8, "optimizer": "sgd"}
    assert isinstance(fixed["c1"], int)


@pytest.mark.parametrize(
    "item, words",
    [
        ("lr", "KEY=VALUE"),
        ("nope=1", "no parameter 'nope'"),
        ("lr=5", "outside lr's range"),
        ("lr=fast", "must be a number"),
        ("c1=2.5", "must be an integer"),
        ("pooling=min", "must be one of avg, max"),
    ],
)
def test_parse_fixed_rejects_bad_assignments(item, words):
    with pytest.raises(UsageError, match=words):
        space.parse_fixed([item], SPEC.space, SPEC.name)


@pytest.mark.parametrize("name", sorted(registry.all_specs()))
def test_every_baseline_is_inside_its_space(name):
    # Each baseline value must be accepted as a --set value, or enqueueing it would fail.
    spec = registry.get(name)
    fixed = space.parse_fixed([f"{k}={v}" for k, v in spec.baseline.items()], spec.space, spec.name)
    assert fixed == spec.baseline


def test_small_integer_ranges_are_walked_like_choices():
    found = space.distributions(registry.get("cifar10-mlp").space)  # hidden_layers 4..7 decides width5..7
    assert {f"width{i}" for i in range(1, 8)} <= set(found)


def test_each_parameter_says_which_choices_it_is_suggested_under():
    params = {p.name: p for p in space.parameters(SPEC.space)}
    assert params["momentum"].only_when == {"optimizer": ("sgd",)}
    assert params["lr_gamma"].only_when == {"lr_schedule": ("step",), "step_lr": (True,)}
    assert params["label_smoothing"].only_when == {"loss": ("cross_entropy",)}
    assert params["lr"].only_when == {} and params["optimizer"].only_when == {}
    denoise = {p.name: p.only_when for p in space.parameters(registry.get("mnist-denoise").space)}
    assert denoise["code"] == {"arch": ("linear", "mlp")}
    mlp = {p.name: p.only_when for p in space.parameters(registry.get("cifar10-mlp").space)}
    assert mlp["width5"] == {"hidden_layers": (5, 6, 7)} and mlp["width7"] == {"hidden_layers": (7,)}


def test_parameters_come_in_the_order_the_study_file_suggests_them():
    # The walk finds conditional parameters last; the listing must still read like the file.
    names = [p.name for p in space.parameters(SPEC.space)]
    assert names[names.index("l2") :] == [
        "l2",
        "weight_decay",
        "momentum",
        "lr_schedule",
        "step_lr",
        "lr_step_size",
        "lr_gamma",
        "random_crop",
        "hflip",
        "label_smoothing",
    ]
    assert list(space.distributions(SPEC.space)) == names
