"""The lessons as pages to read: docs/lessons/NN_topic.md, rendered by lessons/render_pages.py.

A page must exist for every lesson and hold the lesson's current text (its markdown and code
cells, in order: a lesson edited without re-rendering its page fails here, with the command that
fixes it), every figure it shows must be committed and small, and nothing unused may pile up in
docs/lessons/figures/. The cell splitter and the math fences are checked on a small example.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS_DIR = ROOT / "lessons"
PAGES = ROOT / "docs" / "lessons"
FIGURES = PAGES / "figures"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
MAX_PNG_BYTES = 100_000       # each committed PNG (the renderer re-encodes to stay below)
MAX_GIF_BYTES = 250_000
IMAGE = re.compile(r"!\[[^\]]*\]\(figures/([^)]+)\)")

sys.path.insert(0, str(LESSONS_DIR))
import render_pages  # noqa: E402


def _ids(paths):
    return [p.stem for p in paths]


def _page(path: Path) -> str:
    page = PAGES / f"{path.stem}.md"
    assert page.is_file(), (f"{page.relative_to(ROOT)} is missing: run "
                            f"`python lessons/render_pages.py {path.name[:2]}`")
    return page.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", LESSONS, ids=_ids(LESSONS))
def test_page_holds_the_lessons_current_text(path: Path):
    page = _page(path)
    _, cells = render_pages.split_cells(path.read_text(encoding="utf-8"))
    pos = 0
    for kind, source, line in cells:
        if not source.strip():
            continue
        block = render_pages._markdown(source) if kind == "markdown" else \
            "```python\n" + source.strip("\n") + "\n```"
        found = page.find(block, pos)
        assert found >= 0, (
            f"docs/lessons/{path.stem}.md is older than {path.name} (the {kind} cell at line "
            f"{line} is not on the page, or out of order): run "
            f"`python lessons/render_pages.py {path.name[:2]}` to regenerate it")
        pos = found + len(block)


@pytest.mark.parametrize("path", LESSONS, ids=_ids(LESSONS))
def test_page_shows_committed_small_figures(path: Path):
    names = IMAGE.findall(_page(path))
    assert names, f"docs/lessons/{path.stem}.md shows no figure"
    for name in names:
        f = FIGURES / name
        assert f.is_file(), f"{path.stem}.md shows figures/{name}, which is not there"
        limit = MAX_PNG_BYTES if f.suffix == ".png" else MAX_GIF_BYTES
        assert f.stat().st_size <= limit, f"{name} is {f.stat().st_size} bytes (> {limit})"


def test_no_unused_figures():
    shown = {n for p in PAGES.glob("*.md") for n in IMAGE.findall(p.read_text(encoding="utf-8"))}
    unused = sorted(p.name for p in FIGURES.iterdir() if p.name not in shown)
    assert not unused, f"docs/lessons/figures/ holds figures no page shows: {unused}"


def test_lesson_01_opens_with_the_trained_model_drawing():
    names = IMAGE.findall(_page(LESSONS[0]))
    assert names[0] == "01_model_draws.png", f"lesson 01's first figure is {names[0]}"
    assert "01_drawing.gif" in names and "01_model_diagram.png" in names


def test_index_links_every_lesson_and_page():
    index = (ROOT / "docs" / "lessons_index.md").read_text(encoding="utf-8")
    for path in LESSONS:
        assert f"lessons/{path.stem}.md" in index, f"lessons_index.md does not link {path.stem}.md"
        assert f"../lessons/{path.name}" in index, f"lessons_index.md does not link {path.name}"


def test_cells_and_math_fences():
    text = '"""Lesson 99: a title.\n\nBody.\n"""\n# %% [markdown]\n# ## 1. Math\n#\n# $$\n' \
           '# a = b \\\\\n# $$\n\n# %%\nx = 1\nprint(x)\n\n# %%\ny = 2\n'
    doc, cells = render_pages.split_cells(text)
    assert doc.startswith("Lesson 99: a title.")
    assert [c[0] for c in cells] == ["markdown", "code", "code"]
    assert cells[1][1] == "x = 1\nprint(x)" and cells[1][2] == 13
    assert render_pages._markdown(cells[0][1]) == "## 1. Math\n\n```math\na = b \\\\\n```"
