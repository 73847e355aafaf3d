"""SVG drawings -> stroke-3, made the way QuickDraw made its simplified drawings.

A line of the drawing is every ``path``, ``line``, ``polyline``, ``polygon``, ``rect``, ``circle``
and ``ellipse`` whose effective stroke (attributes, ``style``, CSS, inherited) is not ``none``
and that is not hidden (``display:none``, ``visibility:hidden``); each subpath is one stroke, in
document order. ``transform`` at every level and the ``viewBox`` apply. A file without a stroked
element falls back to the outlines of its filled shapes (white fills count as background), with
a warning. svgelements parses paths, arcs, shapes, styles and transforms.

The recipe, per drawing (:func:`drawing_to_stroke3`): curves are flattened to within 0.5 px of
the output scale; the drawing is aligned to start at 0 and scaled uniformly so its longer side
is 255; every segment is resampled into equal pieces of at most 1 px; each stroke is simplified
with RDP (``epsilon``); points are rounded to whole pixels (repeats dropped). int16 ``[L, 3]``.

Safety: the bytes are parsed by defusedxml with DTDs forbidden (so no entity is expanded and
nothing external is fetched), checked (nesting depth, ``<use>`` expansion size and cycles), and
only that checked tree, serialized again, reaches svgelements. Images are never loaded.

A grid written by minisketch (every line inside groups ``cell-0`` .. ``cell-{n-1}``) holds one
drawing per cell.
Folders: :func:`read_svg_set` finds ``*.svg`` recursively; a subfolder's name is a class.
"""
from __future__ import annotations

import io
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import defusedxml
import defusedxml.ElementTree as DET
import numpy as np
import svgelements as se

from .errors import DataError
from .fileio import read_regular
from .labels import write_labelled_npz
from .quickdraw import split_sketches
from .safe_npz import SPLITS
from .strokes import polylines_to_stroke3, rdp

SIZE = 255.0                   # the longer side of every drawing, in output pixels
FLATTEN_PX = 0.5               # chords stay this close to the curves, in output pixels
MAX_FILE_BYTES = 32 << 20      # larger files are refused
MAX_DEPTH = 256                # element nesting (after <use> expansion)
MAX_ELEMENTS = 100_000         # elements after <use> expansion
MAX_FLAT_POINTS = 4_000_000    # points of the flattened curves of one file
MAX_POINTS = 500_000           # points of one drawing after resampling
_SVG_NS = "{http://www.w3.org/2000/svg}"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
# containers whose content is only drawn where something refers to it (moved into <defs>)
_REFERENCED_ONLY = {"symbol", "marker", "mask", "pattern", "clipPath", "foreignObject"}
_CELL = re.compile(r"cell-(\d+)")


class Stroke(NamedTuple):
    """One subpath: svgelements segments in the element's own coordinates and the 2x3 matrix
    ``[[a, c, e], [b, d, f]]`` taking them to the document's (viewBox applied)."""

    segments: list
    matrix: np.ndarray


# --------------------------------------------------------------------------------- safe XML


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def check_svg_bytes(data: bytes, where: str = "SVG") -> bytes:
    """Parse ``data`` safely and return the checked tree serialized again (what svgelements reads).

    DataError when the bytes are empty, too large, not XML, declare a DTD (refused before any
    entity is read), are not ``<svg>``, nest deeper than MAX_DEPTH or make ``<use>`` expand to
    more than MAX_ELEMENTS elements or into a cycle. Content drawn only by reference (symbols,
    markers, masks) is moved into ``<defs>``.
    """
    if not data.strip():
        raise DataError(f"{where} is empty")
    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{where} is too large ({len(data):,} bytes; the limit is "
                        f"{MAX_FILE_BYTES:,})")
    if data[:2] == b"\x1f\x8b":
        raise DataError(f"{where} is gzip-compressed (.svgz); save it as plain .svg")
    try:
        root = DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DTDForbidden:
        raise DataError(f"{where} is refused: it declares a DTD (<!DOCTYPE>); nothing in "
                        "it is expanded or fetched") from None
    except defusedxml.DefusedXmlException as e:
        raise DataError(f"{where} is refused: {type(e).__name__}") from None
    except ET.ParseError as e:
        raise DataError(f"{where} is not XML ({e})") from None
    if _local(root.tag) != "svg":
        raise DataError(f"{where} is not SVG (the root element is <{_local(root.tag)}>)")
    _check_expansion(root, where)
    _move_referenced_only(root)
    return ET.tostring(root)


