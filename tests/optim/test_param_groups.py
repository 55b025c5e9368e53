"""``gradkit.optim.param_groups``: biases and normalization parameters are exempt from weight
decay and layer-wise adaptation (arXiv 2102.06356), the head from AGC (arXiv 2102.06171)."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from gradkit.optim import LAMB, LARS, SGD, param_groups

F64 = torch.float64


class Net(nn.Module):
    """Every kind of parameter: filters, matrices, biases, norm layers, a scalar gain, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(1.0))  # 0-d
        self.pos = nn.Parameter(torch.zeros(5, 6))  # 2-D, decayed unless named in no_decay
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 6)
        self.ln = nn.LayerNorm((2, 3))  # 2-D weight and bias: exempt as norm parameters
        self.head = nn.Linear(6, 3)


DECAYED_BODY = ["pos", "conv.weight", "fc.weight"]
EXEMPT_BODY = [
    "gain",
    "conv.bias",
    "bn.weight",
    "bn.bias",
    "gn.weight",
    "gn.bias",
    "fc.bias",
    "ln.weight",
    "ln.bias",
]


def names_of(model: nn.Module, group: dict) -> list[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    return [by_id[id(p)] for p in group["params"]]


def settings(group: dict) -> dict:
    return {key: value for key, value in group.items() if key != "params"}


def test_roles_of_every_kind_of_parameter():
    model = Net()
    groups = param_groups(model, weight_decay=0.1, head=model.head)
    # Order: decayed body, exempt body, decayed head, exempt head.
    assert [names_of(model, g) for g in groups] == [
        DECAYED_BODY,
        EXEMPT_BODY,
        ["head.weight"],
        ["head.bias"],
    ]
    assert [settings(g) for g in groups] == [
        {"weight_decay": 0.1, "layer_adaptation": True},
        {"weight_decay": 0.0, "layer_adaptation": False},
        {"weight_decay": 0.1, "layer_adaptation": True, "agc_clipping": None},
        {"weight_decay": 0.0, "layer_adaptation": False, "agc_clipping": None},
    ]
    # The LayerNorm's parameters are 2-D: exempt because of the module type, not the shape.
    assert model.ln.weight.ndim == 2


def test_every_parameter_appears_exactly_once():
    model = Net()
    groups = param_groups(model, weight_decay=0.1, head="head", no_decay=["pos"])
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}


def test_without_head_there_are_two_groups_and_no_agc_key():
    model = Net()
    groups = param_groups(model, weight_decay=0.05)
    assert [names_of(model, g) for g in groups] == [
        [*DECAYED_BODY, "head.weight"],
        [*EXEMPT_BODY, "head.bias"],
    ]
    assert all("agc_clipping" not in g for g in groups)


@pytest.mark.parametrize(
    "head",
    [
        "head",
        ["head"],
        ["head.weight", "head.bias"],
    ],
    ids=["string", "prefix", "names"],
)
def test_head_given_by_name(head):
    model = Net()
    groups = param_groups(model, weight_decay=0.1, head=head)
    assert [names_of(model, g) for g in groups][2:] == [["head.weight"], ["head.bias"]]
    assert groups[2]["agc_clipping"] is None and groups[3]["agc_clipping"] is None


def test_no_decay_prefixes():
    model = Net()
    # "pos" names a parameter, "fc" a module (all its parameters); "con" is not a prefix of
    # "conv.weight" at a dot boundary, so it matches nothing.
    groups = param_groups(model, weight_decay=0.1, no_decay=["pos", "fc", "con"])
    assert names_of(model, groups[0]) == ["conv.weight", "head.weight"]
    exempt = names_of(model, groups[1])
    assert {"pos", "fc.weight", "fc.bias"} <= set(exempt)
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["layer_adaptation"] is False


def test_options_reach_every_group():
    model = Net()
    groups = param_groups(model, weight_decay=0.1, head=model.head, lr=0.5, momentum=0.8)
    assert len(groups) == 4
    assert all(g["lr"] == 0.5 and g["momentum"] == 0.8 for g in groups)


