"""``python -m minisketch.data``: the acceptance numbers, the error contract, no partial files."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file
from test_safe_npz import GOOD, TouchFile, broken_files, save

from minisketch import data
from minisketch.errors import run_cli
from minisketch.safe_npz import load_npz

REPO = Path(__file__).resolve().parents[1]
DRAWING = [[[10, 20, 30], [5, 5, 40]], [[100, 100], [0, 50]]]


def cli(*args, cwd=REPO):
    """Run the real command in a subprocess -> (exit code, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "minisketch.data", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("name, splits, nmax, sf", [
    ("aaron_sheep.npz", {"train": 7400, "valid": 300, "test": 300}, 250, 18.5198),
    ("short_kanji.npz", {"train": 10000, "valid": 600, "test": 500}, 88, 99.7125),
])
def test_info_json_reference_numbers(name, splits, nmax, sf):
    shared_file(name)
    rc, out, err = cli("info", f"../shared/data/{name}", "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert info["splits"] == splits and info["max_seq_len"] == nmax and info["dropped"] == 0
    assert abs(info["scale_factor"] - sf) < 1e-3


def test_code_carrying_npz_is_refused_by_the_command(tmp_path):
    marker = tmp_path / "pwned"
    evil = save(tmp_path / "evil.npz", train=[GOOD[0], TouchFile(marker)], valid=GOOD,
                test=GOOD)
    rc, out, err = cli("info", evil, "--json")
    assert rc == 1 and out == ""
    assert "not allowed" in one_error_line(err)
    assert not marker.exists()


def test_each_broken_npz_is_one_distinct_error_line(tmp_path, capsys):
    seen = set()
    cases = broken_files(tmp_path)
    for name, (path, pattern) in cases.items():
        assert run_cli(data.main, ["info", str(path), "--json"]) == 1, name
        captured = capsys.readouterr()
        assert captured.out == ""
        seen.add(one_error_line(captured.err))
    assert len(seen) == len(cases)


def ndjson(drawings):
    return "".join(json.dumps({"word": "x", "drawing": d}) + "\n" for d in drawings)


BAD_NDJSON = {
    "truncated": (ndjson([DRAWING] * 5)[:-25], "not valid JSON"),
    "empty": ("", "empty"),
    "html": ("<!DOCTYPE html>\n<html><body>Too many requests</body></html>\n", "HTML page"),
    "no_drawing": ('{"word": "cat"}\n', 'no "drawing"'),
    "wrong_shape": (ndjson([[[[1, 2, 3]]]]), r"\[\[x...\], \[y...\]\]"),
    "non_numeric": (ndjson([[[["a", "b"], [1, 2]]]]), "not numbers"),
    "nan": ('{"drawing": [[[1, NaN], [1, 2]]]}\n', "NaN"),
    "too_few": (ndjson([DRAWING] * 2), "at least 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_NDJSON))
def test_convert_failures_leave_no_output(tmp_path, capsys, case):
    text, pattern = BAD_NDJSON[case]
    src = tmp_path / "in.ndjson"
    src.write_text(text)
    out = tmp_path / "out.npz"
    assert run_cli(data.main, ["convert", str(src), str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert re.search(pattern, line), line
    assert sorted(os.listdir(tmp_path)) == ["in.ndjson"]


def test_convert_binary_input_and_missing_output_folder(tmp_path, capsys):
    binary = save(tmp_path / "data.npz", train=GOOD, valid=GOOD, test=GOOD)
    assert run_cli(data.main, ["convert", str(binary), str(tmp_path / "o.npz")]) == 1
    assert "not UTF-8" in one_error_line(capsys.readouterr().err)
    src = tmp_path / "in.ndjson"
    src.write_text(ndjson([DRAWING] * 5))
    assert run_cli(data.main, ["convert", str(src), str(tmp_path / "nope" / "o.npz")]) == 1
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == ["data.npz", "in.ndjson"]


def test_convert_writes_npz_for_both_loaders(tmp_path):
    src = tmp_path / "in.ndjson"
    src.write_text(ndjson([DRAWING] * 38 + [[[list(range(0, 300, 5)), [0, 9] * 30]]] * 2))
    out = tmp_path / "out.npz"
    rc, stdout, err = cli("convert", src, out, "--epsilon", "1.5", "--max-seq-len", "20",
                          "--seed", "4")
    assert rc == 0, err
    assert "train 34, valid 2, test 2" in stdout and "dropped 2" in stdout
    ours = load_npz(out)
    ref = np.load(out, allow_pickle=True, encoding="latin1")
    assert {k: len(v) for k, v in ours.items()} == {"train": 34, "valid": 2, "test": 2}
    for k in ours:
        for a, b in zip(ours[k], ref[k]):
            np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path)) == ["in.ndjson", "out.npz"]


def test_info_text_and_builtin_shapes(capsys):
    assert run_cli(data.main, ["info", "builtin:shapes"]) == 0
    out = capsys.readouterr().out
    assert "train 4900, valid 350, test 350" in out and "scale_factor:" in out
    assert run_cli(data.main, ["info", "builtin:shapes", "--json", "--max-seq-len", "40"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["max_seq_len"] <= 40 and info["dropped"] > 0
    assert set(info) >= {"splits", "max_seq_len", "scale_factor", "dropped"}


@pytest.mark.parametrize("command", [[], ["info"], ["download"], ["convert"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        data.main(command + ["--help"])
    assert e.value.code == 0
    assert "usage: python -m minisketch.data" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["info"], ["convert", "a.ndjson"],
                                  ["download", "cat", "--format", "zip"],
                                  ["convert", "a.ndjson", "b.npz", "--epsilon", "-1"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(data.main, argv)
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert "usage:" in captured.err and captured.out == ""


def test_usage_error_exit_code_of_the_real_command():
    rc, out, err = cli("info")
    assert rc == 2 and "required: SOURCE" in err and out == ""
