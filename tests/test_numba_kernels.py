"""The Numba kernel set against the reference step functions (the oracle), and the whole model
on backend "numba" against backend "numpy".

Metric (unless a test says "bit for bit"): for each output tensor, every element must satisfy
|got - ref| <= tol * (|ref| + max|ref|), i.e. errors relative to the element, floored at
the tensor's scale; tol = 1e-10 in float64 and 1e-5 in float32. In float32 an element may
instead be as close to the float64 evaluation of the reference (same float32 inputs, computed in
float64) as the float32 reference is, within a factor 2: where the float32 reference is itself
off by more than 1e-5 (ill-conditioned inputs, e.g. a layer-norm block spread 1e-3 around 3,
whose mean the reference sums in float32 and the kernel in float64) agreement to 1e-5 is not a
meaningful demand, but accuracy no worse than the reference is. Pure-arithmetic kernels (LSTM
backward, HyperLSTM modulation, clip + Adam) do the reference's operations in its order and must
match bit for bit. On failure the message names the tensor, the worst index and the values.

The parallel path (opt-in, MINISKETCH_NUMBA_PARALLEL=1) is switched on by the tests that need
it. Inputs come from hypothesis: batch 1 and odd sizes (not multiples of the 8-wide vector loops),
pre-activations from tiny to saturating (|a| up to 100, exact zeros), dropout and padding masks
on or off (rows that are all padding included), rho logits up to +-50, log sigma down to -20,
targets far from every mean, M = 1. Each kernel runs both ways: serial, and split across Numba's
threads (the threshold that picks the parallel path is lowered for those runs). The parallel
runs use float32 only: the drivers just hand rows to the serial row code, which both dtypes
share, and compiling the float64 drivers too would double the cold-cache compile time.

The JIT is warmed once per session (module fixture); Numba caches the machine code
(``cache=True``), so later sessions only load it.
"""
from __future__ import annotations

import inspect

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from minisketch.backend import get_backend
from minisketch.hparams import HParams
from minisketch.kernels import jit, numba_cpu, numerics, reference
from minisketch.layers.lstm import sigmoid as ref_sigmoid
from minisketch.model import SketchRNN
from minisketch.optim import clip_adam_update as ref_clip_adam_update
from minisketch.strokes import make_batch

TOL = {np.float64: 1e-10, np.float32: 1e-5}
DTYPES = (np.float64, np.float32)
REF = reference.kernel_set()
NB = numba_cpu.kernel_set()
HYP = settings(deadline=None, max_examples=25,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def warm_jit():
    """Compile (or load from the cache) every kernel once for this module: serial paths in
    both dtypes, parallel drivers in float32 (the parallel tests run in float32 only)."""
    numba_cpu.warm_up(("float64",), parallel=False)
    numba_cpu.warm_up(("float32",), parallel=True)


@pytest.fixture(params=["serial", "parallel"])
def threading_mode(request, monkeypatch):
    """Run a test serially, then with the parallel path forced on tiny inputs (when Numba has
    more than one thread; otherwise the parallel run is the same as the serial one)."""
    if request.param == "parallel":
        if numba.get_num_threads() < 2:
            pytest.skip("Numba has one thread here: no parallel path to test")
        monkeypatch.setattr(jit, "PARALLEL", True)
        monkeypatch.setattr(jit, "MIN_PARALLEL_WORK", 0)
    else:
        monkeypatch.setattr(jit, "PARALLEL", False)
    return request.param


def assert_close(name, got, ref, dtype, ref64=None):
    """|got - ref| <= tol (|ref| + max|ref|) elementwise; with ``ref64`` (the reference
    evaluated in higher precision on the same inputs: float64 for float32, long double for
    float64), elements that miss that bound may instead satisfy
    |got - ref64| <= 2 |ref - ref64| + tol (|ref64| + max|ref64|)."""
    tol = TOL[dtype]
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(ref)), f"{name}: nan positions differ"
    fin = np.isfinite(ref)
    assert np.array_equal(got[~fin], ref[~fin]), f"{name}: inf entries differ"
    if not fin.any():
        return
    err = np.where(fin, np.abs(got - ref), 0.0)
    scale = np.max(np.abs(ref[fin]))
    bound = tol * (np.abs(np.where(fin, ref, 0.0)) + scale)
    bad = err > bound
    if ref64 is not None and bad.any():
        r64 = np.asarray(ref64, dtype=np.float64)
        own = np.abs(ref - r64)                       # the float32 reference's own error
        s64 = np.max(np.abs(r64[np.isfinite(r64)]))
        bad &= ~(np.abs(got - r64) <= 2.0 * own + tol * (np.abs(r64) + s64))
    if bad.any():
        k = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape)
        extra = "" if ref64 is None else f", float64 reference {np.asarray(ref64)[k]!r}"
        raise AssertionError(f"{name} ({np.dtype(dtype).name}): worst at {k}: got {got[k]!r}, "
                             f"reference {ref[k]!r}{extra}, |diff| {err[k]:.3e} > bound "
                             f"{bound[k]:.3e}; max |diff| / max|ref| = "
                             f"{np.max(err) / max(scale, 1e-300):.3e}")


