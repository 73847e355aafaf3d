"""SVG drawings in (minisketch/svg.py): strokes per drawing against hand-computed expectations,
the QuickDraw recipe's bounds, hostile XML refused without resolving anything, minisketch's own
SVG output round-tripping, and a labelled folder converted, inspected and trained on.

The hand-written files live in tests/data/svg/drawings/<class>/; every expectation below is
worked out from the numbers in those files (their comments say how each was built).
"""
from __future__ import annotations

import http.server
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import minisketch as ms
from minisketch import data, datasets, labels, render, svg
from minisketch.errors import DataError, run_cli
from minisketch.safe_npz import load_npz
from minisketch.strokes import polylines_to_stroke3, stroke3_to_polylines

DRAWINGS = Path(__file__).resolve().parent / "data" / "svg" / "drawings"
ROOT = Path(__file__).resolve().parents[1]
ROUNDING = math.sqrt(0.5)       # rounding to whole pixels moves a point at most this far
FLAT = 0.5                      # the recipe's flattening bound, in output pixels


def strokes(s3) -> list[list[list[int]]]:
    return [line.astype(int).tolist() for line in stroke3_to_polylines(s3)]


def load(path, epsilon=2.0):
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # these files must convert without a warning
        return ms.load_svg(path, epsilon=epsilon)


def distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance of each of ``points [n, 2]`` to the polyline ``line [m, 2]`` (a point if m == 1)."""
    points, line = np.asarray(points, float).reshape(-1, 2), np.asarray(line, float).reshape(-1, 2)
    if len(line) == 1:
        return np.hypot(*(points - line[0]).T)
    a, b = line[:-1], line[1:]
    ab = b - a
    denom = np.maximum((ab * ab).sum(axis=1), 1e-300)
    t = np.clip(((points[:, None, :] - a[None]) * ab[None]).sum(axis=2) / denom, 0.0, 1.0)
    proj = a[None] + t[..., None] * ab[None]
    return np.hypot(*(points[:, None, :] - proj).transpose(2, 0, 1)).min(axis=1)


def assert_traces(line, ideal, near, cover):
    """Every point of ``line`` lies within ``near`` of the ``ideal`` curve (densely sampled), and
    every ideal point within ``cover`` of the polyline ``line``."""
    far = distance_to_polyline(line, ideal).max()
    assert far <= near, f"a point lies {far:.3f} px off the ideal curve (bound {near:.3f})"
    gap = distance_to_polyline(ideal, line).max()
    assert gap <= cover, f"the ideal curve passes {gap:.3f} px from the stroke (bound {cover:.3f})"


def to_frame(curves, lo, scale):
    return [(np.asarray(c, float) - lo) * scale for c in curves]


# --------------------------------------------------------------------------------- lines, by hand

# house/*.svg: an outline 10..50 by 10..61 (longer side 51, so the scale is 255 / 51 = 5) and a
# door; each point is (x - 10, y - 10) * 5. RDP (epsilon 2) keeps exactly the corners.
HOUSE = [[[0, 255], [200, 255], [200, 100], [100, 0], [0, 100], [0, 255]],
         [[75, 255], [75, 180], [125, 180], [125, 255]]]


@pytest.mark.parametrize("name", ["house/inkscape.svg", "house/nested.svg", "house/relative.svg"])
def test_house_three_ways(name):
    """Inkscape's file (layer transform, mm size, styles, metadata, a hidden guide layer, a
    filled-only window), nested group transforms (matrix, translate, rotate, skewX, scale) that
    cancel to a uniform scale, and relative commands (m l h v z, implicit repeats) agree."""
    assert strokes(load(DRAWINGS / name)) == HOUSE


def test_plain_shapes_in_document_order():
    # box/shapes.svg: the rect spans 10..61 (51 wide), so (x - 10, y - 10) * 5; styled by CSS
    assert strokes(load(DRAWINGS / "box/shapes.svg")) == [
        [[0, 0], [255, 0], [255, 170], [0, 170], [0, 0]],          # rect, closed
        [[0, 170], [255, 0]],                                        # line
        [[50, 50], [100, 100], [150, 50]],                           # polyline
        [[175, 25], [225, 25], [200, 75], [175, 25]]]                # polygon, closed


def test_hidden_elements_defs_symbols_and_use():
    # box/extra/hidden.svg: a top line 10..61 at y 10 (scale 5), the <use> of a <defs> tick
    # moved to (10, 10), and the one visible child of a hidden group; display:none (style and
    # CSS class), stroke:none, visibility:hidden and an unused <symbol> draw nothing
    assert strokes(load(DRAWINGS / "box/extra/hidden.svg")) == [
        [[0, 0], [255, 0]], [[0, 0], [0, 85]], [[255, 0], [255, 85]]]


def test_fill_only_file_falls_back_to_outlines_with_a_warning():
    # box/fill_only.svg: triangle (10,60) (61,60) (61,9): 51 by 51, scale 5; the white
    # background rectangle is not part of the drawing
    with pytest.warns(UserWarning, match="no stroked element"):
        s3 = ms.load_svg(DRAWINGS / "box/fill_only.svg")
    assert strokes(s3) == [[[0, 255], [255, 255], [255, 0], [0, 255]]]


def test_result_is_int16_stroke3_with_pen_lifts_per_subpath():
    s3 = load(DRAWINGS / "house/relative.svg")
    assert s3.dtype == np.int16 and s3.shape == (10, 3)
    assert s3[:, 2].tolist() == [0] * 5 + [1] + [0] * 3 + [1]
    assert s3[0, :2].tolist() == [0, 255]        # the first row is an offset from the origin


# --------------------------------------------------------------------------------- curves, by hand


def circle(c, r, n=4000):
    t = np.linspace(0, 2 * np.pi, n)
    return np.stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)], axis=1)


def test_circle_is_one_closed_stroke_on_the_circle():
    # wheel/circle.svg: r 40 around (50, 50): spans 10..90, so the circle of radius 127.5
    # around (127.5, 127.5); the white background <rect> has no stroke
    for eps in (0.0, 2.0):
        (line,) = stroke3_to_polylines(load(DRAWINGS / "wheel/circle.svg", eps))
        assert (line[0] == line[-1]).all()
        assert_traces(line, circle((127.5, 127.5), 127.5), FLAT + ROUNDING,
                      eps + FLAT + ROUNDING)
        if eps == 0:
            # resampled into 2 pi 127.5 = 801 pieces of at most 1 px; rounding merges some
            # neighbours (repeats are dropped) and moves each point at most ROUNDING
            steps = np.hypot(*np.diff(line, axis=0).T)
            assert steps.min() >= 1 and steps.max() <= 1 + 2 * ROUNDING
            assert 801 / (1 + 2 * ROUNDING) <= len(line) - 1 <= 802


def test_arcs_absolute_relative_and_their_flags():
    # wheel/arcs.svg: two circles r 40 around (50, 50) and (150, 50): x 10..190 (180), so the
    # scale is 255 / 180 and the offset (10, 10)
    scale = 255 / 180
    first, second = stroke3_to_polylines(load(DRAWINGS / "wheel/arcs.svg", 0.0))
    for line, cx in ((first, 50), (second, 150)):
        ideal = to_frame([circle((cx, 50), 40)], (10, 10), scale)[0]
        assert_traces(line, ideal, FLAT + ROUNDING, FLAT + ROUNDING)
    centre_y = 40 * scale
    # sweep-flag 1 from the left end runs over the top (smaller y) first; the relative path has
    # sweep-flag 0, so it runs under the bottom first
    quarter = len(first) // 4
    assert first[1:quarter, 1].mean() < centre_y < second[1:quarter, 1].mean()
    np.testing.assert_array_equal(first[0], np.rint([0, centre_y]))
    np.testing.assert_array_equal(second[0], np.rint([100 * scale, centre_y]))


def test_rotated_ellipse_as_shape_and_as_arcs():
    # wheel/ellipse.svg: radii 60, 20 turned 30 degrees about (100, 100); half extents
    # sqrt(60^2 cos^2 30 + 20^2 sin^2 30) = sqrt(2800) and sqrt(60^2 sin^2 30 + 20^2 cos^2 30)
    # = sqrt(1200), so the scale is 255 / (2 sqrt(2800))
    hw, hh = math.sqrt(2800), math.sqrt(1200)
    t = np.linspace(0, 2 * np.pi, 4000)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    ideal = np.stack([100 + 60 * np.cos(t) * c - 20 * np.sin(t) * s,
                      100 + 60 * np.cos(t) * s + 20 * np.sin(t) * c], axis=1)
    ideal = to_frame([ideal], (100 - hw, 100 - hh), 255 / (2 * hw))[0]
    lines = stroke3_to_polylines(load(DRAWINGS / "wheel/ellipse.svg", 0.0))
    assert len(lines) == 2
    for line in lines:
        assert_traces(line, ideal, FLAT + ROUNDING, FLAT + ROUNDING)


def bezier(points, n=2000):
    t = np.linspace(0, 1, n)[:, None]
    p = [np.asarray(q, float) for q in points]
    if len(p) == 3:
        return (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t ** 2 * p[2]
    return ((1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2]
            + t ** 3 * p[3])


def test_relative_and_smooth_beziers():
    # wheel/bezier.svg, worked out by hand: stroke 1 is the cubic (0,0) (0,100) (100,100)
    # (100,0) then the smooth one (100,0) (100,-100) (200,-100) (200,0); its y is 300 t (1 - t)
    # at most, so it spans -75..75. Stroke 2 is the quadratic (0,120) (50,220) (100,120) then
    # (100,120) (150,20) (200,120), spanning 70..170. So y spans -75..170 (245, the longer
    # side) and x 0..200: scale 255 / 245, offset (0, -75).
    cubic = np.concatenate([bezier([(0, 0), (0, 100), (100, 100), (100, 0)]),
                            bezier([(100, 0), (100, -100), (200, -100), (200, 0)])])
    quad = np.concatenate([bezier([(0, 120), (50, 220), (100, 120)]),
                           bezier([(100, 120), (150, 20), (200, 120)])])
    ideal = to_frame([cubic, quad], (0, -75), 255 / 245)
    for eps in (0.0, 2.0):
        lines = stroke3_to_polylines(load(DRAWINGS / "wheel/bezier.svg", eps))
        assert len(lines) == 2
        for line, curve in zip(lines, ideal):
            assert_traces(line, curve, FLAT + ROUNDING, eps + FLAT + ROUNDING)
        np.testing.assert_array_equal(lines[0][[0, -1]], np.rint(ideal[0][[0, -1]]))


def test_rounded_rect():
    # box/rounded.svg: 85 by 51 with corner radius 17 at (10, 10): scale 3, so straight edges
    # from 51 to 204 along x, 51 to 102 along y, and quarter circles of radius 51
    r = 51.0

    def quarter(cx, cy, start):
        a = np.linspace(start, start + np.pi / 2, 1000)
        return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)

    ideal = np.concatenate([
        np.linspace((51, 0), (204, 0), 500), quarter(204, 51, -np.pi / 2),
        np.linspace((255, 51), (255, 102), 500), quarter(204, 102, 0),
        np.linspace((204, 153), (51, 153), 500), quarter(51, 102, np.pi / 2),
        np.linspace((0, 102), (0, 51), 500), quarter(51, 51, np.pi)])
    (line,) = stroke3_to_polylines(load(DRAWINGS / "box/rounded.svg", 0.0))
    assert (line[0] == line[-1]).all()
    assert_traces(line, ideal, FLAT + ROUNDING, FLAT + ROUNDING)


# --------------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("name, reason", [
    ("house/broken.svg", "is not XML"),
    ("wheel/laughs.svg", "refused: it declares a DTD"),
    ("wheel/external.svg", "refused: it declares a DTD"),
    ("box/empty.svg", "is empty"),
    ("box/dot.svg", "single point"),
    ("box/notes.svg", "no drawable element"),
])
def test_bad_files_are_refused_with_a_reason(name, reason):
    with pytest.raises(DataError, match=reason):
        ms.load_svg(DRAWINGS / name)


SVG_OPEN = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
LINE = '<path d="M 0 0 L 10 10" stroke="black"/>'


def refuse(text: str | bytes, match: str):
    with pytest.raises(DataError, match=match):
        drawings, _ = svg.svg_strokes(text.encode() if isinstance(text, str) else text, "x.svg")
        for d in drawings:
            svg.drawing_to_stroke3(d, 2.0, "x.svg")


def test_use_bombs_cycles_and_deep_nesting_are_refused():
    bomb = ['<g id="g0">' + LINE + "</g>"]
    for k in range(1, 12):                      # 10 ** 11 elements once expanded
        bomb.append(f'<g id="g{k}">' + f'<use xlink:href="#g{k - 1}"/>' * 10 + "</g>")
    refuse(SVG_OPEN + "<defs>" + "".join(bomb) + '</defs><use href="#g11"/></svg>',
           "expand to more than")
    refuse(SVG_OPEN + f'<g id="a">{LINE}<use href="#a"/></g></svg>', "refers to itself")
    refuse(SVG_OPEN + '<g id="a"><use href="#b"/></g><g id="b"><use href="#a"/></g></svg>',
           "refers to itself")
    refuse(SVG_OPEN + "<g>" * 300 + LINE + "</g>" * 300 + "</svg>", "nested deeper")
    refuse('<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/'
           '1.1/DTD/svg11.dtd">' + SVG_OPEN + LINE + "</svg>", "DTD")
    refuse("<html><body>not a drawing</body></html>", r"not SVG \(the root element is <html>\)")
    refuse(b"\x1f\x8b\x08\x00gzip", "gzip")
    refuse(SVG_OPEN + '<path d="M 0 0 L 1e400 0" stroke="black"/></svg>', "not finite")


def test_use_chains_count_their_depth():
    chain = "".join(f'<g id="g{k}"><use href="#g{k + 1}"/></g>' for k in range(200))
    refuse(SVG_OPEN + "<defs>" + chain + f'<g id="g200">{LINE}</g></defs><use href="#g0"/></svg>',
           "nested deeper than 256")
    short = "".join(f'<g id="g{k}"><use href="#g{k + 1}"/></g>' for k in range(20))
    drawings, _ = svg.svg_strokes((SVG_OPEN + "<defs>" + short + f'<g id="g20">{LINE}</g>'
                                   '</defs><use href="#g0"/></svg>').encode())
    assert len(drawings) == 1 and len(drawings[0]) == 1


def test_cells_are_a_grid_only_when_they_hold_every_line():
    cell = '<g id="cell-0"><path d="M 0 0 L 10 0" stroke="black"/></g>'
    other = '<g id="cell-1"><path d="M 0 5 L 10 5" stroke="black"/></g>'
    assert len(svg.svg_strokes((SVG_OPEN + cell + other + "</svg>").encode())[0]) == 2
    for extra in (LINE, '<g id="cell-2"><path d="M 0 9 L 1 9" stroke="black"/></g>'):
        drawings, _ = svg.svg_strokes((SVG_OPEN + cell + extra + "</svg>").encode())
        assert len(drawings) == 1 and len(drawings[0]) == 2


def test_fallback_skips_lines_and_white_fills():
    text = (SVG_OPEN + '<rect width="99" height="99" fill="rgb(255,255,255)"/>'
            '<line x1="0" y1="0" x2="50" y2="50"/><circle cx="5" cy="5" r="5" fill="#123"/>'
            '<rect x="20" width="5" height="5" fill="none"/></svg>')
    drawings, fallback = svg.svg_strokes(text.encode())
    assert fallback and len(drawings[0]) == 1 and type(drawings[0][0].segments[0]).__name__ == "Arc"


def test_size_limit(monkeypatch, tmp_path):
    monkeypatch.setattr(svg, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.svg"
    path.write_text(SVG_OPEN + LINE * 5 + "</svg>")
    with pytest.raises(DataError, match="more than the 100 bytes"):
        ms.load_svg(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "pipe.svg"
    os.mkfifo(path)
    with pytest.raises(DataError, match="not a regular file"):
        ms.load_svg(path)


@pytest.fixture
def counting_server():
    """A local HTTP server that counts the requests it gets (nothing may reach it)."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):                        # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY x "pwned">')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_nothing_external_is_ever_fetched(counting_server, tmp_path):
    url, hits = counting_server
    secret = tmp_path / "secret.txt"
    secret.write_text("M 0 0 L 999 999")
    refused = [
        f'<!DOCTYPE svg SYSTEM "{url}/svg.dtd">{SVG_OPEN}{LINE}</svg>',
        f'<!DOCTYPE svg [<!ENTITY x SYSTEM "{url}/x">]>{SVG_OPEN}<desc>&x;</desc>{LINE}</svg>',
        f'<!DOCTYPE svg [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]>{SVG_OPEN}{LINE}</svg>',
        f'<!DOCTYPE svg [<!ENTITY d SYSTEM "{secret.as_uri()}">]>{SVG_OPEN}'
        f'<path d="&d;" stroke="black"/></svg>',
        f'{SVG_OPEN}<desc>&undeclared;</desc>{LINE}</svg>',
    ]
    for text in refused:
        refuse(text, "DTD|not XML")
    # references outside the file are ignored, never followed: the drawing is the one line
    ignored = [
        f'{SVG_OPEN}<image href="{url}/a.png" width="9" height="9"/>{LINE}</svg>',
        f'{SVG_OPEN}<use href="{url}/other.svg#a"/><use xlink:href="{secret.as_uri()}#a"/>'
        f'{LINE}</svg>',
        f'{SVG_OPEN}<style>@import url("{url}/s.css");</style>{LINE}</svg>',
        f'<?xml-stylesheet href="{url}/s.css"?>{SVG_OPEN}{LINE}</svg>',
        f'{SVG_OPEN}<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{url}/x.svg"/>'
        f'{LINE}</svg>',
    ]
    for text in ignored:
        path = tmp_path / "ref.svg"
        path.write_text(text)
        assert strokes(load(path)) == [[[0, 0], [255, 255]]]
    assert hits == []


