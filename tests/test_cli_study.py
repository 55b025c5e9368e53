"""``gradkit study run | report | list`` through the verb module's own parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradkit.cli import study

SPEC = """
[study]
title = "One arm"
seeds = [0, 1]

[base]
data = { name = "mnist1d", options = { num_samples = 600 } }
model = { name = "logistic" }
optim = { name = "sgd", lr = 0.1, weight_decay = 0.0 }
schedule = { lr = "constant()" }
train = { steps = 5, batch_size = 32, eval_every = 0, threads = 1, device = "cpu" }
"""


def test_run_report_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "one.toml"
    spec.write_text(SPEC, encoding="utf-8")
    assert study.main(["run", str(spec), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "runs       2 in all, 0 already stored, 2 run now (0 failed)" in out
    assert (tmp_path / "one" / "REPORT.md").exists()
    assert study.main(["run", str(spec), "--threads", "1"]) == 0
    assert "2 already stored, 0 run now" in capsys.readouterr().out
    (tmp_path / "one" / "REPORT.md").unlink()
    assert study.main(["report", str(tmp_path / "one")]) == 0
    assert "# One arm" in (tmp_path / "one" / "REPORT.md").read_text(encoding="utf-8")
    capsys.readouterr()
    (tmp_path / "bad.toml").write_text("[study]\nseed = [0]\n", encoding="utf-8")
    assert study.main(["list", "--dir", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bad") and "unknown key 'seed'; did you mean 'seeds'?" in lines[0]
    assert lines[1].split() == ["one", "2", "runs", "0", "claims", "One", "arm"]


def test_errors_exit_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert study.main(["run", str(tmp_path / "missing.toml")]) == 2
    assert f"no such file '{tmp_path}/missing.toml'" in capsys.readouterr().err
    assert study.main(["report", str(tmp_path)]) == 2
    assert "has no study.toml; is it a study?" in capsys.readouterr().err
    assert study.main(["list", "--dir", str(tmp_path)]) == 2


def test_the_shipped_studies_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    directory = Path(__file__).parents[1] / "studies"
    files = sorted(directory.glob("*.toml"))
    assert len(files) == 10
    assert study.main(["list", "--dir", str(directory)]) == 0
    # A tuned study counts its tuning trials and its report runs: the optimizers study's 13
    # arms on 2 workloads tune 5 trials on 4 seeds (520 runs), then 10 report seeds (260).
    (line,) = [row for row in capsys.readouterr().out.splitlines() if row.startswith("optim")]
    assert line.split()[1:3] == ["780+", "runs"]


def test_a_claim_on_a_metric_no_run_records_exits_2_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "one.toml"
    claim = '[[claims]]\ntext = "t"\narm = "base"\nbaseline = "base"\nmetric = "test_acc"\n'
    spec.write_text(SPEC + claim, encoding="utf-8")
    assert study.main(["run", str(spec), "--threads", "1"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"gradkit study: {spec}: claim 1: metric 'test_acc' is not recorded by the runs of arm "
        "'base'; did you mean 'test_accuracy'? (recorded: step, test_loss, test_accuracy, time,"
    )
    assert not (tmp_path / "one").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("name", ["optimizers", "normalization"])
def test_a_shipped_study_runs_end_to_end_with_the_quick_preset(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    root = Path(__file__).resolve().parents[1] / "studies"
    out = tmp_path / name
    status = study.main(
        [
            "run",
            str(root / f"{name}.toml"),
            "--preset",
            "quick",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "(0 failed)" in printed
    assert (out / "preset.txt").read_text(encoding="utf-8") == "quick\n"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["verdicts"], "the quick preset keeps claims about the arms it keeps"
    for cell in report["cells"]:
        assert cell["seeds"] == [0, 1]  # the first two report seeds
        assert cell["tuning"]["status"] in ("tuned", "not tuned: best at the edge")
        assert cell["tuning"]["trials"] == 2
    assert "Preset `quick`" in (out / "REPORT.md").read_text(encoding="utf-8")
    # the report alone (as `gradkit study report` does) reads the preset back
    assert study.main(["report", str(out)]) == 0
