"""The signal propagation profile of each run: stored as measured, plotted in the report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gradkit.data import load_dataset
from gradkit.diagnostics import signal_propagation
from gradkit.studies import STORE_NAME, Store, run_study, write_report
from gradkit.studies._measures import SIGNAL_PROFILES
from gradkit.train import build_model, config_from_dict

SPEC = """
[study]
name = "tiny_nf"
seeds = [0, 1]
measures = ["signal_propagation"]

[base]
data = { name = "mnist1d", options = { num_samples = 600 } }
model = { name = "resnet1d", options = { width = 4, stages = 2, depth = 1, norm = "batch" } }
optim = { name = "sgd", lr = 0.05, weight_decay = 0.0 }
schedule = { lr = "constant()" }
train = { steps = 3, batch_size = 32, eval_every = 0, eval_batch_size = 600 }

[[arms]]
name = "nf"
set = { "model.name" = "nf_resnet1d", "model.options" = { width = 4, stages = 2, depth = 1 } }

[[arms]]
name = "batchnorm"
"""


def test_the_stored_profile_is_signal_propagation_of_the_initial_model(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    outcome = run_study(write_spec(SPEC, name="tiny_nf"), out, threads=1, progress=False)
    assert outcome.failed == {}
    with Store(out / STORE_NAME) as store:
        runs = store.runs()
        stored = {(r.run_id, n): store.profile(r.run_id, n) for r in runs for n in SIGNAL_PROFILES}
    assert len(runs) == 4
    for run in runs:
        config = config_from_dict(run.config)
        splits = load_dataset(config.data.name, **config.data.options)
        shape = tuple(splits.train.tensors[0].shape[1:])
        torch.manual_seed(run.seed)  # as the training loop seeds before it builds the model
        model = build_model(config, shape, 10)
        expected = signal_propagation(model, shape, batch_size=256)
        assert len(expected.blocks) == 2
        for name, column in SIGNAL_PROFILES.items():
            values = stored[(run.run_id, name)]
            assert values == pytest.approx(expected.column(column), rel=1e-6)
        assert run.metrics["spp_last_variance"] == pytest.approx(expected.blocks[-1].variance)
    # the seeds build different networks, so a profile that ignored the seed would fail above
    nf = [r for r in runs if r.arm == "nf"]
    assert stored[(nf[0].run_id, "spp_variance")] != stored[(nf[1].run_id, "spp_variance")]

    written = write_report(out)
    markdown = written["markdown"].read_text(encoding="utf-8")
    html = written["html"].read_text(encoding="utf-8")
    assert "![signal propagation at initialisation" in markdown
    assert (out / "plots" / "signal_propagation.png").stat().st_size > 0
    assert "signal propagation at initialisation" in html
    assert html.count("data:image/png;base64,") == markdown.count("![")
    assert json.loads(written["json"].read_text(encoding="utf-8"))["runs"]["finished"] == 4
