"""Bad input to every optimizer constructor, to SAM and to the registry, and the exact error.

One table, :data:`CASES`: ``(factory, kwargs, exception type, message regex)``. The
hyperparameter rows are generated for every registry entry from the arguments its class
accepts, so a new entry is covered, and a new constructor argument without a row of bad values
fails :func:`test_every_constructor_argument_has_bad_values`.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from gradkit.optim import (
    OPTIMIZERS,
    SAM,
    SCHEDULE_FREE,
    SGD,
    ChainedOptimizer,
    chain,
    create_optimizer,
    get_optimizer,
    scale_by_learning_rate,
)

NAN, INF = math.nan, math.inf

NON_NEGATIVE = "expected a finite number >= 0"
UNIT = "expected a number in [0, 1)"
CLOSED_UNIT = "expected a number in [0, 1]"
PAIR = "expected a pair (beta1, beta2) of numbers in [0, 1)"
TRIPLE = "expected a triple (beta1, beta2, beta3) of numbers in [0, 1)"
FLAG = "expected True or False"
BOUNDS = "expected None or a pair (low, high) with 0 <= low <= high"

# Bad values of each constructor argument, with what the message says is allowed.
BAD_VALUES: dict[str, tuple[str, list[Any]]] = {
    "lr": (
        NON_NEGATIVE,
        [-0.1, NAN, INF, -INF, "0.1", True, None, torch.tensor([0.1, 0.2])],
    ),
    "weight_decay": (NON_NEGATIVE, [-0.01, NAN, INF]),
    "eps": (NON_NEGATIVE, [-1e-8, NAN, INF]),
    "betas": (
        PAIR,
        [(-0.1, 0.999), (0.9, 1.0), (1.0, 0.999), (0.9, NAN), (0.9,), (0.9, 0.99, 0.999), 0.9],
    ),
    "momentum": (UNIT, [-0.1, 1.0, 1.5, NAN]),
    "dampening": (CLOSED_UNIT, [-0.1, 1.5]),
    "alpha": (UNIT, [-0.1, 1.0]),
    "rho": (UNIT, [-0.5, 1.0]),
    "lr_decay": (NON_NEGATIVE, [-1.0, NAN]),
    "initial_accumulator_value": (NON_NEGATIVE, [-1.0, INF]),
    "momentum_decay": (NON_NEGATIVE, [-1.0, NAN]),
    "trust_coefficient": (NON_NEGATIVE, [-1e-3, INF]),
    "weight_norm_bounds": (BOUNDS, [(1.0, 0.5), (-1.0, 1.0), (0.5,), (NAN, 1.0), "x"]),
    "agc_clipping": (NON_NEGATIVE, [-0.01, NAN]),
    "nesterov": (FLAG, ["yes", 1]),
    "amsgrad": (FLAG, ["yes", 1]),
    "unit_ratio_on_zero_grad": (FLAG, ["yes", 1]),
    "centered": (FLAG, ["yes", 0]),
    "maximize": (FLAG, ["yes", None]),
    "fused": (FLAG, ["yes", 1]),
    "decoupled_weight_decay": (FLAG, ["yes", 1]),
    "no_prox": (FLAG, ["yes", 1]),
}

# Where one registry entry's argument takes other values than the same name elsewhere.
BAD_VALUES_OF: dict[str, dict[str, tuple[str, list[Any]]]] = {
    "adan": {
        "betas": (
            TRIPLE,
            [(0.98, 0.92), (0.98, 0.92, 1.0), (-0.1, 0.92, 0.99), (0.98, NAN, 0.99), 0.9],
        ),
    },
}


def _bad_values(name: str, arg: str) -> tuple[str, list[Any]] | None:
    """The bad values of registry entry ``name``'s argument ``arg`` (None: no row)."""
    return BAD_VALUES_OF.get(name, {}).get(arg, BAD_VALUES.get(arg))


def _param() -> torch.Tensor:
    return torch.zeros(3, 2, requires_grad=True)


def _arguments(name: str) -> list[str]:
    """The constructor arguments of registry entry ``name`` (without ``params``)."""
    parameters = inspect.signature(OPTIMIZERS[name].cls).parameters
    return [arg for arg in parameters if arg != "params"]


def construct(name: str) -> Callable[..., Any]:
    """A factory: build registry entry ``name`` over one good parameter unless given params."""

    def factory(**kwargs: Any) -> Any:
        params = kwargs.pop("params", None)
        return OPTIMIZERS[name].create([_param()] if params is None else params, **kwargs)

    return factory


def sparse_step(name: str) -> Callable[..., Any]:
    """A factory that builds ``name`` over a sparse embedding and takes one step."""

    def factory(**kwargs: Any) -> Any:
        embedding = nn.Embedding(10, 3, sparse=True)
        optimizer = OPTIMIZERS[name].create(embedding.parameters(), **kwargs)
        embedding(torch.tensor([1, 2, 2])).sum().backward()
        assert embedding.weight.grad.is_sparse
        optimizer.step()

    return factory


