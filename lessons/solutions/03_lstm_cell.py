"""Exercise 03 (lesson 03): one LSTM step, forward and backward.

Write each function below from lesson 03's derivation, then run ``python lessons/grade.py 03``:
it compares your step with the library's (``lstm_cell_forward``, and ``lstm_backward`` with
T = 1) and gradient-checks your backward, and says, per function, "correct", "not yet
implemented" or which tensor is wrong. ``--hint`` prints a hint. This file is the worked
solution (``python lessons/grade.py 03 --solution``).
"""
import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def lstm_step_forward(x, c_prev, h_prev, W_xh, W_hh, b, keep=None):
    """One LSTM step; gate blocks in the order i, j, f, o; forget bias +1 added here.

    x [B, D], c_prev [B, H], h_prev [B, H], W_xh [D, 4H], W_hh [H, 4H], b [4H];
    keep [B, H] or None: recurrent-dropout multiplier of the candidate g.
    Returns (c [B, H], h [B, H], cache), cache a dict with the keys
    x, c_prev, h_prev, i, g, f, o, tc (tanh of the new c) and keep, where g = tanh(a_j) is the
    candidate *before* dropout.
    """
    H = W_hh.shape[0]
    a = x @ W_xh + h_prev @ W_hh + b
    i = sigmoid(a[:, :H])
    g = np.tanh(a[:, H:2 * H])
    f = sigmoid(a[:, 2 * H:3 * H] + 1.0)
    o = sigmoid(a[:, 3 * H:])
    gd = g if keep is None else g * keep
    c = f * c_prev + i * gd
    tc = np.tanh(c)
    h = o * tc
    cache = dict(x=x, c_prev=c_prev, h_prev=h_prev, i=i, g=g, f=f, o=o, tc=tc, keep=keep)
    return c, h, cache


def lstm_step_backward(dh, dc, cache, W_xh, W_hh):
    """Backward of lstm_step_forward.

    dh [B, H], dc [B, H]: dL/dh and dL/dc of the step's outputs (dc comes from the next
    step's c_prev). cache: lstm_step_forward's dict.
    Returns a dict of gradients: x [B, D], h_prev [B, H], c_prev [B, H], W_xh [D, 4H],
    W_hh [H, 4H], b [4H].
    """
    i, g, f, o, tc, keep = (cache[k] for k in ("i", "g", "f", "o", "tc", "keep"))
    gd = g if keep is None else g * keep
    do = dh * tc                                   # forward was: h = o * tanh(c)
    dc = dc + dh * o * (1.0 - tc * tc)
    df = dc * cache["c_prev"]                      # forward was: c = f c_prev + i gd
    di = dc * gd
    dgd = dc * i
    dg = dgd if keep is None else dgd * keep       # forward was: gd = g * keep
    da = np.concatenate([di * i * (1 - i), dg * (1 - g * g), df * f * (1 - f),
                         do * o * (1 - o)], axis=1)  # sigmoid' = s(1 - s), tanh' = 1 - tanh^2
    return {"x": da @ W_xh.T, "h_prev": da @ W_hh.T, "c_prev": dc * f,
            "W_xh": cache["x"].T @ da, "W_hh": cache["h_prev"].T @ da, "b": da.sum(axis=0)}