def _check_expansion(root: ET.Element, where: str) -> None:
    """Refuse ``<use>`` links that loop, and trees that expand (as svgelements inlines each
    ``<use>``) to more than MAX_ELEMENTS elements or deeper than MAX_DEPTH.

    svgelements inlines the element a ``<use>`` names (``href``, else ``xlink:href``; the id
    after its first character; the last element with that id). Each element's expanded size
    and height are measured once (memoized), so a "billion laughs" of ``<use>`` costs one
    visit per element; the recursion is cut at MAX_DEPTH.
    """
    ids = {el.attrib["id"]: el for el in root.iter() if "id" in el.attrib}
    done: dict[int, tuple[int, int]] = {}          # id(element) -> (size, height)
    busy: set[int] = set()

    def measure(el: ET.Element, depth: int) -> tuple[int, int]:
        key = id(el)
        if key in busy:
            raise DataError(f"{where} is refused: a <use> element refers to itself (directly "
                            "or through others)")
        if key not in done:
            if depth > MAX_DEPTH:
                raise DataError(f"{where} is refused: elements nested deeper than {MAX_DEPTH} "
                                "(counting what <use> inlines)")
            busy.add(key)
            parts = [measure(child, depth + 1) for child in el]
            if _local(el.tag) == "use":
                url = el.attrib.get("href", el.attrib.get(_XLINK_HREF))
                if url and url[1:] in ids:
                    parts.append(measure(ids[url[1:]], depth + 1))
            busy.discard(key)
            done[key] = (1 + sum(p[0] for p in parts), 1 + max((p[1] for p in parts), default=0))
        size, height = done[key]
        if size > MAX_ELEMENTS:
            raise DataError(f"{where} is refused: its <use> elements expand to more than "
                            f"{MAX_ELEMENTS:,} elements")
        if depth + height - 1 > MAX_DEPTH:
            raise DataError(f"{where} is refused: elements nested deeper than {MAX_DEPTH} "
                            "(counting what <use> inlines)")
        return size, height

    measure(root, 1)


def _move_referenced_only(root: ET.Element) -> None:
    """Move symbols, markers, masks, ... found outside ``<defs>`` into a ``<defs>`` at the end
    (svgelements would otherwise draw their content where they stand)."""
    moves, stack = [], [root]
    while stack:
        el = stack.pop()
        for child in el:
            name = _local(child.tag)
            if name in _REFERENCED_ONLY:
                moves.append((el, child))
            elif name != "defs":
                stack.append(child)
    if moves:
        ns = _SVG_NS if root.tag.startswith(_SVG_NS) else ""
        defs = ET.SubElement(root, f"{ns}defs")
        for parent, child in moves:
            parent.remove(child)
            defs.append(child)


# --------------------------------------------------------------------------------- SVG -> strokes


def _paint(values: dict, key: str, default: str) -> str:
    return str(values.get(key, default)).strip().lower()


def _is_white(paint: str) -> bool:
    try:
        c = se.Color(paint)
    except (ValueError, TypeError):
        return False
    return c.value is not None and (c.red, c.green, c.blue) == (255, 255, 255)


def _matrix(m) -> np.ndarray:
    return np.array([[m.a, m.c, m.e], [m.b, m.d, m.f]], dtype=np.float64)


def _shape_strokes(shape) -> list[Stroke]:
    """The subpaths of one svgelements shape that draw something (a lone move draws nothing)."""
    matrix = _matrix(shape.transform)
    strokes, current = [], []
    for seg in shape.segments(transformed=False):
        if isinstance(seg, se.Move):
            if current:
                strokes.append(Stroke(current, matrix))
            current = []
        elif seg.start is not None and seg.end is not None:
            current.append(seg)
    if current:
        strokes.append(Stroke(current, matrix))
    return strokes


