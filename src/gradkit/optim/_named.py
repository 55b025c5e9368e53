r"""The named optimizers: each is a short chain of transformations.

Every one is a ``torch.optim.Optimizer``; those torch.optim also has take the same arguments,
defaults and update rule. All accept ``maximize``, ``agc_clipping`` (adaptive gradient
clipping in front of the chain, off by default; see :func:`gradkit.optim.clip_by_agc`) and
``fused`` (compile the whole step; see :class:`gradkit.optim.ChainedOptimizer`).
"""

from __future__ import annotations

from typing import Any

from gradkit.optim._adam import scale_by_adam, scale_by_adamax, scale_by_nadam, scale_by_radam
from gradkit.optim._adan import scale_by_adan, scale_by_proximal_decay
from gradkit.optim._adaptive import scale_by_adadelta, scale_by_adagrad, scale_by_rms
from gradkit.optim._basic import add_decayed_weights, scale_by_learning_rate, trace
from gradkit.optim._clipping import clip_by_agc
from gradkit.optim._core import GradientTransformation, chain, unless, when
from gradkit.optim._layerwise import scale_by_trust_ratio
from gradkit.optim._optimizer import ChainedOptimizer, ParamsT
from gradkit.optim._sign import scale_by_lion


def _arguments(constructor_locals: dict[str, Any]) -> dict[str, Any]:
    """A named optimizer's constructor arguments, to pass on to :class:`ChainedOptimizer`.

    Call it as ``_arguments(locals())`` in the ``super().__init__`` call, before the
    constructor has any variable of its own: every argument but ``params`` is then a
    hyperparameter of the chain (or ``fused``), under its own name. A stray name would not
    pass unseen: :class:`ChainedOptimizer` rejects keys its chain does not read.
    """
    return {
        key: value
        for key, value in constructor_locals.items()
        if key not in ("self", "params") and not key.startswith("__")
    }


def _decay_either_way(adaptive: GradientTransformation) -> list[GradientTransformation]:
    """Coupled (L2) or decoupled weight decay around ``adaptive``, chosen per param group."""
    return [
        unless("decoupled_weight_decay", add_decayed_weights()),
        adaptive,
        when("decoupled_weight_decay", add_decayed_weights()),
    ]


class SGD(ChainedOptimizer):
    r"""Stochastic gradient descent with momentum, dampening and Nesterov momentum.

    As ``torch.optim.SGD`` (Sutskever et al., ICML 2013, for Nesterov):

    .. math::
        g \leftarrow g + \lambda\theta,\quad
        b_1 = g,\; b_t = \mu b_{t-1} + (1-\tau) g,\quad
        \theta \leftarrow \theta - \eta\,(g + \mu b_t \text{ if nesterov else } b_t)

    Chain: ``clip_by_agc → add_decayed_weights → trace → scale_by_learning_rate``.

    Example:
        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(clip_by_agc(None), add_decayed_weights(), trace(), scale_by_learning_rate()),
            **_arguments(locals()),
        )


class SGDW(ChainedOptimizer):
    r"""SGD with decoupled weight decay (Loshchilov & Hutter, arXiv 1711.05101, Alg. 1).

    .. math::
        b_t = \mu b_{t-1} + (1-\tau) g_t,\quad
        \theta \leftarrow \theta - \eta\,b_t - \eta\lambda\,\theta

    The decay bypasses the momentum buffer. The paper writes the decay as
    :math:`\eta_t\lambda'` with :math:`\eta_t` the schedule multiplier; here, as in torch's
    AdamW, it is ``lr * weight_decay``, which is the paper's rule with
    :math:`\lambda' = \eta_0\lambda` and follows any schedule of ``lr``. The paper keeps the
    rate inside the buffer; gradkit keeps torch's convention (outside), which differs only
    while the rate changes.

    Chain: ``clip_by_agc → trace → add_decayed_weights → scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 1e-2,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(clip_by_agc(None), trace(), add_decayed_weights(), scale_by_learning_rate()),
            **_arguments(locals()),
        )


