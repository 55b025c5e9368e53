"""The gradient-transformation protocol and ``chain``.

A step of a gradkit optimizer works on *buckets*: the parameters of one param group that have a
gradient, on one device and of one dtype, with their gradients copied into ``updates`` (negated
under ``maximize``). Each transformation rewrites ``updates`` in place with multi-tensor
(``torch._foreach_*``) ops; after the last one the optimizer adds ``updates`` to the parameters.
A transformation sees every bucket of the step at once, so a global quantity (the norm for
global-norm clipping) is one pass.

Every hyperparameter is read from the bucket's param group at each step, never cached, so
``torch.optim.lr_scheduler`` and gradkit's schedules of lr, momentum or betas take effect.

A rule (a :class:`GradientTransformation` subclass) is at most five methods, of which it writes
the ones it needs: ``init_state`` (its per-parameter buffers and counters), ``apply`` (the
update of one bucket, with multi-tensor ops; or ``update``, over every bucket at once),
``scalars`` (the per-step numbers computed from step counts, optional) and ``validate``
(relations between keys, optional). The same rule runs on every path: eagerly, traced by the
fused backend (:mod:`gradkit.optim.fused`, which hands it a bucket that answers the same
questions with tensors, and may trace a lowering of its own in place of a rule, as it does for
the trust ratio), and under a caller's ``torch.compile``. Lion (``_sign.py``) is a complete
example in 54 lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradkit.optim._hyper import Hyper, boolean


def scalar_dtype() -> torch.dtype:
    """torch.optim's dtype for ``step`` and ``mu_product``: float64 iff that is the default."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


@dataclass
class Bucket:
    """The parameters of one param group with a gradient, on one device, of one dtype.

    Attributes:
        group: the param group (hyperparameters are read from it at each step).
        group_index: its position in ``optimizer.param_groups`` (for messages).
        params: the parameters.
        updates: the running update of each parameter; starts as (a copy of) the gradient and
            ends as the quantity added to the parameter.
        states: the per-parameter state dicts (``optimizer.state[p]``).
        steps: the step count of each parameter, already incremented for this step (1 on the
            first step), as Python floats like torch.optim's ``_get_value(state["step"])``
            (0-d float64 tensors when the caller traces the step with ``torch.compile``).

    Rules read numbers with :meth:`value`, ask :meth:`is_off` before skipping work, and get
    per-step numbers from :meth:`per_step`; booleans (``nesterov``, ``amsgrad``) are read from
    ``group`` directly. Those methods are the whole contract: the fused backend hands rules a
    subclass that answers them with tensors and arrays
    (:class:`gradkit.optim.fused._bucket.FusedBucket`), so a rule never asks which path it is on.
    """

    group: dict[str, Any]
    group_index: int
    params: list[Tensor]
    updates: list[Tensor]
    states: list[dict[str, Any]]
    steps: list[Any] = field(default_factory=list)

    def value(self, key: str) -> Any:
        """A numeric hyperparameter (the group's number here; a 0-d tensor inside the fused
        backend's compiled program)."""
        return self.group[key]

    def per_step(self, function: Callable[[Any], Any]) -> Any:
        """``function`` of each parameter's step count, one per parameter.

        Here a list, ``[function(t) for t in steps]``, the arithmetic torch.optim does. The
        fused backend applies ``function`` once to the counts as one float64 numpy array,
        with :meth:`value` giving Python floats: a bias correction of 68 parameters is one
        numpy operation there, not 68. Write ``function`` for both (numbers and arrays), index
        the result per parameter or pass it through :func:`unstack`.
        """
        return [function(step) for step in self.steps]

    def per_step_reciprocal(self, function: Callable[[Any], Any]) -> Any:
        """``1 / function(t)`` for each parameter's step count (:meth:`per_step`): a scalar
        that updates are divided by, as the factor they are multiplied by, on both paths.

        A C++ compiler must not turn a division by a loop-invariant value into a
        multiplication, so a compiled step that divided would divide every vector of every
        parameter (fused Adam at 10M parameters: 8.0 ms against 7.5 with reciprocals). The
        reciprocal is one rounding more, in float64, against torch.optim's division.
        """
        values = self.per_step(function)
        return [1.0 / value for value in values] if isinstance(values, list) else 1.0 / values

    def advance_counters(self, key: str, factors: Any) -> Any:
        """Multiply each parameter's 0-d state counter ``key`` by its factor, in the
        counter's dtype (as torch.optim's ``mu_product *= mu``), and return the products as
        float64 (as torch's ``float(mu_product)``), one per parameter, in the form
        :meth:`per_step` gives (the fused backend multiplies all of them in one operation)."""
        products = []
        for state, factor in zip(self.states, factors, strict=True):
            counter = state[key]
            counter *= factor
            products.append(float(counter))
        return products

    def step_scalars(self, transformation: GradientTransformation) -> dict[str, Any]:
        """``transformation``'s :meth:`~GradientTransformation.scalars` of this step (the
        fused backend computes them before its compiled program and hands those)."""
        values = transformation.scalars(self)
        if values is None:
            raise RuntimeError(
                f"{transformation.name}: apply reads step scalars but scalars() is None"
            )
        return values

    def is_off(self, key: str) -> bool:
        """Whether ``key`` is ``None`` or 0 in this group (a structural, not a numeric, fact)."""
        return is_off(self.group[key])


