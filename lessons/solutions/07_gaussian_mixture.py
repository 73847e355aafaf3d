"""Exercise 07 (lesson 07): the mixture loss of one decoder output row, and its gradient.

Write each function below from lesson 07, then run ``python lessons/grade.py 07``: it compares
your functions with ``minisketch.layers.mdn`` and gradient-checks the gradient, and says
"correct", "not yet implemented" or which tensor is wrong. ``--hint`` prints a hint. The
textbook formulas are fine here (the checks stay away from rho -> 1). This file is the worked
solution (``python lessons/grade.py 07 --solution``).

Layout of a raw output row y [6M + 3]:
``[pen logits (3) | pi logits (M) | mu_x (M) | mu_y (M) | log sigma_x (M) | log sigma_y (M) |
rho logits (M)]``; a target row is stroke-5 ``(dx, dy, p1, p2, p3)``.
"""
import numpy as np


def split(y):
    """Given: [pen logits, pi logits, mu_x, mu_y, log sigma_x, log sigma_y, rho logits]."""
    M = (y.shape[1] - 3) // 6
    return [y[:, :3]] + [y[:, 3 + k * M:3 + (k + 1) * M] for k in range(6)]


def softmax(a):
    """Given: a softmax over the last axis."""
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def mixture_loss(y, target):
    """(offset_sum, pen_sum) over the N rows of y [N, 6M+3] and target [N, 5]:
    offset: -log(sum_k pi_k N_k(dx, dy) + 1e-6) summed over real rows (p3 = 0) only;
    pen: -sum_j p_j log q_j summed over every row. Both floats."""
    pen_l, pi_l, mu_x, mu_y, ls_x, ls_y, r = split(y)
    pi, q = softmax(pi_l), softmax(pen_l)
    sx, sy, rho = np.exp(ls_x), np.exp(ls_y), np.tanh(r)
    n1, n2 = target[:, :1] - mu_x, target[:, 1:2] - mu_y
    Z = (n1 / sx) ** 2 + (n2 / sy) ** 2 - 2 * rho * n1 * n2 / (sx * sy)
    dens = np.exp(-Z / (2 * (1 - rho ** 2))) / (2 * np.pi * sx * sy * np.sqrt(1 - rho ** 2))
    offset = -np.log((pi * dens).sum(axis=1) + 1e-6) * (1 - target[:, 4])
    pen = -(target[:, 2:] * np.log(q)).sum(axis=1)
    return float(offset.sum()), float(pen.sum())


def mixture_grad(y, target, scale):
    """d(scale * (offset_sum + pen_sum)) / dy, [N, 6M+3] in y's layout."""
    pen_l, pi_l, mu_x, mu_y, ls_x, ls_y, r = split(y)
    pi, q = softmax(pi_l), softmax(pen_l)
    sx, sy, rho = np.exp(ls_x), np.exp(ls_y), np.tanh(r)
    u, v = (target[:, :1] - mu_x) / sx, (target[:, 1:2] - mu_y) / sy
    Q = 1 - rho ** 2
    Z = u * u + v * v - 2 * rho * u * v
    dens = np.exp(-Z / (2 * Q)) / (2 * np.pi * sx * sy * np.sqrt(Q))
    gamma = pi * dens / ((pi * dens).sum(axis=1, keepdims=True) + 1e-6)   # responsibilities
    gamma = gamma * (1 - target[:, 4:5])                  # padding rows: no offset gradient
    g = np.concatenate([
        q - target[:, 2:],                                # pen logits
        pi * gamma.sum(axis=1, keepdims=True) - gamma,    # pi logits
        -gamma * (u - rho * v) / (Q * sx),                # mu_x
        -gamma * (v - rho * u) / (Q * sy),                # mu_y
        gamma - gamma * u * (u - rho * v) / Q,            # log sigma_x
        gamma - gamma * v * (v - rho * u) / Q,            # log sigma_y
        -gamma * (u * v - rho * Z / Q + rho)], axis=1)    # rho logits
    return scale * g
