"""Schedules and the clipped Adam update against hand-computed values and a scalar loop."""
import math

import numpy as np
import pytest

from minisketch.errors import ModelError
from minisketch.hparams import HParams
from minisketch.optim import Adam, adam_bias_corrections, clip_adam_update, kl_weight, learning_rate


def test_learning_rate_schedule_hand_values():
    hp = HParams()  # lr 1e-3, decay 0.9999, lr_min 1e-5
    assert learning_rate(hp, 0) == pytest.approx(1e-3, rel=1e-15)
    # (1e-3 - 1e-5) * 0.9999**1000 + 1e-5 = 0.00099 * 0.904832... + 1e-5
    assert learning_rate(hp, 1000) == pytest.approx(0.00099 * 0.9048328935585562 + 1e-5, rel=1e-12)
    assert learning_rate(hp, 10**7) == pytest.approx(1e-5, rel=1e-9)
    hp2 = HParams(learning_rate=0.01, decay_rate=0.5, min_learning_rate=0.0)
    assert [learning_rate(hp2, s) for s in range(4)] == [0.01, 0.005, 0.0025, 0.00125]


def test_kl_weight_schedule_hand_values():
    hp = HParams()  # w_KL 0.5, w_start 0.01, R 0.99995
    assert kl_weight(hp, 0) == pytest.approx(0.01, rel=1e-14)
    # 0.5 - 0.49 * 0.99995**10000, with 0.99995**10000 = exp(10000 * log1p(-5e-5)) = 0.60652308
    assert kl_weight(hp, 10000) == pytest.approx(0.5 - 0.49 * 0.60652308, rel=1e-8)
    assert kl_weight(hp, 10**8) == pytest.approx(0.5, rel=1e-12)
    hp2 = HParams(kl_weight=1.0, kl_weight_start=0.0, kl_decay_rate=0.5)
    assert [kl_weight(hp2, s) for s in range(3)] == [0.0, 0.5, 0.75]


def test_first_adam_step_hand_values():
    # t = 1: m = 0.1 g, v = 0.001 g^2, bias-corrected m_hat = g, v_hat = g^2, so each element
    # moves by lr * g / (|g| + eps) = lr * sign(g) (to 1e-8 relative); clipping caps |g| at 1.
    flat = np.array([1.0, -2.0, 0.5, 3.0])
    grad = np.array([5.0, -0.25, 0.0, -1e-3])
    m, v = np.zeros(4), np.zeros(4)
    clip_adam_update(flat, grad, m, v, 1, 0.1, 1.0)
    np.testing.assert_allclose(m, [0.1, -0.025, 0.0, -1e-4], rtol=1e-15)
    np.testing.assert_allclose(v, [1e-3, 6.25e-5, 0.0, 1e-9], rtol=1e-15)
    np.testing.assert_allclose(flat, [1.0 - 0.1 * 1.0 / (1.0 + 1e-8),
                                      -2.0 + 0.1 * 0.25 / (0.25 + 1e-8),
                                      0.5,
                                      3.0 + 0.1 * 1e-3 / (1e-3 + 1e-8)], rtol=1e-14, atol=0)
    np.testing.assert_array_equal(grad, [5.0, -0.25, 0.0, -1e-3])   # grad left untouched


def test_second_adam_step_hand_values():
    # one element, grads 2.0 (clipped to 1.5) then -0.5, lr 0.01, betas 0.9/0.999:
    # t=1: m = 0.15, v = 0.00225;  t=2: m = 0.135 - 0.05 = 0.085, v = 0.00224775 + 0.00025
    #      m_hat = 0.085 / 0.19, v_hat = 0.00249775 / 0.001999
    flat, m, v = np.array([0.0]), np.zeros(1), np.zeros(1)
    clip_adam_update(flat, np.array([2.0]), m, v, 1, 0.01, 1.5)
    x1 = -0.01 * 1.5 / (1.5 + 1e-8)
    np.testing.assert_allclose(flat, [x1], rtol=1e-14)
    clip_adam_update(flat, np.array([-0.5]), m, v, 2, 0.01, 1.5)
    m_hat, v_hat = 0.085 / 0.19, 0.00249775 / 0.001999
    np.testing.assert_allclose(m, [0.085], rtol=1e-14)
    np.testing.assert_allclose(v, [0.00249775], rtol=1e-14)
    np.testing.assert_allclose(flat, [x1 - 0.01 * m_hat / (math.sqrt(v_hat) + 1e-8)], rtol=1e-12)


