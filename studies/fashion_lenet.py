"""fashion-lenet: report 004's configurable LeNet-5 on Fashion-MNIST.

The report swept one knob at a time from a tanh/avg-pool/(6,16,120) base (89.24 % test)
and reached 92.07 % with (32,64,256) channels, max pooling, BatchNorm and leaky ReLU.
Here every knob is searched jointly, on a validation split instead of the test set.
"""

from hpsearch.spec import StudySpec


def space(trial):
    p = {
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "batch_size": trial.suggest_int("batch_size", 10, 1280, log=True),
        "activation": trial.suggest_categorical("activation", ["tanh", "relu", "leaky_relu"]),
        "pooling": trial.suggest_categorical("pooling", ["avg", "max"]),
        # The report tried (6,16,120) and (32,64,256); the ranges span both and beyond.
        "c1": trial.suggest_int("c1", 4, 64, log=True),
        "c2": trial.suggest_int("c2", 8, 128, log=True),
        "c3": trial.suggest_int("c3", 32, 512, log=True),
        "batch_norm": trial.suggest_categorical("batch_norm", [False, True]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"]),
        "loss": trial.suggest_categorical("loss", ["cross_entropy", "mse_softmax", "multi_margin"]),
    }
    # L2 lambda may be 0, which a log scale cannot hold: a switch, then the scale.
    if trial.suggest_categorical("l2", [False, True]):
        p["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    if p["optimizer"] == "sgd":
        p["momentum"] = trial.suggest_float("momentum", 0.0, 0.99)
    # Beyond report 004 (whose knobs alone fell short of its 92.07 % here, docs/results.md): a
    # decaying schedule beside its StepLR, random crop and flip on the device, label smoothing.
    p["lr_schedule"] = trial.suggest_categorical("lr_schedule", ["step", "cosine", "onecycle"])
    if p["lr_schedule"] == "step" and trial.suggest_categorical("step_lr", [False, True]):
        p["lr_step_size"] = trial.suggest_int("lr_step_size", 100, 3200, log=True)
        p["lr_gamma"] = trial.suggest_float("lr_gamma", 0.5, 0.99)
    p["crop_padding"] = 2 if trial.suggest_categorical("random_crop", [False, True]) else 0
    p["hflip"] = trial.suggest_categorical("hflip", [False, True])
    if p["loss"] == "cross_entropy":
        p["label_smoothing"] = trial.suggest_float("label_smoothing", 0.0, 0.2)
    return p


def model(p):
    return "lenet5", {
        "channels": [p["c1"], p["c2"], p["c3"]],
        "activation": p["activation"],
        "pooling": p["pooling"],
        "batch_norm": p["batch_norm"],
        "dropout": p["dropout"],
    }


SPEC = StudySpec(
    name="fashion-lenet",
    description="Report 004: configurable LeNet-5 on Fashion-MNIST",
    dataset="fashion_mnist",
    model_family="LeNet-5",
    training_params=(
        "lr",
        "batch_size",
        "optimizer",
        "loss",
        "weight_decay",
        "momentum",
        "lr_step_size",
        "lr_gamma",
        "lr_schedule",
        "crop_padding",
        "hflip",
        "label_smoothing",
    ),
    max_epochs=20,
    space=space,
    model=model,
    baseline={
        "lr": 1e-3,
        "batch_size": 100,
        "activation": "leaky_relu",
        "pooling": "max",
        "c1": 32,
        "c2": 64,
        "c3": 256,
        "batch_norm": True,
        "dropout": 0.0,
        "optimizer": "adam",
        "loss": "cross_entropy",
        "l2": False,
        "lr_schedule": "step",
        "step_lr": False,
        "random_crop": False,
        "hflip": False,
        "label_smoothing": 0.0,
    },
    # Report 004's one-knob table, each change from its tanh/avg-pool/(6,16,120) base, one run each on test.
    reference_ablation=(
        ("base: tanh, avg pool, (6,16,120), Adam 1e-3, batch 100", 0.8924),
        ("+ BatchNorm", 0.9088),
        ("+ max pooling", 0.9082),
        ("+ leaky ReLU", 0.9050),
        ("+ dropout 0.3", 0.8976),
        ("(32,64,256) + max pool + BatchNorm + ReLU", 0.9206),
        ("(32,64,256) + max pool + BatchNorm + leaky ReLU (trial 0)", 0.9207),
    ),
    reference_label="report 004 (test, 1 run)",
    baseline_source=(
        "report 004's best: (32,64,256), max pool, BatchNorm, leaky ReLU, Adam 1e-3, batch 100; 92.07 % test"
    ),
)
