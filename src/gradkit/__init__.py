"""gradkit: the optimization techniques of deep learning, drop-in for PyTorch and measurable."""

from gradkit import optim

__version__ = "0.1.0"

__all__ = ["__version__", "optim"]