def assert_same(name, got, ref):
    """Bit for bit (nan equal to nan)."""
    if not np.array_equal(got, ref, equal_nan=True):
        diff = np.argwhere(~((got == ref) | (np.isnan(got) & np.isnan(ref))))
        k = tuple(diff[0])
        raise AssertionError(f"{name}: {len(diff)} entries differ, first at {k}: "
                             f"got {got[k]!r}, reference {ref[k]!r}")


# --------------------------------------------------------------------------- strategies

sizes = st.integers(1, 5), st.integers(1, 37)
dtypes = st.sampled_from(DTYPES)


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


def as64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def run_both(name, args_in, out_shapes, dtype, *, bitwise=()):
    """Call the reference and the Numba kernel ``name`` with the same inputs and fresh output
    buffers (filled with nan, so an unwritten entry shows); compare every output. In float32
    the reference also runs in float64 on the same inputs (for ``assert_close``)."""
    runs = [(REF, args_in, dtype), (NB, args_in, dtype)]
    if dtype is np.float32:
        runs.append((REF, tuple(as64(a) for a in args_in), np.float64))
    outs = []
    for ks, args, dt in runs:
        bufs = [np.full(s, np.nan, dtype=dt) for s in out_shapes]
        getattr(ks, name)(*args, *bufs)
        outs.append(bufs)
    for k in range(len(out_shapes)):
        label = f"{name} output {k}"
        if k in bitwise:
            assert_same(label, outs[1][k], outs[0][k])
        else:
            assert_close(label, outs[1][k], outs[0][k], dtype,
                         outs[2][k] if len(outs) > 2 else None)
    return outs[0]


# --------------------------------------------------------------------------- the kernel set

def test_kernel_set_names_and_signatures():
    """Same names as the reference set plus clip_adam_update; each compiled entry has the
    reference function's exact signature."""
    assert set(vars(REF)) <= set(vars(NB))
    assert set(vars(NB)) - set(vars(REF)) == {"clip_adam_update"}
    for name in numba_cpu.COMPILED:
        ref_fn = REF.__dict__.get(name, ref_clip_adam_update)
        assert inspect.signature(getattr(NB, name)) == inspect.signature(ref_fn), name
    assert get_backend("numba").kernels.lstm_cell_forward is numba_cpu.lstm_cell_forward


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


# --------------------------------------------------------------------------- float64 sums

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


# --------------------------------------------------------------------------- LSTM

@HYP
@given(size=st.tuples(*sizes), dtype=dtypes, scale=st.sampled_from([0.1, 1.0, 6.0]),
       use_keep=st.booleans(), use_mask=st.booleans(), seed=st.integers(0, 2**31))
def test_lstm_cell(threading_mode, size, dtype, scale, use_keep, use_mask, seed):
    """Forward (c, h, saved activations) to tolerance; backward (da, dc_prev, dh_pass) bit for
    bit, from the reference's own saved activations."""
    assume(threading_mode == "serial" or dtype is np.float32)
    B, H = size
    rng = np.random.default_rng(seed)
    keep = keep_mask(rng, B, H, dtype, use_keep)
    mask = pad_mask(rng, B, dtype, use_mask)
    c_prev = preacts(rng, (B, H), dtype, 2.0)
    h_prev = rng.standard_normal((B, H)).astype(dtype)
    args = (preacts(rng, (B, 4 * H), dtype, scale), preacts(rng, (B, 4 * H), dtype, scale),
            c_prev, h_prev, keep, mask)
    c, h, act = run_both("lstm_cell_forward", args, [(B, H), (B, H), (B, 5 * H)], dtype)
    dh = rng.standard_normal((B, H)).astype(dtype)
    dc = rng.standard_normal((B, H)).astype(dtype)
    run_both("lstm_cell_backward", (dh, dc, c_prev, act, keep, mask),
             [(B, 4 * H), (B, H), (B, H)], dtype, bitwise=(0, 1, 2))


# --------------------------------------------------------------------------- layer-norm LSTM

