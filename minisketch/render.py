"""Drawing sketches: SVG documents and grids, PNG (matplotlib), drawing animations (GIF), .npz.

Every function takes stroke-3 sketches: ``[N, 3]`` arrays of rows ``(dx, dy, p)`` in data units
(SPEC section 1). The first row is an offset from the origin, ``p = 1`` means the pen lifts after
this point. So the rows group into *strokes*: a stroke is a run of points that ends at a row with
``p = 1`` (or at the last row); the pen moves to the first point of the next stroke without
drawing. ``y`` grows downward, as in QuickDraw data and in SVG and image coordinates.

Each sketch is scaled to fit its canvas or cell (same scale for x and y, so the aspect is kept)
and centred. A stroke of a single point is drawn as a dot. ``grey_rows`` (one count per sketch)
draws a sketch's first rows in grey: context given as input (a kept prefix, an input sketch)
beside the model's ink in black.

Grids: functions that draw several sketches lay them out row by row, ``ncols`` per row (default
``ceil(sqrt(n))``), each in a square ``cell`` of pixels. Functions that take "one sketch or many"
treat a 2-D numeric array as one sketch and anything else (a list, a tuple, an object array) as a
sequence of sketches.

Files are written atomically (rendered in memory, written to a temporary file in the same folder,
then renamed over the target), so an error never leaves a half-written file. PNGs are drawn with
matplotlib's object API on the Agg canvas (no pyplot, no global backend switch); GIF frames are
drawn and encoded with Pillow, which comes with matplotlib.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from .errors import DataError, MinisketchError
from .fileio import write_bytes_atomic as _write_bytes_atomic
from .strokes import stroke3_to_polylines

SVG_NS = "http://www.w3.org/2000/svg"
SWEEP_TEMPERATURES = (0.01, 0.2, 0.4, 0.6, 0.8, 1.0)  # a readable row of the paper's tau sweep
FORMATS = (".svg", ".png", ".gif", ".npz")
LABEL_HEIGHT = 16  # pixels of text under each cell (or above, for column headers)
GREY = "#a0a0a0"   # rows given as input (grey_rows), beside the model's ink


# ----------------------------------------------------------------------------- sketches

def check_sketch(sketch, where: str = "sketch") -> np.ndarray:
    """A validated float64 copy ``[N, 3]`` of a stroke-3 sketch, or one clear DataError."""
    a = np.asarray(sketch)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise DataError(f"{where}: expected a numeric stroke-3 array [N, 3], got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != 3:
        hint = " (stroke-5? convert it with stroke5_to_stroke3 first)" \
            if a.ndim == 2 and a.shape[1] == 5 else ""
        raise DataError(f"{where}: expected a stroke-3 array [N, 3] of (dx, dy, pen lift), "
                        f"got shape {list(a.shape)}{hint}")
    if a.shape[0] == 0:
        raise DataError(f"{where}: the sketch is empty (0 rows); there is nothing to draw")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise DataError(f"{where}: the sketch holds NaN or infinite values")
    if not np.all((a[:, 2] == 0) | (a[:, 2] == 1)):
        raise DataError(f"{where}: the pen column (third) must hold 0 (pen stays down) or 1 "
                        f"(pen lifts after this point)")
    with np.errstate(over="ignore", invalid="ignore"):
        xy = np.cumsum(a[:, :2], axis=0)
        spans = np.ptp(xy, axis=0) if np.isfinite(xy).all() else np.array([np.inf])
    if not np.isfinite(spans).all():
        raise DataError(f"{where}: the offsets are too large: the drawing's positions overflow "
                        f"a float (|dx|, |dy| up to {np.abs(a[:, :2]).max():.3g})")
    return a


def _as_list(sketches_or_sketch) -> list:
    """One sketch (a 2-D numeric array) -> [it]; a sequence of sketches -> a list (unchecked)."""
    x = sketches_or_sketch
    if isinstance(x, np.ndarray) and x.dtype != object and x.ndim == 2:
        return [x]
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
        raise DataError(f"expected a stroke-3 sketch or a list of them, got {type(x).__name__}")
    if len(x) == 0:
        raise DataError("no sketches to draw (an empty list)")
    return list(x)


def sketch_list(sketches_or_sketch) -> list[np.ndarray]:
    """One sketch (a 2-D numeric array) or a sequence of them -> a list of checked sketches."""
    return [check_sketch(s, f"sketch {i}") for i, s in enumerate(_as_list(sketches_or_sketch))]


def sketch_strokes(sketch) -> list[np.ndarray]:
    """Absolute points of each pen-down stroke of a checked sketch: ``[n_k, 2]`` arrays, n_k >= 1.

    Point t is ``cumsum(dx, dy)`` up to row t; a stroke ends at a row with ``p = 1`` or at the
    last row; the origin itself is not a point (see ``strokes.stroke3_to_polylines``).
    """
    return stroke3_to_polylines(check_sketch(sketch))


def _fit(points: np.ndarray, width: float, height: float, padding: float):
    """(scale, tx, ty) mapping data points into a width x height box, centred, aspect kept."""
    if width - 2 * padding <= 0 or height - 2 * padding <= 0:
        raise MinisketchError(f"padding {padding} leaves no room in a {width:g} x {height:g} "
                              f"canvas; use a smaller padding or a larger size")
    lo, hi = points.min(axis=0), points.max(axis=0)
    extent = hi - lo
    room = np.array([width - 2 * padding, height - 2 * padding])
    ratios = [r / e for r, e in zip(room, extent) if e > 0]
    scale = min(ratios) if ratios else 1.0            # a sketch that is a single dot
    centre = (lo + hi) / 2
    return scale, width / 2 - scale * centre[0], height / 2 - scale * centre[1]


def _fitted_strokes(sketch, x0, y0, width, height, padding) -> list[np.ndarray]:
    """Strokes of one sketch in canvas pixels, fitted into the box at (x0, y0)."""
    return [st for st, _ in _fitted_coloured(sketch, x0, y0, width, height, padding, 0)]


def _coloured_strokes(sketch, grey_rows: int) -> list[tuple[np.ndarray, bool]]:
    """Pen-down strokes of a checked sketch as ``(points [n, 2], grey)`` pairs: the points of
    rows ``< grey_rows`` are grey, the rest black. A stroke that crosses the boundary is cut at
    row ``grey_rows - 1``, a point both parts share, so the line stays unbroken."""
    a = check_sketch(sketch)
    points = np.cumsum(a[:, :2], axis=0)
    ends = [int(t) for t in np.flatnonzero(a[:, 2] == 1)]
    if not ends or ends[-1] != len(a) - 1:
        ends.append(len(a) - 1)
    out, start = [], 0
    for end in ends:
        if end < grey_rows:
            out.append((points[start:end + 1], True))
        elif start >= grey_rows:
            out.append((points[start:end + 1], False))
        else:                                         # start < grey_rows <= end
            out.append((points[start:grey_rows], True))
            out.append((points[grey_rows - 1:end + 1], False))
        start = end + 1
    return out


def _fitted_coloured(sketch, x0, y0, width, height, padding, grey_rows):
    """:func:`_coloured_strokes` in canvas pixels, fitted into the box at (x0, y0)."""
    strokes = _coloured_strokes(sketch, grey_rows)
    scale, tx, ty = _fit(np.vstack([st for st, _ in strokes]), width, height, padding)
    return [(st * scale + np.array([x0 + tx, y0 + ty]), grey) for st, grey in strokes]


def _check_grey_rows(grey_rows, n: int) -> list[int]:
    if grey_rows is None:
        return [0] * n
    counts = list(grey_rows)
    if len(counts) != n:
        raise MinisketchError(f"got {len(counts)} grey_rows counts for {n} sketches; give one "
                              f"per sketch")
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0
           for k in counts):
        raise MinisketchError(f"grey_rows must be counts >= 0, got {counts}")
    return [int(k) for k in counts]


def _grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise MinisketchError(f"ncols must be a positive integer, got {ncols!r}")
    ncols = min(int(ncols), n)
    return math.ceil(n / ncols), ncols


def _check_labels(labels, n: int) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(s) for s in labels]
    if len(labels) != n:
        raise MinisketchError(f"got {len(labels)} labels for {n} sketches; give one per sketch")
    return labels


# ----------------------------------------------------------------------------- SVG

def _path_d(stroke: np.ndarray) -> str:
    """SVG path data for one stroke: move to its first point, then lines; a dot if one point."""
    pts = [f"{x:.2f},{y:.2f}" for x, y in stroke]
    if len(pts) == 1:
        return f"M{pts[0]} L{pts[0]}"                  # zero-length line + round cap = a dot
    return f"M{pts[0]} L" + " ".join(pts[1:])


def stroke3_to_svg_paths(sketch, size: float = 256, padding: float = 8) -> list[str]:
    """SVG path data (the ``d`` attribute), one string per pen-down stroke.

    The sketch is fitted into a ``size`` x ``size`` box with ``padding`` pixels on each side.
    """
    return [_path_d(st) for st in _fitted_strokes(sketch, 0, 0, size, size, padding)]


def _svg_document(width, height, body: list[str], stroke_width, color, background) -> str:
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="{SVG_NS}" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}">',
        f'<rect width="{width:g}" height="{height:g}" fill="{escape(background)}"/>',
        f'<g fill="none" stroke="{escape(color)}" stroke-width="{stroke_width:g}" '
        f'stroke-linecap="round" stroke-linejoin="round">',
        *body,
        "</g>",
        "</svg>",
        ""])


def _svg_text(x, y, text, anchor="middle") -> str:
    return (f'<text x="{x:g}" y="{y:g}" text-anchor="{anchor}" font-family="sans-serif" '
            f'font-size="{LABEL_HEIGHT - 4}" fill="black" stroke="none">{escape(text)}</text>')


def to_svg(sketch, size: float = 256, stroke_width: float = 2.0, padding: float = 8,
           color: str = "black", background: str = "white") -> str:
    """One sketch as an SVG document (a string): one ``<path>`` per pen-down stroke."""
    paths = [f'<path d="{d}"/>' for d in stroke3_to_svg_paths(sketch, size, padding)]
    return _svg_document(size, size, paths, stroke_width, color, background)


def _svg_grid(sketches: list[np.ndarray], ncols, cell, labels, headers, stroke_width, padding,
              color, background, grey_rows=None) -> str:
    """Cells row by row; optional text under each cell and a header row of column titles."""
    grey_rows = _check_grey_rows(grey_rows, len(sketches))
    nrows, ncols = _grid_shape(len(sketches), ncols)
    top = LABEL_HEIGHT if headers else 0
    row_h = cell + (LABEL_HEIGHT if labels else 0)
    body = []
    if headers:
        body += [_svg_text((c + 0.5) * cell, LABEL_HEIGHT - 4, h) for c, h in enumerate(headers)]
    for k, sketch in enumerate(sketches):
        r, c = divmod(k, ncols)
        x0, y0 = c * cell, top + r * row_h
        body.append(f'<g id="cell-{k}">')
        body += [f'<path d="{_path_d(st)}"' + (f' stroke="{GREY}"' if grey else "") + "/>"
                 for st, grey in _fitted_coloured(sketch, x0, y0, cell, cell, padding,
                                                  grey_rows[k])]
        if labels:
            body.append(_svg_text(x0 + cell / 2, y0 + cell + LABEL_HEIGHT - 4, labels[k]))
        body.append("</g>")
    return _svg_document(ncols * cell, top + nrows * row_h, body, stroke_width, color,
                         background)


def grid_svg(sketches, ncols: int | None = None, cell: float = 128, labels=None,
             stroke_width: float = 1.5, padding: float = 6, color: str = "black",
             background: str = "white", grey_rows=None) -> str:
    """Many sketches in one SVG, each scaled to its own ``cell`` x ``cell`` square.

    ``labels``: one string per sketch, written under its cell. ``grey_rows``: one count per
    sketch, its first rows drawn in grey. Each cell is a ``<g>`` holding one ``<path>`` per
    pen-down stroke (a stroke that turns from grey to black is two paths).
    """
    sketches = sketch_list(sketches)
    labels = _check_labels(labels, len(sketches))
    return _svg_grid(sketches, ncols, cell, labels, None, stroke_width, padding, color,
                     background, grey_rows)


def strip_svg(sketches, cell: float = 128, labels=None, **kw) -> str:
    """One row of sketches (e.g. a latent interpolation, left to right)."""
    sketches = sketch_list(sketches)
    return grid_svg(sketches, ncols=len(sketches), cell=cell, labels=labels, **kw)


def temperature_sweep_svg(rows_of_sketches, temperatures=SWEEP_TEMPERATURES, cell: float = 128,
                          stroke_width: float = 1.5, padding: float = 6, color: str = "black",
                          background: str = "white") -> str:
    """One row per input, one column per temperature, columns titled ``tau=<t>``.

    ``rows_of_sketches[i][j]`` is input i decoded at ``temperatures[j]`` (the paper shows tau from
    0.01 to 1).
    """
    temperatures = [float(t) for t in temperatures]
    if not temperatures:
        raise MinisketchError("temperature sweep: no temperatures given")
    flat = []
    for i, row in enumerate(rows_of_sketches):
        row = list(row)
        if len(row) != len(temperatures):
            raise MinisketchError(f"temperature sweep: row {i} has {len(row)} sketches for "
                                  f"{len(temperatures)} temperatures; give one per temperature")
        flat += [check_sketch(s, f"row {i}, tau={t:g}") for s, t in zip(row, temperatures)]
    if not flat:
        raise DataError("temperature sweep: no rows of sketches to draw")
    headers = [f"tau={t:g}" for t in temperatures]
    return _svg_grid(flat, len(temperatures), cell, None, headers, stroke_width, padding, color,
                     background)


# ----------------------------------------------------------------------------- files

def save_svg(sketches_or_sketch, path, ncols: int | None = None, cell: float = 128,
             labels=None, **kw) -> None:
    """Write one sketch or a grid of sketches as an SVG file (see :func:`grid_svg`)."""
    svg = grid_svg(sketch_list(sketches_or_sketch), ncols=ncols, cell=cell, labels=labels, **kw)
    _write_bytes_atomic(path, svg.encode("utf-8"))


# ----------------------------------------------------------------------------- PNG

def save_png(sketches_or_sketch, path, ncols: int | None = None, cell: float = 128,
             labels=None, stroke_width: float = 1.5, padding: float = 6, color: str = "black",
             background: str = "white", dpi: int = 100, grey_rows=None) -> None:
    """Draw one sketch or a grid of them with matplotlib and write a PNG.

    Each cell is ``cell`` x ``cell`` pixels (at ``dpi``), each stroke one line (a dot if it has
    one point), ``labels`` as titles, the first ``grey_rows[k]`` rows of sketch k in grey. Uses
    ``matplotlib.figure.Figure`` with the Agg canvas.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sketches = sketch_list(sketches_or_sketch)
    labels = _check_labels(labels, len(sketches))
    grey_rows = _check_grey_rows(grey_rows, len(sketches))
    nrows, ncols = _grid_shape(len(sketches), ncols)
    row_h = cell + (LABEL_HEIGHT if labels else 0)   # a label band above each cell
    width, height = ncols * cell, nrows * row_h       # pixels
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=background)
    FigureCanvasAgg(fig)
    for k, sketch in enumerate(sketches):
        r, c = divmod(k, ncols)
        # axes rectangle (left, bottom, width, height) in figure fractions, origin bottom left
        ax = fig.add_axes((c * cell / width, 1 - (r + 1) * row_h / height,
                           cell / width, cell / height))
        ax.set_axis_off()
        for st, grey in _fitted_coloured(sketch, 0, 0, cell, cell, padding, grey_rows[k]):
            ink = GREY if grey else color
            if len(st) == 1:
                ax.plot(st[:, 0], st[:, 1], "o", color=ink, markersize=stroke_width * 1.5,
                        markeredgewidth=0)
            else:
                ax.plot(st[:, 0], st[:, 1], "-", color=ink, linewidth=stroke_width,
                        solid_capstyle="round", solid_joinstyle="round")
        ax.set_xlim(0, cell)
        ax.set_ylim(cell, 0)                          # y grows downward, as in the data
        ax.set_aspect("equal")
        if labels:
            ax.set_title(labels[k], fontsize=8, pad=2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=background)
    _write_bytes_atomic(path, buf.getvalue())


