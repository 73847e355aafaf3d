"""The layer-norm LSTM of ``layers/layer_norm_lstm.py`` with the options of ``fast/sequence.py``.

``ln_lstm_forward(..., x_const=, active=)`` and ``ln_lstm_backward(..., need_dx=)``: the
reference's numbers to float rounding (tests/test_cell_fastpaths.py), skipping work as
``fast/lstm.py`` does. There is no bias, so with x_const the pre-activation is
x_t @ W_xh[:Dx] + x_const @ W_xh[Dx:] + h_prev @ W_hh, the sum of the concatenated input.
The backward returns fresh gradient arrays. NumPy or CuPy arrays.
"""
from __future__ import annotations

from ..layers.layer_norm_lstm import ln_param_grads
from ..xp import get_xp
from .sequence import (all_steps_backward, check_active, input_projection, pack_rows,
                       resolve_kernels, row_offsets)


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
