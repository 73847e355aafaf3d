"""The README's examples run as written on a fresh clone: every ``python`` block runs (in an
empty folder, with the packaged model and builtin:shapes only), every command line is a known
command, the offline sampling and data commands run, and the training and export lines parse.
Lines that need a download or a GPU must say so in their comment."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", TEXT, flags=re.S | re.M)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
COMMANDS = [line for lang, code in BLOCKS if lang == "bash" for line in code.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
KNOWN = ("pip install ", "pytest", "python -m minisketch.train", "python -m minisketch.sample ",
         "python -m minisketch.data ", "python -m minisketch.export ",
         "python -m minisketch.draw", "MINISKETCH_FAST=1 python lessons/", "python lessons/",
         "bash scripts/", "scripts/")
NEEDS = ("needs a download", "needs the internet", "needs a gpu")


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}


def _command(line: str) -> str:
    return line.split("  #")[0].split(" # ")[0].strip()


def _comment(line: str) -> str:
    return line.partition("#")[2].lower()


def test_readme_is_a_short_users_readme():
    assert len(TEXT.encode("utf-8")) <= 12 * 1024
    assert "../shared" not in TEXT and "CONTRACT" not in TEXT      # developer material lives
    assert "exit code 2" in TEXT and "exit code 1" in TEXT          # in docs/developing.md
    assert PYTHON and COMMANDS


def test_local_links_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", TEXT):
        if "://" not in target:
            assert (ROOT / target).exists(), target


@pytest.mark.parametrize("k", range(len(PYTHON)))
def test_python_blocks_run(k, tmp_path):
    r = subprocess.run([sys.executable, "-c", PYTHON[k]], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"README python block {k + 1} failed:\n{PYTHON[k]}\n{r.stderr}"


def test_every_command_line_is_known():
    for line in COMMANDS:
        assert _command(line).startswith(KNOWN), line


def test_lines_that_need_more_say_so():
    """A line using a QuickDraw class or the GPU is marked; nothing else downloads."""
    for line in COMMANDS:
        cmd = _command(line)
        words = shlex.split(cmd)
        uses_class = any(w in ("cat", "pig") for w in words)
        if uses_class or "download" in words:
            assert any(n in _comment(line) for n in NEEDS[:2]), line
        if "cupy" in words:
            assert "gpu" in _comment(line), line


def _sample_and_data_lines():
    return [_command(ln) for ln in COMMANDS
            if _command(ln).startswith(("python -m minisketch.sample ",
                                        "python -m minisketch.data info"))
            and not any(n in _comment(ln) for n in NEEDS)]


@pytest.mark.parametrize("line", _sample_and_data_lines())
def test_offline_sample_and_data_commands_run(line, tmp_path):
    r = subprocess.run([sys.executable, *shlex.split(line)[1:]], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{line}\n{r.stderr}"
    assert "Traceback" not in r.stderr


def _parse_lines(module):
    return [_command(ln) for ln in COMMANDS if _command(ln).startswith(f"python -m {module}")]


@pytest.mark.parametrize("line", _parse_lines("minisketch.train")
                         + _parse_lines("minisketch.export"))
def test_train_and_export_lines_parse(line):
    """Long commands are not run here; their flags must exist and their values parse."""
    from minisketch import export, train
    argv = shlex.split(line)[3:]
    if "minisketch.train" in line:
        train.build_parser(argv).parse_args(argv)
    else:
        export.build_parser().parse_args(argv)