def ln_params(rng, H, dtype):
    return (rng.normal(1.0, 0.5, 4 * H).astype(dtype), rng.normal(0.0, 0.5, 4 * H).astype(dtype),
            rng.normal(1.0, 0.5, H).astype(dtype), rng.normal(0.0, 0.5, H).astype(dtype))


@HYP
@given(size=st.tuples(*sizes), dtype=dtypes, scale=st.sampled_from([1e-3, 1.0, 30.0]),
       offset=st.sampled_from([0.0, 3.0]), use_keep=st.booleans(), use_mask=st.booleans(),
       seed=st.integers(0, 2**31))
def test_ln_lstm_cell(threading_mode, size, dtype, scale, offset, use_keep, use_mask, seed):
    """Layer-norm LSTM step forward (five outputs) and backward (four outputs), including
    blocks of tiny variance (scale 1e-3 against the 1e-3 epsilon) and H = 1 (variance 0)."""
    assume(threading_mode == "serial" or dtype is np.float32)
    B, H = size
    rng = np.random.default_rng(seed)
    keep = keep_mask(rng, B, H, dtype, use_keep)
    mask = pad_mask(rng, B, dtype, use_mask)
    gamma, beta, gamma_c, beta_c = ln_params(rng, H, dtype)
    a = (rng.standard_normal((B, 4 * H)) * scale + offset).astype(dtype)
    c_prev = preacts(rng, (B, H), dtype, 2.0)
    h_prev = rng.standard_normal((B, H)).astype(dtype)
    c, h, act, norm, rstd = run_both(
        "ln_lstm_cell_forward", (a, c_prev, h_prev, keep, mask, gamma, beta, gamma_c, beta_c),
        [(B, H), (B, H), (B, 5 * H), (B, 5 * H), (B, 5)], dtype)
    dh = rng.standard_normal((B, H)).astype(dtype)
    dc = rng.standard_normal((B, H)).astype(dtype)
    run_both("ln_lstm_cell_backward",
             (dh, dc, c_prev, keep, mask, gamma, gamma_c, act, norm, rstd),
             [(B, 4 * H), (B, 5 * H), (B, H), (B, H)], dtype, bitwise=(3,))


# --------------------------------------------------------------------------- HyperLSTM

@HYP
@given(size=st.tuples(*sizes), dtype=dtypes, seed=st.integers(0, 2**31))
def test_hyper_modulate(threading_mode, size, dtype, seed):
    """The hyper modulation forward and backward, bit for bit."""
    assume(threading_mode == "serial" or dtype is np.float32)
    B, H = size
    rng = np.random.default_rng(seed)
    r = lambda *s: (rng.standard_normal(s) * 3).astype(dtype)  # noqa: E731
    xw, hh, alpha, beta, b = r(B, 4 * H), r(B, 4 * H), r(8, B, H), r(4, B, H), r(4 * H)
    run_both("hyper_modulate_forward", (xw, hh, alpha, beta, b), [(B, 4 * H)], dtype,
             bitwise=(0,))
    da = r(B, 4 * H)
    run_both("hyper_modulate_backward", (da, xw, hh, alpha),
             [(B, 4 * H), (B, 4 * H), (8, B, H)], dtype, bitwise=(0, 1, 2))


# --------------------------------------------------------------------------- MDN loss

def mdn_inputs(rng, N, M, dtype, extreme):
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


@HYP
@given(n=st.integers(1, 40), m=st.integers(1, 7), dtype=dtypes, extreme=st.booleans(),
       seed=st.integers(0, 2**31))
def test_mdn_loss_and_grad(threading_mode, n, m, dtype, extreme, seed):
    """Loss sums and the gradient w.r.t. every output, including p3 = 1 (padding) rows, rho
    near +-1, tiny sigma and far targets; the forward-only ``mdn_loss`` gives the same sums."""
    assume(threading_mode == "serial" or dtype is np.float32)
    rng = np.random.default_rng(seed)
    y, target = mdn_inputs(rng, n, m, dtype, extreme)
    scale = 1.0 / (3 * n)
    ref = REF.mdn_loss_and_grad(y, target, scale)
    got = NB.mdn_loss_and_grad(y, target, scale)
    # the reference in higher precision, for elements where the reference's own rounding is the
    # larger error (float32: float64; float64: long double, where it is wider: 1 - softmax near
    # 1 cancels, and the fused kernel, which forms it from the other classes, can be the closer)
    if dtype is np.float32:
        ref64 = REF.mdn_loss_and_grad(as64(y), as64(target), scale)
    elif np.finfo(np.longdouble).eps < np.finfo(np.float64).eps:
        ref64 = REF.mdn_loss_and_grad(y.astype(np.longdouble), target.astype(np.longdouble),
                                      scale)
    else:
        ref64 = (None, None, None)
    for k, label in enumerate(("offset_sum", "pen_sum", "dy")):
        assert np.asarray(got[k]).dtype == dtype, label
        assert_close(f"mdn {label}", got[k], ref[k], dtype, ref64[k])
    fwd = NB.mdn_loss(y, target)
    assert_close("mdn_loss offset_sum", fwd[0], ref[0], dtype, ref64[0])
    assert_close("mdn_loss pen_sum", fwd[1], ref[1], dtype, ref64[1])


