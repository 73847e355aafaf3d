"""Layer-normalized LSTM cell (Ba, Kiros & Hinton 2016) over a time-major sequence.

Math (SPEC section 3; gate blocks i, j, f, o; no separate bias; forget bias +1 at run time):

    a = x_t @ W_xh + h_prev @ W_hh                          [B, 4H] = [a_i | a_j | a_f | a_o]
    y_k = gamma_k * LN(a_k) + beta_k   for each gate block k, LN(v) = (v - mean) / sqrt(var + 1e-3)
    i = sigmoid(y_i)   g = tanh(y_j) * keep_t   f = sigmoid(y_f + 1)   o = sigmoid(y_o)
    c = f * c_prev + i * g                                  (the un-normalized c is carried)
    h = o * tanh(gamma_c * LN(c) + beta_c)

``keep_t`` and ``mask_t`` as in ``lstm.py``. State [B, 2H] = [c | h]. Parameters: W_xh [D, 4H]
Glorot-uniform, W_hh [H, 4H] four orthogonal blocks, ln_gamma [4H] ones, ln_beta [4H] zeros,
ln_c_gamma [H] ones, ln_c_beta [H] zeros. The step functions also serve the HyperLSTM.

Laid out as ``lstm.py``: step functions that write into preallocated arrays, and
``ln_lstm_forward`` / ``ln_lstm_backward`` as one loop over time each, the input projections and
weight gradients one product (or one reduction) over all steps. The backward returns fresh
arrays. NumPy or CuPy arrays, unchanged. The fast twin is ``minisketch/fast/layer_norm_lstm.py``.
"""
from __future__ import annotations

import numpy as np

from ..xp import get_xp
from .activations import sigmoid
from .linear import glorot_uniform, matmul, orthogonal
from .lstm import FORGET_BIAS

LN_EPS = 1e-3  # added to the variance inside the square root (SPEC section 3)


def ln_lstm_init(rng: np.random.Generator, input_size: int, hidden_size: int, dtype=np.float32):
    """Reference initialization. Returns {"W_xh" [D, 4H] Glorot-uniform, "W_hh" [H, 4H] four
    orthogonal blocks, "ln_gamma" [4H] 1, "ln_beta" [4H] 0, "ln_c_gamma" [H] 1, "ln_c_beta" [H] 0}
    as NumPy arrays."""
    D, H = input_size, hidden_size
    return {
        "W_xh": glorot_uniform(rng, D, 4 * H, dtype),
        "W_hh": np.concatenate([orthogonal(rng, H, dtype) for _ in range(4)], axis=1),
        "ln_gamma": np.ones(4 * H, dtype=dtype),
        "ln_beta": np.zeros(4 * H, dtype=dtype),
        "ln_c_gamma": np.ones(H, dtype=dtype),
        "ln_c_beta": np.zeros(H, dtype=dtype),
    }


def ln_lstm_state_size(hidden_size: int) -> int:
    """Width S of the state array [B, S] = [c | h]: 2H."""
    return 2 * hidden_size


# ---------------------------------------------------------------------------------------------
# Layer norm over the last axis (helpers of the reference step functions)

def _ln(v):
    """v [..., N] -> (xhat [..., N], rstd [..., 1]): xhat = (v - mean) * rstd,
    rstd = 1 / sqrt(var + LN_EPS); two-pass variance."""
    xp = get_xp(v)
    d = v - v.mean(axis=-1, keepdims=True)
    rstd = 1.0 / xp.sqrt((d * d).mean(axis=-1, keepdims=True) + LN_EPS)
    return d * rstd, rstd


def _ln_backward(dxhat, xhat, rstd):
    """Gradient w.r.t. v of xhat = LN(v), given dxhat [..., N], xhat [..., N], rstd [..., 1].

    forward was: xhat = (v - mean(v)) * (var(v) + eps)^(-1/2); the mean and variance paths give
    dv = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))."""
    return rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                   - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))


# ---------------------------------------------------------------------------------------------
# Step functions (the kernel interface): write into preallocated outputs, return nothing

