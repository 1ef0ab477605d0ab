"""mnist-denoise: report 002's three autoencoders removing N(0, 0.1) noise from MNIST.

The objective is the validation MSE between the reconstruction of a noisy image and the
clean image, on [0, 1] pixels. The noise alone scores 0.01, so only values well below
that are denoising; the report's training losses were about 0.015 (linear), 0.016 (MLP)
and 0.010 (conv).
"""

from hpsearch.spec import StudySpec
from hpsearch.tasks import DENOISE


def space(trial):
    p = {
        "arch": trial.suggest_categorical("arch", ["linear", "mlp", "conv"]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "batch_size": trial.suggest_int("batch_size", 16, 512, log=True),
        # Beyond report 002: a decaying schedule.
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "cosine", "onecycle"]),
    }
    if p["arch"] in ("linear", "mlp"):
        p["code"] = trial.suggest_int("code", 16, 256, log=True)
    if p["arch"] == "mlp":
        p["hidden"] = trial.suggest_int("hidden", 64, 1024, log=True)
    if p["arch"] == "conv":
        p["conv_width"] = trial.suggest_int("conv_width", 4, 32, log=True)
    return p


def model(p):
    if p["arch"] == "linear":
        return "linear_ae", {"code": p["code"]}
    if p["arch"] == "mlp":
        return "mlp_ae", {"hidden": p["hidden"], "code": p["code"]}
    w = p["conv_width"]
    return "conv_ae", {"widths": [w, 2 * w, 4 * w, 8 * w, 16 * w]}


SPEC = StudySpec(
    name="mnist-denoise",
    description="Report 002: linear, MLP and convolutional autoencoders denoising MNIST (sigma 0.1)",
    dataset="mnist",
    model_family="autoencoders",
    task=DENOISE,
    training_params=("lr", "batch_size", "lr_schedule"),
    max_epochs=20,
    space=space,
    model=model,
    baseline={"arch": "conv", "lr": 1e-3, "batch_size": 100, "lr_schedule": "constant", "conv_width": 16},
    baseline_source=(
        "report 002's best: the convolutional autoencoder (16-32-64-128-256), Adam; training MSE about 0.010"
    ),
    training_fixed={"noise_sigma": 0.1, "optimizer": "adam"},
    standardize=False,
)