class Adagrad(ChainedOptimizer):
    r"""AdaGrad (Duchi et al., JMLR 2011), as ``torch.optim.Adagrad`` (dense gradients only).

    .. math::
        g \leftarrow g + \lambda\theta,\quad s_t = s_{t-1} + g^2,\quad
        \theta \leftarrow \theta - \frac{\eta}{1 + (t-1)\delta}\,\frac{g}{\sqrt{s_t}+\epsilon}

    Chain: ``clip_by_agc → add_decayed_weights → scale_by_adagrad → scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None),
                add_decayed_weights(),
                scale_by_adagrad(),
                scale_by_learning_rate(),
            ),
            **_arguments(locals()),
        )


class RMSprop(ChainedOptimizer):
    r"""RMSProp (Hinton, 2012), plain or centered, with momentum, as ``torch.optim.RMSprop``.

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha)g^2,\quad
        b_t = \mu b_{t-1} + \frac{g}{\sqrt{v_t - \bar g_t^2} + \epsilon},\quad
        \theta \leftarrow \theta - \eta\, b_t

    (:math:`\bar g = 0` unless centered; no buffer when :math:`\mu = 0`).

    Chain: ``clip_by_agc → add_decayed_weights → scale_by_rms → trace →
    scale_by_learning_rate``. Its groups also carry ``dampening`` and ``nesterov`` (read by
    the momentum trace; torch's RMSprop has neither, and they default to off).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None),
                add_decayed_weights(),
                scale_by_rms(),
                trace(),
                scale_by_learning_rate(),
            ),
            **_arguments(locals()),
        )


class Adadelta(ChainedOptimizer):
    r"""Adadelta (Zeiler, arXiv 1212.5701), as ``torch.optim.Adadelta``.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g^2,\quad
        \Delta = \frac{\sqrt{a_{t-1}+\epsilon}}{\sqrt{v_t+\epsilon}}\,g,\quad
        a_t = \rho a_{t-1} + (1-\rho)\Delta^2,\quad \theta \leftarrow \theta - \eta\Delta

    Chain: ``clip_by_agc → add_decayed_weights → scale_by_adadelta → scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None),
                add_decayed_weights(),
                scale_by_adadelta(),
                scale_by_learning_rate(),
            ),
            **_arguments(locals()),
        )


class Adam(ChainedOptimizer):
    r"""Adam (arXiv 1412.6980) and AMSGrad (arXiv 1904.09237), as ``torch.optim.Adam``.

    .. math::
        m_t = \beta_1 m + (1-\beta_1) g,\quad v_t = \beta_2 v + (1-\beta_2) g^2,\quad
        \theta \leftarrow \theta - \eta\,\frac{m_t/(1-\beta_1^t)}
        {\sqrt{\hat v_t/(1-\beta_2^t)} + \epsilon}

    with :math:`\hat v_t = \max(\hat v_{t-1}, v_t)` under AMSGrad, else :math:`v_t`.
    ``weight_decay`` is an L2 term added to :math:`g`, or, with
    ``decoupled_weight_decay=True``, AdamW's decay.

    Chain: ``clip_by_agc → add_decayed_weights (coupled) → scale_by_adam →
    add_decayed_weights (decoupled) → scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(clip_by_agc(None), *_decay_either_way(scale_by_adam()), scale_by_learning_rate()),
            **_arguments(locals()),
        )


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, arXiv 1711.05101), as torch's.

    .. math::
        \theta \leftarrow \theta - \eta\left(\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        + \lambda\,\theta\right)

    The decay is ``lr * weight_decay`` per step (torch's convention), independent of the
    gradient statistics. Chain: ``scale_by_adam → add_decayed_weights →
    scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(params, **_arguments(locals()), decoupled_weight_decay=True)


class Adamax(ChainedOptimizer):
    r"""Adamax, Adam with the infinity norm (arXiv 1412.6980, Sec. 7.1), as torch's.

    .. math::
        m_t = \beta_1 m + (1-\beta_1) g,\quad s_t = \max(\beta_2 s, |g| + \epsilon),\quad
        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,\frac{m_t}{s_t}

    Chain: ``clip_by_agc → add_decayed_weights → scale_by_adamax → scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None),
                add_decayed_weights(),
                scale_by_adamax(),
                scale_by_learning_rate(),
            ),
            **_arguments(locals()),
        )


class NAdam(ChainedOptimizer):
    r"""NAdam (Dozat, 2016), Adam with Nesterov momentum, as ``torch.optim.NAdam``.

    .. math::
        \mu_t = \beta_1(1 - \tfrac12 0.96^{t\psi}),\quad
        \theta \leftarrow \theta - \eta\,\frac{1}{\sqrt{v_t/(1-\beta_2^t)}+\epsilon}
        \left(\frac{1-\mu_t}{1-\prod_{k\le t}\mu_k} g
        + \frac{\mu_{t+1}}{1-\prod_{k\le t+1}\mu_k} m_t\right)

    Chain: ``clip_by_agc → add_decayed_weights (coupled) → scale_by_nadam →
    add_decayed_weights (decoupled) → scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None), *_decay_either_way(scale_by_nadam()), scale_by_learning_rate()
            ),
            **_arguments(locals()),
        )