def ln_lstm_cell_forward(a_t, c_prev, h_prev, keep_t, mask_t, gamma, beta, gamma_c, beta_c,
                         c_out, h_out, act_out, norm_out, rstd_out):
    """Pointwise layer-norm LSTM math of one step, written into the five outputs.

    Inputs (B batch, H hidden; one dtype):
        a_t [B, 4H]    raw gate pre-activations (x_t @ W_xh + h_prev @ W_hh; for the HyperLSTM
                       the modulated sum), blocks i, j, f, o
        c_prev [B, H], h_prev [B, H]   the state entering the step
        keep_t [B, H] or None   recurrent-dropout multiplier of the candidate
        mask_t [B] or None      nonzero = real step; 0 = padding (state passes through)
        gamma [4H], beta [4H]   gate layer-norm scale and shift
        gamma_c [H], beta_c [H] layer-norm scale and shift of c
    Outputs (overwritten; none may alias an input):
        c_out [B, H], h_out [B, H]   the state leaving the step
        act_out [B, 5H]   [sigmoid(y_i) | tanh(y_j) | sigmoid(y_f + 1) | sigmoid(y_o) |
                           tanh(gamma_c * LN(c) + beta_c)]   (tanh(y_j) before dropout)
        norm_out [B, 5H]  the normalized values LN(a_i) | LN(a_j) | LN(a_f) | LN(a_o) | LN(c)
        rstd_out [B, 5]   1 / sqrt(var + 1e-3) of the blocks i, j, f, o and of c
    At padding steps act_out, norm_out and rstd_out hold finite values of the discarded update.
    """
    xp = get_xp(a_t)
    B, H = c_prev.shape
    xhat, rstd = _ln(a_t.reshape(B, 4, H))
    y = xhat * gamma.reshape(4, H) + beta.reshape(4, H)     # [B, 4, H]
    norm_out[:, :4 * H] = xhat.reshape(B, 4 * H)
    rstd_out[:, :4] = rstd[:, :, 0]
    i, g, f, o, tc = (act_out[:, k * H:(k + 1) * H] for k in range(5))
    sigmoid(y[:, 0], out=i)
    xp.tanh(y[:, 1], out=g)
    sigmoid(y[:, 2] + FORGET_BIAS, out=f)
    sigmoid(y[:, 3], out=o)
    gd = g if keep_t is None else g * keep_t
    c = f * c_prev + i * gd
    chat, rstd_c = _ln(c)
    norm_out[:, 4 * H:] = chat
    rstd_out[:, 4:5] = rstd_c
    xp.tanh(chat * gamma_c + beta_c, out=tc)
    h = o * tc
    if mask_t is None:
        c_out[...] = c
        h_out[...] = h
    else:
        m = (mask_t != 0)[:, None]
        c_out[...] = xp.where(m, c, c_prev)
        h_out[...] = xp.where(m, h, h_prev)


def ln_lstm_cell_backward(dh_t, dc_t, c_prev, keep_t, mask_t, gamma, gamma_c, act_t, norm_t,
                          rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out):
    """Backward of ``ln_lstm_cell_forward`` for one step.

    Inputs:
        dh_t [B, H]   total gradient w.r.t. h_out (this step's output + the next step's h_prev)
        dc_t [B, H]   gradient w.r.t. c_out
        c_prev [B, H]; keep_t [B, H] or None; mask_t [B] or None; gamma [4H]; gamma_c [H]
        act_t [B, 5H], norm_t [B, 5H], rstd_t [B, 5]   as saved by the forward
    Outputs (overwritten; none may alias an input):
        da_out [B, 4H]      gradient w.r.t. the raw pre-activations a_t (0 at padding steps)
        dy_out [B, 5H]      gradient w.r.t. the layer-norm outputs y_i | y_j | y_f | y_o | y_c
                            (y = gamma * LN(.) + beta; 0 at padding steps). The caller forms
                            dgamma = sum(dy * norm), dbeta = sum(dy) over all steps at once.
        dc_prev_out [B, H]  gradient w.r.t. c_prev
        dh_pass_out [B, H]  dh_t at padding steps, 0 at real steps (the caller adds the
                            gradient that flows back through the recurrent matmul)
    """
    xp = get_xp(dh_t)
    B, H = c_prev.shape
    i, g, f, o, tc = (act_t[:, k * H:(k + 1) * H] for k in range(5))
    chat = norm_t[:, 4 * H:]
    # forward was: h = o * tanh(y_c), y_c = gamma_c * LN(c) + beta_c
    do = dh_t * tc
    dyc = dh_t * o * (1.0 - tc * tc)
    dc = dc_t + _ln_backward(dyc * gamma_c, chat, rstd_t[:, 4:5])
    # forward was: c = f * c_prev + i * gd, with gd = g * keep_t
    gd = g if keep_t is None else g * keep_t
    di = dc * gd
    dg = dc * i if keep_t is None else dc * i * keep_t
    df = dc * c_prev
    dcp = dc * f
    # forward was: i = sigmoid(y_i), g = tanh(y_j), f = sigmoid(y_f + 1), o = sigmoid(y_o)
    dy = xp.stack([di * i * (1.0 - i), dg * (1.0 - g * g), df * f * (1.0 - f),
                   do * o * (1.0 - o)], axis=1)                          # [B, 4, H]
    # forward was: y_k = gamma_k * LN(a_k) + beta_k
    xhat = norm_t[:, :4 * H].reshape(B, 4, H)
    da = _ln_backward(dy * gamma.reshape(4, H), xhat, rstd_t[:, :4, None]).reshape(B, 4 * H)
    dy = dy.reshape(B, 4 * H)
    if mask_t is None:
        da_out[...] = da
        dy_out[:, :4 * H] = dy
        dy_out[:, 4 * H:] = dyc
        dc_prev_out[...] = dcp
        dh_pass_out[...] = 0.0
    else:
        # forward was: c_out = where(m, c, c_prev), h_out = where(m, h, h_prev)
        m = (mask_t != 0)[:, None]
        da_out[...] = xp.where(m, da, 0.0)
        dy_out[:, :4 * H] = xp.where(m, dy, 0.0)
        dy_out[:, 4 * H:] = xp.where(m, dyc, 0.0)
        dc_prev_out[...] = xp.where(m, dcp, dc_t)
        dh_pass_out[...] = xp.where(m, 0.0, dh_t)


