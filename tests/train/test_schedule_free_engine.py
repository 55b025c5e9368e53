"""Schedule-free optimizers in the engine: evaluation and checkpoints on the average x, training
at y, exact resume, and the configs the paper advises against (arXiv 2405.15682)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gradkit.optim import OPTIMIZERS, SCHEDULE_FREE, ScheduleFreeAdamW, get_optimizer
from gradkit.train import ConfigError, TrainContext, TrainingData, load_checkpoint, read_jsonl
from gradkit.train import train as run_training
from gradkit.train._build import build_model
from gradkit.train._distributed import Distributed
from gradkit.train._evaluate import evaluate

SF = ["optim.name=schedule_free_adamw", "optim.lr=0.01", 'schedule.lr="warmup(5)"']
RESNET = ["model.name=resnet1d", "model.options={width = 4, depth = 1, stages = 1}"]


class RecordTrainingWeights:
    """The parameters as the optimizer leaves them after each step (y, where gradients are)."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, ctx: TrainContext) -> None:
        self.weights[ctx.step] = {k: v.detach().clone() for k, v in ctx.model.named_parameters()}


def _tensors(samples) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.stack([s[i] for s in samples]) for i in (0, 1))  # type: ignore[return-value]


def test_the_registry_knows_schedule_free_apart_from_the_chains() -> None:
    assert set(SCHEDULE_FREE) == {"schedule_free_sgd", "schedule_free_adamw"}
    assert not set(SCHEDULE_FREE) & set(OPTIMIZERS)
    assert get_optimizer("Schedule_Free_AdamW").cls is ScheduleFreeAdamW
    with pytest.raises(KeyError, match="schedule_free_sgd"):
        get_optimizer("schedule_free")


def test_evaluation_and_checkpoints_hold_the_average_and_training_goes_on_at_y(
    data: TrainingData, make_config: Callable
) -> None:
    config = make_config(*SF, *RESNET, "data.validation_fraction=0.25")
    recorder = RecordTrainingWeights()
    result = run_training(config, data=data, callbacks=[recorder])
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    # The checkpoint's optimizer is in eval mode and its model holds x = (y - (1-b) z) / b.
    groups = last["optimizer"]["param_groups"]
    assert [g["train_mode"] for g in groups] == [False] * len(groups)
    model = build_model(config, (40,), data.classes)
    names = [name for name, _ in model.named_parameters()]
    z = {names[i]: s["z"] for i, s in last["optimizer"]["state"].items()}
    y = recorder.weights[20]
    for name, x in ((n, last["model"][n]) for n in names):
        expected = (y[name] - 0.1 * z[name]) / 0.9
        assert torch.allclose(x, expected, atol=1e-5), name
        assert not torch.allclose(x, y[name], atol=1e-4), name
    # What was evaluated at the end is x, with batch-norm statistics recomputed at x.
    model.load_state_dict(last["model"])
    inputs, labels = _tensors(data.test)
    loss, _ = evaluate([model], inputs, labels, batch_size=64, dist=Distributed())
    evals = read_jsonl(result.run_dir / "evals.jsonl")
    assert evals[-1]["test_loss"] == pytest.approx(loss, rel=1e-6)
    at_y = build_model(config, (40,), data.classes)
    at_y.load_state_dict({**last["model"], **y})
    y_loss, _ = evaluate([at_y], inputs, labels, batch_size=64, dist=Distributed())
    assert y_loss != pytest.approx(loss, rel=1e-4)
    # The step after an evaluation starts from y again: training stays at y, x is only lent.
    assert not torch.allclose(recorder.weights[11]["head.weight"], last["model"]["head.weight"])
    best = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    assert not any(g["train_mode"] for g in best["optimizer"]["param_groups"])


def test_the_trained_model_keeps_the_average(data: TrainingData, make_config: Callable) -> None:
    config = make_config(*SF)
    seen: list[torch.nn.Module] = []

    class Keep:
        def on_train_start(self, ctx: TrainContext) -> None:
            seen.append(ctx.model)

    result = run_training(config, data=data, callbacks=[Keep()])
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    for key, value in seen[0].state_dict().items():
        assert torch.equal(value, last["model"][key]), key


def test_resume_goes_on_exactly(data: TrainingData, make_config: Callable) -> None:
    settings = [*SF, *RESNET, "train.deterministic=true", "train.eval_every=5"]
    whole = run_training(make_config(*settings, name="whole"), data=data)
    stopped = run_training(make_config(*settings, "train.steps=10", name="parts"), data=data)
    resumed = run_training(
        make_config(*settings, name="parts"), data=data, run_dir=stopped.run_dir, resume=True
    )
    a = load_checkpoint(whole.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["z"], b["optimizer"]["state"][index]["z"])
    last_whole = read_jsonl(whole.run_dir / "evals.jsonl")[-1]
    last_resumed = read_jsonl(resumed.run_dir / "evals.jsonl")[-1]
    assert last_whole["test_loss"] == last_resumed["test_loss"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ['schedule.lr="warmup(5) >> cosine(15)"'],
            "schedule.lr='warmup(5) >> cosine(15)' decays (from 1 at step 4 to",
        ),
        (['schedule.lr="constant()"', 'optim.average="ema(0.9)"'], "remove optim.average"),
    ],
)
def test_what_the_paper_advises_against_is_refused(
    make_config: Callable, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config("optim.name=schedule_free_sgd", *overrides)


def test_a_warm_up_is_allowed_and_an_unknown_name_lists_both_registries(
    make_config: Callable,
) -> None:
    make_config("optim.name=schedule_free_sgd", 'schedule.lr="warmup(10)"')
    with pytest.raises(ConfigError, match=r"known: .*lamb.*schedule_free_sgd, schedule_free_adamw"):
        make_config("optim.name=schedule_free")


def test_the_cli_refuses_a_decaying_schedule_in_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradkit.cli import train as train_verb

    monkeypatch.chdir(tmp_path)
    # The default schedule, warmup(200) >> cosine(5800), decays from step 200 on.
    code = train_verb.main(["optim.name=schedule_free_adamw", "train.steps=300"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "replaces the schedule by averaging" in err[0]
    assert not list(tmp_path.iterdir())
