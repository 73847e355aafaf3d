"""Render the lessons as pages to read: docs/lessons/NN_topic.md, figures in docs/lessons/figures/.

    python lessons/render_pages.py            every lesson, in full mode (the training lesson
                                              takes ~15 minutes: run it in the background)
    python lessons/render_pages.py 03 10      only these lessons
    python lessons/render_pages.py --reuse 10 rewrite the page from the last full run's records
                                              (when only markdown changed: no rerun)
    python lessons/render_pages.py --check    say which pages are missing or older than their lesson

Each lesson runs in a child process that executes its ``# %%`` cells one by one in one
namespace, capturing what each cell prints and which figures it writes into lessons/out/. The
page then holds, in order: the docstring as an introduction, each markdown cell (its ``$$``
blocks as ```math fences, which GitHub renders without markdown escaping), each code cell, its
output and its figures. PNGs are re-encoded with a 256-colour palette (and shrunk if needed) to
stay under 100 KB. Lesson 10 runs before 11 and 12, which read the model it saves.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

LESSONS = Path(__file__).resolve().parent
ROOT = LESSONS.parent
OUT = LESSONS / "out"
PAGES = ROOT / "docs" / "lessons"
FIGURES = PAGES / "figures"
MAX_PNG_BYTES = 100_000
FIGURE_SUFFIXES = (".png", ".gif", ".svg")
MAX_OUTPUT_LINES = 80


# ----------------------------------------------------------------------------- cells

def split_cells(text: str) -> tuple[str, list[tuple[str, str, int]]]:
    """(the module docstring, [(kind, source, first line number)]) of a ``# %%`` lesson file;
    kind is "markdown" (comment markers stripped) or "code"."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("# %%")]
    head = "\n".join(lines[:starts[0]] if starts else lines)
    m = re.match(r'\s*"""(.*?)"""', head, re.DOTALL)
    doc = m.group(1).strip() if m else ""
    cells = []
    for k, i in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        body = lines[i + 1:end]
        if "[markdown]" in lines[i]:
            md = [re.sub(r"^# ?", "", line) if line.startswith("#") else line for line in body]
            cells.append(("markdown", "\n".join(md).strip("\n"), i + 2))
        else:
            cells.append(("code", "\n".join(body).rstrip("\n"), i + 2))
    return doc, cells


def _snapshot() -> dict:
    return {p.name: p.stat().st_mtime_ns for p in OUT.iterdir()} if OUT.is_dir() else {}


def run_cells(path: Path, result_json: Path) -> None:
    """Child process: execute the lesson's code cells in order, recording output and figures."""
    sys.path.insert(0, str(LESSONS))
    os.chdir(ROOT)
    _, cells = split_cells(path.read_text(encoding="utf-8"))
    namespace = {"__name__": "__main__", "__file__": str(path)}
    records = []
    for kind, source, first_line in cells:
        if kind != "code":
            continue
        before = _snapshot()
        buf = io.StringIO()
        started = time.time()
        code = compile("\n" * (first_line - 1) + source, str(path), "exec")
        try:
            with contextlib.redirect_stdout(buf):
                exec(code, namespace)
        except BaseException:
            sys.stdout.write(buf.getvalue())
            traceback.print_exc()
            sys.exit(1)
        after = _snapshot()
        new = sorted((n for n in after if after[n] != before.get(n)
                      and n.startswith(path.name[:3])), key=lambda n: after[n])
        records.append({"line": first_line, "source": source, "output": buf.getvalue(),
                        "figures": new, "seconds": time.time() - started})
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
    result_json.write_text(json.dumps(records), encoding="utf-8")


# ----------------------------------------------------------------------------- page

def _markdown(text: str) -> str:
    """A markdown cell for GitHub: $$ blocks become ```math fences."""
    out, math = [], False
    for line in text.splitlines():
        if line.strip() == "$$":
            out.append("```" if math else "```math")
            math = not math
        else:
            out.append(line)
    return "\n".join(out)


def _intro(doc: str) -> tuple[str, str]:
    """(title, body markdown) from a lesson docstring; RST ``code`` becomes `code` and the
    'How to run' lines a code block."""
    doc = doc.replace("``", "`")
    first, _, rest = doc.partition("\n")
    body, run = [], []
    for line in rest.splitlines():
        if line.startswith("Figures go to"):
            continue
        if line.startswith("How to run:") or (run and line.startswith(" ")):
            run.append(line.replace("How to run:", "").strip())
        else:
            body.append(line)
    text = "\n".join(body).strip()
    if run:
        text += "\n\nHow to run it:\n\n```sh\n" + "\n".join(run) + "\n```"
    return first.strip(), text


def _clean_output(text: str) -> str:
    text = text.replace(str(ROOT.parent / "shared"), "../shared").replace(str(ROOT) + "/", "")
    lines = text.rstrip("\n").splitlines()
    if len(lines) > MAX_OUTPUT_LINES:
        keep = MAX_OUTPUT_LINES // 2
        lines = lines[:keep] + [f"... ({len(lines) - 2 * keep} lines left out) ..."] + \
            lines[-keep:]
    return "\n".join(lines)


