"""The Numba kernels' numerics (``kernels/numerics.py``) against NumPy.

exp, tanh and sigmoid in float64 and float32 within a few ulp of NumPy over the whole range
(overflow, underflow, subnormal results, signed zeros, inf, nan: 4 ulp in float64, 3 in float32,
subnormal results within one subnormal step); log and log1p (float64, used by the MDN) within
4 ulp. The float64 sums of the layer-norm kernels (explicit <8 x double> lanes on contiguous
arrays, eight-accumulator loops on strided ones) give the scalar loops' exact bits for any
length and offset, and are within 1e-12 of NumPy's sum.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fast_backends import bitwise_failure
from minisketch.kernels import numerics
from minisketch.layers.lstm import sigmoid as ref_sigmoid

DTYPES = (np.float64, np.float32)
HYP = settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])


def assert_same(label, got, ref):
    msg = bitwise_failure(label, got, ref)
    assert msg is None, msg


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementary_functions_against_numpy(dtype):
    """exp, tanh, sigmoid within a few ulp of NumPy over the whole range (overflow, underflow,
    subnormal results, signed zeros, inf, nan); log and log1p (float64, used by the MDN)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(2000) * 10, np.linspace(-800, 800, 1601),
                        rng.standard_normal(200) * 1e-6, [0.0, -0.0, np.inf, -np.inf, np.nan]])
    if dtype is np.float32:
        x = x[np.isnan(x) | (np.abs(x) < 200)]
        fns = (numerics.exp32, numerics.tanh32, numerics.sigmoid32)
        max_ulp = 3
    else:
        fns = (numerics.exp64, numerics.tanh64, numerics.sigmoid64)
        max_ulp = 4
    x = x.astype(dtype)
    with np.errstate(all="ignore"):
        x64 = x.astype(np.float64)
        refs = (np.exp(x64), np.tanh(x64), ref_sigmoid(x64))
    for fn, ref in zip(fns, refs):
        got = np.array([fn(v) for v in x], dtype=dtype)
        with np.errstate(over="ignore"):       # exp beyond float32's range rounds to inf
            ref = ref.astype(dtype)
        assert_same(f"{fn.__name__} nan", np.isnan(got), np.isnan(ref))
        fin = np.isfinite(ref)
        assert_same(f"{fn.__name__} non-finite", got[~fin], ref[~fin])
        normal = fin & (np.abs(ref) >= np.finfo(dtype).tiny)
        ulp = np.abs(got[normal].astype(np.float64) - ref[normal]) / np.spacing(
            np.abs(ref[normal]))
        assert ulp.max() <= max_ulp, f"{fn.__name__}: {ulp.max()} ulp"
        sub = fin & ~normal        # subnormal or zero results: within one subnormal step
        assert np.all(np.abs(got[sub].astype(np.float64) - ref[sub])
                      <= np.finfo(dtype).smallest_subnormal), fn.__name__
    if dtype is np.float64:
        xs = np.concatenate([np.geomspace(1e-300, 1e300, 2000), rng.random(500) * 3])
        got = np.array([numerics.log64(v) for v in xs])
        assert np.max(np.abs(got - np.log(xs)) / np.spacing(np.abs(np.log(xs)))) <= 4
        u = np.concatenate([np.geomspace(1e-300, 1.0, 2000), rng.random(500)])
        got = np.array([numerics.log1p_small64(v) for v in u])
        assert np.max(np.abs(got - np.log1p(u)) / np.spacing(np.log1p(u))) <= 4


@numba.njit
def _vector_sums(u, ulo, v, vlo, n, mean):
    return (numerics.sum64(v, vlo, n), numerics.sum_sqdev64(v, vlo, n, mean),
            numerics.sum_prod64(u, ulo, v, vlo, n))


@HYP
@given(n=st.integers(0, 70), ulo=st.integers(0, 9), vlo=st.integers(0, 9),
       dtype=st.sampled_from(DTYPES), scale=st.sampled_from([1e-3, 1.0, 1e4]),
       stride=st.sampled_from([1, 2]), seed=st.integers(0, 2 ** 31 - 1))
def test_vector_sums_equal_the_scalar_lanes_bit_for_bit(n, ulo, vlo, dtype, scale, stride, seed):
    """The layer-norm kernels' float64 sums (explicit <8 x double> lanes on contiguous arrays,
    the eight-accumulator loops on strided ones) give the scalar loops' exact bits, for any
    length (remainders, n < 8, 0) and offset."""
    rng = np.random.default_rng(seed)
    u = (rng.standard_normal((ulo + n) * stride) * scale).astype(dtype)[::stride]
    v = (rng.standard_normal((vlo + n) * stride) * scale + 3 * scale).astype(dtype)[::stride]
    mean = dtype(rng.standard_normal() * scale)
    got = _vector_sums(u, ulo, v, vlo, n, mean)
    want = (numerics.sum64_scalar(v, vlo, n), numerics.sum_sqdev64_scalar(v, vlo, n, mean),
            numerics.sum_prod64_scalar(u, ulo, v, vlo, n))
    assert got == want
    if n:
        tol = 1e-12 * float(np.sum(np.abs(v[vlo:vlo + n].astype(np.float64))))
        assert abs(got[0] - float(np.sum(v[vlo:vlo + n].astype(np.float64)))) <= tol
