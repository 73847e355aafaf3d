"""Recurrent cells: gradient checks of every parameter and input, step == forward, dtypes,
initialization, parameter counts, padding masks, extreme inputs.

Gradient-check metric (minisketch.gradcheck): per tensor, max over entries of
|a - n| / max(|a| + |n|, floor), floor = max(1e-3 * max|n|, rounding-noise / tol); tolerance
TOL = 1e-6 for every tensor. Numeric gradients: fourth-order central differences in float64 with
eps = 3e-6, and the rounding-noise floor computed from sum|terms| of L (``f_scale``).
Why: where a layer norm sees a block of near-zero variance (1/sqrt(var + 1e-3) ~ 30), the
second-order stencil's eps^2 truncation error alone reached 1.1e-6 relative on a random case at
eps = 1e-6; the fourth-order stencil's eps^4 term is negligible at 3e-6 (measured: numeric
gradients converge to the analytic ones as eps shrinks) while rounding, ~u * sum|terms| / eps,
is 3x smaller than at 1e-6.
Layer norm over 2 units is left out of the random draws of the layer-norm cells (H in
{1, 3, 4, 5}): the variance of two values is near zero in a few percent of draws, and there the
amplified rounding and curvature exceed what float64 differences resolve to 1e-6. The code is the
same for every H; H = 2 runs in the plain LSTM draws. Measured over 300 random layer-norm LSTM and
200 HyperLSTM draws of this distribution: worst error 8.7e-8 and 3.1e-7.
The scalar checked is L = sum(hs * R) + sum(state_T * R_s) with fixed random R, R_s, so every
output position and every state part carries gradient.
"""
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minisketch.gradcheck import check_gradients
from minisketch.kernels.reference import kernel_set
from minisketch.layers import hyper_lstm, layer_norm_lstm, lstm
from minisketch.layers.lstm import sigmoid

TOL = 1e-6
EPS = 3e-6


def _cell(mod, prefix, opts=None):
    return SimpleNamespace(
        name=prefix, opts=opts or {},
        init=getattr(mod, f"{prefix}_init"), state_size=getattr(mod, f"{prefix}_state_size"),
        forward=getattr(mod, f"{prefix}_forward"), backward=getattr(mod, f"{prefix}_backward"),
        step=getattr(mod, f"{prefix}_step"))


CELLS = {
    "lstm": _cell(lstm, "lstm"),
    "ln_lstm": _cell(layer_norm_lstm, "ln_lstm"),
    "hyper_lstm": _cell(hyper_lstm, "hyper_lstm",
                        {"hyper_num_units": 3, "hyper_embedding_size": 2}),
}


def _masks(lengths, T):
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(np.float64)


def _case(cell, seed, T, B, D, H, keep_prob=None, lengths=None, scale=1.0, perturb=0.3):
    """Random float64 inputs and params (init perturbed so no tensor sits at a special value,
    e.g. the hyper cell's zero-initialized W_zw)."""
    rng = np.random.default_rng(seed)
    p = cell.init(rng, D, H, np.float64, **cell.opts)
    for k in p:
        p[k] = p[k] + perturb * rng.standard_normal(p[k].shape)
    S = cell.state_size(H, **cell.opts)
    x = scale * rng.standard_normal((T, B, D))
    state0 = 0.5 * rng.standard_normal((B, S))
    keep = None
    if keep_prob is not None:
        keep = (rng.random((T, B, H)) < keep_prob) / keep_prob
    mask = None if lengths is None else _masks(lengths, T)
    R = rng.standard_normal((T, B, H))
    Rs = rng.standard_normal((B, S))
    return p, x, state0, keep, mask, R, Rs


def _gradcheck(cell, p, x, state0, keep, mask, R, Rs, max_entries=None, dstate=True):
    def loss():
        hs, sT, _ = cell.forward(x, state0, p, keep=keep, mask=mask)
        val = np.sum(hs * R)
        if dstate:
            val += np.sum(sT * Rs)
        return float(val)
    hs, sT, cache = cell.forward(x, state0, p, keep=keep, mask=mask)
    dx, ds0, grads = cell.backward(R, Rs if dstate else None, cache)
    assert set(grads) == set(p)
    for k in p:
        assert grads[k].shape == p[k].shape and grads[k] is not p[k]
    params = dict(p, x=x, state0=state0)
    ana = dict(grads, x=dx, state0=ds0)
    f_scale = np.sum(np.abs(hs * R)) + (np.sum(np.abs(sT * Rs)) if dstate else 0.0)
    return check_gradients(loss, params, ana, eps=EPS, tol=TOL, max_entries=max_entries,
                           order=4, f_scale=f_scale)


