"""Mixture density output layer: bivariate Gaussian mixture for the offset, softmax for the pen.

Raw output y [N, 6M + 3] (SPEC section 2; N rows = steps x batch): [pen logits (3) | pi logits |
mu_x | mu_y | log sigma_x | log sigma_y | rho logits] (M each); q = softmax(pen logits),
pi = softmax(pi logits), sigma = exp(log sigma), rho = tanh(rho logits). Per target row
(dx, dy, p1, p2, p3): offset term -log(sum_k pi_k N_k(dx, dy) + 1e-6) where p3 = 0 (weight
1 - p3), pen term -sum_j p_j log q_j on every row; the model divides both sums by B N_max.

Computed stably, never forming N_k: with u = (dx - mu_x) / sigma_x, v = (dy - mu_y) / sigma_y,
w = (u - rho v) cosh(r), log N_k = -(w^2 + v^2) / 2 - log(2 pi) - log sigma_x - log sigma_y
- log(1 - rho^2) / 2 with log(1 - rho^2) = 2 (log 2 - |r| - log1p(exp(-2 |r|))), and the offset
log a log-sum-exp over the M values log pi_k + log N_k and log(1e-6). So rho logits of +-50, log
sigma of -20 and far offsets stay finite (an underflowed component gets zero responsibility).
The gradient uses the responsibilities gamma_k = pi_k N_k / (sum_j pi_j N_j + 1e-6), each product
formed with gamma first, so an underflowed component contributes exactly 0, never 0 * inf.

``mdn_loss_and_grad`` (the kernel-set entry the Numba and CuPy sets re-implement) returns fresh
arrays. NumPy or CuPy arrays, unchanged.
"""
from __future__ import annotations

import math

import numpy as np

from ..xp import get_xp

LOSS_EPS = 1e-6                      # the reference's epsilon inside the offset log
LOG_LOSS_EPS = math.log(LOSS_EPS)
LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)


def num_mixture(y) -> int:
    """M from the width 6M + 3 of y's last axis (ValueError if the width is not of that form)."""
    width = y.shape[-1]
    if width < 9 or (width - 3) % 6:
        raise ValueError(f"MDN output width must be 6M + 3 with M >= 1, got {width}")
    return (width - 3) // 6


def mdn_split(y):
    """Views of the seven blocks of y [..., 6M + 3] (no copies, no activations).

    Returns: pen_logits [..., 3], pi_logits, mu_x, mu_y, log_sigma_x, log_sigma_y, rho_logits
    (each [..., M]).
    """
    M = num_mixture(y)
    blocks = [y[..., 0:3]]
    for k in range(6):
        blocks.append(y[..., 3 + k * M:3 + (k + 1) * M])
    return tuple(blocks)


def log_softmax(a):
    """log softmax over the last axis, stable (max subtracted first). a [..., K] -> [..., K]."""
    xp = get_xp(a)
    m = a.max(axis=-1, keepdims=True)
    s = a - m
    return s - xp.log(xp.exp(s).sum(axis=-1, keepdims=True))


def log_one_minus_rho2(r):
    """log(1 - tanh(r)^2) = log(sech(r)^2), exact for all r (no cancellation near |rho| = 1).

    1 - tanh(r)^2 = 4 / (e^r + e^-r)^2, so the log is 2 (log 2 - |r| - log1p(exp(-2|r|))).
    """
    xp = get_xp(r)
    a = xp.abs(r)
    return 2.0 * (LOG_2 - a - xp.log1p(xp.exp(-2.0 * a)))


def mdn_params(y):
    """Activated mixture parameters from raw outputs y [..., 6M + 3].

    Returns a dict of arrays: pen [..., 3] (softmax), pi [..., M] (softmax), mu_x, mu_y,
    sigma_x, sigma_y (exp of the log sigmas), rho (tanh), each [..., M].
    """
    xp = get_xp(y)
    pen_l, pi_l, mu_x, mu_y, ls_x, ls_y, r = mdn_split(y)
    return {
        "pen": xp.exp(log_softmax(pen_l)),
        "pi": xp.exp(log_softmax(pi_l)),
        "mu_x": mu_x.copy(), "mu_y": mu_y.copy(),
        "sigma_x": xp.exp(ls_x), "sigma_y": xp.exp(ls_y),
        "rho": xp.tanh(r),
    }


def _offset_terms(y, target):
    """Shared forward of the offset term. Returns the per-row loss ell [N] (before masking) and
    the intermediates the gradient needs."""
    xp = get_xp(y)
    _, pi_l, mu_x, mu_y, ls_x, ls_y, r = mdn_split(y)
    dx = target[:, 0:1]
    dy = target[:, 1:2]
    log_pi = log_softmax(pi_l)                               # [N, M]
    inv_sx = xp.exp(-ls_x)
    inv_sy = xp.exp(-ls_y)
    u = (dx - mu_x) * inv_sx                                 # standardized offsets [N, M]
    v = (dy - mu_y) * inv_sy
    rho = xp.tanh(r)
    cosh_r = xp.cosh(r)
    w = (u - rho * v) * cosh_r                               # Z / (1 - rho^2) = w^2 + v^2
    # w * w may overflow to +inf (float32, rho logits near 50, far offsets): log N_k = -inf is
    # then the correct value of the underflowed density, so the NumPy warning is silenced.
    with np.errstate(over="ignore"):
        log_n = (-0.5 * (w * w + v * v) - LOG_2PI - ls_x - ls_y
                 - 0.5 * log_one_minus_rho2(r))              # log N_k [N, M]
    a = log_pi + log_n                                       # log(pi_k N_k)
    # log(sum_k exp(a_k) + 1e-6): a log-sum-exp with log(1e-6) as one more term, whose maximum
    # is always finite (>= log 1e-6), so rows where every a_k = -inf stay finite.
    m = xp.maximum(a.max(axis=1, keepdims=True), LOG_LOSS_EPS)
    total = xp.exp(a - m).sum(axis=1, keepdims=True) + xp.exp(LOG_LOSS_EPS - m)
    log_sum = m + xp.log(total)                              # [N, 1]
    ell = -log_sum[:, 0]
    return ell, (log_pi, a, log_sum, u, v, w, rho, cosh_r, inv_sx, inv_sy)


