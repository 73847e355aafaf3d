"""The kernel contract: every kernel of the fast backends against the reference step function
it replaces, swept over backend x dtype (numba, numba-parallel, cupy x float64, float32).

How each backend is compared (tolerances, bit-for-bit promises) is in ``fast_backends.py``.
Each kernel meets two kinds of inputs, on every backend:

* grid cases: fixed shapes (B x H) (1, 1), (1, 7), (2, 3), (3, 32), (5, 33), (4, 257), (7, 300),
  (100, 512), so batch 1, odd sizes, H on both sides of the GPU's 256 threads per block and the
  real sizes, with and without dropout and padding masks, at two input scales; MDN rows up to
  2500 with M up to 20, typical and extreme; clip + Adam over up to 300,001 parameters;
* random cases (hypothesis): shapes from 1, pre-activations from tiny to saturating (|a| up to
  100, exact zeros), layer-norm blocks of tiny variance (1e-3 against the 1e-3 epsilon, and
  H = 1: variance 0), rows that are all padding, rho logits up to +-50, log sigma down to -20,
  targets far from every mean, M = 1, NaN gradients.

On CuPy the float32 MDN extremes stop short (rho logits +-8, log sigma -8) where a subnormal
responsibility (flushed to zero by CuPy's -ftz=true, kept by NumPy) meets a factor as large as
cosh(50) = 2.6e21 in the gradient: there the two legitimately differ by far more than rounding.
Outputs start as NaN on both sides, so an entry a kernel does not write fails.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fast_backends import (BACKENDS, SWEEP, TOL, Check, elementwise_failure, make_backend,
                           print_report, rel_err)
from minisketch import noise, optim
from minisketch.backend import get_backend
from minisketch.kernels import cupy_gpu, jit, numba_cpu, reference
from minisketch.layers import mdn

REF = reference.kernel_set()
HYP = settings(deadline=None, max_examples=25,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def report():
    """At the end, the table of CuPy comparisons (GPU runs, with -s)."""
    yield
    print_report()


@pytest.fixture
def fast(request, monkeypatch):
    return make_backend(request.param, monkeypatch)


def sweep(f):
    return pytest.mark.parametrize("fast,dtype", SWEEP, indirect=["fast"])(f)


def run_kernel(fast, dtype, name, args, outputs, case, *, bitwise=(), fallback64=None):
    """Run kernel ``name`` of the reference set on NumPy copies of ``args`` and of the backend's
    set on device copies; compare the outputs named in ``outputs`` ({name: argument index}).
    In float32 the reference also runs in float64 on the same inputs (``want64``); the CuPy
    contract uses it only with ``fallback64`` (default: the Numba contract only).
    Returns (check, reference arguments after the call)."""
    ref_args = [None if a is None else np.array(a) for a in args]
    dev_args = [None if a is None else fast.to_device(np.array(a)) for a in args]
    for i in outputs.values():
        ref_args[i][...] = np.nan
        dev_args[i][...] = np.nan
    ref64 = None
    if dtype is np.float32:
        ref64 = [None if a is None else np.array(a, dtype=np.float64)
                 if a.dtype == np.float32 else np.array(a) for a in ref_args]
        getattr(REF, name)(*ref64)
    getattr(REF, name)(*ref_args)
    getattr(fast.kernels, name)(*dev_args)
    chk = Check(fast, dtype, case, fallback64=bool(fallback64))
    for out_name, i in outputs.items():
        chk(out_name, dev_args[i], ref_args[i], None if ref64 is None else ref64[i],
            bitwise=out_name in bitwise)
    return chk, ref_args


# --------------------------------------------------------------------------- the kernel sets

@pytest.mark.parametrize("ks_module", [numba_cpu, cupy_gpu], ids=["numba", "cupy"])
def test_kernel_set_matches_the_reference(ks_module):
    """Same names as the reference set; every kernel has its reference function's exact
    signature (checked without a GPU: the CUDA launchers import without CuPy)."""
    ks = ks_module.kernel_set()
    assert set(vars(ks)) == set(vars(REF))
    for name, fn in ks_module.KERNELS.items():
        assert getattr(ks, name) is fn
        assert inspect.signature(fn) == inspect.signature(getattr(REF, name)), name
    assert get_backend("numba").kernels.lstm_cell_forward is numba_cpu.lstm_cell_forward


# --------------------------------------------------------------------------- inputs

def _rng(*key):
    return np.random.default_rng(list(key))


def _keep(rng, shape, dt, keep_prob=0.9):
    return ((rng.random(shape) < keep_prob) / keep_prob).astype(dt)


def _mask(rng, B, dt):
    m = (rng.random(B) < 0.7).astype(dt)
    if B > 1:
        m[0], m[-1] = 1, 0            # both kinds present
    return m


SHAPES = [(1, 1), (1, 7), (2, 3), (3, 32), (5, 33), (4, 257), (7, 300), (100, 512)]
VARIANTS = ["plain", "keep", "mask", "keep+mask"]


def _lstm_inputs(rng, B, H, dt, scale, variant):
    xw = (scale * rng.standard_normal((B, 4 * H))).astype(dt)
    hh = (scale * rng.standard_normal((B, 4 * H))).astype(dt)
    c_prev = (scale * rng.standard_normal((B, H))).astype(dt)
    h_prev = rng.uniform(-1, 1, (B, H)).astype(dt)
    keep = _keep(rng, (B, H), dt) if "keep" in variant else None
    mask = _mask(rng, B, dt) if "mask" in variant else None
    return xw, hh, c_prev, h_prev, keep, mask


def preacts(rng, shape, dtype, scale):
    """Pre-activations: normal * scale, with some exact zeros and saturating +-100 mixed in."""
    a = rng.standard_normal(shape) * scale
    pick = rng.random(shape)
    a[pick < 0.03] = 0.0
    a[(pick >= 0.03) & (pick < 0.06)] = 100.0
    a[(pick >= 0.06) & (pick < 0.09)] = -100.0
    return a.astype(dtype)


def keep_mask(rng, B, H, dtype, on):
    if not on:
        return None
    keep = 0.75
    return ((rng.random((B, H)) < keep) / keep).astype(dtype)


def pad_mask(rng, B, dtype, on):
    if not on:
        return None
    return (rng.random(B) < 0.6).astype(dtype)


sizes = st.tuples(st.integers(1, 5), st.integers(1, 37))


def _lstm_case(fast, dtype, args, rng, case, fallback64=None):
    """Forward (c, h, saved activations); backward (da, dc_prev, dh_pass) from the reference's
    own saved activations, with dh and dc drawn from ``rng``: pure arithmetic, bit for bit on
    Numba."""
    c_prev, keep, mask = args[2], args[4], args[5]
    B, H = c_prev.shape
    chk, ref_args = run_kernel(
        fast, dtype, "lstm_cell_forward",
        [*args, np.empty((B, H), dtype), np.empty((B, H), dtype), np.empty((B, 5 * H), dtype)],
        {"c_out": 6, "h_out": 7, "act_out": 8}, f"lstm_cell_forward[{case}]",
        fallback64=fallback64)
    chk.done()
    dh = rng.standard_normal((B, H)).astype(dtype)
    dc = rng.standard_normal((B, H)).astype(dtype)
    chk, _ = run_kernel(
        fast, dtype, "lstm_cell_backward",
        [dh, dc, c_prev, ref_args[8], keep, mask, np.empty((B, 4 * H), dtype),
         np.empty((B, H), dtype), np.empty((B, H), dtype)],
        {"da_out": 6, "dc_prev_out": 7, "dh_pass_out": 8}, f"lstm_cell_backward[{case}]",
        bitwise=("da_out", "dc_prev_out", "dh_pass_out"), fallback64=fallback64)
    chk.done()


# --------------------------------------------------------------------------- LSTM

@sweep
@pytest.mark.parametrize("B,H", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_lstm_cell_grid(fast, dtype, B, H, variant, scale):
    rng = _rng(1, B, H, VARIANTS.index(variant), int(scale))
    args = _lstm_inputs(rng, B, H, dtype, scale, variant)
    _lstm_case(fast, dtype, args, rng, f"{dtype.__name__},{B}x{H},{variant},x{scale:g}")


@sweep
@HYP
@given(size=sizes, scale=st.sampled_from([0.1, 1.0, 6.0]), use_keep=st.booleans(),
       use_mask=st.booleans(), seed=st.integers(0, 2**31))
def test_lstm_cell_random(fast, dtype, size, scale, use_keep, use_mask, seed):
    B, H = size
    rng = np.random.default_rng(seed)
    keep = keep_mask(rng, B, H, dtype, use_keep)
    mask = pad_mask(rng, B, dtype, use_mask)
    c_prev = preacts(rng, (B, H), dtype, 2.0)
    h_prev = rng.standard_normal((B, H)).astype(dtype)
    args = (preacts(rng, (B, 4 * H), dtype, scale), preacts(rng, (B, 4 * H), dtype, scale),
            c_prev, h_prev, keep, mask)
    _lstm_case(fast, dtype, args, rng, f"random,{dtype.__name__}", fallback64=True)


@pytest.mark.parametrize("fast", BACKENDS, indirect=True)
def test_lstm_cell_bool_mask_and_strided_arguments(fast):
    """A bool mask and non-contiguous views (CuPy: they go to the reference code) give the
    reference numbers."""
    dt, B, H = np.float64, 4, 9
    rng = _rng(2)
    xw, hh, c_prev, h_prev, keep, _ = _lstm_inputs(rng, B, H, dt, 1.0, "keep")
    mask = np.array([True, False, True, False])
    chk, _ = run_kernel(
        fast, dt, "lstm_cell_forward",
        [xw, hh, c_prev, h_prev, keep, mask, np.empty((B, H), dt), np.empty((B, H), dt),
         np.empty((B, 5 * H), dt)], {"c_out": 6, "h_out": 7, "act_out": 8},
        "lstm_cell_forward[bool mask]")
    chk.done()
    state = rng.standard_normal((B, 2 * H))          # c_prev, h_prev as column views of it
    outs_w = [np.full((B, H), np.nan), np.full((B, H), np.nan), np.full((B, 5 * H), np.nan)]
    REF.lstm_cell_forward(xw, hh, state[:, :H], state[:, H:], keep, None, *outs_w)
    dstate = fast.to_device(state)
    big = fast.to_device(np.full((B, 10 * H), np.nan))
    outs_g = [fast.to_device(np.full((B, H), np.nan)), big[:, ::10],
              fast.to_device(np.full((B, 5 * H), np.nan))]
    fast.kernels.lstm_cell_forward(fast.to_device(xw), fast.to_device(hh), dstate[:, :H],
                                   dstate[:, H:], fast.to_device(keep), None, *outs_g)
    chk = Check(fast, dt, "lstm_cell_forward[strided views]")
    for name, g, w in zip(["c_out", "h_out", "act_out"], outs_g, outs_w):
        chk(name, g, w)
    chk.done()


def test_lstm_large_inputs_take_the_parallel_path_and_match(monkeypatch):
    """With the Numba row split on (default threshold), a batch of 100 x 512 (above it) runs
    split across threads, where there are several, and still equals the reference."""
    fast = make_backend("numba", monkeypatch)
    monkeypatch.setattr(jit, "PARALLEL", True)
    dtype = np.float32
    rng = np.random.default_rng(1)
    B, H = 100, 512
    assert B * 4 * H >= jit.MIN_PARALLEL_WORK
    args = (preacts(rng, (B, 4 * H), dtype, 2.0), preacts(rng, (B, 4 * H), dtype, 2.0),
            rng.standard_normal((B, H)).astype(dtype), rng.standard_normal((B, H)).astype(dtype),
            keep_mask(rng, B, H, dtype, True), pad_mask(rng, B, dtype, True))
    _lstm_case(fast, dtype, args, rng, "parallel 100x512")


# --------------------------------------------------------------------------- layer-norm LSTM

def _ln_params(rng, H, dt):
    return ((1 + 0.3 * rng.standard_normal(4 * H)).astype(dt),
            (0.3 * rng.standard_normal(4 * H)).astype(dt),
            (1 + 0.3 * rng.standard_normal(H)).astype(dt),
            (0.3 * rng.standard_normal(H)).astype(dt))


def _ln_case(fast, dtype, a, c_prev, h_prev, keep, mask, params, rng, case, fallback64=None):
    """Forward (five outputs) and backward (four outputs, dh and dc drawn from ``rng``;
    dh_pass bit for bit on Numba)."""
    B, H = c_prev.shape
    gamma, beta, gamma_c, beta_c = params
    chk, ref_args = run_kernel(
        fast, dtype, "ln_lstm_cell_forward",
        [a, c_prev, h_prev, keep, mask, gamma, beta, gamma_c, beta_c,
         np.empty((B, H), dtype), np.empty((B, H), dtype), np.empty((B, 5 * H), dtype),
         np.empty((B, 5 * H), dtype), np.empty((B, 5), dtype)],
        {"c_out": 9, "h_out": 10, "act_out": 11, "norm_out": 12, "rstd_out": 13},
        f"ln_lstm_cell_forward[{case}]", fallback64=fallback64)
    chk.done()
    act, norm, rstd = ref_args[11], ref_args[12], ref_args[13]
    dh = rng.standard_normal((B, H)).astype(dtype)
    dc = rng.standard_normal((B, H)).astype(dtype)
    chk, _ = run_kernel(
        fast, dtype, "ln_lstm_cell_backward",
        [dh, dc, c_prev, keep, mask, gamma, gamma_c, act, norm, rstd,
         np.empty((B, 4 * H), dtype), np.empty((B, 5 * H), dtype), np.empty((B, H), dtype),
         np.empty((B, H), dtype)],
        {"da_out": 10, "dy_out": 11, "dc_prev_out": 12, "dh_pass_out": 13},
        f"ln_lstm_cell_backward[{case}]", bitwise=("dh_pass_out",), fallback64=fallback64)
    chk.done()


@sweep
@pytest.mark.parametrize("B,H", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_ln_lstm_cell_grid(fast, dtype, B, H, variant, scale):
    rng = _rng(3, B, H, VARIANTS.index(variant), int(scale))
    a, _, c_prev, h_prev, keep, mask = _lstm_inputs(rng, B, H, dtype, scale, variant)
    a = a + (scale * rng.standard_normal(4 * H)).astype(dtype)   # per-unit offsets: mean != 0
    _ln_case(fast, dtype, a, c_prev, h_prev, keep, mask, _ln_params(rng, H, dtype), rng,
             f"{dtype.__name__},{B}x{H},{variant},x{scale:g}")


@sweep
@HYP
@given(size=sizes, scale=st.sampled_from([1e-3, 1.0, 30.0]), offset=st.sampled_from([0.0, 3.0]),
       use_keep=st.booleans(), use_mask=st.booleans(), seed=st.integers(0, 2**31))
def test_ln_lstm_cell_random(fast, dtype, size, scale, offset, use_keep, use_mask, seed):
    """Includes blocks of tiny variance (scale 1e-3 against the 1e-3 epsilon) and H = 1
    (variance 0)."""
    B, H = size
    rng = np.random.default_rng(seed)
    keep = keep_mask(rng, B, H, dtype, use_keep)
    mask = pad_mask(rng, B, dtype, use_mask)
    params = (rng.normal(1.0, 0.5, 4 * H).astype(dtype), rng.normal(0.0, 0.5, 4 * H).astype(dtype),
              rng.normal(1.0, 0.5, H).astype(dtype), rng.normal(0.0, 0.5, H).astype(dtype))
    a = (rng.standard_normal((B, 4 * H)) * scale + offset).astype(dtype)
    c_prev = preacts(rng, (B, H), dtype, 2.0)
    h_prev = rng.standard_normal((B, H)).astype(dtype)
    _ln_case(fast, dtype, a, c_prev, h_prev, keep, mask, params, rng, f"random,{dtype.__name__}",
             fallback64=True)


@pytest.mark.parametrize("fast", BACKENDS, indirect=True)
def test_ln_lstm_cell_constant_blocks(fast):
    """Gate blocks with zero variance (every unit equal): LN gives 0 and rstd = 1/sqrt(1e-3)."""
    for dt in (np.float64, np.float32):
        if fast.name == "numba-parallel" and dt is np.float64:
            continue                  # parallel drivers: float32 only (fast_backends.py)
        B, H = 3, 40
        rng = _rng(4)
        a = np.repeat(rng.standard_normal((B, 4, 1)), H, axis=2).reshape(B, 4 * H).astype(dt)
        chk, _ = run_kernel(
            fast, dt, "ln_lstm_cell_forward",
            [a, np.zeros((B, H), dt), np.zeros((B, H), dt), None, None, *_ln_params(rng, H, dt),
             np.empty((B, H), dt), np.empty((B, H), dt), np.empty((B, 5 * H), dt),
             np.empty((B, 5 * H), dt), np.empty((B, 5), dt)],
            {"c_out": 9, "h_out": 10, "act_out": 11, "norm_out": 12, "rstd_out": 13},
            f"ln_lstm_cell_forward[{dt.__name__},constant blocks]")
        chk.done()


# --------------------------------------------------------------------------- HyperLSTM

def _hyper_case(fast, dtype, r, B, H, case, fallback64=None):
    """Forward and backward: pure arithmetic, bit for bit on Numba."""
    xw, hh, alpha, beta, b = r(B, 4 * H), r(B, 4 * H), r(8, B, H), r(4, B, H), r(4 * H)
    chk, _ = run_kernel(fast, dtype, "hyper_modulate_forward",
                        [xw, hh, alpha, beta, b, np.empty((B, 4 * H), dtype)], {"a_out": 5},
                        f"hyper_modulate_forward[{case}]", bitwise=("a_out",),
                        fallback64=fallback64)
    chk.done()
    chk, _ = run_kernel(fast, dtype, "hyper_modulate_backward",
                        [r(B, 4 * H), xw, hh, alpha, np.empty((B, 4 * H), dtype),
                         np.empty((B, 4 * H), dtype), np.empty((8, B, H), dtype)],
                        {"dxw_out": 4, "dhh_out": 5, "dalpha_out": 6},
                        f"hyper_modulate_backward[{case}]",
                        bitwise=("dxw_out", "dhh_out", "dalpha_out"), fallback64=fallback64)
    chk.done()


@sweep
@pytest.mark.parametrize("B,H", SHAPES)
def test_hyper_modulate_grid(fast, dtype, B, H):
    rng = _rng(5, B, H)
    _hyper_case(fast, dtype, lambda *s: rng.standard_normal(s).astype(dtype), B, H,
                f"{dtype.__name__},{B}x{H}")


@sweep
@HYP
@given(size=sizes, seed=st.integers(0, 2**31))
def test_hyper_modulate_random(fast, dtype, size, seed):
    B, H = size
    rng = np.random.default_rng(seed)
    _hyper_case(fast, dtype, lambda *s: (rng.standard_normal(s) * 3).astype(dtype), B, H,
                f"random,{dtype.__name__}", fallback64=True)


# --------------------------------------------------------------------------- MDN loss

MDN_BLOCKS = ("pen", "pi", "mu_x", "mu_y", "log_sigma_x", "log_sigma_y", "rho")


def _mdn_case(rng, N, M, dt, kind):
    """Raw outputs y [N, 6M+3] and targets [N, 5] (one-hot pens, padding rows (0,0,0,0,1)).

    kind: "typical" (targets near a component), "extreme" (float64: rho logits +-50, log sigma
    down to -20; float32: +-8 and -8; targets far from every mean, pen logits of +-60)."""
    y = rng.standard_normal((N, 6 * M + 3))
    t = np.zeros((N, 5))
    if kind == "typical":
        y[:, 3 + 3 * M:3 + 5 * M] = rng.uniform(-2.0, 0.5, (N, 2 * M))
        y[:, 3 + 5 * M:] = rng.uniform(-3, 3, (N, M))
        k = rng.integers(0, M, N)
        rows = np.arange(N)
        t[:, 0] = y[rows, 3 + M + k] + np.exp(y[rows, 3 + 3 * M + k]) * rng.standard_normal(N)
        t[:, 1] = y[rows, 3 + 2 * M + k] + np.exp(y[rows, 3 + 4 * M + k]) * rng.standard_normal(N)
    elif dt == np.float64:
        y[:, 0:3] = rng.choice([-60.0, 0.0, 60.0], (N, 3))
        y[:, 3 + 3 * M:3 + 5 * M] = rng.choice([-20.0, -5.0, 0.0, 3.0], (N, 2 * M))
        y[:, 3 + 5 * M:] = rng.choice([-50.0, -10.0, 0.0, 10.0, 50.0], (N, M))
        t[:, 0:2] = rng.choice([-30.0, 0.0, 1e-3, 30.0], (N, 2))
    else:
        # float32 extremes stop short where CuPy's flushed subnormals meet cosh(50) (docstring)
        y[:, 0:3] = rng.choice([-60.0, 0.0, 60.0], (N, 3))
        y[:, 3 + 3 * M:3 + 5 * M] = rng.choice([-8.0, -5.0, 0.0, 3.0], (N, 2 * M))
        y[:, 3 + 5 * M:] = rng.choice([-8.0, -3.0, 0.0, 3.0, 8.0], (N, M))
        t[:, 0:2] = rng.choice([-30.0, 0.0, 1e-3, 30.0], (N, 2))
    pen = rng.choice(3, N, p=[0.6, 0.2, 0.2])
    t[np.arange(N), 2 + pen] = 1.0
    t[pen == 2, 0:2] = 0.0
    return y.astype(dt), t.astype(dt)


def _mdn_wide(rng, N, M, dtype, extreme):
    """The wider random inputs: rho logits of +-50 and log sigma of -20 in both dtypes, pen
    logits up to +-60, targets 100x far from every mean."""
    y = rng.standard_normal((N, 6 * M + 3))
    target = np.zeros((N, 5))
    target[:, :2] = rng.standard_normal((N, 2)) * 2
    target[np.arange(N), 2 + rng.integers(0, 3, N)] = 1.0
    if extreme:
        sl = lambda k: slice(3 + k * M, 3 + (k + 1) * M)  # noqa: E731
        pick = rng.random((N, M))
        y[:, sl(5)] = np.where(pick < 0.3, rng.choice([-50.0, 50.0], (N, M)), y[:, sl(5)] * 5)
        y[:, sl(3)] = np.where(pick > 0.7, -20.0, y[:, sl(3)] * 3)
        y[:, sl(4)] = np.where(rng.random((N, M)) < 0.3, -20.0, y[:, sl(4)])
        y[:, sl(0)] *= 10
        y[:, 0:3] *= 20
        target[rng.random(N) < 0.3, :2] *= 100           # far from every mean
    return y.astype(dtype), target.astype(dtype)


def _mdn_term_scale(y, t):
    """Sum of |row terms| of offset_sum and of pen_sum (float64): the scale of each sum's
    error."""
    y64, t64 = y.astype(np.float64), t.astype(np.float64)
    with np.errstate(all="ignore"):
        ell, _ = mdn._offset_terms(y64, t64)
        pen, _ = mdn._pen_terms(y64, t64)
    return (float(np.sum(np.abs(ell * (1 - t64[:, 4])))) or 1.0,
            float(np.sum(np.abs(pen))) or 1.0)


def check_mdn(fast, y, t, dt, case, scale=0.125):
    """Both sums and the gradient, and the forward-only ``mdn_loss``, against the reference.

    Numba: the elementwise contract, against the reference in higher precision where the
    reference's own rounding is the larger error (float32: float64; float64: long double, where
    it is wider: 1 - softmax near 1 cancels, and the fused kernel, which forms it from the other
    classes, can be the closer).
    CuPy: each sum relative to the sum of the absolute values of its terms, each block of dy
    normwise; in float32 a tensor's tolerance is max(1e-5, 4 x the float32 reference's own error
    against the float64 reference): extreme inputs make the function ill-conditioned (u - rho v
    cancels for rho near +-1 and is then multiplied by cosh(r); responsibilities are exp of
    O(100) numbers), so a last-bit difference in exp or tanh legitimately moves the result by as
    much as the reference's own rounding does."""
    with np.errstate(all="ignore"):
        want = REF.mdn_loss_and_grad(y.copy(), t.copy(), scale)
        want_fwd = REF.mdn_loss(y.copy(), t.copy())
        if dt == np.float32:
            exact = REF.mdn_loss_and_grad(y.astype(np.float64), t.astype(np.float64), scale)
        elif np.finfo(np.longdouble).eps < np.finfo(np.float64).eps:
            exact = REF.mdn_loss_and_grad(y.astype(np.longdouble), t.astype(np.longdouble),
                                          scale)
        else:
            exact = None
    got = fast.kernels.mdn_loss_and_grad(fast.to_device(y), fast.to_device(t), scale)
    got_fwd = fast.kernels.mdn_loss(fast.to_device(y), fast.to_device(t))
    assert got[0].shape == () and got[1].shape == () and got[2].dtype == dt
    assert np.asarray(fast.to_host(got[0])).dtype == dt
    chk = Check(fast, dt, case)
    if fast.is_numba:
        e = (None, None, None) if exact is None else exact
        for k, label in enumerate(("offset_sum", "pen_sum", "dy")):
            chk(f"mdn {label}", got[k], want[k], e[k])
        chk("mdn_loss offset_sum", got_fwd[0], want[0], e[0])
        chk("mdn_loss pen_sum", got_fwd[1], want[1], e[1])
        chk.done()
        return
    exact = REF.mdn_loss_and_grad(y.astype(np.float64), t.astype(np.float64), scale)
    so, sp = _mdn_term_scale(y, t)
    M = (y.shape[1] - 3) // 6

    def tol_for(own_err):
        return TOL[dt] if dt == np.float64 else max(TOL[dt], 4 * own_err)

    def sum_err(g, w, s):
        g, w = float(g), float(w)
        if g == w:
            return 0.0
        return abs(g - w) / s if np.isfinite(g) and np.isfinite(w) else float("inf")

    for name, g, w, x, s in [("offset_sum", got[0], want[0], exact[0], so),
                             ("pen_sum", got[1], want[1], exact[1], sp),
                             ("loss offset_sum", got_fwd[0], want_fwd[0], exact[0], so),
                             ("loss pen_sum", got_fwd[1], want_fwd[1], exact[1], sp)]:
        g = float(fast.to_host(g))
        chk(name, np.asarray(g), np.asarray(float(w)), err=sum_err(g, w, s),
            tol=tol_for(sum_err(w, x, s)))
    got_dy = fast.to_host(got[2])
    bounds = [0, 3] + [3 + (k + 1) * M for k in range(6)]
    for k, name in enumerate(MDN_BLOCKS):
        cols = slice(bounds[k], bounds[k + 1])
        chk(f"dy[{name}]", got_dy[:, cols], want[2][:, cols],
            tol=tol_for(rel_err(want[2][:, cols], exact[2][:, cols])))
    chk.done()