def make_sam(**kwargs: Any) -> SAM:
    optimizer = kwargs.pop("optimizer", None)
    return SAM(SGD([_param()], lr=0.1) if optimizer is None else optimizer, **kwargs)


def sam_step_without_closure(**kwargs: Any) -> Any:
    return make_sam(**kwargs).step()


def chained(**kwargs: Any) -> ChainedOptimizer:
    return ChainedOptimizer([_param()], **kwargs)


def _escape(*parts: str) -> str:
    """A regex that finds ``parts`` in this order, each literally, anything in between."""
    return ".*".join(re.escape(part) for part in parts)


def _cases() -> list[Any]:
    cases: list[Any] = []
    for name, spec in OPTIMIZERS.items():
        owner = spec.cls.__name__
        factory = construct(name)
        arguments = _arguments(name)

        # Each hyperparameter: out of range, non-finite, wrong type.
        for arg in arguments:
            allowed, values = _bad_values(name, arg) or ("", [])
            # fused is a property of the optimizer, not of a param group.
            where = "" if arg == "fused" else " in param group 0"
            for value in values:
                cases.append(
                    pytest.param(
                        factory,
                        {arg: value},
                        ValueError,
                        _escape(f"{owner}: invalid {arg}={value!r}{where};", allowed),
                        id=f"{name}-{arg}={value!r}",
                    )
                )

        # The same check for a value set in a param group (here the second one).
        cases.append(
            pytest.param(
                factory,
                {"params": [{"params": [_param()]}, {"params": [_param()], "lr": -1.0}]},
                ValueError,
                _escape(f"{owner}: invalid lr=-1.0 in param group 1;", NON_NEGATIVE),
                id=f"{name}-group-lr",
            )
        )

        # Nesterov momentum needs momentum > 0 and no dampening.
        if "nesterov" in arguments:
            cases.append(
                pytest.param(
                    factory,
                    {"nesterov": True, "momentum": 0},
                    ValueError,
                    _escape(
                        f"{owner}: invalid nesterov=True in param group 0 with momentum=0 ",
                        "Nesterov momentum requires momentum > 0 and dampening = 0",
                    ),
                    id=f"{name}-nesterov-without-momentum",
                )
            )
        if "nesterov" in arguments and "dampening" in arguments:
            cases.append(
                pytest.param(
                    factory,
                    {"nesterov": True, "momentum": 0.9, "dampening": 0.5},
                    ValueError,
                    _escape(
                        f"{owner}: invalid nesterov=True in param group 0 with momentum=0.9 "
                        "and dampening=0.5;",
                        "requires momentum > 0 and dampening = 0",
                    ),
                    id=f"{name}-nesterov-with-dampening",
                )
            )

        # The parameters themselves.
        param_cases = [
            ("empty-list", [], ValueError, f"{owner}: params is an empty parameter list"),
            ("empty-iterator", iter([]), ValueError, f"{owner}: params is an empty parameter"),
            (
                "single-tensor",
                _param(),
                TypeError,
                f"{owner}: params must be an iterable of tensors or of dicts, got a single tensor",
            ),
            (
                "integer-param",
                [_param(), torch.zeros(3, dtype=torch.int64)],
                TypeError,
                f"{owner}: parameters must be floating point (parameter 1 of param group 0 "
                "is torch.int64)",
            ),
            (
                "complex-param",
                [{"params": [_param()]}, {"params": [torch.zeros(2, dtype=torch.complex64)]}],
                TypeError,
                f"{owner}: complex parameters are not supported (parameter 0 of param group 1 "
                "is torch.complex64)",
            ),
        ]
        for case_id, params, error, message in param_cases:
            cases.append(
                pytest.param(
                    factory, {"params": params}, error, re.escape(message), id=f"{name}-{case_id}"
                )
            )
        cases.append(
            pytest.param(
                sparse_step(name),
                {},
                TypeError,
                re.escape(
                    f"{owner} does not support sparse gradients (parameter 0 of param group 0)"
                ),
                id=f"{name}-sparse-grad",
            )
        )

    # SAM.
    sam_cases = [
        ("rho-negative", {"rho": -0.1}, ValueError, f"SAM: invalid rho=-0.1; {NON_NEGATIVE}"),
        ("rho-nan", {"rho": NAN}, ValueError, f"SAM: invalid rho=nan; {NON_NEGATIVE}"),
        ("rho-inf", {"rho": INF}, ValueError, f"SAM: invalid rho=inf; {NON_NEGATIVE}"),
        ("rho-str", {"rho": "0.05"}, ValueError, f"SAM: invalid rho='0.05'; {NON_NEGATIVE}"),
        ("rho-bool", {"rho": True}, ValueError, f"SAM: invalid rho=True; {NON_NEGATIVE}"),
        ("eps-negative", {"eps": -1e-12}, ValueError, "SAM: invalid eps=-1e-12;"),
        (
            "adaptive-str",
            {"adaptive": "yes"},
            ValueError,
            "SAM: invalid adaptive='yes'; expected True or False",
        ),
        ("eta-negative", {"eta": -0.01}, ValueError, f"SAM: invalid eta=-0.01; {NON_NEGATIVE}"),
        (
            "not-an-optimizer",
            {"optimizer": [_param()]},
            TypeError,
            "SAM: optimizer must be a torch.optim.Optimizer instance, got [tensor(",
        ),
        (
            "sam-of-sam",
            {"optimizer": SAM(SGD([_param()], lr=0.1))},
            TypeError,
            "SAM: optimizer is already a SAM; wrap the inner optimizer once",
        ),
    ]
    for case_id, kwargs, error, message in sam_cases:
        cases.append(pytest.param(make_sam, kwargs, error, re.escape(message), id=f"sam-{case_id}"))
    cases.append(
        pytest.param(
            sam_step_without_closure,
            {},
            ValueError,
            re.escape("SAM.step needs a closure"),
            id="sam-step-without-closure",
        )
    )

    # The registry.
    known = ", ".join([*OPTIMIZERS, *SCHEDULE_FREE])
    registry_cases = [
        ("adamm", "unknown optimizer 'adamm'; did you mean 'adam'"),
        ("sdg", "unknown optimizer 'sdg'; did you mean 'sgd'"),
        ("lamb2", "unknown optimizer 'lamb2'; did you mean 'lamb'"),
        ("qwertyuiop", f"unknown optimizer 'qwertyuiop' (known: {known})"),
    ]
    for bad_name, message in registry_cases:
        cases.append(
            pytest.param(
                lambda name: create_optimizer(name, [_param()]),
                {"name": bad_name},
                KeyError,
                re.escape(message),
                id=f"registry-{bad_name}",
            )
        )
    cases.append(
        pytest.param(
            get_optimizer,
            {"name": 3},
            KeyError,
            re.escape("unknown optimizer 3"),
            id="registry-not-a-string",
        )
    )

    # ChainedOptimizer and chain.
    cases += [
        pytest.param(
            chained,
            {"transformation": "adam"},
            TypeError,
            re.escape("ChainedOptimizer: transformation must be a GradientTransformation"),
            id="chained-not-a-transformation",
        ),
        pytest.param(
            chained,
            {"transformation": chain(scale_by_learning_rate()), "betas": (0.9, 0.999)},
            TypeError,
            re.escape("ChainedOptimizer: unexpected hyperparameter 'betas'; this chain reads"),
            id="chained-unknown-key",
        ),
        pytest.param(
            chained,
            {"transformation": chain(scale_by_learning_rate()), "lr": -1.0},
            ValueError,
            _escape("ChainedOptimizer: invalid lr=-1.0 in param group 0;", NON_NEGATIVE),
            id="chained-bad-lr",
        ),
        pytest.param(
            chain,
            {},
            ValueError,
            re.escape("chain: expected at least one transformation, got none"),
            id="chain-empty",
        ),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize(("factory", "kwargs", "error", "message"), CASES)
def test_bad_input_raises(factory, kwargs, error, message):
    with pytest.raises(error, match=message):
        factory(**kwargs)


def test_chain_rejects_a_non_transformation():
    with pytest.raises(TypeError, match=re.escape("chain: expected GradientTransformation")):
        chain(scale_by_learning_rate(), 0.1)


def test_every_constructor_argument_has_bad_values():
    """Every argument of every registry class has rows in the table (or is ``params``)."""
    for name in OPTIMIZERS:
        missing = {arg for arg in _arguments(name) if _bad_values(name, arg) is None}
        assert not missing, f"{name}: no bad values for {sorted(missing)}"


def test_every_registry_entry_has_cases():
    ids = [case.id for case in CASES]
    for name in OPTIMIZERS:
        for kind in ("lr=-0.1", "weight_decay=nan", "empty-list", "single-tensor", "sparse-grad"):
            assert f"{name}-{kind}" in ids, f"no case {name}-{kind}"


def test_a_rejected_group_is_not_kept():
    """After a bad add_param_group the optimizer is unchanged and usable."""
    good, other = _param(), _param()
    optimizer = OPTIMIZERS["adam"].create([good])
    with pytest.raises(ValueError, match=_escape("Adam: invalid betas=(0.9, 1.0)", PAIR)):
        optimizer.add_param_group({"params": [other], "betas": (0.9, 1.0)})
    with pytest.raises(TypeError, match=re.escape("parameters must be floating point")):
        optimizer.add_param_group({"params": [torch.zeros(2, dtype=torch.int32)]})
    assert len(optimizer.param_groups) == 1
    optimizer.add_param_group({"params": [other]})  # the rejected tensor can be added again
    assert len(optimizer.param_groups) == 2
