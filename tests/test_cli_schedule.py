"""``gradkit schedule``: key values, plot, errors; and gradkit._io.atomic_output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradkit._io import atomic_output
from gradkit.cli import main

EXPRESSION = "warmup(5) >> cosine(20, final=0.1)"


def _rows(out: str) -> dict[int, tuple[float, str]]:
    """{step: (value, note)} from the table the command prints."""
    rows = {}
    for line in out.splitlines():
        match = re.fullmatch(r"\s*(\d+)\s+(\S+)(\s+cycle end)?", line)
        if match:
            rows[int(match[1])] = (float(match[2]), (match[3] or "").strip())
    return rows


def _is_png(path: Path) -> bool:
    return path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_schedule_prints_key_values_and_plots(tmp_path: Path, capsys) -> None:
    plot = tmp_path / "lr.png"
    assert main(["schedule", EXPRESSION, "--steps", "30", "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    out = captured.out
    assert f"schedule  {EXPRESSION}" in out
    assert "length    25 steps; showing steps 0..29, base 1" in out
    rows = _rows(out)
    # Ends, the warm-up/cosine boundary, the length, the peak and the minimum.
    assert {0, 1, 4, 5, 24, 25, 29} <= set(rows)
    assert rows[4] == (1.0, "")  # the peak, at the warm-up's last step
    assert rows[0][0] == pytest.approx(0.2)
    assert rows[1][0] == pytest.approx(0.4)
    assert rows[5] == (1.0, "")  # the cosine's step 0
    assert rows[25][0] == pytest.approx(0.1)
    assert rows[29][0] == pytest.approx(0.1)
    assert max(value for value, _ in rows.values()) == 1.0
    assert not any(note for _, note in rows.values())
    assert f"plot      {plot}" in out
    assert _is_png(plot)
    assert os.listdir(tmp_path) == ["lr.png"]  # no temporary file left behind


def test_schedule_marks_cycle_ends_and_scales_by_base(capsys) -> None:
    assert main(["schedule", "sgdr(5, mult=2)", "--steps", "40", "--base", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "length    never ends; showing steps 0..39, base 0.1" in out
    rows = _rows(out)
    ends = sorted(step for step, (_, note) in rows.items() if note == "cycle end")
    assert ends == [4, 14, 34]
    assert rows[0] == (0.1, "")
    for end in ends:  # the last step of each cycle, the lowest of it
        assert rows[end][0] < 0.02


def test_schedule_defaults_to_its_length_plus_one(capsys) -> None:
    assert main(["schedule", "cosine(10, final=0.5)"]) == 0
    out = capsys.readouterr().out
    assert "showing steps 0..10" in out
    assert _rows(out)[10][0] == 0.5


def test_malformed_expression_exits_2_with_a_caret(capsys) -> None:
    assert main(["schedule", "warmup(5) >> cosin(20)"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "gradkit schedule: unknown schedule 'cosin' (did you mean 'cosine'?); known: "
        "constant, linear, warmup, cosine, polynomial, exponential, step_decay, multistep, "
        "sgdr, cyclic, one_cycle\n"
        "  warmup(5) >> cosin(20)\n"
        "               ^^^^^\n"
    )


def test_infinite_schedule_without_steps_exits_2(capsys) -> None:
    assert main(["schedule", "sgdr(10, mult=2)"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "this schedule never ends; give --steps" in captured.err


@pytest.mark.parametrize("steps", ["0", "-3", "ten"])
def test_bad_steps_is_a_usage_error(steps: str, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["schedule", "cosine(10)", "--steps", steps])
    assert caught.value.code == 2
    assert "argument --steps: invalid value" in capsys.readouterr().err


def _console_script() -> list[str]:
    beside = Path(sys.executable).with_name("gradkit")
    found = str(beside) if beside.exists() else shutil.which("gradkit")
    return [found] if found else [sys.executable, "-m", "gradkit"]


def test_console_script(tmp_path: Path) -> None:
    plot = tmp_path / "lr.png"
    command = _console_script()
    result = subprocess.run(
        [*command, "schedule", EXPRESSION, "--steps", "30", "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _rows(result.stdout)[4] == (1.0, "")
    assert _is_png(plot)
    assert os.listdir(tmp_path) == ["lr.png"]

    bad = subprocess.run(
        [*command, "schedule", "cosine(10"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.endswith("  cosine(10\n           ^\n")
    infinite = subprocess.run(
        [*command, "schedule", "exponential(0.9)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert infinite.returncode == 2
    assert "never ends" in infinite.stderr


# --- atomic_output ----------------------------------------------------------------------------


def test_atomic_output_replaces_the_file_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    with atomic_output(target) as temporary:
        assert temporary.parent == target.parent
        assert temporary != target
        temporary.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert os.listdir(target.parent) == ["out.txt"]


def test_atomic_output_keeps_the_old_content_on_an_exception(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target) as temporary:
        temporary.write_text("half-writ")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_output_on_an_interrupt_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt), atomic_output(target):
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_atomic_output_gives_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    target = tmp_path / "atomic.txt"
    with atomic_output(target) as temporary:
        temporary.write_text("x")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
