"""The CuPy kernel set against the NumPy reference, kernel by kernel and for the whole model.

Runs only with CuPy and a CUDA device (marker ``gpu``; ``pytest -m gpu tests/test_cupy_kernels.py``);
elsewhere the whole module is skipped with the reason.

Metric (per output tensor, by name): the normwise relative error

    err = max |got - want| / max |want|      (finite entries; NaN/inf must sit at the same places)

with ``want`` the reference function run on NumPy copies of the same inputs in the same dtype.
Tolerances: 1e-10 in float64, 1e-5 in float32 (the kernels evaluate the reference expressions in
the same order; what differs is the last bit of exp/tanh/log between the CUDA math library and
NumPy's, summation order, and CuPy's flush-to-zero of float32 subnormals, which a normwise
error is blind to but an elementwise one is not). Loss sums are compared relative to the sum of
the absolute values of their terms; the float32 mixture-density checks allow 4x the float32
reference's own error where the inputs make the function ill-conditioned (see _check_mdn). Whole-model and whole-sequence comparisons also go through
cuBLAS vs the host BLAS (different summation order in every product), so their float32
tolerance is stated separately (SEQ_TOL32, MODEL_TOL32).

Every failure names the kernel, the tensor, the error and the worst entry. With ``-s`` the module
prints a table of every comparison's error at the end (benchmarks/gpu_check.sh shows it).
"""
from __future__ import annotations

import numpy as np
import pytest

cupy = pytest.importorskip(
    "cupy", reason='CuPy is not installed (pip install -e ".[cuda12]" or ".[cuda13]")')


def _device_count() -> int:
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, or a driver too old for this CuPy
        return 0


if _device_count() < 1:
    pytest.skip("no usable CUDA device for the cupy backend tests", allow_module_level=True)

pytestmark = pytest.mark.gpu

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from minisketch.kernels import cupy_gpu, reference  # noqa: E402
from minisketch.layers import hyper_lstm, layer_norm_lstm, lstm, mdn  # noqa: E402

TOL = {np.float64: 1e-10, np.float32: 1e-5}
SEQ_TOL32 = 1e-4        # whole sequences in float32: cuBLAS vs host BLAS products as well
MODEL_TOL64 = 1e-9      # whole loss_and_grad in float64, every gradient tensor
MODEL_TOL32 = 2e-3      # whole loss_and_grad in float32: the flat gradient vector as a whole
DTYPES = (np.float64, np.float32)
REF = reference.kernel_set()
FAST = cupy_gpu.kernel_set()
REPORT: list[tuple[str, str, float, float]] = []   # (case, tensor, err, tol) for the summary


def to_dev(a):
    return None if a is None else cupy.asarray(a)


def to_host(a):
    return None if a is None else cupy.asnumpy(a)


@pytest.fixture(scope="module", autouse=True)
def _compile_and_report():
    cupy_gpu.compile_all()     # compile once, up front (a compile error fails here, clearly)
    yield
    if REPORT:
        print("\n\nCuPy kernels vs NumPy reference (normwise relative error, worst per tensor)")
        def badness(err, tol):
            return err / tol if tol > 0 else (float("inf") if err > 0 else 0.0)

        worst = {}
        for case, name, err, tol in REPORT:
            key = (case.split("[")[0], name)
            if key not in worst or badness(err, tol) > badness(*worst[key]):
                worst[key] = (err, tol)
        for (case, name), (err, tol) in sorted(worst.items()):
            flag = "ok " if err <= tol else "BAD"
            print(f"  {flag} {case:34s} {name:22s} err {err:9.2e}  tol {tol:7.0e}")


# ---------------------------------------------------------------------------------------------
# comparison helpers