def test_mdn_checks_shapes():
    y = np.zeros((4, 10))
    with pytest.raises(ValueError, match="6M \\+ 3"):
        NB.mdn_loss_and_grad(y, np.zeros((4, 5)), 1.0)
    with pytest.raises(ValueError, match="target"):
        NB.mdn_loss(np.zeros((4, 9)), np.zeros((3, 5)))


# --------------------------------------------------------------------------- clip + Adam

@HYP
@given(p=st.integers(1, 300), dtype=dtypes, step=st.integers(1, 10_000),
       clip=st.sampled_from([0.5, 1.0, 3.0]), seed=st.integers(0, 2**31))
def test_clip_adam_update(threading_mode, p, dtype, step, clip, seed):
    """The fused update equals optim.clip_adam_update bit for bit (parameters and both
    moments), including a nan gradient entry, which stays nan."""
    assume(threading_mode == "serial" or dtype is np.float32)
    rng = np.random.default_rng(seed)
    flat = rng.standard_normal(p).astype(dtype)
    grad = (rng.standard_normal(p) * 3).astype(dtype)
    grad[rng.random(p) < 0.02] = np.nan
    m = (rng.standard_normal(p) * 0.1).astype(dtype)
    v = rng.random(p).astype(dtype) * 0.01
    states = [(flat.copy(), m.copy(), v.copy()) for _ in range(2)]
    grad_before = grad.copy()
    ref_clip_adam_update(*states[0][:1], grad, *states[0][1:], step, 1e-3, clip)
    NB.clip_adam_update(*states[1][:1], grad, *states[1][1:], step, 1e-3, clip)
    for label, r, g in zip(("flat", "m", "v"), *states):
        assert_same(f"clip_adam_update {label}", g, r)
    assert_same("grad untouched", grad, grad_before)


def test_large_inputs_take_the_parallel_path_and_match(monkeypatch):
    """With the parallel path switched on, a batch of 100 x 512 (above the default threshold)
    runs split across threads (when there are several) and still equals the reference."""
    monkeypatch.setattr(jit, "PARALLEL", True)
    dtype = np.float32
    rng = np.random.default_rng(1)
    B, H = 100, 512
    assert B * 4 * H >= jit.MIN_PARALLEL_WORK
    args = (preacts(rng, (B, 4 * H), dtype, 2.0), preacts(rng, (B, 4 * H), dtype, 2.0),
            rng.standard_normal((B, H)).astype(dtype), rng.standard_normal((B, H)).astype(dtype),
            keep_mask(rng, B, H, dtype, True), pad_mask(rng, B, dtype, True))
    c, h, act = run_both("lstm_cell_forward", args, [(B, H), (B, H), (B, 5 * H)], dtype)
    run_both("lstm_cell_backward", (act[:, :H].copy(), c, args[2], act, args[4], args[5]),
             [(B, 4 * H), (B, H), (B, H)], dtype, bitwise=(0, 1, 2))


# --------------------------------------------------------------------------- whole model

def model_pair(dec, enc, dtype, seed=0):
    hp = HParams(enc_model=enc, dec_model=dec, enc_rnn_size=5, dec_rnn_size=7, z_size=3,
                 num_mixture=3, hyper_num_units=4, hyper_embedding_size=2, max_seq_len=9,
                 use_recurrent_dropout=True, recurrent_dropout_prob=0.8)
    rng = np.random.default_rng(seed)
    sketches = []
    for L in (9, 3, 5, 1):
        s = np.zeros((L, 3), dtype=np.float32)
        s[:, :2] = 6 * rng.normal(size=(L, 2))
        s[:, 2] = rng.random(L) < 0.3
        sketches.append(s)
    batch = make_batch(sketches, max_len=9, scale_factor=4.0)
    noise = rng.standard_normal(SketchRNN(hp, dtype="float64").num_params) * 0.3
    models = []
    for backend, dt in (("numpy", "float64"), ("numpy", dtype), ("numba", dtype)):
        # the same noise stream on both backends (numba's default is the device stream)
        m = SketchRNN(hp, backend=backend, dtype=dt, seed=1, noise="host")
        m.flat[...] = (m.flat.astype(np.float64) + noise).astype(m.dtype)
        models.append(m)
    return batch, models


