"""Whole sequences and the whole model on the fast backends against the reference.

Sequences: each cell's sequence forward and backward (``layers/``) run with a fast kernel set
and with the reference set, on every backend: normwise errors, tolerances 1e-9 in float64 and
1e-4 in float32 (on CuPy the products also go through cuBLAS, summing in another order).
The model: ``SketchRNN.loss_and_grad`` on backend numba or cupy against backend numpy, with the
same seed and step (same initial parameters, same noise):

* numba, float64: every loss and every gradient tensor elementwise to 1e-10 (the Numba
  contract of ``fast_backends.py``), every decoder with every encoder, dropout on; float32:
  within 1e-5 of numpy and no farther from the float64 result than numpy's float32 is (x3);
  the default noise is the counter-based stream; the parallel path gives the serial bits.
* cupy (marker gpu): every loss and gradient tensor normwise to 1e-9 in float64; at the
  reference widths in float32, the losses to 1e-4 and the flat gradient to 2e-3 (2-norm).
"""
from __future__ import annotations

import numpy as np
import pytest

from fast_backends import (GPU, REPORT, TOL, Check, bitwise_failure, elementwise_failure,
                           make_backend, print_report, rel_err)
import minisketch as ms
from minisketch.hparams import HParams
from minisketch.kernels import jit, reference
from minisketch.fast import hyper_lstm as fast_hyper_lstm
from minisketch.layers import hyper_lstm, layer_norm_lstm, lstm
from minisketch.model import SketchRNN
from minisketch.strokes import make_batch

REF = reference.kernel_set()
SEQ_TOL32 = 1e-4        # whole sequences in float32: the products through other BLAS too
MODEL_TOL64 = 1e-9      # whole loss_and_grad in float64 on CuPy, every gradient tensor
MODEL_TOL32 = 2e-3      # whole loss_and_grad in float32 on CuPy: the flat gradient as a whole


@pytest.fixture(scope="module", autouse=True)
def report():
    """At the end, the table of CuPy comparisons (GPU runs, with -s)."""
    yield
    print_report()


@pytest.fixture
def fast(request, monkeypatch):
    return make_backend(request.param, monkeypatch)


SEQ_SWEEP = [pytest.param("numba", np.float64, id="numba-float64"),
             pytest.param("numba", np.float32, id="numba-float32"),
             pytest.param("cupy", np.float64, id="cupy-float64", marks=GPU),
             pytest.param("cupy", np.float32, id="cupy-float32", marks=GPU)]


def _rng(*key):
    return np.random.default_rng(list(key))


def _keep(rng, shape, dt, keep_prob=0.9):
    return ((rng.random(shape) < keep_prob) / keep_prob).astype(dt)


def assert_close(label, got, ref, dtype, ref64=None):
    msg = elementwise_failure(label, got, ref, dtype, ref64)
    assert msg is None, msg


def assert_same(label, got, ref):
    msg = bitwise_failure(label, got, ref)
    assert msg is None, msg


# --------------------------------------------------------------------------- whole sequences

CELL_MODULES = {
    "lstm": (lstm, "lstm", {}),
    "layer_norm": (layer_norm_lstm, "ln_lstm", {}),
    "hyper": (hyper_lstm, "hyper_lstm", {"hyper_num_units": 24, "hyper_embedding_size": 4}),
}


@pytest.mark.parametrize("fast,dt", SEQ_SWEEP, indirect=["fast"])
@pytest.mark.parametrize("cell", list(CELL_MODULES))
@pytest.mark.parametrize("T,B,D,H", [(1, 1, 3, 5), (9, 6, 7, 33), (20, 100, 133, 512)])
def test_cell_sequence(fast, dt, cell, T, B, D, H):
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
    pd = {k: fast.to_device(v) for k, v in p.items()}
    hs_g, sT_g, cache_g = fwd(fast.to_device(x), fast.to_device(state0), pd,
                              keep=fast.to_device(keep), mask=fast.to_device(mask),
                              kernels=fast.kernels)
    dx_g, ds0_g, g_g = bwd(fast.to_device(dhs), fast.to_device(dsT), cache_g)
    chk = Check(fast, dt, f"{prefix}_forward+backward[{dt.__name__},T{T},B{B},H{H}]",
                normwise=True, tol=TOL[dt] * 10 if dt == np.float64 else SEQ_TOL32)
    chk("hs", hs_g, hs_w)
    chk("state_T", sT_g, sT_w)
    chk("dx", dx_g, dx_w)
    chk("dstate0", ds0_g, ds0_w)
    assert set(g_g) == set(g_w)
    for k in sorted(g_w):
        assert g_g[k].dtype == dt, k
        chk(f"d{k}", g_g[k], g_w[k])
    chk.done()


@pytest.mark.parametrize("fast,dt", SEQ_SWEEP, indirect=["fast"])
def test_hyper_backward_per_step_sums(fast, dt):
    """The fast path's per_step=True (parameter sums a step at a time into reused buffers) with
    the fast kernels gives the plain reference's numbers; it also runs on CuPy, whose einsum has
    no out=."""
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
    _, _, g_w = hyper_lstm.hyper_lstm_backward(dhs, None, cache_w)
    pd = {k: fast.to_device(v) for k, v in p.items()}
    _, _, cache_g = fast_hyper_lstm.hyper_lstm_forward(fast.to_device(x), fast.to_device(state0),
                                                       pd, kernels=fast.kernels)
    _, _, g_g = fast_hyper_lstm.hyper_lstm_backward(fast.to_device(dhs), None, cache_g,
                                                    per_step=True)
    chk = Check(fast, dt, f"hyper_lstm_backward(per_step=True)[{dt.__name__}]",
                normwise=True, tol=TOL[dt] * 10 if dt == np.float64 else SEQ_TOL32)
    for k in sorted(g_w):
        chk(f"d{k}", g_g[k], g_w[k])
    chk.done()


