"""``builtin:shapes``: a procedural, offline dataset of hand-drawn-looking doodles.

Seven classes (:data:`CLASSES`): circle, square, triangle, star (a pentagram drawn in one
stroke), spiral, zigzag and house. Each sketch is an outline in a 0..255 pixel canvas with a
random size (about 100..180 px across), position (near the centre), rotation (up to about
+-11 degrees), aspect, starting point, direction and, for square, triangle and house, number of
strokes. Outlines are resampled every 9..13 px along each straight side or curve (corners are
kept), then given a gentle low-frequency wobble and a little jitter, and rounded to whole
pixels, so sketches are about 20..110 points long and look like careful mouse drawings
rather than noise: a small model learns them in minutes.

stroke-3 convention: the origin is the canvas centre (128, 128), so the first row is the offset
from the centre to the first point (which tells a model where on the outline the pen starts);
later rows are offsets between points, ``p = 1`` after the last point of each stroke.

Generation is deterministic: sketch ``i`` of class ``c`` in split ``s`` comes from
``np.random.default_rng([seed, s, c, i])``, so the splits do not depend on each other's sizes.
Default sizes are 700 train, 50 valid and 50 test sketches per class (4900/350/350).

    splits, labels = generate(seed=0)     # {"train": [int16 [L, 3]], ...}, {"train": int64 [n]}
    CLASSES[labels["train"][0]]           # class name of the first training sketch
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


CLASSES = ("circle", "square", "triangle", "star", "spiral", "zigzag", "house")
SPLIT_SIZES = {"train": 700, "valid": 50, "test": 50}     # per class
CANVAS = 255.0
ORIGIN = np.array([128.0, 128.0])   # stroke-3 offsets start from the canvas centre

# Each shape is a list of strokes; a stroke is (vertices [n, 2], curved). Straight strokes are
# resampled side by side (vertices kept as corners); curved ones are dense curves resampled
# by arc length. Unit coordinates: centre 0, about -1..1, y down (like pixels).


def _corner_loop(corners: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Closed path through ``corners`` from a random corner, in a random direction."""
    k = int(rng.integers(len(corners)))
    order = np.roll(np.arange(len(corners)), -k)
    if rng.random() < 0.5:
        order = np.concatenate([order[:1], order[1:][::-1]])
    return corners[np.append(order, order[0])]


def _maybe_reverse(strokes: list, rng: np.random.Generator) -> list:
    """Reverse the direction of each stroke with probability 1/2."""
    return [(v[::-1] if rng.random() < 0.5 else v, c) for v, c in strokes]


def _circle(rng):
    start = rng.uniform(0, 2 * np.pi)
    sweep = 2 * np.pi * rng.uniform(1.0, 1.08) * (1 if rng.random() < 0.5 else -1)
    t = start + sweep * np.linspace(0.0, 1.0, 120)
    return [(np.stack([np.cos(t), np.sin(t)], axis=1), True)]


_SQUARE = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def _square(rng):
    r = rng.random()
    if r < 0.6:                                     # one closed stroke
        return [(_corner_loop(_SQUARE, rng), False)]
    if r < 0.85:                                    # two L-shaped strokes
        k = int(rng.integers(4))
        c = np.roll(_SQUARE, -k, axis=0)
        strokes = [(c[[0, 1, 2]], False), (c[[2, 3, 0]], False)]
    else:                                           # four sides
        c = _SQUARE
        strokes = [(c[[i, (i + 1) % 4]], False) for i in range(4)]
    return _maybe_reverse(strokes, rng)


_TRIANGLE = np.array([[0.0, -1.0], [0.95, 0.75], [-0.95, 0.75]])


def _triangle(rng):
    if rng.random() < 0.7:                          # one closed stroke
        return [(_corner_loop(_TRIANGLE, rng), False)]
    c = _TRIANGLE                                   # "^" then the base
    strokes = [(c[[2, 0, 1]], False), (c[[1, 2]], False)]
    return _maybe_reverse(strokes, rng)


