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
from gradkit.schedules import parse

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


# --- long schedules, bad --base and --plot ----------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["one_cycle(20, three_phase=true)"],
            "schedule  one_cycle(20, three_phase=true)\n"
            "length    20 steps; showing steps 0..20, base 1\n"
            "      step           value\n"
            "         0            0.04\n"
            "         1      0.13167184\n"
            "         5               1\n"
            "        19           4e-06\n"
            "        20           4e-06\n",
        ),
        (
            ["0.5 * sgdr(4, decay=0.5, cycles=3) >> constant(0.1)", "--steps", "20"],
            "schedule  0.5 * sgdr(4, decay=0.5, cycles=3) >> constant(0.1)\n"
            "length    never ends; showing steps 0..19, base 0.01\n"
            "      step           value\n"
            "         0           0.005\n"
            "         1     0.004267767\n"
            "         3   0.00073223305  cycle end\n"
            "         7   0.00036611652  cycle end\n"
            "        11   0.00018305826  cycle end\n"
            "        12           0.001\n"
            "        19           0.001\n",
        ),
    ],
)
def test_short_schedules_print_what_they_always_printed(
    argv: list[str], expected: str, capsys
) -> None:
    base = ["--base", "0.01"] if "--steps" in argv else []
    assert main(["schedule", *argv, *base]) == 0
    assert capsys.readouterr().out == expected


class _CountingCalls:
    """Counts the evaluations of every schedule; more than ``limit`` is a failure (a hang)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
        from gradkit.schedules import Schedule

        self.calls = 0
        for cls in {*Schedule.__subclasses__(), *_all_subclasses(Schedule)}:
            if "value" in vars(cls):
                monkeypatch.setattr(cls, "value", self._wrap(vars(cls)["value"], limit))

    def _wrap(self, value, limit: int):
        def counted(schedule, step):
            self.calls += 1
            if self.calls > limit:
                raise AssertionError(f"more than {limit} evaluations")
            return value(schedule, step)

        return counted


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


@pytest.mark.parametrize(
    ("expression", "steps"),
    [
        ("cosine(100000000000)", None),
        ("warmup(1000) >> cosine(100000000000, final=0.1)", None),
        ("sgdr(10, decay=0.9)", "100000000000"),
        ("cyclic(10, mode=triangular2)", "100000000000"),
        ("warmup(1000) * cosine(100000000000)", None),
    ],
)
def test_a_long_schedule_is_sampled_not_enumerated(
    expression: str, steps: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    counter = _CountingCalls(monkeypatch, limit=50_000)
    plot = tmp_path / "long.svg"
    argv = ["schedule", expression, "--plot", str(plot)]
    assert main([*argv, *(["--steps", steps] if steps else [])]) == 0
    assert counter.calls > 0
    rows = _rows(capsys.readouterr().out)
    schedule = parse(expression)
    last = int(steps) - 1 if steps else schedule.length
    assert set(rows) >= {0, 1, last}
    for step in (0, 1, last):
        assert rows[step][0] == pytest.approx(schedule(step), rel=1e-7, abs=1e-12)
    assert plot.read_bytes().lstrip().startswith(b"<?xml")


def test_a_long_cosine_prints_its_exact_ends(capsys) -> None:
    assert main(["schedule", "cosine(100000000000, final=0.25)", "--base", "2"]) == 0
    out = capsys.readouterr().out
    assert "length    100000000000 steps; showing steps 0..100000000000, base 2" in out
    rows = _rows(out)
    assert rows[0] == (2.0, "")
    assert rows[100_000_000_000] == (0.5, "")
    assert set(rows) == {0, 1, 99_999_999_999, 100_000_000_000}


@pytest.mark.parametrize("base", ["nan", "inf", "-inf"])
def test_a_non_finite_base_exits_2(base: str, capsys) -> None:
    assert main(["schedule", "cosine(10)", f"--base={base}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"gradkit schedule: invalid --base {float(base)}; expected a finite number\n"
    )


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert captured.err.count("\n") == 1, captured.err
    return captured.err


def test_a_plot_with_an_unknown_extension_exits_2(tmp_path: Path, capsys) -> None:
    plot = tmp_path / "x.txt"
    assert main(["schedule", "cosine(10)", "--plot", str(plot)]) == 2
    err = _one_line(capsys)
    assert err.startswith(f"gradkit schedule: --plot {plot}: unknown format 'txt'; expected ")
    assert ".png" in err and ".svg" in err and ".pdf" in err
    assert os.listdir(tmp_path) == []


def test_a_plot_in_a_missing_directory_exits_2(tmp_path: Path, capsys) -> None:
    plot = tmp_path / "nowhere" / "sub" / "x.png"
    assert main(["schedule", "cosine(10)", "--plot", str(plot)]) == 2
    err = _one_line(capsys)
    assert err == (
        f"gradkit schedule: --plot {plot}: {plot.parent} does not exist; give a path in an "
        "existing directory\n"
    )
    assert os.listdir(tmp_path) == []


def test_a_plot_under_a_file_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("")
    plot = tmp_path / "file" / "x.png"
    assert main(["schedule", "cosine(10)", "--plot", str(plot)]) == 2
    assert f"{plot.parent} is not a directory" in _one_line(capsys)
