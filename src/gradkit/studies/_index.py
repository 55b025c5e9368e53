"""One page over many studies: each study's verdicts, linked to its own report.

The page is written twice: ``REPORT.md`` (links to each study's ``REPORT.md``) and
``index.html``, the same Markdown rendered, its links to each study's ``report.html`` and its
images relative, so the folder of studies can be mailed or served as it is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradkit._io import atomic_output
from gradkit.studies._html import markdown_page
from gradkit.studies._outcome_plots import VerdictRow, plot_verdicts
from gradkit.studies._runner import SPEC_NAME, read_preset
from gradkit.studies._spec import Claim, load_spec

__all__ = ["write_index"]


def write_index(root: str | os.PathLike[str], name: str = "REPORT.md") -> Path:
    """Write ``root/REPORT.md`` and ``root/index.html``: for every study directory below
    ``root`` that has a report (``report.json`` and its ``study.toml``), its title, paper, runs
    and the verdict of each claim with its difference and 95% interval, linked to the study's
    own report.

    Raises ``FileNotFoundError`` if no study directory with a report is found.
    """
    root = Path(root)
    studies = sorted(
        p.parent for p in root.glob("*/report.json") if (p.parent / SPEC_NAME).exists()
    )
    if not studies:
        raise FileNotFoundError(
            f"no study reports under {root}: expected directories with report.json and "
            f"{SPEC_NAME}, as written by 'gradkit study run'"
        )
    counts = {"reproduced": 0, "not reproduced": 0, "inconclusive": 0}
    sections = []
    rows: list[VerdictRow] = []
    beside = [
        "| study | claim | the paper found | here | at this scale |",
        "| --- | --- | --- | --- | --- |",
    ]
    for directory in studies:
        spec = load_spec(directory / SPEC_NAME, preset=read_preset(directory))
        report = json.loads((directory / "report.json").read_text())
        runs = report["runs"]
        lines = [
            f"## [{spec.title}]({directory.name}/REPORT.md)",
            "",
            f"`{directory.name}` ({spec.paper}); runs finished: {runs['finished']} of "
            f"{runs['total']}.",
            "",
            "| claim | verdict | difference (95% CI) | seeds |",
            "| --- | --- | --- | --- |",
        ]
        rows += _verdict_rows(directory.name, spec.claims, report["verdicts"])
        beside += _beside_rows(directory.name, spec.claims, report["verdicts"])
        for item in report["verdicts"]:
            counts[item["outcome"]] = counts.get(item["outcome"], 0) + 1
            difference = (
                "-"
                if item["difference"] is None
                else f"{item['difference']:.4g} [{item['low']:.4g}, {item['high']:.4g}]"
            )
            lines.append(
                f"| {item['claim']} | **{item['outcome']}** | {difference} | {item['seeds']} |"
            )
        curves = directory / "plots" / "curves.png"
        if curves.exists():
            lines += [
                "",
                f"![learning curves of {directory.name}]({directory.name}/plots/curves.png)",
            ]
        sections.append("\n".join(lines))
    summary = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
    figure = plot_verdicts(rows, root / "plots" / "verdicts.png")
    title = "Studies: do the lecture's claims hold on MNIST-1D and the digits?"
    text = "\n\n".join(
        [
            f"# {title}",
            f"{len(studies)} studies; claims: {summary}. Each study's own report has the arms "
            "(mean and 95% interval over seeds), the learning rate chosen on the validation "
            "split, curves, heatmaps and the rule behind each verdict. Produced by "
            "`gradkit study run studies/NAME.toml` for each study, then "
            "`gradkit study summary studies`.",
            *(
                [
                    "Every claim's paired difference (arm minus baseline, > 0: the arm is "
                    "better) with its 95% interval, the margin of its test shaded:\n\n"
                    "![verdicts of every claim](plots/verdicts.png)"
                ]
                if figure
                else []
            ),
            "## The claims beside the papers\n\n"
            "Each claim as its paper found it, and what this scale (MNIST-1D and the 8x8 "
            "digits, minutes on a CPU) says: reproduced, contradicted (the interval excludes "
            "the claim), or not decided, with the smallest difference the design could have "
            "detected and, where the spec gives one, why the scale may not test it.\n\n"
            + "\n".join(beside),
            *sections,
        ]
    )
    target = root / name
    with atomic_output(target) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")
    with atomic_output(root / "index.html") as temporary:
        page = markdown_page(title, text + "\n", base=root, embed_images=False)
        temporary.write_text(page, encoding="utf-8")
    return target


def _beside_rows(study: str, claims: Sequence[Claim], verdicts: list[dict[str, Any]]) -> list[str]:
    """The rows of the claims-beside-the-papers table for one study."""
    by_text = {claim.text: claim for claim in claims}
    lines = []
    for item in verdicts:
        claim = by_text.get(item["claim"])
        found = claim.paper_finding if claim and claim.paper_finding else "—"
        outcome = item["outcome"]
        if outcome == "reproduced":
            reading = "reproduced at this scale"
        elif outcome == "not reproduced":
            reading = "contradicted at this scale"
        else:
            detectable = item.get("detectable")
            reading = "not decided at this scale" + (
                f": the design detects {detectable:.3g} beyond the margin"
                if isinstance(detectable, (int, float)) and math.isfinite(detectable)
                else ""
            )
        if claim and claim.scale_note:
            reading += f"; {claim.scale_note}"
        lines.append(
            f"| {study} | {item['claim']} | {found} | **{outcome}** | {reading} |".replace(
                "\n", " "
            )
        )
    return lines


def _verdict_rows(
    study: str, claims: Sequence[Claim], verdicts: list[dict[str, Any]]
) -> list[VerdictRow]:
    """The forest plot's rows of one study: numbers from its ``report.json``, the test and
    margin from its spec (matched by the claim's text)."""
    by_text = {claim.text: claim for claim in claims}

    def number(value: float | None) -> float:
        return math.nan if value is None else float(value)

    rows = []
    for item in verdicts:
        claim = by_text.get(item["claim"])
        rows.append(
            VerdictRow(
                label=f"{study}: {item['claim']}",
                metric=claim.metric if claim else "?",
                outcome=item["outcome"],
                difference=number(item["difference"]),
                low=number(item["low"]),
                high=number(item["high"]),
                test=claim.test if claim else "superior",
                margin=claim.margin if claim else 0.0,
                smallest_effect=claim.smallest_effect if claim else 0.0,
                detectable=item.get("detectable"),
            )
        )
    return rows