@pytest.mark.parametrize("dec", ["lstm", "layer_norm", "hyper"])
@pytest.mark.parametrize("enc", ["lstm", "layer_norm", "hyper"])
def test_whole_model_float64(dec, enc):
    """loss_and_grad on backend numba equals backend numpy in float64 (every loss, every
    gradient tensor, tolerance 1e-10), for every decoder with every encoder, dropout on."""
    batch, (_, ref, nb) = model_pair(dec, enc, "float64")
    assert_same_step(nb, ref, batch, 3)


def assert_same_step(model, ref, batch, step):
    """model.loss_and_grad(batch, step) equals ref's in float64: every loss and every gradient
    tensor (``assert_close``, 1e-10). Returns both loss dicts."""
    lr, _ = ref.loss_and_grad(batch, step)
    lm, _ = model.loss_and_grad(batch, step)
    for k in lr:
        assert_close(f"loss {k}", lm[k], lr[k], np.float64)
    for name in ref.param_names:
        assert_close(f"grad {name}", model.grads[name], ref.grads[name], np.float64)
    return lm, lr


@pytest.mark.parametrize("dec", ["lstm", "layer_norm", "hyper"])
def test_whole_model_float32(dec):
    """float32, reference encoder (LSTM): the losses and every gradient tensor of backend
    numba within 1e-5 of backend numpy, and no farther from the float64 result than the
    float32 numpy result is (times 3), over three seeds."""
    for seed in range(3):
        batch, (m64, ref, nb) = model_pair(dec, "lstm", "float32", seed)
        l64, _ = m64.loss_and_grad(batch, 3)
        lr, _ = ref.loss_and_grad(batch, 3)
        ln, _ = nb.loss_and_grad(batch, 3)
        for k in lr:
            assert_close(f"loss {k}", ln[k], lr[k], np.float32)
        for name in ref.param_names:
            g64 = m64.grads[name].astype(np.float64)
            scale = max(np.max(np.abs(g64)), 1e-30)
            err_ref = np.max(np.abs(ref.grads[name] - g64)) / scale
            err_nb = np.max(np.abs(nb.grads[name] - g64)) / scale
            assert err_nb <= 3 * err_ref + 1e-6, f"{name}: {err_nb:.2e} vs numpy {err_ref:.2e}"
            assert_close(f"grad {name} (seed {seed})", nb.grads[name], ref.grads[name],
                         np.float32)


@pytest.mark.parametrize("dec", ["lstm", "hyper"])
def test_whole_model_default_noise_is_the_device_stream(dec):
    """Backend numba draws its noise from the counter-based device stream by default (its
    compiled hash), so it equals backend numpy with noise="device" (float64, 1e-10), and differs
    from numpy's default host stream."""
    batch, (_, ref_host, _) = model_pair(dec, "lstm", "float64")
    hp, flat = ref_host.hp, ref_host.flat
    nb = SketchRNN(hp, backend="numba", dtype="float64", seed=1)
    ref = SketchRNN(hp, backend="numpy", dtype="float64", seed=1, noise="device")
    assert nb.noise == "device" and ref_host.noise == "host"
    nb.flat[...] = flat
    ref.flat[...] = flat
    ln, _ = assert_same_step(nb, ref, batch, 3)
    lh, _ = ref_host.loss_and_grad(batch, 3)
    assert float(ln["loss"]) != float(lh["loss"])


def test_whole_model_parallel_path_and_determinism(monkeypatch):
    """With the parallel path forced on, the numba model gives the same numbers as serial, and
    two calls with the same step give identical losses and gradients."""
    batch, (_, ref, nb) = model_pair("layer_norm", "lstm", "float32")
    monkeypatch.setattr(jit, "PARALLEL", False)
    ls, _ = nb.loss_and_grad(batch, 5)
    serial = nb.flat_grad.copy()
    monkeypatch.setattr(jit, "PARALLEL", True)
    monkeypatch.setattr(jit, "MIN_PARALLEL_WORK", 0)
    for _ in range(2):
        lp, _ = nb.loss_and_grad(batch, 5)
        assert float(lp["loss"]) == float(ls["loss"])
        assert_same("flat_grad parallel vs serial", nb.flat_grad, serial)
