"""Shared test helpers: where the real third-party data lives (../shared/data, never in the repo)."""
from __future__ import annotations

import os

# The tests multiply small matrices: one BLAS thread is faster than two fighting over a busy
# machine (a 2-thread OpenBLAS on an oversubscribed 2-core box was seen 20x slower). Set before
# NumPy is first imported by a test module; subprocesses (CLI and lesson tests) inherit it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data, or skip the test with the reason it is missing."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (real datasets live in ../shared/data, outside the repo)")
    return path


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real datasets live in ../shared/data)")
    return SHARED_DATA


def random_sketches(rng: np.random.Generator, n: int) -> list:
    """n random-walk stroke-3 sketches (int16) of 4..12 points, offsets in -20..20, the pen
    lifted after about a fifth of the points and after the last."""
    out = []
    for _ in range(n):
        k = int(rng.integers(4, 13))
        s = np.zeros((k, 3), np.int16)
        s[:, :2] = rng.integers(-20, 21, size=(k, 2))
        s[rng.random(k) < 0.2, 2] = 1
        s[-1, 2] = 1
        out.append(s)
    return out


def write_tiny_dataset(path, sizes=(40, 10, 10), seed: int = 0) -> str:
    """A sketch-rnn style .npz of :func:`random_sketches` (train/valid/test object arrays)."""
    rng = np.random.default_rng(seed)
    splits = {}
    for k, n in zip(("train", "valid", "test"), sizes):
        a = np.empty(n, dtype=object)
        for i, sketch in enumerate(random_sketches(rng, n)):
            a[i] = sketch
        splits[k] = a
    np.savez(path, **splits)
    return str(path)
