"""Exercise 05 (lesson 05): the bidirectional encoder's reverse pass, forward and backward.

Write each function below from lesson 05, then run ``python lessons/grade.py 05``: it compares
your functions with ``minisketch.layers.encoder`` and gradient-checks the backward, and says
"correct", "not yet implemented" or which tensor is wrong. ``--hint`` prints a hint. Use the
library's LSTM (lessons 03-04) for both directions. The worked solution is
lessons/solutions/05_bidirectional_encoder.py: try first.
"""
import numpy as np

from minisketch.layers import lstm


def reverse_index(lengths, T):
    """rev [T, B] int: the row the backward direction reads at its step t.

    rev[t, b] = L_b - 1 - t while t < L_b (sketch b read from its own last row), and t at the
    padding steps after that, so every column is a permutation of 0..T-1.
    """
    raise NotImplementedError("reverse_index: L_b - 1 - t while t < L_b, else t (lesson 05, "
                              "section 2)")


def encoder_forward(x, lengths, p_fw, p_bw):
    """h = [h_fw | h_bw] [B, 2H]: each direction's h after sketch b's own last row.

    x [T, B, D] time-major rows 1..L of each sketch, then padding; lengths [B];
    p_fw, p_bw: lstm_init-style dicts (W_xh, W_hh, b) of the two directions.
    Both directions start from a zero state and use the padding mask t < L_b; run them with
    lstm.lstm_forward. Returns (h, cache), cache a dict with rev (reverse_index), last
    (lengths - 1), cache_fw and cache_bw (the two lstm_forward caches).
    """
    raise NotImplementedError("encoder_forward: both directions with lstm.lstm_forward, the "
                              "backward one on x gathered with reverse_index (lesson 05, "
                              "section 3)")


def encoder_backward(dh, cache):
    """Backward of encoder_forward: dh [B, 2H] -> (dx [T, B, D], grads_fw, grads_bw), the
    grads dicts keyed W_xh, W_hh, b like the parameters (use lstm.lstm_backward)."""
    raise NotImplementedError("encoder_backward: scatter dh to the last steps, lstm.lstm_backward "
                              "both ways, scatter dx_rev back with rev (lesson 05, section 4)")