def _pen_terms(y, target):
    """Per-row pen cross-entropy [N] and log q [N, 3]."""
    log_q = log_softmax(y[:, 0:3])
    t = target[:, 2:5]
    return -(t * log_q).sum(axis=1), log_q


def check_mdn_inputs(y, target):
    """ValueError unless y is [N, 6M + 3] (M >= 1) and target [N, 5]."""
    if y.ndim != 2 or target.ndim != 2 or target.shape != (y.shape[0], 5):
        raise ValueError(f"mdn loss needs y [N, 6M+3] and target [N, 5], "
                         f"got {tuple(y.shape)} and {tuple(target.shape)}")
    num_mixture(y)


def mdn_loss(y, target):
    """Forward only (evaluation): the two loss sums over all rows.

    Inputs:  y [N, 6M + 3] raw outputs; target [N, 5] stroke-5 rows (dx, dy, p1, p2, p3),
             same dtype as y.
    Returns: offset_sum (0-d array): sum over rows of (1 - p3) * -log(sum_k pi_k N_k + 1e-6);
             pen_sum (0-d array): sum over rows of -sum_j p_j log q_j.
    """
    check_mdn_inputs(y, target)
    ell, _ = _offset_terms(y, target)
    pen, _ = _pen_terms(y, target)
    return (ell * (1.0 - target[:, 4])).sum(), pen.sum()


def mdn_loss_and_grad(y, target, scale):
    """Loss sums and the gradient of ``scale * (offset_sum + pen_sum)`` w.r.t. y, in one pass.

    This exact signature is the kernel-set entry ``mdn_loss_and_grad`` (Numba and CuPy kernel sets
    re-implement it and are tested against this function).

    Inputs:
        y      [N, 6M + 3]  raw network outputs (layout in the module docstring)
        target [N, 5]       target rows (dx, dy, p1, p2, p3) in normalized units, same dtype as y
        scale  float        the loss weight of both sums; the model passes 1 / (B N_max)
    Returns:
        offset_sum  0-d array  sum over rows of (1 - p3) * -log(sum_k pi_k N_k + 1e-6)
        pen_sum     0-d array  sum over rows of -sum_j p_j log q_j
        dy          [N, 6M + 3] d(scale * (offset_sum + pen_sum)) / dy, a fresh array
    """
    check_mdn_inputs(y, target)
    xp = get_xp(y)
    M = num_mixture(y)
    ell, (log_pi, a, log_sum, u, v, w, rho, cosh_r, inv_sx, inv_sy) = _offset_terms(y, target)
    pen, log_q = _pen_terms(y, target)
    row_w = 1.0 - target[:, 4:5]                             # offset weight of each row [N, 1]
    offset_sum = (ell * row_w[:, 0]).sum()
    pen_sum = pen.sum()

    dy_out = xp.empty_like(y)
    # pen: loss = -sum_j t_j log q_j, so d/d logits = q * sum_j t_j - t
    t = target[:, 2:5]
    dy_out[:, 0:3] = xp.exp(log_q) * t.sum(axis=1, keepdims=True) - t
    # offset: ell = -log_sum, d ell / d a_k = -gamma_k with gamma_k = exp(a_k - log_sum);
    # weighting gamma by the row weight makes every offset gradient of a p3 = 1 row exactly 0.
    gamma = xp.exp(a - log_sum) * row_w                      # [N, M]
    # forward was: a_k = log_pi_k + log N_k, log_pi = pi_l - logsumexp(pi_l)
    dy_out[:, 3:3 + M] = gamma.sum(axis=1, keepdims=True) * xp.exp(log_pi) - gamma
    # forward was: log N = -(w^2 + v^2)/2 - ls_x - ls_y + log cosh(r) - log 2 pi,
    #              w = (u - rho v) cosh(r) = u cosh(r) - v sinh(r)
    gw = gamma * w                                           # 0 wherever gamma underflowed
    d_u = gw * cosh_r                                        # d ell / d u = gamma w dw/du
    d_v = gamma * v - gw * (rho * cosh_r)                    # dw/dv = -sinh(r)
    # forward was: u = (dx - mu_x) / sigma_x, v = (dy - mu_y) / sigma_y, sigma = exp(ls)
    dy_out[:, 3 + M:3 + 2 * M] = -d_u * inv_sx
    dy_out[:, 3 + 2 * M:3 + 3 * M] = -d_v * inv_sy
    dy_out[:, 3 + 3 * M:3 + 4 * M] = gamma - d_u * u
    dy_out[:, 3 + 4 * M:3 + 5 * M] = gamma - d_v * v
    # dw/dr = u sinh(r) - v cosh(r) = rho w - v / cosh(r) (no cancellation of large terms);
    # d log cosh(r) / dr = rho
    dy_out[:, 3 + 5 * M:3 + 6 * M] = gw * (rho * w - v / cosh_r) - gamma * rho
    dy_out *= scale
    return offset_sum, pen_sum, dy_out
