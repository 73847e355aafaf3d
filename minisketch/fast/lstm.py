"""The LSTM of ``layers/lstm.py`` with the work-saving options of ``fast/sequence.py``.

``lstm_forward(..., x_const=, active=)`` and ``lstm_backward(..., need_dx=)`` compute the
reference's numbers to float rounding (tests/test_cell_fastpaths.py) through the same step
functions (``kernels``: the Numba or CuPy set, None for the reference's), skipping work: the
constant input part projected once, only the real rows of each step computed, and the
all-steps weight-gradient products over the real rows only. ``need_dx=False`` skips the
gradient w.r.t. the per-step input (nobody reads it when x is data).
``lstm_backward`` returns fresh gradient arrays. NumPy or CuPy arrays.
"""
from __future__ import annotations

from ..xp import get_xp
from .sequence import (all_steps_backward, check_active, input_projection, resolve_kernels,
                       row_offsets)


def lstm_forward(x, state0, p, keep=None, mask=None, kernels=None, x_const=None, active=None):
    """Run the LSTM over a time-major sequence.

    Inputs:
        x [T, B, D]; state0 [B, 2H] = [c0 | h0]; p {"W_xh" [D, 4H], "W_hh" [H, 4H], "b" [4H]}
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
        hs [T, B, H]     h after every step (at a padding step: the carried h). A view into the
                         cache's storage: read it, do not write into it.
        state_T [B, 2H]  the final state [c_T | h_T] (a new array)
        cache            for ``lstm_backward``
    """
    K = resolve_kernels(kernels)
    xp = get_xp(x)
    W_xh, W_hh, b = p["W_xh"], p["W_hh"], p["b"]
    T, B, _ = x.shape
    H = W_hh.shape[0]
    active = check_active(active, T, B, mask)
    dt = xp.result_type(x.dtype, W_xh.dtype)
    XW = input_projection(x, W_xh, b, x_const, K)    # all steps' input projections at once
    hs_all = xp.empty((T + 1, B, H), dtype=dt)   # hs_all[t] is h_prev of step t
    cs_all = xp.empty((T + 1, B, H), dtype=dt)
    cs_all[0] = state0[:, :H]
    hs_all[0] = state0[:, H:]
    acts = xp.empty((T, B, 5 * H), dtype=dt)     # with active: rows >= active[t] stay unwritten
    hh = xp.empty((B, 4 * H), dtype=dt)
    for t in range(T):
        keep_t = None if keep is None else keep[t]
        if active is None:
            K.matmul(hs_all[t], W_hh, out=hh)
            K.lstm_cell_forward(XW[t], hh, cs_all[t], hs_all[t], keep_t,
                                None if mask is None else mask[t],
                                cs_all[t + 1], hs_all[t + 1], acts[t])
            continue
        n = active[t]
        if n > 0:
            # the real rows [0, n): leading-row slices of C-contiguous arrays are contiguous
            K.matmul(hs_all[t][:n], W_hh, out=hh[:n])
            K.lstm_cell_forward(XW[t][:n], hh[:n], cs_all[t][:n], hs_all[t][:n],
                                None if keep_t is None else keep_t[:n], None,
                                cs_all[t + 1][:n], hs_all[t + 1][:n], acts[t][:n])
        if n < B:
            # padding rows: the state passes through (what mask 0 does)
            cs_all[t + 1][n:] = cs_all[t][n:]
            hs_all[t + 1][n:] = hs_all[t][n:]
    state_T = xp.concatenate([cs_all[T], hs_all[T]], axis=1)
    cache = (x, x_const, p, keep, mask, active, hs_all, cs_all, acts, K)
    return hs_all[1:], state_T, cache


