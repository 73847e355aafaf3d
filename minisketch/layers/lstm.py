"""LSTM cell over a padded, time-major sequence: step functions and the loop over time.

Math (SPEC section 3; gate blocks i, j, f, o; forget bias +1 added at run time, not stored):

    a = x_t @ W_xh + h_prev @ W_hh + b                       [B, 4H] = [a_i | a_j | a_f | a_o]
    i = sigmoid(a_i)   g = tanh(a_j) * keep_t   f = sigmoid(a_f + 1)   o = sigmoid(a_o)
    c = f * c_prev + i * g;   h = o * tanh(c)

``keep_t`` is the recurrent-dropout multiplier of the candidate (Semeniuta et al. 2016): 0 or
1/keep_prob, None for none. ``mask_t`` is 1 at real steps and 0 at padding steps, where the state
(and so its gradient) passes through unchanged. The state is one array [B, 2H] = [c | h].
Parameters: W_xh [D, 4H] Glorot-uniform, W_hh [H, 4H] four orthogonal blocks, b [4H] zeros.

The step functions write into preallocated arrays, so that a kernel set (``kernels/``) can
replace them with compiled ones of the same signature; ``lstm_forward`` / ``lstm_backward`` are
one loop over time calling them (``kernels`` picks the set; None: the functions here). All
steps' input projections are one product, and so is each weight gradient.
``lstm_backward`` returns fresh gradient arrays. NumPy or CuPy arrays, unchanged. The same math
skipping work (z projected once, only the real rows computed) is ``minisketch/fast/lstm.py``.
"""
from __future__ import annotations

import numpy as np

from ..xp import get_xp
from .activations import sigmoid
from .linear import glorot_uniform, matmul, orthogonal

FORGET_BIAS = 1.0  # added to the forget-gate pre-activation at run time (SPEC section 3)


def lstm_init(rng: np.random.Generator, input_size: int, hidden_size: int, dtype=np.float32):
    """Reference initialization (SPEC section 3). Returns {"W_xh", "W_hh", "b"} as NumPy arrays:
    W_xh [D, 4H] Glorot-uniform, W_hh [H, 4H] = four independent orthogonal [H, H] blocks, b 0."""
    D, H = input_size, hidden_size
    return {
        "W_xh": glorot_uniform(rng, D, 4 * H, dtype),
        "W_hh": np.concatenate([orthogonal(rng, H, dtype) for _ in range(4)], axis=1),
        "b": np.zeros(4 * H, dtype=dtype),
    }


def lstm_state_size(hidden_size: int) -> int:
    """Width S of the state array [B, S] = [c | h]: 2H."""
    return 2 * hidden_size


# ---------------------------------------------------------------------------------------------
# Step functions (the kernel interface): write into preallocated outputs, return nothing

def lstm_cell_forward(xw_t, hh_t, c_prev, h_prev, keep_t, mask_t, c_out, h_out, act_out):
    """Pointwise LSTM math of one time step, written into c_out, h_out, act_out.

    Inputs (B batch, H hidden; all one dtype):
        xw_t   [B, 4H]  x_t @ W_xh + b for this step (blocks i, j, f, o)
        hh_t   [B, 4H]  h_prev @ W_hh
        c_prev [B, H], h_prev [B, H]   the state entering the step
        keep_t [B, H] or None   recurrent-dropout multiplier of the candidate g
        mask_t [B] or None      nonzero = real step; 0 = padding (state passes through)
    Outputs (overwritten):
        c_out [B, H], h_out [B, H]   the state leaving the step
        act_out [B, 5H]  saved for backward: [sigmoid(a_i) | tanh(a_j) | sigmoid(a_f + 1) |
                         sigmoid(a_o) | tanh(c)], where tanh(a_j) is before dropout and c is the
                         new cell value before masking. Defined (finite) at padding steps too.
    None of the outputs may alias an input.
    """
    xp = get_xp(xw_t)
    H = c_prev.shape[1]
    a = xw_t + hh_t
    i, g, f, o, tc = (act_out[:, k * H:(k + 1) * H] for k in range(5))
    sigmoid(a[:, 0:H], out=i)
    xp.tanh(a[:, H:2 * H], out=g)
    sigmoid(a[:, 2 * H:3 * H] + FORGET_BIAS, out=f)
    sigmoid(a[:, 3 * H:4 * H], out=o)
    gd = g if keep_t is None else g * keep_t
    c = f * c_prev + i * gd
    xp.tanh(c, out=tc)
    h = o * tc
    if mask_t is None:
        c_out[...] = c
        h_out[...] = h
    else:
        m = (mask_t != 0)[:, None]
        c_out[...] = xp.where(m, c, c_prev)
        h_out[...] = xp.where(m, h, h_prev)