# ---------------------------------------------------------------------------------------------
# gradient checks

@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("variant", ["plain", "dropout", "mask", "dropout+mask", "no_dstate"])
def test_gradients_fixed_cases(name, variant):
    cell = CELLS[name]
    T, B, D, H = 5, 4, 3, 4
    keep_prob = 0.7 if "dropout" in variant else None
    # lengths: full, length 1, an all-padding tail, and length 0 (a batch element never runs)
    lengths = [5, 1, 3, 0] if "mask" in variant else None
    case = _case(cell, 1234, T, B, D, H, keep_prob=keep_prob, lengths=lengths)
    errs = _gradcheck(cell, *case, dstate=variant != "no_dstate",
                      max_entries=25 if name == "hyper_lstm" else None)
    assert max(errs.values()) < TOL, errs


@pytest.mark.parametrize("name", list(CELLS))
def test_gradients_sparse_dhs(name):
    """dhs zero except at two steps (as when a loss reads only some outputs)."""
    cell = CELLS[name]
    p, x, state0, keep, mask, R, Rs = _case(cell, 7, 6, 2, 2, 3, keep_prob=0.8,
                                            lengths=[6, 4])
    R[[0, 2, 3, 5]] = 0.0
    errs = _gradcheck(cell, p, x, state0, keep, mask, R, Rs, dstate=False,
                      max_entries=25 if name == "hyper_lstm" else None)
    assert max(errs.values()) < TOL, errs


def _hypothesis_gradcheck(name):
    hidden = st.integers(1, 4) if name == "lstm" else st.sampled_from([1, 3, 4, 5])

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(T=st.integers(1, 4), B=st.integers(1, 3), D=st.integers(1, 3), H=hidden,
           seed=st.integers(0, 2 ** 31 - 1), dropout=st.booleans(), masked=st.booleans(),
           scale=st.floats(0.1, 2.0), data=st.data())
    def check(T, B, D, H, seed, dropout, masked, scale, data):
        cell = CELLS[name]
        lengths = None
        if masked:
            lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
        case = _case(cell, seed, T, B, D, H, keep_prob=0.75 if dropout else None,
                     lengths=lengths, scale=scale)
        errs = _gradcheck(cell, *case, max_entries=20 if name == "hyper_lstm" else None)
        assert max(errs.values()) < TOL, errs
    return check


@pytest.mark.parametrize("name", list(CELLS))
def test_gradients_hypothesis(name):
    _hypothesis_gradcheck(name)()


# ---------------------------------------------------------------------------------------------
# forward behaviour