def _walk(node, cell, out: list) -> None:
    """Collect ``(cell id or None, shape)`` in document order (groups, nested svg, use)."""
    for child in node:
        if isinstance(child, se.Shape):
            out.append((cell, child))
        elif isinstance(child, list):
            name = getattr(child, "id", None)
            inner = cell
            if cell is None and isinstance(name, str) and _CELL.fullmatch(name):
                inner = int(_CELL.fullmatch(name).group(1))
            _walk(child, inner, out)


def svg_strokes(data: bytes, where: str = "SVG") -> tuple[list[list[Stroke]], bool]:
    """Bytes of an SVG file -> (drawings, each a list of :class:`Stroke`; used the fallback).

    One drawing, or one per cell of a minisketch grid: groups ``cell-0`` .. ``cell-{n-1}``
    holding every line of the file. DataError when the file is unsafe, unreadable, or has no
    drawable element.
    """
    checked = check_svg_bytes(data, where)
    try:
        # svgelements raises many kinds of errors on malformed input; each one means "unreadable"
        doc = se.SVG.parse(io.BytesIO(checked), reify=False)
    except RecursionError:
        raise DataError(f"{where} is refused: nested too deeply") from None
    except Exception as e:                      # noqa: BLE001
        raise DataError(f"{where} is not a readable SVG ({type(e).__name__}: {e})") from None
    shapes: list = []
    if isinstance(doc, list):
        _walk(doc, None, shapes)
    shapes = [(c, s) for c, s in shapes
              if _paint(s.values, "visibility", "visible") not in ("hidden", "collapse")]
    stroked = [(c, s) for c, s in shapes
               if _paint(s.values, "stroke", "none") not in ("none", "transparent", "")]
    fallback = not stroked
    if fallback:                  # a <line> has no area to fill; white fills are background
        stroked = [(c, s) for c, s in shapes
                   if _paint(s.values, "fill", "black") not in ("none", "transparent", "")
                   and not _is_white(_paint(s.values, "fill", "black"))
                   and not isinstance(s, se.SimpleLine)]
    cells = sorted({c for c, _ in stroked if c is not None})
    grid = cells == list(range(len(cells))) and all(c is not None for c, _ in stroked)
    if cells and grid:
        groups = [[s for c, s in stroked if c == k] for k in cells]
    else:
        groups = [[s for _, s in stroked]]
    try:
        drawings = [[st for s in group for st in _shape_strokes(s)] for group in groups]
    except Exception as e:                      # noqa: BLE001  (svgelements, as above)
        raise DataError(f"{where} is not a readable SVG ({type(e).__name__}: {e})") from None
    if not any(drawings):
        raise DataError(f"{where} has no drawable element (no stroked or filled path or shape)")
    return drawings, fallback


# --------------------------------------------------------------------------------- the recipe


def _xy(p) -> np.ndarray:
    return np.array([p.x, p.y], dtype=np.float64)


def curvature_bound(seg) -> float:
    """An upper bound of ``|B''(t)|`` over t in [0, 1] for one segment (0 for lines).

    The chord between t and t + h then stays within ``h**2 / 8 * bound`` of the curve.
    Quadratic: ``B'' = 2 (P0 - 2 P1 + P2)``; cubic: ``6`` times a blend of ``P0 - 2 P1 + P2``
    and ``P1 - 2 P2 + P3``; arc ``c + R (rx cos, ry sin)(t0 + sweep t)``: ``sweep**2 max(rx, ry)``.
    """
    if isinstance(seg, se.QuadraticBezier):
        p0, p1, p2 = _xy(seg.start), _xy(seg.control), _xy(seg.end)
        return 2.0 * float(np.hypot(*(p0 - 2 * p1 + p2)))
    if isinstance(seg, se.CubicBezier):
        p0, p1, p2, p3 = _xy(seg.start), _xy(seg.control1), _xy(seg.control2), _xy(seg.end)
        return 6.0 * max(float(np.hypot(*(p0 - 2 * p1 + p2))),
                         float(np.hypot(*(p1 - 2 * p2 + p3))))
    if isinstance(seg, se.Arc):
        if seg.sweep is None or (seg.start == seg.end and seg.sweep == 0):
            return 0.0
        return float(seg.sweep) ** 2 * max(abs(float(seg.rx)), abs(float(seg.ry)))
    if isinstance(seg, se.Linear):
        return 0.0
    raise DataError(f"unsupported path segment {type(seg).__name__}")


