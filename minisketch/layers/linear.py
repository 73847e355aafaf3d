"""Affine layer y = x @ W + b, and the reference weight initializers.

Weights are stored [in, out] and applied as ``x @ W`` (the magenta.js layout). Leading axes of x
are batch axes of any number ([B, D], [T, B, D], ...): they are flattened into one matmul.

``linear_backward`` returns fresh gradient arrays (nothing is accumulated).
Runs on NumPy or CuPy arrays unchanged (the array module comes from the inputs). Initializers
build NumPy arrays on the host from a ``numpy.random.Generator``.
"""
from __future__ import annotations

import numpy as np

from ..xp import get_xp


def matmul(a, b, out=None):
    """a @ b (into ``out`` when given): the array module's own ``matmul``.

    The reference of the ``matmul`` kernel, through which the recurrent layers do every matrix
    product of a sequence (the per-step recurrent products and the all-steps projections and
    weight gradients), so that a backend can route them to another BLAS (the Numba backend:
    MKL, when installed, ``minisketch/blas.py``). Same arguments and result as ``xp.matmul``."""
    return get_xp(a).matmul(a, b, out=out)


def linear_forward(x, W, b):
    """y = x @ W + b.

    Inputs:  x [..., D]; W [D, O]; b [O] (or None for no bias).
    Returns: y [..., O]; cache (x, W, has_bias) for ``linear_backward``.
    """
    D, O = W.shape
    lead = x.shape[:-1]
    y = (x.reshape(-1, D) @ W).reshape(*lead, O)
    if b is not None:
        y += b
    return y, (x, W, b is not None)


def linear_backward(dy, cache):
    """Gradients of ``linear_forward`` (fresh arrays).

    Inputs:  dy [..., O], the gradient of the loss w.r.t. y; cache from the forward.
    Returns: dx [..., D]; dW [D, O]; db [O] (None if the forward had no bias).
    """
    x, W, has_bias = cache
    D, O = W.shape
    x2 = x.reshape(-1, D)
    dy2 = dy.reshape(-1, O)
    # forward was: y = x @ W + b, so dx = dy @ W^T, dW = x^T @ dy (summed over rows), db = sum dy
    dx = (dy2 @ W.T).reshape(x.shape)
    dW = x2.T @ dy2
    db = dy2.sum(axis=0) if has_bias else None
    return dx, dW, db


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, dtype=np.float32):
    """[fan_in, fan_out] drawn from U(-L, L), L = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio
    2010), so activations keep their variance in both directions."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)


def orthogonal(rng: np.random.Generator, n: int, dtype=np.float32):
    """A random [n, n] orthogonal matrix, uniformly distributed (Haar measure).

    QR of a standard normal matrix, with the columns of Q multiplied by sign(diag(R)) so that the
    distribution is uniform over the orthogonal group (Mezzadri 2007)."""
    a = rng.standard_normal((n, n))
    q, r = np.linalg.qr(a)
    d = np.sign(np.diag(r))
    d[d == 0] = 1.0
    return (q * d).astype(dtype)