class RAdam(ChainedOptimizer):
    r"""RAdam (Liu et al., arXiv 1908.03265), as ``torch.optim.RAdam``.

    Adam whose adaptive rate is multiplied by the rectification :math:`r_t` once the
    variance of the adaptive rate is tractable (:math:`\rho_t > 5`); before that, SGD with
    bias-corrected momentum. See :func:`gradkit.optim.scale_by_radam`.

    Chain: ``clip_by_agc → add_decayed_weights (coupled) → scale_by_radam →
    add_decayed_weights (decoupled) → scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None), *_decay_either_way(scale_by_radam()), scale_by_learning_rate()
            ),
            **_arguments(locals()),
        )


class LARS(ChainedOptimizer):
    r"""Layer-wise adaptive rate scaling (You, Gitman & Ginsburg, arXiv 1708.03888, Alg. 1).

    For each parameter tensor ("layer") :math:`\theta`:

    .. math::
        \lambda = \frac{\eta\,\lVert\theta\rVert}{\lVert g\rVert + \beta\lVert\theta\rVert
        + \epsilon},\qquad
        v \leftarrow \mu v + \gamma\,\lambda\,(g + \beta\theta),\qquad
        \theta \leftarrow \theta - v

    with :math:`\gamma` = ``lr`` (the global rate), :math:`\eta` = ``trust_coefficient``,
    :math:`\beta` = ``weight_decay``, :math:`\mu` = ``momentum``. As in the paper, the rate is
    *inside* the momentum buffer. Common implementations differ: timm's ``Lars`` and NVIDIA's
    LARC keep torch's convention (rate outside the buffer) and use :math:`\epsilon = 10^{-8}`;
    the paper has no :math:`\epsilon` (0 here; a zero weight or update gets ratio 1).

    An exactly zero gradient (timm's ResNets initialise the last BatchNorm gain of each block
    to zero, so its first gradients can be 0) with a non-zero weight gets, by the formula,
    :math:`\lambda = \eta/\beta` when :math:`\beta > 0`: the weight decays at the rate
    :math:`\gamma\eta`. timm's ``Lars`` and NVIDIA's LARC use :math:`\lambda = 1` wherever
    :math:`\lVert g\rVert = 0` or :math:`\lVert\theta\rVert = 0`;
    ``unit_ratio_on_zero_grad=True`` does so too (the weight then decays at the rate
    :math:`\gamma\beta`, as in timm; LARC skips such a parameter's decay as well). Give
    biases and normalization parameters ``layer_adaptation=False`` and no weight decay with
    :func:`gradkit.optim.param_groups` (arXiv 2102.06356).

    Chain: ``clip_by_agc → scale_by_trust_ratio("lars") → scale_by_learning_rate → trace``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
        eps: float = 0.0,
        nesterov: bool = False,
        *,
        unit_ratio_on_zero_grad: bool = False,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None),
                scale_by_trust_ratio("lars"),
                scale_by_learning_rate(),
                trace(),
            ),
            **_arguments(locals()),
        )