def _pieces(seg, tol: float) -> int:
    """Pieces of equal t so that every chord is within ``tol`` of the curve."""
    bound = curvature_bound(seg)
    if bound == 0.0:
        return 1
    if not tol > 0.0:
        raise DataError("the drawing is too large to flatten")
    return max(1, math.ceil(math.sqrt(bound / (8.0 * tol))))


def _points_at(seg, t: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points of one segment at parameters ``t [k]``, in document units ``[k, 2]``."""
    t = np.asarray(t, dtype=np.float64)
    if isinstance(seg, se.Linear):
        a, b = _xy(seg.start), _xy(seg.end)
        local = a + t[:, None] * (b - a)
    else:
        local = np.asarray(seg.npoint(t), dtype=np.float64).reshape(-1, 2)
    return local @ matrix[:, :2].T + matrix[:, 2]


def _points(seg, n: int, matrix: np.ndarray) -> np.ndarray:
    """Points at t = 0, 1/n, ..., 1 of one segment ``[n + 1, 2]`` (a line: its two ends)."""
    return _points_at(seg, [0.0, 1.0] if isinstance(seg, se.Linear) else
                      np.linspace(0.0, 1.0, n + 1), matrix)


def _roots01(a: float, b: float, c: float) -> list[float]:
    """Real roots in (0, 1) of ``a t^2 + b t + c`` (numerically stable form)."""
    if a == 0.0:
        return [-c / b] if b != 0.0 and 0.0 < -c / b < 1.0 else []
    disc = b * b - 4.0 * a * c
    if disc < 0.0:
        return []
    q = -0.5 * (b + math.copysign(math.sqrt(disc), b))
    roots = [q / a] + ([c / q] if q != 0.0 else [])
    return [r for r in roots if 0.0 < r < 1.0]


def extreme_ts(seg, matrix: np.ndarray) -> list[float]:
    """Parameters in (0, 1) where the transformed segment's x or y turns back (its extremes
    between the ends): roots of ``B'`` per axis for Beziers (control points transformed, as an
    affine map of a Bezier is the Bezier of the mapped points); for an arc
    ``C + U cos(theta) + V sin(theta)`` per axis, ``theta = atan2(V, U) + k pi``."""
    lin = matrix[:, :2]
    if isinstance(seg, (se.QuadraticBezier, se.CubicBezier)):
        ctrl = ([seg.start, seg.control, seg.end] if isinstance(seg, se.QuadraticBezier)
                else [seg.start, seg.control1, seg.control2, seg.end])
        p = np.array([[q.x, q.y] for q in ctrl], dtype=np.float64) @ lin.T
        ts = []
        for v in p.T:
            if len(v) == 3:
                ts += _roots01(0.0, v[0] - 2 * v[1] + v[2], v[1] - v[0])
            else:
                ts += _roots01(-v[0] + 3 * v[1] - 3 * v[2] + v[3],
                               2 * (v[0] - 2 * v[1] + v[2]), v[1] - v[0])
        return ts
    if isinstance(seg, se.Arc) and seg.sweep:
        phi = float(seg.get_rotation())
        rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
        w = lin @ rot @ np.diag([float(seg.rx), float(seg.ry)])
        t0, sweep = float(seg.get_start_t()), float(seg.sweep)
        lo, hi = min(t0, t0 + sweep), max(t0, t0 + sweep)
        ts = []
        for u, v in w:
            base = math.atan2(v, u)
            for k in range(math.floor((lo - base) / math.pi), math.ceil((hi - base) / math.pi) + 1):
                t = (base + k * math.pi - t0) / sweep
                if 0.0 < t < 1.0:
                    ts.append(t)
        return ts
    return []


def _resample(line: np.ndarray) -> np.ndarray:
    """A polyline ``[k, 2]`` -> ``ceil(length)`` equal pieces along its length (ends kept)."""
    steps = np.hypot(*np.diff(line, axis=0).T)
    total = float(steps.sum())
    if total == 0.0:
        return line[:1]
    along = np.concatenate([[0.0], np.cumsum(steps)])
    keep = np.concatenate([[True], steps > 0])     # np.interp needs increasing positions
    at = np.linspace(0.0, total, math.ceil(total) + 1)
    return np.stack([np.interp(at, along[keep], line[keep, 0]),
                     np.interp(at, along[keep], line[keep, 1])], axis=1)


def drawing_to_stroke3(strokes: Sequence[Stroke], epsilon: float = 2.0,
                       where: str = "drawing") -> np.ndarray:
    """The QuickDraw recipe (module docstring) on one drawing -> stroke-3 int16 ``[L, 3]``.

    The frame comes from the exact extent of the curves (their ends and the extremes of
    :func:`extreme_ts`); chords are then within ``0.5 / scale`` document units of the curve
    (divided by the largest stretch of the element's matrix), so within 0.5 px at the output
    scale. DataError for a drawing of zero size or with coordinates that are not finite.
    """
    strokes = [st for st in strokes if st.segments]
    if not strokes:
        raise DataError(f"{where} has no drawable element")
    with np.errstate(invalid="ignore", over="ignore"):      # checked just below
        ends = np.concatenate([_points_at(seg, [0.0, 1.0, *extreme_ts(seg, st.matrix)],
                                          st.matrix)
                               for st in strokes for seg in st.segments])
    if not np.isfinite(ends).all():
        raise DataError(f"{where} has coordinates that are not finite numbers")
    lo = ends.min(axis=0)
    extent = float((ends.max(axis=0) - lo).max())
    if not extent > 0.0:
        raise DataError(f"{where} is a single point (zero size)")
    scale = SIZE / extent
    plan = []
    for st in strokes:
        stretch = float(np.linalg.norm(st.matrix[:, :2], 2))
        tol = FLATTEN_PX / (scale * stretch) if stretch > 0 else math.inf
        plan.append([(seg, _pieces(seg, tol)) for seg in st.segments])
    count = sum(n + 1 for segs in plan for _, n in segs)
    if count > MAX_FLAT_POINTS:
        raise DataError(f"{where} is too complex ({count:,} points after flattening; the "
                        f"limit is {MAX_FLAT_POINTS:,})")
    lines = [[(_points(seg, n, st.matrix) - lo) * scale for seg, n in segs]
             for st, segs in zip(strokes, plan)]
    total = sum(float(np.hypot(*np.diff(p, axis=0).T).sum()) for segs in lines for p in segs)
    if total > MAX_POINTS:
        raise DataError(f"{where} is too long ({total:,.0f} px of lines at the 255 scale; the "
                        f"limit is {MAX_POINTS:,})")
    out = []
    for segs in lines:
        line = np.concatenate([segs[0][:1]] + [_resample(p)[1:] for p in segs])
        if epsilon and epsilon > 0:
            line = rdp(line, epsilon)
        line = np.clip(np.rint(line), 0.0, SIZE)
        repeat = np.concatenate([[False], (np.diff(line, axis=0) == 0).all(axis=1)])
        out.append(line[~repeat])
    return polylines_to_stroke3(out).astype(np.int16)


# --------------------------------------------------------------------------------- files


def _read_bytes(path: Path) -> bytes:
    return read_regular(path, MAX_FILE_BYTES, DataError, "drawing (.svg)")


def _file_drawings(path: Path, epsilon: float):
    """-> (drawings, cells left out as (name, reason), used the fallback). DataError if the file
    as a whole is unusable (also when every cell of a grid is)."""
    drawings, fallback = svg_strokes(_read_bytes(path), str(path))
    if len(drawings) == 1:
        return [drawing_to_stroke3(drawings[0], epsilon, str(path))], [], fallback
    kept, bad = [], []
    for k, strokes in enumerate(drawings):
        name = f"{path} cell {k}"
        try:
            kept.append(drawing_to_stroke3(strokes, epsilon, name))
        except DataError as e:
            bad.append((name, str(e)))
    if not kept:
        raise DataError(f"{path}: no cell of the grid is usable ({bad[0][1]})")
    return kept, bad, fallback


def _fallback_warning(path) -> str:
    return (f"{path} has no stroked element; its filled shapes' outlines are used as the "
            "drawing")


def read_svg(path: str | os.PathLike, epsilon: float = 2.0) -> list[np.ndarray]:
    """Drawings of one SVG file as stroke-3 int16 (one, or one per cell of a minisketch grid).

    Pixel units at the 255 scale, not normalized. Grid cells that are unusable are left out
    with a warning; DataError when nothing in the file is usable.
    """
    path = Path(path)
    kept, bad, fallback = _file_drawings(path, epsilon)
    if fallback:
        warnings.warn(_fallback_warning(path), UserWarning, stacklevel=2)
    for _, reason in bad:
        warnings.warn(f"left out {reason}", UserWarning, stacklevel=2)
    return kept


def load_svg(path: str | os.PathLike, epsilon: float = 2.0) -> np.ndarray:
    """One SVG drawing -> stroke-3 int16 ``[L, 3]`` in pixels (longer side 255, before
    normalization), made with the recipe of the module docstring. A minisketch grid of several
    drawings is a DataError (use :func:`read_svg` for a list)."""
    drawings = read_svg(path, epsilon)
    if len(drawings) != 1:
        raise DataError(f"{path} is a grid of {len(drawings)} drawings; read it with "
                        "minisketch.svg.read_svg(path), which returns one per cell")
    return drawings[0]


# --------------------------------------------------------------------------------- folders


def is_svg_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ``.svg`` file or a folder holding one (at any depth)."""
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() == ".svg"
    return p.is_dir() and any(True for _ in _svg_files_under(p))


def _svg_files_under(folder: Path):
    """``*.svg`` files under ``folder`` in sorted order; hidden files and folders are skipped."""
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(".svg") and not name.startswith("."):
                yield Path(top) / name


def _folder_name(path: Path) -> str:
    return path.resolve().name or "drawings"


def find_svg_files(inputs: Sequence[str | os.PathLike]) -> list[tuple[str, Path]]:
    """``(class name, file)`` for every SVG the inputs name, each file once.

    A folder is searched recursively; a file in a subfolder belongs to the class named after
    that subfolder (``drawings/cat/**/*.svg`` is ``cat``), a file directly in it to the folder's
    own name. A file given by itself belongs to its parent folder's name.
    """
    found, seen = [], set()
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            files = list(_svg_files_under(p))
            if not files:
                raise DataError(f"{p} holds no .svg files")
            pairs = [(f.relative_to(p).parts[0] if len(f.relative_to(p).parts) > 1
                      else _folder_name(p), f) for f in files]
        elif p.is_file():
            if p.suffix.lower() != ".svg":
                raise DataError(f"{p} is not an .svg file")
            pairs = [(_folder_name(p.parent), p)]
        else:
            raise DataError(f"{p} does not exist; give .svg files or folders of them")
        for name, f in pairs:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                found.append((name, f))
    return found


@dataclass
class SvgSet:
    """Drawings read from SVG files and folders.

    classes:  class name -> list of stroke-3 int16 drawings (files in sorted order).
    files:    how many files gave at least one drawing.
    left_out: ``(file or "file cell k", reason)`` of everything unusable.
    fallback: files drawn from their filled shapes (no stroked element).
    """

    classes: dict = field(default_factory=dict)
    files: int = 0
    left_out: list = field(default_factory=list)
    fallback: list = field(default_factory=list)


def read_svg_set(inputs: Sequence[str | os.PathLike], epsilon: float = 2.0,
                 report=None) -> SvgSet:
    """Read every SVG the inputs name (see :func:`find_svg_files`); bad files are left out.

    ``report(line)``, when given, hears of every file left out or drawn by the fallback as it
    happens.
    """
    out = SvgSet()
    for name, path in find_svg_files(inputs):
        try:
            kept, bad, fallback = _file_drawings(path, epsilon)
        except DataError as e:
            out.left_out.append((str(path), str(e)))
            if report:
                report(f"left out {e}")
            continue
        out.files += 1
        out.classes.setdefault(name, []).extend(kept)
        out.left_out += bad
        if fallback:
            out.fallback.append(str(path))
            if report:
                report(f"warning: {_fallback_warning(path)}")
        for _, reason in bad:
            if report:
                report(f"left out {reason}")
    out.classes = dict(sorted(out.classes.items()))
    return out


class SvgSplits(NamedTuple):
    """Train/valid/test of an :class:`SvgSet`, split class by class."""

    splits: dict        # split -> list of stroke-3
    labels: dict        # split -> int64 [n], index into class_names
    class_names: list
    dropped: int        # drawings longer than max_seq_len
    left_out: list      # (class, reason) of classes with too few drawings


def split_svg_set(svgset: SvgSet, seed: int = 0, max_seq_len: int | None = None) -> SvgSplits:
    """Length filter, then each class shuffled and split 90/5/5 by ``seed`` (the ndjson path's
    :func:`~minisketch.quickdraw.split_sketches`); a class with fewer than 3 drawings left is
    left out. Classes come in sorted order."""
    splits = {k: [] for k in SPLITS}
    labels = {k: [] for k in SPLITS}
    names, dropped, left_out = [], 0, []
    for name, drawings in svgset.classes.items():
        if max_seq_len is not None:
            kept = [s for s in drawings if len(s) <= int(max_seq_len)]
            dropped += len(drawings) - len(kept)
            drawings = kept
        if len(drawings) < 3:
            limit = f" with at most {max_seq_len} points" if max_seq_len is not None else ""
            left_out.append((name, f"class {name!r} has {len(drawings)} drawing(s){limit}; a "
                                   "train/valid/test split needs at least 3"))
            continue
        for k, part in split_sketches(drawings, seed).items():
            splits[k] += part
            labels[k] += [len(names)] * len(part)
        names.append(name)
    return SvgSplits(splits, {k: np.asarray(v, dtype=np.int64) for k, v in labels.items()},
                     names, dropped, left_out)


def left_out_listing(left_out: list, limit: int = 5) -> str:
    """The first ``limit`` reasons of ``[(name, reason), ...]``, joined, and how many more."""
    shown = "; ".join(reason for _, reason in left_out[:limit])
    more = len(left_out) - limit
    return shown + (f"; and {more:,} more" if more > 0 else "")


def convert_svg(inputs: Sequence[str | os.PathLike], out_path: str | os.PathLike,
                epsilon: float = 2.0, max_seq_len: int | None = None, seed: int = 0,
                strict: bool = False, report=None) -> dict:
    """SVG files and folders -> a labelled sketch-rnn ``.npz`` (see :mod:`minisketch.labels`).

    Bad files are left out (``report(line)`` hears of each); the file is written atomically,
    and not at all when ``strict`` and anything was left out, or when nothing usable is left
    (DataError). Returns a summary: ``path``, ``files``, ``classes`` (name -> count),
    ``splits``, ``left_out`` (list of reasons), ``fallback``, ``dropped``, ``max_seq_len``.
    """
    if max_seq_len is not None and int(max_seq_len) < 1:
        raise DataError(f"max_seq_len must be positive, got {max_seq_len}")
    found = read_svg_set(inputs, epsilon, report)
    parts = split_svg_set(found, seed, max_seq_len)
    left_out = found.left_out + parts.left_out
    if strict and left_out:
        raise DataError(f"--strict: {len(left_out):,} left out, nothing written: "
                        f"{left_out_listing(left_out, 3)}")
    if not parts.class_names:
        why = f"; left out {len(left_out):,}: {left_out_listing(left_out, 3)}" if left_out else ""
        limit = (f" ({parts.dropped:,} longer than {max_seq_len} points)"
                 if parts.dropped else "")
        raise DataError(f"no usable drawings in {', '.join(map(str, inputs))}{limit}{why}")
    path = write_labelled_npz(out_path, parts.splits, parts.labels, parts.class_names)
    counts = {name: int(sum((parts.labels[k] == i).sum() for k in SPLITS))
              for i, name in enumerate(parts.class_names)}
    return {"path": str(path), "files": found.files, "classes": counts,
            "splits": {k: len(v) for k, v in parts.splits.items()},
            "left_out": [reason for _, reason in left_out], "fallback": list(found.fallback),
            "dropped": parts.dropped,
            "max_seq_len": max(len(s) for v in parts.splits.values() for s in v)}


def summary_line(summary: dict) -> str:
    """"converted 1,204 files into 3 classes, left out 7: ..." for :func:`convert_svg`'s result."""
    n_files, n_classes = summary["files"], len(summary["classes"])
    left = summary["left_out"]
    text = (f"converted {n_files:,} file{'s' if n_files != 1 else ''} into {n_classes:,} "
            f"class{'es' if n_classes != 1 else ''}")
    if left:
        text += f", left out {len(left):,}: " + left_out_listing([(None, r) for r in left])
    return text
