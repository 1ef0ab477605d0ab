"""hpsearch: Optuna hyperparameter searches for PyTorch image models."""

__version__ = "0.1.0"