def elementwise(function: Callable[..., Any], *values: Any) -> Any:
    """``function`` of per-parameter scalars (what :meth:`Bucket.per_step` gives): element by
    element over lists (the eager path's numbers, or 0-d tensors inside a compiled eager step),
    once over arrays (the fused path's)."""
    if isinstance(values[0], list):
        return [function(*items) for items in zip(*values, strict=True)]
    return function(*values)


def select(condition: Any, if_true: Any, if_false: Any) -> Any:
    """``if_true`` where ``condition`` holds, else ``if_false``, for a Python or numpy
    boolean, a numpy array (``np.where``) or a tensor (``torch.where``): a rule's switch
    written once for every kind of per-step scalar."""
    if isinstance(condition, (bool, np.bool_)):
        return if_true if condition else if_false
    if isinstance(condition, np.ndarray):
        return np.where(condition, if_true, if_false)
    return torch.where(condition, if_true, if_false)


def unstack(values: Any) -> list[Any]:
    """Per-parameter scalars as a list: a list as it is, a numpy array (the eager path's
    :meth:`GradientTransformation.scalars`) as Python numbers, a tensor (the fused path's,
    made from the same array) as its 0-d elements."""
    if isinstance(values, list):
        return values
    if isinstance(values, np.ndarray):
        return values.tolist()
    return list(values.unbind())


def is_off(value: Any) -> bool:
    """``None`` or zero (a number or a one-element tensor)."""
    if value is None:
        return True
    if isinstance(value, (tuple, list, bool, str)):
        return False
    return bool(value == 0)