def lstm_backward(dhs, dstate_T, cache, need_dx=True):
    """Gradients of ``lstm_forward`` (fresh arrays, nothing accumulated).

    Inputs:
        dhs [T, B, H] or None   gradient w.r.t. hs (None = zeros)
        dstate_T [B, 2H] or None   gradient w.r.t. state_T (None = zeros)
        need_dx  False: the gradient w.r.t. the per-step input x is not computed (None)
    Returns:
        dx; dstate0 [B, 2H]; grads {"W_xh", "W_hh", "b"} shaped like the params.
        dx is [T, B, D], or, when the forward had x_const, the pair
        (dx_seq [T, B, Dx], dx_const [B, Dc]); need_dx=False gives None for dx or dx_seq.
    """
    x, x_const, p, keep, mask, active, hs_all, cs_all, acts, K = cache
    xp = get_xp(x)
    W_xh, W_hh = p["W_xh"], p["W_hh"]
    T, B, _ = x.shape
    H = W_hh.shape[0]
    dt = hs_all.dtype
    # gradient w.r.t. a at every step: [T, B, 4H]; with active only the real rows, packed step
    # after step ([sum(active), 4H], step t's rows at offs[t]:offs[t + 1]): the padding rows'
    # gradient is 0, and the all-steps products skip them instead of multiplying zeros
    if active is None:
        dA = xp.empty((T, B, 4 * H), dtype=dt)
    else:
        offs = row_offsets(active)
        dA = xp.empty((offs[-1], 4 * H), dtype=dt)
    dh = xp.empty((B, H), dtype=dt)                 # total gradient w.r.t. h_out of step t
    dh_carry = xp.zeros((B, H), dtype=dt)           # gradient w.r.t. h_prev of step t+1
    dh_pass = xp.empty((B, H), dtype=dt)
    dc = xp.zeros((B, H), dtype=dt)                 # gradient w.r.t. c_out of step t
    dc_prev = xp.empty((B, H), dtype=dt)
    if dstate_T is not None:
        dc[...] = dstate_T[:, :H]
        dh_carry[...] = dstate_T[:, H:]
    # W_hh.T made contiguous once: OpenBLAS multiplies by a transposed view (an "NT" product)
    # at a fraction of the speed for the few-row products of the loop
    W_hhT = xp.ascontiguousarray(W_hh.T)
    for t in range(T - 1, -1, -1):
        if dhs is None:
            dh[...] = dh_carry
        else:
            xp.add(dhs[t], dh_carry, out=dh)
        keep_t = None if keep is None else keep[t]
        if active is None:
            K.lstm_cell_backward(dh, dc, cs_all[t], acts[t], keep_t,
                                 None if mask is None else mask[t], dA[t], dc_prev, dh_pass)
            # forward was: hh = h_prev @ W_hh (plus the pass-through at padding steps)
            K.matmul(dA[t], W_hhT, out=dh_carry)
            dh_carry += dh_pass
        else:
            n = active[t]
            if n > 0:
                dA_t = dA[offs[t]:offs[t + 1]]
                K.lstm_cell_backward(dh[:n], dc[:n], cs_all[t][:n], acts[t][:n],
                                     None if keep_t is None else keep_t[:n], None, dA_t,
                                     dc_prev[:n], dh_pass[:n])
                # forward was: hh[:n] = h_prev[:n] @ W_hh (dh_pass[:n] is 0: real steps)
                K.matmul(dA_t, W_hhT, out=dh_carry[:n])
            if n < B:
                # forward was: c_out, h_out = c_prev, h_prev on the padding rows
                dc_prev[n:] = dc[n:]
                dh_carry[n:] = dh[n:]
        dc, dc_prev = dc_prev, dc
    # forward was: XW = X @ W_xh + b, and hh_t = h_prev_t @ W_hh: one matmul each over all steps
    dx, dW_xh, dA_sum, H2, dA2 = all_steps_backward(dA, x, W_xh, x_const, need_dx, hs_all[:T],
                                                    active, K)
    grads = {
        "W_xh": dW_xh,
        "W_hh": K.matmul(H2.T, dA2),
        "b": dA2.sum(axis=0) if dA_sum is None else dA_sum.sum(axis=0),
    }
    dstate0 = xp.concatenate([dc, dh_carry], axis=1)
    return dx, dstate0, grads
