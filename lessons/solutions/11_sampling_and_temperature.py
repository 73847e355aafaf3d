"""Exercise 11 (lesson 11): drawing from a softmax with a temperature, and one sampling step.

Write each function below from lesson 11, then run ``python lessons/grade.py 11``: it draws
with your functions and with ``minisketch.sampling`` from the same random numbers and requires
the same rows, and says "correct", "not yet implemented" or where they differ. ``--hint``
prints a hint. This file is the worked solution (``python lessons/grade.py 11 --solution``).
"""
import math

import numpy as np


def categorical(logits, u, tau):
    """One draw per row from softmax(logits / tau) by the inverse CDF.

    logits [a, K]; u [a] uniforms in (0, 1]. Row r gets the first k whose cumulative weight
    reaches u[r] times the row's total weight. Returns int [a] in 0..K-1.
    """
    w = np.exp((logits - logits.max(axis=1, keepdims=True)) / tau)   # unnormalized is enough
    c = np.cumsum(w, axis=1)
    return (c >= (u * c[:, -1])[:, None]).argmax(axis=1)


def sample_step(y, M, tau, u, e):
    """The next row of every sketch from the decoder's raw outputs y [a, 6M+3].

    u [a, 2]: the uniforms of the pen draw (column 0) and of the component draw (column 1);
    e [a, 2]: two independent standard normals per row. Temperature tau sharpens both softmaxes
    (divide the logits by tau) and scales each sigma by sqrt(tau).
    Returns (offsets [a, 2], pen [a] int: 0 down, 1 lift, 2 end, component [a] int).
    """
    pen = categorical(y[:, :3], u[:, 0], tau)
    k = categorical(y[:, 3:3 + M], u[:, 1], tau)
    rows = np.arange(len(y))
    mx, my = y[rows, 3 + M + k], y[rows, 3 + 2 * M + k]
    sx = np.exp(y[rows, 3 + 3 * M + k]) * math.sqrt(tau)
    sy = np.exp(y[rows, 3 + 4 * M + k]) * math.sqrt(tau)
    rho = np.tanh(y[rows, 3 + 5 * M + k])
    dx = mx + sx * e[:, 0]
    dy = my + sy * (rho * e[:, 0] + np.sqrt(1 - rho ** 2) * e[:, 1])   # correlated with dx
    return np.stack([dx, dy], axis=1), pen, k
