"""``gradkit study``: run a study, write its report, list the shipped studies.

- ``gradkit study run studies/NAME.toml [--workers N] [--threads T] [--out DIR]``: run what
  the store in ``DIR`` (default ``studies/NAME/``, beside the spec) does not hold, then write
  the report there. Run it again to resume after a crash or Ctrl-C. One runner per ``DIR``:
  a second one exits with status 2 while the first works (``report`` may run meanwhile).
  ``--scheduler tcp://HOST:8786`` trains the runs on that Dask cluster instead of local
  processes (``pip install 'gradkit[cluster]'``); the store stays here.
  ``--preset quick`` runs it at a tiny size (see the spec's ``[presets.quick]``) in
  ``DIR/quick``: a smoke test of the whole pipeline, spec to report.
- ``gradkit study report DIR``: write ``REPORT.md``, ``report.html`` and ``report.json``.
- ``gradkit study list [--dir studies]``: the study files, with title and claims.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from gradkit.studies import (
    SchedulerError,
    SpecError,
    StudyDirectoryError,
    StudyLockedError,
    expand,
    load_spec,
    run_study,
    write_index,
    write_report,
)

__all__ = ["main", "register"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``study`` verb (``run``, ``report``, ``list``) to the ``gradkit`` command."""
    parser = commands.add_parser(
        "study",
        help="run a study of techniques over seeds and report a verdict on its claims",
        description="Studies put techniques side by side over seeds and decide a claim: "
        "reproduced, not reproduced or inconclusive.",
    )
    actions = parser.add_subparsers(dest="study_command", required=True)
    run = actions.add_parser("run", help="run a study (resumable) and write its report")
    run.add_argument("spec", help="the study file, e.g. studies/warmup.toml")
    run.add_argument(
        "--workers", type=int, default=None, help="parallel local processes (default 1)"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads: locally in all (default: the CPU count); with --scheduler per run "
        "(default 1)",
    )
    run.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="train on the Dask cluster of this scheduler (e.g. tcp://HOST:8786) instead of "
        "local processes; needs pip install 'gradkit[cluster]'",
    )
    run.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the scheduler to answer (default 10)",
    )
    run.add_argument("--out", default=None, help="output directory (default: beside the spec)")
    run.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    run.add_argument("--keep-runs", action="store_true", help="keep each run's directory")
    run.add_argument(
        "--preset",
        choices=["quick"],
        default="",
        help="quick: the study at a tiny size in seconds, a smoke test whose verdicts mean "
        "nothing (default out: DIR/quick)",
    )
    run.set_defaults(handler=_run)
    report = actions.add_parser("report", help="write the report of a study directory")
    report.add_argument("directory", help="the output directory of `gradkit study run`")
    report.set_defaults(handler=_report)
    summary = actions.add_parser(
        "summary", help="write one page with the verdicts of every study under a directory"
    )
    summary.add_argument("directory", nargs="?", default="studies", help="(default: studies)")
    summary.set_defaults(handler=_summary)
    listing = actions.add_parser("list", help="list the study files")
    listing.add_argument("--dir", default="studies", help="where to look (default: studies)")
    listing.set_defaults(handler=_list)


def _run(args: argparse.Namespace) -> int:
    spec_path = Path(args.spec)
    out = Path(args.out) if args.out else spec_path.with_suffix("")
    if args.preset and not args.out:
        out = out / args.preset
    try:
        _check_run_arguments(args)
        outcome = run_study(
            spec_path,
            out,
            workers=args.workers or 1,
            threads=args.threads,
            retry_failed=args.retry_failed,
            keep_runs=args.keep_runs,
            scheduler=args.scheduler,
            connect_timeout=args.connect_timeout,
            preset=args.preset,
        )
        written = write_report(out)
    except (SpecError, StudyLockedError, StudyDirectoryError, SchedulerError) as error:
        print(f"gradkit study: {error}", file=sys.stderr)
        return 2
    print(
        f"runs       {outcome.total} in all, {outcome.skipped} already stored, "
        f"{len(outcome.ran)} run now ({len(outcome.failed)} failed) in {outcome.seconds:.0f}s"
    )
    for run_id, error in outcome.failed.items():
        print(f"failed     {run_id}: {error}")
    if outcome.interpolated:
        print(
            f"lines      {len(outcome.interpolated)} interpolations computed now "
            f"({len(outcome.interpolation_failed)} failed)"
        )
    for (name, start, end), error in outcome.interpolation_failed.items():
        print(f"failed     {name} {start} -> {end}: {error}")
    print(f"report     {written['markdown']}")
    return 1 if outcome.failed or outcome.interpolation_failed else 0


def _check_run_arguments(args: argparse.Namespace) -> None:
    """Refuse option values and combinations that cannot work, naming the option."""
    if args.workers is not None and args.workers < 1:
        raise SpecError(f"--workers must be >= 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise SpecError(f"--threads must be >= 1, got {args.threads}")
    if args.scheduler is None:
        return
    if args.workers is not None:
        raise SpecError(
            f"--workers {args.workers} sizes the local pool; with --scheduler the cluster's "
            "workers train (size the cluster instead)"
        )
    if args.keep_runs:
        raise SpecError(
            "--keep-runs needs the local executor: on a Dask cluster each run trains in its "
            "worker's temporary directory"
        )
    if not args.connect_timeout > 0:
        raise SpecError(f"--connect-timeout must be > 0 seconds, got {args.connect_timeout}")


def _report(args: argparse.Namespace) -> int:
    try:
        written = write_report(args.directory)
    except (SpecError, FileNotFoundError) as error:
        print(f"gradkit study: {error}", file=sys.stderr)
        return 2
    for kind in ("markdown", "html", "json"):
        print(f"{kind:<10} {written[kind]}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    try:
        written = write_index(args.directory)
    except (SpecError, FileNotFoundError) as error:
        print(f"gradkit study: {error}", file=sys.stderr)
        return 2
    print(f"summary    {written}")
    return 0


def _list(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    files = sorted(directory.glob("*.toml"))
    if not files:
        print(f"gradkit study: no study files (*.toml) in {directory}", file=sys.stderr)
        return 2
    status = 0
    for path in files:
        try:
            spec = load_spec(path)
        except SpecError as error:
            print(f"{path.stem:<28} INVALID: {error}")
            status = 1
            continue
        count = len(expand(spec))
        runs = f"{count:>4} runs "
        if spec.tuning is not None:  # then the report runs, and widened trials if any
            cells = len(spec.arms) * math.prod(len(values) for values in spec.grid.values())
            runs = f"{count + cells * len(spec.seeds):>4}+ runs"
        print(f"{path.stem:<28} {runs}  {len(spec.claims)} claims  {spec.title}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``gradkit study`` on its own; returns the exit status."""
    parser = argparse.ArgumentParser(prog="gradkit")
    commands = parser.add_subparsers(dest="command", required=True)
    register(commands)
    args = parser.parse_args(["study", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))