def rel_err(got, want) -> float:
    """Normwise relative error (module docstring); inf if NaN/inf patterns or shapes differ."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
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


class Checker:
    """Collects (tensor, err) for one case; ``done`` asserts all within tolerance."""

    def __init__(self, case: str, tol: float):
        self.case, self.tol, self.fails = case, tol, []

    def __call__(self, name, got, want, err=None, tol=None):
        got, want = to_host(got), to_host(want)
        tol = self.tol if tol is None else tol
        e = rel_err(got, want) if err is None else err
        REPORT.append((self.case, name, e, tol))
        if not e <= tol:
            self.fails.append(f"{name}: err {e:.3e} > tol {tol:.0e}; {worst_entry(got, want)}")

    def done(self):
        assert not self.fails, f"{self.case}:\n  " + "\n  ".join(self.fails)


def run_kernel(name, args, outputs, dt, case=None, tol=None):
    """Run kernel ``name`` of the reference set on NumPy copies of ``args`` and of the CuPy set
    on device copies; compare the outputs named in ``outputs`` ({name: argument index}) and any
    returned values. Outputs start as NaN on both sides, so an unwritten entry fails."""
    ref_args = [None if a is None else np.array(a) for a in args]
    dev_args = [to_dev(a) for a in args]
    for i in outputs.values():
        ref_args[i][...] = np.nan
        dev_args[i][...] = np.nan
    want = getattr(REF, name)(*ref_args)
    got = getattr(FAST, name)(*dev_args)
    chk = Checker(case or name, TOL[dt] if tol is None else tol)
    for out_name, i in outputs.items():
        chk(out_name, dev_args[i], ref_args[i])
    return chk, got, want, dev_args, ref_args


def _rng(*key):
    return np.random.default_rng(list(key))


def _keep(rng, shape, dt, keep_prob=0.9):
    return ((rng.random(shape) < keep_prob) / keep_prob).astype(dt)


def _mask(rng, B, dt):
    m = (rng.random(B) < 0.7).astype(dt)
    if B > 1:
        m[0], m[-1] = 1, 0            # both kinds present
    return m


# sizes (B, H): batch 1, odd sizes, H above and below the 256 threads of a block, the real ones
SHAPES = [(1, 1), (1, 7), (2, 3), (3, 32), (5, 33), (4, 257), (7, 300), (100, 512)]
VARIANTS = ["plain", "keep", "mask", "keep+mask"]


# ---------------------------------------------------------------------------------------------
# LSTM cell

def _lstm_inputs(rng, B, H, dt, scale, variant):
    xw = (scale * rng.standard_normal((B, 4 * H))).astype(dt)
    hh = (scale * rng.standard_normal((B, 4 * H))).astype(dt)
    c_prev = (scale * rng.standard_normal((B, H))).astype(dt)
    h_prev = rng.uniform(-1, 1, (B, H)).astype(dt)
    keep = _keep(rng, (B, H), dt) if "keep" in variant else None
    mask = _mask(rng, B, dt) if "mask" in variant else None
    return xw, hh, c_prev, h_prev, keep, mask


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("B,H", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_lstm_cell(dt, B, H, variant, scale):
    rng = _rng(1, B, H, VARIANTS.index(variant), int(scale))
    xw, hh, c_prev, h_prev, keep, mask = _lstm_inputs(rng, B, H, dt, scale, variant)
    case = f"lstm_cell_forward[{dt.__name__},{B}x{H},{variant},x{scale:g}]"
    chk, *_ , ref_args = run_kernel(
        "lstm_cell_forward",
        [xw, hh, c_prev, h_prev, keep, mask, np.empty((B, H), dt), np.empty((B, H), dt),
         np.empty((B, 5 * H), dt)],
        {"c_out": 6, "h_out": 7, "act_out": 8}, dt, case)
    chk.done()
    act = ref_args[8]
    dh = rng.standard_normal((B, H)).astype(dt)
    dc = rng.standard_normal((B, H)).astype(dt)
    case = f"lstm_cell_backward[{dt.__name__},{B}x{H},{variant},x{scale:g}]"
    chk, *_ = run_kernel(
        "lstm_cell_backward",
        [dh, dc, c_prev, act, keep, mask, np.empty((B, 4 * H), dt), np.empty((B, H), dt),
         np.empty((B, H), dt)],
        {"da_out": 6, "dc_prev_out": 7, "dh_pass_out": 8}, dt, case)
    chk.done()


def test_lstm_cell_bool_mask_and_strided_arguments():
    """A bool mask (converted to the dtype) and non-contiguous views (which go to the reference
    code) give the reference numbers."""
    dt, B, H = np.float64, 4, 9
    rng = _rng(2)
    xw, hh, c_prev, h_prev, keep, _ = _lstm_inputs(rng, B, H, dt, 1.0, "keep")
    mask = np.array([True, False, True, False])
    chk, *_ = run_kernel(
        "lstm_cell_forward",
        [xw, hh, c_prev, h_prev, keep, mask, np.empty((B, H), dt), np.empty((B, H), dt),
         np.empty((B, 5 * H), dt)], {"c_out": 6, "h_out": 7, "act_out": 8}, dt,
        "lstm_cell_forward[bool mask]")
    chk.done()
    state = rng.standard_normal((B, 2 * H))          # c_prev, h_prev as column views of it
    outs_w = [np.full((B, H), np.nan), np.full((B, H), np.nan), np.full((B, 5 * H), np.nan)]
    REF.lstm_cell_forward(xw, hh, state[:, :H], state[:, H:], keep, None, *outs_w)
    dstate = to_dev(state)
    big = cupy.full((B, 10 * H), np.nan)
    outs_g = [cupy.full((B, H), np.nan), big[:, ::10], cupy.full((B, 5 * H), np.nan)]
    FAST.lstm_cell_forward(to_dev(xw), to_dev(hh), dstate[:, :H], dstate[:, H:], to_dev(keep),
                           None, *outs_g)
    chk = Checker("lstm_cell_forward[strided views]", TOL[dt])
    for name, g, w in zip(["c_out", "h_out", "act_out"], outs_g, outs_w):
        chk(name, g, w)
    chk.done()


def _lstm_params(rng, D, H, dt):
    p = lstm.lstm_init(rng, D, H, dt)
    p["b"] = (0.3 * rng.standard_normal(4 * H)).astype(dt)
    return p


# ---------------------------------------------------------------------------------------------
# Layer-norm LSTM cell (also the hyper cell and the HyperLSTM's main cell)

def _ln_params(rng, H, dt):
    return ((1 + 0.3 * rng.standard_normal(4 * H)).astype(dt),
            (0.3 * rng.standard_normal(4 * H)).astype(dt),
            (1 + 0.3 * rng.standard_normal(H)).astype(dt),
            (0.3 * rng.standard_normal(H)).astype(dt))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("B,H", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_ln_lstm_cell(dt, B, H, variant, scale):
    rng = _rng(3, B, H, VARIANTS.index(variant), int(scale))
    a, _, c_prev, h_prev, keep, mask = _lstm_inputs(rng, B, H, dt, scale, variant)
    a = a + (scale * rng.standard_normal(4 * H)).astype(dt)     # per-unit offsets: mean != 0
    gamma, beta, gamma_c, beta_c = _ln_params(rng, H, dt)
    case = f"ln_lstm_cell_forward[{dt.__name__},{B}x{H},{variant},x{scale:g}]"
    chk, *_, ref_args = run_kernel(
        "ln_lstm_cell_forward",
        [a, c_prev, h_prev, keep, mask, gamma, beta, gamma_c, beta_c,
         np.empty((B, H), dt), np.empty((B, H), dt), np.empty((B, 5 * H), dt),
         np.empty((B, 5 * H), dt), np.empty((B, 5), dt)],
        {"c_out": 9, "h_out": 10, "act_out": 11, "norm_out": 12, "rstd_out": 13}, dt, case)
    chk.done()
    act, norm, rstd = ref_args[11], ref_args[12], ref_args[13]
    dh = rng.standard_normal((B, H)).astype(dt)
    dc = rng.standard_normal((B, H)).astype(dt)
    case = f"ln_lstm_cell_backward[{dt.__name__},{B}x{H},{variant},x{scale:g}]"
    chk, *_ = run_kernel(
        "ln_lstm_cell_backward",
        [dh, dc, c_prev, keep, mask, gamma, gamma_c, act, norm, rstd,
         np.empty((B, 4 * H), dt), np.empty((B, 5 * H), dt), np.empty((B, H), dt),
         np.empty((B, H), dt)],
        {"da_out": 10, "dy_out": 11, "dc_prev_out": 12, "dh_pass_out": 13}, dt, case)
    chk.done()


def test_ln_lstm_cell_constant_blocks():
    """Gate blocks with zero variance (every unit equal): LN gives 0 and rstd = 1/sqrt(1e-3)."""
    for dt in DTYPES:
        B, H = 3, 40
        rng = _rng(4)
        a = np.repeat(rng.standard_normal((B, 4, 1)), H, axis=2).reshape(B, 4 * H).astype(dt)
        c_prev = np.zeros((B, H), dt)
        h_prev = np.zeros((B, H), dt)
        gamma, beta, gamma_c, beta_c = _ln_params(rng, H, dt)
        chk, *_ = run_kernel(
            "ln_lstm_cell_forward",
            [a, c_prev, h_prev, None, None, gamma, beta, gamma_c, beta_c,
             np.empty((B, H), dt), np.empty((B, H), dt), np.empty((B, 5 * H), dt),
             np.empty((B, 5 * H), dt), np.empty((B, 5), dt)],
            {"c_out": 9, "h_out": 10, "act_out": 11, "norm_out": 12, "rstd_out": 13}, dt,
            f"ln_lstm_cell_forward[{dt.__name__},constant blocks]")
        chk.done()


# ---------------------------------------------------------------------------------------------
# HyperLSTM modulation

@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("B,H", SHAPES)
def test_hyper_modulate(dt, B, H):
    rng = _rng(5, B, H)
    xw = rng.standard_normal((B, 4 * H)).astype(dt)
    hh = rng.standard_normal((B, 4 * H)).astype(dt)
    alpha = rng.standard_normal((8, B, H)).astype(dt)
    beta = rng.standard_normal((4, B, H)).astype(dt)
    b = rng.standard_normal(4 * H).astype(dt)
    chk, *_ = run_kernel("hyper_modulate_forward", [xw, hh, alpha, beta, b,
                                                    np.empty((B, 4 * H), dt)],
                         {"a_out": 5}, dt, f"hyper_modulate_forward[{dt.__name__},{B}x{H}]")
    chk.done()
    da = rng.standard_normal((B, 4 * H)).astype(dt)
    chk, *_ = run_kernel("hyper_modulate_backward",
                         [da, xw, hh, alpha, np.empty((B, 4 * H), dt), np.empty((B, 4 * H), dt),
                          np.empty((8, B, H), dt)],
                         {"dxw_out": 4, "dhh_out": 5, "dalpha_out": 6}, dt,
                         f"hyper_modulate_backward[{dt.__name__},{B}x{H}]")
    chk.done()


# ---------------------------------------------------------------------------------------------
# Mixture density loss

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
        # float32 extremes stop short of where a subnormal responsibility gamma (flushed to 0 by
        # CuPy's -ftz=true, kept by NumPy) meets a factor as large as cosh(50) = 2.6e21 in the
        # gradient: there the two legitimately differ by far more than rounding.
        y[:, 0:3] = rng.choice([-60.0, 0.0, 60.0], (N, 3))
        y[:, 3 + 3 * M:3 + 5 * M] = rng.choice([-8.0, -5.0, 0.0, 3.0], (N, 2 * M))
        y[:, 3 + 5 * M:] = rng.choice([-8.0, -3.0, 0.0, 3.0, 8.0], (N, M))
        t[:, 0:2] = rng.choice([-30.0, 0.0, 1e-3, 30.0], (N, 2))
    pen = rng.choice(3, N, p=[0.6, 0.2, 0.2])
    t[np.arange(N), 2 + pen] = 1.0
    t[pen == 2, 0:2] = 0.0
    return y.astype(dt), t.astype(dt)


def _mdn_term_scale(y, t):
    """Sum of |row terms| of offset_sum and of pen_sum (float64): the scale of each sum's
    error."""
    y64, t64 = y.astype(np.float64), t.astype(np.float64)
    with np.errstate(all="ignore"):
        ell, _ = mdn._offset_terms(y64, t64)
        pen, _ = mdn._pen_terms(y64, t64)
    return (float(np.sum(np.abs(ell * (1 - t64[:, 4])))) or 1.0,
            float(np.sum(np.abs(pen))) or 1.0)


def _check_mdn(y, t, dt, case, scale=0.125):
    """Both sums and every block of dy, mdn_loss too.

    In float32 a tensor's tolerance is max(1e-5, 4 x the float32 reference's own error against
    the float64 reference on the same inputs): extreme inputs make the function ill-conditioned
    (u - rho v cancels for rho near +-1 and is then multiplied by cosh(r); responsibilities are
    exp of O(100) numbers), so a last-bit difference in exp or tanh legitimately moves the result
    by as much as the reference's own rounding does. In float64 the tolerance is 1e-10."""
    M = (y.shape[1] - 3) // 6
    with np.errstate(all="ignore"):
        want = REF.mdn_loss_and_grad(y.copy(), t.copy(), scale)
        want_eo, want_ep = REF.mdn_loss(y.copy(), t.copy())
        exact = REF.mdn_loss_and_grad(y.astype(np.float64), t.astype(np.float64), scale)
    want_o, want_p, want_dy = want
    got_o, got_p, got_dy = FAST.mdn_loss_and_grad(to_dev(y), to_dev(t), scale)
    got_eo, got_ep = FAST.mdn_loss(to_dev(y), to_dev(t))
    so, sp = _mdn_term_scale(y, t)
    chk = Checker(case, TOL[dt])

    def tol_for(own_err):
        return TOL[dt] if dt == np.float64 else max(TOL[dt], 4 * own_err)

    def sum_err(g, w, s):
        g, w = float(g), float(w)
        if g == w:
            return 0.0
        return abs(g - w) / s if np.isfinite(g) and np.isfinite(w) else float("inf")

    for name, g, w, x, s in [("offset_sum", got_o, want_o, exact[0], so),
                             ("pen_sum", got_p, want_p, exact[1], sp),
                             ("loss offset_sum", got_eo, want_eo, exact[0], so),
                             ("loss pen_sum", got_ep, want_ep, exact[1], sp)]:
        g = float(to_host(g))
        chk(name, np.asarray(g), np.asarray(float(w)), err=sum_err(g, w, s),
            tol=tol_for(sum_err(w, x, s)))
    assert got_o.shape == () and got_p.shape == () and got_dy.dtype == dt
    got_dy = to_host(got_dy)
    bounds = [0, 3] + [3 + (k + 1) * M for k in range(6)]
    for k, name in enumerate(MDN_BLOCKS):
        cols = slice(bounds[k], bounds[k + 1])
        chk(f"dy[{name}]", got_dy[:, cols], want_dy[:, cols],
            tol=tol_for(rel_err(want_dy[:, cols], exact[2][:, cols])))
    chk.done()


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("N,M", [(1, 1), (1, 20), (7, 3), (300, 20), (2500, 20), (33, 5)])
@pytest.mark.parametrize("kind", ["typical", "extreme"])
def test_mdn_loss_and_grad(dt, N, M, kind):
    rng = _rng(6, N, M, kind == "extreme")
    y, t = _mdn_case(rng, N, M, dt, kind)
    _check_mdn(y, t, dt, f"mdn_loss_and_grad[{dt.__name__},N{N},M{M},{kind}]")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 40), M=st.integers(1, 8), seed=st.integers(0, 2 ** 31 - 1),
       dt=st.sampled_from(DTYPES), kind=st.sampled_from(["typical", "extreme"]),
       scale=st.sampled_from([1.0, 1.0 / 25000]))
