r"""Two-dimensional test functions for watching optimizers move (the lecture's pictures).

=================  =====================================================  ===================
name               :math:`f(x, y)`                                        minimum
=================  =====================================================  ===================
``saddle``         :math:`x^2 - y^2`                                      none (saddle at 0)
``rosenbrock``     :math:`(1 - x)^2 + 100 (y - x^2)^2`                    :math:`(1, 1)`, 0
``beale``          :math:`(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2`         :math:`(3, 0.5)`, 0
                   :math:`+ (2.625 - x + xy^3)^2`
``quadratic``      :math:`\frac12 (x^2 + 100 y^2)`, condition number 100  :math:`(0, 0)`, 0
``two_minima``     :math:`(x^2 - 1)^2 + 0.3 x + \frac12 y^2`              global near
                                                                          :math:`(-1.04, 0)`,
                                                                          local near
                                                                          :math:`(0.96, 0)`
=================  =====================================================  ===================

Each entry carries a start point, plot bounds and learning rates that make a readable picture
with the registry's optimizers: plain gradient methods need a rate below :math:`2 / L`, while
the adaptive ones take steps of about ``lr`` whatever the curvature, so the two families get
different rates (``lr`` and ``lr_overrides``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from gradkit._lookup import lookup


@dataclass(frozen=True)
class Function2d:
    """A test function of two variables and what it takes to picture optimizers on it.

    Attributes:
        name: the registry name.
        formula: :math:`f` in plain text, for titles.
        function: ``f(x, y)``, elementwise on tensors (so it maps a grid and differentiates).
        start: the default start point.
        bounds: ``((x_min, x_max), (y_min, y_max))`` of the plot.
        minima: the minimizers, global first (for ``saddle``, the saddle point).
        minimum: the global minimum value, or ``None`` where :math:`f` is unbounded below.
        lr: the default learning rate.
        lr_overrides: learning rates by optimizer registry name, over ``lr``.
        log_levels: draw contours of :math:`\\log(f - f^* + 1)` (for steep valleys).
    """

    name: str
    formula: str
    function: Callable[[Tensor, Tensor], Tensor]
    start: tuple[float, float]
    bounds: tuple[tuple[float, float], tuple[float, float]]
    minima: tuple[tuple[float, float], ...]
    minimum: float | None
    lr: float
    lr_overrides: Mapping[str, float] = field(default_factory=dict)
    log_levels: bool = False

    def __call__(self, point: Tensor) -> Tensor:
        """:math:`f` at ``point[..., 0], point[..., 1]``."""
        return self.function(point[..., 0], point[..., 1])

    def lr_for(self, optimizer: str) -> float:
        """The default learning rate for the registered optimizer ``optimizer``."""
        return self.lr_overrides.get(optimizer.lower(), self.lr)


def _saddle(x: Tensor, y: Tensor) -> Tensor:
    return x * x - y * y


def _rosenbrock(x: Tensor, y: Tensor) -> Tensor:
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _beale(x: Tensor, y: Tensor) -> Tensor:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _quadratic(x: Tensor, y: Tensor) -> Tensor:
    return 0.5 * (x * x + 100 * y * y)


_TILT = 0.3


def _two_minima(x: Tensor, y: Tensor) -> Tensor:
    return (x * x - 1) ** 2 + _TILT * x + 0.5 * y * y


def _two_minima_value(x: float) -> float:
    zero = torch.zeros((), dtype=torch.float64)
    return float(_two_minima(torch.tensor(x, dtype=torch.float64), zero))


def _two_minima_points() -> tuple[tuple[float, float], ...]:
    # Stationary points in x: f'(x) = 4x^3 - 4x + tilt = 0; the outer two roots are minima.
    roots = sorted(float(r.real) for r in np.roots([4.0, 0.0, -4.0, _TILT]))
    value = [_two_minima_value(r) for r in roots]
    outer = sorted((roots[0], roots[2]), key=lambda r: value[roots.index(r)])
    return tuple((r, 0.0) for r in outer)


_TWO_MINIMA = _two_minima_points()
_ADAPTIVE = ("adagrad", "rmsprop", "adadelta", "adam", "amsgrad", "adamax", "nadam", "adamw")


def _adaptive(lr: float, **more: float) -> Mapping[str, float]:
    return MappingProxyType({**dict.fromkeys(_ADAPTIVE, lr), **more})


_FUNCTIONS = (
    Function2d(
        "saddle", "x^2 - y^2", _saddle, (1.0, 1e-3), ((-1.5, 1.5), (-1.5, 1.5)), ((0.0, 0.0),),
        None, 0.05, _adaptive(0.05, adadelta=1.0),
    ),
    Function2d(
        "rosenbrock", "(1 - x)^2 + 100 (y - x^2)^2", _rosenbrock, (-1.2, 1.0),
        ((-2.0, 2.0), (-1.0, 3.0)), ((1.0, 1.0),), 0.0, 1e-3,
        _adaptive(0.05, adagrad=0.5, adadelta=1.0), True,
    ),
    Function2d(
        "beale", "(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2", _beale,
        (1.0, 1.5), ((-4.5, 4.5), (-4.5, 4.5)), ((3.0, 0.5),), 0.0, 1e-3,
        _adaptive(0.05, adagrad=0.5, adadelta=1.0), True,
    ),
    Function2d(
        "quadratic", "(x^2 + 100 y^2) / 2", _quadratic, (-4.0, 1.0), ((-5.0, 5.0), (-1.5, 1.5)),
        ((0.0, 0.0),), 0.0, 0.01, _adaptive(0.1, adagrad=1.0, adadelta=1.0), True,
    ),
    Function2d(
        "two_minima", "(x^2 - 1)^2 + 0.3 x + y^2 / 2", _two_minima, (1.8, 1.5),
        ((-2.0, 2.0), (-2.0, 2.0)), _TWO_MINIMA,
        _two_minima_value(_TWO_MINIMA[0][0]), 0.01,
        _adaptive(0.05, adagrad=0.5, adadelta=1.0),
    ),
)  # fmt: skip

FUNCTIONS_2D: Mapping[str, Function2d] = MappingProxyType({f.name: f for f in _FUNCTIONS})
"""Every 2-D test function by name."""


def get_function_2d(name: str) -> Function2d:
    """The test function called ``name``; a ``KeyError`` suggests the closest names."""
    return lookup(FUNCTIONS_2D, name, "test function")
