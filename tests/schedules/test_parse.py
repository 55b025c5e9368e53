"""The text form (parse) and the tables of bad input: constructors, ParamScheduler, sampler."""

from __future__ import annotations

import math
import re

import pytest
import torch

from gradkit.schedules import (
    SCHEDULES,
    SGDR,
    ParamScheduler,
    Scaled,
    ScheduledBatchSampler,
    ScheduleSyntaxError,
    Sequence,
    constant,
    cosine,
    cyclic,
    exponential,
    linear,
    multistep,
    one_cycle,
    parse,
    polynomial,
    sgdr,
    step_decay,
    warmup,
)

# --- parsing what is well formed --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cosine(100)", cosine(100)),
        ("  cosine( 100 ,final = 0.01 )  ", cosine(100, final=0.01)),
        ("warmup(500) >> cosine(10000, final=0.01)", warmup(500) >> cosine(10000, final=0.01)),
        ("0.1 * sgdr(1000, mult=2, cycles=4)", 0.1 * sgdr(1000, mult=2, cycles=4)),
        ("sgdr(1000, mult=2, cycles=4) * 0.1", 0.1 * sgdr(1000, mult=2, cycles=4)),
        (
            "constant(1.0, steps=30000) >> multistep([10000, 20000], gamma=0.1)",
            constant(1.0, steps=30000) >> multistep([10000, 20000], gamma=0.1),
        ),
        ("0.5", constant(0.5)),
        ("2 * 3", constant(6.0)),
        ("cyclic(4, mode=triangular2)", cyclic(4, mode="triangular2")),
        ("cyclic(4, mode='exp_range', gamma=0.9)", cyclic(4, mode="exp_range", gamma=0.9)),
        ('cyclic(4, mode="exp_range", gamma=0.9)', cyclic(4, mode="exp_range", gamma=0.9)),
        ("one_cycle(10, three_phase=TRUE)", one_cycle(10, three_phase=True)),
        ("sgdr(10, cycles=none)", sgdr(10)),
        ("cosine(10, final=1e-3)", cosine(10, final=0.001)),
        ("linear(+4, start=.5, end=-1.5E0)", linear(4, start=0.5, end=-1.5)),
        ("constant(value=2.0, steps=3)", constant(2.0, steps=3)),
        ("(warmup(3) >> cosine(4)) * cyclic(2)", (warmup(3) >> cosine(4)) * cyclic(2)),
        ("warmup(3) >> (cosine(4) >> linear(2))", warmup(3) >> cosine(4) >> linear(2)),
        ("multistep([3, 5,], gamma=0.5)", multistep([3, 5], gamma=0.5)),
        ("cosine(10,)", cosine(10)),
    ],
)
def test_parse_reads_the_text_form(text: str, expected) -> None:
    assert parse(text) == expected


def test_integers_and_floats_are_told_apart() -> None:
    assert isinstance(parse("cosine(10)").steps, int)
    assert isinstance(parse("cosine(10, final=1)").final, int)
    assert parse("exponential(0.9, steps=3)").steps == 3
    with pytest.raises(ScheduleSyntaxError, match=r"invalid steps=10\.0"):
        parse("cosine(10.0)")


def test_every_registered_schedule_parses_by_name() -> None:
    first = {"exponential": 0.9, "multistep": [3, 5]}
    for name, factory in SCHEDULES.items():
        argument = first.get(name, 10)
        assert parse(f"{name}({argument})") == factory(argument)


def test_parse_refuses_a_non_string() -> None:
    with pytest.raises(TypeError, match="parse: expected a string, got 3"):
        parse(3)  # type: ignore[arg-type]


# --- malformed expressions --------------------------------------------------------------------

