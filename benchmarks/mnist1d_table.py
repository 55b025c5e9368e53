"""The MNIST-1D paper's table with the paper's recipe, and gradkit's default recipe.

Paper (Greydanus, arXiv 2011.14439): Adam, lr 1e-2, batch 100, 6000 steps, the paper's
models; test accuracy 31.7 / 64.6 / 92.5 / 91.1 % (logistic / MLP / CNN / GRU). Then the
default ``gradkit train`` (CNN at width 64, AdamW, warm-up then cosine). Each run is one
process-local ``gradkit.train.train`` call; results print as a Markdown table.

Usage: python benchmarks/mnist1d_table.py [--seeds 0] [--models logistic,mlp,cnn,gru]
           [--threads 1] [--runs-dir /tmp/gradkit-mnist1d-table]
"""

from __future__ import annotations

import argparse
import time

import torch

from gradkit.train import load_config, train

PAPER = {"logistic": 31.7, "mlp": 64.6, "cnn": 92.5, "gru": 91.1}
PAPER_RECIPE = [
    "optim.name=adam",
    "optim.lr=0.01",
    "optim.weight_decay=0",
    'schedule.lr="constant()"',
    "train.batch_size=100",
    "train.steps=6000",
    "model.options={}",
]
QUIET = ["log.progress=off", "train.eval_every=0", "checkpoint.every=0", "checkpoint.best=false"]


def run(overrides: list[str], runs_dir: str, name: str) -> tuple[float, float]:
    config = load_config(None, [*overrides, *QUIET, f"log.root={runs_dir!r}", f"log.name={name!r}"])
    started = time.perf_counter()
    result = train(config)
    return 100 * result.test_accuracy, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--models", default="logistic,mlp,cnn,gru")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs-dir", default="/tmp/gradkit-mnist1d-table")
    parser.add_argument("--skip-default", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| model | recipe | seed | test accuracy % | paper % | difference | time s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model in args.models.split(","):
        for seed in seeds:
            accuracy, seconds = run(
                [f"model.name={model}", f"train.seed={seed}", *PAPER_RECIPE],
                args.runs_dir,
                f"paper-{model}-{seed}",
            )
            paper = PAPER[model]
            print(
                f"| {model} | paper | {seed} | {accuracy:.1f} | {paper} | "
                f"{accuracy - paper:+.1f} | {seconds:.0f} |",
                flush=True,
            )
    if not args.skip_default:
        for seed in seeds:
            accuracy, seconds = run([f"train.seed={seed}"], args.runs_dir, f"default-{seed}")
            print(
                f"| cnn (width 64) | gradkit default | {seed} | {accuracy:.1f} | >= 94 | | "
                f"{seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
