"""fashion-resnet: report 001's CNN / ResNet-20 / ResNet-18 on Fashion-MNIST given as CSV.

The report trained on a 60,000-row CSV split 4:1, with random crop (padding 4) and
horizontal flip, and picked torchvision's ResNet-18 (3x3 stem), batch 128, Adam 1e-3,
30 epochs. Its 96.88 % "valid" was one batch of 128, so the bar here is 94.5 % on test.
"""

from hpsearch.spec import StudySpec


def space(trial):
    p = {
        "model": trial.suggest_categorical("model", ["cnn", "resnet20", "resnet18"]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "batch_size": trial.suggest_int("batch_size", 32, 512, log=True),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "adamw", "sgd"]),
        "crop_padding": 4 if trial.suggest_categorical("random_crop", [False, True]) else 0,
        "hflip": trial.suggest_categorical("hflip", [False, True]),
        # Beyond report 001: a decaying schedule and label smoothing.
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "cosine", "onecycle"]),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
    }
    if p["model"] == "resnet20":
        p["width"] = trial.suggest_int("width", 8, 64, log=True)
    if trial.suggest_categorical("l2", [False, True]):
        p["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    if p["optimizer"] == "sgd":
        p["momentum"] = trial.suggest_float("momentum", 0.0, 0.99)
    return p


def model(p):
    if p["model"] == "cnn":
        return "cnn_small", {}
    if p["model"] == "resnet20":
        return "resnet20", {"widths": [p["width"], 2 * p["width"], 4 * p["width"]]}
    return "resnet18", {}


SPEC = StudySpec(
    name="fashion-resnet",
    description=(
        "Report 001: CNN, ResNet-20 and ResNet-18 on Fashion-MNIST (CSV or torchvision), on-device augmentation"
    ),
    dataset="fashion_mnist",
    model_family="CNN / ResNet-20 / ResNet-18",
    training_params=(
        "lr",
        "batch_size",
        "optimizer",
        "crop_padding",
        "hflip",
        "weight_decay",
        "momentum",
        "lr_schedule",
        "label_smoothing",
    ),
    max_epochs=30,
    space=space,
    model=model,
    baseline={
        "model": "resnet18",
        "lr": 1e-3,
        "batch_size": 128,
        "optimizer": "adam",
        "random_crop": True,
        "hflip": True,
        "lr_schedule": "constant",
        "label_smoothing": 0.0,
        "l2": False,
    },
    baseline_source="report 001's pick: ResNet-18 (3x3 stem), batch 128, Adam 1e-3, crop + flip, 30 epochs",
    val_fraction=0.2,
)
