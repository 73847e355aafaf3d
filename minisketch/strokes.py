"""Sketch formats and the preprocessing of SPEC section 1.

Formats (all NumPy arrays, rows are points in drawing order):

- **stroke-3** ``[L, 3]``: ``(dx, dy, p)``; ``dx, dy`` is the offset from the previous point (the
  first row from the origin), ``p = 1`` means the pen lifts after this point.
- **stroke-5** ``[L, 5]``: ``(dx, dy, p1, p2, p3)`` with a one-hot pen state: p1 pen stays down,
  p2 pen lifts after this point, p3 the sketch has ended (padding rows are ``(0, 0, 0, 0, 1)``).
- **polylines**: a list with one ``[n, 2]`` array of absolute positions per stroke.

Preprocessing (reference pipeline): :func:`clamp_stroke3` (clamp to [-1000, 1000], float32),
:func:`scale_factor` (population std of every dx and dy of the training set, no mean
subtracted), then at training time only :func:`random_scale` and :func:`drop_points`, and
:func:`make_batch` to build the ``[B, N_max + 1, 5]`` array the model reads. Every random
function takes an explicit ``np.random.Generator``.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .errors import DataError
from .hparams import MAX_SEQ_LEN

LIMIT = 1000.0                       # clamp every column to [-LIMIT, LIMIT] (reference "limit")
START_TOKEN = (0.0, 0.0, 1.0, 0.0, 0.0)   # S0, the row every batch starts with
PAD_ROW = (0.0, 0.0, 0.0, 0.0, 1.0)       # rows after the end of a sketch


# --------------------------------------------------------------------------------------------
# stroke-3 <-> stroke-5


def _pen(s3: np.ndarray) -> np.ndarray:
    """The pen column of stroke-3 as 0/1 floats (1 = lift after this point)."""
    return (np.asarray(s3)[:, 2] > 0.5).astype(np.float64)


def stroke3_to_stroke5(s3: np.ndarray, max_len: int | None = None) -> np.ndarray:
    """stroke-3 ``[L, 3]`` -> stroke-5 ``[L, 5]`` (or ``[max_len, 5]`` padded with (0,0,0,0,1)).

    Row i becomes ``(dx, dy, 1 - p, p, 0)``; no start token is added (see :func:`make_batch`).
    Offsets keep their units and the result is float64.
    """
    s3 = np.asarray(s3, dtype=np.float64).reshape(-1, 3)
    n = len(s3)
    rows = n if max_len is None else int(max_len)
    if n > rows:
        raise DataError(f"sketch has {n} points, more than max_len {rows}")
    out = np.zeros((rows, 5), dtype=np.float64)
    p = _pen(s3)
    out[:n, 0:2] = s3[:, 0:2]
    out[:n, 2] = 1.0 - p
    out[:n, 3] = p
    out[n:, 4] = 1.0
    return out


def stroke5_to_stroke3(s5: np.ndarray) -> np.ndarray:
    """stroke-5 ``[N, 5]`` -> stroke-3 ``[L, 3]``, stopping before the first row with p3 set.

    The pen column is p2 (lift after this point). A start token S0 is *not* removed: pass the
    rows after it (``batch.strokes[i, 1:]``).
    """
    s5 = np.asarray(s5, dtype=np.float64).reshape(-1, 5)
    ended = np.flatnonzero(s5[:, 4] > 0.5)
    n = int(ended[0]) if len(ended) else len(s5)
    out = np.zeros((n, 3), dtype=np.float64)
    out[:, 0:2] = s5[:n, 0:2]
    out[:, 2] = (s5[:n, 3] > 0.5)
    return out


# --------------------------------------------------------------------------------------------
# stroke-3 <-> absolute polylines


def stroke3_to_polylines(s3: np.ndarray) -> list[np.ndarray]:
    """stroke-3 -> list of ``[n, 2]`` float64 arrays of absolute positions, one per stroke.

    Positions are the running sum of the offsets starting at the origin (the origin itself is
    not a point). A stroke ends after a row with p = 1; rows after the last lift form a final
    stroke.
    """
    s3 = np.asarray(s3, dtype=np.float64).reshape(-1, 3)
    if len(s3) == 0:
        return []
    xy = np.cumsum(s3[:, 0:2], axis=0)
    ends = np.flatnonzero(_pen(s3)) + 1
    if len(ends) == 0 or ends[-1] != len(s3):
        ends = np.append(ends, len(s3))
    starts = np.concatenate([[0], ends[:-1]])
    return [xy[a:b].copy() for a, b in zip(starts, ends)]


def polylines_to_stroke3(lines: Sequence[np.ndarray]) -> np.ndarray:
    """List of ``[n, 2]`` absolute polylines -> stroke-3 ``[L, 3]`` float64.

    Concatenates the strokes, takes differences of the absolute points (the first point is an
    offset from the origin) and sets p = 1 on the last point of each stroke (SPEC 1,
    "Converting drawings to stroke-3"). Empty strokes are skipped.
    """
    parts = [np.asarray(line, dtype=np.float64).reshape(-1, 2) for line in lines]
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, 3), dtype=np.float64)
    xy = np.concatenate(parts, axis=0)
    out = np.zeros((len(xy), 3), dtype=np.float64)
    out[:, 0:2] = np.diff(xy, axis=0, prepend=np.zeros((1, 2)))
    out[np.cumsum([len(p) for p in parts]) - 1, 2] = 1.0
    return out


def bounds(s3: np.ndarray) -> tuple[float, float, float, float]:
    """``(min_x, max_x, min_y, max_y)`` of the absolute points of a stroke-3 sketch.

    The origin counts as a point (it is where the pen starts), so an empty sketch gives zeros.
    """
    s3 = np.asarray(s3, dtype=np.float64).reshape(-1, 3)
    xy = np.concatenate([np.zeros((1, 2)), np.cumsum(s3[:, 0:2], axis=0)])
    return (float(xy[:, 0].min()), float(xy[:, 0].max()),
            float(xy[:, 1].min()), float(xy[:, 1].max()))


def num_strokes(s3: np.ndarray) -> int:
    """Number of strokes (pen-down runs) in a stroke-3 sketch."""
    return len(stroke3_to_polylines(s3))


# --------------------------------------------------------------------------------------------
# Ramer-Douglas-Peucker


def _segment_distances(pts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each row of ``pts [n, 2]`` to the segment from ``a`` to ``b``."""
    ab = b - a
    denom = float(ab @ ab)
    if denom == 0.0:
        return np.hypot(pts[:, 0] - a[0], pts[:, 1] - a[1])
    t = np.clip(((pts - a) @ ab) / denom, 0.0, 1.0)
    proj = a + t[:, None] * ab
    return np.hypot(pts[:, 0] - proj[:, 0], pts[:, 1] - proj[:, 1])


