r"""Batch normalization whose statistics span every process of a data-parallel job, on CPU.

``torch.nn.SyncBatchNorm`` only runs on CUDA tensors. This layer computes the same statistics
with two ``torch.distributed.all_reduce`` calls (any backend, gloo included). Over the union
:math:`B` of the local batches, with :math:`n` elements per channel,

.. math:: \mu = \frac1n \sum_{x \in B} x, \qquad
          \sigma^2 = \frac1n \sum_{x \in B} (x - \mu)^2, \qquad
          y = \gamma\,\frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,

which is exactly batch normalization (Ioffe & Szegedy, arXiv 1502.03167) of the concatenated
batch, two-pass like torch's own kernel. The running variance is updated with the unbiased
:math:`\sigma^2 n / (n - 1)`, as ``nn.BatchNorm`` does. Gradients flow through the reductions:
the backward pass of a sum over processes is the sum over processes of the incoming gradients.
Half-precision inputs are reduced in float32 (a bfloat16 sum of a channel with mean 100 would
round the mean by up to 0.25) and the output is cast back to the input's dtype.

In evaluation mode it never communicates, like ``torch.nn.SyncBatchNorm``: it normalizes with
the running statistics, or, with ``track_running_stats=False``, with the statistics of the
local batch, exactly as ``nn.BatchNorm`` does. So one process may evaluate alone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Differentiable ``all_reduce(SUM)``: every process receives the sum; so do the gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        ctx.group = group
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def _world_size(group: Any) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


class CrossProcessBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalization synchronised over the processes of ``process_group``, on any device.

    Arguments and state are those of ``nn.BatchNorm1d``/``2d``/``3d`` (it accepts inputs of
    2 to 5 dimensions, channels second) plus ``process_group`` (``None``: the default group).
    Without an initialised process group, with one process, or in evaluation mode (which uses
    the running statistics, or the local batch's without them) it is plain batch normalization
    and does not communicate. In training, every process must call it the same number of times,
    as with DDP.

    Example:
        >>> model = convert_to_cross_process_batchnorm(model)  # before wrapping it in DDP
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype
        )
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2 or input.dim() > 5:
            raise ValueError(
                f"CrossProcessBatchNorm: expected a 2-D to 5-D input (batch, channels, ...), "
                f"got {input.dim()}-D"
            )

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        # As torch's SyncBatchNorm: only training synchronises; evaluation with
        # track_running_stats=False normalizes with the local batch, and never waits for a peer.
        if not self.training or _world_size(self.process_group) == 1:
            return super().forward(input)
        momentum = self._update_momentum()
        # float16/bfloat16 are reduced in float32; float64 stays float64
        x = input.to(torch.promote_types(input.dtype, torch.float32))
        dims = [0, *range(2, x.dim())]
        count = x.new_full((1,), x.numel() // x.shape[1])
        totals = _AllReduceSum.apply(torch.cat([x.sum(dims), count]), self.process_group)
        n = totals[-1]
        mean = totals[:-1] / n
        shape = (1, -1) + (1,) * (x.dim() - 2)
        centered = x - mean.view(shape)
        var = _AllReduceSum.apply((centered * centered).sum(dims), self.process_group) / n
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var * (n / (n - 1)) if n > 1 else var
                for buffer, value in ((self.running_mean, mean), (self.running_var, unbiased)):
                    buffer.lerp_(value.detach().to(buffer.dtype), momentum)  # type: ignore[union-attr]
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.to(x.dtype).view(shape) + self.bias.to(x.dtype).view(shape)
        return out.to(input.dtype)

    def _update_momentum(self) -> float:
        """The factor of this step's statistics, counting batches as ``nn.BatchNorm`` does."""
        if not (self.training and self.track_running_stats):
            return 0.0
        self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
        if self.momentum is None:  # cumulative moving average
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum


def convert_to_cross_process_batchnorm(module: nn.Module, process_group: Any = None) -> nn.Module:
    """Replace every ``nn.BatchNorm*`` in ``module`` by a :class:`CrossProcessBatchNorm`.

    Parameters and buffers are carried over (shared, not copied). Returns the converted module
    (a new object when ``module`` itself is a batch norm layer).
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, CrossProcessBatchNorm
    ):
        converted = CrossProcessBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            process_group,
        )
        if module.affine:
            converted.weight = module.weight
            converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_to_cross_process_batchnorm(child, process_group))
    return module
