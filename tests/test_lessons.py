"""The lessons are part of the test suite: every ``lessons/NN_topic.py`` must run.

Each lesson runs in its own subprocess with ``MINISKETCH_FAST=1`` (small sizes, few steps), cwd =
the repository root, and a timeout; a lesson "passes" when it exits 0 (its own ``assert``s
compare the hand-derived code with the library) and has written at least one figure into
``lessons/out/`` whose name starts with the lesson's number. Lessons are discovered by glob, so
a new lesson is picked up without touching this file. The graded exercises and the rendered
pages have their own tests (test_lesson_exercises.py, test_lesson_pages.py).

The full (not fast) runs are marked ``slow``: ``pytest -m slow tests/test_lessons.py``.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS_DIR = ROOT / "lessons"
OUT_DIR = LESSONS_DIR / "out"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
FAST_TIMEOUT_S = 240         # per lesson in fast mode (most take seconds; the cap allows for a
                             # first Numba compile on a busy machine)
FULL_TIMEOUT_S = 30 * 60     # per lesson in full mode (the training lesson takes up to ~15 min)
MIN_LESSONS = 16
FIGURE_SUFFIXES = (".png", ".svg", ".gif")
# the markers are spelled in pieces so that a grep for them does not flag this file itself
_MARKERS = ["TO" + "DO", "FIX" + "ME", "X" * 3, "st" + "ub"]
PLACEHOLDER = re.compile(r"\b(" + "|".join(_MARKERS) + r")\b", re.IGNORECASE)


def _ids(paths):
    return [p.stem for p in paths]


def _run(path: Path, fast: bool, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["MINISKETCH_FAST"] = "1" if fast else "0"
    env["MPLBACKEND"] = "Agg"
    # the repo root first on the path, so the lesson tests this checkout even if not installed
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _figures_since(prefix: str, since: float) -> list[Path]:
    if not OUT_DIR.is_dir():
        return []
    return [p for p in OUT_DIR.iterdir()
            if p.name.startswith(prefix) and p.suffix in FIGURE_SUFFIXES
            and p.stat().st_mtime >= since - 1.0]


def _check_run(path: Path, fast: bool, timeout: float) -> None:
    start = time.time()
    try:
        proc = _run(path, fast, timeout)
    except subprocess.TimeoutExpired as e:
        tail = (e.stdout or "")[-3000:] if isinstance(e.stdout, str) else ""
        pytest.fail(f"{path.name} ran past its {timeout:.0f} s timeout\n{tail}")
    took = time.time() - start
    assert proc.returncode == 0, (
        f"{path.name} failed (exit {proc.returncode}, {took:.1f} s)\n"
        f"--- stdout (tail) ---\n{proc.stdout[-4000:]}\n--- stderr (tail) ---\n{proc.stderr[-4000:]}")
    prefix = path.name[:3]                        # "07_"
    figures = _figures_since(prefix, start)
    assert figures, (f"{path.name} wrote no figure named {prefix}*.png/.svg/.gif into "
                     f"{OUT_DIR} during its run")


def test_there_are_enough_lessons():
    assert len(LESSONS) >= MIN_LESSONS, (
        f"found {len(LESSONS)} lessons in {LESSONS_DIR}, want at least {MIN_LESSONS}")


def test_lessons_are_numbered_in_order_without_gaps():
    numbers = [int(p.name[:2]) for p in LESSONS]
    assert numbers == list(range(1, len(LESSONS) + 1)), (
        f"lesson numbers {numbers} should be 1..{len(LESSONS)}, each once")
    for p in LESSONS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.py", p.name), (
            f"{p.name}: lesson files are named NN_topic.py (lower case, underscores)")


@pytest.mark.parametrize("path", LESSONS, ids=_ids(LESSONS))
def test_lesson_is_well_formed(path: Path):
    text = path.read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(text))
    assert doc and len(doc.split()) >= 30, f"{path.name} should open with a docstring " \
                                           "saying what it builds, what it needs and how to run it"
    assert "MINISKETCH_FAST" in doc, f"{path.name}: the docstring should say how to run it " \
                                     "fast (MINISKETCH_FAST=1)"
    assert "# %%" in text, f"{path.name} has no '# %%' cells"
    assert re.search(r"^\s*assert ", text, re.MULTILINE), f"{path.name} has no checks (assert)"
    assert re.search(r"^# .*Exercise", text, re.MULTILINE | re.IGNORECASE), \
        f"{path.name} should end with exercises (as comments)"
    bad = [f"line {i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1)
           if PLACEHOLDER.search(line) or "NotImplementedError" in line]
    assert not bad, f"{path.name} has placeholder markers:\n" + "\n".join(bad)
    assert "SPEC" not in text, f"{path.name} refers to SPEC, a file outside the repository"


HELPERS = [p for p in LESSONS_DIR.rglob("*.py") if p not in LESSONS
           and "exercises" not in p.parts and "out" not in p.parts]


@pytest.mark.parametrize("path", HELPERS, ids=[str(p.relative_to(LESSONS_DIR)) for p in HELPERS])
def test_lesson_helpers_have_no_placeholders(path: Path):
    """Blanks (NotImplementedError) belong in lessons/exercises/ only."""
    text = path.read_text(encoding="utf-8")
    bad = [f"line {i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1)
           if PLACEHOLDER.search(line) or "raise NotImplementedError" in line]
    assert not bad, f"{path} has placeholder markers or blanks:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", LESSONS, ids=_ids(LESSONS))
def test_lesson_runs_fast(path: Path):
    _check_run(path, fast=True, timeout=FAST_TIMEOUT_S)


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=_ids(LESSONS))
def test_lesson_runs_full(path: Path):
    _check_run(path, fast=False, timeout=FULL_TIMEOUT_S)
