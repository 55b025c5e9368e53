"""gradkit: the optimization techniques of deep learning, drop-in for PyTorch and measurable."""

from gradkit import diagnostics, models, nn, optim, schedules

__version__ = "0.1.0"

__all__ = ["__version__", "diagnostics", "models", "nn", "optim", "schedules"]