class GradientTransformation:
    """One named step of an optimizer: a map from updates to updates.

    Subclasses declare the param-group keys they read in ``hypers`` (key -> :class:`Hyper`),
    create their per-parameter state in :meth:`init_state` and rewrite ``bucket.updates`` in
    :meth:`apply`. :meth:`update` runs :meth:`apply` on every bucket; override it only for
    transformations that need all buckets at once (global-norm clipping).

    ``guard_free = True`` on a subclass declares that its traced code (``apply``, ``update``)
    depends only on what a compiled step checks itself: the buckets' tensors (their shapes,
    dtypes, strides, devices), the param groups' hyperparameters read through the bucket
    (``value``, ``is_off``; booleans from ``group``), the state entries and the per-step
    scalars, never on an attribute that may change, a global or anything else. Then a fused
    step (``fused=True``) calls its compiled program without dynamo's guards while those match,
    which saves most of a small model's fixed cost per step. Left ``False`` (the default),
    every call runs through dynamo's guards, which see any Python value the code read. The
    declaration is not inherited: a subclass may read more than its base, so it declares
    itself again. All of gradkit's transformations are guard free.
    """

    name: str = "transformation"
    guard_free: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "guard_free" not in cls.__dict__:
            cls.guard_free = False  # not inherited (see the class docstring)

    def __init__(self, hypers: Iterable[Hyper] = ()) -> None:
        self.hypers: dict[str, Hyper] = {hyper.key: hyper for hyper in hypers}

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Create this transformation's entries in a parameter's state (first step only).

        An entry made as a 0-d tensor is a *counter* (NAdam's ``mu_product``), not an
        element-wise buffer: make it in :func:`scalar_dtype` and advance it in :meth:`scalars`
        with :meth:`Bucket.advance_counters`. The optimizer keeps counters in that dtype on
        ``load_state_dict`` and the fused backend gathers them into one array per key
        (:func:`counter_keys` finds them).
        """

    def validate(self, groups: Mapping[int, dict[str, Any]], owner: str) -> None:
        """Check relations between the keys of a group, or between groups; raise
        ``ValueError`` naming the group, the keys and their values if one is broken.

        ``groups``: the param groups this transformation runs on, by their index in
        ``optimizer.param_groups``. Called when a group is added and before every step (a
        group may have been edited since), before any state changes. Each key's own range is
        checked already (:class:`~gradkit.optim._hyper.Hyper`).
        """

    def apply(self, bucket: Bucket) -> None:
        """Rewrite ``bucket.updates`` in place."""
        raise NotImplementedError

    def update(self, buckets: Sequence[Bucket]) -> None:
        """Rewrite the updates of every bucket of this step."""
        for bucket in buckets:
            self.apply(bucket)

    def scalars(self, bucket: Bucket) -> dict[str, Any] | None:
        """The numbers of this step that depend only on step counts and hyperparameters.

        Bias corrections, NAdam's momentum schedule, RAdam's rectification: per-parameter
        scalars, not arrays. Override to return them by name (use :meth:`Bucket.per_step`)
        and read them in :meth:`apply` with :meth:`Bucket.step_scalars`. On the fused path they are
        computed eagerly, with numpy (:meth:`Bucket.per_step` gives an array, :meth:`Bucket.value`
        floats; arrays returned here become tensors), before the compiled program, which takes
        them as inputs: inductor inlines scalar arithmetic into every consumer loop, so a
        ``beta ** step`` inside the compiled program is recomputed once per vector of every
        parameter (a libm ``pow`` that the C++ compiler may not hoist), which made fused Adam
        2x slower than torch's fused kernel. May update 0-d counters in the state (NAdam's
        ``mu_product``, with :meth:`Bucket.advance_counters`): it runs once per step.
        """
        return None

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={hyper.default!r}" for key, hyper in self.hypers.items())
        return f"{self.name}({settings})"


class Chain(GradientTransformation):
    """Transformations applied one after the other; see :func:`chain`."""

    name = "chain"

    def __init__(self, transformations: Sequence[GradientTransformation]) -> None:
        super().__init__()
        if not transformations:
            raise ValueError("chain: expected at least one transformation, got none")
        for transformation in transformations:
            if not isinstance(transformation, GradientTransformation):
                raise TypeError(
                    f"chain: expected GradientTransformation instances, got {transformation!r}"
                )
            for key, hyper in transformation.hypers.items():
                known = self.hypers.get(key)
                if known is not None and _differs(known.default, hyper.default):
                    raise ValueError(
                        f"chain: {transformation.name} and an earlier transformation both read "
                        f"the param-group key {key!r} but with different defaults "
                        f"({known.default!r} and {hyper.default!r}); give them the same value"
                    )
                self.hypers.setdefault(key, hyper)
        self.transformations = tuple(transformations)

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        for transformation in self.transformations:
            transformation.init_state(param, state, group)

    def validate(self, groups: Mapping[int, dict[str, Any]], owner: str) -> None:
        for transformation in self.transformations:
            transformation.validate(groups, owner)

    def update(self, buckets: Sequence[Bucket]) -> None:
        for transformation in self.transformations:
            transformation.update(buckets)

    def __repr__(self) -> str:
        return "chain(" + ", ".join(repr(t) for t in self.transformations) + ")"


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return a is not b
    return bool(a != b)


def chain(*transformations: GradientTransformation) -> Chain:
    """Compose transformations: the updates flow through them left to right.

    Each transformation reads its hyperparameters from the param group under fixed keys (see
    each one's docstring). Two transformations may share a key (the weight decay of a coupled
    and of a decoupled step) only if they give it the same default.

    Example:
        >>> from gradkit.optim import ChainedOptimizer, chain, scale_by_adam
        >>> from gradkit.optim import add_decayed_weights, scale_by_learning_rate
        >>> adamw = chain(scale_by_adam(), add_decayed_weights(0.01), scale_by_learning_rate(1e-3))
        >>> opt = ChainedOptimizer([torch.zeros(3, requires_grad=True)], adamw)
    """
    return Chain(transformations)


class Conditional(GradientTransformation):
    """A transformation that runs only on groups where a boolean key has a given value."""

    def __init__(self, key: str, value: bool, inner: GradientTransformation) -> None:
        # The flag defaults to False: an absent key means "off", whichever branch this is.
        super().__init__([*inner.hypers.values(), Hyper(key, False, boolean)])
        self.key, self.value, self.inner = key, value, inner
        self.name = f"{'when' if value else 'unless'}({key!r}, {inner.name})"

    def init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        self.inner.init_state(param, state, group)

    def validate(self, groups: Mapping[int, dict[str, Any]], owner: str) -> None:
        chosen = {i: g for i, g in groups.items() if bool(g.get(self.key, False)) is self.value}
        if chosen:
            self.inner.validate(chosen, owner)

    def _chosen(self, buckets: Sequence[Bucket]) -> list[Bucket]:
        return [b for b in buckets if bool(b.group.get(self.key, False)) is self.value]

    def update(self, buckets: Sequence[Bucket]) -> None:
        chosen = self._chosen(buckets)
        if chosen:
            self.inner.update(chosen)

    def __repr__(self) -> str:
        return f"{'when' if self.value else 'unless'}({self.key!r}, {self.inner!r})"


def leaves(
    transformation: GradientTransformation, buckets: Sequence[Bucket]
) -> Iterator[tuple[GradientTransformation, list[Bucket]]]:
    """The transformations of a composition that are not themselves :class:`Chain` or
    :class:`Conditional`, in order, each with the buckets it runs on (none where a branch is
    not taken). A transformation of any other type is a leaf, whatever it holds."""
    if isinstance(transformation, Chain):
        for inner in transformation.transformations:
            yield from leaves(inner, buckets)
    elif isinstance(transformation, Conditional):
        chosen = transformation._chosen(buckets)
        if chosen:
            yield from leaves(transformation.inner, chosen)
    else:
        yield transformation, list(buckets)


def counter_keys(
    transformation: GradientTransformation, groups: Sequence[dict[str, Any]]
) -> tuple[str, ...]:
    """The state keys that ``transformation.init_state`` makes as 0-d tensors for any of
    ``groups``: its counters (see :meth:`GradientTransformation.init_state`).

    Found by creating the state of a two-element probe parameter once per group: an
    element-wise buffer has the parameter's shape, a counter none, whatever the real
    parameters' shapes (a 0-d parameter's buffers are 0-d too, so the real state could not
    tell them apart).
    """
    probe = torch.zeros(2)
    keys: list[str] = []
    for group in groups:
        state: dict[str, Any] = {}
        transformation.init_state(probe, state, group)
        keys += [
            key
            for key, value in state.items()
            if isinstance(value, Tensor) and value.dim() == 0 and key not in keys
        ]
    return tuple(keys)


def when(key: str, transformation: GradientTransformation) -> Conditional:
    """Run ``transformation`` only on param groups whose boolean ``key`` is true."""
    return Conditional(key, True, transformation)


def unless(key: str, transformation: GradientTransformation) -> Conditional:
    """Run ``transformation`` only on param groups whose boolean ``key`` is false (or absent)."""
    return Conditional(key, False, transformation)
