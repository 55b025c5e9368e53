"""Lookahead as a wrapper over any optimizer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

_HOOK_TABLES = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)


class Lookahead(torch.optim.Optimizer):
    r"""Lookahead (Zhang et al., arXiv 1907.08610, Alg. 1) over any optimizer.

    The wrapped ("fast") optimizer takes ``k`` steps from the slow weights :math:`\phi`; then the
    slow weights move a fraction ``alpha`` of the way to where it got, and the fast weights
    start again from there:

    .. math::
        \theta_{t,0} = \phi_{t-1},\qquad
        \theta_{t,i} = \theta_{t,i-1} + A(L, \theta_{t,i-1}) \ (i = 1..k),\qquad
        \phi_t = \phi_{t-1} + \alpha\,(\theta_{t,k} - \phi_{t-1})

    :math:`\phi_0` is the parameters at construction. The inner optimizer's state (momentum,
    Adam's moments) carries over the synchronization, as in the authors' and the common
    implementations. After every ``k``-th :meth:`step` the parameters hold :math:`\phi`; in
    between they hold the fast weights.

    The wrapper shares the inner optimizer's ``param_groups`` (so learning-rate schedulers work
    on either) and ``state``; ``state_dict()`` is the inner optimizer's, plus a ``"lookahead"``
    entry with the slow weights (by parameter index, as torch numbers them), the step count,
    ``k`` and ``alpha``::

        opt = Lookahead(torch.optim.AdamW(model.parameters(), lr=1e-3), k=5, alpha=0.5)
        loss_fn(model(x), y).backward()
        opt.step(); opt.zero_grad()
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"Lookahead: optimizer must be a torch.optim.Optimizer instance, got {optimizer!r}"
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Lookahead: invalid k={k!r}; expected an integer >= 1")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
            raise ValueError(f"Lookahead: invalid alpha={alpha!r}; expected a number in (0, 1]")
        self.base_optimizer = optimizer
        self.defaults = optimizer.defaults
        self.k = k
        self.alpha = float(alpha)
        self.lookahead_steps = 0
        """Inner steps taken; the slow weights moved after each ``k``-th."""
        self._slow: dict[Tensor, Tensor] = {}
        self._add_slow_weights(optimizer.param_groups)
        # torch.optim.Optimizer.__init__ would build new groups and state; Lookahead shares the
        # inner optimizer's, so it sets up only the hook tables and the step wrapper.
        for table in _HOOK_TABLES:
            setattr(self, table, OrderedDict())
        self._patch_step_function()

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base_optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.base_optimizer.param_groups = value

    @property  # type: ignore[override]
    def state(self) -> Any:
        return self.base_optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.base_optimizer.state = value

    @torch.no_grad()
    def _add_slow_weights(self, groups: list[dict[str, Any]]) -> None:
        for group in groups:
            for p in group["params"]:
                self._slow[p] = p.detach().clone(memory_format=torch.preserve_format)

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One inner step; after each ``k``-th, the slow weights' move and the reset."""
        loss = self.base_optimizer.step() if closure is None else self.base_optimizer.step(closure)
        self.lookahead_steps += 1
        if self.lookahead_steps % self.k == 0:
            self._synchronize()
        return loss

    @torch.no_grad()
    def _synchronize(self) -> None:
        params = self._params()
        slow = [self._slow[p] for p in params]
        torch._foreach_lerp_(slow, params, self.alpha)  # phi += alpha (theta - phi)
        torch._foreach_copy_(params, slow)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        state = self.base_optimizer.state_dict()
        state["lookahead"] = {
            "k": self.k,
            "alpha": self.alpha,
            "steps": self.lookahead_steps,
            "slow": {index: self._slow[p].clone() for index, p in enumerate(self._params())},
        }
        return state

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("lookahead")
        if not isinstance(saved, dict):
            raise ValueError(
                "Lookahead.load_state_dict: the state has no 'lookahead' entry (slow weights); "
                "it is not a Lookahead's state_dict"
            )
        for key in ("k", "alpha"):
            if saved.get(key) != getattr(self, key):
                raise ValueError(
                    f"Lookahead.load_state_dict: the state has {key}={saved.get(key)!r}, this "
                    f"Lookahead {key}={getattr(self, key)!r}; build it with the saved setting"
                )
        params = self._params()
        if sorted(saved["slow"]) != list(range(len(params))):
            raise ValueError(
                f"Lookahead.load_state_dict: the state has slow weights for "
                f"{len(saved['slow'])} parameters, this optimizer has {len(params)}"
            )
        inner = {key: value for key, value in state_dict.items() if key != "lookahead"}
        self.base_optimizer.load_state_dict(inner)
        for index, p in enumerate(params):
            self._slow[p].copy_(saved["slow"][index])
        self.lookahead_steps = int(saved["steps"])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.base_optimizer.add_param_group(param_group)
        self._add_slow_weights(self.base_optimizer.param_groups[-1:])

    def __getstate__(self) -> dict[str, Any]:
        """What ``copy.deepcopy`` and ``pickle`` keep: the inner optimizer and the slow weights."""
        return {
            "base_optimizer": self.base_optimizer,
            "defaults": self.defaults,
            "k": self.k,
            "alpha": self.alpha,
            "lookahead_steps": self.lookahead_steps,
            "_slow": self._slow,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for table in _HOOK_TABLES:
            setattr(self, table, OrderedDict())
        self._patch_step_function()

    def __repr__(self) -> str:
        return f"Lookahead({self.base_optimizer!r}, k={self.k}, alpha={self.alpha})"
