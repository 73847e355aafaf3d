"""The gradient checker itself, and the linear layer and initializers it is first used on.

Tolerance: the metric of minisketch.gradcheck (max relative error with a noise floor), < 1e-6 in
float64 with eps = 1e-6, unless a test says otherwise.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minisketch.gradcheck import check_gradients, numerical_grad, rel_error
from minisketch.layers.linear import (glorot_uniform, linear_backward, linear_forward,
                                      orthogonal)

TOL = 1e-6


def test_numerical_grad_known_function():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((3, 4))
    f = lambda: float(np.sum(np.sin(x) * w))
    before = x.copy()
    num = numerical_grad(f, x)
    assert np.array_equal(x, before), "numerical_grad must restore x exactly"
    # truncation error eps^2/6 |f'''| ~ 1e-13 and rounding ~1e-10: 1e-8 absolute is loose enough
    np.testing.assert_allclose(num, np.cos(before) * w, rtol=0, atol=1e-8)
    sub = numerical_grad(f, x, indices=[0, 5, 11])
    np.testing.assert_allclose(sub, (np.cos(before) * w).reshape(-1)[[0, 5, 11]], atol=1e-8)


def test_numerical_grad_fourth_order():
    """The order-4 stencil removes the eps^2 truncation error: on f = sum(exp(3 x) w) with
    eps = 1e-3, order 2 is off by eps^2 * 9 / 6 = 1.5e-6 relative in every entry (metric:
    half that, 7.5e-7), order 4 by eps^4 * 81 / 30 ~ 3e-12."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, 6)
    w = rng.standard_normal(6)
    f = lambda: float(np.sum(np.exp(3 * x) * w))
    exact = 3 * np.exp(3 * x) * w
    e2 = rel_error(numerical_grad(f, x, eps=1e-3), exact)
    e4 = rel_error(numerical_grad(f, x, eps=1e-3, order=4), exact)
    assert 7e-7 < e2 < 8e-7
    assert e4 < 1e-10
    with pytest.raises(ValueError):
        numerical_grad(f, x, order=3)


def test_numerical_grad_rejects_float32():
    with pytest.raises(TypeError):
        numerical_grad(lambda: 0.0, np.zeros(3, np.float32))


