"""Every private torch name the fused step uses, each behind one small documented function.

torch's public API compiles a function (``torch.compile``) and lets a caller filter or skip
dynamo's guards (``guard_filter_fn``, ``torch.compiler.set_stance``), but it has no public way
to check a list of tensors against the metadata a compiled program was specialized on, to
snapshot torch's global state, or to change inductor's fusion heuristics and code-generation
settings for one program. The fused step needs each of these (why, in each function's
docstring); nothing else in gradkit imports a private torch name (tests aside).

Each hook was checked against torch 2.13.0 (its source and its behaviour); gradkit declares
torch>=2.4, and releases between were not checked here, which is what
``tests/optim/test_torch_private.py`` is for: one test per hook that fails (never skips) when
the installed torch lacks it or it behaves otherwise. Where a hook fails at run time the fused
step stays on dynamo's guarded call (:func:`tensor_checks`, :func:`global_state_snapshot`) or
on inductor's defaults, with one warning per missing option (:func:`known_inductor_options`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor


def tensor_checks(tensors: Sequence[Tensor]) -> Any:
    """A checker of ``tensors``' metadata: ``checker.check(*others)`` is whether ``others``
    match them in dtype, device, shape, strides, dispatch keys and ``requires_grad``.

    ``torch._C._dynamo.guards.TensorGuards``: the C++ check dynamo itself makes for each input
    of a compiled program (its TENSOR_MATCH guard), over all tensors in one call. In Python the
    same checks cost about 1 us per tensor, a 70-parameter Adam step's 280 tensors more than
    its compiled arithmetic. Public torch offers it only inside a full guard evaluation.
    Checked on torch 2.13 (with the keywords ``dynamic_dims_sizes``/``dynamic_dims_strides``).
    """
    from torch._C._dynamo.guards import TensorGuards

    return TensorGuards(*tensors, dynamic_dims_sizes=None, dynamic_dims_strides=None)


def global_state_snapshot() -> Any:
    """A snapshot of torch's global state: ``snapshot.check()`` is whether it is unchanged.

    ``torch._C._dynamo.guards.GlobalStateGuard``: grad mode, the default dtype, deterministic
    algorithms, autocast, torch-function mode and the rest of what dynamo's GLOBAL_STATE guard
    compares; a compiled program is specialized on all of them. No public API reads them as
    one. Checked on torch 2.13.
    """
    from torch._C._dynamo.guards import GlobalStateGuard

    return GlobalStateGuard()


def compile_with_inductor(
    graph: torch.fx.GraphModule, example_inputs: Sequence[Any], options: Mapping[str, Any]
) -> Callable[..., Any]:
    """Inductor's compilation of ``graph`` with the config ``options`` and the step's fusion
    heuristics (:func:`step_choices_class`) installed while it compiles.

    ``torch._inductor.compile_fx.compile_fx`` and ``torch._inductor.virtualized.V``: a
    ``torch.compile`` backend is the public way to run code while a program compiles, and
    inductor's own backend has no public entry point that takes config patches. The
    heuristics are set through ``V.set_choices_handler``, not only through the
    ``inductor_choices_class`` option (which enters inductor's cache key): inductor reads
    that option once per thread, when its first program compiles. Checked on torch 2.13.
    """
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.virtualized import V

    with V.set_choices_handler(step_choices_class()()):
        return compile_fx(graph, example_inputs, config_patches=dict(options))


def inductor_option_exists(name: str) -> bool:
    """Whether ``torch._inductor.config`` has the option ``name`` (dotted, e.g. ``cpp.x``).

    Inductor's settings (``size_asserts``, ``cpp.min_chunk_size``, ...) live only in that
    private module; ``torch.compile(options=...)`` passes them on but rejects unknown ones.
    Checked on torch 2.13.
    """
    from torch._inductor import config

    owner: Any = config
    *path, leaf = name.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    return owner is not None and hasattr(owner, leaf)


def known_inductor_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without those the installed torch lacks, with one warning per missing name.

    Each is a speed setting: without it the step gives the same numbers, slower. Inductor
    rejects an unknown option, so it is left out rather than passed; a warning (once per
    option and process) says so, since a torch upgrade that renamed one would otherwise lose
    a speed-up unseen. ``tests/optim/test_torch_private.py`` fails on such a torch.
    """
    known = {}
    for name, value in options.items():
        if inductor_option_exists(name):
            known[name] = value
        else:
            _warn_missing_option(name)
    return known


@functools.cache
def _warn_missing_option(name: str) -> None:
    warnings.warn(
        f"gradkit fused step: torch {torch.__version__} has no inductor option {name!r}; "
        f"the step compiles without it (same numbers, possibly slower)",
        RuntimeWarning,
        stacklevel=4,
    )


@functools.cache
def step_choices_class() -> type:
    """Inductor's heuristics for an optimizer step (a class, made once, on first use).

    A subclass of ``torch._inductor.choices.InductorChoices``, the one documented way to change
    inductor's heuristics from outside torch (no public API). Inductor refuses to fuse two
    loops that are more than 64 nodes apart in the program, to keep the temporaries of a long
    model from living longer. In an optimizer step over many parameters every multi-tensor
    operation is one node per parameter, so a parameter's second-moment update and the loop
    that reads it are hundreds of nodes apart: with 68 parameters fused LAMB re-read the
    second moment and the gradient in a loop of their own (48 bytes per parameter instead of
    40). Here loops that share at least ``score_fusion_memory_threshold`` bytes (which the
    step sets) fuse whatever their distance; a step holds no large temporaries whose life this
    could lengthen. ``can_fuse_horizontal`` is a static method there; checked on torch 2.13.
    """
    from torch._inductor import config
    from torch._inductor.choices import InductorChoices

    class StepChoices(InductorChoices):
        @staticmethod
        def can_fuse_horizontal(scheduler: Any, node1: Any, node2: Any, shared: int) -> bool:
            if shared >= config.score_fusion_memory_threshold:
                return True
            return InductorChoices.can_fuse_horizontal(scheduler, node1, node2, shared)

        def uuid(self) -> str:  # part of inductor's cache key
            return "gradkit.optim.fused.StepChoices/1"

    return StepChoices


def step_choices() -> Any:
    """An instance of :func:`step_choices_class` (inductor's ``inductor_choices_class``
    option takes a factory like this one)."""
    return step_choices_class()()