# --------------------------------------------------------------------------- the model on numba

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


# --------------------------------------------------------------------------- the model on cupy

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
    hp = ms.HParams(dec_model=dec, **hp_kw)
    host = ms.SketchRNN(hp, backend="numpy", dtype=dt, seed=3)
    gpu = ms.SketchRNN(hp, backend="cupy", dtype=dt, seed=3, noise="host")  # same noise stream
    return hp, host, gpu


def _batch(hp, n, max_len, seed):
    return ms.make_batch(_sketches(np.random.default_rng(seed), n, max_len), max_len=max_len,
                         scale_factor=20.0)


SMALL = dict(enc_rnn_size=24, dec_rnn_size=40, z_size=8, num_mixture=3, hyper_num_units=16,
             hyper_embedding_size=4)


@pytest.mark.parametrize("dec", ["lstm", "hyper"])
@pytest.mark.parametrize("fast", [pytest.param("cupy", marks=GPU)], indirect=True)
def test_model_device_noise_matches_numpy_device_noise(fast, dec):
    """noise="device" is the same stream on CuPy and NumPy: same dropout masks exactly, eps to
    rounding (Box-Muller's log/cos), so losses and gradients agree to float64 rounding."""
    hp = ms.HParams(dec_model=dec, enc_model=dec, **SMALL)
    host = ms.SketchRNN(hp, backend="numpy", dtype="float64", seed=3, noise="device")
    gpu = ms.SketchRNN(hp, backend="cupy", dtype="float64", seed=3)
    assert gpu.noise == "device"
    batch = _batch(hp, 6, 17, seed=13)
    lw, _ = host.loss_and_grad(batch, step=5)
    flat_w = np.array(host.flat_grad)
    lg, _ = gpu.loss_and_grad(batch, step=5)
    chk = Check(fast, np.float64, f"model[{dec},noise=device,float64]", tol=1e-9)
    for k in sorted(lw):
        chk(f"loss {k}", np.asarray(float(lg[k])), np.asarray(float(lw[k])))
    chk("flat_grad", gpu.flat_grad, flat_w)
    chk.done()


@pytest.mark.parametrize("dec", ["lstm", "layer_norm", "hyper"])
@pytest.mark.parametrize("fast", [pytest.param("cupy", marks=GPU)], indirect=True)
@pytest.mark.parametrize("conditional", [True, False])
def test_model_loss_and_grad_float64(fast, dec, conditional):
    """Every loss and every gradient tensor, by name, to MODEL_TOL64 (dropout on, step 7)."""
    hp, host, gpu = _model_pair(dec, "float64", dict(SMALL, conditional=conditional,
                                                     enc_model=dec))
    batch = _batch(hp, 6, 17, seed=11)
    lw, gw = host.loss_and_grad(batch, step=7)
    gw = {k: np.array(v) for k, v in gw.items()}
    lg, gg = gpu.loss_and_grad(batch, step=7)
    chk = Check(fast, np.float64, f"model[{dec},cond={conditional},float64]", tol=MODEL_TOL64)
    for k in sorted(lw):
        chk(f"loss {k}", np.asarray(float(lg[k])), np.asarray(float(lw[k])))
    for k in host.param_names:
        chk(k, gg[k], gw[k])
    chk.done()


@pytest.mark.parametrize("dec", ["lstm", "layer_norm", "hyper"])
@pytest.mark.parametrize("fast", [pytest.param("cupy", marks=GPU)], indirect=True)
def test_model_loss_and_grad_float32_reference_sizes(fast, dec):
    """Reference widths (encoder 256, decoder 512, N_z 128, M 20) in float32, a 32 x 60 batch:
    losses to 1e-4 relative, the flat gradient to MODEL_TOL32 normwise (per-tensor errors are in
    the report)."""
    hp, host, gpu = _model_pair(dec, "float32", {})
    batch = _batch(hp, 32, 60, seed=12)
    lw, _ = host.loss_and_grad(batch, step=100)
    flat_w = np.array(host.flat_grad)
    lg, _ = gpu.loss_and_grad(batch, step=100)
    chk = Check(fast, np.float32, f"model[{dec},reference sizes,float32]", tol=MODEL_TOL32)
    for k in sorted(lw):
        chk(f"loss {k}", np.asarray(float(lg[k])), np.asarray(float(lw[k])), tol=1e-4)
    flat_g = fast.to_host(gpu.flat_grad)
    err = float(np.linalg.norm(flat_g.astype(np.float64) - flat_w)
                / max(np.linalg.norm(flat_w.astype(np.float64)), 1e-30))
    chk("flat_grad (2-norm)", flat_g, flat_w, err=err)
    for k in host.param_names:     # reported, not asserted: see the docstring
        got, want = fast.to_host(gpu.grads[k]), np.asarray(host.grads[k])
        REPORT.append((chk.case, f"({k})", rel_err(got, want), MODEL_TOL32))
    chk.done()