def test_rel_error_values():
    assert rel_error(np.array([1.0]), np.array([1.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([-1.0])) == 1.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert abs(rel_error(np.array([1.0, 0.0]), np.array([1.1, 1e-9]), floor=1.0)
               - 0.1 / 2.1) < 1e-15
    # the floor turns tiny entries into an absolute comparison
    assert rel_error(np.array([1e-12]), np.array([2e-12]), floor=1e-3) == pytest.approx(1e-9)


def _quadratic_case(seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((5, 3))
    v = rng.standard_normal(3)
    params = {"A": A, "v": v}
    f = lambda: float(0.5 * np.sum((A @ v) ** 2))
    r = A @ v
    grads = {"A": np.outer(r, v), "v": A.T @ r}
    return f, params, grads


def test_check_gradients_passes_correct_and_reports_errors():
    f, params, grads = _quadratic_case()
    errs = check_gradients(f, params, grads, tol=TOL)
    assert set(errs) == {"A", "v"}
    assert max(errs.values()) < TOL


@pytest.mark.parametrize("kind", ["sign", "small", "one_entry", "transposed_scale"])
def test_check_gradients_catches_planted_wrong_gradient(kind):
    """The check cannot pass vacuously: a wrong gradient of any kind is caught and named."""
    f, params, grads = _quadratic_case(1)
    bad = {k: v.copy() for k, v in grads.items()}
    if kind == "sign":
        bad["v"] = -bad["v"]
        name, idx = "v", None
    elif kind == "small":
        bad["A"] = bad["A"] * (1 + 1e-4)           # a 1e-4 relative error everywhere
        name, idx = "A", None
    elif kind == "one_entry":
        bad["A"][3, 1] += 1e-3 * np.abs(bad["A"]).max()
        name, idx = "A", "(3, 1)"
    else:
        bad["v"] = bad["v"] * 2.0
        name, idx = "v", None
    with pytest.raises(AssertionError) as ei:
        check_gradients(f, params, bad, tol=TOL)
    msg = str(ei.value)
    assert repr(name) in msg and "worst entries" in msg and "analytic" in msg
    if idx is not None:
        assert idx in msg
    other = "A" if name == "v" else "v"
    assert repr(other) not in msg.split("\n")[0]  # only the wrong tensor is named as failing


def test_check_gradients_subsampling_is_seeded_and_still_catches():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((20, 30))
    calls = []

    def f():
        calls.append(1)
        return float(np.sum(np.tanh(W)))
    g = 1 - np.tanh(W) ** 2
    calls.clear()
    check_gradients(f, {"W": W}, {"W": g}, max_entries=17, seed=5)
    assert len(calls) == 1 + 2 * 17                # one f(x) for the noise floor, then 2 per entry
    calls.clear()
    check_gradients(f, {"W": W}, {"W": g}, max_entries=17, seed=5, order=4)
    assert len(calls) == 1 + 4 * 17
    with pytest.raises(AssertionError, match="17 of 600 entries"):
        check_gradients(f, {"W": W}, {"W": g * 1.01}, max_entries=17, seed=5)


def test_check_gradients_shape_mismatch_and_missing_are_errors():
    f, params, grads = _quadratic_case()
    with pytest.raises(AssertionError, match="shape"):
        check_gradients(f, params, {"A": grads["A"].T, "v": grads["v"]})
    with pytest.raises(AssertionError, match="no analytic gradient"):
        check_gradients(f, params, {"A": grads["A"]})


def test_check_gradients_nan_gradient_fails():
    f, params, grads = _quadratic_case()
    grads["v"][0] = np.nan
    with pytest.raises(AssertionError, match="'v'"):
        check_gradients(f, params, grads)


# ---------------------------------------------------------------------------------------------
# linear layer

@settings(max_examples=15, deadline=None)
@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=2), D=st.integers(1, 4),
       O=st.integers(1, 4), bias=st.booleans(), seed=st.integers(0, 2 ** 31 - 1),
       scale=st.floats(0.1, 3.0))
def test_linear_gradients(lead, D, O, bias, seed, scale):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((*lead, D))
    W = rng.standard_normal((D, O))
    b = rng.standard_normal(O) if bias else None
    R = rng.standard_normal((*lead, O))

    def f():
        return float(np.sum(linear_forward(x, W, b)[0] * R))
    y, cache = linear_forward(x, W, b)
    dx, dW, db = linear_backward(R, cache)
    params = {"x": x, "W": W}
    grads = {"x": dx, "W": dW}
    if bias:
        params["b"], grads["b"] = b, db
    else:
        assert db is None
    errs = check_gradients(f, params, grads, tol=TOL)
    assert max(errs.values()) < TOL
    ref = x @ W + (0 if b is None else b)
    np.testing.assert_allclose(y, ref, rtol=1e-14, atol=1e-14)


def test_linear_float32_dtype_follows_inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    W = glorot_uniform(rng, 4, 5, np.float32)
    b = np.zeros(5, np.float32)
    y, cache = linear_forward(x, W, b)
    dx, dW, db = linear_backward(np.ones_like(y), cache)
    assert y.dtype == dx.dtype == dW.dtype == db.dtype == np.float32
    assert y.shape == (2, 3, 5) and dx.shape == x.shape


def test_glorot_uniform_limits_and_dtype():
    rng = np.random.default_rng(0)
    W = glorot_uniform(rng, 133, 2048, np.float64)
    L = np.sqrt(6 / (133 + 2048))
    assert W.shape == (133, 2048) and W.dtype == np.float64
    assert np.abs(W).max() <= L and np.abs(W).max() > 0.99 * L
    # variance of U(-L, L) is L^2 / 3 = 2 / (fan_in + fan_out); 272k samples: 1% is > 5 sigma
    assert abs(W.var() / (L * L / 3) - 1) < 0.01


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_orthogonal(n):
    rng = np.random.default_rng(n)
    Q = orthogonal(rng, n, np.float64)
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), atol=1e-12)
    np.testing.assert_allclose(Q @ Q.T, np.eye(n), atol=1e-12)
    assert orthogonal(rng, n, np.float32).dtype == np.float32