@sweep
@pytest.mark.parametrize("N,M", [(1, 1), (1, 20), (7, 3), (300, 20), (2500, 20), (33, 5)])
@pytest.mark.parametrize("kind", ["typical", "extreme"])
def test_mdn_loss_and_grad_grid(fast, dtype, N, M, kind):
    rng = _rng(6, N, M, kind == "extreme")
    y, t = _mdn_case(rng, N, M, dtype, kind)
    check_mdn(fast, y, t, dtype, f"mdn_loss_and_grad[{dtype.__name__},N{N},M{M},{kind}]")


@sweep
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(N=st.integers(1, 40), M=st.integers(1, 8), seed=st.integers(0, 2 ** 31 - 1),
       kind=st.sampled_from(["typical", "extreme"]), scale=st.sampled_from([1.0, 1.0 / 25000]))
def test_mdn_loss_and_grad_random(fast, dtype, N, M, seed, kind, scale):
    y, t = _mdn_case(np.random.default_rng(seed), N, M, dtype, kind)
    check_mdn(fast, y, t, dtype, f"mdn_loss_and_grad[hypothesis,{dtype.__name__}]", scale=scale)


@sweep
@HYP
@given(n=st.integers(1, 40), m=st.integers(1, 7), extreme=st.booleans(),
       seed=st.integers(0, 2**31))