@pytest.mark.parametrize("name", list(CELLS))
def test_step_equals_forward(name):
    """Sampling uses _step: it must reproduce _forward step by step. Equal to 1e-13 relative in
    float64 (the one-matmul input projection over T*B rows may round differently from a B-row
    matmul in the last bit, depending on the BLAS)."""
    cell = CELLS[name]
    p, x, state0, _, _, _, _ = _case(cell, 3, 6, 3, 4, 5)
    hs, sT, _ = cell.forward(x, state0, p)
    state = state0
    for t in range(x.shape[0]):
        h, state = cell.step(x[t], state, p)
        np.testing.assert_allclose(h, hs[t], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(state, sT, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", list(CELLS))
def test_forward_explicit_kernels_equal_default(name):
    cell = CELLS[name]
    p, x, state0, keep, mask, _, _ = _case(cell, 4, 3, 2, 2, 3, keep_prob=0.5, lengths=[3, 2])
    a = cell.forward(x, state0, p, keep=keep, mask=mask)
    b = cell.forward(x, state0, p, keep=keep, mask=mask, kernels=kernel_set())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("name", list(CELLS))
def test_float32_matches_float64(name):
    cell = CELLS[name]
    p, x, state0, keep, mask, R, Rs = _case(cell, 5, 7, 3, 4, 6, keep_prob=0.9,
                                            lengths=[7, 5, 1], perturb=0.1)
    f32 = lambda a: None if a is None else a.astype(np.float32)
    p32 = {k: f32(v) for k, v in p.items()}
    hs64, sT64, c64 = cell.forward(x, state0, p, keep=keep, mask=mask)
    hs32, sT32, c32 = cell.forward(f32(x), f32(state0), p32, keep=f32(keep), mask=f32(mask))
    assert hs32.dtype == sT32.dtype == np.float32
    np.testing.assert_allclose(hs32, hs64, rtol=0, atol=1e-5)
    np.testing.assert_allclose(sT32, sT64, rtol=0, atol=1e-5)
    dx32, ds32, g32 = cell.backward(f32(R), f32(Rs), c32)
    dx64, ds64, g64 = cell.backward(R, Rs, c64)
    assert dx32.dtype == ds32.dtype == np.float32
    for k in g64:
        assert g32[k].dtype == np.float32
        scale = max(1.0, np.abs(g64[k]).max())
        np.testing.assert_allclose(g32[k], g64[k], rtol=0, atol=2e-5 * scale, err_msg=k)
    np.testing.assert_allclose(dx32, dx64, rtol=0, atol=2e-5 * max(1.0, np.abs(dx64).max()))


@pytest.mark.parametrize("name", list(CELLS))
def test_padding_steps_leave_state_unchanged(name):
    """A batch element with length L gives the same hs[:L] and final state as running only its
    first L steps; every padding step repeats the last real h, and gradients at padding steps
    w.r.t. x are exactly zero."""
    cell = CELLS[name]
    T, B = 6, 4
    lengths = [6, 1, 3, 0]
    p, x, state0, keep, _, R, Rs = _case(cell, 11, T, B, 3, 4, keep_prob=0.8)
    mask = _masks(lengths, T)
    hs, sT, cache = cell.forward(x, state0, p, keep=keep, mask=mask)
    S = sT.shape[1]
    for b, L in enumerate(lengths):
        if L == 0:
            np.testing.assert_array_equal(sT[b], state0[b])
            np.testing.assert_array_equal(hs[:, b], np.broadcast_to(
                cell.forward(x[:1, b:b + 1], state0[b:b + 1], p, mask=np.zeros((1, 1)))[0][0, 0],
                hs[:, b].shape))
            continue
        hs_b, sT_b, _ = cell.forward(x[:L, b:b + 1], state0[b:b + 1], p, keep=keep[:L, b:b + 1])
        np.testing.assert_allclose(hs[:L, b], hs_b[:, 0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(sT[b], sT_b[0], rtol=1e-13, atol=1e-14)
        for t in range(L, T):
            np.testing.assert_array_equal(hs[t, b], hs[L - 1, b])
    dx, ds0, _ = cell.backward(R, Rs, cache)
    for b, L in enumerate(lengths):
        assert np.all(dx[L:, b] == 0.0)
    # an element that never runs passes the final-state gradient straight to state0, except for
    # h, which also receives sum over t of dhs[t] (every hs[t] is h0)
    assert ds0.shape == (B, S)


@pytest.mark.parametrize("name", list(CELLS))
def test_extreme_inputs_finite_and_warning_free(name):
    cell = CELLS[name]
    p, x, state0, keep, mask, R, Rs = _case(cell, 2, 3, 2, 3, 4, keep_prob=0.9, lengths=[3, 2])
    x = x * 1e4
    for k in p:
        p[k] = p[k] * 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            hs, sT, cache = cell.forward(x, state0, p, keep=keep, mask=mask)
            dx, ds0, grads = cell.backward(R, Rs, cache)
    for a in [hs, sT, dx, ds0, *grads.values()]:
        assert np.all(np.isfinite(a))


def test_sigmoid_extremes_and_accuracy():
    for dt in (np.float32, np.float64):
        z = np.array([-1e30, -1e4, -800.0, -90.0, -1.0, 0.0, 1.0, 90.0, 800.0, 1e4, 1e30,
                      -np.inf, np.inf], dtype=dt)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            s = sigmoid(z)
        assert s.dtype == dt and np.all(np.isfinite(s))
        assert np.all((s >= 0) & (s <= 1))
        assert s[0] == 0 and s[-3] == 1 and s[5] == 0.5
    z = np.linspace(-30, 30, 601)
    np.testing.assert_allclose(sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-15)
    # relative accuracy in the far negative tail (where 1 - sigmoid(-z) would cancel)
    np.testing.assert_allclose(sigmoid(np.array([-700.0])), np.exp(-700.0), rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# initialization and sizes

def test_lstm_init_shapes_orthogonality_and_param_count():
    rng = np.random.default_rng(0)
    p = lstm.lstm_init(rng, 133, 512, np.float64)
    assert {k: v.shape for k, v in p.items()} == {
        "W_xh": (133, 2048), "W_hh": (512, 2048), "b": (2048,)}
    assert sum(v.size for v in p.values()) == 1_323_008
    for k in range(4):
        blk = p["W_hh"][:, k * 512:(k + 1) * 512]
        np.testing.assert_allclose(blk.T @ blk, np.eye(512), atol=1e-12)
    # the blocks are independent, not one matrix repeated
    assert not np.allclose(p["W_hh"][:, :512], p["W_hh"][:, 512:1024])
    assert np.all(p["b"] == 0)
    L = np.sqrt(6 / (133 + 2048))
    assert np.abs(p["W_xh"]).max() <= L
    assert lstm.lstm_state_size(512) == 1024
    p32 = lstm.lstm_init(np.random.default_rng(0), 5, 3, np.float32)
    assert all(v.dtype == np.float32 for v in p32.values())


def test_lstm_matches_naive_formula():
    """Independent re-derivation of one LSTM step straight from SPEC section 3."""
    rng = np.random.default_rng(9)
    D, H, B = 3, 4, 2
    p = lstm.lstm_init(rng, D, H, np.float64)
    p["b"] = rng.standard_normal(4 * H)
    x = rng.standard_normal((1, B, D))
    c0, h0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    keep = (rng.random((1, B, H)) < 0.5) / 0.5
    hs, sT, _ = lstm.lstm_forward(x, np.concatenate([c0, h0], 1), p, keep=keep)
    a = np.concatenate([x[0], h0], 1) @ np.concatenate([p["W_xh"], p["W_hh"]], 0) + p["b"]
    ai, aj, af, ao = np.split(a, 4, axis=1)
    sg = lambda v: 1 / (1 + np.exp(-v))
    c = c0 * sg(af + 1.0) + sg(ai) * np.tanh(aj) * keep[0]
    h = np.tanh(c) * sg(ao)
    np.testing.assert_allclose(hs[0], h, rtol=1e-12)
    np.testing.assert_allclose(sT, np.concatenate([c, h], 1), rtol=1e-12)


def test_kernel_set_names():
    ks = kernel_set()
    for n in ["lstm_cell_forward", "lstm_cell_backward", "ln_lstm_cell_forward",
              "ln_lstm_cell_backward", "hyper_modulate_forward", "hyper_modulate_backward"]:
        assert callable(getattr(ks, n))
    ks.extra = 1  # a fresh namespace each call: callers may extend it
    assert not hasattr(kernel_set(), "extra")


def _naive_ln(v, gamma, beta):
    mu = v.mean(-1, keepdims=True)
    return gamma * (v - mu) / np.sqrt(((v - mu) ** 2).mean(-1, keepdims=True) + 1e-3) + beta


def test_ln_lstm_matches_naive_formula():
    """Independent re-derivation of one layer-norm LSTM step straight from SPEC section 3."""
    rng = np.random.default_rng(10)
    D, H, B = 3, 5, 2
    p = layer_norm_lstm.ln_lstm_init(rng, D, H, np.float64)
    for k in ("ln_gamma", "ln_beta", "ln_c_gamma", "ln_c_beta"):
        p[k] = p[k] + 0.5 * rng.standard_normal(p[k].shape)
    x = rng.standard_normal((1, B, D))
    c0, h0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    keep = (rng.random((1, B, H)) < 0.5) / 0.5
    hs, sT, _ = layer_norm_lstm.ln_lstm_forward(x, np.concatenate([c0, h0], 1), p, keep=keep)
    a = x[0] @ p["W_xh"] + h0 @ p["W_hh"]
    blocks = [_naive_ln(blk, gm, bt) for blk, gm, bt in zip(
        np.split(a, 4, 1), np.split(p["ln_gamma"], 4), np.split(p["ln_beta"], 4))]
    sg = lambda v: 1 / (1 + np.exp(-v))
    c = c0 * sg(blocks[2] + 1.0) + sg(blocks[0]) * np.tanh(blocks[1]) * keep[0]
    h = np.tanh(_naive_ln(c, p["ln_c_gamma"], p["ln_c_beta"])) * sg(blocks[3])
    np.testing.assert_allclose(hs[0], h, rtol=1e-12)
    np.testing.assert_allclose(sT, np.concatenate([c, h], 1), rtol=1e-12)


def test_ln_lstm_init():
    rng = np.random.default_rng(0)
    p = layer_norm_lstm.ln_lstm_init(rng, 133, 64, np.float64)
    assert {k: v.shape for k, v in p.items()} == {
        "W_xh": (133, 256), "W_hh": (64, 256), "ln_gamma": (256,), "ln_beta": (256,),
        "ln_c_gamma": (64,), "ln_c_beta": (64,)}
    assert sum(v.size for v in p.values()) == 133 * 256 + 64 * 256 + 2 * 256 + 2 * 64
    for k in range(4):
        blk = p["W_hh"][:, k * 64:(k + 1) * 64]
        np.testing.assert_allclose(blk.T @ blk, np.eye(64), atol=1e-12)
    assert np.all(p["ln_gamma"] == 1) and np.all(p["ln_c_gamma"] == 1)
    assert np.all(p["ln_beta"] == 0) and np.all(p["ln_c_beta"] == 0)
    assert layer_norm_lstm.ln_lstm_state_size(64) == 128


def test_hyper_lstm_init_shapes_and_values():
    rng = np.random.default_rng(0)
    D, H, Hh, E = 5, 64, 256, 32
    p = hyper_lstm.hyper_lstm_init(rng, D, H, np.float32)     # SPEC defaults: 256 units, E 32
    shapes = {
        "W_xh": (D, 4 * H), "W_hh": (H, 4 * H), "b": (4 * H,),
        "ln_gamma": (4 * H,), "ln_beta": (4 * H,), "ln_c_gamma": (H,), "ln_c_beta": (H,),
        "hyper_W_xh": (D + H, 4 * Hh), "hyper_W_hh": (Hh, 4 * Hh),
        "hyper_ln_gamma": (4 * Hh,), "hyper_ln_beta": (4 * Hh,), "hyper_ln_c_gamma": (Hh,),
        "hyper_ln_c_beta": (Hh,),
        "W_zw": (Hh, 8 * E), "b_zw": (8 * E,), "W_alpha": (8, E, H), "W_zb": (Hh, 4 * E),
        "W_beta": (4, E, H)}
    assert {k: v.shape for k, v in p.items()} == shapes
    # per block (magenta's hyper_norm): zw Hh*E + E, alpha E*H, and for the h-blocks zb Hh*E,
    # beta E*H; plus the two cells
    main = D * 4 * H + H * 4 * H + 4 * H + 2 * 4 * H + 2 * H
    hyper = (D + H) * 4 * Hh + Hh * 4 * Hh + 2 * 4 * Hh + 2 * Hh
    per_block = 8 * (Hh * E + E + E * H) + 4 * (Hh * E + E * H)
    assert sum(v.size for v in p.values()) == main + hyper + per_block
    assert np.all(p["W_zw"] == 0) and np.all(p["b_zw"] == 1) and np.all(p["W_beta"] == 0)
    assert np.allclose(p["W_alpha"], 0.1 / 32)
    assert 0.008 < p["W_zb"].std() < 0.012 and abs(p["W_zb"].mean()) < 0.001
    for W, n in ((p["W_hh"], H), (p["hyper_W_hh"], Hh)):
        for k in range(4):
            blk = W[:, k * n:(k + 1) * n].astype(np.float64)
            np.testing.assert_allclose(blk.T @ blk, np.eye(n), atol=1e-5)
    assert all(v.dtype == np.float32 for v in p.values())
    assert hyper_lstm.hyper_lstm_state_size(H) == 2 * H + 2 * 256
    assert hyper_lstm.hyper_lstm_state_size(8, hyper_num_units=3) == 22


def test_hyper_lstm_at_init_is_scaled_layer_norm_lstm():
    """At the reference init zw = 1, so alpha = E * 0.1 / E = 0.1, and beta = 0: the main cell is
    exactly a layer-norm LSTM with W_xh and W_hh scaled by 0.1 (bias b = 0)."""
    rng = np.random.default_rng(1)
    D, H, T, B = 3, 5, 4, 2
    p = hyper_lstm.hyper_lstm_init(rng, D, H, np.float64, hyper_num_units=4,
                                   hyper_embedding_size=3)
    x = rng.standard_normal((T, B, D))
    S = hyper_lstm.hyper_lstm_state_size(H, hyper_num_units=4)
    s0 = rng.standard_normal((B, S))
    hs, sT, _ = hyper_lstm.hyper_lstm_forward(x, s0, p)
    q = {k: p[k] for k in ("ln_gamma", "ln_beta", "ln_c_gamma", "ln_c_beta")}
    q["W_xh"], q["W_hh"] = 0.1 * p["W_xh"], 0.1 * p["W_hh"]
    h0, _, c0, _ = hyper_lstm.hyper_lstm_split_state(s0, H, 4)
    hs_ln, sT_ln, _ = layer_norm_lstm.ln_lstm_forward(x, np.concatenate([c0, h0], 1), q)
    np.testing.assert_allclose(hs, hs_ln, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(sT[:, H + 4:2 * H + 4], sT_ln[:, :H], rtol=1e-12, atol=1e-13)


def test_hyper_lstm_matches_naive_formula():
    """Independent re-derivation of one HyperLSTM step from SPEC section 3, random params."""
    rng = np.random.default_rng(12)
    D, H, Hh, E, B = 3, 4, 5, 2, 2
    p = hyper_lstm.hyper_lstm_init(rng, D, H, np.float64, hyper_num_units=Hh,
                                   hyper_embedding_size=E)
    for k in p:
        p[k] = p[k] + 0.3 * rng.standard_normal(p[k].shape)
    x = rng.standard_normal((1, B, D))
    h0, hh0 = rng.standard_normal((B, H)), rng.standard_normal((B, Hh))
    c0, ch0 = rng.standard_normal((B, H)), rng.standard_normal((B, Hh))
    keep = (rng.random((1, B, H)) < 0.5) / 0.5
    hs, sT, _ = hyper_lstm.hyper_lstm_forward(x, np.concatenate([h0, hh0, c0, ch0], 1), p,
                                              keep=keep)
    sg = lambda v: 1 / (1 + np.exp(-v))

    def ln_cell(a, c_prev, n, g, b, gc, bc, kp):
        y = [_naive_ln(blk, gm, bt) for blk, gm, bt in zip(
            np.split(a, 4, 1), np.split(g, 4), np.split(b, 4))]
        c = c_prev * sg(y[2] + 1.0) + sg(y[0]) * np.tanh(y[1]) * kp
        return np.tanh(_naive_ln(c, gc, bc)) * sg(y[3]), c
    a_hat = np.concatenate([x[0], h0], 1) @ p["hyper_W_xh"] + hh0 @ p["hyper_W_hh"]
    hhat, chat = ln_cell(a_hat, ch0, Hh, p["hyper_ln_gamma"], p["hyper_ln_beta"],
                         p["hyper_ln_c_gamma"], p["hyper_ln_c_beta"], 1.0)
    xw, hw = x[0] @ p["W_xh"], h0 @ p["W_hh"]
    a = np.empty((B, 4 * H))
    for k in range(4):                          # gate k: x-block k and h-block 4 + k
        zx = hhat @ p["W_zw"][:, k * E:(k + 1) * E] + p["b_zw"][k * E:(k + 1) * E]
        zh = hhat @ p["W_zw"][:, (4 + k) * E:(5 + k) * E] + p["b_zw"][(4 + k) * E:(5 + k) * E]
        zb = hhat @ p["W_zb"][:, k * E:(k + 1) * E]
        s = slice(k * H, (k + 1) * H)
        a[:, s] = ((zx @ p["W_alpha"][k]) * xw[:, s] + (zh @ p["W_alpha"][4 + k]) * hw[:, s]
                   + zb @ p["W_beta"][k] + p["b"][s])
    h, c = ln_cell(a, c0, H, p["ln_gamma"], p["ln_beta"], p["ln_c_gamma"], p["ln_c_beta"],
                   keep[0])
    np.testing.assert_allclose(hs[0], h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sT, np.concatenate([h, hhat, c, chat], 1), rtol=1e-12,
                               atol=1e-14)
