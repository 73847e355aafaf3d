"""The argument parsing shared by the commands (minisketch/cli.py): both spellings of every
flag, one shown in --help, preset-aware defaults, and a two-line usage error with exit 2."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minisketch import data, export, sample, train
from minisketch.cli import ArgumentParser, canonical

ROOT = Path(__file__).resolve().parents[1]


def _parsers():
    """(name, parser) for every command and subcommand."""
    out = []
    for name, parser in (("train", train.build_parser()), ("sample", sample.build_parser()),
                         ("data", data.build_parser()), ("export", export.build_parser())):
        out.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                out += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    return out


def _long_flags(parser):
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]


def test_every_command_uses_the_shared_parser():
    for name, parser in _parsers():
        assert isinstance(parser, ArgumentParser), name


def test_flags_are_declared_once_with_dashes():
    for name, parser in _parsers():
        flags = _long_flags(parser)
        assert all("_" not in f for f in flags), (name, [f for f in flags if "_" in f])
        text = parser.format_help()
        assert "--batch_size" not in text and "--eval_every" not in text, name


@pytest.mark.parametrize("spelling", ["--batch-size", "--batch_size", "--batch_size=7",
                                      "--batch-size=7"])
def test_both_spellings_of_a_hyperparameter(spelling):
    argv = [spelling] if "=" in spelling else [spelling, "7"]
    args = train.build_parser(argv).parse_args(argv)
    assert args.batch_size == 7


def test_both_spellings_of_every_flag():
    """Every long flag of every command parses under its other spelling to the same dest."""
    for name, parser in _parsers():
        for action in parser._actions:
            for flag in action.option_strings:
                if not flag.startswith("--") or "-" not in flag[2:]:
                    continue
                other = "--" + flag[2:].replace("-", "_")
                assert canonical(other) == flag
                assert parser._respell([other]) == [flag], (name, flag)
                assert parser._respell([other + "=1"]) == [flag + "=1"], (name, flag)


def test_the_underscore_spelling_parses_everywhere():
    args = train.build_parser().parse_args(["--eval_every", "5", "--log_every", "2",
                                            "--dec_model", "hyper", "--use_recurrent_dropout",
                                            "0"])
    assert (args.eval_every, args.log_every, args.dec_model) == (5, 2, "hyper")
    assert args.use_recurrent_dropout is False
    args = sample.build_parser().parse_args(["generate", "--model", "m", "--out", "o.svg",
                                             "--max_len", "9"])
    assert args.max_len == 9
    args = data.build_parser().parse_args(["info", "x.npz", "--max_seq_len", "9",
                                           "--cache_dir", "c"])
    assert args.max_seq_len == 9 and args.cache_dir == "c"


def test_values_after_double_dash_are_left_alone():
    p = ArgumentParser(prog="x")
    p.add_argument("--a-b")
    p.add_argument("rest", nargs="*")
    assert p.parse_args(["--a_b", "1", "--", "--a_b"]).rest == ["--a_b"]


def test_abbreviations_are_not_guessed(capsys):
    with pytest.raises(SystemExit) as e:
        train.build_parser().parse_args(["--batch", "3"])
    assert e.value.code == 2
    assert "unrecognized argument: --batch" in capsys.readouterr().err


@pytest.mark.parametrize("argv, default_mixture, default_steps", [
    ([], "10", train.PRESETS["quick"]["train"]["steps"]),
    (["--data", "cat"], "20", 100_000),
    (["--preset", "paper"], "20", 100_000),
    (["--data", "cat", "--preset", "quick"], "10", train.PRESETS["quick"]["train"]["steps"]),
])
def test_help_shows_the_defaults_the_run_uses(argv, default_mixture, default_steps, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv + ["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"--num-mixture N default {default_mixture}" in text
    assert f"(default {default_steps})" in text
    hp, opts = train.resolve_config(train.build_parser(argv).parse_args(argv))
    assert str(hp.num_mixture) == default_mixture and opts["steps"] == default_steps


def test_unknown_flag_names_the_closest(capsys):
    with pytest.raises(SystemExit) as e:
        train.build_parser().parse_args(["--bach-size", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "usage: python -m minisketch.train [options]"
    assert err[1].startswith("error: unrecognized argument: --bach-size (did you mean "
                             "--batch-size?)")
    assert len(err) == 2


@pytest.mark.parametrize("argv, usage", [
    (["minisketch.train", "--steps", "ten"], "usage: python -m minisketch.train [options]"),
    (["minisketch.sample", "generate", "--model", "m"],
     "usage: python -m minisketch.sample generate --model PATH --out FILE [options]"),
    (["minisketch.sample", "generate", "--model", "m", "--out", "o.svg", "--bogus"],
     "usage: python -m minisketch.sample generate --model PATH --out FILE [options]"),
    (["minisketch.sample", "draw"], "usage: python -m minisketch.sample MODE"),
    (["minisketch.data", "info"], "usage: python -m minisketch.data info SOURCE [SOURCE ...] "
                                  "[options]"),
    (["minisketch.export", "--out", "x.gen.json"],
     "usage: python -m minisketch.export --model PATH --out FILE.gen.json [options]"),
])
def test_usage_error_is_two_lines_and_exit_2(argv, usage):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=120)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert len(lines) == 2 and lines[0] == usage, r.stderr
    assert lines[1].startswith("error: ") and "Traceback" not in r.stderr
