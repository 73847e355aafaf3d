"""Exercise 05 (lesson 05): the bidirectional encoder's reverse pass, forward and backward.

Write each function below from lesson 05, then run ``python lessons/grade.py 05``: it compares
your functions with ``minisketch.layers.encoder`` and gradient-checks the backward, and says
"correct", "not yet implemented" or which tensor is wrong. ``--hint`` prints a hint. Use the
library's LSTM (lessons 03-04) for both directions. This file is the worked solution
(``python lessons/grade.py 05 --solution``).
"""
import numpy as np

from minisketch.layers import lstm


def reverse_index(lengths, T):
    """rev [T, B] int: the row the backward direction reads at its step t.

    rev[t, b] = L_b - 1 - t while t < L_b (sketch b read from its own last row), and t at the
    padding steps after that, so every column is a permutation of 0..T-1.
    """
    t = np.arange(T)[:, None]
    L = np.asarray(lengths)[None, :]
    return np.where(t < L, L - 1 - t, t)


def encoder_forward(x, lengths, p_fw, p_bw):
    """h = [h_fw | h_bw] [B, 2H]: each direction's h after sketch b's own last row.

    x [T, B, D] time-major rows 1..L of each sketch, then padding; lengths [B];
    p_fw, p_bw: lstm_init-style dicts (W_xh, W_hh, b) of the two directions.
    Both directions start from a zero state and use the padding mask t < L_b; run them with
    lstm.lstm_forward. Returns (h, cache), cache a dict with rev (reverse_index), last
    (lengths - 1), cache_fw and cache_bw (the two lstm_forward caches).
    """
    T, B, _ = x.shape
    H = p_fw["W_hh"].shape[0]
    mask = (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(x.dtype)
    rev = reverse_index(lengths, T)
    cols = np.arange(B)
    zero = np.zeros((B, 2 * H), dtype=x.dtype)
    hs_f, _, cache_fw = lstm.lstm_forward(x, zero, p_fw, mask=mask)
    hs_b, _, cache_bw = lstm.lstm_forward(x[rev, cols[None, :]], zero, p_bw, mask=mask)
    last = np.asarray(lengths) - 1
    h = np.concatenate([hs_f[last, cols], hs_b[last, cols]], axis=1)
    return h, dict(rev=rev, last=last, cache_fw=cache_fw, cache_bw=cache_bw)


def encoder_backward(dh, cache):
    """Backward of encoder_forward: dh [B, 2H] -> (dx [T, B, D], grads_fw, grads_bw), the
    grads dicts keyed W_xh, W_hh, b like the parameters (use lstm.lstm_backward)."""
    rev, last = cache["rev"], cache["last"]
    T, B = rev.shape
    H = dh.shape[1] // 2
    cols = np.arange(B)
    dhs_f, dhs_b = np.zeros((T, B, H)), np.zeros((T, B, H))
    dhs_f[last, cols] = dh[:, :H]                 # forward was: h_fw = hs_f[L - 1, b] (gather)
    dhs_b[last, cols] = dh[:, H:]
    dx, _, g_fw = lstm.lstm_backward(dhs_f, None, cache["cache_fw"])
    dx_rev, _, g_bw = lstm.lstm_backward(dhs_b, None, cache["cache_bw"])
    dx = dx.copy()
    dx[rev, cols[None, :]] += dx_rev              # forward was: x_rev = x[rev, b] (a permutation)
    return dx, g_fw, g_bw
