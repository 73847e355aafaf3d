"""Exercise 04 (lesson 04): backpropagation through time over a padded (masked) batch.

The forward pass over the sequence is given; write its backward, then run
``python lessons/grade.py 04``: it compares your gradients with ``lstm_backward`` and
gradient-checks them, and says "correct", "not yet implemented" or which tensor is wrong.
``--hint`` prints a hint. The worked solution is
lessons/solutions/04_backprop_through_time.py: try first.
"""
import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def lstm_sequence_forward(x, state0, W_xh, W_hh, b, keep=None, mask=None):
    """Given: the LSTM over a time-major batch with padding.

    x [T, B, D]; state0 [B, 2H] = [c0 | h0]; keep [T, B, H] or None (recurrent dropout of g);
    mask [T, B] or None: 1 while sequence b is running, 0 at its padding steps, where the
    state passes through unchanged.
    Returns (hs [T, B, H], state_T [B, 2H], cache), cache a dict with x, keep, mask, W_xh, W_hh
    and, stacked over the steps t, the state entering each step (c_prev, h_prev [T, B, H]) and
    the step's activations i, g, f, o, tc [T, B, H] (g before dropout, tc = tanh(new c)).
    """
    T, B, _ = x.shape
    H = W_hh.shape[0]
    keep = np.ones((T, B, H)) if keep is None else keep
    mask = np.ones((T, B)) if mask is None else mask
    XW = (x.reshape(T * B, -1) @ W_xh).reshape(T, B, 4 * H) + b    # one matmul for all steps
    c, h = state0[:, :H], state0[:, H:]
    saved = {k: np.zeros((T, B, H)) for k in ("c_prev", "h_prev", "i", "g", "f", "o", "tc")}
    hs = np.zeros((T, B, H))
    for t in range(T):
        a = XW[t] + h @ W_hh
        i, g = sigmoid(a[:, :H]), np.tanh(a[:, H:2 * H])
        f, o = sigmoid(a[:, 2 * H:3 * H] + 1.0), sigmoid(a[:, 3 * H:])
        c_new = f * c + i * g * keep[t]
        tc = np.tanh(c_new)
        for k, v in (("c_prev", c), ("h_prev", h), ("i", i), ("g", g), ("f", f), ("o", o),
                     ("tc", tc)):
            saved[k][t] = v
        m = mask[t][:, None]
        c = m * c_new + (1 - m) * c
        h = m * (o * tc) + (1 - m) * h
        hs[t] = h
    cache = dict(x=x, keep=keep, mask=mask, W_xh=W_xh, W_hh=W_hh, **saved)
    return hs, np.concatenate([c, h], axis=1), cache


def lstm_sequence_backward(dhs, dstate_T, cache):
    """Backward of lstm_sequence_forward, through time.

    dhs [T, B, H]: dL/dhs; dstate_T [B, 2H]: dL/dstate_T; cache: the forward's dict
    (keep and mask there may be None: read them as all ones).
    Returns (dx [T, B, D], dstate0 [B, 2H], grads), grads a dict with W_xh [D, 4H],
    W_hh [H, 4H] and b [4H].
    """
    raise NotImplementedError("lstm_sequence_backward: walk t = T-1 ... 0 carrying dh_next and "
                              "dc_next (lesson 04, section 2)")
