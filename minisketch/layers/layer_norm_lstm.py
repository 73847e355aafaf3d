"""Layer-normalized LSTM cell (Ba, Kiros & Hinton 2016) over a time-major sequence.

Math (SPEC section 3; gate blocks i, j, f, o; no separate bias; forget bias +1 at run time):

    a = x_t @ W_xh + h_prev @ W_hh                          [B, 4H] = [a_i | a_j | a_f | a_o]
    y_k = gamma_k * LN(a_k) + beta_k   for each gate block k, LN(v) = (v - mean) / sqrt(var + 1e-3)
          (mean and var over the block's H units)
    i = sigmoid(y_i)   g = tanh(y_j) * keep_t   f = sigmoid(y_f + 1)   o = sigmoid(y_o)
    c = f * c_prev + i * g                                  (the un-normalized c is carried)
    h = o * tanh(gamma_c * LN(c) + beta_c)

``keep_t`` and ``mask_t`` as in ``lstm.py`` (recurrent dropout of the candidate; 0 = padding step
where the state and its gradient pass through unchanged).

State layout: one array [B, 2H] = [c | h].

Parameters:
    W_xh [D, 4H]       Glorot-uniform
    W_hh [H, 4H]       four independent orthogonal H x H blocks
    ln_gamma [4H]      ones    (per-unit scale of the four normalized gate blocks, order i, j, f, o)
    ln_beta [4H]       zeros
    ln_c_gamma [H]     ones    (scale and shift of LN(c))
    ln_c_beta [H]      zeros

Work layout as in ``lstm.py``: one matmul for all input projections, per step h_prev @ W_hh and
the pointwise step functions ``ln_lstm_cell_forward`` / ``ln_lstm_cell_backward`` (which also
serve the HyperLSTM), weight gradients as one matmul / one reduction over all steps, buffers
allocated once per sequence.

The sequence functions take the optional ``x_const`` and ``active`` of ``lstm.py`` (see its
module docstring), with the same meaning: ``x_const`` [B, Dc] is an input repeated at every step
(x is then [T, B, Dx], the step input concat(x_t, x_const), and x_const @ W_xh[Dx:] is computed
once; there is no bias, so a = x_t @ W_xh[:Dx] + x_const @ W_xh[Dx:] + h_prev @ W_hh, the same
sum as with the concatenated input), and backward then returns dx as (dx_seq, dx_const);
``active`` (host ints, non-increasing) replaces ``mask`` and computes only the leading rows
b < active[t] of each step.

``ln_lstm_backward`` returns fresh gradient arrays (nothing is accumulated into buffers).
Runs on NumPy or CuPy arrays unchanged.
"""
from __future__ import annotations

import numpy as np

from ..xp import get_xp
from .linear import glorot_uniform, orthogonal
from .lstm import (FORGET_BIAS, all_steps_backward, check_active, input_projection, pack_rows,
                   resolve_kernels, row_offsets, sigmoid)

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


def ln_param_grads(dY, norms, H, out=None):
    """Layer-norm parameter gradients over all steps at once (one reduction each).

    dY [T, B, 5H] and norms [T, B, 5H] as written by the step functions (any leading shape).
    Returns (dgamma [4H], dbeta [4H], dgamma_c [H], dbeta_c [H]): views of two [5H] arrays, fresh
    ones, or with out = (dgamma_all, dbeta_all) two [5H] arrays of dY's dtype written in place
    (for a caller that sums these a step at a time without allocating).
    forward was: y = gamma * norm + beta at every step, so dgamma = sum(dy * norm), dbeta = sum(dy).
    The products are summed by einsum without a [T, B, 5H] temporary (the same numbers as
    (dY * norms).sum(axis=(0, 1)), in a third of the time and none of the memory).
    """
    xp = get_xp(dY)
    n = dY.shape[-1]
    dY2, norms2 = dY.reshape(-1, n), norms.reshape(-1, n)
    if out is None:
        dgamma = xp.einsum("ij,ij->j", dY2, norms2)
        dbeta = dY2.sum(axis=0)
    else:
        dgamma, dbeta = out
        if xp is np:
            xp.einsum("ij,ij->j", dY2, norms2, out=dgamma)
        else:   # CuPy's einsum takes no out=
            dgamma[...] = xp.einsum("ij,ij->j", dY2, norms2)
        dY2.sum(axis=0, out=dbeta)
    return dgamma[:4 * H], dbeta[:4 * H], dgamma[4 * H:], dbeta[4 * H:]


# ---------------------------------------------------------------------------------------------
# Sequence forward / backward