def test_mdn_loss_and_grad_random_wide(fast, dtype, n, m, extreme, seed):
    """Rows with p3 = 1 (padding), rho near +-1, tiny sigma and far targets, float32 included:
    Numba only (on CuPy, the float32 extremes stop short: module docstring)."""
    if not fast.is_numba and dtype is np.float32:
        pytest.skip("CuPy flushes float32 subnormals: its extremes are the narrower ones")
    y, target = _mdn_wide(np.random.default_rng(seed), n, m, dtype, extreme)
    check_mdn(fast, y, target, dtype, f"mdn_loss_and_grad[wide,{dtype.__name__}]",
              scale=1.0 / (3 * n))


@pytest.mark.parametrize("fast", BACKENDS, indirect=True)
def test_mdn_strided_inputs(fast):
    """Non-contiguous y and target (views into bigger arrays) give the same numbers."""
    rng = _rng(7)
    y, t = _mdn_case(rng, 50, 4, np.float64, "typical")
    big_y = np.zeros((50, 2 * y.shape[1]))
    big_y[:, ::2] = y
    got = fast.kernels.mdn_loss_and_grad(fast.to_device(big_y)[:, ::2],
                                         fast.to_device(np.asfortranarray(t)), 0.5)
    want = REF.mdn_loss_and_grad(y, t, 0.5)
    chk = Check(fast, np.float64, "mdn_loss_and_grad[strided]")
    for name, g, w in zip(["offset_sum", "pen_sum", "dy"], got, want):
        chk(name, g, w)
    chk.done()