# ----------------------------------------------------------------------------- GIF

def gif_frame_count(sketches_or_sketch, stride: int = 1) -> int:
    """Frames of :func:`save_gif`: ``ceil(N / stride) + 1``, N the longest sketch's rows."""
    sketches = sketch_list(sketches_or_sketch)
    return math.ceil(max(len(s) for s in sketches) / _check_stride(stride)) + 1


def _check_stride(stride) -> int:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise MinisketchError(f"stride must be a positive integer, got {stride!r}")
    return int(stride)


def save_gif(sketches_or_sketch, path, stride: int = 1, cell: int = 256,
             ncols: int | None = None, stroke_width: int = 3, padding: int = 12,
             frame_ms: int = 40, hold_ms: int = 1500, loop: int = 0, labels=None,
             grey_rows=None) -> int:
    """Animate the drawing of one sketch (or a grid of them, drawn together) as a GIF.

    Frame k (k = 1 .. ceil(N / stride)) shows the first ``min(k * stride, N)`` points of every
    sketch (N = rows of the longest one; a shorter sketch stays complete) with a red dot at each
    pen's current point; a final frame shows the finished drawing without the dots and is held
    for ``hold_ms``. So the file has exactly ``ceil(N / stride) + 1`` frames (returned).
    Frames are written one by one with Pillow's GIF frame encoder, so frames that look alike are
    kept, not merged, and the count is always this formula. ``labels`` are written under the
    cells; the first ``grey_rows[k]`` rows of sketch k are drawn in grey.
    """
    from PIL import Image, ImageDraw, ImageFont
    from PIL.GifImagePlugin import getdata, getheader

    stride = _check_stride(stride)
    sketches = sketch_list(sketches_or_sketch)
    labels = _check_labels(labels, len(sketches))
    grey_rows = _check_grey_rows(grey_rows, len(sketches))
    nrows, ncols = _grid_shape(len(sketches), ncols)
    cell, stroke_width = int(cell), int(stroke_width)
    row_h = cell + (LABEL_HEIGHT if labels else 0)
    n_max = max(len(s) for s in sketches)
    grey = [int(GREY[i:i + 2], 16) for i in (1, 3, 5)]
    palette = [255, 255, 255, 0, 0, 0, 220, 30, 30, *grey]  # background, ink, pen marker, grey
    ink = Image.new("P", (ncols * cell, nrows * row_h), 0)
    ink.putpalette(palette)
    pen = ImageDraw.Draw(ink)
    r_ink, r_pen = stroke_width / 2, stroke_width / 2 + 2

    cells = []  # (points [N, 2] in pixels, pen lifts [N], grey rows) per sketch
    for k, s in enumerate(sketches):
        r, c = divmod(k, ncols)
        points = np.cumsum(s[:, :2], axis=0)
        scale, tx, ty = _fit(points, cell, cell, padding)
        cells.append((points * scale + [c * cell + tx, r * row_h + ty], s[:, 2], grey_rows[k]))
        if labels:
            font = ImageFont.load_default(size=LABEL_HEIGHT - 5)
            pen.text(((c + 0.5) * cell, r * row_h + cell + LABEL_HEIGHT - 4), labels[k],
                     fill=1, font=font, anchor="ms")

    def dot(draw, xy, radius, fill):
        x, y = xy
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)

    frames, done = [], 0
    for k in range(1, math.ceil(n_max / stride) + 1):
        upto = min(k * stride, n_max)
        for pts, lifts, n_grey in cells:             # ink rows done .. upto-1 of every sketch
            for t in range(done, min(upto, len(pts))):
                colour = 3 if t < n_grey else 1
                if t > 0 and lifts[t - 1] == 0:      # pen was down coming into point t
                    pen.line([tuple(pts[t - 1]), tuple(pts[t])], fill=colour,
                             width=stroke_width)
                dot(pen, pts[t], r_ink, colour)      # round joints; a lone point is a dot
        done = upto
        frame = ink.copy()
        marker = ImageDraw.Draw(frame)
        for pts, _, _ in cells:
            dot(marker, pts[min(upto, len(pts)) - 1], r_pen, 2)
        frames.append((frame, frame_ms))
    frames.append((ink.copy(), hold_ms))

    buf = io.BytesIO()
    header, _ = getheader(frames[0][0], info={"loop": loop, "duration": frame_ms})
    for chunk in header:
        buf.write(chunk)
    for frame, ms in frames:
        for chunk in getdata(frame, duration=ms):
            buf.write(chunk)
    buf.write(b";")                                  # GIF trailer
    _write_bytes_atomic(path, buf.getvalue())
    return len(frames)


