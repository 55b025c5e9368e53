"""The classes behind the gradient transformations, for writing or inspecting one.

A chain is built from the lower-case factories in :mod:`gradkit.optim` (``scale_by_adam()``,
``trace()``, ``add_decayed_weights()``, ...); each returns an instance of one of the classes
here. Use this module to subclass :class:`~gradkit.optim.GradientTransformation` the way they
do (a transformation's :meth:`apply` receives a :class:`Bucket`), to check what a chain holds
(``isinstance(t, ScaleByAdam)``, ``Chain.transformations``), or to annotate code that keeps
them. Training code needs only :mod:`gradkit.optim`.

Example:
    >>> from gradkit.optim import LAMB
    >>> from gradkit.optim.transforms import ScaleByTrustRatio
    >>> opt = LAMB([torch.zeros(3, requires_grad=True)])
    >>> [t for t in opt.transformation.transformations if isinstance(t, ScaleByTrustRatio)]
    [scale_by_trust_ratio(form='lamb')]
"""

from gradkit.optim._adam import ScaleByAdam, ScaleByAdamax, ScaleByNadam, ScaleByRadam
from gradkit.optim._adan import ScaleByAdan, ScaleByProximalDecay
from gradkit.optim._adaptive import ScaleByAdadelta, ScaleByAdagrad, ScaleByRms
from gradkit.optim._basic import AddDecayedWeights, ScaleByLearningRate, Trace
from gradkit.optim._clipping import ClipByAgc, ClipByGlobalNorm
from gradkit.optim._core import Bucket, Chain, Conditional
from gradkit.optim._layerwise import ScaleByTrustRatio
from gradkit.optim._sign import ScaleByLion

__all__ = [
    "AddDecayedWeights",
    "Bucket",
    "Chain",
    "ClipByAgc",
    "ClipByGlobalNorm",
    "Conditional",
    "ScaleByAdadelta",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByAdamax",
    "ScaleByAdan",
    "ScaleByLearningRate",
    "ScaleByLion",
    "ScaleByNadam",
    "ScaleByProximalDecay",
    "ScaleByRadam",
    "ScaleByRms",
    "ScaleByTrustRatio",
    "Trace",
]
