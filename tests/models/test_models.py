"""The model registry: every model runs, trains and exposes its head; the MNIST-1D baselines
have the paper code's parameter counts (arXiv 2011.14439); bad configurations fail clearly."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from gradkit.models import (
    MLP,
    MODELS,
    ModelSpec,
    NFResNet,
    ResNet,
    classifier_head,
    count_parameters,
    create_model,
    get_model,
)
from gradkit.nn import NFBlock, PreActBlock
from gradkit.optim import param_groups

PAPER_COUNTS = {"logistic": 410, "mlp": 15_210, "cnn": 5_210, "gru": 5_134}
# small enough to train on CPU in a test, and every option of every family exercised
SMALL = {
    "resnet1d": {"width": 8, "depth": 1},
    "resnet2d": {"width": 8, "depth": 1},
    "nf_resnet1d": {"width": 8, "depth": 1},
    "nf_resnet2d": {"width": 8, "depth": 1},
}


@pytest.mark.parametrize(("name", "count"), list(PAPER_COUNTS.items()))
def test_mnist1d_models_have_the_paper_parameter_counts(name: str, count: int) -> None:
    assert count_parameters(create_model(name)) == count


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_backward_on_the_input_shape(name: str) -> None:
    torch.manual_seed(0)
    spec = MODELS[name]
    model = spec.create()
    x = torch.randn(4, *spec.input_shape)
    logits = model(x)
    assert logits.shape == (4, spec.defaults["classes"])
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", list(MODELS))
def test_trains_a_few_steps_with_the_loss_going_down(name: str) -> None:
    torch.manual_seed(0)
    spec = MODELS[name]
    model = spec.create(**SMALL.get(name, {}))
    x = torch.randn(32, *spec.input_shape)
    y = torch.randint(0, spec.defaults["classes"], (32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", list(MODELS))
def test_head_is_the_classifier_and_param_groups_accept_it(name: str) -> None:
    spec = MODELS[name]
    model = spec.create()
    head = classifier_head(model)
    assert isinstance(head, nn.Linear) and head.out_features == spec.defaults["classes"]
    groups = param_groups(model, weight_decay=1e-4, head=head)
    head_ids = {id(p) for p in head.parameters()}
    for group in groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= head_ids or not ids & head_ids
        assert ("agc_clipping" in group) == (ids <= head_ids)


@pytest.mark.parametrize("name", list(MODELS))
def test_defaults_match_the_builder_signature(name: str) -> None:
    spec = MODELS[name]
    signature = inspect.signature(spec.builder)
    for key, value in spec.defaults.items():
        default = signature.parameters[key].default
        assert default is inspect.Parameter.empty or default == value, key
    assert set(spec.defaults) == set(spec.options())


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("mlp", {"width": 7, "depth": 4}),
        ("cnn", {"width": 9, "depth": 5}),
        ("gru", {"width": 3, "depth": 2}),
    ],
)
def test_width_and_depth_change_the_mnist1d_models(name: str, options: dict) -> None:
    spec = MODELS[name]
    small, other = spec.create(), spec.create(**options)
    assert count_parameters(small) != count_parameters(other)
    assert other(torch.randn(2, *spec.input_shape)).shape == (2, 10)
    if name == "mlp":  # 40*7+7 + 3 * (7*7+7) + 7*10+10
        assert count_parameters(other) == 287 + 3 * 56 + 80


def test_mlp_is_the_papers_residual_mlp() -> None:
    torch.manual_seed(0)
    model = MLP(width=5, depth=3).double()
    x = torch.randn(4, 40, dtype=torch.float64)
    h = torch.relu(model.input(x))
    for layer in model.hidden:  # h + relu(W h + b), as the paper's second layer
        h = h + torch.relu(layer(h))
    torch.testing.assert_close(model(x), model.head(h))
    assert len(model.hidden) == 2


def test_cnn_and_gru_read_the_whole_signal() -> None:
    # the CNN's head sees 25 channels x 5 positions; the GRU's, 2 directions x 6 x 40 steps
    assert create_model("cnn").head.in_features == 125
    assert create_model("gru").head.in_features == 480
    torch.manual_seed(0)
    for name in ("cnn", "gru"):
        model = create_model(name).eval()
        x = torch.randn(2, 40)
        y = x.clone()
        y[:, -1] += 1.0  # the last sample of the signal changes the output
        assert not torch.allclose(model(x), model(y))
        assert torch.allclose(model(x), model(x.unsqueeze(1)))  # (batch, 1, length) too


@pytest.mark.parametrize("name", ["resnet1d", "resnet2d", "nf_resnet1d", "nf_resnet2d"])
def test_resnets_have_stages_of_blocks(name: str) -> None:
    model = create_model(name, width=4, depth=3, stages=2)
    block = NFBlock if name.startswith("nf") else PreActBlock
    blocks = list(model.blocks)
    assert len(blocks) == 6 and all(isinstance(b, block) for b in blocks)
    assert [b.stage for b in blocks] == [0, 0, 0, 1, 1, 1]
    assert blocks[3].shortcut is not None and blocks[1].shortcut is None
    assert model.head.in_features == 8  # the width doubles at the second stage


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "instance", "none"])
def test_resnet_takes_any_norm(norm: str) -> None:
    model = create_model("resnet2d", norm=norm, width=8, depth=1, groups=4)
    kinds = {type(m) for m in model.modules()}
    expected = {
        "batch": nn.BatchNorm2d,
        "group": nn.GroupNorm,
        "layer": nn.GroupNorm,
        "instance": nn.InstanceNorm2d,
        "none": nn.Identity,
    }[norm]
    assert expected in kinds
    norms = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)
    assert (norm == "none") == (not any(issubclass(k, norms) for k in kinds))
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_nf_resnet_tracks_the_expected_variance() -> None:
    alpha = 0.2
    model = NFResNet(dims=1, in_channels=1, width=4, depth=3, stages=2, alpha=alpha)
    betas = [b.beta for b in model.blocks]
    expected_std = [1.0, (1 + alpha**2) ** 0.5, (1 + 2 * alpha**2) ** 0.5]
    # the second stage starts from the first stage's end, then resets after its first block
    expected_std += [(1 + 3 * alpha**2) ** 0.5, (1 + alpha**2) ** 0.5, (1 + 2 * alpha**2) ** 0.5]
    assert betas == pytest.approx([1 / s for s in expected_std], rel=1e-12)
    assert all(b.skip_gain.item() == 0.0 for b in model.blocks)


def test_nf_block_with_zero_skip_gain_is_the_identity_at_init() -> None:
    block = NFBlock(4, 4, 2, beta=0.7)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("family", [ResNet, NFResNet])
def test_stochastic_depth_grows_linearly_to_p_at_the_last_block(family: type) -> None:
    # Huang et al. (arXiv 1603.09382, Eq. 4): block l = 1..L drops with p l / L, the last with p
    p, depth, stages = 0.3, 2, 3
    model = family(dims=1, in_channels=1, width=4, depth=depth, stages=stages, stochastic_depth=p)
    blocks = depth * stages
    rates = [block.drop.p for block in model.blocks]
    assert rates == [p * (number / blocks) for number in range(1, blocks + 1)]
    assert rates[-1] == p
    assert rates[0] == pytest.approx(0.05, abs=1e-15)
    model.eval()
    x = torch.randn(3, 40)
    assert torch.equal(model(x), model(x))


BAD = [
    ("mlp", {"width": 0}, "mlp: invalid width=0; expected an integer >= 1"),
    ("mlp", {"depth": 0}, "mlp: invalid depth=0; expected an integer >= 1"),
    ("mlp", {"dropout": 1.0}, "mlp: invalid dropout=1.0; expected a number in [0, 1)"),
    ("cnn", {"width": 2.5}, "cnn: invalid width=2.5; expected an integer >= 1"),
    ("cnn", {"length": 2}, "cnn: invalid length=2; expected an integer >= 3"),
    ("gru", {"depth": True}, "gru: invalid depth=True; expected an integer >= 1"),
    ("logistic", {"classes": 1}, "logistic: invalid classes=1; expected an integer >= 2"),
    ("resnet1d", {"depth": -1}, "resnet1d: invalid depth=-1; expected an integer >= 1"),
    ("resnet2d", {"width": 0}, "resnet2d: invalid width=0; expected an integer >= 1"),
    ("resnet2d", {"stages": 0}, "resnet2d: invalid stages=0; expected an integer >= 1"),
    (
        "resnet1d",
        {"norm": "btach"},
        "resnet1d: unknown norm='btach'; expected one of 'batch', 'cross_process_batch', "
        "'group', 'instance', 'layer', 'none' (did you mean 'batch'?)",
    ),
    (
        "resnet1d",
        {"norm": "group", "width": 12},
        "make_norm: groups=8 does not divide channels=12; expected a divisor of 12",
    ),
    (
        "nf_resnet2d",
        {"activation": "relu6"},
        "nf_resnet2d: unknown activation='relu6'; expected one of 'elu', 'gelu', 'identity', "
        "'leaky_relu', 'relu', 'sigmoid', 'silu', 'softplus', 'tanh' (did you mean 'relu'?)",
    ),
    ("nf_resnet1d", {"alpha": 0.0}, "nf_resnet1d: invalid alpha=0.0; expected a number > 0"),
    (
        "nf_resnet1d",
        {"stochastic_depth": -0.5},
        "nf_resnet1d: invalid stochastic_depth=-0.5; expected a number in [0, 1)",
    ),
    (
        "mlp",
        {"widht": 10},
        "create_model: unknown option 'widht' for model 'mlp' (did you mean 'width'?); "
        "expected one of 'classes', 'depth', 'dropout', 'in_features', 'width'",
    ),
    (
        "nf_resnet1d",
        {"norm": "batch"},
        "create_model: unknown option 'norm' for model 'nf_resnet1d'; expected one of "
        "'activation', 'alpha', 'classes', 'depth', 'dropout', 'in_channels', 'skip_gain', "
        "'stages', 'stochastic_depth', 'width'",
    ),
]


@pytest.mark.parametrize(("name", "options", "message"), BAD, ids=[b[2][:50] for b in BAD])
def test_bad_configuration(name: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        create_model(name, **options)
    assert str(error.value) == message


def test_unknown_model_name_suggests_the_closest() -> None:
    with pytest.raises(KeyError) as error:
        get_model("nf-resnet1d")
    assert error.value.args[0] == (
        "unknown model 'nf-resnet1d'; did you mean 'nf_resnet1d' or 'resnet1d' or 'nf_resnet2d'? "
        "(known: logistic, mlp, cnn, gru, resnet1d, nf_resnet1d, resnet2d, nf_resnet2d)"
    )


def test_classifier_head_of_a_model_without_one() -> None:
    with pytest.raises(TypeError) as error:
        classifier_head(nn.Sequential(nn.Linear(2, 2)))
    assert str(error.value) == (
        "classifier_head: Sequential has no .head module; "
        "give param_groups the head's parameter names instead"
    )


def test_specs_are_frozen() -> None:
    spec = get_model("mlp")
    assert isinstance(spec, ModelSpec)
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.defaults["width"] = 3  # type: ignore[index]
