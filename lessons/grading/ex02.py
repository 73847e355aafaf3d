"""Lesson 02's checks: the linear backward against linear_backward, the checker against
gradcheck.numerical_grad (a square weight matrix catches transposed products)."""
import numpy as np

from minisketch import gradcheck
from minisketch.layers import linear

from grading import Check, Wrong, compare, unpack


def check_linear_backward(fn):
    rng = np.random.default_rng(2)
    for N, D, O in ((5, 4, 3), (4, 4, 4), (1, 3, 2)):       # square: a transpose still fits
        x, W, b = rng.standard_normal((N, D)), rng.standard_normal((D, O)), rng.standard_normal(O)
        dy = rng.standard_normal((N, O))
        _, cache = linear.linear_forward(x, W, b)
        want = linear.linear_backward(dy, cache)
        got = unpack(fn(dy, x.copy(), W.copy()), 3, "dx, dW, db")
        for name, g, w in zip(("dx", "dW", "db"), got, want):
            compare(f"{name} (N={N}, D={D}, O={O})", g, w, 1e-12)


def check_numerical_grad(fn):
    rng = np.random.default_rng(3)
    x, W = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    G = rng.standard_normal((3, 2))

    def f():
        return float(np.sum(np.tanh(x @ W) * G))

    W0 = W.copy()
    got = fn(f, W, 1e-6)
    if not np.array_equal(W, W0):
        raise Wrong("theta was not restored exactly after nudging: put the old value back")
    want = gradcheck.numerical_grad(f, W, eps=1e-6)
    compare("numeric dL/dW", got, want, 1e-12)


CHECKS = [
    Check("linear_backward", check_linear_backward, [
        "y[n, o] = sum_d x[n, d] W[d, o] + b[o]: differentiate one entry, then sum over the "
        "index that disappears.",
        "dW must have W's shape [D, O], and x.T @ dy is the only product of x [N, D] and "
        "dy [N, O] with that shape; db sums over the batch.",
        "dx = dy @ W.T, dW = x.T @ dy, db = dy.sum(axis=0).",
    ]),
    Check("numerical_grad", check_numerical_grad, [
        "Loop over every index of theta with np.ndindex(theta.shape).",
        "Save old = theta[k]; evaluate f() at old + eps and at old - eps; put old back.",
        "g[k] = (f_plus - f_minus) / (2 * eps), into g = np.zeros_like(theta).",
    ]),
]
