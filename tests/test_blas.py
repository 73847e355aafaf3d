"""The CBLAS route of the Numba backend's matrix products (minisketch/blas.py).

``Cblas.matmul`` is checked against ``numpy.matmul`` on hypothesis-chosen shapes and layouts
(row-major, transposed views, row blocks of wider arrays, 3-D stacks, with and without ``out``)
on every CBLAS this machine has: the OpenBLAS inside NumPy's wheel always (so the layout logic
is tested where MKL is not installed, as in CI), and MKL when ``pip install -e ".[mkl]"`` put it
there. Tolerances (the issue's kernel tolerances): |C - C_numpy| <= 1e-10 (float64) / 1e-5
(float32) times max(|A| |B|), the scale of the products' terms; two BLAS libraries sum in
different orders, so equality is not expected.

The cases CBLAS does not take must come back as None (nothing written), and ``blas.matmul``
must then equal ``numpy.matmul``. The whole model on the Numba backend with MKL is compared with
the NumPy backend by ``test_fast_backend_models.py`` (run it with MKL installed and
OPENBLAS_NUM_THREADS=1 to put every product through MKL).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minisketch import blas, cpu
from minisketch.errors import BackendError
from minisketch.kernels import numba_cpu
from minisketch.kernels.reference import kernel_set

HYP = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}

LIBS = {"openblas": blas.load_numpy_openblas(), "mkl": blas.load_mkl()}


def lib_or_skip(name):
    lib = LIBS[name]
    if lib is None:
        if name == "mkl":
            pytest.skip('MKL is not installed (pip install -e ".[mkl]")')
        pytest.skip("NumPy's BLAS here is not the OpenBLAS of NumPy's wheels")
    return lib


def arrange(rng, shape, dtype, layout):
    """A random array of ``shape`` laid out as asked: "c" row-major, "t" a transposed view of
    a row-major array, "wide" the leading columns of a wider row-major array (leading
    dimension > columns), "off" starting one element into a buffer (still aligned)."""
    if layout == "t":
        return np.ascontiguousarray(rng.standard_normal(shape[::-1]).astype(dtype)).T
    if layout == "wide":
        return rng.standard_normal(shape[:-1] + (shape[-1] + 3,)).astype(dtype)[..., :shape[-1]]
    if layout == "off":
        n = int(np.prod(shape))
        buf = rng.standard_normal(n + 1).astype(dtype)
        return buf[1:].reshape(shape)
    return rng.standard_normal(shape).astype(dtype)


def check_close(got, a, b):
    ref = np.matmul(a, b)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    scale = max(float(np.max(np.matmul(np.abs(a), np.abs(b)))), 1e-300)
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) / scale
    assert err <= TOL[ref.dtype], f"relative error {err:.2e}"


@pytest.mark.parametrize("name", ["openblas", "mkl"])
@HYP
@given(m=st.integers(1, 37), k=st.integers(1, 37), n=st.integers(1, 37),
       stack=st.sampled_from([None, 1, 3]),
       dtype=st.sampled_from([np.float32, np.float64]),
       la=st.sampled_from(["c", "t", "wide", "off"]), lb=st.sampled_from(["c", "t", "wide", "off"]),
       lo=st.sampled_from([None, "c", "wide"]), seed=st.integers(0, 2 ** 31 - 1))
def test_cblas_matmul_equals_numpy(name, m, k, n, stack, dtype, la, lb, lo, seed):
    lib = lib_or_skip(name)
    rng = np.random.default_rng(seed)
    lead = () if stack is None else (stack,)
    if stack is not None:
        la, lb = ("c" if v == "t" else v for v in (la, lb))     # "t" is a 2-D layout here
    a = arrange(rng, lead + (m, k), dtype, la)
    b = arrange(rng, lead + (k, n), dtype, lb)
    out = None if lo is None else arrange(rng, lead + (m, n), dtype, lo)
    got = lib.matmul(a, b, out)
    assert got is not None, "a case CBLAS takes came back as None"
    if out is not None:
        assert got is out
    check_close(got, a, b)


@pytest.mark.parametrize("name", ["openblas", "mkl"])
def test_cblas_declines_what_it_does_not_take(name):
    """Cases outside CBLAS's layouts return None and leave ``out`` untouched."""
    lib = lib_or_skip(name)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 5)).astype(np.float32)
    b = rng.standard_normal((5, 4)).astype(np.float32)
    out = np.full((6, 4), 7.0, np.float32)
    big = rng.standard_normal((12, 10)).astype(np.float32)
    cases = [
        (a.astype(np.int64), b.astype(np.int64), None),            # not float
        (a, b.astype(np.float64), None),                           # mixed dtypes
        (big[::2, ::2][:, :5], b, None),                           # no unit stride
        (a, b, out.T.copy().T),                                    # out not row-major
        (a, b, np.zeros((6, 4), np.float64)),                      # out of another dtype
        (a[:0], b, None),                                          # empty
        (a[None].repeat(2, 0), b[None], None),                     # broadcasting stack
        (a, b, np.zeros((5, 4), np.float32)),                      # wrong out shape
    ]
    for x, y, o in cases:
        keep = None if o is None else o.copy()
        assert lib.matmul(x, y, o) is None
        if o is not None:
            assert np.array_equal(o, keep)
    # out overlapping an operand: BLAS would read what it writes
    sq = rng.standard_normal((4, 4)).astype(np.float32)
    assert lib.matmul(sq, b[:4], sq) is None


