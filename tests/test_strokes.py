"""Stroke formats, RDP, preprocessing, augmentations and make_batch (SPEC section 1)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minisketch.errors import DataError
from minisketch.strokes import (PAD_ROW, START_TOKEN, Augment, augment_sketch, bounds,
                                clamp_stroke3, drop_points, make_batch, num_strokes,
                                polylines_to_stroke3, random_scale, rdp, rdp_keep,
                                scale_factor,
                                simplify_stroke3, stroke3_to_polylines, stroke3_to_stroke5,
                                stroke5_to_stroke3)

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def stroke3s(draw, min_len=1, max_len=40, end_lifted=True):
    """Integer-valued stroke-3 arrays; with end_lifted the last row has p = 1."""
    n = draw(st.integers(min_len, max_len))
    xy = draw(st.lists(st.tuples(st.integers(-60, 60), st.integers(-60, 60)),
                       min_size=n, max_size=n))
    pens = draw(st.lists(st.sampled_from([0, 0, 0, 1]), min_size=n, max_size=n))
    if end_lifted:
        pens[-1] = 1
    s = np.zeros((n, 3))
    s[:, :2] = xy
    s[:, 2] = pens
    return s


@st.composite
def polylines(draw):
    k = draw(st.integers(1, 5))
    lines = []
    for _ in range(k):
        n = draw(st.integers(1, 12))
        pts = draw(st.lists(st.tuples(st.integers(-200, 200), st.integers(-200, 200)),
                            min_size=n, max_size=n))
        lines.append(np.array(pts, dtype=np.float64))
    return lines


def absolute_points(s3):
    return np.cumsum(np.asarray(s3, dtype=np.float64)[:, :2], axis=0)


# ------------------------------------------------------------------------------------ formats


@SETTINGS
@given(stroke3s(end_lifted=False))
def test_stroke3_stroke5_stroke3_is_identity(s3):
    s5 = stroke3_to_stroke5(s3)
    assert s5.shape == (len(s3), 5)
    np.testing.assert_array_equal(s5[:, 2] + s5[:, 3], 1.0)       # one-hot pen, p3 = 0
    np.testing.assert_array_equal(s5[:, 4], 0.0)
    np.testing.assert_array_equal(stroke5_to_stroke3(s5), s3)


@SETTINGS
@given(stroke3s(), st.integers(0, 20))
def test_stroke5_padding_and_stop_at_first_p3(s3, extra):
    s5 = stroke3_to_stroke5(s3, max_len=len(s3) + extra)
    assert s5.shape == (len(s3) + extra, 5)
    np.testing.assert_array_equal(s5[len(s3):], np.tile(PAD_ROW, (extra, 1)))
    np.testing.assert_array_equal(stroke5_to_stroke3(s5), s3)


def test_stroke5_too_long_is_an_error():
    with pytest.raises(DataError, match="more than max_len"):
        stroke3_to_stroke5(np.zeros((5, 3)), max_len=4)


def test_stroke5_rows_match_reference_layout():
    s3 = np.array([[1, 2, 0], [3, 4, 1], [5, 6, 1]])
    want = [[1, 2, 1, 0, 0], [3, 4, 0, 1, 0], [5, 6, 0, 1, 0], [0, 0, 0, 0, 1]]
    np.testing.assert_array_equal(stroke3_to_stroke5(s3, max_len=4), want)


@SETTINGS
@given(polylines())
def test_polylines_round_trip(lines):
    s3 = polylines_to_stroke3(lines)
    assert s3[-1, 2] == 1 and int(s3[:, 2].sum()) == len(lines)
    back = stroke3_to_polylines(s3)
    assert len(back) == len(lines)
    for a, b in zip(back, lines):
        np.testing.assert_array_equal(a, b)


@SETTINGS
@given(stroke3s())
def test_stroke3_polylines_stroke3_is_identity(s3):
    lines = stroke3_to_polylines(s3)
    assert len(lines) == num_strokes(s3) == int(s3[:, 2].sum())
    np.testing.assert_array_equal(polylines_to_stroke3(lines), s3)


def test_polylines_first_point_is_offset_from_origin():
    s3 = polylines_to_stroke3([np.array([[10, 20], [13, 24]]), np.array([[0, 0]])])
    np.testing.assert_array_equal(s3, [[10, 20, 0], [3, 4, 1], [-13, -24, 1]])


def test_bounds():
    s3 = np.array([[5, -2, 0], [-10, 4, 1], [3, 3, 1]])
    assert bounds(s3) == (-5.0, 5.0, -2.0, 5.0)
    assert bounds(np.zeros((0, 3))) == (0.0, 0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------ RDP


def _seg_dist(p, a, b):
    ab, ap = b - a, p - a
    t = 0.0 if not ab.any() else np.clip(ap @ ab / (ab @ ab), 0, 1)
    return float(np.hypot(*(p - (a + t * ab))))


@SETTINGS
@given(polylines().map(lambda ls: ls[0]), st.floats(0.0, 30.0))
def test_rdp_subsequence_endpoints_and_tolerance(pts, eps):
    keep = rdp_keep(pts, eps)
    out = rdp(pts, eps)
    assert len(out) <= len(pts)
    np.testing.assert_array_equal(out, pts[keep])
    np.testing.assert_array_equal(out[0], pts[0])
    np.testing.assert_array_equal(out[-1], pts[-1])
    kept = np.flatnonzero(keep)                 # every dropped point is within eps of its segment
    for a, b in zip(kept[:-1], kept[1:]):
        for k in range(a + 1, b):
            assert _seg_dist(pts[k], pts[a], pts[b]) <= eps + 1e-9


def test_rdp_collinear_and_known_case():
    line = np.stack([np.arange(10.0), 2 * np.arange(10.0)], axis=1)
    np.testing.assert_array_equal(rdp(line, 0.5), line[[0, -1]])
    corner = np.array([[0, 0], [5, 0.1], [10, 0], [10, 5], [10, 10]], dtype=float)
    np.testing.assert_array_equal(rdp(corner, 1.0), corner[[0, 2, 4]])
    np.testing.assert_array_equal(rdp(corner, 0.0), corner)


@SETTINGS
@given(stroke3s(), st.floats(0.0, 20.0))
def test_simplify_stroke3_keeps_strokes_and_their_ends(s3, eps):
    out = simplify_stroke3(s3, eps)
    assert len(out) <= len(s3)
    before, after = stroke3_to_polylines(s3), stroke3_to_polylines(out)
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_allclose(b[[0, -1]], a[[0, -1]], atol=1e-9)


# ------------------------------------------------------------------------------------ preprocessing


def test_clamp_and_cast():
    out = clamp_stroke3(np.array([[5000, -3000, 1], [3, 4, 0]], dtype=np.int16))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1000, -1000, 1], [3, 4, 0]])


def test_scale_factor_is_population_std_of_dx_and_dy_together():
    a = np.array([[1, 2, 0], [3, 4, 1]], dtype=np.float32)
    b = np.array([[10, -6, 1]], dtype=np.float32)
    assert scale_factor([a, b]) == pytest.approx(np.std([1, 2, 3, 4, 10, -6]), rel=1e-12)
    with pytest.raises(DataError):
        scale_factor([])
    with pytest.raises(DataError):
        scale_factor([np.zeros((3, 3))])


@SETTINGS
@given(stroke3s(), st.floats(0.0, 0.9), st.integers(0, 2 ** 32 - 1))
def test_random_scale_stays_within_1_plus_minus_f(s3, f, seed):
    out = random_scale(s3, f, np.random.default_rng(seed))
    u = np.random.default_rng(seed).random(2)
    for col in (0, 1):
        expected = 1 + (u[col] - 0.5) * 2 * f
        assert 1 - f - 1e-12 <= expected <= 1 + f + 1e-12
        np.testing.assert_allclose(out[:, col], s3[:, col] * expected, rtol=1e-6)
    np.testing.assert_array_equal(out[:, 2], s3[:, 2])


def reference_drop_points(strokes, prob, u):
    """The walk of SPEC 1.4 written as a loop, with the uniforms given (one per point)."""
    result, prev, count, stroke = [], [0, 0, 1], 0, None
    for i in range(len(strokes)):
        candidate = [strokes[i][0], strokes[i][1], strokes[i][2]]
        if candidate[2] == 1 or prev[2] == 1:
            count = 0
        else:
            count += 1
        if candidate[2] == 0 and prev[2] == 0 and count > 2 and u[i] < prob:
            stroke[0] += candidate[0]
            stroke[1] += candidate[1]
        else:
            stroke = candidate
            prev = stroke
            result.append(stroke)
    return np.array(result, dtype=np.float64).reshape(-1, 3)


@SETTINGS
@given(stroke3s(), st.floats(0.0, 1.0), st.integers(0, 2 ** 32 - 1))
def test_drop_points_properties_and_reference_walk(s3, prob, seed):
    out = drop_points(s3, prob, np.random.default_rng(seed))
    want = reference_drop_points(s3, prob, np.random.default_rng(seed).random(len(s3)))
    np.testing.assert_array_equal(out, want)
    a, b = absolute_points(s3), absolute_points(out)
    j = 0                                     # kept positions are a subsequence of the original
    for p in b:
        while j < len(a) and not np.array_equal(a[j], p):
            j += 1
        assert j < len(a), "a kept position is not an original position (in order)"
        j += 1
    np.testing.assert_array_equal(b[-1], a[-1])
    assert out[:, 2].sum() == s3[:, 2].sum()


def test_drop_points_prob_one_drops_every_eligible_point():
    s3 = np.array([[1, 0, 0]] * 8 + [[0, 1, 1]] + [[1, 1, 0]] * 3 + [[2, 2, 1]], dtype=float)
    out = drop_points(s3, 1.0, np.random.default_rng(0))
    # first stroke: rows 0..2 kept (count <= 2), rows 3..7 merged into row 2; lifts kept
    np.testing.assert_array_equal(out, [[1, 0, 0], [1, 0, 0], [6, 0, 0], [0, 1, 1],
                                        [1, 1, 0], [1, 1, 0], [1, 1, 0], [2, 2, 1]])
    np.testing.assert_array_equal(drop_points(s3, 0.0, np.random.default_rng(0)), s3)


def test_augment_consumes_a_fixed_number_of_draws():
    s3 = np.array([[1, 0, 0]] * 10 + [[1, 1, 1]], dtype=np.float32)
    for aug in (Augment(), Augment(0.0, 0.0)):
        rng = np.random.default_rng(3)
        augment_sketch(s3, aug, rng)
        ref = np.random.default_rng(3)
        ref.random(2 + len(s3))
        assert rng.random() == ref.random()


# ------------------------------------------------------------------------------------ batches


@SETTINGS
@given(st.lists(stroke3s(max_len=25), min_size=1, max_size=6), st.integers(0, 10),
       st.floats(0.5, 50.0))
def test_make_batch_start_token_rows_and_padding(sketches, extra, sf):
    max_len = max(len(s) for s in sketches) + extra
    x, lengths = make_batch(sketches, max_len=max_len, scale_factor=sf)
    assert x.dtype == np.float32 and x.shape == (len(sketches), max_len + 1, 5)
    assert lengths.tolist() == [len(s) for s in sketches]
    for i, s in enumerate(sketches):
        L = len(s)
        np.testing.assert_array_equal(x[i, 0], START_TOKEN)
        np.testing.assert_allclose(x[i, 1:L + 1, :2], s[:, :2] / sf, rtol=1e-6)
        np.testing.assert_array_equal(x[i, 1:L + 1, 3], s[:, 2])
        np.testing.assert_array_equal(x[i, 1:L + 1, 2], 1 - s[:, 2])
        np.testing.assert_array_equal(x[i, 1:L + 1, 4], 0)
        np.testing.assert_array_equal(x[i, L + 1:], np.tile(PAD_ROW, (max_len - L, 1)))
        np.testing.assert_allclose(stroke5_to_stroke3(x[i, 1:]) * [sf, sf, 1], s, rtol=1e-5,
                                   atol=1e-4)


def test_make_batch_errors_and_augmented_determinism():
    s = np.array([[1, 2, 0], [3, 4, 0], [5, 6, 0], [7, 8, 0], [1, 1, 1]], dtype=np.float32)
    with pytest.raises(DataError, match="more than max_len"):
        make_batch([s], max_len=4, scale_factor=1.0)
    with pytest.raises(ValueError, match="rng"):
        make_batch([s], max_len=5, scale_factor=1.0, augment=Augment())
    a = make_batch([s, s], 5, 2.0, rng=np.random.default_rng(1), augment=(0.15, 0.5))
    b = make_batch([s, s], 5, 2.0, rng=np.random.default_rng(1), augment=(0.15, 0.5))
    c = make_batch([s, s], 5, 2.0, rng=np.random.default_rng(2), augment=(0.15, 0.5))
    np.testing.assert_array_equal(a.strokes, b.strokes)
    assert not np.array_equal(a.strokes, c.strokes)
