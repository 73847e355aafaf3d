"""The fast backends under test and how each is held to the reference (shared by
``test_kernel_contract.py`` and ``test_fast_backend_models.py``).

Backends: ``numba`` (serial kernels), ``numba-parallel`` (the same kernels with the row split
forced on, float32 only: the drivers hand rows to the same row code in both dtypes, and
compiling the float64 drivers too would double the cold-cache compile time) and ``cupy`` (marker
``gpu``; skipped with the reason where CuPy or a CUDA device is missing).

The two contracts (tolerances tol = 1e-10 in float64, 1e-5 in float32, never loosened):

* Numba, elementwise: |got - ref| <= tol (|ref| + max|ref|) for every element (errors relative
  to the element, floored at the tensor's scale). In float32 an element may instead be as close
  to the float64 evaluation of the reference (same float32 inputs) as the float32 reference is,
  within a factor 2: where the float32 reference is itself off by more than tol (e.g. a
  layer-norm block spread 1e-3 around 3, whose mean it sums in float32 and the kernel in
  float64) agreement to tol means nothing, accuracy no worse than the reference does. Kernels
  that do the reference's arithmetic in its order must match it bit for bit.
* CuPy, normwise: max|got - ref| / max|ref| <= tol per tensor: what differs is the last bit of
  exp/tanh/log between CUDA's math library and NumPy's, summation order, and float32 subnormals,
  which CuPy flushes to zero (an elementwise error is not blind to those, a normwise one is).
  The float64 fallback above applies only where a test asks for it (random inputs).

NaN and inf must sit at the same places on both sides. Every failure names the case, the
tensor, the error and the worst entry; CuPy comparisons also go into REPORT, printed as a table
at the end of a GPU run with ``-s`` (benchmarks/gpu_check.sh shows it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
import pytest

from minisketch.kernels import cupy_gpu, jit, numba_cpu

TOL = {np.float64: 1e-10, np.float32: 1e-5}
DTYPES = (np.float64, np.float32)
REPORT: list = []           # (case, tensor, err, tol) of every CuPy comparison


@dataclass
class Fast:
    """A fast backend: its kernel set, and how arrays go to it and come back."""
    name: str
    kernels: object
    to_device: Callable
    to_host: Callable

    @property
    def is_numba(self) -> bool:
        return self.name.startswith("numba")


def _same(a):
    return a


def cupy_or_skip():
    """The cupy module, or skip the test: no CuPy, or no usable CUDA device."""
    cupy = pytest.importorskip(
        "cupy", reason='CuPy is not installed (pip install -e ".[cuda12]" or ".[cuda13]")')
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, or a driver too old for this CuPy
        n = 0
    if n < 1:
        pytest.skip("no usable CUDA device for the cupy backend")
    return cupy


_READY = set()


def make_backend(name: str, monkeypatch) -> Fast:
    """The backend ``name`` (numba, numba-parallel or cupy), set up for one test. The first
    call for a backend compiles its kernels (Numba: or loads them from the cache) up front."""
    if name == "cupy":
        cupy = cupy_or_skip()
        if "cupy" not in _READY:
            cupy_gpu.compile_all()      # a compile error fails here, clearly
            _READY.add("cupy")
        return Fast("cupy", cupy_gpu.kernel_set(), cupy.asarray, cupy.asnumpy)
    if name == "numba-parallel":
        if numba.get_num_threads() < 2:
            pytest.skip("Numba has one thread here: no parallel path to test")
        monkeypatch.setattr(jit, "PARALLEL", True)
        monkeypatch.setattr(jit, "MIN_PARALLEL_WORK", 0)
    else:
        monkeypatch.setattr(jit, "PARALLEL", False)
    if "numba" not in _READY:
        numba_cpu.warm_up(("float64", "float32"), parallel=False)
        numba_cpu.warm_up(("float32",), parallel=True)
        _READY.add("numba")
    return Fast(name, numba_cpu.kernel_set(), _same, _same)


GPU = pytest.mark.gpu
# backend x dtype: the sweep of every kernel test
SWEEP = [pytest.param("numba", np.float64, id="numba-float64"),
         pytest.param("numba", np.float32, id="numba-float32"),
         pytest.param("numba-parallel", np.float32, id="numba-parallel-float32"),
         pytest.param("cupy", np.float64, id="cupy-float64", marks=GPU),
         pytest.param("cupy", np.float32, id="cupy-float32", marks=GPU)]
BACKENDS = [pytest.param("numba", id="numba"),
            pytest.param("numba-parallel", id="numba-parallel"),
            pytest.param("cupy", id="cupy", marks=GPU)]


# --------------------------------------------------------------------------- the two metrics

def elementwise_failure(label, got, ref, dtype, ref64=None):
    """The Numba contract: None if |got - ref| <= tol (|ref| + max|ref|) elementwise (or, with
    ``ref64``, |got - ref64| <= 2 |ref - ref64| + tol (|ref64| + max|ref64|)), else a message."""
    tol = TOL[dtype]
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return f"{label}: shape {got.shape} != {ref.shape}"
    if not np.array_equal(np.isnan(got), np.isnan(ref)):
        return f"{label}: nan positions differ"
    fin = np.isfinite(ref)
    if not np.array_equal(got[~fin], ref[~fin]):
        return f"{label}: inf entries differ"
    if not fin.any():
        return None
    err = np.where(fin, np.abs(got - ref), 0.0)
    scale = np.max(np.abs(ref[fin]))
    bound = tol * (np.abs(np.where(fin, ref, 0.0)) + scale)
    bad = err > bound
    if ref64 is not None and bad.any():
        r64 = np.asarray(ref64, dtype=np.float64)
        own = np.abs(ref - r64)                       # the reference's own error
        s64 = np.max(np.abs(r64[np.isfinite(r64)]))
        bad &= ~(np.abs(got - r64) <= 2.0 * own + tol * (np.abs(r64) + s64))
    if not bad.any():
        return None
    k = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape)
    extra = "" if ref64 is None else f", float64 reference {np.asarray(ref64)[k]!r}"
    return (f"{label} ({np.dtype(dtype).name}): worst at {k}: got {got[k]!r}, reference "
            f"{ref[k]!r}{extra}, |diff| {err[k]:.3e} > bound {bound[k]:.3e}; max |diff| / "
            f"max|ref| = {np.max(err) / max(scale, 1e-300):.3e}")


def bitwise_failure(label, got, ref):
    """None if got and ref are the same bits (nan equal to nan), else a message."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return f"{label}: shape {got.shape} != {ref.shape}"
    if np.array_equal(got, ref, equal_nan=True):
        return None
    diff = np.argwhere(~((got == ref) | (np.isnan(got) & np.isnan(ref))))
    k = tuple(diff[0])
    return (f"{label}: {len(diff)} entries differ, first at {k}: got {got[k]!r}, "
            f"reference {ref[k]!r}")