@pytest.mark.parametrize("fast", BACKENDS, indirect=True)
def test_mdn_checks_shapes(fast):
    y = fast.to_device(np.zeros((4, 10)))
    with pytest.raises(ValueError, match="6M \\+ 3"):
        fast.kernels.mdn_loss_and_grad(y, fast.to_device(np.zeros((4, 5))), 1.0)
    with pytest.raises(ValueError, match="target"):
        fast.kernels.mdn_loss(fast.to_device(np.zeros((4, 9))), fast.to_device(np.zeros((3, 5))))


# --------------------------------------------------------------------------- clip + Adam

def _adam_case(fast, dtype, flat, grad, m, v, step, lr, clip, case):
    """Parameters and both moments bit for bit on Numba (tolerance on CuPy); grad untouched."""
    ref = [flat.copy(), grad.copy(), m.copy(), v.copy()]
    dev = [fast.to_device(a.copy()) for a in (flat, grad, m, v)]
    optim.clip_adam_update(*ref, step, lr, clip)
    fast.kernels.clip_adam_update(*dev, step, lr, clip)
    chk = Check(fast, dtype, case)
    for name, i in [("flat", 0), ("m", 2), ("v", 3)]:
        chk(name, dev[i], ref[i], bitwise=True)
    chk("grad (unchanged)", dev[1], grad, exact=True)
    chk.done()