def lstm_cell_backward(dh_t, dc_t, c_prev, act_t, keep_t, mask_t, da_out, dc_prev_out,
                       dh_pass_out):
    """Backward of ``lstm_cell_forward`` for one step, written into da_out, dc_prev_out,
    dh_pass_out.

    Inputs:
        dh_t [B, H]   total gradient w.r.t. h_out (this step's output + the next step's h_prev)
        dc_t [B, H]   gradient w.r.t. c_out
        c_prev [B, H]; act_t [B, 5H] as saved by the forward; keep_t [B, H] or None;
        mask_t [B] or None
    Outputs (overwritten; none may alias an input):
        da_out [B, 4H]      gradient w.r.t. a = xw_t + hh_t (zero at padding steps)
        dc_prev_out [B, H]  gradient w.r.t. c_prev
        dh_pass_out [B, H]  the part of the gradient w.r.t. h_prev that does not go through
                            W_hh: dh_t at padding steps, 0 at real steps. The caller adds
                            da_out @ W_hh.T to get the full gradient w.r.t. h_prev.
    """
    xp = get_xp(dh_t)
    H = c_prev.shape[1]
    i, g, f, o, tc = (act_t[:, k * H:(k + 1) * H] for k in range(5))
    # forward was: h = o * tanh(c)
    do = dh_t * tc
    dc = dc_t + dh_t * o * (1.0 - tc * tc)
    # forward was: c = f * c_prev + i * gd, with gd = g * keep_t
    gd = g if keep_t is None else g * keep_t
    di = dc * gd
    dg = dc * i if keep_t is None else dc * i * keep_t
    df = dc * c_prev
    dcp = dc * f
    # forward was: i = sigmoid(a_i), g = tanh(a_j), f = sigmoid(a_f + 1), o = sigmoid(a_o)
    da = (di * i * (1.0 - i), dg * (1.0 - g * g), df * f * (1.0 - f), do * o * (1.0 - o))
    if mask_t is None:
        for k in range(4):
            da_out[:, k * H:(k + 1) * H] = da[k]
        dc_prev_out[...] = dcp
        dh_pass_out[...] = 0.0
    else:
        # forward was: c_out = where(m, c, c_prev), h_out = where(m, h, h_prev)
        m = (mask_t != 0)[:, None]
        for k in range(4):
            da_out[:, k * H:(k + 1) * H] = xp.where(m, da[k], 0.0)
        dc_prev_out[...] = xp.where(m, dcp, dc_t)
        dh_pass_out[...] = xp.where(m, 0.0, dh_t)


# ---------------------------------------------------------------------------------------------
# Sequence forward / backward: one loop over time each

def lstm_forward(x, state0, p, keep=None, mask=None, kernels=None):
    """Run the LSTM over a time-major sequence.

    Inputs:
        x [T, B, D]; state0 [B, 2H] = [c0 | h0]; p {"W_xh" [D, 4H], "W_hh" [H, 4H], "b" [4H]}
        keep [T, B, H] or None   recurrent-dropout multipliers (0 or 1/keep_prob)
        mask [T, B] or None      1 = real step, 0 = padding (state passes through)
        kernels  a kernel set with ``matmul`` and ``lstm_cell_forward`` (None: this module's)
    Returns:
        hs [T, B, H]     h after every step (at a padding step: the carried h); a view into
                         the cache: read it, do not write into it
        state_T [B, 2H]  the final state [c_T | h_T]; cache for ``lstm_backward``
    """
    mm = matmul if kernels is None else kernels.matmul
    cell_forward = lstm_cell_forward if kernels is None else kernels.lstm_cell_forward
    xp = get_xp(x)
    T, B, D = x.shape
    H = p["W_hh"].shape[0]
    dt = xp.result_type(x.dtype, p["W_xh"].dtype)
    # the input projections do not depend on the recurrence: one product for all steps
    XW = mm(x.reshape(T * B, D), p["W_xh"]).reshape(T, B, 4 * H)
    XW += p["b"]
    hs = xp.empty((T + 1, B, H), dtype=dt)       # hs[t] is the h entering step t
    cs = xp.empty((T + 1, B, H), dtype=dt)
    cs[0], hs[0] = state0[:, :H], state0[:, H:]
    acts = xp.empty((T, B, 5 * H), dtype=dt)     # what each step's backward needs
    hh = xp.empty((B, 4 * H), dtype=dt)
    for t in range(T):
        mm(hs[t], p["W_hh"], out=hh)
        cell_forward(XW[t], hh, cs[t], hs[t], None if keep is None else keep[t],
                     None if mask is None else mask[t], cs[t + 1], hs[t + 1], acts[t])
    state_T = xp.concatenate([cs[T], hs[T]], axis=1)
    return hs[1:], state_T, (x, p, keep, mask, hs, cs, acts, kernels)


