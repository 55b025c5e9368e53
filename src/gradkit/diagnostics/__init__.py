"""Diagnostics that explain why training works (floor 2, on :mod:`gradkit.nn` and ``optim``).

- Signal propagation (arXiv 2101.08692, Fig. 1): :func:`signal_propagation` measures a network at
  initialisation block by block; :func:`write_csv` and :func:`plot` write the data and the figure.
- Trajectories of optimizers on 2-D test functions (:data:`FUNCTIONS_2D`):
  :func:`run_trajectories`, :func:`plot_trajectories`, :func:`animate_trajectories` (GIF).
- Loss landscapes (arXiv 1712.09913, 1609.04836): :func:`interpolate`, :func:`slice_1d`,
  :func:`slice_2d` along :func:`random_direction` (filter-normalized), :func:`plot_landscape`.
- The Hessian by Hessian-vector products: :func:`hessian_eigenvalues` (power iteration with
  deflation, or Lanczos) and :func:`hessian_trace` (Hutchinson).
- ε-sharpness (arXiv 1609.04836): :func:`sharpness`.
- The LR range test (arXiv 1506.01186): :func:`lr_range_test`, :func:`plot_lr_range_test`.
- Layer-wise norms (arXiv 1708.03888): :class:`LayerwiseMonitor`, a training callback.

The model diagnostics take a dataset as a ``DataLoader``, a ``TensorDataset`` or a pair of
tensors (:data:`Data`), evaluate in evaluation mode and leave the model as they found it.
"""

from gradkit.diagnostics._evaluation import Data, LossFunction, preserved
from gradkit.diagnostics._functions_2d import FUNCTIONS_2D, Function2d, get_function_2d
from gradkit.diagnostics._hessian import (
    HessianEigenvalues,
    HessianOperator,
    HessianTrace,
    hessian_eigenvalues,
    hessian_trace,
    hutchinson,
    lanczos,
    power_iteration,
)
from gradkit.diagnostics._landscape import (
    Direction,
    Landscape,
    interpolate,
    plot_landscape,
    random_direction,
    slice_1d,
    slice_2d,
)
from gradkit.diagnostics._layerwise import LAYERWISE_COLUMNS, LayerRecord, LayerwiseMonitor
from gradkit.diagnostics._lr_finder import LRRangeTest, lr_range_test, plot_lr_range_test
from gradkit.diagnostics._sharpness import Sharpness, sharpness
from gradkit.diagnostics._signal_propagation import (
    COLUMNS,
    BlockSignal,
    SignalPropagation,
    plot,
    signal_propagation,
    write_csv,
)
from gradkit.diagnostics._trajectories import (
    OptimizerLike,
    Trajectories,
    Trajectory,
    animate_trajectories,
    plot_trajectories,
    run_trajectories,
)

__all__ = [
    "COLUMNS",
    "FUNCTIONS_2D",
    "LAYERWISE_COLUMNS",
    "BlockSignal",
    "Data",
    "Direction",
    "Function2d",
    "HessianEigenvalues",
    "HessianOperator",
    "HessianTrace",
    "LRRangeTest",
    "Landscape",
    "LayerRecord",
    "LayerwiseMonitor",
    "LossFunction",
    "OptimizerLike",
    "Sharpness",
    "SignalPropagation",
    "Trajectories",
    "Trajectory",
    "animate_trajectories",
    "get_function_2d",
    "hessian_eigenvalues",
    "hessian_trace",
    "hutchinson",
    "interpolate",
    "lanczos",
    "lr_range_test",
    "plot",
    "plot_landscape",
    "plot_lr_range_test",
    "plot_trajectories",
    "power_iteration",
    "preserved",
    "random_direction",
    "run_trajectories",
    "sharpness",
    "signal_propagation",
    "slice_1d",
    "slice_2d",
    "write_csv",
]