def test_mdn_hypothesis(N, M, seed, dt, kind, scale):
    y, t = _mdn_case(np.random.default_rng(seed), N, M, dt, kind)
    _check_mdn(y, t, dt, f"mdn_loss_and_grad[hypothesis,{dt.__name__}]", scale=scale)


def test_mdn_strided_inputs():
    """Non-contiguous y and target (views into bigger arrays) take the same numbers."""
    rng = _rng(7)
    y, t = _mdn_case(rng, 50, 4, np.float64, "typical")
    big_y = np.zeros((50, 2 * y.shape[1]))
    big_y[:, ::2] = y
    got = FAST.mdn_loss_and_grad(to_dev(big_y)[:, ::2], to_dev(np.asfortranarray(t)), 0.5)
    want = REF.mdn_loss_and_grad(y, t, 0.5)
    chk = Checker("mdn_loss_and_grad[strided]", TOL[np.float64])
    for name, g, w in zip(["offset_sum", "pen_sum", "dy"], got, want):
        chk(name, g, w)
    chk.done()


# ---------------------------------------------------------------------------------------------
# Clip + Adam

@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("P", [1, 7, 1000, 300_001])
@pytest.mark.parametrize("step", [1, 10, 5000])
def test_clip_adam_update(dt, P, step):
    from minisketch import optim
    rng = _rng(8, P, step)
    flat = rng.standard_normal(P).astype(dt)
    grad = (3.0 * rng.standard_normal(P)).astype(dt)          # many beyond the clip of 1
    m = (0.1 * rng.standard_normal(P)).astype(dt)
    v = (0.01 * rng.random(P)).astype(dt)
    if P > 1:
        grad[P // 2] = np.nan                                   # stays NaN (not clipped away)
    ref = [flat.copy(), grad.copy(), m.copy(), v.copy()]
    dev = [to_dev(a) for a in (flat, grad, m, v)]
    optim.clip_adam_update(*ref, step, 3e-4, 1.0)
    FAST.clip_adam_update(*dev, step, 3e-4, 1.0)
    chk = Checker(f"clip_adam_update[{dt.__name__},P{P},t{step}]", TOL[dt])
    for name, i in [("flat", 0), ("m", 2), ("v", 3)]:
        chk(name, dev[i], ref[i])
    chk("grad (unchanged)", dev[1], grad, tol=0.0)
    chk.done()


def test_kernel_set_has_reference_names():
    """Same names as the reference set (plus clip_adam_update), each replaced by a CuPy kernel
    where one exists."""
    ref_names = set(vars(REF))
    assert ref_names <= set(vars(FAST))
    assert set(vars(FAST)) - ref_names <= {"clip_adam_update"}
    for name in cupy_gpu.fused_names():
        assert getattr(FAST, name) is getattr(cupy_gpu, name)


# ---------------------------------------------------------------------------------------------
# Whole sequences: cell forward + backward with the CuPy kernels vs the reference on the host

CELL_MODULES = {
    "lstm": (lstm, "lstm", {}),
    "layer_norm": (layer_norm_lstm, "ln_lstm", {}),
    "hyper": (hyper_lstm, "hyper_lstm", {"hyper_num_units": 24, "hyper_embedding_size": 4}),
}


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("cell", list(CELL_MODULES))
@pytest.mark.parametrize("T,B,D,H", [(1, 1, 3, 5), (9, 6, 7, 33), (20, 100, 133, 512)])
def test_cell_sequence(dt, cell, T, B, D, H):
    mod, prefix, opts = CELL_MODULES[cell]
    rng = _rng(9, T, B, H, len(cell))
    p = getattr(mod, f"{prefix}_init")(rng, D, H, np.float64, **opts)
    for k in p:
        p[k] = (p[k] + 0.1 * rng.standard_normal(p[k].shape)).astype(dt)
    S = getattr(mod, f"{prefix}_state_size")(H, **opts)
    x = rng.standard_normal((T, B, D)).astype(dt)
    state0 = (0.5 * rng.standard_normal((B, S))).astype(dt)
    keep = _keep(rng, (T, B, H), dt)
    lengths = rng.integers(0, T + 1, B)
    lengths[0] = T
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(dt)
    dhs = rng.standard_normal((T, B, H)).astype(dt)
    dsT = rng.standard_normal((B, S)).astype(dt)
    fwd, bwd = getattr(mod, f"{prefix}_forward"), getattr(mod, f"{prefix}_backward")
    hs_w, sT_w, cache_w = fwd(x, state0, p, keep=keep, mask=mask, kernels=REF)
    dx_w, ds0_w, g_w = bwd(dhs, dsT, cache_w)
    pd = {k: to_dev(v) for k, v in p.items()}
    hs_g, sT_g, cache_g = fwd(to_dev(x), to_dev(state0), pd, keep=to_dev(keep),
                              mask=to_dev(mask), kernels=FAST)
    dx_g, ds0_g, g_g = bwd(to_dev(dhs), to_dev(dsT), cache_g)
    chk = Checker(f"{prefix}_forward+backward[{dt.__name__},T{T},B{B},H{H}]",
                  TOL[dt] * 10 if dt == np.float64 else SEQ_TOL32)
    chk("hs", hs_g, hs_w)
    chk("state_T", sT_g, sT_w)
    chk("dx", dx_g, dx_w)
    chk("dstate0", ds0_g, ds0_w)
    assert set(g_g) == set(g_w)
    for k in sorted(g_w):
        assert g_g[k].dtype == dt, k
        chk(f"d{k}", g_g[k], g_w[k])
    chk.done()


@pytest.mark.parametrize("dt", DTYPES)
def test_hyper_backward_per_step_sums_on_the_gpu(dt):
    # per_step=True (the host's default: parameter sums a step at a time into reused buffers)
    # also runs on CuPy, whose einsum has no out=, and gives the host's numbers
    opts = CELL_MODULES["hyper"][2]
    T, B, D, H = 9, 6, 7, 33
    rng = _rng(11, T, B, H)
    p = hyper_lstm.hyper_lstm_init(rng, D, H, np.float64, **opts)
    for k in p:
        p[k] = (p[k] + 0.1 * rng.standard_normal(p[k].shape)).astype(dt)
    S = hyper_lstm.hyper_lstm_state_size(H, **opts)
    x = rng.standard_normal((T, B, D)).astype(dt)
    state0 = (0.5 * rng.standard_normal((B, S))).astype(dt)
    dhs = rng.standard_normal((T, B, H)).astype(dt)
    _, _, cache_w = hyper_lstm.hyper_lstm_forward(x, state0, p, kernels=REF)
    _, _, g_w = hyper_lstm.hyper_lstm_backward(dhs, None, cache_w, per_step=True)
    pd = {k: to_dev(v) for k, v in p.items()}
    _, _, cache_g = hyper_lstm.hyper_lstm_forward(to_dev(x), to_dev(state0), pd, kernels=FAST)
    _, _, g_g = hyper_lstm.hyper_lstm_backward(to_dev(dhs), None, cache_g, per_step=True)
    chk = Checker(f"hyper_lstm_backward(per_step=True)[{dt.__name__}]",
                  TOL[dt] * 10 if dt == np.float64 else SEQ_TOL32)
    for k in sorted(g_w):
        chk(f"d{k}", g_g[k], g_w[k])
    chk.done()


# ---------------------------------------------------------------------------------------------
# The whole model: loss_and_grad on CuPy vs NumPy (same seed and step: same init, same noise)

def _sketches(rng, n, max_len):
    out = []
    for i in range(n):
        L = max_len if i == 0 else int(rng.integers(1, max_len + 1))
        s = np.zeros((L, 3))
        s[:, :2] = np.round(rng.normal(0, 20, (L, 2)))
        s[:, 2] = rng.random(L) < 0.15
        s[-1, 2] = 1
        out.append(s)
    return out


def _model_pair(dec, dt, hp_kw):
    import minisketch as ms
    hp = ms.HParams(dec_model=dec, **hp_kw)
    host = ms.SketchRNN(hp, backend="numpy", dtype=dt, seed=3)
    gpu = ms.SketchRNN(hp, backend="cupy", dtype=dt, seed=3, noise="host")  # same noise stream
    return hp, host, gpu


def _batch(hp, n, max_len, seed):
    import minisketch as ms
    return ms.make_batch(_sketches(np.random.default_rng(seed), n, max_len), max_len=max_len,
                         scale_factor=20.0)


SMALL = dict(enc_rnn_size=24, dec_rnn_size=40, z_size=8, num_mixture=3, hyper_num_units=16,
             hyper_embedding_size=4)


@pytest.mark.parametrize("key", [0, 7, 2 ** 63 + 11])
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (250, 100, 512)])
def test_hash_uniform_bit_identical(key, shape):
    """The counter-based uniforms (noise.hash_uniform) are the same bits on the GPU."""
    from minisketch import noise
    want = np.empty(shape, np.float32)
    noise.hash_uniform(key, want)
    got = cupy.empty(shape, cupy.float32)
    cupy_gpu.hash_uniform(key, got)
    np.testing.assert_array_equal(cupy.asnumpy(got), want)