def ln_lstm_forward(x, state0, p, keep=None, mask=None, kernels=None, x_const=None,
                    active=None):
    """Run the layer-norm LSTM over a time-major sequence.

    Inputs:
        x [T, B, D]; state0 [B, 2H] = [c0 | h0]; p the six parameters (module docstring)
        keep [T, B, H] or None   recurrent-dropout multipliers (0 or 1/keep_prob)
        mask [T, B] or None      1 = real step, 0 = padding (state passes through)
        kernels  step-function namespace (None = reference)
        x_const [B, Dc] or None  an input repeated at every step: then x is [T, B, Dx] with
                                 Dx + Dc = D and the input at step t is concat(x_t, x_const);
                                 its projection x_const @ W_xh[Dx:] is computed once
        active   None, or a host sequence of T non-increasing ints in [0, B] used instead of
                 mask: rows b < active[t] run step t, the others are padding (the same as
                 mask[t, b] = b < active[t]); only the active leading rows are computed
    Returns:
        hs [T, B, H]  (a view into the cache's storage: read it, do not write into it)
        state_T [B, 2H] = [c_T | h_T] (a new array); cache for ``ln_lstm_backward``
    """
    K = resolve_kernels(kernels)
    xp = get_xp(x)
    W_xh, W_hh = p["W_xh"], p["W_hh"]
    T, B, _ = x.shape
    H = W_hh.shape[0]
    active = check_active(active, T, B, mask)
    dt = xp.result_type(x.dtype, W_xh.dtype)
    XW = input_projection(x, W_xh, None, x_const, K)             # all input projections at once
    hs_all = xp.empty((T + 1, B, H), dtype=dt)                  # hs_all[t] is h_prev of step t
    cs_all = xp.empty((T + 1, B, H), dtype=dt)
    cs_all[0] = state0[:, :H]
    hs_all[0] = state0[:, H:]
    # with active, rows >= active[t] of acts, norms and rstds stay unwritten (nothing reads
    # them: the backward packs the real rows)
    acts = xp.empty((T, B, 5 * H), dtype=dt)
    norms = xp.empty((T, B, 5 * H), dtype=dt)
    rstds = xp.empty((T, B, 5), dtype=dt)
    a = xp.empty((B, 4 * H), dtype=dt)
    ln = (p["ln_gamma"], p["ln_beta"], p["ln_c_gamma"], p["ln_c_beta"])
    for t in range(T):
        keep_t = None if keep is None else keep[t]
        if active is None:
            K.matmul(hs_all[t], W_hh, out=a)
            a += XW[t]
            K.ln_lstm_cell_forward(a, cs_all[t], hs_all[t], keep_t,
                                   None if mask is None else mask[t], *ln,
                                   cs_all[t + 1], hs_all[t + 1], acts[t], norms[t], rstds[t])
            continue
        n = active[t]
        if n > 0:
            # the real rows [0, n): leading-row slices of C-contiguous arrays are contiguous
            K.matmul(hs_all[t][:n], W_hh, out=a[:n])
            a[:n] += XW[t][:n]
            K.ln_lstm_cell_forward(a[:n], cs_all[t][:n], hs_all[t][:n],
                                   None if keep_t is None else keep_t[:n], None, *ln,
                                   cs_all[t + 1][:n], hs_all[t + 1][:n], acts[t][:n],
                                   norms[t][:n], rstds[t][:n])
        if n < B:
            # padding rows: the state passes through (what mask 0 does)
            cs_all[t + 1][n:] = cs_all[t][n:]
            hs_all[t + 1][n:] = hs_all[t][n:]
    state_T = xp.concatenate([cs_all[T], hs_all[T]], axis=1)
    cache = (x, x_const, p, keep, mask, active, hs_all, cs_all, acts, norms, rstds, K)
    return hs_all[1:], state_T, cache


