"""Exercise 02 (lesson 02): the linear layer's backward pass and a gradient checker.

Write each function below from lesson 02's derivation, then run
``python lessons/grade.py 02``: it runs the lesson's checks on your functions (equality with
``minisketch.layers.linear`` and ``minisketch.gradcheck``) and says, per function, "correct",
"not yet implemented" or which tensor is wrong. ``--hint`` prints a hint. This file is the
worked solution (``python lessons/grade.py 02 --solution``).
"""
import numpy as np


def linear_backward(dy, x, W):
    """Backward of y = x @ W + b.

    dy [N, O] upstream gradient dL/dy, x [N, D] the layer's input, W [D, O] its weights.
    Returns (dx [N, D], dW [D, O], db [O]).
    """
    dx = dy @ W.T                    # dL/dx[n, d] = sum_o dy[n, o] W[d, o]
    dW = x.T @ dy                    # dL/dW[d, o] = sum_n x[n, d] dy[n, o]
    db = dy.sum(axis=0)              # every row used the same b
    return dx, dW, db


def numerical_grad(f, theta, eps=1e-6):
    """Central differences of the scalar function f() with respect to the array theta.

    f takes no arguments and reads theta's current contents; nudge each entry by +-eps in
    place, and restore it exactly afterwards. Returns an array shaped like theta.
    """
    g = np.zeros_like(theta, dtype=np.float64)
    for k in np.ndindex(theta.shape):
        old = theta[k]
        theta[k] = old + eps
        fp = f()
        theta[k] = old - eps
        fm = f()
        theta[k] = old
        g[k] = (fp - fm) / (2 * eps)
    return g
