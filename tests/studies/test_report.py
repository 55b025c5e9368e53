"""The report: its numbers equal those recomputed from the store, and its files are complete."""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

T_975_1DF = 12.706204736174698  # two seeds: one degree of freedom (scipy t.ppf(0.975, 1))


def _recompute(out: Path) -> dict[str, dict[str, list[float]]]:
    """Per arm, the per-seed metrics at the lr whose mean val_accuracy is best: from raw SQL."""
    connection = sqlite3.connect(out / "study.db")
    rows = connection.execute("SELECT arm, sweep, seed, metrics FROM runs WHERE status = 'done'")
    by_point: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for arm, sweep, seed, metrics in rows:
        by_point[(arm, sweep)].append({"seed": seed, **json.loads(metrics)})
    connection.close()
    result: dict[str, dict[str, list[float]]] = {}
    for arm in ("sgd", "momentum"):
        points = {s: runs for (a, s), runs in by_point.items() if a == arm}
        best = max(points, key=lambda s: statistics.mean(r["val_accuracy"] for r in points[s]))
        runs = sorted(points[best], key=lambda r: r["seed"])
        result[arm] = {
            name: [r[name] for r in runs] for name in ("test_accuracy", "test_loss", "seed")
        }
        result[arm]["lr"] = [json.loads(best)["optim.lr"]]
    return result


def test_report_numbers_equal_those_recomputed_from_the_store(finished_study: Path) -> None:
    expected = _recompute(finished_study)
    numbers = json.loads((finished_study / "report.json").read_text(encoding="utf-8"))
    markdown = (finished_study / "REPORT.md").read_text(encoding="utf-8")
    cells = {cell["arm"]: cell for cell in numbers["cells"]}
    for arm, values in expected.items():
        cell = cells[arm]
        assert cell["selected"] == {"optim.lr": values["lr"][0]}
        assert cell["seeds"] == [0, 1]
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {arm} |"))
        for metric in ("test_accuracy", "test_loss"):
            mean = statistics.mean(values[metric])
            half = T_975_1DF * statistics.stdev(values[metric]) / math.sqrt(2)
            assert cell["metrics"][metric]["mean"] == pytest.approx(mean, rel=1e-12)
            assert cell["metrics"][metric]["half_width"] == pytest.approx(half, rel=1e-12)
            assert f"{mean:.4g} ± {half:.2g}" in row
    differences = [
        a - b
        for a, b in zip(
            expected["momentum"]["test_accuracy"], expected["sgd"]["test_accuracy"], strict=True
        )
    ]
    (claim,) = numbers["verdicts"]
    mean = statistics.mean(differences)
    half = T_975_1DF * statistics.stdev(differences) / math.sqrt(2)
    assert claim["difference"] == pytest.approx(mean, abs=1e-12)
    if half > 0:
        assert claim["low"] == pytest.approx(mean - half, rel=1e-9)
    outcome = "reproduced" if mean - half > 0 else "not reproduced" if mean + half < 0 else None
    assert claim["outcome"] == (outcome or "inconclusive")
    assert f"**{claim['outcome']}**" in markdown


def test_report_files_are_complete_and_self_contained(finished_study: Path) -> None:
    html = (finished_study / "report.html").read_text(encoding="utf-8")
    markdown = (finished_study / "REPORT.md").read_text(encoding="utf-8")
    assert "![learning curves" in markdown and (finished_study / "plots" / "curves.png").exists()
    assert (finished_study / "plots" / "time_to_target.png").exists()
    assert html.count("data:image/png;base64,") == markdown.count("![")
    assert 'src="plots/' not in html
    assert "## Verdicts" in markdown and "<h2>Verdicts</h2>" in html


def test_summary_page_carries_each_study_verdict(
    finished_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from gradkit.cli import main
    from gradkit.studies import write_index

    root = tmp_path / "studies"
    shutil.copytree(finished_study, root / "tiny")
    written = write_index(root)
    page = written.read_text(encoding="utf-8")
    (claim,) = json.loads((finished_study / "report.json").read_text(encoding="utf-8"))["verdicts"]
    assert "(tiny/REPORT.md)" in page
    row = next(line for line in page.splitlines() if line.startswith(f"| {claim['claim']} |"))
    assert f"**{claim['outcome']}**" in row
    assert f"{claim['difference']:.4g} [{claim['low']:.4g}, {claim['high']:.4g}]" in row
    assert f"1 {claim['outcome']}" in page
    # The command writes the same page; an empty directory is a clear error.
    assert main(["study", "summary", str(root)]) == 0
    assert written.read_text(encoding="utf-8") == page
    assert main(["study", "summary", str(tmp_path / "empty")]) == 2
    assert "no study reports under" in capsys.readouterr().err


def test_the_summary_puts_each_claim_beside_its_paper() -> None:
    from gradkit.studies._definitions import Claim
    from gradkit.studies._index import _beside_rows

    def claim(text: str, **extra: str) -> Claim:
        return Claim(text, "a", "b", "test_accuracy", True, **extra)

    claims = [
        claim("A beats B", paper_finding="A +2 points (Table 3)"),
        claim("C beats D"),
        claim("E beats F", scale_note="the digits are at the ceiling"),
    ]
    verdicts = [
        {"claim": "A beats B", "outcome": "reproduced", "detectable": None},
        {"claim": "C beats D", "outcome": "not reproduced", "detectable": None},
        {"claim": "E beats F", "outcome": "inconclusive", "detectable": 0.0123},
    ]
    first, second, third = _beside_rows("s", claims, verdicts)
    assert first == (
        "| s | A beats B | A +2 points (Table 3) | **reproduced** | reproduced at this scale |"
    )
    assert second == "| s | C beats D | — | **not reproduced** | contradicted at this scale |"
    assert third.endswith(
        "| **inconclusive** | not decided at this scale: the design detects 0.0123 beyond the "
        "margin; the digits are at the ceiling |"
    )


def test_a_claim_s_paper_finding_must_be_text(tmp_path: Path) -> None:
    from gradkit.studies import SpecError, load_spec

    from .conftest import tiny_spec_text

    text = tiny_spec_text().replace("[[claims]]", "[[claims]]\npaper_finding = 3", 1)
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match="paper_finding must be a string, got 3"):
        load_spec(path)