def test_groups_feed_an_optimizer_with_agc_off_for_the_head():
    model = Net().double()
    opt = SGD(param_groups(model, weight_decay=0.1, head=model.head), lr=0.1, agc_clipping=0.01)
    assert [g["agc_clipping"] for g in opt.param_groups] == [0.01, 0.01, None, None]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0, 0.1, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"model": Net(), "weight_decay": -0.1},
            ValueError,
            "param_groups: invalid weight_decay=-0.1; expected a finite number >= 0",
        ),
        (
            {"model": Net(), "weight_decay": math.inf},
            ValueError,
            "param_groups: invalid weight_decay=inf; expected a finite number >= 0",
        ),
        (
            {"model": [nn.Linear(2, 2)], "weight_decay": 0.1},
            TypeError,
            "param_groups: model must be a torch.nn.Module, got [Linear",
        ),
        (
            {"model": Net(), "weight_decay": 0.1, "head": nn.Linear(6, 3)},
            ValueError,
            "param_groups: head is not a submodule of model (or has no parameters)",
        ),
        (
            {"model": Net(), "weight_decay": 0.1, "head": nn.ReLU()},
            ValueError,
            "param_groups: head is not a submodule of model (or has no parameters)",
        ),
        (
            {"model": Net(), "weight_decay": 0.1, "head": ["classifier"]},
            ValueError,
            "param_groups: head=['classifier'] matches no parameter of the model; parameter "
            "names start with ['bn', 'conv', 'fc', 'gain', 'gn', 'head', 'ln', 'pos']",
        ),
        (
            {"model": Net(), "weight_decay": 0.1, "head": "hea"},
            ValueError,
            "param_groups: head=['hea'] matches no parameter of the model; parameter "
            "names start with ['bn', 'conv', 'fc', 'gain', 'gn', 'head', 'ln', 'pos']",
        ),
    ],
    ids=["negative-decay", "infinite-decay", "not-a-module", "foreign-head", "empty-head",
         "unknown-prefix", "partial-name"],
)  # fmt: skip
def test_bad_input(kwargs, error, message):
    model = kwargs.pop("model")
    with pytest.raises(error, match="^" + re.escape(message)):
        param_groups(model, **kwargs)


# ---------------------------------------------------------------------------------------------
# LARS and LAMB over these groups: the bias step is not scaled by a trust ratio
# ---------------------------------------------------------------------------------------------

W = [[3.0, 0.0], [0.0, 4.0]]  # ||W|| = 5
G = [[0.6, -0.2], [0.4, 0.6]]
BIAS = [0.5, -0.25]
BIAS_GRAD = [0.1, 0.2]


def tiny_model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(W, dtype=F64))
        model[0].bias.copy_(torch.tensor(BIAS, dtype=F64))
    model[0].weight.grad = torch.tensor(G, dtype=F64)
    model[0].bias.grad = torch.tensor(BIAS_GRAD, dtype=F64)
    return model


def zips(*lists):
    """zip that insists on equal lengths (a derivation never drops an entry)."""
    return zip(*lists, strict=True)


def norm(xs):
    return math.sqrt(sum(x * x for x in xs))


def test_lars_over_param_groups_leaves_the_bias_unscaled():
    gamma, m, beta, eta = 0.5, 0.9, 0.1, 0.02
    model = tiny_model()
    opt = LARS(param_groups(model, weight_decay=beta), lr=gamma, momentum=m, trust_coefficient=eta)
    opt.step()
    # Weight (arXiv 1708.03888, Alg. 1, first step, v_0 = 0):
    # lambda = eta ||W|| / (||G|| + beta ||W||), v_1 = gamma lambda (G + beta W), W_1 = W - v_1.
    w, g = [x for row in W for x in row], [x for row in G for x in row]
    local_lr = eta * norm(w) / (norm(g) + beta * norm(w))
    expected_w = [wi - gamma * local_lr * (gi + beta * wi) for wi, gi in zips(w, g)]
    # Bias: no decay, no trust ratio: b_1 = b - gamma g.
    expected_b = [b - gamma * g for b, g in zips(BIAS, BIAS_GRAD)]
    weight, bias = model[0].weight, model[0].bias
    torch.testing.assert_close(
        weight.flatten(), torch.tensor(expected_w, dtype=F64), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(bias, torch.tensor(expected_b, dtype=F64), rtol=1e-12, atol=1e-12)
    # Had the bias been adapted, its step would have been scaled by lambda ~ 0.045.
    assert eta * norm(BIAS) / norm(BIAS_GRAD) < 0.05


def test_lamb_over_param_groups_leaves_the_bias_unscaled():
    lr, eps, lam = 0.01, 1e-6, 0.1
    model = tiny_model()
    opt = LAMB(param_groups(model, weight_decay=lam), lr=lr, eps=eps)
    opt.step()
    # First step of Alg. 2 (arXiv 1904.00962): m_hat = g, v_hat = g^2, r = g / (|g| + eps).
    w, g = [x for row in W for x in row], [x for row in G for x in row]
    u = [gi / (abs(gi) + eps) + lam * wi for gi, wi in zips(g, w)]  # r + lambda x
    expected_w = [wi - lr * norm(w) / norm(u) * ui for wi, ui in zips(w, u)]
    # Bias: lambda = 0 and ratio 1: b_1 = b - lr r.
    expected_b = [b - lr * gi / (abs(gi) + eps) for b, gi in zips(BIAS, BIAS_GRAD)]
    weight, bias = model[0].weight, model[0].bias
    torch.testing.assert_close(
        weight.flatten(), torch.tensor(expected_w, dtype=F64), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(bias, torch.tensor(expected_b, dtype=F64), rtol=1e-12, atol=1e-12)
    # With the ratio, the bias step would have been ||b|| / ||r|| ~ 0.4 times as large.
    assert norm(BIAS) / norm([gi / (abs(gi) + eps) for gi in BIAS_GRAD]) < 0.5
