"""cifar10-mlp: report 003's MLP with BatchNorm, graded dropout and an L2 term on CIFAR-10.

The report hand-tuned 25 runs to 58.08 % test: widths 1024-512-64-64-32-16, dropout
0.6 / 0.4 / 0.25, L2 lambda/(2m) on the first three layers, Adam 7e-4, batch 256.
"""

from hpsearch.spec import StudySpec

MAX_HIDDEN = 7


def space(trial):
    depth = trial.suggest_int("hidden_layers", 4, MAX_HIDDEN)
    widths = [trial.suggest_int(f"width{i}", 16, 2048, log=True) for i in range(1, depth + 1)]
    # The report's three graded rates: layers 1-2, layers 3-4, layer 5; none deeper.
    rates = [
        trial.suggest_float("dropout1", 0.2, 0.7),
        trial.suggest_float("dropout2", 0.1, 0.5),
        trial.suggest_float("dropout3", 0.0, 0.4),
    ]
    dropouts = [rates[0], rates[0], rates[1], rates[1], rates[2], 0.0, 0.0][:depth]
    return {
        "widths": widths,
        "dropouts": dropouts,
        "l2_lambda": trial.suggest_float("l2_lambda", 1e-4, 3e-2, log=True),
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "betas": (trial.suggest_float("beta1", 0.8, 0.95), trial.suggest_float("beta2", 0.99, 0.9999)),
        "batch_size": trial.suggest_int("batch_size", 64, 1024, log=True),
        # Beyond report 003, the levers a practitioner tries next: a decaying schedule, random
        # crop and flip on the device (the MLP sees shifted images too), label smoothing.
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "cosine", "onecycle"]),
        "crop_padding": 4 if trial.suggest_categorical("random_crop", [False, True]) else 0,
        "hflip": trial.suggest_categorical("hflip", [False, True]),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
    }


SPEC = StudySpec(
    name="cifar10-mlp",
    description="Report 003: MLP + BatchNorm + graded dropout + L2 on CIFAR-10",
    dataset="cifar10",
    model_family="MLP",
    training_params=("lr", "betas", "batch_size", "lr_schedule", "crop_padding", "hflip", "label_smoothing"),
    max_epochs=160,
    space=space,
    # The report's L2 term is the model's own (``models/mlp.py``: ``penalty``), on its first 3 layers.
    model=lambda p: (
        "mlp",
        {"widths": p["widths"], "dropouts": p["dropouts"], "l2_lambda": p["l2_lambda"], "l2_layers": 3},
    ),
    baseline={
        "hidden_layers": 6,
        "width1": 1024,
        "width2": 512,
        "width3": 64,
        "width4": 64,
        "width5": 32,
        "width6": 16,
        "dropout1": 0.6,
        "dropout2": 0.4,
        "dropout3": 0.25,
        "l2_lambda": 0.006,
        "lr": 7e-4,
        "beta1": 0.9,
        "beta2": 0.999,
        "batch_size": 256,
        "lr_schedule": "constant",
        "random_crop": False,
        "hflip": False,
        "label_smoothing": 0.0,
    },
    baseline_source=(
        "report 003's best: 1024-512-64-64-32-16, dropout 0.6/0.4/0.25, lambda 0.006, Adam 7e-4, batch 256; "
        "58.08 % test"
    ),
    training_fixed={"optimizer": "adam"},
    val_fraction=0.2,
)