def ln_param_grads(dY, norms, H):
    """Layer-norm parameter gradients over all steps at once (one reduction each).

    dY [..., 5H] and norms [..., 5H] as written by the step functions (any leading shape).
    Returns (dgamma [4H], dbeta [4H], dgamma_c [H], dbeta_c [H]), views of two fresh [5H] arrays.
    forward was: y = gamma * norm + beta at every step, so dgamma = sum(dy * norm), dbeta = sum(dy)
    (einsum sums the products without a [..., 5H] temporary).
    """
    xp = get_xp(dY)
    n = dY.shape[-1]
    dY2, norms2 = dY.reshape(-1, n), norms.reshape(-1, n)
    dgamma = xp.einsum("ij,ij->j", dY2, norms2)
    dbeta = dY2.sum(axis=0)
    return dgamma[:4 * H], dbeta[:4 * H], dgamma[4 * H:], dbeta[4 * H:]


# ---------------------------------------------------------------------------------------------
# Sequence forward / backward: one loop over time each

def ln_lstm_forward(x, state0, p, keep=None, mask=None, kernels=None):
    """Run the layer-norm LSTM over a time-major sequence.

    Inputs:
        x [T, B, D]; state0 [B, 2H] = [c0 | h0]; p the six parameters (module docstring)
        keep [T, B, H] or None   recurrent-dropout multipliers (0 or 1/keep_prob)
        mask [T, B] or None      1 = real step, 0 = padding (state passes through)
        kernels  a kernel set with ``matmul`` and ``ln_lstm_cell_forward`` (None: this module's)
    Returns:
        hs [T, B, H] (a view into the cache: read it, do not write into it);
        state_T [B, 2H] = [c_T | h_T]; cache for ``ln_lstm_backward``
    """
    mm = matmul if kernels is None else kernels.matmul
    cell_forward = ln_lstm_cell_forward if kernels is None else kernels.ln_lstm_cell_forward
    xp = get_xp(x)
    T, B, D = x.shape
    H = p["W_hh"].shape[0]
    dt = xp.result_type(x.dtype, p["W_xh"].dtype)
    XW = mm(x.reshape(T * B, D), p["W_xh"]).reshape(T, B, 4 * H)    # all steps at once
    hs = xp.empty((T + 1, B, H), dtype=dt)                         # hs[t]: h entering step t
    cs = xp.empty((T + 1, B, H), dtype=dt)
    cs[0], hs[0] = state0[:, :H], state0[:, H:]
    acts = xp.empty((T, B, 5 * H), dtype=dt)                       # saved for the backward
    norms = xp.empty((T, B, 5 * H), dtype=dt)
    rstds = xp.empty((T, B, 5), dtype=dt)
    a = xp.empty((B, 4 * H), dtype=dt)
    ln = (p["ln_gamma"], p["ln_beta"], p["ln_c_gamma"], p["ln_c_beta"])
    for t in range(T):
        mm(hs[t], p["W_hh"], out=a)
        a += XW[t]
        cell_forward(a, cs[t], hs[t], None if keep is None else keep[t],
                     None if mask is None else mask[t], *ln, cs[t + 1], hs[t + 1], acts[t],
                     norms[t], rstds[t])
    state_T = xp.concatenate([cs[T], hs[T]], axis=1)
    return hs[1:], state_T, (x, p, keep, mask, hs, cs, acts, norms, rstds, kernels)


