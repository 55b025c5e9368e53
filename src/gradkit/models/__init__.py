"""The model zoo: small, configurable models in one registry (floor 2, on :mod:`gradkit.nn`).

:data:`MODELS` holds one :class:`ModelSpec` per name: ``logistic``, ``mlp``, ``cnn`` and ``gru``
(the MNIST-1D paper's baselines, arXiv 2011.14439), ``resnet1d``/``resnet2d`` (pre-activation,
any norm) and ``nf_resnet1d``/``nf_resnet2d`` (normalizer-free, arXiv 2101.08692). Every model
exposes its classifier as ``.head`` (:func:`classifier_head`).

Example:
    >>> model = create_model("resnet1d", norm="group", depth=4)
"""

from gradkit.models._mnist1d import MLP, ConvNet1d, GRUClassifier, LogisticRegression
from gradkit.models._registry import (
    MODELS,
    ModelSpec,
    classifier_head,
    count_parameters,
    create_model,
    get_model,
)
from gradkit.models._resnet import NFResNet, ResNet

__all__ = [
    "MLP",
    "MODELS",
    "ConvNet1d",
    "GRUClassifier",
    "LogisticRegression",
    "ModelSpec",
    "NFResNet",
    "ResNet",
    "classifier_head",
    "count_parameters",
    "create_model",
    "get_model",
]