def rdp_keep(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Boolean mask ``[n]`` of the points Ramer-Douglas-Peucker keeps (see :func:`rdp`)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(pts)
    if n <= 2 or epsilon <= 0:
        return np.ones(n, dtype=bool)
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        d = _segment_distances(pts[i + 1:j], pts[i], pts[j])
        k = int(np.argmax(d))
        if d[k] > epsilon:
            m = i + 1 + k
            keep[m] = True
            stack.append((i, m))
            stack.append((m, j))
    return keep


def rdp(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of one polyline ``[n, 2]`` -> ``[m, 2]``, m <= n.

    Keeps the first and last point; a point between two kept points is kept when it lies
    farther than ``epsilon`` from the segment joining them (distance to the *segment*, so a
    stroke that doubles back keeps its turning point). ``epsilon <= 0`` returns a copy.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts[rdp_keep(pts, epsilon)]


def simplify_stroke3(s3: np.ndarray, epsilon: float) -> np.ndarray:
    """RDP applied to each stroke of a stroke-3 sketch separately (keeps stroke endpoints)."""
    return polylines_to_stroke3([rdp(line, epsilon) for line in stroke3_to_polylines(s3)])


# --------------------------------------------------------------------------------------------
# preprocessing


def clamp_stroke3(s3: np.ndarray, limit: float = LIMIT) -> np.ndarray:
    """Clamp every column to ``[-limit, limit]`` and cast to float32 (reference preprocessing)."""
    return np.clip(np.asarray(s3, dtype=np.float64), -limit, limit).astype(np.float32)


def scale_factor(sketches: Sequence[np.ndarray]) -> float:
    """Normalizing scale factor: population std of all dx and dy values together (no mean
    subtracted from the data; ``np.std`` subtracts the mean only to measure the spread).

    Computed in float64. Reference values: aaron_sheep 18.519827, short_kanji 99.712456.
    """
    if len(sketches) == 0:
        raise DataError("cannot compute a scale factor: the training set is empty")
    xy = np.concatenate([np.asarray(s, dtype=np.float64)[:, 0:2].ravel() for s in sketches])
    if xy.size == 0:
        raise DataError("cannot compute a scale factor: the training sketches have no points")
    sf = float(np.std(xy))
    if not np.isfinite(sf) or sf <= 0.0:
        raise DataError(f"training set offsets have standard deviation {sf}; "
                        "the sketches need some movement to be normalized")
    return sf


def random_scale(s3: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation: multiply dx by ``1 + (u1 - 0.5) * 2 * factor`` and dy by
    ``1 + (u2 - 0.5) * 2 * factor``, with ``u1, u2 = rng.random(2)`` drawn for this sketch
    (SPEC 1.4). Returns a new float array (float32 stays float32); draws exactly 2 numbers.
    """
    u = rng.random(2)
    out = np.array(s3, dtype=np.result_type(np.asarray(s3).dtype, np.float32), copy=True)
    out[:, 0] *= 1.0 + (u[0] - 0.5) * 2.0 * factor
    out[:, 1] *= 1.0 + (u[1] - 0.5) * 2.0 * factor
    return out


def drop_points(s3: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation: randomly drop pen-down points (reference ``augment_strokes``).

    Walking the sketch, ``count`` is the number of consecutive pen-down points since the last
    lift (reset to 0 at a lifted point or the point right after one; the walk starts as if after
    a lift). A point is dropped with probability ``prob`` when it and its predecessor are both
    pen-down and ``count > 2``; its offset is added to the last kept row, so every kept row ends
    where the last point of its run ended: absolute positions are a subsequence of the original
    ones, the final point and the pen lifts are unchanged. Draws ``len(s3)`` uniforms (one per
    point, as the reference does). Returns a new array of the input's float dtype.
    """
    s3 = np.asarray(s3)
    n = len(s3)
    u = rng.random(n)
    if n == 0 or prob <= 0.0:
        return np.array(s3, dtype=np.result_type(s3.dtype, np.float32), copy=True)
    down = s3[:, 2] <= 0.5
    prev_down = np.concatenate([[False], down[:-1]])    # the walk starts as if after a lift
    reset = ~(down & prev_down)
    idx = np.arange(n)
    count = idx - np.maximum.accumulate(np.where(reset, idx, 0))
    drop = down & prev_down & (count > 2) & (u < prob)
    keep = ~drop
    group = np.cumsum(keep) - 1                          # row -> index of the kept row it joins
    k = int(keep.sum())
    out = np.empty((k, 3), dtype=np.result_type(s3.dtype, np.float32))
    out[:, 0] = np.bincount(group, weights=s3[:, 0], minlength=k)
    out[:, 1] = np.bincount(group, weights=s3[:, 1], minlength=k)
    out[:, 2] = s3[keep, 2]
    return out


class Augment(NamedTuple):
    """Training augmentation settings (SPEC 1.4); ``Augment()`` gives the reference defaults."""

    random_scale_factor: float = 0.15   # f of random_scale
    augment_stroke_prob: float = 0.10   # prob of drop_points

    @classmethod
    def from_hparams(cls, hp) -> "Augment":
        """From an :class:`~minisketch.hparams.HParams` (its fields of the same names)."""
        return cls(float(hp.random_scale_factor), float(hp.augment_stroke_prob))


def augment_sketch(s3: np.ndarray, augment: Augment, rng: np.random.Generator) -> np.ndarray:
    """Random scale then point dropping, as the reference applies them to one training sketch.

    Always draws ``2 + len(s3)`` uniforms (scale, then one per point), whatever the settings, so
    the generator's position does not depend on them.
    """
    out = random_scale(s3, augment.random_scale_factor, rng)
    return drop_points(out, augment.augment_stroke_prob, rng)


# --------------------------------------------------------------------------------------------
# batches


def _checked_stroke3(s, where: str) -> np.ndarray:
    """A stroke-3 array as given, after one DataError for anything else: a shape other than
    [L, 3], non-numbers, NaN or inf, a pen value other than 0 or 1."""
    a = np.asarray(s)
    if a.dtype.kind not in "biuf" or a.ndim != 2 or a.shape[1] != 3:
        raise DataError(f"{where} has shape {list(a.shape)} and dtype {a.dtype}; expected "
                        f"stroke-3 rows [L, 3] of numbers (dx, dy, pen)")
    if not np.isfinite(a).all():
        raise DataError(f"{where} holds NaN or infinite values")
    if not ((a[:, 2] == 0) | (a[:, 2] == 1)).all():
        raise DataError(f"{where} has a pen value other than 0 and 1 (the third column: "
                        f"0 pen stays down, 1 pen lifts)")
    return a


class Batch(NamedTuple):
    """A model-ready batch; unpacks as ``x, lengths = batch``.

    strokes: float32 ``[B, max_len + 1, 5]``, row 0 = S0 = (0, 0, 1, 0, 0), rows 1..L the sketch
             in stroke-5 with dx, dy divided by the scale factor, rows L+1.. = (0, 0, 0, 0, 1).
    lengths: int64 ``[B]``, the L of each sketch (rows 1..L are real).
    """

    strokes: np.ndarray
    lengths: np.ndarray


def make_batch(sketches: Sequence[np.ndarray], max_len: int, scale_factor: float = 1.0,
               rng: np.random.Generator | None = None, augment: Augment | None = None,
               dtype=np.float32) -> Batch:
    """Build a :class:`Batch` from stroke-3 sketches in data units.

    sketches:     B stroke-3 arrays ``[L_b, 3]`` of finite numbers, pen 0 or 1, L_b <= max_len
                  (DataError otherwise).
    max_len:      N_max (1..MAX_SEQ_LEN); the result has ``max_len + 1`` rows per sketch.
    scale_factor: dx, dy are divided by it (the dataset's normalizing factor).
    rng, augment: with ``augment`` (an :class:`Augment`, or a pair ``(f, prob)``) each sketch gets
                  :func:`augment_sketch` with draws from ``rng`` (required then), in batch order.
    """
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or \
            not 1 <= max_len <= MAX_SEQ_LEN:
        raise DataError(f"make_batch: max_len must be an integer from 1 to {MAX_SEQ_LEN}, "
                        f"got {max_len!r}")
    max_len = int(max_len)
    if augment is not None:
        if rng is None:
            raise ValueError("make_batch: augmentation needs an explicit rng "
                             "(np.random.Generator)")
        augment = Augment(*augment)
    if not scale_factor or not np.isfinite(scale_factor):
        raise DataError(f"make_batch: scale_factor must be a nonzero finite number, "
                        f"got {scale_factor}")
    b = len(sketches)
    out = np.zeros((b, max_len + 1, 5), dtype=dtype)
    lengths = np.zeros(b, dtype=np.int64)
    out[:, 0, :] = START_TOKEN
    pens = []
    for i, s in enumerate(sketches):
        s = np.asarray(s)
        if s.dtype.kind not in "biuf" or s.ndim != 2 or s.shape[1] != 3:
            _checked_stroke3(s, f"sketch {i} of the batch")        # raises, naming the shape
        if len(s) > max_len:
            raise DataError(f"sketch {i} of the batch has {len(s)} points, more than "
                            f"max_len {max_len}")
        pens.append(s[:, 2])
        if augment is not None:
            s = augment_sketch(s, augment, rng)
        n = len(s)
        lengths[i] = n
        p = s[:, 2] > 0.5
        out[i, 1:n + 1, 0] = s[:, 0] / scale_factor
        out[i, 1:n + 1, 1] = s[:, 1] / scale_factor
        out[i, 1:n + 1, 2] = ~p
        out[i, 1:n + 1, 3] = p
        out[i, n + 1:, 4] = 1.0
    # values, in one pass over the batch; the loop only runs to name the bad sketch
    pen = np.concatenate(pens) if pens else np.zeros(0)
    if not (np.isfinite(out).all() and ((pen == 0) | (pen == 1)).all()):
        for i, s in enumerate(sketches):
            _checked_stroke3(s, f"sketch {i} of the batch")
        raise DataError("the batch holds values beyond float32 (after scaling and "
                        "augmentation); check the sketches' offsets")
    return Batch(out, lengths)