@pytest.mark.parametrize("dec", ["lstm", "hyper"])
def test_model_device_noise_matches_numpy_device_noise(dec):
    """noise="device" is the same stream on CuPy and NumPy: same dropout masks exactly, eps to
    rounding (Box-Muller's log/cos), so losses and gradients agree to float64 rounding."""
    import minisketch as ms
    hp = ms.HParams(dec_model=dec, enc_model=dec, **SMALL)
    host = ms.SketchRNN(hp, backend="numpy", dtype="float64", seed=3, noise="device")
    gpu = ms.SketchRNN(hp, backend="cupy", dtype="float64", seed=3)
    assert gpu.noise == "device"
    batch = _batch(hp, 6, 17, seed=13)
    lw, _ = host.loss_and_grad(batch, step=5)
    flat_w = np.array(host.flat_grad)
    lg, _ = gpu.loss_and_grad(batch, step=5)
    chk = Checker(f"model[{dec},noise=device,float64]", 1e-9)
    for k in sorted(lw):
        chk(f"loss {k}", np.asarray(float(lg[k])), np.asarray(float(lw[k])))
    chk("flat_grad", gpu.flat_grad, flat_w)
    chk.done()


@pytest.mark.parametrize("dec", ["lstm", "layer_norm", "hyper"])
@pytest.mark.parametrize("conditional", [True, False])
def test_model_loss_and_grad_float64(dec, conditional):
    """Every loss and every gradient tensor, by name, to MODEL_TOL64 (dropout on, step 7)."""
    hp, host, gpu = _model_pair(dec, "float64", dict(SMALL, conditional=conditional,
                                                     enc_model=dec))
    batch = _batch(hp, 6, 17, seed=11)
    lw, gw = host.loss_and_grad(batch, step=7)
    gw = {k: np.array(v) for k, v in gw.items()}
    lg, gg = gpu.loss_and_grad(batch, step=7)
    chk = Checker(f"model[{dec},cond={conditional},float64]", MODEL_TOL64)
    for k in sorted(lw):
        chk(f"loss {k}", np.asarray(float(lg[k])), np.asarray(float(lw[k])))
    for k in host.param_names:
        chk(k, gg[k], gw[k])
    chk.done()


