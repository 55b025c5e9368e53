"""The sections of the training config, as frozen dataclasses with gradkit's default recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEFAULT_MODEL_OPTIONS",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "LogConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
]


class ConfigError(ValueError):
    """A config key that does not exist or a value that is not allowed."""


@dataclass(frozen=True)
class DataConfig:
    """What to train on.

    Attributes:
        name: a dataset of :data:`gradkit.data.DATASETS`.
        root: the directory of datasets read from disk (CIFAR-10, MNIST); ``None`` for the
            generated ones.
        options: extra keyword arguments of ``load_dataset`` (e.g. ``{num_samples = 20000}``).
        validation_fraction: the part of the training split held out for validation (0: none).
            Select hyperparameters on it, never on the test split.
        validation_seed: the seed of that split (kept apart from ``train.seed``, so runs over
            seeds share one validation set).
    """

    name: str = "mnist1d"
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    validation_fraction: float = 0.0
    validation_seed: int = 0


DEFAULT_MODEL_OPTIONS: dict[str, dict[str, Any]] = {"cnn": {"width": 64}}
"""The recipe's model options where ``model.options`` is absent: the MNIST-1D CNN at width 64
(the paper's is 25) reaches 95% instead of 92% with the default recipe; other models get their
registry defaults."""


@dataclass(frozen=True)
class ModelConfig:
    """Which model: a name of :data:`gradkit.models.MODELS` and its keyword arguments.

    Attributes:
        name: the registry name.
        options: keyword arguments of the model (``{width = 25}`` is the paper's CNN). Absent:
            :data:`DEFAULT_MODEL_OPTIONS` for this model (``{width = 64}`` for ``cnn``), else
            the registry defaults. Sizes of the data (``classes``, ``in_features``,
            ``length``, ``in_channels``) are filled in from the dataset.
    """

    name: str = "cnn"
    options: dict[str, Any] | None = None

    def resolved_options(self) -> dict[str, Any]:
        """``options``, or the recipe's for this model when absent."""
        if self.options is not None:
            return dict(self.options)
        return dict(DEFAULT_MODEL_OPTIONS.get(self.name.lower(), {}))


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer, its param groups, clipping and SAM.

    Attributes:
        name: an optimizer of :data:`gradkit.optim.OPTIMIZERS`, or a schedule-free one of
            :data:`gradkit.optim.SCHEDULE_FREE` (then evaluation and checkpoints hold its
            average, and ``schedule.lr`` may warm up but not decay; arXiv 2405.15682).
        lr: the peak learning rate (the lr schedule multiplies it).
        weight_decay: the decay of weights; biases and normalization parameters get none
            (:func:`gradkit.optim.param_groups`).
        options: further optimizer arguments (``{momentum = 0.9}``, ``{betas = [0.9, 0.99]}``).
        clip_grad_norm: clip the global gradient norm to this (``None``: off).
        agc: adaptive gradient clipping factor, applied to every parameter but the head's
            (``None``: off; arXiv 2102.06171).
        agc_eps: AGC's floor on parameter norms.
        agc_exclude: names of further parameters AGC leaves alone, as shell patterns
            (``["*skip_gain"]``). A zero-initialised skip gain of an NF-ResNet gets a clipped
            gradient of at most ``agc * agc_eps`` per step, so in a short run it stays near 0
            and its residual branch unused; excluding the gains is a departure from the paper
            (which clips all but the classifier) that short runs need.
        sam_rho: sharpness-aware minimization radius (``None``: plain steps; arXiv 2010.01412).
        sam_adaptive: ASAM instead of SAM.
        average: evaluate (and select ``best.pt`` on) averaged weights: ``"ema(0.999)"``, an
            exponential moving average updated after every step, or ``"swa(start=4000,
            every=100)"``, the equal average of the weights after step 4000, 4100, ...
            (arXiv 1803.05407; batch-norm statistics recomputed for it). ``None``: off.
    """

    name: str = "adamw"
    lr: float = 1e-2
    weight_decay: float = 0.2
    options: dict[str, Any] = field(default_factory=dict)
    clip_grad_norm: float | None = None
    agc: float | None = None
    agc_eps: float = 1e-3
    agc_exclude: tuple[str, ...] = ()
    sam_rho: float | None = None
    sam_adaptive: bool = False
    average: str | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """Schedules in gradkit's text form (``gradkit schedule`` shows them).

    Attributes:
        lr: multiplies ``optim.lr`` at each optimizer step, e.g. ``"constant()"`` or
            ``"sgdr(1000, cycles=6)"``. Lengths are in steps: when you change
            ``train.steps``, change the schedule with it (after its end a cosine holds its
            final value).
        batch: multiplies ``train.batch_size`` at each step (``None``: constant;
            arXiv 1711.00489).
        max_batch_size: the cap of the scheduled batch size.
    """

    lr: str = "warmup(200) >> cosine(5800)"
    batch: str | None = None
    max_batch_size: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """The loop.

    Attributes:
        steps: optimizer steps.
        batch_size: the global batch (over all processes and micro-batches).
        micro_batch_size: accumulate gradients over pieces of at most this many samples per
            process (``None``: one piece).
        eval_every: evaluate every this many steps (and at the end; 0: only at the end).
        eval_batch_size: the batch of evaluation.
        seed: the seed of initialization, data order and dropout.
        deterministic: ``torch.use_deterministic_algorithms`` for the run.
        non_finite: on a NaN/inf loss, ``"stop"`` (with an error naming the step) or
            ``"skip"`` the update.
        max_skipped: under ``non_finite = "skip"``, stop with an error after this many
            consecutive skipped steps. A bad batch makes one or two losses non-finite; a run
            of 10 in a row means the weights or the optimizer state are broken, and skipping
            on would only burn the remaining steps. Either way, a run whose weights are NaN/inf
            stops with an error (before it writes them as a checkpoint).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        threads: intra-op threads per process (``None``: torch's default).
        distributed_timeout: seconds a process waits for the others before the job fails.
        precision: ``"fp32"``, or ``"bf16"``: the forward passes (training and evaluation)
            under ``torch.autocast`` in bfloat16, on CPU too; weights, gradients and the
            optimizer stay in float32 (bfloat16 needs no loss scaling).
        compile: ``torch.compile`` the training model (the first steps compile; evaluation
            and checkpoints use the plain module, so checkpoints are the same either way).
    """

    steps: int = 6000
    batch_size: int = 100
    micro_batch_size: int | None = None
    eval_every: int = 1000
    eval_batch_size: int = 1000
    seed: int = 0
    deterministic: bool = False
    non_finite: Literal["stop", "skip"] = "stop"
    max_skipped: int = 10
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    distributed_timeout: float = 300.0
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False


@dataclass(frozen=True)
class CheckpointConfig:
    """Checkpoints and snapshots.

    Attributes:
        every: write ``last.pt`` every this many steps (and at the end; 0: only at the end).
        best: also keep ``best.pt``, the checkpoint with the best ``best_metric`` at an eval.
        best_metric: ``"auto"`` or an eval metric name such as ``"val_loss"``. ``"auto"`` is
            the validation accuracy when there is a validation split
            (``data.validation_fraction > 0``); without one there is nothing honest to select
            on, so no ``best.pt`` is written (the summary says so): ``"auto"`` never selects
            on the test split. ``"test_accuracy"`` and ``"test_loss"`` do, when asked by name;
            a checkpoint chosen on test makes its test score optimistic.
        snapshot_ensemble: keep a snapshot at each cycle end of the lr schedule (SGDR) and
            evaluate the ensemble of the last this many (0: off; arXiv 1704.00109).
    """

    every: int = 1000
    best: bool = True
    best_metric: str = "auto"
    snapshot_ensemble: int = 0


@dataclass(frozen=True)
class LogConfig:
    """Where the run goes and what it reports.

    Attributes:
        root: the directory that holds runs.
        name: the run's directory under ``root`` (``None``: the start time, e.g.
            ``20260509-073512``).
        every: write a step record every this many steps.
        progress: ``"auto"`` (a bar when stderr is a terminal), ``"on"`` or ``"off"``.
        tensorboard: ``"auto"`` (when installed), ``"on"`` or ``"off"``.
    """

    root: str = "runs"
    name: str | None = None
    every: int = 1
    progress: Literal["auto", "on", "off"] = "auto"
    tensorboard: Literal["auto", "on", "off"] = "auto"