@sweep
@pytest.mark.parametrize("P", [1, 7, 1000, 300_001])
@pytest.mark.parametrize("step", [1, 10, 5000])
def test_clip_adam_update_grid(fast, dtype, P, step):
    rng = _rng(8, P, step)
    flat = rng.standard_normal(P).astype(dtype)
    grad = (3.0 * rng.standard_normal(P)).astype(dtype)          # many beyond the clip of 1
    m = (0.1 * rng.standard_normal(P)).astype(dtype)
    v = (0.01 * rng.random(P)).astype(dtype)
    if P > 1:
        grad[P // 2] = np.nan                                   # stays NaN (not clipped away)
    _adam_case(fast, dtype, flat, grad, m, v, step, 3e-4, 1.0,
               f"clip_adam_update[{dtype.__name__},P{P},t{step}]")


@sweep
@HYP
@given(p=st.integers(1, 300), step=st.integers(1, 10_000), clip=st.sampled_from([0.5, 1.0, 3.0]),
       seed=st.integers(0, 2**31))
def test_clip_adam_update_random(fast, dtype, p, step, clip, seed):
    rng = np.random.default_rng(seed)
    flat = rng.standard_normal(p).astype(dtype)
    grad = (rng.standard_normal(p) * 3).astype(dtype)
    grad[rng.random(p) < 0.02] = np.nan
    m = (rng.standard_normal(p) * 0.1).astype(dtype)
    v = rng.random(p).astype(dtype) * 0.01
    _adam_case(fast, dtype, flat, grad, m, v, step, 1e-3, clip,
               f"clip_adam_update[random,{dtype.__name__}]")


# --------------------------------------------------------------------------- counter-based noise

@pytest.mark.parametrize("fast", BACKENDS, indirect=True)
@pytest.mark.parametrize("key", [0, 7, 2 ** 63 + 11])
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (250, 100, 512)])
def test_hash_uniform_bit_identical(fast, key, shape):
    """The counter-based uniforms (noise.hash_uniform) are the reference's bits everywhere."""
    want = np.empty(shape, np.float32)
    noise.hash_uniform(key, want)
    got = fast.to_device(np.full(shape, np.nan, np.float32))
    fast.kernels.hash_uniform(key, got)
    chk = Check(fast, np.float32, f"hash_uniform[{key},{shape}]")
    chk("u", got, want, exact=True)
    chk.done()


def test_the_metric_catches_a_wrong_kernel():
    """The Numba contract is not vacuous: an LSTM forward off by 1e-9 in float64 fails it."""
    rng = np.random.default_rng(0)
    B, H = 3, 4
    args = [rng.standard_normal((B, 4 * H)), rng.standard_normal((B, 4 * H)),
            rng.standard_normal((B, H)), rng.standard_normal((B, H)), None, None]
    outs = [np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))]
    REF.lstm_cell_forward(*args, *outs)
    assert elementwise_failure("h", outs[1], outs[1], np.float64) is None
    assert elementwise_failure("h", outs[1] * (1 + 1e-9), outs[1], np.float64) is not None