def publish_figure(name: str) -> str:
    """Copy lessons/out/NAME into docs/lessons/figures/ (PNG: palette, under 100 KB)."""
    from PIL import Image
    src, dst = OUT / name, FIGURES / name
    FIGURES.mkdir(parents=True, exist_ok=True)
    if src.suffix != ".png":
        dst.write_bytes(src.read_bytes())
        return name
    img = Image.open(src).convert("RGB")
    colors, scale = 256, 1.0
    while True:
        im = img if scale == 1.0 else img.resize(
            (int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
        buf = io.BytesIO()
        im.quantize(colors=colors).save(buf, format="PNG", optimize=True)
        if buf.tell() <= MAX_PNG_BYTES or scale < 0.3:
            break
        colors, scale = 64, scale * 0.85
    dst.write_bytes(buf.getvalue())
    return name


def _figures_of(names: list[str]) -> list[str]:
    """The figures worth showing: PNG/GIF/SVG, an SVG only when no PNG of that name exists."""
    stems = {Path(n).stem for n in names if n.endswith(".png")}
    return [n for n in names if n.endswith(FIGURE_SUFFIXES)
            and not (n.endswith(".svg") and Path(n).stem in stems)]


def render(path: Path, records: list[dict], neighbours: tuple, publish: bool = True) -> str:
    doc, cells = split_cells(path.read_text(encoding="utf-8"))
    title, intro = _intro(doc)
    prev, nxt = neighbours
    nav = " · ".join(x for x in (
        f"[previous: {prev.stem}]({prev.stem}.md)" if prev else "",
        "[all lessons](../lessons_index.md)",
        f"[next: {nxt.stem}]({nxt.stem}.md)" if nxt else "") if x)
    exercise = sorted((LESSONS / "exercises").glob(f"{path.name[:2]}_*.py"))
    parts = [f"# {title}", "",
             f"<!-- generated by lessons/render_pages.py from lessons/{path.name}: edit the "
             "lesson, not this page -->", "",
             f"*This page is lesson [`lessons/{path.name}`](../../lessons/{path.name}) as it "
             "ran in full mode, with its printed output and figures. Run it yourself with "
             f"`python lessons/{path.name}`.*" + (
                 f" *Graded exercise: [`lessons/exercises/{exercise[0].name}`]"
                 f"(../../lessons/exercises/{exercise[0].name}), checked by "
                 f"`python lessons/grade.py {path.name[:2]}`.*" if exercise else ""),
             "", nav, "", intro, ""]
    code_records = iter(records)
    for kind, source, first_line in cells:
        if kind == "markdown":
            parts += [_markdown(source), ""]
            continue
        rec = next(code_records, None)
        if rec is None or rec["source"] != source:
            raise RuntimeError(f"{path.name}: the code cell at line {first_line} differs from "
                               "the recorded run: run the lesson again (without --reuse)")
        if not source.strip():
            continue
        parts += ["```python", source.strip("\n"), "```", ""]
        if rec["output"].strip():
            parts += ["```text", _clean_output(rec["output"]), "```", ""]
        for name in _figures_of(rec["figures"]):
            if publish:
                publish_figure(name)
            elif not (FIGURES / name).is_file():
                raise RuntimeError(f"{name} is not in {FIGURES}: run the lesson again")
            parts += [f"![{Path(name).stem}](figures/{name})", ""]
    parts += [nav, ""]
    return "\n".join(parts)


def lessons() -> list[Path]:
    return sorted(LESSONS.glob("[0-9][0-9]_*.py"))


def records_path(path: Path) -> Path:
    return OUT / f".cells_{path.stem}.json"


def render_lesson(path: Path, all_lessons: list[Path], reuse: bool = False) -> None:
    """Run the lesson in full (or reuse its last run's records) and write its page."""
    result = records_path(path)
    started = time.time()
    if not reuse:
        OUT.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MINISKETCH_FAST="0", MPLBACKEND="Agg",
                   PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [
                       os.environ.get("PYTHONPATH")] if p]))
        proc = subprocess.run([sys.executable, __file__, "--run-cells", str(path), str(result)],
                              env=env, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"error: {path.name} failed in full mode (exit {proc.returncode}); "
                             "its page was not written")
    elif not result.is_file():
        raise SystemExit(f"error: no recorded run of {path.name} in {OUT}: render it without "
                         "--reuse first")
    records = json.loads(result.read_text(encoding="utf-8"))
    k = all_lessons.index(path)
    neighbours = (all_lessons[k - 1] if k > 0 else None,
                  all_lessons[k + 1] if k + 1 < len(all_lessons) else None)
    PAGES.mkdir(parents=True, exist_ok=True)
    page = PAGES / f"{path.stem}.md"
    text = render(path, records, neighbours, publish=not reuse)
    page.write_text(text, encoding="utf-8")
    shown = set(re.findall(r"\]\(figures/([^)]+)\)", text))
    for old in FIGURES.glob(f"{path.name[:3]}*"):      # this lesson's figures it no longer shows
        if old.name not in shown:
            old.unlink()
    print(f"wrote {page.relative_to(ROOT)} ({time.time() - started:.0f} s)", file=sys.stderr)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--run-cells"]:
        run_cells(Path(argv[1]), Path(argv[2]))
        return 0
    all_lessons = lessons()
    if argv[:1] == ["--check"]:
        stale = [p.name for p in all_lessons if not (PAGES / f"{p.stem}.md").is_file()
                 or (PAGES / f"{p.stem}.md").stat().st_mtime < p.stat().st_mtime]
        print("pages up to date" if not stale else "missing or older than the lesson: "
              + ", ".join(stale))
        return 1 if stale else 0
    reuse = "--reuse" in argv
    argv = [a for a in argv if a != "--reuse"]
    chosen = [p for p in all_lessons if not argv or p.name[:2] in {a.zfill(2) for a in argv}]
    unknown = {a.zfill(2) for a in argv} - {p.name[:2] for p in all_lessons}
    if unknown:
        print(f"error: no lesson numbered {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    chosen.sort(key=lambda p: (p.name[:2] not in ("09", "10"), p.name))   # 10's model first
    for path in chosen:
        render_lesson(path, all_lessons, reuse)
    return 0


if __name__ == "__main__":
    sys.exit(main())