def test_matmul_kernel_falls_back_to_numpy_where_cblas_declines():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((7, 5))
    b = rng.standard_normal((5, 3)).astype(np.float32)
    with cpu.blas_threads(1):
        np.testing.assert_array_equal(blas.matmul(a, b), np.matmul(a, b))
        x = rng.standard_normal((3, 7, 5)).astype(np.float32)
        np.testing.assert_array_equal(blas.matmul(x, b), np.matmul(x, b))      # broadcast


def test_kernel_sets_have_the_same_matmul_signature():
    import inspect
    ref, nb = kernel_set(), numba_cpu.kernel_set()
    assert nb.matmul is blas.matmul
    assert inspect.signature(nb.matmul) == inspect.signature(ref.matmul)


@pytest.fixture
def fresh_choice(monkeypatch):
    blas.reset_for_tests()
    yield monkeypatch
    monkeypatch.delenv("MINISKETCH_BLAS", raising=False)
    blas.reset_for_tests()


def test_minisketch_blas_numpy_turns_mkl_off(fresh_choice):
    fresh_choice.setenv("MINISKETCH_BLAS", "numpy")
    assert blas.mkl() is None
    assert blas.describe() == "NumPy's matmul"


def test_minisketch_blas_bad_value_is_one_clear_error(fresh_choice):
    fresh_choice.setenv("MINISKETCH_BLAS", "fastest")
    with pytest.raises(BackendError, match="MINISKETCH_BLAS must be one of auto, numpy, mkl"):
        blas.check()


def test_minisketch_blas_mkl_without_mkl_says_how_to_install(fresh_choice):
    if LIBS["mkl"] is not None:
        pytest.skip("MKL is installed here")
    fresh_choice.setenv("MINISKETCH_BLAS", "mkl")
    with pytest.raises(BackendError, match=r'pip install -e "\.\[mkl\]"'):
        blas.check()


def test_mkl_takes_the_products_only_with_openblas_on_one_thread(fresh_choice):
    """With MKL loaded, blas.matmul goes to it inside blas_threads(1) and to NumPy (whose
    threads then work in parallel) outside."""
    lib_or_skip("mkl")
    if cpu.get_blas_threads() is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS")
    fresh_choice.delenv("MINISKETCH_BLAS", raising=False)
    mkl = blas.mkl()
    assert mkl is not None and mkl.name == "mkl"
    calls = []
    real = type(mkl).matmul
    fresh_choice.setattr(type(mkl), "matmul", lambda self, a, b, out=None:
                         calls.append(1) or real(self, a, b, out))
    rng = np.random.default_rng(2)
    a = rng.standard_normal((8, 6)).astype(np.float32)
    b = rng.standard_normal((6, 5)).astype(np.float32)
    with cpu.blas_threads(1):
        check_close(blas.matmul(a, b), a, b)
    assert len(calls) == 1
    with cpu.blas_threads(2):
        np.testing.assert_array_equal(blas.matmul(a, b), np.matmul(a, b))
    assert len(calls) == 1