MALFORMED = [
    # (text, message regex, start, end)
    (
        "cosin(10)",
        r"unknown schedule 'cosin' \(did you mean 'cosine'\?\); known: constant, linear",
        0,
        5,
    ),
    ("warmup(5) >> warmpu(3)", r"unknown schedule 'warmpu' \(did you mean 'warmup'\?\)", 13, 19),
    ("zzz(1)", r"unknown schedule 'zzz'; known: ", 0, 3),
    (
        "cosine(10, finl=0.1)",
        r"cosine has no argument 'finl' \(did you mean 'final'\?\); expected steps, final",
        11,
        15,
    ),
    ("sgdr(10, multt=2)", r"sgdr has no argument 'multt' \(did you mean 'mult'\?\)", 9, 14),
    ("cosine(10", r"expected ',' or '\)' in cosine\(\.\.\.\), found the end", 9, 10),
    ("(cosine(10)", r"expected '\)', found the end", 11, 12),
    ("cosine(10 20)", r"expected ',' or '\)' in cosine\(\.\.\.\), found '20'", 10, 12),
    ("warmup(5) >> cosine(10) garbage", r"unexpected 'garbage' after a complete schedule", 24, 31),
    ("cosine(10))", r"unexpected '\)' after a complete schedule", 10, 11),
    ("", r"empty schedule expression", 0, 1),
    ("   ", r"empty schedule expression", 3, 4),
    ("cosine(10) @ 2", r"unexpected character '@'", 11, 12),
    ("cosine(10, final=0.1;)", r"unexpected character ';'", 20, 21),
    ("cosine(final=0.1, 10)", r"a positional argument cannot follow a keyword argument", 18, 20),
    ("cosine(10, final=0.1, final=0.2)", r"argument 'final' given twice", 22, 27),
    ("multistep([3, x])", r"expected a number in the list", 14, 15),
    ("multistep([3 4])", r"expected ',' or '\]' in the list", 13, 14),
    ("warmup(5) >> cosine(0)", r"cosine: invalid steps=0; expected an integer >= 1", 13, 22),
    (
        "cyclic(4, mode=triangle)",
        r"cyclic: invalid mode='triangle'; expected one of triangular, triangular2, exp_range",
        0,
        24,
    ),
    ("cosine(10, final=nan)", r"cosine: invalid final='nan'; expected a finite number", 0, 21),
    ("0.5 * cosine()", r"cosine: missing a required argument: 'steps'", 6, 14),
    ("cosine(10, 0.1, 3)", r"cosine: too many positional arguments", 0, 18),
    ("exponential(0.9) >> cosine(10)", r"sequence: exponential\(0\.9\) never ends", 17, 19),
    ("cosine(10) >>", r"expected a schedule or a number, found the end", 13, 14),
    ("cosine(10) * * 2", r"expected a schedule or a number, found '\*'", 13, 14),
    ("cosine(10,,)", r"expected a value, found ','", 10, 11),
    ("cosine[10]", r"expected '\(', found '\['", 6, 7),
]


@pytest.mark.parametrize(("text", "message", "start", "end"), MALFORMED, ids=repr)
def test_malformed_expressions_point_at_the_bad_token(
    text: str, message: str, start: int, end: int
) -> None:
    with pytest.raises(ScheduleSyntaxError, match=message) as caught:
        parse(text)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.text, error.start, error.end) == (text, start, end)
    lines = str(error).split("\n")
    assert re.match(message, lines[0])
    assert lines[1:] == [f"  {text}", "  " + " " * start + "^" * (end - start)]


# --- bad arguments: one table for every constructor and entry point ---------------------------


def _sgd() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)


def _adam() -> torch.optim.Adam:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.1)


NAN, INF = math.nan, math.inf
INTEGER = "expected an integer >= {}"
FINITE = "expected a finite number"

