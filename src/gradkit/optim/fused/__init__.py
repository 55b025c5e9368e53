"""The fused backend: a whole optimizer step compiled by ``torch.compile`` into few kernels.

A :class:`~gradkit.optim.ChainedOptimizer` built with ``fused=True`` holds one
:class:`FusedBackend` and calls :meth:`FusedBackend.try_step` at each step; where it declines,
the optimizer steps eagerly. Nothing else in :mod:`gradkit.optim` imports this package, so
without it every optimizer still works, eagerly.

- :mod:`~gradkit.optim.fused._step`: the compiled program, its hyperparameter tensors, the
  per-step scalars and the counters (its buckets kept between steps by
  :mod:`gradkit.optim._plan`, which the default path shares);
- :mod:`~gradkit.optim.fused._direct`: the call of the program without dynamo's guards;
- :mod:`~gradkit.optim.fused._torch_private`: every private torch name the above use.
"""

from gradkit.optim.fused._backend import FusedBackend

__all__ = ["FusedBackend"]