def _scalar_loop(flat, grad, m, v, t, lr, clip, b1=0.9, b2=0.999, eps=1e-8):
    """Independent textbook Adam, one Python float at a time."""
    flat, m, v = list(flat), list(m), list(v)
    for i, g in enumerate(grad):
        g = min(max(float(g), -clip), clip)
        m[i] = b1 * m[i] + (1 - b1) * g
        v[i] = b2 * v[i] + (1 - b2) * g * g
        flat[i] -= lr * (m[i] / (1 - b1 ** t)) / (math.sqrt(v[i] / (1 - b2 ** t)) + eps)
    return np.array(flat), np.array(m), np.array(v)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_matches_scalar_loop_over_several_steps(dtype, rtol):
    rng = np.random.default_rng(0)
    P = 257
    flat = rng.normal(size=P).astype(dtype)
    m, v = np.zeros(P, dtype), np.zeros(P, dtype)
    rf, rm, rv = flat.astype(np.float64), np.zeros(P), np.zeros(P)
    for t in range(1, 6):
        grad = (rng.normal(size=P) * 3).astype(dtype)      # about a third get clipped
        lr = 1e-3 * 0.9 ** t
        clip_adam_update(flat, grad, m, v, t, lr, 1.0)
        rf, rm, rv = _scalar_loop(rf, grad.astype(np.float64), rm, rv, t, lr, 1.0)
        assert flat.dtype == dtype and m.dtype == dtype and v.dtype == dtype
    np.testing.assert_allclose(m, rm, rtol=rtol, atol=1e-7 if dtype == np.float32 else 0)
    np.testing.assert_allclose(v, rv, rtol=rtol, atol=1e-9 if dtype == np.float32 else 0)
    np.testing.assert_allclose(flat, rf, rtol=rtol, atol=1e-7 if dtype == np.float32 else 0)


def test_clip_is_elementwise_not_global_norm():
    # a huge element must not shrink the update of a small one (global-norm clipping would)
    flat, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    clip_adam_update(flat, np.array([1e6, 1e-2]), m, v, 1, 1.0, 1.0)
    np.testing.assert_allclose(m, [0.1, 1e-3], rtol=1e-14)


def test_nonfinite_gradient_is_not_hidden():
    flat, m, v = np.zeros(3), np.zeros(3), np.zeros(3)
    clip_adam_update(flat, np.array([np.nan, 1.0, -1.0]), m, v, 1, 0.1, 1.0)
    assert np.isnan(flat[0]) and np.isfinite(flat[1:]).all()


def test_step_counts_from_one():
    with pytest.raises(ValueError):
        adam_bias_corrections(0, 0.9, 0.999)


def test_adam_converges_on_a_quadratic():
    # f(x) = 0.5 * sum(a * (x - b)^2), minimum at b; well and badly scaled coordinates
    rng = np.random.default_rng(1)
    a = np.geomspace(0.01, 100.0, 20)
    b = rng.normal(size=20) * 2
    x = np.zeros(20)
    opt = Adam(x)
    for step in range(3000):
        lr = 0.05 * 0.998 ** step + 1e-4
        opt.update(x, a * (x - b), lr, clip=10.0)
    assert opt.t == 3000
    np.testing.assert_allclose(x, b, atol=1e-3)


def test_adam_state_round_trip_continues_identically():
    rng = np.random.default_rng(2)
    grads = rng.normal(size=(6, 10)).astype(np.float32)
    x1 = rng.normal(size=10).astype(np.float32)
    x2 = x1.copy()
    a1 = Adam(x1)
    for g in grads[:3]:
        a1.update(x1, g, 1e-2, 1.0)
    # a second optimizer restored from the first's state, on a copy of the parameters
    a2 = Adam(np.zeros(10, np.float32))
    a2.load_state_dict({k: np.copy(val) for k, val in a1.state_dict().items()})
    x2[:] = x1
    for g in grads[3:]:
        a1.update(x1, g, 1e-2, 1.0)
        a2.update(x2, g, 1e-2, 1.0)
    assert a2.t == 6
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(a1.m, a2.m)


def test_adam_load_rejects_wrong_size():
    opt = Adam(np.zeros(4))
    bad = Adam(np.zeros(5)).state_dict()
    with pytest.raises(ModelError, match="shape"):
        opt.load_state_dict(bad)
