"""Layers that torch.nn lacks: normalization factory, cross-process batch norm, weight-
standardized convolutions, gamma-scaled activations, stochastic depth and residual blocks.

Floor 1: depends on torch and numpy only. :func:`make_norm` builds torch.nn's own norm layers;
:class:`CrossProcessBatchNorm` is batch norm over every process of a data-parallel job on CPU;
:class:`ScaledWSConv2d` and :func:`activation_gamma` are the ingredients of NF-ResNets
(arXiv 2101.08692), whose blocks (:class:`NFBlock`) sit beside the pre-activation ResNet block
(:class:`PreActBlock`). Dropout is ``torch.nn.Dropout``, used as it is.
"""

from torch.nn import Dropout

from gradkit.nn._activations import ACTIVATIONS, RELU_GAMMA, Activation, activation_gamma
from gradkit.nn._blocks import NFBlock, PreActBlock, ResidualBlock
from gradkit.nn._cross_process_batchnorm import (
    CrossProcessBatchNorm,
    convert_to_cross_process_batchnorm,
)
from gradkit.nn._norm import NORM_KINDS, make_norm
from gradkit.nn._stochastic_depth import StochasticDepth, stochastic_depth
from gradkit.nn._weight_standardization import (
    ScaledWSConv1d,
    ScaledWSConv2d,
    WSConv1d,
    WSConv2d,
)

__all__ = [
    "ACTIVATIONS",
    "NORM_KINDS",
    "RELU_GAMMA",
    "Activation",
    "CrossProcessBatchNorm",
    "Dropout",
    "NFBlock",
    "PreActBlock",
    "ResidualBlock",
    "ScaledWSConv1d",
    "ScaledWSConv2d",
    "StochasticDepth",
    "WSConv1d",
    "WSConv2d",
    "activation_gamma",
    "convert_to_cross_process_batchnorm",
    "make_norm",
    "stochastic_depth",
]