# --------------------------------------------------------------------------------- the recipe


control = st.floats(-200, 200, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(pts=st.lists(st.tuples(control, control), min_size=4, max_size=4),
       scale=st.floats(0.05, 20.0), quadratic=st.booleans())
def test_flattening_stays_within_the_tolerance(pts, scale, quadratic):
    """Chords from ``curvature_bound`` stay within the tolerance of the true curve (measured on
    8192 points of it), for cubics and quadratics of any shape."""
    import svgelements as se
    p = [complex(x, y) for x, y in pts]
    seg = se.QuadraticBezier(p[0], p[1], p[3]) if quadratic else se.CubicBezier(*p)
    tol = 0.5 / scale
    n = svg._pieces(seg, tol)
    chords = svg._points(seg, n, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    ideal = bezier([pts[0], pts[1], pts[3]] if quadratic else pts, 8192)
    assert distance_to_polyline(ideal, chords).max() <= tol * (1 + 1e-9) + 1e-9
    # and the bound is an upper bound of |B''|: compare with second differences
    t = np.linspace(0, 1, 2001)
    h = t[1] - t[0]
    curve = bezier([pts[0], pts[1], pts[3]] if quadratic else pts, 2001)
    second = np.hypot(*((curve[2:] - 2 * curve[1:-1] + curve[:-2]) / h ** 2).T)
    assert second.max() <= svg.curvature_bound(seg) * (1 + 1e-6) + 1e-6


def test_resampling_keeps_nodes_and_spacing():
    line = np.array([[0.0, 0.0], [10.5, 0.0], [10.5, 0.2], [10.5, 0.2]])
    # 10.7 px long: 11 equal pieces of 10.7 / 11 px along the line; the corner is cut by less
    # than a piece
    out = svg._resample(line)
    np.testing.assert_array_equal(out[[0, -1]], line[[0, -1]])
    assert len(out) == 12
    np.testing.assert_allclose(out[:11, 0], np.arange(11) * 10.7 / 11)
    assert (out[:11, 1] == 0).all() and np.hypot(*np.diff(out, axis=0).T).max() <= 1.0
    assert svg._resample(np.zeros((3, 2))).shape == (1, 2)


def test_epsilon_is_rdp_on_the_resampled_strokes(tmp_path):
    path = tmp_path / "zig.svg"
    # a 255-long line with a 1 px bump in the middle: RDP 2.0 removes the bump, 0.5 keeps it
    path.write_text(SVG_OPEN + '<path d="M 0 0 L 127 0 L 128 1 L 129 0 L 255 0" stroke="red"/>'
                    '</svg>')
    assert strokes(load(path, 2.0)) == [[[0, 0], [255, 0]]]
    assert strokes(load(path, 0.5)) == [[[0, 0], [127, 0], [128, 1], [129, 0], [255, 0]]]
    # epsilon 0: 127 + 2 + 2 + 126 pieces (the diagonals are sqrt 2 long: 2 pieces each)
    assert len(load(path, 0.0)) == 1 + 127 + 2 + 2 + 126


@settings(max_examples=60, deadline=None)
@given(pts=st.lists(st.tuples(control, control), min_size=4, max_size=4),
       m=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
       kind=st.sampled_from(["quad", "cubic", "arc"]),
       radii=st.tuples(st.floats(1, 100), st.floats(1, 100)), angle=st.floats(-180, 180),
       flags=st.tuples(st.booleans(), st.booleans()))
def test_extent_is_exact_under_any_affine_map(pts, m, kind, radii, angle, flags):
    """The frame's extent (ends plus ``extreme_ts``) equals the extent of 20001 points along
    the transformed segment, to 1e-6 of its size: never smaller than the curve, never larger."""
    import svgelements as se
    p = [complex(x, y) for x, y in pts]
    if kind == "quad":
        seg = se.QuadraticBezier(p[0], p[1], p[3])
    elif kind == "cubic":
        seg = se.CubicBezier(*p)
    else:
        path = se.Path(f"M {pts[0][0]!r} {pts[0][1]!r} A {radii[0]!r} {radii[1]!r} {angle!r} "
                       f"{int(flags[0])} {int(flags[1])} {pts[3][0]!r} {pts[3][1]!r}")
        seg = path[-1]
        assume(isinstance(seg, se.Arc) and seg.sweep)
    matrix = np.array([[m[0], m[1], 5.0], [m[2], m[3], -7.0]])
    exact = svg._points_at(seg, [0.0, 1.0, *svg.extreme_ts(seg, matrix)], matrix)
    dense = svg._points_at(seg, np.linspace(0, 1, 20001), matrix)
    size = max(np.ptp(dense, axis=0).max(), 1e-9)
    np.testing.assert_allclose(exact.min(axis=0), dense.min(axis=0), atol=1e-6 * size)
    np.testing.assert_allclose(exact.max(axis=0), dense.max(axis=0), atol=1e-6 * size)


# --------------------------------------------------------------------------------- round trip


def in_frame(lines):
    """Polylines aligned to start at 0 and scaled so the longer side is 255 (the recipe's frame)."""
    allxy = np.concatenate(lines)
    lo = allxy.min(axis=0)
    return [(line - lo) * (255.0 / np.ptp(allxy, axis=0).max()) for line in lines]


def assert_same_drawing(converted, original, bound=1.0):
    """Same strokes, every point of each within ``bound`` px of the other's stroke (255 scale)."""
    got, want = stroke3_to_polylines(converted), in_frame(stroke3_to_polylines(original))
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert distance_to_polyline(g, w).max() <= bound, f"stroke {k}: a point moved"
        assert distance_to_polyline(w, g).max() <= bound, f"stroke {k}: a point is missing"


coord = st.integers(-60, 60)
a_stroke = st.lists(st.tuples(coord, coord), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(a_stroke, min_size=1, max_size=4), grid=st.booleans())
def test_own_svg_output_round_trips(lines, grid):
    """ms.save_drawing (a one-cell grid) and render.to_svg convert back, with --epsilon 0, to
    the same strokes within 1 px at the 255 scale; the white background is not a stroke."""
    original = polylines_to_stroke3([np.array(line, float) for line in lines])
    assume(np.ptp(np.cumsum(original[:, :2], axis=0), axis=0).max() > 0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.svg"
        if grid:
            ms.save_drawing(original, path)
        else:
            path.write_text(render.to_svg(original))
        converted = load(path, 0.0)
    assert_same_drawing(converted, original)


def test_grid_file_gives_one_drawing_per_cell(tmp_path):
    ds = datasets.load_dataset("builtin:shapes")
    sketches = ds.train[:7]
    path = tmp_path / "grid.svg"
    ms.save_drawing(sketches, path, labels=[f"shape {i}" for i in range(7)], ncols=3)
    cells = svg.read_svg(path, epsilon=0.0)
    assert len(cells) == 7
    for converted, original in zip(cells, sketches):
        assert_same_drawing(converted, original)
    with pytest.raises(DataError, match="grid of 7 drawings.*read_svg"):
        ms.load_svg(path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from minisketch.checkpoint import save_model
    from minisketch.hparams import HParams
    from minisketch.model import SketchRNN
    hp = HParams(conditional=False, dec_rnn_size=16, num_mixture=3, max_seq_len=40)
    model = SketchRNN(hp, backend="numpy", dtype="float32", seed=3, scale_factor=10.0)
    b = model.params["out/b"]
    b[0:3] = model.xp.asarray([3.0, 1.0, -6.0], dtype=b.dtype)   # pen mostly down, rarely ends
    path = tmp_path_factory.mktemp("model") / "tiny.npz"
    save_model(model, path)
    return path


def test_sample_cli_svg_round_trips(tiny_model, tmp_path, capsys):
    """``python -m minisketch.sample generate --out x.svg`` converts back to the sketches the
    same command writes to ``x.npz``, cell by cell."""
    from minisketch import sample
    from minisketch.render import load_sketches_npz
    base = ["generate", "--model", str(tiny_model), "-n", "6", "--seed", "5", "--max-len", "30"]
    for ext in ("svg", "npz"):
        assert run_cli(sample.main, base + ["--out", str(tmp_path / f"x.{ext}")]) == 0, \
            capsys.readouterr().err
    originals = load_sketches_npz(tmp_path / "x.npz")
    drawings, fallback = svg.svg_strokes((tmp_path / "x.svg").read_bytes())
    assert len(drawings) == len(originals) >= 4 and not fallback
    for strokes_k, original in zip(drawings, originals):
        assert_same_drawing(svg.drawing_to_stroke3(strokes_k, 0.0), original)


# --------------------------------------------------------------------------------- folders


def cli(main, *args):
    """Run a CLI in-process -> (exit code, stdout, stderr)."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(main, [str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


GOOD = {"box": ["extra/hidden.svg", "fill_only.svg", "rounded.svg", "shapes.svg"],
        "house": ["inkscape.svg", "nested.svg", "relative.svg"],
        "wheel": ["arcs.svg", "bezier.svg", "circle.svg", "ellipse.svg"]}
BAD = {"box/dot.svg": "single point", "box/empty.svg": "empty", "box/notes.svg": "no drawable",
       "house/broken.svg": "not XML", "wheel/external.svg": "DTD", "wheel/laughs.svg": "DTD"}


def test_folder_converts_to_a_labelled_npz(tmp_path):
    out = tmp_path / "mine.npz"
    rc, stdout, stderr = cli(data.main, "convert", DRAWINGS, out)
    assert rc == 0, stderr
    assert stdout.startswith("converted 11 files into 3 classes, left out 6: ")
    assert "train 5, valid 3, test 3" in stdout
    for name, reason in BAD.items():                 # each named, with its reason, on stderr
        (line,) = [ln for ln in stderr.splitlines() if name in ln]
        assert line.startswith("left out ") and reason in line
    assert "warning:" in stderr and "fill_only.svg has no stroked element" in stderr
    splits = load_npz(out)
    got_labels, names = labels.read_labels(out, {k: len(v) for k, v in splits.items()})
    assert names == ["box", "house", "wheel"]
    ref = np.load(out, allow_pickle=True, encoding="latin1")   # the reference loader reads it
    assert all(len(ref[k]) == len(splits[k]) for k in ("train", "valid", "test"))
    for index, name in enumerate(names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = sorted(ms.load_svg(DRAWINGS / name / f).tobytes() for f in GOOD[name])
        got = sorted(s.tobytes() for k in splits for s, lab in zip(splits[k], got_labels[k])
                     if lab == index)
        assert got == expected
        assert all((got_labels[k] == index).sum() >= 1 for k in splits)   # in every split


def test_info_shows_counts_per_class(tmp_path):
    out = tmp_path / "mine.npz"
    assert cli(data.main, "convert", DRAWINGS, out)[0] == 0
    rc, stdout, stderr = cli(data.main, "info", out, "--json")
    info = json.loads(stdout)
    assert info["classes"] == ["box", "house", "wheel"]
    assert {k: sum(v.values()) for k, v in info["class_counts"].items()} == \
        {"box": 4, "house": 3, "wheel": 4}
    rc, stdout, stderr = cli(data.main, "info", out)
    assert "  house: 3 (train 1, valid 1, test 1)" in stdout
    # the folder itself as a SOURCE: same classes; what was left out is a warning line
    rc, stdout, stderr = cli(data.main, "info", DRAWINGS, "--json")
    assert rc == 0 and json.loads(stdout)["class_counts"] == info["class_counts"]
    assert stderr.startswith("warning: ") and "left out 6" in stderr


def test_folder_and_labelled_npz_as_sources(tmp_path):
    with pytest.warns(UserWarning) as caught:
        ds = datasets.load_dataset(DRAWINGS, seed=3)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and "left out 6: " in messages[0]
    assert "1 file(s) without a stroked element" in messages[1] and "fill_only" in messages[1]
    assert ds.class_names == ["box", "house", "wheel"]
    assert len(ds.class_indices("train", "wheel")) == 2
    out = tmp_path / "mine.npz"
    assert cli(data.main, "convert", DRAWINGS, out, "--seed", "3")[0] == 0
    again = datasets.load_dataset(out)
    assert again.class_names == ds.class_names
    for k in ("train", "valid", "test"):
        np.testing.assert_array_equal(again.labels[k], ds.labels[k])
        for a, b in zip(again.split(k), ds.split(k)):
            np.testing.assert_array_equal(a, b)
    # a single .svg file is a SOURCE too, but one drawing cannot be split
    with pytest.raises(DataError, match="needs at least 3"):
        datasets.load_dataset(DRAWINGS / "house" / "inkscape.svg")


def test_strict_and_nothing_usable_write_nothing(tmp_path):
    out = tmp_path / "x.npz"
    rc, stdout, stderr = cli(data.main, "convert", DRAWINGS, out, "--strict")
    assert rc == 1 and not out.exists()
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "--strict: 6 left out, nothing written" in errors[0]
    bad = [DRAWINGS / name for name in BAD]
    rc, stdout, stderr = cli(data.main, "convert", *bad, out)
    assert rc == 1 and not out.exists() and "Traceback" not in stderr
    (error,) = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert "no usable drawings" in error and "left out 6" in error
    assert os.listdir(tmp_path) == []


def test_small_class_is_left_out_by_name(tmp_path):
    (tmp_path / "in" / "two").mkdir(parents=True)
    for name in ("inkscape.svg", "nested.svg"):
        (tmp_path / "in" / "two" / name).write_bytes((DRAWINGS / "house" / name).read_bytes())
    rc, stdout, stderr = cli(data.main, "convert", tmp_path / "in", DRAWINGS / "wheel",
                             tmp_path / "x.npz")
    assert rc == 0, stderr
    assert "into 1 class, left out 3: " in stdout and "class 'two' has 2 drawing(s)" in stdout
    rc, stdout, stderr = cli(data.main, "convert", DRAWINGS / "wheel", tmp_path / "y.npz",
                             "--max-seq-len", "20")
    assert rc == 1 and "longer than 20 points" in stderr and not (tmp_path / "y.npz").exists()


def test_inputs_the_convert_command_refuses(tmp_path):
    nd = tmp_path / "a.ndjson"
    nd.write_text('{"drawing": [[[0, 1], [0, 1]]]}\n')
    for args, message in [((nd, DRAWINGS), "one .ndjson file"),
                          ((tmp_path / "nope.svg",), "does not exist"),
                          ((tmp_path,), "holds no .svg files")]:
        rc, _, stderr = cli(data.main, "convert", *args, tmp_path / "o.npz")
        (error,) = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
        assert rc == 1 and message in error, error
    assert sorted(os.listdir(tmp_path)) == ["a.ndjson"]


def test_classes_come_from_subfolders_files_from_anywhere_below(tmp_path):
    src = tmp_path / "set"
    for rel in ("cat/a.svg", "cat/deep/er/b.svg", "dog/c.svg", "top.svg", ".hidden/d.svg",
                "cat/.e.svg", "cat/notes.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(SVG_OPEN + LINE + "</svg>")
    found = [(name, str(p.relative_to(src))) for name, p in svg.find_svg_files([src])]
    assert found == [("set", "top.svg"), ("cat", "cat/a.svg"), ("cat", "cat/deep/er/b.svg"),
                     ("dog", "dog/c.svg")]
    # a file named by itself is its folder's class, and a file named twice is read once
    assert svg.find_svg_files([src / "dog" / "c.svg", src / "dog"]) == \
        [("dog", src / "dog" / "c.svg")]


# --------------------------------------------------------------------------------- end to end


def test_docs_recipe_draw_convert_train_sample(tmp_path):
    """docs/svg.md in miniature: twelve hand-drawn-like SVGs in two classes (an editor's paths
    with transforms and styles), converted, inspected, trained on for a few steps, sampled."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "my_drawings"
    for k in range(12):
        kind = ("square", "triangle")[k % 2]
        (folder / kind).mkdir(parents=True, exist_ok=True)
        j = rng.uniform(-4, 4, size=8).round(2)
        if kind == "square":
            d = f"M {10 + j[0]} {10 + j[1]} h {50 + j[2]} v {50 + j[3]} h {-50 + j[4]} z"
        else:
            d = f"M {10 + j[0]} {60 + j[1]} L {35 + j[2]} {10 + j[3]} L {60 + j[4]} {60} Z"
        (folder / kind / f"{kind}{k}.svg").write_text(
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">'
            f'<g transform="rotate({j[5] * 2} 50 50)" style="stroke:#000;fill:none">'
            f'<path d="{d}"/><circle cx="{35 + j[6]}" cy="40" r="{5 + abs(j[7])}"/></g></svg>')
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def run(*args):
        r = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True,
                           text=True, cwd=tmp_path, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert run("minisketch.data", "convert", "my_drawings", "mine.npz").startswith(
        "converted 12 files into 2 classes")
    assert "square: 6 (train 4, valid 1, test 1)" in run("minisketch.data", "info", "mine.npz")
    run("minisketch.train", "--data", "mine.npz", "--out", "run", "--steps", "3",
        "--eval-every", "3", "--batch_size", "4", "--enc_rnn_size", "8", "--dec_rnn_size", "16",
        "--z_size", "4", "--num_mixture", "3", "--samples", "2")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and np.isfinite(log[-1]["valid"]["loss"])
    run("minisketch.sample", "generate", "--model", "run", "-n", "2", "--out", "new.svg")
    assert (tmp_path / "new.svg").stat().st_size > 0