class LAMB(ChainedOptimizer):
    r"""Layer-wise adaptive moments (You et al., arXiv 1904.00962, Alg. 2).

    For each parameter tensor :math:`\theta`, with Adam's bias-corrected moments:

    .. math::
        r_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon},\qquad
        \theta \leftarrow \theta - \eta\,\frac{\phi(\lVert\theta\rVert)}
        {\lVert r_t + \lambda\theta\rVert}\,(r_t + \lambda\theta)

    :math:`\phi` clamps to ``weight_norm_bounds`` (:math:`[\gamma_l, \gamma_u]`; ``None``, the
    default, is the identity that the paper's experiments and most implementations use). A zero
    weight or update norm gives ratio 1. Differences elsewhere: NVIDIA's and timm's LAMB clip the
    global gradient norm first (here: add :func:`clip_by_global_norm` to a chain or clip in the
    training loop); the first version of the paper had no bias correction.

    Chain: ``clip_by_agc → scale_by_adam → add_decayed_weights → scale_by_trust_ratio("lamb")
    → scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 1e-2,
        weight_norm_bounds: tuple[float, float] | None = None,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None),
                scale_by_adam(),
                add_decayed_weights(),
                scale_by_trust_ratio("lamb"),
                scale_by_learning_rate(),
            ),
            **_arguments(locals()),
        )


class Lion(ChainedOptimizer):
    r"""Lion, evolved sign momentum (Chen et al., arXiv 2302.06675, Alg. 2).

    .. math::
        \theta \leftarrow \theta - \eta\left(\operatorname{sign}(\beta_1 m + (1-\beta_1) g)
        + \lambda\theta\right),\qquad m \leftarrow \beta_2 m + (1-\beta_2) g

    Every coordinate moves by :math:`\eta` (plus the decay), so Lion wants a rate 3-10x
    smaller than AdamW's and a decay 3-10x larger for the same effective decay
    :math:`\eta\lambda` (the paper's advice). The decay is decoupled, as in the paper's
    Algorithm 2 and the authors' code (which writes it :math:`\theta(1-\eta\lambda)` before
    the step; here it is one update, :math:`-\eta(\operatorname{sign}(c) + \lambda\theta)`).

    Chain: ``clip_by_agc → scale_by_lion → add_decayed_weights → scale_by_learning_rate``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None),
                scale_by_lion(),
                add_decayed_weights(),
                scale_by_learning_rate(),
            ),
            **_arguments(locals()),
        )


class Adan(ChainedOptimizer):
    r"""Adan, adaptive Nesterov momentum (Xie et al., arXiv 2208.06677, Alg. 1).

    With :math:`d = g_t - g_{t-1}` (0 at the first step) and the averages of
    :func:`gradkit.optim.scale_by_adan`:

    .. math::
        \theta \leftarrow \frac{\theta - \eta\,(m_t + \beta_2 v_t)/(\sqrt{n_t}+\epsilon)}
        {1 + \eta\lambda}

    the proximal weight decay of Algorithm 1; with ``no_prox=True`` it is decoupled,
    :math:`\theta(1-\eta\lambda) - \eta\,(m_t + \beta_2 v_t)/(\sqrt{n_t}+\epsilon)`, as
    AdamW's. ``betas`` are in the convention of the authors' code, one minus the paper's
    (the paper's :math:`\beta_1 = 0.02` is ``betas[0] = 0.98``). The averages start at their
    first sample as in Algorithm 1; the authors' code, timm and pytorch_optimizer start them at
    zero and bias-correct them, which agrees on the first step only (see
    :func:`gradkit.optim.scale_by_adan`).

    Chain: ``clip_by_agc → scale_by_adan → add_decayed_weights → scale_by_learning_rate →
    scale_by_proximal_decay`` (the last unless ``no_prox``).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.98, 0.92, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        no_prox: bool = False,
        *,
        maximize: bool = False,
        agc_clipping: float | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            params,
            chain(
                clip_by_agc(None),
                scale_by_adan(),
                add_decayed_weights(),
                scale_by_learning_rate(),
                unless("no_prox", scale_by_proximal_decay()),
            ),
            **_arguments(locals()),
        )