def _star(rng):
    a = -np.pi / 2 + 2 * np.pi * np.arange(5) / 5
    tips = np.stack([np.cos(a), np.sin(a)], axis=1)
    k = int(rng.integers(5))
    step = 2 if rng.random() < 0.5 else 3           # the two drawing directions of a pentagram
    order = (k + step * np.arange(6)) % 5
    return [(tips[order], False)]


def _spiral(rng):
    turns = rng.uniform(2.0, 3.2)
    t = np.linspace(0.0, 1.0, 240)
    r = 0.08 + 0.92 * t
    ang = rng.uniform(0, 2 * np.pi) + (1 if rng.random() < 0.5 else -1) * 2 * np.pi * turns * t
    pts = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    if rng.random() < 0.2:                          # now and then drawn from the outside in
        pts = pts[::-1]
    return [(pts, True)]


def _zigzag(rng):
    n = int(rng.integers(3, 7))                     # teeth
    amp = rng.uniform(0.3, 0.45)
    x = np.linspace(-1.0, 1.0, 2 * n + 1)
    y = np.where(np.arange(2 * n + 1) % 2 == 0, amp, -amp)
    if rng.random() < 0.5:
        y = -y
    return _maybe_reverse([(np.stack([x, y], axis=1), False)], rng)


def _house(rng):
    w, top, eave, base = 0.8, -1.0, -0.15, 1.0
    body = np.array([[-w, eave], [w, eave], [w, base], [-w, base]])
    roof = np.array([[-w, eave], [0.0, top], [w, eave]])
    if rng.random() < 0.5:                          # body as one stroke, roof on top
        strokes = [(_corner_loop(body, rng), False), (roof, False)]
    else:                                           # walls and floor, then the whole roof
        strokes = [(body[[1, 2, 3, 0]], False), (np.array([[-w, eave], [w, eave], [0.0, top],
                                                           [-w, eave]]), False)]
    if rng.random() < 0.5:
        strokes = strokes[::-1]
    if rng.random() < 0.4:                          # a door
        dw = rng.uniform(0.15, 0.25)
        dx = rng.uniform(-0.4, 0.4)
        strokes.append((np.array([[dx - dw, base], [dx - dw, 0.45], [dx + dw, 0.45],
                                  [dx + dw, base]]), False))
    return _maybe_reverse(strokes, rng)


_MAKERS = {"circle": _circle, "square": _square, "triangle": _triangle, "star": _star,
           "spiral": _spiral, "zigzag": _zigzag, "house": _house}


def _resample_straight(v: np.ndarray, spacing: float) -> np.ndarray:
    """Points every ~``spacing`` along each side of a polyline, its vertices kept."""
    seg = np.diff(v, axis=0)
    n = np.maximum(1, np.rint(np.hypot(seg[:, 0], seg[:, 1]) / spacing)).astype(int)
    frac = np.concatenate([np.arange(k) / k for k in n])
    start = np.repeat(v[:-1], n, axis=0)
    pts = start + frac[:, None] * np.repeat(seg, n, axis=0)
    return np.concatenate([pts, v[-1:]])


def _resample_curve(v: np.ndarray, spacing: float) -> np.ndarray:
    """Points every ~``spacing`` by arc length along a dense curve (ends kept)."""
    d = np.hypot(*np.diff(v, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(d)])
    n = max(2, int(round(s[-1] / spacing)))
    at = np.linspace(0.0, s[-1], n + 1)
    return np.stack([np.interp(at, s, v[:, 0]), np.interp(at, s, v[:, 1])], axis=1)


