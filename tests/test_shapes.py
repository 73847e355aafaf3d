"""builtin:shapes: deterministic, realistic lengths, and classes that differ clearly."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from minisketch import shapes
from minisketch.strokes import stroke3_to_polylines

SMALL = {"train": 60, "valid": 5, "test": 5}


def turns(line):
    """Signed turning angle at each interior point of a polyline, in (-pi, pi]."""
    d = np.diff(line, axis=0)
    if len(d) < 2:
        return np.zeros(0)
    a = np.arctan2(d[:, 1], d[:, 0])
    return (np.diff(a) + np.pi) % (2 * np.pi) - np.pi


def convex_hull(pts):
    """Monotone-chain convex hull, counter-clockwise vertices."""
    pts = sorted(set(map(tuple, pts)))

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(half(pts) + half(pts[::-1]), dtype=float)


def features(s3):
    """[strokes, log bbox aspect, total |turning| / 2pi, |net turning| / 2pi,
    hull compactness 4 pi A / P^2, corners sharper than 50 degrees]"""
    lines = stroke3_to_polylines(s3)
    pts = np.concatenate(lines)
    w, h = np.ptp(pts, axis=0) + 1
    t = [turns(line) for line in lines]
    hull = convex_hull(pts)
    x, y = hull[:, 0], hull[:, 1]
    area = 0.5 * abs(x @ np.roll(y, -1) - y @ np.roll(x, -1))
    perimeter = np.hypot(*(hull - np.roll(hull, -1, axis=0)).T).sum()
    return [len(lines), np.log(w / h),
            sum(np.abs(a).sum() for a in t) / (2 * np.pi),
            abs(sum(a.sum() for a in t)) / (2 * np.pi),
            4 * np.pi * area / perimeter ** 2,
            sum(int((np.abs(a) > np.radians(50)).sum()) for a in t)]


def feature_table(seed):
    splits, labels = shapes.generate(seed, sizes=SMALL)
    return np.array([features(s) for s in splits["train"]]), labels["train"]


def test_every_pair_of_classes_differs_clearly_and_is_recognizable():
    X, y = feature_table(11)
    k = len(shapes.CLASSES)
    mu = np.array([X[y == c].mean(0) for c in range(k)])
    sd = np.array([X[y == c].std(0) for c in range(k)])
    for a, b in itertools.combinations(range(k), 2):
        dprime = np.abs(mu[a] - mu[b]) / np.sqrt((sd[a] ** 2 + sd[b] ** 2) / 2 + 1e-12)
        assert dprime.max() > 2.0, (shapes.CLASSES[a], shapes.CLASSES[b], dprime)
    # a nearest-centroid classifier fit on one seed recognizes another seed's sketches
    X2, y2 = feature_table(12)
    scale = X.std(0)
    pred = np.argmin((((X2[:, None, :] - mu[None]) / scale) ** 2).sum(-1), axis=1)
    assert (pred == y2).mean() > 0.9


def test_class_signatures():
    X, y = feature_table(13)
    by = {name: X[y == c] for c, name in enumerate(shapes.CLASSES)}
    assert (by["circle"][:, 0] == 1).all() and (by["circle"][:, 5] == 0).all()
    assert (by["star"][:, 5] == 4).all()                          # a pentagram has 4 inner tips
    assert by["spiral"][:, 3].mean() > 1.8                        # two turns or more
    assert by["zigzag"][:, 1].mean() > 0.5                        # wide
    assert (by["house"][:, 0] >= 2).all()                         # walls and roof
    assert by["triangle"][:, 4].mean() < by["square"][:, 4].mean() < by["circle"][:, 4].mean()


def test_same_seed_same_data_other_seed_other_data():
    a, la = shapes.generate(21, sizes=SMALL)
    b, lb = shapes.generate(22, sizes=SMALL)
    assert any(not np.array_equal(x, z) for x, z in zip(a["train"], b["train"]))
    # sketch i of class c in split s is make_sketch(c, default_rng([seed, s, c, i]))
    for s_idx, split in enumerate(("train", "valid", "test")):
        expected = {(c, i): shapes.make_sketch(name, np.random.default_rng([21, s_idx, c, i]))
                    for c, name in enumerate(shapes.CLASSES) for i in range(SMALL[split])}
        got = sorted(map(lambda s: s.tobytes(), a[split]))
        assert got == sorted(s.tobytes() for s in expected.values())
        assert np.bincount(la[split]).tolist() == [SMALL[split]] * len(shapes.CLASSES)


def test_sketches_are_realistic_stroke3():
    splits, labels = shapes.generate(0, sizes=SMALL)
    for s in splits["train"]:
        assert s.dtype == np.int16 and s.ndim == 2 and s.shape[1] == 3
        assert 15 <= len(s) <= 150
        assert set(np.unique(s[:, 2])) <= {0, 1} and s[-1, 2] == 1
        pts = np.concatenate(stroke3_to_polylines(s)) + shapes.ORIGIN
        assert pts.min() >= 0 and pts.max() <= shapes.CANVAS
        steps = np.hypot(*np.diff(stroke3_to_polylines(s)[0], axis=0).T)
        assert 5 <= np.median(steps) <= 16                        # points ~9-13 px apart
    assert len(set(labels["train"].tolist())) == len(shapes.CLASSES) >= 6


def test_unknown_class_is_an_error():
    with pytest.raises(ValueError, match="unknown shape class"):
        shapes.generate(0, classes=("circle", "dodecahedron"))
