"""The HyperLSTM of ``layers/hyper_lstm.py`` with the options of ``fast/sequence.py``.

``hyper_lstm_forward(..., x_const=, active=)`` and ``hyper_lstm_backward(..., need_dx=,
per_step=)``: the reference's numbers to float rounding (tests/test_hyper_fastpaths.py). Both
input projections (x @ W_xh and the hyper cell's x @ hyper_W_xh[:D]) take x_const once; with
``active`` every per-step product and step function works on contiguous [:n] prefix slices (a
step's alpha is stored as one flat run of 8 n H values so its prefix is contiguous too), the
padding rows' state and gradient are copied through, and a step with n = 0 does no work.

``per_step`` says how W_alpha's and the layer norms' gradients are summed: a step at a time
into small float64 accumulators (the host default: no [T, B, ...] arrays of per-step
gradients, 1.6 GB fewer at the reference sizes), or kept and reduced once after the loop as the
reference does (the GPU default: a dozen fewer kernel launches a step). The same numbers up to
float rounding. The backward returns fresh gradient arrays. NumPy or CuPy arrays.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..layers.hyper_lstm import hyper_lstm_split_state, hyper_sizes, hyper_step_forward
from ..layers.layer_norm_lstm import ln_param_grads
from ..xp import get_xp
from .sequence import (check_active, check_x_const, input_projection, input_projection_backward,
                       ln_param_grads_into, resolve_kernels)


def hyper_lstm_forward(x, state0, p, keep=None, mask=None, kernels=None, x_const=None,
                       active=None):
    """Run the HyperLSTM over a time-major sequence.

    Inputs:
        x [T, B, D] (with x_const: [T, B, Dx]); state0 [B, 2H + 2Hh] = [h | h_hat | c | c_hat];
        p (module docstring)
        keep [T, B, H] or None   recurrent-dropout multipliers of the main cell's candidate
        mask [T, B] or None      1 = real step, 0 = padding (both cells pass their state through)
        kernels  step-function namespace (None = reference)
        x_const [B, Dc] or None  the input part repeated at every step: the cell's input at step
                                 t is concat(x_t, x_const), Dx + Dc = D; projected once
        active   None, or a host sequence of T non-increasing ints in [0, B] used instead of
                 mask (not with it): rows b < active[t] run step t, the others are padding
                 (the same numbers as mask[t, b] = b < active[t]); only those rows are computed
    Returns:
        hs [T, B, H]  the main cell's h (a view into the cache's storage: do not write into it)
        state_T [B, 2H + 2Hh] (a new array); cache for ``hyper_lstm_backward``
    """
    K = resolve_kernels(kernels)
    xp = get_xp(x)
    D, H, Hh, E = hyper_sizes(p)
    T, B, Dx = x.shape
    check_x_const(x_const, B, Dx, D)
    active = check_active(active, T, B, mask)
    dts = (x.dtype, p["W_xh"].dtype) + (() if x_const is None else (x_const.dtype,))
    dt = xp.result_type(*dts)
    XW = input_projection(x, p["W_xh"], None, x_const, K)           # all steps at once
    HX = input_projection(x, p["hyper_W_xh"][:D], None, x_const, K)  # hyper cell's input part
    h0, hh0, c0, ch0 = hyper_lstm_split_state(state0, H, Hh)
    st = SimpleNamespace(   # st.h[t] is the h entering step t; st.h[1:] are the outputs
        h=xp.empty((T + 1, B, H), dt), hhat=xp.empty((T + 1, B, Hh), dt),
        c=xp.empty((T + 1, B, H), dt), chat=xp.empty((T + 1, B, Hh), dt))
    st.h[0], st.hhat[0], st.c[0], st.chat[0] = h0, hh0, c0, ch0
    # saved for backward, one slice per step. With active, the rows >= active[t] of the arrays
    # that the all-steps weight-gradient products read (zw, zb) are zeros (their
    # gradients there are 0, and 0 * uninitialized memory could be nan); the others' stay unread
    zeros = xp.empty if active is None else xp.zeros
    sv = SimpleNamespace(
        hh=xp.empty((T, B, 4 * H), dt), hact=xp.empty((T, B, 5 * Hh), dt),
        hnorm=xp.empty((T, B, 5 * Hh), dt), hrstd=xp.empty((T, B, 5), dt),
        zw=zeros((T, B, 8 * E), dt), zb=zeros((T, B, 4 * E), dt),
        alpha=xp.empty((T, 8 * B * H), dt),      # step t: [8, n, H] in its first 8 n H entries
        act=xp.empty((T, B, 5 * H), dt), norm=xp.empty((T, B, 5 * H), dt),
        rstd=xp.empty((T, B, 5), dt))
    scratch = SimpleNamespace(ha=xp.empty((B, 4 * Hh), dt), tmp=xp.empty((B, 4 * Hh), dt),
                              a=xp.empty((B, 4 * H), dt), beta=xp.empty(4 * B * H, dt))
    rows = ("hh", "hact", "hnorm", "hrstd", "zw", "zb", "act", "norm", "rstd")
    for t in range(T):
        n = B if active is None else active[t]
        if n < B:
            # padding rows (active only): the state passes through, as mask 0 does
            for s in (st.h, st.hhat, st.c, st.chat):
                s[t + 1][n:] = s[t][n:]
        if n == 0:
            continue
        # the n leading rows (all B without active): leading-row slices of C-contiguous
        # per-step arrays are contiguous, and alpha / beta are packed as [8 | 4, n, H]
        buf = SimpleNamespace(
            ha=scratch.ha[:n], tmp=scratch.tmp[:n], a=scratch.a[:n],
            beta=scratch.beta[:4 * n * H].reshape(4, n, H),
            alpha=sv.alpha[t, :8 * n * H].reshape(8, n, H),
            **{k: getattr(sv, k)[t][:n] for k in rows})
        hyper_step_forward(p, XW[t][:n], HX[t][:n],
                           (st.h[t][:n], st.hhat[t][:n], st.c[t][:n], st.chat[t][:n]),
                           None if keep is None else keep[t][:n],
                           None if mask is None else mask[t],
                           (st.h[t + 1][:n], st.hhat[t + 1][:n], st.c[t + 1][:n],
                            st.chat[t + 1][:n]), buf, K)
    state_T = xp.concatenate([st.h[T], st.hhat[T], st.c[T], st.chat[T]], axis=1)
    cache = (x, x_const, p, keep, mask, active, XW, st, sv, K)
    return st.h[1:], state_T, cache


def hyper_lstm_backward(dhs, dstate_T, cache, need_dx=True, per_step=None):
    """Gradients of ``hyper_lstm_forward`` (fresh arrays, nothing accumulated).

    Inputs: dhs [T, B, H] or None (zeros); dstate_T [B, 2H + 2Hh] or None (zeros); need_dx as
    in ``lstm_backward``; per_step: how W_alpha's and the layer norms' gradients are summed
    (module docstring); None = per step on NumPy, all steps at the end on CuPy.
    Returns: dx; dstate0 [B, 2H + 2Hh]; grads with the keys of p.
        dx is [T, B, D], or, when the forward had x_const, the pair
        (dx_seq [T, B, Dx], dx_const [B, Dc]) (dx_const sums the gradient over all steps);
        need_dx=False gives None for dx or dx_seq.
    """
    x, x_const, p, keep, mask, active, XW, st, sv, K = cache
    xp = get_xp(x)
    D, H, Hh, E = hyper_sizes(p)
    T, B, Dx = x.shape
    dt = st.h.dtype
    # per-step gradients kept for the all-steps weight-gradient matmuls (with active, the rows
    # >= active[t] stay 0, as at mask-0 steps)
    zeros = xp.empty if active is None else xp.zeros
    dA = zeros((T, B, 4 * H), dt)           # w.r.t. the main cell's pre-activations a
    dXW = zeros((T, B, 4 * H), dt)          # w.r.t. x_t @ W_xh
    dHH = zeros((T, B, 4 * H), dt)          # w.r.t. h_prev @ W_hh
    dZW = zeros((T, B, 8 * E), dt)
    dZB = zeros((T, B, 4 * E), dt)
    dHA = zeros((T, B, 4 * Hh), dt)         # w.r.t. the hyper cell's pre-activations
    if per_step is None:
        per_step = xp is np
    if per_step:
        # w.r.t. the layer-norm outputs, a step at a time; the parameter gradients added up
        # step by step (float64: 250 float32 partial sums would lose more than the one
        # all-steps reduction does)
        dY, dHY = xp.empty((1, B, 5 * H), dt), xp.empty((1, B, 5 * Hh), dt)
        acc = SimpleNamespace(ln=[xp.zeros(n, xp.float64) for n in (4 * H, 4 * H, H, H)],
                              hln=[xp.zeros(n, xp.float64) for n in (4 * Hh, 4 * Hh, Hh, Hh)],
                              W_alpha=xp.zeros((8, E, H), xp.float64))
        gW_alpha_t = xp.empty((8, E, H), dt)
        ln_t = (xp.empty(5 * H, dt), xp.empty(5 * H, dt))        # one step's sums, reused
        hln_t = (xp.empty(5 * Hh, dt), xp.empty(5 * Hh, dt))
    else:
        # kept for one reduction each after the loop (rows >= active[t] stay 0)
        dY, dHY = zeros((T, B, 5 * H), dt), zeros((T, B, 5 * Hh), dt)
        dALPHA = zeros((8, T, B, H), dt)    # w.r.t. alpha: the W_alpha product's layout
    # carried state gradients (w.r.t. the state leaving step t) and scratch
    dh_carry, dhh_carry = xp.zeros((B, H), dt), xp.zeros((B, Hh), dt)
    dc, dchat = xp.zeros((B, H), dt), xp.zeros((B, Hh), dt)
    dc_prev, dchat_prev = xp.empty((B, H), dt), xp.empty((B, Hh), dt)
    dh, dhhat = xp.empty((B, H), dt), xp.empty((B, Hh), dt)
    dh_pass, dhh_pass = xp.empty((B, H), dt), xp.empty((B, Hh), dt)
    tmp_h, tmp_hh = xp.empty((B, H), dt), xp.empty((B, Hh), dt)
    # flat per-step scratch: step t's [8 | 4, n, H | E] arrays in their first entries
    dalpha_s, dzw8_s, dzb4_s = (xp.empty(8 * B * H, dt), xp.empty(8 * B * E, dt),
                                xp.empty(4 * B * E, dt))
    if dstate_T is not None:
        parts = hyper_lstm_split_state(dstate_T, H, Hh)
        dh_carry[...], dhh_carry[...], dc[...], dchat[...] = parts
    # transposed weights of the per-step products made contiguous once (see lstm_backward)
    W_hhT, W_zwT, W_zbT = (xp.ascontiguousarray(p[k].T) for k in ("W_hh", "W_zw", "W_zb"))
    # contiguous once per sequence (CuPy's batched matmul would copy them at every step)
    W_alphaT = xp.ascontiguousarray(p["W_alpha"].transpose(0, 2, 1))
    W_betaT = xp.ascontiguousarray(p["W_beta"].transpose(0, 2, 1))
    hW_hT = xp.ascontiguousarray(p["hyper_W_xh"][D:].T)
    hW_hhT = xp.ascontiguousarray(p["hyper_W_hh"].T)
    for t in range(T - 1, -1, -1):
        n = B if active is None else active[t]
        if dhs is None:
            dh[...] = dh_carry
        else:
            xp.add(dhs[t], dh_carry, out=dh)
        if n < B:
            # padding rows (active only); forward was: every state part passes through, so its
            # gradient does too (dhh_carry[n:] stays as it is)
            dc_prev[n:] = dc[n:]
            dchat_prev[n:] = dchat[n:]
            dh_carry[n:] = dh[n:]
            if not per_step:
                # the all-steps reductions read every row of the norms; the padding rows were
                # never written, and 0 * uninitialized memory could be nan
                sv.norm[t][n:] = 0
                sv.hnorm[t][n:] = 0
        if n == 0:
            dc, dc_prev = dc_prev, dc
            dchat, dchat_prev = dchat_prev, dchat
            continue
        # the n leading rows (all B without active): contiguous prefix slices
        keep_t = None if keep is None else keep[t][:n]
        mask_t = None if mask is None else mask[t]
        dA_t, dXW_t, dHH_t, dZW_t, dZB_t, dHA_t = (
            a[t][:n] for a in (dA, dXW, dHH, dZW, dZB, dHA))
        dalpha = dalpha_s[:8 * n * H].reshape(8, n, H)
        dzw8 = dzw8_s[:8 * n * E].reshape(8, n, E)
        dzb4 = dzb4_s[:4 * n * E].reshape(4, n, E)
        dhc, dhhc, dhhat_n = dh_carry[:n], dhh_carry[:n], dhhat[:n]
        # main cell (forward was: ln_lstm_cell_forward(a, c_prev, h_prev, ...))
        dY_t, dHY_t = dY[0 if per_step else t][:n], dHY[0 if per_step else t][:n]
        K.ln_lstm_cell_backward(dh[:n], dc[:n], st.c[t][:n], keep_t, mask_t, p["ln_gamma"],
                                p["ln_c_gamma"], sv.act[t][:n], sv.norm[t][:n], sv.rstd[t][:n],
                                dA_t, dY_t, dc_prev[:n], dh_pass[:n])
        if per_step:
            for a, g in zip(acc.ln, ln_param_grads_into(dY_t, sv.norm[t][:n], H, ln_t)):
                a += g
        # forward was: a = hyper_modulate(xw, hh, alpha, beta, b)
        K.hyper_modulate_backward(dA_t, XW[t][:n], sv.hh[t][:n],
                                  sv.alpha[t, :8 * n * H].reshape(8, n, H), dXW_t, dHH_t, dalpha)
        # forward was: alpha_k = zw_k @ W_alpha[k]: W_alpha[k] gets zw_k^T @ dalpha_k
        if per_step:
            K.matmul(sv.zw[t][:n].reshape(n, 8, E).transpose(1, 2, 0), dalpha,
                     out=gW_alpha_t)
            acc.W_alpha += gW_alpha_t
        else:
            dALPHA[:, t, :n] = dalpha
        # forward was: alpha = zw (as [8, n, E]) @ W_alpha; beta = zb (as [4, n, E]) @ W_beta,
        # and beta_k is added to a_k, so dbeta = da block by block
        K.matmul(dalpha, W_alphaT, out=dzw8)
        dZW_t.reshape(n, 8, E).transpose(1, 0, 2)[...] = dzw8
        K.matmul(dA_t.reshape(n, 4, H).transpose(1, 0, 2), W_betaT, out=dzb4)
        dZB_t.reshape(n, 4, E).transpose(1, 0, 2)[...] = dzb4
        # forward was: zw = h_hat @ W_zw + b_zw, zb = h_hat @ W_zb (h_hat leaves this step)
        K.matmul(dZW_t, W_zwT, out=dhhat_n)
        dhhat_n += dhhc
        K.matmul(dZB_t, W_zbT, out=tmp_hh[:n])
        dhhat_n += tmp_hh[:n]
        # hyper cell (forward was: ln_lstm_cell_forward(a_hat, c_hat_prev, h_hat_prev, ...))
        K.ln_lstm_cell_backward(dhhat_n, dchat[:n], st.chat[t][:n], None, mask_t,
                                p["hyper_ln_gamma"], p["hyper_ln_c_gamma"], sv.hact[t][:n],
                                sv.hnorm[t][:n], sv.hrstd[t][:n], dHA_t, dHY_t,
                                dchat_prev[:n], dhh_pass[:n])
        if per_step:
            for a, g in zip(acc.hln, ln_param_grads_into(dHY_t, sv.hnorm[t][:n], Hh, hln_t)):
                a += g
        # forward was: a_hat = hx + h_prev @ hyper_W_xh[D:] + h_hat_prev @ hyper_W_hh and
        # hh = h_prev @ W_hh (plus the pass-throughs at mask-0 steps)
        K.matmul(dHH_t, W_hhT, out=dhc)
        K.matmul(dHA_t, hW_hT, out=tmp_h[:n])
        dhc += tmp_h[:n]
        dhc += dh_pass[:n]
        K.matmul(dHA_t, hW_hhT, out=dhhc)
        dhhc += dhh_pass[:n]
        dc, dc_prev = dc_prev, dc
        dchat, dchat_prev = dchat_prev, dchat
    # the other weight gradients: one matmul (or batched matmul / reduction) each over all steps
    TB = T * B
    dA2, dXW2, dHH2, dHA2 = (a.reshape(TB, -1) for a in (dA, dXW, dHH, dHA))
    Hprev2 = st.h[:T].reshape(TB, H)
    Hhat2 = st.hhat[1:].reshape(TB, Hh)          # h_hat produced at each step (read by zw, zb)
    if per_step:
        dg, dbt, dgc, dbc = (a.astype(dt) for a in acc.ln)
        hdg, hdbt, hdgc, hdbc = (a.astype(dt) for a in acc.hln)
        dW_alpha = acc.W_alpha.astype(dt)
    else:
        # (with active, the padding rows of dY, dHY and the norms are zeros)
        dg, dbt, dgc, dbc = ln_param_grads(dY, sv.norm, H)
        hdg, hdbt, hdgc, hdbc = ln_param_grads(dHY, sv.hnorm, Hh)
        # W_alpha[k] = sum over steps of zw_k^T @ dalpha_k: [8, E, TB] @ [8, TB, H]
        dW_alpha = K.matmul(sv.zw.reshape(TB, 8, E).transpose(1, 2, 0),
                            dALPHA.reshape(8, TB, H))
    hW_x = p["hyper_W_xh"][:D]
    # forward was: XW = X @ W_xh and HX = X @ hyper_W_xh[:D] over all steps (with x_const: its
    # part projected once, so its gradients see the step gradients summed over time)
    dx_a, dW_xh, _ = input_projection_backward(dXW, x, p["W_xh"], x_const, need_dx, K)
    dx_b, dhW_x, _ = input_projection_backward(dHA, x, hW_x, x_const, need_dx, K)
    dx_seq_a, dx_seq_b = (dx_a, dx_b) if x_const is None else (dx_a[0], dx_b[0])
    dx = dx_seq_a + dx_seq_b if need_dx else None
    if x_const is not None:
        dx = (dx, dx_a[1] + dx_b[1])
    grads = {
        "W_xh": dW_xh,
        "W_hh": K.matmul(Hprev2.T, dHH2),
        "b": dA2.sum(axis=0),
        "ln_gamma": dg, "ln_beta": dbt, "ln_c_gamma": dgc, "ln_c_beta": dbc,
        "hyper_W_xh": xp.concatenate([dhW_x, K.matmul(Hprev2.T, dHA2)], axis=0),
        "hyper_W_hh": K.matmul(st.hhat[:T].reshape(TB, Hh).T, dHA2),
        "hyper_ln_gamma": hdg, "hyper_ln_beta": hdbt, "hyper_ln_c_gamma": hdgc,
        "hyper_ln_c_beta": hdbc,
        "W_zw": K.matmul(Hhat2.T, dZW.reshape(TB, 8 * E)),
        "b_zw": dZW.reshape(TB, 8 * E).sum(axis=0),
        "W_alpha": dW_alpha,
        "W_zb": K.matmul(Hhat2.T, dZB.reshape(TB, 4 * E)),
        # W_beta[k] = sum over steps of zb_k^T @ da_k: [4, E, TB] @ [4, TB, H]
        "W_beta": K.matmul(sv.zb.reshape(TB, 4, E).transpose(1, 2, 0),
                           dA.reshape(TB, 4, H).transpose(1, 0, 2)),
    }
    dstate0 = xp.concatenate([dh_carry, dhh_carry, dc, dchat], axis=1)
    return dx, dstate0, grads
