"""Exercise 04 (lesson 04): backpropagation through time over a padded (masked) batch.

The forward pass over the sequence is given; write its backward, then run
``python lessons/grade.py 04``: it compares your gradients with ``lstm_backward`` and
gradient-checks them, and says "correct", "not yet implemented" or which tensor is wrong.
``--hint`` prints a hint. This file is the worked solution
(``python lessons/grade.py 04 --solution``).
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
    x, W_xh, W_hh = cache["x"], cache["W_xh"], cache["W_hh"]
    T, B, D = x.shape
    H = W_hh.shape[0]
    keep = np.ones((T, B, H)) if cache["keep"] is None else cache["keep"]
    mask = np.ones((T, B)) if cache["mask"] is None else cache["mask"]
    dA = np.zeros((T, B, 4 * H))
    dc_next, dh_next = dstate_T[:, :H].copy(), dstate_T[:, H:].copy()
    for t in reversed(range(T)):
        i, g, f, o, tc = (cache[k][t] for k in ("i", "g", "f", "o", "tc"))
        m = mask[t][:, None]
        dh = dhs[t] + dh_next                      # h_t feeds the loss and the next step
        dc = dc_next + dh * o * (1 - tc * tc)      # forward was: h = o * tanh(c)
        do = dh * tc
        di, dg = dc * g * keep[t], dc * i * keep[t]  # forward was: c = f c_prev + i g keep
        df = dc * cache["c_prev"][t]
        da = np.concatenate([di * i * (1 - i), dg * (1 - g * g), df * f * (1 - f),
                             do * o * (1 - o)], axis=1)
        dA[t] = m * da                             # a padding step computed nothing
        dc_next = m * (dc * f) + (1 - m) * dc_next   # padding: the state passed through
        dh_next = dA[t] @ W_hh.T + (1 - m) * dh
    dA2 = dA.reshape(T * B, 4 * H)                 # every step's weight gradient: one matmul
    grads = {"W_xh": x.reshape(T * B, D).T @ dA2,
             "W_hh": cache["h_prev"].reshape(T * B, H).T @ dA2, "b": dA2.sum(axis=0)}
    return (dA2 @ W_xh.T).reshape(T, B, D), np.concatenate([dc_next, dh_next], 1), grads
