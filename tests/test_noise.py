"""The counter-based uniforms of minisketch.noise: an independent pure-Python SplitMix64 gives
the same numbers, statistics are those of U[0, 1), streams are distinct and reproducible."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

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


# ---------------------------------------------------------------------------------------------
# The compiled kernel (kernels/numba_cpu.py) and the in-place draw

@settings(max_examples=25, deadline=None)
@given(key=st.integers(0, M64), shape=st.lists(st.integers(0, 9), min_size=1, max_size=3))
def test_numba_hash_uniform_is_bit_identical(key, shape):
    """numba_cpu.hash_uniform == noise.hash_uniform, bit for bit, for any key and shape."""
    from minisketch.kernels import numba_cpu
    got, want = np.empty(shape, np.float32), np.empty(shape, np.float32)
    numba_cpu.hash_uniform(key, got)
    hash_uniform(key, want)
    np.testing.assert_array_equal(got, want)


def test_numba_hash_uniform_long_stream_and_bad_out():
    from minisketch.kernels import numba_cpu
    got, want = np.empty((50, 1000), np.float32), np.empty((50, 1000), np.float32)
    numba_cpu.hash_uniform(2 ** 64 - 3, got)
    hash_uniform(2 ** 64 - 3, want)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="float32"):
        numba_cpu.hash_uniform(1, np.empty(4, np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        numba_cpu.hash_uniform(1, np.empty((4, 4), np.float32)[:, :2])


def test_random_into_out_is_the_same_stream():
    a = HashNoise(np, kernel_set(), key=3)
    b = HashNoise(np, kernel_set(), key=3)
    out = np.full((4, 6), -1.0, np.float32)
    r = b.random(dtype=np.float32, out=out)
    assert r is out
    np.testing.assert_array_equal(out, a.random((4, 6)))
    np.testing.assert_array_equal(b.random((4, 6)), a.random((4, 6)))   # the next stream too
    with pytest.raises(ValueError, match="shape"):
        b.random((2, 2), out=out)