def lstm_backward(dhs, dstate_T, cache):
    """Gradients of ``lstm_forward`` (fresh arrays, nothing accumulated).

    Inputs:
        dhs [T, B, H] or None       gradient w.r.t. hs (None = zeros)
        dstate_T [B, 2H] or None    gradient w.r.t. state_T (None = zeros)
    Returns:
        dx [T, B, D]; dstate0 [B, 2H]; grads {"W_xh", "W_hh", "b"} shaped like the params.
    """
    x, p, keep, mask, hs, cs, acts, kernels = cache
    mm = matmul if kernels is None else kernels.matmul
    cell_backward = lstm_cell_backward if kernels is None else kernels.lstm_cell_backward
    xp = get_xp(x)
    T, B, D = x.shape
    H = p["W_hh"].shape[0]
    dt = hs.dtype
    dA = xp.empty((T, B, 4 * H), dtype=dt)       # gradient w.r.t. a at every step
    dh = xp.empty((B, H), dtype=dt)              # total gradient w.r.t. h_out of step t
    dh_next = xp.zeros((B, H), dtype=dt)         # gradient w.r.t. h_prev of step t + 1
    dh_pass = xp.empty((B, H), dtype=dt)
    dc = xp.zeros((B, H), dtype=dt)              # gradient w.r.t. c_out of step t
    dc_prev = xp.empty((B, H), dtype=dt)
    if dstate_T is not None:
        dc[...] = dstate_T[:, :H]
        dh_next[...] = dstate_T[:, H:]
    for t in range(T - 1, -1, -1):
        # forward was: h_out of step t is both the output hs[t] and the next step's h_prev
        if dhs is None:
            dh[...] = dh_next
        else:
            xp.add(dhs[t], dh_next, out=dh)
        cell_backward(dh, dc, cs[t], acts[t], None if keep is None else keep[t],
                      None if mask is None else mask[t], dA[t], dc_prev, dh_pass)
        # forward was: hh = h_prev @ W_hh (and h_out = h_prev at padding steps)
        mm(dA[t], p["W_hh"].T, out=dh_next)
        dh_next += dh_pass
        dc, dc_prev = dc_prev, dc
    # forward was: XW = X @ W_xh + b and hh_t = h_prev_t @ W_hh: one product each over all steps
    dA2 = dA.reshape(T * B, 4 * H)
    dx = mm(dA2, p["W_xh"].T).reshape(T, B, D)
    grads = {
        "W_xh": mm(x.reshape(T * B, D).T, dA2),
        "W_hh": mm(hs[:T].reshape(T * B, H).T, dA2),
        "b": dA2.sum(axis=0),
    }
    return dx, xp.concatenate([dc, dh_next], axis=1), grads


def lstm_step(x_t, state, p, kernels=None):
    """One inference step (no dropout, no mask, no cache); same numbers as ``lstm_forward``.

    Inputs: x_t [B, D]; state [B, 2H] = [c | h]; p as for ``lstm_forward``.
    Returns: h [B, H]; new_state [B, 2H].
    """
    mm = matmul if kernels is None else kernels.matmul
    cell_forward = lstm_cell_forward if kernels is None else kernels.lstm_cell_forward
    xp = get_xp(x_t)
    H = p["W_hh"].shape[0]
    B = x_t.shape[0]
    dt = xp.result_type(x_t.dtype, p["W_xh"].dtype)
    xw = mm(x_t, p["W_xh"])
    xw += p["b"]
    c_prev = xp.ascontiguousarray(state[:, :H], dtype=dt)
    h_prev = xp.ascontiguousarray(state[:, H:], dtype=dt)
    hh = mm(h_prev, p["W_hh"])
    c, h = xp.empty((B, H), dtype=dt), xp.empty((B, H), dtype=dt)
    cell_forward(xw, hh, c_prev, h_prev, None, None, c, h, xp.empty((B, 5 * H), dtype=dt))
    return h, xp.concatenate([c, h], axis=1)