BAD_ARGUMENTS = [
    # (callable, args, kwargs, exception, message regex)
    # steps: zero, negative, float, bool
    (cosine, (0,), {}, ValueError, r"^cosine: invalid steps=0; " + INTEGER.format(1)),
    (cosine, (-5,), {}, ValueError, r"^cosine: invalid steps=-5; " + INTEGER.format(1)),
    (cosine, (10.0,), {}, ValueError, r"^cosine: invalid steps=10\.0; " + INTEGER.format(1)),
    (cosine, (True,), {}, ValueError, r"^cosine: invalid steps=True"),
    (linear, (0,), {}, ValueError, r"^linear: invalid steps=0"),
    (linear, (2.5,), {}, ValueError, r"^linear: invalid steps=2\.5"),
    (warmup, (0,), {}, ValueError, r"^warmup: invalid steps=0"),
    (warmup, (-1,), {}, ValueError, r"^warmup: invalid steps=-1"),
    (polynomial, (0,), {}, ValueError, r"^polynomial: invalid steps=0"),
    (constant, (1.0,), {"steps": 0}, ValueError, r"^constant: invalid steps=0"),
    (exponential, (0.9,), {"steps": -3}, ValueError, r"^exponential: invalid steps=-3"),
    (step_decay, (0,), {}, ValueError, r"^step_decay: invalid every=0"),
    (step_decay, (3,), {"steps": 1.5}, ValueError, r"^step_decay: invalid steps=1\.5"),
    (sgdr, (0,), {}, ValueError, r"^sgdr: invalid period=0"),
    (sgdr, (10,), {"cycles": 0}, ValueError, r"^sgdr: invalid cycles=0"),
    (cyclic, (0,), {}, ValueError, r"^cyclic: invalid up=0"),
    (cyclic, (4,), {"down": 0}, ValueError, r"^cyclic: invalid down=0"),
    (one_cycle, (1,), {}, ValueError, r"^one_cycle: invalid steps=1; " + INTEGER.format(2)),
    # non-finite numbers
    (cosine, (10,), {"final": NAN}, ValueError, r"^cosine: invalid final=nan; " + FINITE + "$"),
    (cosine, (10,), {"final": INF}, ValueError, r"^cosine: invalid final=inf"),
    (cosine, (10,), {"final": "0.1"}, ValueError, r"^cosine: invalid final='0\.1'"),
    (linear, (5,), {"start": NAN}, ValueError, r"^linear: invalid start=nan"),
    (linear, (5,), {"end": -INF}, ValueError, r"^linear: invalid end=-inf"),
    (polynomial, (5,), {"final": NAN}, ValueError, r"^polynomial: invalid final=nan"),
    (constant, (NAN,), {}, ValueError, r"^constant: invalid value=nan"),
    (sgdr, (10,), {"final": NAN}, ValueError, r"^sgdr: invalid final=nan"),
    (cyclic, (4,), {"low": NAN}, ValueError, r"^cyclic: invalid low=nan"),
    (cyclic, (4,), {"high": INF}, ValueError, r"^cyclic: invalid high=inf"),
    (Scaled, (NAN, cosine(3)), {}, ValueError, r"^scaled: invalid factor=nan"),
    # gamma and other positive quantities
    (exponential, (0.0,), {}, ValueError, r"^exponential: invalid gamma=0\.0; " + FINITE + " > 0"),
    (exponential, (-0.5,), {}, ValueError, r"^exponential: invalid gamma=-0\.5"),
    (exponential, (NAN,), {}, ValueError, r"^exponential: invalid gamma=nan"),
    (step_decay, (3,), {"gamma": -0.1}, ValueError, r"^step_decay: invalid gamma=-0\.1; .* > 0"),
    (step_decay, (3,), {"gamma": 0.0}, ValueError, r"^step_decay: invalid gamma=0\.0; .* > 0"),
    (multistep, ([3],), {"gamma": -1.0}, ValueError, r"^multistep: invalid gamma=-1\.0"),
    (multistep, ([3],), {"gamma": 0.0}, ValueError, r"^multistep: invalid gamma=0\.0; .* > 0"),
    (cyclic, (4,), {"gamma": 0.0}, ValueError, r"^cyclic: invalid gamma=0\.0; " + FINITE),
    (cyclic, (4,), {"gamma": 1.5}, ValueError, r"^cyclic: invalid gamma=1\.5; .* <= 1"),
    (polynomial, (5,), {"power": 0}, ValueError, r"^polynomial: invalid power=0; " + FINITE),
    (sgdr, (10,), {"decay": 0.0}, ValueError, r"^sgdr: invalid decay=0\.0; " + FINITE + " > 0"),
    (one_cycle, (10,), {"div": 0}, ValueError, r"^one_cycle: invalid div=0"),
    (one_cycle, (10,), {"final_div": -1}, ValueError, r"^one_cycle: invalid final_div=-1"),
    # warm-up start in [0, 1]
    (warmup, (5,), {"start": 1.5}, ValueError, r"^warmup: invalid start=1\.5; .* >= 0 and <= 1$"),
    (warmup, (5,), {"start": -0.1}, ValueError, r"^warmup: invalid start=-0\.1"),
    # cyclic mode, one-cycle options and phases
    (
        cyclic,
        (4,),
        {"mode": "triangle"},
        ValueError,
        r"^cyclic: invalid mode='triangle'; expected one of triangular, triangular2, exp_range$",
    ),
    (cyclic, (4,), {"mode": "Triangular"}, ValueError, r"^cyclic: invalid mode='Triangular'"),
    (
        one_cycle,
        (10,),
        {"anneal": "cosine"},
        ValueError,
        r"^one_cycle: invalid anneal='cosine'; expected 'cos' or 'linear'$",
    ),
    (one_cycle, (10,), {"three_phase": 1}, ValueError, r"^one_cycle: invalid three_phase=1"),
    (one_cycle, (10,), {"pct_start": 0}, ValueError, r"^one_cycle: invalid pct_start=0"),
    (one_cycle, (10,), {"pct_start": 1.5}, ValueError, r"^one_cycle: invalid pct_start=1\.5"),
    (
        one_cycle,
        (10,),
        {"pct_start": 0.05},
        ValueError,
        r"^one_cycle: pct_start=0\.05 leaves an empty phase for steps=10",
    ),
    (
        one_cycle,
        (10,),
        {"pct_start": 0.6, "three_phase": True},
        ValueError,
        r"^one_cycle: pct_start=0\.6 leaves an empty phase for steps=10",
    ),
    # multistep milestones
    (multistep, ([],), {}, ValueError, r"^multistep: invalid milestones=\[\]; expected at least"),
    (
        multistep,
        ([7, 3],),
        {},
        ValueError,
        r"^multistep: invalid milestones=\[7, 3\]; expected strictly increasing steps$",
    ),
    (multistep, ([3, 3],), {}, ValueError, r"^multistep: invalid milestones=\[3, 3\]"),
    (multistep, ([0, 3],), {}, ValueError, r"^multistep: invalid milestones=0; " + INTEGER[:-3]),
    (multistep, ([2.5],), {}, ValueError, r"^multistep: invalid milestones=2\.5"),
    # sgdr mult
    (sgdr, (10,), {"mult": 0}, ValueError, r"^sgdr: invalid mult=0; " + INTEGER.format(1)),
    (sgdr, (10,), {"mult": 1.5}, ValueError, r"^sgdr: invalid mult=1\.5"),
    # sequences
    (Sequence, ((cosine(3),),), {}, ValueError, r"^sequence: expected at least two schedules"),
    (
        Sequence,
        ((sgdr(3), cosine(3)),),
        {},
        ValueError,
        r"^sequence: sgdr\(3\) never ends, so nothing after it would run",
    ),
    # steps given to a schedule
    (cosine(10), (-1,), {}, ValueError, r"^cosine: invalid step=-1; expected an integer >= 0$"),
    (cosine(10), (1.0,), {}, ValueError, r"^cosine: invalid step=1\.0"),
    (warmup(3) >> cosine(3), (-1,), {}, ValueError, r"^sequence: invalid step=-1"),
    (0.5 * sgdr(3), (-2,), {}, ValueError, r"^scaled: invalid step=-2"),
    (SGDR(3), (True,), {}, ValueError, r"^sgdr: invalid step=True"),
    # ParamScheduler
    (
        ParamScheduler,
        (_sgd, "cosine(10)"),
        {"mode": "relativ"},
        ValueError,
        r"^ParamScheduler: invalid mode='relativ'; expected 'relative' or 'absolute'$",
    ),
    (ParamScheduler, (_sgd, "cosine(10)", "1lr"), {}, ValueError, r"invalid key='1lr'"),
    (ParamScheduler, (_sgd, "cosine(10)", ""), {}, ValueError, r"invalid key=''"),
    (ParamScheduler, (_adam, "cosine(10)", "betas[-1]"), {}, ValueError, r"key='betas\[-1\]'"),
    (ParamScheduler, (_sgd, "cosine(10)", 3), {}, ValueError, r"invalid key=3"),
    (
        ParamScheduler,
        (_adam, "cosine(10)", "betas[2]"),
        {},
        ValueError,
        r"key='betas\[2\]' indexes betas=\(0\.9, 0\.999\), which has no element 2",
    ),
    (ParamScheduler, (_sgd, "cosine(10)", "lr[0]"), {}, ValueError, r"indexes lr=0\.1"),
    (ParamScheduler, (_sgd, "cosine(10)", "momentun"), {}, KeyError, r"no key 'momentun'"),
    (ParamScheduler, (_adam, "cosine(10)", "momentum"), {}, KeyError, r"no key 'momentum'"),
    (ParamScheduler, (_sgd, 3), {}, TypeError, r"schedule must be a Schedule or its text form"),
    (ParamScheduler, (_sgd, "cosin(10)"), {}, ScheduleSyntaxError, r"unknown schedule 'cosin'"),
    (ParamScheduler, ("sgd", "cosine(10)"), {}, TypeError, r"expected a torch\.optim\.Optimizer"),
    # ScheduledBatchSampler
    (ScheduledBatchSampler, (0, 4), {}, ValueError, r"invalid data_size=0; " + INTEGER.format(1)),
    (ScheduledBatchSampler, ([], 4), {}, ValueError, r"invalid data_size=0"),
    (ScheduledBatchSampler, (-3, 4), {}, ValueError, r"invalid data_size=-3"),
    (ScheduledBatchSampler, (10, 0), {}, ValueError, r"invalid batch_size=0; " + INTEGER[:-3]),
    (ScheduledBatchSampler, (10, 2.5), {}, ValueError, r"invalid batch_size=2\.5"),
    (ScheduledBatchSampler, (10, True), {}, ValueError, r"invalid batch_size=True"),
    (ScheduledBatchSampler, (10, 4), {"max_batch_size": 0}, ValueError, r"max_batch_size=0"),
    (ScheduledBatchSampler, (10, 4), {"shuffle": 1}, ValueError, r"invalid shuffle=1"),
    (ScheduledBatchSampler, (10, 4), {"seed": "a"}, ValueError, r"invalid seed='a'"),
    (ScheduledBatchSampler, (10, 4), {"start_step": -1}, ValueError, r"invalid step=-1"),
    (ScheduledBatchSampler, (10, 4, 2.0), {}, TypeError, r"schedule must be a Schedule"),
    (ScheduledBatchSampler, (10, 4, "cosine("), {}, ScheduleSyntaxError, r"found the end"),
    (
        ScheduledBatchSampler.micro_batches,
        ([1, 2, 3], 0),
        {},
        ValueError,
        r"^micro_batches: invalid micro_batch_size=0; " + INTEGER.format(1),
    ),
]


