"""Param groups that exempt biases and normalization parameters from decay and adaptation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from gradkit.optim._hyper import non_negative

NORM_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
"""Module types whose parameters count as normalization parameters."""


def param_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    head: nn.Module | Iterable[str] | None = None,
    no_decay: Iterable[str] = (),
    **options: Any,
) -> list[dict[str, Any]]:
    """Split a model's parameters into param groups by the role each parameter plays.

    Biases, normalization parameters (of any ``torch.nn`` norm layer) and every other parameter
    with at most one dimension (gains, scalars) get ``weight_decay=0`` and
    ``layer_adaptation=False``: LARS and LAMB then leave them unscaled. Nado et al.
    (arXiv 2102.06356) show that these exemptions are what make LARS and LAMB work. The
    parameters of ``head`` (the classifier, given as a module or as parameter names or name
    prefixes) get ``agc_clipping=None``: adaptive gradient clipping does not clip the head
    (arXiv 2102.06171).

    A model (or any submodule) with a ``no_weight_decay()`` method, timm's convention, names
    further parameters to exempt: it returns a set of parameter names relative to that module
    (a ViT's ``{"pos_embed", "cls_token"}``), read here as ``no_decay`` names are. timm's
    ``create_optimizer_v2`` reads the top-level model's; here a model that holds a timm model
    as a submodule keeps its exemptions too. Names that match no parameter are ignored (timm's
    ViTs list ``dist_token`` whether or not they have one).

    Args:
        model: the model.
        weight_decay: the decay of the weight matrices and filters.
        head: the classifier head, excluded from adaptive gradient clipping.
        no_decay: further parameter names (or name prefixes) to exempt, e.g. positional
            embeddings (added to those of the model's ``no_weight_decay()``).
        **options: extra keys for every group (``lr=...``, ``momentum=...``).

    Returns:
        Non-empty groups, in the order: decayed body, exempt body, decayed head, exempt head.

    Example:
        >>> opt = gradkit.optim.LAMB(param_groups(model, weight_decay=0.01), lr=2e-3)
    """
    allowed = non_negative(weight_decay)
    if allowed is not None:
        raise ValueError(f"param_groups: invalid weight_decay={weight_decay!r}; expected {allowed}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"param_groups: model must be a torch.nn.Module, got {model!r}")
    exempt_names = _norm_parameter_names(model)
    prefixes = (*no_decay, *_model_no_weight_decay(model))
    head_names = _head_names(model, head)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {
        (False, True): [],
        (False, False): [],
        (True, True): [],
        (True, False): [],
    }
    for name, param in model.named_parameters():
        exempt = param.ndim <= 1 or name in exempt_names or _matches(name, prefixes)
        groups[(name in head_names, not exempt)].append(param)
    result = []
    for (is_head, decayed), params in groups.items():
        if not params:
            continue
        group: dict[str, Any] = {"params": params, **options}
        group["weight_decay"] = weight_decay if decayed else 0.0
        group["layer_adaptation"] = decayed
        if is_head:
            group["agc_clipping"] = None
        result.append(group)
    return result


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _model_no_weight_decay(model: nn.Module) -> list[str]:
    """The names every ``no_weight_decay()`` method in the model returns, as full names."""
    names: list[str] = []
    for module_name, module in model.named_modules():
        method = getattr(module, "no_weight_decay", None)
        if not callable(method):
            continue
        returned = method()
        listed = list(returned) if isinstance(returned, (set, frozenset, list, tuple)) else None
        if listed is None or not all(isinstance(name, str) for name in listed):
            where = f"model.{module_name}" if module_name else "model"
            raise TypeError(
                f"param_groups: {where}.no_weight_decay() returned {returned!r}; expected a set "
                f"of parameter names (str)"
            )
        names.extend(f"{module_name}.{name}" if module_name else name for name in listed)
    return names


def _norm_parameter_names(model: nn.Module) -> set[str]:
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, NORM_MODULES):
            for param_name, _ in module.named_parameters(recurse=False):
                names.add(f"{module_name}.{param_name}" if module_name else param_name)
    return names


def _head_names(model: nn.Module, head: nn.Module | Iterable[str] | None) -> set[str]:
    if head is None:
        return set()
    all_names = [name for name, _ in model.named_parameters()]
    if isinstance(head, nn.Module):
        ids = {id(p) for p in head.parameters()}
        names = {name for name, p in model.named_parameters() if id(p) in ids}
        if not names:
            raise ValueError(
                "param_groups: head is not a submodule of model (or has no parameters)"
            )
        return names
    if isinstance(head, str):
        head = [head]
    prefixes = tuple(head)
    names = {name for name in all_names if _matches(name, prefixes)}
    if not names:
        raise ValueError(
            f"param_groups: head={list(prefixes)!r} matches no parameter of the model; "
            f"parameter names start with {sorted({n.split('.')[0] for n in all_names})}"
        )
    return names