# ----------------------------------------------------------------------------- .npz

def save_npz(sketches_or_sketch, path) -> None:
    """Store sketches as numeric arrays ``sketch_0``, ``sketch_1``, ... plus ``count`` (no pickles).

    Each array keeps its dtype (int16 data stays int16), so a round trip is exact.
    """
    raw = _as_list(sketches_or_sketch)
    for i, s in enumerate(raw):
        check_sketch(s, f"sketch {i}")
    arrays = {f"sketch_{i}": np.asarray(s) for i, s in enumerate(raw)}
    buf = io.BytesIO()
    np.savez(buf, count=np.array(len(arrays), dtype=np.int64), **arrays)
    _write_bytes_atomic(path, buf.getvalue())


def load_sketches_npz(path, key: str | None = None) -> list[np.ndarray]:
    """Read sketches from a ``.npz``: a drawing file or a sketch-rnn dataset.

    A drawing file (written by :func:`save_npz`) holds numeric arrays only, and ``count`` may
    not exceed the arrays it holds. A file without ``count`` is read as sketch-rnn object arrays;
    ``key`` names the array to read (e.g. ``"test"``) and may be left out when the file holds
    only one. Both go through :mod:`minisketch.safe_npz` (no pickled code runs, every size is
    checked before it is allocated).
    """
    from .safe_npz import NpzReader

    def unreadable(e):
        reason = str(e)[len(str(path)):].lstrip(": ") if str(e).startswith(str(path)) else e
        return DataError(f"cannot read drawings from {path}: {reason}")

    try:
        z = NpzReader(path, None, "drawing .npz file")
    except DataError as e:
        raise unreadable(e) from None
    with z:
        keys = list(z.names)
        if "count" not in keys:
            return _load_object_arrays(path, keys, key)
        if key is not None:
            raise DataError(f"{path} is a drawing file (sketch_0, sketch_1, ...); it has no "
                            f"arrays to choose with key={key!r}")
        try:
            count = z.read("count")
        except DataError as e:
            raise unreadable(e) from None
        if count.shape != () or not np.issubdtype(count.dtype, np.integer) or count < 0:
            raise DataError(f"{path}: 'count' must be one non-negative integer")
        held = sum(1 for k in keys if k.startswith("sketch_"))
        names = [f"sketch_{i}" for i in range(min(int(count), held + 3))]  # count is the file's
        missing = [n for n in names if n not in keys]
        if missing:
            raise DataError(f"{path}: count is {int(count)} but {', '.join(missing[:3])}"
                            f"{' ...' if len(missing) > 3 or int(count) > held + 3 else ''} "
                            f"missing; the file is incomplete")
        try:
            out = [z.read(name) for name in names]
        except DataError as e:
            raise unreadable(e) from None
    for name, a in zip(names, out):
        check_sketch(a, f"{path}: {name}")
    return out