def _name(value) -> str:
    return getattr(value, "__qualname__", None) or str(value)


@pytest.mark.parametrize(
    ("function", "args", "kwargs", "exception", "message"),
    BAD_ARGUMENTS,
    ids=[f"{_name(row[0])}{row[1]!r}{row[2] or ''}" for row in BAD_ARGUMENTS],
)
def test_bad_arguments_raise_with_the_exact_message(
    function, args: tuple, kwargs: dict, exception: type, message: str
) -> None:
    args = tuple(arg() if arg in (_sgd, _adam) else arg for arg in args)
    with pytest.raises(exception) as caught:
        function(*args, **kwargs)
    assert type(caught.value) is exception
    text = caught.value.args[0] if exception is KeyError else str(caught.value)
    assert re.search(message, text), text


def test_sampler_load_state_dict_refuses_a_bad_step() -> None:
    sampler = ScheduledBatchSampler(10, 4)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match=r"ScheduledBatchSampler: invalid step="):
            sampler.load_state_dict({"step": bad})
    with pytest.raises(KeyError, match="step"):
        sampler.load_state_dict({})


@pytest.mark.parametrize(("steps", "pct_start"), [(10, 0.1), (4, 0.25), (100, 0.01)])
def test_one_cycle_with_an_empty_rising_phase_is_refused(steps: int, pct_start: float) -> None:
    with pytest.raises(ValueError, match="leaves an empty phase"):
        one_cycle(steps, pct_start=pct_start)


@pytest.mark.parametrize(("steps", "pct_start"), [(10, 0.1), (4, 0.25)])
def test_one_cycle_three_phase_with_an_empty_rising_phase_is_refused(
    steps: int, pct_start: float
) -> None:
    with pytest.raises(ValueError, match="leaves an empty phase"):
        one_cycle(steps, pct_start=pct_start, three_phase=True)