def ln_lstm_backward(dhs, dstate_T, cache, need_dx=True):
    """Gradients of ``ln_lstm_forward`` (fresh arrays, nothing accumulated).

    Inputs: dhs [T, B, H] or None (zeros); dstate_T [B, 2H] or None (zeros); need_dx as in
    ``lstm_backward``.
    Returns: dx; dstate0 [B, 2H]; grads with the keys of p. dx is [T, B, D], or, when the
    forward had x_const, the pair (dx_seq [T, B, Dx], dx_const [B, Dc]) (None for dx or dx_seq
    with need_dx=False).
    """
    x, x_const, p, keep, mask, active, hs_all, cs_all, acts, norms, rstds, K = cache
    xp = get_xp(x)
    W_xh, W_hh = p["W_xh"], p["W_hh"]
    T, B, _ = x.shape
    H = W_hh.shape[0]
    dt = hs_all.dtype
    # gradients w.r.t. a and the layer-norm outputs at every step: [T, B, ...]; with active only
    # the real rows, packed step after step as in lstm_backward
    if active is None:
        dA = xp.empty((T, B, 4 * H), dtype=dt)
        dY = xp.empty((T, B, 5 * H), dtype=dt)
    else:
        offs = row_offsets(active)
        dA = xp.empty((offs[-1], 4 * H), dtype=dt)
        dY = xp.empty((offs[-1], 5 * H), dtype=dt)
    dh = xp.empty((B, H), dtype=dt)
    dh_carry = xp.zeros((B, H), dtype=dt)
    dh_pass = xp.empty((B, H), dtype=dt)
    dc = xp.zeros((B, H), dtype=dt)
    dc_prev = xp.empty((B, H), dtype=dt)
    if dstate_T is not None:
        dc[...] = dstate_T[:, :H]
        dh_carry[...] = dstate_T[:, H:]
    W_hhT = xp.ascontiguousarray(W_hh.T)     # contiguous once: see lstm_backward
    gamma, gamma_c = p["ln_gamma"], p["ln_c_gamma"]
    for t in range(T - 1, -1, -1):
        if dhs is None:
            dh[...] = dh_carry
        else:
            xp.add(dhs[t], dh_carry, out=dh)
        keep_t = None if keep is None else keep[t]
        if active is None:
            K.ln_lstm_cell_backward(dh, dc, cs_all[t], keep_t,
                                    None if mask is None else mask[t], gamma, gamma_c,
                                    acts[t], norms[t], rstds[t], dA[t], dY[t], dc_prev, dh_pass)
            # forward was: a = h_prev @ W_hh + XW[t] (plus the pass-through at padding steps)
            K.matmul(dA[t], W_hhT, out=dh_carry)
            dh_carry += dh_pass
        else:
            n = active[t]
            if n > 0:
                dA_t = dA[offs[t]:offs[t + 1]]
                K.ln_lstm_cell_backward(dh[:n], dc[:n], cs_all[t][:n],
                                        None if keep_t is None else keep_t[:n], None, gamma,
                                        gamma_c, acts[t][:n], norms[t][:n], rstds[t][:n],
                                        dA_t, dY[offs[t]:offs[t + 1]], dc_prev[:n],
                                        dh_pass[:n])
                # forward was: a[:n] = h_prev[:n] @ W_hh + XW[t][:n] (dh_pass[:n] is 0)
                K.matmul(dA_t, W_hhT, out=dh_carry[:n])
            if n < B:
                # forward was: c_out, h_out = c_prev, h_prev on the padding rows
                dc_prev[n:] = dc[n:]
                dh_carry[n:] = dh[n:]
        dc, dc_prev = dc_prev, dc
    dx, dW_xh, _, H2, dA2 = all_steps_backward(dA, x, W_xh, x_const, need_dx, hs_all[:T],
                                               active, K)
    dg, db, dgc, dbc = ln_param_grads(dY, norms if active is None else pack_rows(norms, active),
                                      H)
    grads = {
        "W_xh": dW_xh,
        "W_hh": K.matmul(H2.T, dA2),
        "ln_gamma": dg, "ln_beta": db, "ln_c_gamma": dgc, "ln_c_beta": dbc,
    }
    dstate0 = xp.concatenate([dc, dh_carry], axis=1)
    return dx, dstate0, grads


def ln_lstm_step(x_t, state, p, kernels=None):
    """One inference step (no dropout, no mask, no cache); same numbers as ``ln_lstm_forward``.

    Inputs: x_t [B, D]; state [B, 2H] = [c | h]. Returns: h [B, H]; new_state [B, 2H].
    """
    K = resolve_kernels(kernels)
    xp = get_xp(x_t)
    W_xh, W_hh = p["W_xh"], p["W_hh"]
    H = W_hh.shape[0]
    B = x_t.shape[0]
    dt = xp.result_type(x_t.dtype, W_xh.dtype)
    c_prev = xp.ascontiguousarray(state[:, :H], dtype=dt)
    h_prev = xp.ascontiguousarray(state[:, H:], dtype=dt)
    a = K.matmul(h_prev, W_hh)
    a += K.matmul(x_t, W_xh)
    c = xp.empty((B, H), dtype=dt)
    h = xp.empty((B, H), dtype=dt)
    act = xp.empty((B, 5 * H), dtype=dt)
    norm = xp.empty((B, 5 * H), dtype=dt)
    rstd = xp.empty((B, 5), dtype=dt)
    K.ln_lstm_cell_forward(a, c_prev, h_prev, None, None, p["ln_gamma"], p["ln_beta"],
                           p["ln_c_gamma"], p["ln_c_beta"], c, h, act, norm, rstd)
    return h, xp.concatenate([c, h], axis=1)
