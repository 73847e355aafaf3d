"""Exercise 03 (lesson 03): one LSTM step, forward and backward.

Write each function below from lesson 03's derivation, then run ``python lessons/grade.py 03``:
it compares your step with the library's (``lstm_cell_forward``, and ``lstm_backward`` with
T = 1) and gradient-checks your backward, and says, per function, "correct", "not yet
implemented" or which tensor is wrong. ``--hint`` prints a hint. The worked solution is
lessons/solutions/03_lstm_cell.py: try first.
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
    raise NotImplementedError("lstm_step_forward: one matmul for the four gate blocks, then "
                              "the six lines of lesson 03, section 1")


def lstm_step_backward(dh, dc, cache, W_xh, W_hh):
    """Backward of lstm_step_forward.

    dh [B, H], dc [B, H]: dL/dh and dL/dc of the step's outputs (dc comes from the next
    step's c_prev). cache: lstm_step_forward's dict.
    Returns a dict of gradients: x [B, D], h_prev [B, H], c_prev [B, H], W_xh [D, 4H],
    W_hh [H, 4H], b [4H].
    """
    raise NotImplementedError("lstm_step_backward: undo the forward lines bottom-up (lesson 03, "
                              "section 2)")
