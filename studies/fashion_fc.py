"""fashion-fc: report 004's fully connected baseline (784-512-10, ReLU) on Fashion-MNIST.

The report's comparison point for LeNet-5: 89.4 % test with Adam 1e-3, batch 100, 20 epochs.
"""

from hpsearch.spec import StudySpec


def space(trial):
    p = {
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "batch_size": trial.suggest_int("batch_size", 10, 1280, log=True),
        "hidden": trial.suggest_int("hidden", 64, 2048, log=True),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"]),
        # Beyond report 004: dropout, a decaying schedule, random crop and flip on the device,
        # label smoothing.
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "cosine", "onecycle"]),
        "crop_padding": 2 if trial.suggest_categorical("random_crop", [False, True]) else 0,
        "hflip": trial.suggest_categorical("hflip", [False, True]),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
    }
    if trial.suggest_categorical("l2", [False, True]):
        p["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    if p["optimizer"] == "sgd":
        p["momentum"] = trial.suggest_float("momentum", 0.0, 0.99)
    return p


SPEC = StudySpec(
    name="fashion-fc",
    description="Report 004's baseline: one hidden fully connected layer on Fashion-MNIST",
    dataset="fashion_mnist",
    model_family="MLP 784-h-10",
    training_params=(
        "lr",
        "batch_size",
        "optimizer",
        "weight_decay",
        "momentum",
        "lr_schedule",
        "crop_padding",
        "hflip",
        "label_smoothing",
    ),
    max_epochs=20,
    space=space,
    model=lambda p: ("fc_net", {"hidden": p["hidden"], "dropout": p["dropout"]}),
    baseline={
        "lr": 1e-3,
        "batch_size": 100,
        "hidden": 512,
        "dropout": 0.0,
        "optimizer": "adam",
        "lr_schedule": "constant",
        "random_crop": False,
        "hflip": False,
        "label_smoothing": 0.0,
        "l2": False,
    },
    baseline_source="report 004's FC baseline: 784-512-10 ReLU, Adam 1e-3, batch 100, 20 epochs; 89.4 % test",
)
