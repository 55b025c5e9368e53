"""Diagnostics that explain why training works (floor 2, on :mod:`gradkit.nn`).

Signal propagation (arXiv 2101.08692, Fig. 1): :func:`signal_propagation` measures a network at
initialisation block by block; :func:`write_csv` and :func:`plot` write the data and the figure.
"""

from gradkit.diagnostics._signal_propagation import (
    COLUMNS,
    BlockSignal,
    SignalPropagation,
    plot,
    signal_propagation,
    write_csv,
)

__all__ = [
    "COLUMNS",
    "BlockSignal",
    "SignalPropagation",
    "plot",
    "signal_propagation",
    "write_csv",
]