def _load_object_arrays(path, keys: list[str], key: str | None) -> list[np.ndarray]:
    """One object array of stroke-3 sketches from a sketch-rnn style ``.npz`` (no pickles run)."""
    from .safe_npz import load_npz

    if key is None:
        if len(keys) != 1:
            raise DataError(f"{path} holds the arrays {', '.join(keys) or '(none)'}; say which "
                            f"one to read (key='test', for example)")
        key = keys[0]
    elif key not in keys:
        raise DataError(f"{path} has no array {key!r} (it has {', '.join(keys) or 'none'})")
    sketches = load_npz(path, keys=(key,))[key]
    for i, s in enumerate(sketches):
        check_sketch(s, f"{path}: {key!r} sketch {i}")
    return sketches


# ----------------------------------------------------------------------------- dispatch

def save_drawing(sketches, path, **kw):
    """Write sketches in the format the extension names: .svg, .png, .gif or .npz.

    Keywords go to :func:`save_svg` (``ncols``, ``cell``, ``labels``, ``stroke_width``, ...),
    :func:`save_png`, :func:`save_gif` (``stride``, ``cell``, ...) or :func:`save_npz` (none).
    Returns the path written.
    """
    path = Path(path)
    writers = {".svg": save_svg, ".png": save_png, ".gif": save_gif, ".npz": save_npz}
    ext = path.suffix.lower()
    if ext not in writers:
        raise MinisketchError(f"cannot save drawings as {path.name!r}: the file name must end "
                              f"in {', '.join(FORMATS)}")
    writers[ext](sketches, path, **kw)
    return path