@pytest.mark.parametrize("dec", ["lstm", "layer_norm", "hyper"])
def test_model_loss_and_grad_float32_reference_sizes(dec):
    """Reference widths (encoder 256, decoder 512, N_z 128, M 20) in float32, a 32 x 60 batch:
    losses to 1e-4 relative, the flat gradient to MODEL_TOL32 normwise (per-tensor errors are in
    the report)."""
    hp, host, gpu = _model_pair(dec, "float32", {})
    batch = _batch(hp, 32, 60, seed=12)
    lw, _ = host.loss_and_grad(batch, step=100)
    flat_w = np.array(host.flat_grad)
    lg, _ = gpu.loss_and_grad(batch, step=100)
    chk = Checker(f"model[{dec},reference sizes,float32]", MODEL_TOL32)
    for k in sorted(lw):
        chk(f"loss {k}", np.asarray(float(lg[k])), np.asarray(float(lw[k])), tol=1e-4)
    flat_g = to_host(gpu.flat_grad)
    err = float(np.linalg.norm(flat_g.astype(np.float64) - flat_w)
                / max(np.linalg.norm(flat_w.astype(np.float64)), 1e-30))
    chk("flat_grad (2-norm)", flat_g, flat_w, err=err)
    for k in host.param_names:     # reported, not asserted: see the docstring
        got, want = to_host(gpu.grads[k]), np.asarray(host.grads[k])
        REPORT.append((chk.case, f"({k})", rel_err(got, want), MODEL_TOL32))
    chk.done()
