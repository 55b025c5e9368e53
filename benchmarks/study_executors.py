"""Study throughput: the local process pool against a 2-worker Dask LocalCluster, in one script.

The same study (the MLP on 4,000 MNIST-1D samples, 2 arms x 2 learning rates x ``--seeds``
seeds, ``--steps`` steps each, a few seconds, one intra-op thread per run) runs on a local pool
of 2 worker processes (``run_study(workers=2, threads=2)``) and on a loopback ``LocalCluster``
of 2 worker processes of one thread each (``run_study(scheduler=cluster, threads=1)``), each
into a fresh output directory, alternating ``--repeats`` times. Each call is timed from
``run_study`` to its return (the cluster is started before, as a researcher's cluster would
be); runs per minute are compared by their medians.

Usage: python benchmarks/study_executors.py [--steps 2000] [--seeds 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from gradkit.studies import run_study

SPEC = """
[study]
name = "throughput"
seeds = {seeds}
metrics = ["test_accuracy"]

[base]
data = {{ name = "mnist1d", options = {{ num_samples = 4000 }}, validation_fraction = 0.2 }}
model = {{ name = "mlp" }}
optim = {{ name = "sgd", lr = 0.1 }}
schedule = {{ lr = "constant()" }}
train = {{ steps = {steps}, batch_size = 64, eval_every = 100 }}

[sweep]
"optim.lr" = [0.03, 0.1]

[[arms]]
name = "sgd"

[[arms]]
name = "momentum"
set = {{ "optim.name" = "momentum" }}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import distributed

    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "throughput.toml"
        spec.write_text(
            SPEC.format(seeds=list(range(args.seeds)), steps=args.steps), encoding="utf-8"
        )
        run_study(spec, Path(folder) / "warm", workers=1, threads=1, progress=False)  # data cache
        rates: dict[str, list[float]] = {"local pool": [], "dask": []}
        with distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            silence_logs=40,
        ) as cluster:
            for repeat in range(args.repeats):
                for name in rates:
                    out = Path(folder) / f"{name.replace(' ', '_')}-{repeat}"
                    options = (
                        {"workers": 2, "threads": 2}
                        if name == "local pool"
                        else {"scheduler": cluster, "threads": 1}
                    )
                    started = time.perf_counter()
                    outcome = run_study(spec, out, progress=False, **options)
                    seconds = time.perf_counter() - started
                    assert not outcome.failed, outcome.failed
                    rates[name].append(len(outcome.ran) / seconds * 60)
                    print(f"{name:<10} repeat {repeat}: {len(outcome.ran)} runs in {seconds:.1f} s")
    local, dask = (statistics.median(rates[name]) for name in ("local pool", "dask"))
    print()
    print("| executor | runs/min (median) | all repeats |")
    print("| --- | --- | --- |")
    for name, rate in (("local pool, 2 processes", local), ("Dask LocalCluster, 2 workers", dask)):
        values = rates["local pool" if name.startswith("local") else "dask"]
        print(f"| {name} | {rate:.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    print(f"\nDask / local pool: {dask / local:.3f}")


if __name__ == "__main__":
    main()
