"""The counter-based uniforms of minisketch.noise: an independent pure-Python SplitMix64 gives
the same numbers, statistics are those of U[0, 1), streams are distinct and reproducible."""
from __future__ import annotations

import numpy as np
import pytest

from minisketch.kernels.reference import kernel_set
from minisketch.noise import HashNoise, hash_uniform

M64 = (1 << 64) - 1


def splitmix_python(key: int, i: int) -> float:
    """Entry i of the stream, written with Python integers (independent of the NumPy code)."""
    z = (key + (i + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    return (z >> 40) / 2.0 ** 24


@pytest.mark.parametrize("key", [0, 1, 12345, 2 ** 63 + 7, M64])
def test_matches_pure_python_splitmix(key):
    out = np.empty((7, 5), np.float32)
    hash_uniform(key, out)
    want = np.array([splitmix_python(key, i) for i in range(35)], dtype=np.float32).reshape(7, 5)
    np.testing.assert_array_equal(out, want)


def test_uniform_statistics_and_streams():
    n = 400_000
    g = HashNoise(np, kernel_set(), key=99)
    u = g.random((n,))
    assert u.dtype == np.float32 and 0.0 <= u.min() and u.max() < 1.0
    # mean 1/2 and variance 1/12 within 6 standard errors (se of mean sqrt(1/12/n), of the
    # variance sqrt(1/180/n))
    assert abs(u.mean() - 0.5) < 6 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 6 * np.sqrt(1 / 180 / n)
    counts = np.bincount((u * 20).astype(int), minlength=20)          # chi-square, 19 dof
    chi2 = float(((counts - n / 20) ** 2 / (n / 20)).sum())
    assert chi2 < 60, chi2                                            # p ~ 4e-6 at 60
    v = g.random((n,))                                                # next call: next stream
    assert abs(np.corrcoef(u, v)[0, 1]) < 6 / np.sqrt(n)
    again = HashNoise(np, kernel_set(), key=99)
    np.testing.assert_array_equal(again.random((n,)), u)               # reproducible
    z = HashNoise(np, kernel_set(), key=5).standard_normal((n,))
    assert abs(z.mean()) < 6 / np.sqrt(n) and abs(z.var() - 1) < 6 * np.sqrt(2 / n)
    assert np.isfinite(z).all()
