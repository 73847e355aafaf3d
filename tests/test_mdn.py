"""Mixture density output layer: the loss is SPEC 2's function, stable, and its gradient is exact.

Gradient checks: float64 central differences (eps 1e-6) of scale * (offset_sum + pen_sum) against
``mdn_loss_and_grad``'s dy, metric of ``minisketch.gradcheck`` (max over entries of
|a - n| / max(|a| + |n|, floor)), tolerance 1e-6.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minisketch.gradcheck import check_gradients
from minisketch.layers import mdn

GRAD_TOL = 1e-6


def naive_loss(y, target):
    """SPEC 2 written out literally (densities formed directly): the oracle where nothing
    underflows."""
    p = mdn.mdn_params(y)
    n1 = target[:, 0:1] - p["mu_x"]
    n2 = target[:, 1:2] - p["mu_y"]
    sx, sy, rho = p["sigma_x"], p["sigma_y"], p["rho"]
    z = (n1 / sx) ** 2 + (n2 / sy) ** 2 - 2 * rho * n1 * n2 / (sx * sy)
    dens = np.exp(-z / (2 * (1 - rho ** 2))) / (2 * np.pi * sx * sy * np.sqrt(1 - rho ** 2))
    offset = -np.log((p["pi"] * dens).sum(axis=1) + 1e-6) * (1 - target[:, 4])
    pen = -(target[:, 2:5] * np.log(p["pen"])).sum(axis=1)
    return offset.sum(), pen.sum()


def make_case(rng, n, m, rho_logit=1.0, log_sigma=(-1.0, 0.5), near=1.0, p_end=0.3):
    """Random raw outputs y [n, 6m+3] and targets [n, 5] with one-hot pens.

    Targets are placed at the first component's mean plus ``near`` standard deviations of noise,
    so densities do not underflow even for small sigma and rho near +-1."""
    y = rng.normal(size=(n, 6 * m + 3))
    y[:, 3 + 3 * m:3 + 5 * m] = rng.uniform(*log_sigma, size=(n, 2 * m))
    y[:, 3 + 5 * m:] = rho_logit * rng.uniform(-1, 1, size=(n, m))
    t = np.zeros((n, 5))
    sx = np.exp(y[:, 3 + 3 * m])
    sy = np.exp(y[:, 3 + 4 * m])
    t[:, 0] = y[:, 3 + m] + near * sx * rng.normal(size=n)
    t[:, 1] = y[:, 3 + 2 * m] + near * sy * rng.normal(size=n)
    pen = rng.choice(3, size=n, p=[(1 - p_end) * 0.8, (1 - p_end) * 0.2, p_end])
    t[np.arange(n), 2 + pen] = 1.0
    t[pen == 2, :2] = 0.0                      # padding rows are (0, 0, 0, 0, 1)
    return y, t


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), m=st.integers(1, 3), seed=st.integers(0, 2 ** 31 - 1),
       rho_logit=st.sampled_from([0.5, 2.0, 4.0, -4.0]),
       ls_lo=st.floats(-3.0, 0.0), near=st.sampled_from([0.3, 1.0, 3.0]),
       scale=st.sampled_from([1.0, 0.125]))
def test_mdn_gradient_matches_central_differences(n, m, seed, rho_logit, ls_lo, near, scale):
    """Every entry of dy, batch of 1 row and M = 1 included, rho up to tanh(4) = 0.99933,
    sigma down to exp(-3) = 0.05."""
    rng = np.random.default_rng(seed)
    y, t = make_case(rng, n, m, rho_logit=rho_logit, log_sigma=(ls_lo, ls_lo + 1.0), near=near)
    _, _, dy = mdn.mdn_loss_and_grad(y, t, scale)

    def f():
        o, p = mdn.mdn_loss(y, t)
        return scale * (o + p)

    check_gradients(f, {"y": y}, {"y": dy}, eps=1e-6, tol=GRAD_TOL)


def test_mdn_gradient_rho_near_one_and_tiny_sigma_per_block():
    """rho = tanh(+-6) (1 - rho^2 = 2.5e-5) and sigma = exp(-4): each block checked separately
    so a failure names the block."""
    rng = np.random.default_rng(7)
    m = 2
    y, t = make_case(rng, 4, m, rho_logit=1.0, log_sigma=(-4.0, -3.5), near=0.2, p_end=0.0)
    y[:, 3 + 5 * m:] = np.array([6.0, -6.0])
    names = ["pen", "pi", "mu_x", "mu_y", "log_sigma_x", "log_sigma_y", "rho"]
    cols = [slice(0, 3)] + [slice(3 + k * m, 3 + (k + 1) * m) for k in range(6)]
    params = {name: y[:, c].copy() for name, c in zip(names, cols)}

    def assemble():
        return np.concatenate([params[k] for k in names], axis=1)

    _, _, dy = mdn.mdn_loss_and_grad(assemble(), t, 1.0)
    grads = {name: dy[:, c] for name, c in zip(names, cols)}
    # the loss is steep here (1/sigma_eff ~ 1e4), so the step shrinks with it
    check_gradients(lambda: sum(mdn.mdn_loss(assemble(), t)), params, grads,
                    eps=1e-8, tol=GRAD_TOL)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(1, 4), seed=st.integers(0, 2 ** 31 - 1))
def test_mdn_loss_is_the_spec_formula(n, m, seed):
    """Where nothing underflows the stable form equals SPEC 2 written literally (float64)."""
    rng = np.random.default_rng(seed)
    y, t = make_case(rng, n, m, rho_logit=2.0, near=2.0)
    want = naive_loss(y, t)
    got = mdn.mdn_loss(y, t)
    got2 = mdn.mdn_loss_and_grad(y, t, 1.0)[:2]
    for w, g, g2 in zip(want, got, got2):
        assert abs(float(g) - w) <= 1e-12 * max(1.0, abs(w)), (float(g), w)
        assert float(g2) == float(g)


def test_padding_rows_have_no_offset_term_or_gradient():
    rng = np.random.default_rng(3)
    y, t = make_case(rng, 6, 3, p_end=0.0)
    t[3:] = [0, 0, 0, 0, 1]
    off_all, _, dy = mdn.mdn_loss_and_grad(y, t, 1.0)
    off_real, _ = mdn.mdn_loss(y[:3], t[:3])
    assert float(off_all) == pytest.approx(float(off_real), rel=1e-14)
    assert np.all(dy[3:, 3:] == 0.0)
    assert np.all(dy[3:, :3] != 0.0)          # the pen term counts on padding rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_values_stay_finite(dtype):
    """rho logits +-50, log sigma -20, offsets far from every mean: finite loss and gradient; an
    offset whose every density underflows costs exactly -log(1e-6) and has zero gradient."""
    m = 3
    y = np.zeros((6, 6 * m + 3))
    y[:, 3 + 5 * m:] = [50.0, -50.0, 0.0]
    y[:, 3 + 3 * m:3 + 5 * m] = -20.0
    t = np.zeros((6, 5))
    t[:, 2] = 1.0
    t[:, 0] = [1000.0, -1000.0, 1e-3, 0.0, 37.0, -5.0]
    t[:, 1] = [-1000.0, 1000.0, 2e-3, 0.0, 0.0, 5.0]
    t[3, 0:2] = 0.0                               # exactly at every mean: finite huge density
    y, t = y.astype(dtype), t.astype(dtype)
    off, pen, dy = mdn.mdn_loss_and_grad(y, t, 1.0)
    assert np.isfinite(off) and np.isfinite(pen) and np.all(np.isfinite(dy))
    far = [0, 1, 4, 5]
    o_far, _ = mdn.mdn_loss(y[far], t[far])
    assert float(o_far) == pytest.approx(-4 * math.log(1e-6), rel=1e-6)
    assert np.all(dy[far, 3:] == 0.0)
    # exactly at the means (row 3, w = v = 0) the two rho = +-50 components dominate, each with
    # density 1 / (2 pi sigma^2 sqrt(1 - rho^2)) = e^(40 + 50 - log 2) / (2 pi): the loss is
    # -log(2/3 e^(90 - log 2) / (2 pi)) = -(log(1/3) - log(2 pi) + 90)
    o3, _ = mdn.mdn_loss(y[3:4], t[3:4])
    assert float(o3) == pytest.approx(-(math.log(1 / 3) - math.log(2 * math.pi) + 90.0), rel=1e-6)


def test_log_one_minus_rho2_is_exact():
    r = np.linspace(-8, 8, 101)
    # 1 - tanh(r)^2 = 1 / cosh(r)^2; log cosh has no cancellation for moderate r
    assert np.allclose(mdn.log_one_minus_rho2(r), -2.0 * np.log(np.cosh(r)), rtol=1e-13, atol=0)
    big = mdn.log_one_minus_rho2(np.array([50.0, -50.0], dtype=np.float32))
    assert np.all(np.isfinite(big))
    assert np.allclose(big, 2 * (math.log(2) - 50.0), rtol=1e-6)


def test_mdn_params_layout_and_activations():
    m = 2
    y = np.arange(6 * m + 3, dtype=np.float64)[None, :] / 10.0
    p = mdn.mdn_params(y)
    assert p["pen"].shape == (1, 3) and p["pi"].shape == (1, m)
    assert np.allclose(p["pen"].sum(), 1.0) and np.allclose(p["pi"].sum(), 1.0)
    assert np.allclose(p["mu_x"], [[0.5, 0.6]]) and np.allclose(p["mu_y"], [[0.7, 0.8]])
    assert np.allclose(p["sigma_x"], np.exp([[0.9, 1.0]]))
    assert np.allclose(p["sigma_y"], np.exp([[1.1, 1.2]]))
    assert np.allclose(p["rho"], np.tanh([[1.3, 1.4]]))
    assert np.allclose(p["pen"], np.exp([0.0, 0.1, 0.2]) / np.exp([0.0, 0.1, 0.2]).sum())


@pytest.mark.parametrize("width", [3, 8, 10])
def test_bad_width_is_refused(width):
    with pytest.raises(ValueError, match="6M"):
        mdn.mdn_loss(np.zeros((2, width)), np.zeros((2, 5)))


def test_float32_matches_float64():
    rng = np.random.default_rng(11)
    y, t = make_case(rng, 50, 5, rho_logit=3.0, near=1.5)
    o64, p64, d64 = mdn.mdn_loss_and_grad(y, t, 0.02)
    o32, p32, d32 = mdn.mdn_loss_and_grad(y.astype(np.float32), t.astype(np.float32), 0.02)
    assert o32.dtype == np.float32 and d32.dtype == np.float32
    assert float(o32) == pytest.approx(float(o64), rel=1e-5)
    assert float(p32) == pytest.approx(float(p64), rel=1e-5)
    assert np.max(np.abs(d32 - d64)) <= 1e-4 * np.max(np.abs(d64))


def test_reference_kernel_set_holds_the_mdn_entries():
    """The model calls the loss through its backend's kernel namespace (Numba/CuPy replace it)."""
    from minisketch.backend import get_backend
    k = get_backend("numpy").kernels
    assert k.mdn_loss_and_grad is mdn.mdn_loss_and_grad
    assert k.mdn_loss is mdn.mdn_loss