def rel_err(got, want, flush_below: float = 0.0) -> float:
    """The CuPy contract's normwise relative error; inf if shapes or NaN/inf patterns differ.

    flush_below: entries of magnitude below it count as zero on both sides (a GPU flushes
    subnormal results to zero: pass the dtype's smallest normal number)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if flush_below:
        got = np.where(np.abs(got) < flush_below, 0.0, got)
        want = np.where(np.abs(want) < flush_below, 0.0, want)
    if got.shape != want.shape:
        return float("inf")
    if np.any(np.isnan(got) != np.isnan(want)):
        return float("inf")
    inf = np.isinf(got) | np.isinf(want)
    if np.any(got[inf] != want[inf]):
        return float("inf")
    fin = np.isfinite(want)
    if not np.any(fin):
        return 0.0
    diff = float(np.max(np.abs(got[fin] - want[fin])))
    if diff == 0.0:
        return 0.0
    return diff / max(float(np.max(np.abs(want[fin]))), np.finfo(np.float64).tiny)


def worst_entry(got, want) -> str:
    got = np.atleast_1d(np.asarray(got, dtype=np.float64))     # 0-d losses too
    want = np.atleast_1d(np.asarray(want, dtype=np.float64))
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    d = np.abs(got - want)
    d[np.isnan(got) != np.isnan(want)] = np.inf
    d[np.isnan(d) & np.isnan(want)] = 0.0
    k = np.unravel_index(int(np.argmax(d)), d.shape) if d.size else ()
    return f"worst at {tuple(int(i) for i in k)}: got {got[k]!r}, want {want[k]!r}"


class Check:
    """Compares one case's tensors with the reference under the backend's contract and
    collects the failures; ``done()`` asserts there are none.

    fallback64: let the CuPy contract use the float64 fallback (the Numba one always does).
    normwise, tol: compare normwise to ``tol`` (default TOL) on every backend: the whole-sequence
    and whole-model checks, whose products go through different BLAS libraries."""

    def __init__(self, fast: Fast, dtype, case: str, fallback64: bool = False,
                 normwise: bool = False, tol: float | None = None):
        self.fast, self.dtype, self.case, self.fallback64 = fast, dtype, case, fallback64
        self.normwise = normwise or not fast.is_numba
        self.tol = TOL[dtype] if tol is None else tol
        self.fails = []

    def __call__(self, label, got, want, want64=None, *, bitwise=False, exact=False, tol=None,
                 err=None):
        """bitwise: the Numba kernel promises the reference's bits; exact: every backend does.
        tol, err: a CuPy tolerance or error computed by the caller (the MDN's sums)."""
        got = self.fast.to_host(got)
        if not self.normwise:
            if exact or bitwise:
                msg = bitwise_failure(label, got, want)
            else:
                msg = elementwise_failure(label, got, want, self.dtype, want64)
            if msg:
                self.fails.append(msg)
            return
        tol = 0.0 if exact else (self.tol if tol is None else tol)
        # the GPU flushes subnormal float32 results to zero (want may hold them): below the
        # smallest normal number the two agree to that arithmetic's rounding
        flush = float(np.finfo(self.dtype).tiny) if not self.fast.is_numba else 0.0
        e = rel_err(got, self.fast.to_host(want), flush) if err is None else err
        if not e <= tol and self.fallback64 and want64 is not None:
            if rel_err(got, want64) <= 2.0 * rel_err(want, want64) + tol:
                e = tol
        if not self.fast.is_numba:
            REPORT.append((self.case, label, e, tol))
        if not e <= tol:
            self.fails.append(f"{label}: err {e:.3e} > tol {tol:.0e}; "
                              f"{worst_entry(got, self.fast.to_host(want))}")

    def done(self):
        assert not self.fails, f"{self.case}:\n  " + "\n  ".join(self.fails)


def print_report():
    """The CuPy comparisons of this session, worst per case family and tensor."""
    if not REPORT:
        return

    def badness(err, tol):
        return err / tol if tol > 0 else (float("inf") if err > 0 else 0.0)

    print("\n\nCuPy kernels vs NumPy reference (normwise relative error, worst per tensor)")
    worst = {}
    for case, name, err, tol in REPORT:
        key = (case.split("[")[0], name)
        if key not in worst or badness(err, tol) > badness(*worst[key]):
            worst[key] = (err, tol)
    for (case, name), (err, tol) in sorted(worst.items()):
        flag = "ok " if err <= tol else "BAD"
        print(f"  {flag} {case:34s} {name:22s} err {err:9.2e}  tol {tol:7.0e}")