def make_sketch(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One sketch of class ``kind`` (a name in :data:`CLASSES`) -> stroke-3 int16 ``[L, 3]``."""
    strokes = _MAKERS[kind](rng)
    u = rng.random(9)
    size = (100.0 + 80.0 * u[0]) / 2                # unit radius -> pixels (100..180 px across)
    aspect = 0.85 + 0.3 * u[1]
    theta = -0.2 + 0.4 * u[2]                       # rotation, radians
    centre = ORIGIN - 12.0 + 24.0 * u[3:5]
    spacing = 9.0 + 4.0 * u[5]                      # px between points along the outline
    amp = 0.8 + 1.4 * u[6]                          # wobble amplitude, px
    period = 90.0 + 110.0 * u[7]                    # wobble period along the path, px
    cos, sin = np.cos(theta), np.sin(theta)
    m = size * np.array([[cos * aspect, sin * aspect], [-sin / aspect, cos / aspect]])
    parts = [(_resample_curve if curved else _resample_straight)(v @ m + centre, spacing)
             for v, curved in strokes]
    counts = [len(p) for p in parts]
    pts = np.concatenate(parts)
    first = np.zeros(len(pts), dtype=bool)          # first point of each stroke
    first[np.cumsum(counts[:-1], dtype=np.int64)] = True
    first[0] = True
    step = np.hypot(*np.diff(pts, axis=0, prepend=pts[:1]).T)
    step[first] = 0.0
    arc = np.cumsum(step)                           # arc length (a constant offset per stroke
    phase = rng.uniform(0, 2 * np.pi, size=(len(parts), 2))   # is absorbed by the phase)
    pts = pts + amp * np.sin(2 * np.pi * arc[:, None] / period
                             + np.repeat(phase, counts, axis=0))
    pts = pts + rng.normal(0.0, 0.4, size=pts.shape)
    pts = np.rint(np.clip(pts, 0.0, CANVAS)) - ORIGIN
    moved = np.concatenate([[True], np.any(pts[1:] != pts[:-1], axis=1)])
    keep = moved | first                            # drop repeated points within a stroke
    stroke_id = np.cumsum(first)[keep]
    pts = pts[keep]
    last = np.append(stroke_id[1:] != stroke_id[:-1], True)
    sizes = np.bincount(stroke_id)                  # drop strokes left with a single point
    ok = sizes[stroke_id] >= 2
    pts, last = pts[ok], last[ok]
    out = np.zeros((len(pts), 3), dtype=np.int16)
    out[:, 0:2] = np.diff(pts, axis=0, prepend=np.zeros((1, 2)))
    out[:, 2] = last
    return out


@lru_cache(maxsize=4)
def _generate(seed: int, sizes: tuple, classes: tuple):
    splits, labels = {}, {}
    for s_idx, (split, n) in enumerate(sizes):
        sketches, labs = [], []
        for c_idx, kind in enumerate(classes):
            for i in range(n):
                rng = np.random.default_rng([seed, s_idx, c_idx, i])
                sk = make_sketch(kind, rng)
                sk.setflags(write=False)
                sketches.append(sk)
                labs.append(c_idx)
        order = np.random.default_rng([seed, s_idx, 1000]).permutation(len(sketches))
        splits[split] = tuple(sketches[j] for j in order)
        lab = np.asarray(labs, dtype=np.int64)[order]
        lab.setflags(write=False)
        labels[split] = lab
    return splits, labels


def generate(seed: int = 0, sizes: dict | None = None,
             classes: tuple = CLASSES) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    """The shapes dataset for ``seed``: ``(splits, labels)``.

    splits: ``{"train", "valid", "test"}`` -> list of stroke-3 int16 arrays (read-only), classes
            shuffled together; labels: same keys -> int64 class index into ``classes`` per sketch.
    sizes:  sketches per class per split (default :data:`SPLIT_SIZES`). Results are cached, so a
            second call with the same arguments is free.
    """
    sizes = dict(SPLIT_SIZES if sizes is None else sizes)
    unknown = [c for c in classes if c not in _MAKERS]
    if unknown:
        raise ValueError(f"unknown shape class(es) {unknown}; known: {', '.join(CLASSES)}")
    splits, labels = _generate(int(seed), tuple(sizes.items()), tuple(classes))
    return {k: list(v) for k, v in splits.items()}, dict(labels)
