"""Exercise 07 (lesson 07): the mixture loss of one decoder output row, and its gradient.

Write each function below from lesson 07, then run ``python lessons/grade.py 07``: it compares
your functions with ``minisketch.layers.mdn`` and gradient-checks the gradient, and says
"correct", "not yet implemented" or which tensor is wrong. ``--hint`` prints a hint. The
textbook formulas are fine here (the checks stay away from rho -> 1). The worked solution is
lessons/solutions/07_gaussian_mixture.py: try first.

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
    raise NotImplementedError("mixture_loss: the density and the two sums of lesson 07, "
                              "section 1")


def mixture_grad(y, target, scale):
    """d(scale * (offset_sum + pen_sum)) / dy, [N, 6M+3] in y's layout."""
    raise NotImplementedError("mixture_grad: the responsibilities gamma, then the chain rule "
                              "through each raw output (lesson 07, section 2)")