def ln_lstm_backward(dhs, dstate_T, cache):
    """Gradients of ``ln_lstm_forward`` (fresh arrays, nothing accumulated).

    Inputs: dhs [T, B, H] or None (zeros); dstate_T [B, 2H] or None (zeros).
    Returns: dx [T, B, D]; dstate0 [B, 2H]; grads with the keys of p.
    """
    x, p, keep, mask, hs, cs, acts, norms, rstds, kernels = cache
    mm = matmul if kernels is None else kernels.matmul
    cell_backward = ln_lstm_cell_backward if kernels is None else kernels.ln_lstm_cell_backward
    xp = get_xp(x)
    T, B, D = x.shape
    H = p["W_hh"].shape[0]
    dt = hs.dtype
    dA = xp.empty((T, B, 4 * H), dtype=dt)       # gradient w.r.t. a at every step
    dY = xp.empty((T, B, 5 * H), dtype=dt)       # ... and w.r.t. the layer-norm outputs
    dh = xp.empty((B, H), dtype=dt)
    dh_next = xp.zeros((B, H), dtype=dt)
    dh_pass = xp.empty((B, H), dtype=dt)
    dc = xp.zeros((B, H), dtype=dt)
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
        cell_backward(dh, dc, cs[t], None if keep is None else keep[t],
                      None if mask is None else mask[t], p["ln_gamma"], p["ln_c_gamma"],
                      acts[t], norms[t], rstds[t], dA[t], dY[t], dc_prev, dh_pass)
        # forward was: a = h_prev @ W_hh + XW[t] (and h_out = h_prev at padding steps)
        mm(dA[t], p["W_hh"].T, out=dh_next)
        dh_next += dh_pass
        dc, dc_prev = dc_prev, dc
    # forward was: XW = X @ W_xh, a_t = h_prev_t @ W_hh + XW[t], y = gamma * norm + beta
    dA2 = dA.reshape(T * B, 4 * H)
    dg, db, dgc, dbc = ln_param_grads(dY, norms, H)
    grads = {
        "W_xh": mm(x.reshape(T * B, D).T, dA2),
        "W_hh": mm(hs[:T].reshape(T * B, H).T, dA2),
        "ln_gamma": dg, "ln_beta": db, "ln_c_gamma": dgc, "ln_c_beta": dbc,
    }
    dx = mm(dA2, p["W_xh"].T).reshape(T, B, D)
    return dx, xp.concatenate([dc, dh_next], axis=1), grads


def ln_lstm_step(x_t, state, p, kernels=None):
    """One inference step (no dropout, no mask, no cache); same numbers as ``ln_lstm_forward``.

    Inputs: x_t [B, D]; state [B, 2H] = [c | h]. Returns: h [B, H]; new_state [B, 2H].
    """
    mm = matmul if kernels is None else kernels.matmul
    cell_forward = ln_lstm_cell_forward if kernels is None else kernels.ln_lstm_cell_forward
    xp = get_xp(x_t)
    H = p["W_hh"].shape[0]
    B = x_t.shape[0]
    dt = xp.result_type(x_t.dtype, p["W_xh"].dtype)
    c_prev = xp.ascontiguousarray(state[:, :H], dtype=dt)
    h_prev = xp.ascontiguousarray(state[:, H:], dtype=dt)
    a = mm(h_prev, p["W_hh"])
    a += mm(x_t, p["W_xh"])
    c, h = xp.empty((B, H), dtype=dt), xp.empty((B, H), dtype=dt)
    saved = (xp.empty((B, 5 * H), dtype=dt), xp.empty((B, 5 * H), dtype=dt),
             xp.empty((B, 5), dtype=dt))
    cell_forward(a, c_prev, h_prev, None, None, p["ln_gamma"], p["ln_beta"], p["ln_c_gamma"],
                 p["ln_c_beta"], c, h, *saved)
    return h, xp.concatenate([c, h], axis=1)
