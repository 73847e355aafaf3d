"""HyperLSTM cell (Ha, Dai & Le 2016, as used by sketch-rnn) over a time-major sequence.

A small layer-norm LSTM, the hyper cell (Hh units, no dropout), reads [x_t, h_prev] and gives
h_hat, from which come per-unit scales of the main cell's eight weight blocks and biases of its
four h-blocks (SPEC section 3; E = hyper_embedding_size):

    hyper cell:  a_hat = [x_t, h_prev] @ hyper_W_xh + h_hat_prev @ hyper_W_hh, then the
                 layer-norm LSTM update of (c_hat, h_hat)
    zw = h_hat @ W_zw + b_zw [B, 8E];  alpha_k = zw_k @ W_alpha[k] [B, H], k = 0..7 (x-blocks
    i, j, f, o, then h-blocks);  zb = h_hat @ W_zb [B, 4E];  beta_k = zb_k @ W_beta[k]
    main cell:   a_k = alpha_k * (x_t @ W_xh)_k + alpha_{4+k} * (h_prev @ W_hh)_k + beta_k + b_k,
                 then exactly the layer-norm LSTM (``layer_norm_lstm.py``) from a

State [B, 2H + 2Hh] = [h | h_hat | c | c_hat] (magenta's layout). Parameters: the layer-norm
LSTM's plus b [4H], the hyper cell's as "hyper_*" (hyper_W_xh [D + H, 4Hh]: rows D.. read
h_prev), W_zw [Hh, 8E] zeros, b_zw [8E] ones, W_alpha [8, E, H] 0.1 / E, W_zb [Hh, 4E]
N(0, 0.01^2), W_beta [4, E, H] zeros. ``hyper_step_forward`` is one step (the step functions
``ln_lstm_cell_forward``, ``hyper_modulate_forward`` and the products between them); the
sequence functions are one loop over time each, every weight gradient one product (or one
reduction) over all steps after the loop. Fresh gradient arrays; NumPy or CuPy, unchanged.
The fast twin is ``minisketch/fast/hyper_lstm.py``.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..xp import get_xp
from .layer_norm_lstm import ln_lstm_cell_backward, ln_lstm_cell_forward, ln_lstm_init, \
    ln_param_grads
from .linear import glorot_uniform, matmul, orthogonal

HYPER_NUM_UNITS = 256       # Hh, sketch-rnn's hyper_num_units
HYPER_EMBEDDING_SIZE = 32   # E, sketch-rnn's hyper_embedding_size
ALPHA_INIT = 0.1            # alpha = 0.1 at init (W_alpha = 0.1 / E, zw = 1)
# the arrays one step saves for the backward (``step_buffers``), [T, ...] each in the sequence
SAVED = ("hh", "hact", "hnorm", "hrstd", "zw", "zb", "alpha", "act", "norm", "rstd")


def hyper_lstm_init(rng: np.random.Generator, input_size: int, hidden_size: int,
                    dtype=np.float32, hyper_num_units: int = HYPER_NUM_UNITS,
                    hyper_embedding_size: int = HYPER_EMBEDDING_SIZE):
    """Reference initialization of every parameter listed in the module docstring (NumPy)."""
    D, H, Hh, E = input_size, hidden_size, hyper_num_units, hyper_embedding_size
    p = {
        "W_xh": glorot_uniform(rng, D, 4 * H, dtype),
        "W_hh": np.concatenate([orthogonal(rng, H, dtype) for _ in range(4)], axis=1),
        "b": np.zeros(4 * H, dtype=dtype),
        "ln_gamma": np.ones(4 * H, dtype=dtype),
        "ln_beta": np.zeros(4 * H, dtype=dtype),
        "ln_c_gamma": np.ones(H, dtype=dtype),
        "ln_c_beta": np.zeros(H, dtype=dtype),
    }
    for k, v in ln_lstm_init(rng, D + H, Hh, dtype).items():
        p["hyper_" + k] = v
    p["W_zw"] = np.zeros((Hh, 8 * E), dtype=dtype)
    p["b_zw"] = np.ones(8 * E, dtype=dtype)
    p["W_alpha"] = np.full((8, E, H), ALPHA_INIT / E, dtype=dtype)
    p["W_zb"] = (0.01 * rng.standard_normal((Hh, 4 * E))).astype(dtype)
    p["W_beta"] = np.zeros((4, E, H), dtype=dtype)
    return p


def hyper_lstm_state_size(hidden_size: int, hyper_num_units: int = HYPER_NUM_UNITS,
                          hyper_embedding_size: int = HYPER_EMBEDDING_SIZE) -> int:
    """Width S of the state array [B, S] = [h | h_hat | c | c_hat]: 2H + 2Hh."""
    return 2 * hidden_size + 2 * hyper_num_units


def hyper_lstm_split_state(state, hidden_size: int, hyper_num_units: int):
    """Views (h, h_hat, c, c_hat) of a state array [B, 2H + 2Hh]."""
    H, Hh = hidden_size, hyper_num_units
    return (state[:, :H], state[:, H:H + Hh], state[:, H + Hh:2 * H + Hh],
            state[:, 2 * H + Hh:])


# ---------------------------------------------------------------------------------------------
# Step functions (the kernel interface): write into preallocated outputs, return nothing

def hyper_modulate_forward(xw_t, hh_t, alpha_t, beta_t, b, a_out):
    """Hyper-modulated gate pre-activations of one step, written into a_out.

    Inputs:
        xw_t [B, 4H]    x_t @ W_xh (blocks i, j, f, o)
        hh_t [B, 4H]    h_prev @ W_hh
        alpha_t [8, B, H]  scales: 0..3 for the x-blocks i, j, f, o; 4..7 for the h-blocks
        beta_t [4, B, H]   biases of the h-blocks i, j, f, o
        b [4H]          plain gate bias
    Output (overwritten; may not alias an input):
        a_out [B, 4H]   a_k = alpha_k * xw_k + (alpha_{4+k} * hh_k + beta_k) + b_k
    """
    H = b.shape[0] // 4
    for k in range(4):
        s = slice(k * H, (k + 1) * H)
        a_out[:, s] = alpha_t[k] * xw_t[:, s] + (alpha_t[4 + k] * hh_t[:, s] + beta_t[k]) + b[s]


def hyper_modulate_backward(da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
    """Backward of ``hyper_modulate_forward`` for one step.

    Inputs: da_t [B, 4H] gradient w.r.t. a; xw_t, hh_t [B, 4H]; alpha_t [8, B, H].
    Outputs (overwritten; none may alias an input):
        dxw_out [B, 4H]      gradient w.r.t. xw_t
        dhh_out [B, 4H]      gradient w.r.t. hh_t
        dalpha_out [8, B, H] gradient w.r.t. alpha_t
    (The gradients w.r.t. beta_t and b are da_t itself, block by block: the caller uses da_t.)
    """
    xp = get_xp(da_t)
    H = da_t.shape[1] // 4
    for k in range(4):
        s = slice(k * H, (k + 1) * H)
        # forward was: a_k = alpha_k * xw_k + (alpha_{4+k} * hh_k + beta_k) + b_k
        # (products written straight into the outputs: no temporaries)
        xp.multiply(alpha_t[k], da_t[:, s], out=dxw_out[:, s])
        xp.multiply(alpha_t[4 + k], da_t[:, s], out=dhh_out[:, s])
        xp.multiply(da_t[:, s], xw_t[:, s], out=dalpha_out[k])
        xp.multiply(da_t[:, s], hh_t[:, s], out=dalpha_out[4 + k])


# ---------------------------------------------------------------------------------------------
# One step (shared by the sequence forward, the inference step and the fast path)

def hyper_sizes(p):
    """(D, H, Hh, E) read from the parameter shapes."""
    return (p["W_xh"].shape[0], p["W_hh"].shape[0], p["hyper_W_hh"].shape[0],
            p["W_zw"].shape[1] // 8)


def step_buffers(xp, B, H, Hh, E, dt):
    """One step's arrays: the saved ones (``SAVED``) and the scratch ha, tmp, beta, a."""
    return SimpleNamespace(
        hh=xp.empty((B, 4 * H), dt), ha=xp.empty((B, 4 * Hh), dt), tmp=xp.empty((B, 4 * Hh), dt),
        hact=xp.empty((B, 5 * Hh), dt), hnorm=xp.empty((B, 5 * Hh), dt),
        hrstd=xp.empty((B, 5), dt), zw=xp.empty((B, 8 * E), dt), alpha=xp.empty((8, B, H), dt),
        zb=xp.empty((B, 4 * E), dt), beta=xp.empty((4, B, H), dt), a=xp.empty((B, 4 * H), dt),
        act=xp.empty((B, 5 * H), dt), norm=xp.empty((B, 5 * H), dt), rstd=xp.empty((B, 5), dt))


def hyper_step_forward(p, xw_t, hx_t, prev, keep_t, mask_t, new, buf, kernels=None):
    """One HyperLSTM step. xw_t = x_t @ W_xh [B, 4H] and hx_t = x_t @ hyper_W_xh[:D] [B, 4Hh]
    (the caller projects every step's input at once); prev and new: the state parts
    (h, h_hat, c, c_hat) entering and leaving the step (new is written); keep_t [B, H] or None;
    mask_t [B] or None; buf: ``step_buffers``' arrays (views), written. kernels: the kernel set
    with matmul, ln_lstm_cell_forward, hyper_modulate_forward (None: the reference's)."""
    mm = matmul if kernels is None else kernels.matmul
    ln_forward = ln_lstm_cell_forward if kernels is None else kernels.ln_lstm_cell_forward
    modulate = hyper_modulate_forward if kernels is None else kernels.hyper_modulate_forward
    D, H, Hh, E = hyper_sizes(p)
    B = xw_t.shape[0]
    h_prev, hhat_prev, c_prev, chat_prev = prev
    h_out, hhat_out, c_out, chat_out = new
    # hyper cell: a_hat = x_t @ hyper_W_xh[:D] + h_prev @ hyper_W_xh[D:] + h_hat_prev @ hyper_W_hh
    mm(h_prev, p["hyper_W_xh"][D:], out=buf.ha)
    buf.ha += hx_t
    mm(hhat_prev, p["hyper_W_hh"], out=buf.tmp)
    buf.ha += buf.tmp
    ln_forward(buf.ha, chat_prev, hhat_prev, None, mask_t, p["hyper_ln_gamma"],
               p["hyper_ln_beta"], p["hyper_ln_c_gamma"], p["hyper_ln_c_beta"], chat_out,
               hhat_out, buf.hact, buf.hnorm, buf.hrstd)
    # embeddings and the per-unit scales / biases they give
    mm(hhat_out, p["W_zw"], out=buf.zw)
    buf.zw += p["b_zw"]
    mm(buf.zw.reshape(B, 8, E).transpose(1, 0, 2), p["W_alpha"], out=buf.alpha)
    mm(hhat_out, p["W_zb"], out=buf.zb)
    mm(buf.zb.reshape(B, 4, E).transpose(1, 0, 2), p["W_beta"], out=buf.beta)
    # main cell
    mm(h_prev, p["W_hh"], out=buf.hh)
    modulate(xw_t, buf.hh, buf.alpha, buf.beta, p["b"], buf.a)
    ln_forward(buf.a, c_prev, h_prev, keep_t, mask_t, p["ln_gamma"], p["ln_beta"],
               p["ln_c_gamma"], p["ln_c_beta"], c_out, h_out, buf.act, buf.norm, buf.rstd)


# ---------------------------------------------------------------------------------------------
# Sequence forward / backward: one loop over time each

def hyper_lstm_forward(x, state0, p, keep=None, mask=None, kernels=None):
    """Run the HyperLSTM over a time-major sequence.

    Inputs:
        x [T, B, D]; state0 [B, 2H + 2Hh] = [h | h_hat | c | c_hat]; p (module docstring)
        keep [T, B, H] or None   recurrent-dropout multipliers of the main cell's candidate
        mask [T, B] or None      1 = real step, 0 = padding (both cells pass their state through)
        kernels  the kernel set of the step functions and products (None: the reference's)
    Returns:
        hs [T, B, H]  the main cell's h (a view into the cache: do not write into it);
        state_T [B, 2H + 2Hh]; cache for ``hyper_lstm_backward``
    """
    mm = matmul if kernels is None else kernels.matmul
    xp = get_xp(x)
    D, H, Hh, E = hyper_sizes(p)
    T, B, _ = x.shape
    dt = xp.result_type(x.dtype, p["W_xh"].dtype)
    # both input projections do not depend on the recurrence: one product each for all steps
    XW = mm(x.reshape(T * B, D), p["W_xh"]).reshape(T, B, 4 * H)
    HX = mm(x.reshape(T * B, D), p["hyper_W_xh"][:D]).reshape(T, B, 4 * Hh)
    # st.h[t] is the h entering step t (likewise h_hat, c, c_hat); sv: each step's saved arrays
    st = SimpleNamespace(h=xp.empty((T + 1, B, H), dt), hhat=xp.empty((T + 1, B, Hh), dt),
                         c=xp.empty((T + 1, B, H), dt), chat=xp.empty((T + 1, B, Hh), dt))
    st.h[0], st.hhat[0], st.c[0], st.chat[0] = hyper_lstm_split_state(state0, H, Hh)
    one = step_buffers(xp, B, H, Hh, E, dt)
    sv = SimpleNamespace(**{k: xp.empty((T,) + getattr(one, k).shape, dt) for k in SAVED})
    for t in range(T):
        buf = SimpleNamespace(**{**vars(one), **{k: getattr(sv, k)[t] for k in SAVED}})
        hyper_step_forward(p, XW[t], HX[t], (st.h[t], st.hhat[t], st.c[t], st.chat[t]),
                           None if keep is None else keep[t], None if mask is None else mask[t],
                           (st.h[t + 1], st.hhat[t + 1], st.c[t + 1], st.chat[t + 1]), buf,
                           kernels)
    state_T = xp.concatenate([st.h[T], st.hhat[T], st.c[T], st.chat[T]], axis=1)
    return st.h[1:], state_T, (x, p, keep, mask, XW, st, sv, kernels)


def hyper_lstm_backward(dhs, dstate_T, cache):
    """Gradients of ``hyper_lstm_forward`` (fresh arrays, nothing accumulated).

    Inputs: dhs [T, B, H] or None (zeros); dstate_T [B, 2H + 2Hh] or None (zeros).
    Returns: dx [T, B, D]; dstate0 [B, 2H + 2Hh]; grads with the keys of p.
    """
    x, p, keep, mask, XW, st, sv, kernels = cache
    mm = matmul if kernels is None else kernels.matmul
    ln_backward = ln_lstm_cell_backward if kernels is None else kernels.ln_lstm_cell_backward
    unmodulate = hyper_modulate_backward if kernels is None else kernels.hyper_modulate_backward
    xp = get_xp(x)
    D, H, Hh, E = hyper_sizes(p)
    T, B, _ = x.shape
    dt = st.h.dtype
    # every step's gradients w.r.t. the main cell's a, its layer-norm outputs, x_t @ W_xh,
    # h_prev @ W_hh and alpha, the embeddings zw and zb, and the hyper cell's a_hat and its
    # layer-norm outputs: kept for the weight-gradient products after the loop
    dA, dY, dXW, dHH = (xp.empty((T, B, n), dt) for n in (4 * H, 5 * H, 4 * H, 4 * H))
    dALPHA = xp.empty((T, 8, B, H), dt)
    dZW, dZB = xp.empty((T, B, 8 * E), dt), xp.empty((T, B, 4 * E), dt)
    dHA, dHY = xp.empty((T, B, 4 * Hh), dt), xp.empty((T, B, 5 * Hh), dt)
    # gradients w.r.t. the state leaving step t (carried back), and scratch
    dh_next, dhhat_next = xp.zeros((B, H), dt), xp.zeros((B, Hh), dt)
    dc, dchat = xp.zeros((B, H), dt), xp.zeros((B, Hh), dt)
    dc_prev, dchat_prev = xp.empty((B, H), dt), xp.empty((B, Hh), dt)
    dh, dhhat = xp.empty((B, H), dt), xp.empty((B, Hh), dt)
    dh_pass, dhh_pass = xp.empty((B, H), dt), xp.empty((B, Hh), dt)
    tmp_h, tmp_hh = xp.empty((B, H), dt), xp.empty((B, Hh), dt)
    dzw8, dzb4 = xp.empty((8, B, E), dt), xp.empty((4, B, E), dt)
    if dstate_T is not None:
        parts = hyper_lstm_split_state(dstate_T, H, Hh)
        dh_next[...], dhhat_next[...], dc[...], dchat[...] = parts
    for t in range(T - 1, -1, -1):
        keep_t, mask_t = None if keep is None else keep[t], None if mask is None else mask[t]
        if dhs is None:
            dh[...] = dh_next
        else:
            xp.add(dhs[t], dh_next, out=dh)
        # main cell (forward was: ln_lstm_cell_forward(a, c_prev, h_prev, ...))
        ln_backward(dh, dc, st.c[t], keep_t, mask_t, p["ln_gamma"], p["ln_c_gamma"], sv.act[t],
                    sv.norm[t], sv.rstd[t], dA[t], dY[t], dc_prev, dh_pass)
        # forward was: a = hyper_modulate(xw, hh, alpha, beta, b)
        unmodulate(dA[t], XW[t], sv.hh[t], sv.alpha[t], dXW[t], dHH[t], dALPHA[t])
        # forward was: alpha = zw (as [8, B, E]) @ W_alpha; beta = zb (as [4, B, E]) @ W_beta,
        # and beta_k is added to a_k, so dbeta = da block by block
        mm(dALPHA[t], p["W_alpha"].transpose(0, 2, 1), out=dzw8)
        dZW[t].reshape(B, 8, E).transpose(1, 0, 2)[...] = dzw8
        mm(dA[t].reshape(B, 4, H).transpose(1, 0, 2), p["W_beta"].transpose(0, 2, 1), out=dzb4)
        dZB[t].reshape(B, 4, E).transpose(1, 0, 2)[...] = dzb4
        # forward was: zw = h_hat @ W_zw + b_zw, zb = h_hat @ W_zb (h_hat leaving this step)
        mm(dZW[t], p["W_zw"].T, out=dhhat)
        dhhat += dhhat_next
        mm(dZB[t], p["W_zb"].T, out=tmp_hh)
        dhhat += tmp_hh
        # hyper cell (forward was: ln_lstm_cell_forward(a_hat, c_hat_prev, h_hat_prev, ...))
        ln_backward(dhhat, dchat, st.chat[t], None, mask_t, p["hyper_ln_gamma"],
                    p["hyper_ln_c_gamma"], sv.hact[t], sv.hnorm[t], sv.hrstd[t], dHA[t], dHY[t],
                    dchat_prev, dhh_pass)
        # forward was: a_hat = hx + h_prev @ hyper_W_xh[D:] + h_hat_prev @ hyper_W_hh and
        # hh = h_prev @ W_hh (plus the pass-throughs at padding steps)
        mm(dHH[t], p["W_hh"].T, out=dh_next)
        mm(dHA[t], p["hyper_W_xh"][D:].T, out=tmp_h)
        dh_next += tmp_h
        dh_next += dh_pass
        mm(dHA[t], p["hyper_W_hh"].T, out=dhhat_next)
        dhhat_next += dhh_pass
        dc, dc_prev = dc_prev, dc
        dchat, dchat_prev = dchat_prev, dchat
    # the weight gradients: one product (or batched product, or reduction) each over all steps
    TB = T * B
    dA2, dXW2, dHH2, dHA2 = (a.reshape(TB, -1) for a in (dA, dXW, dHH, dHA))
    X2 = x.reshape(TB, D)
    Hprev2 = st.h[:T].reshape(TB, H)
    Hhat2 = st.hhat[1:].reshape(TB, Hh)          # h_hat produced at each step (read by zw, zb)
    dg, dbt, dgc, dbc = ln_param_grads(dY, sv.norm, H)
    hdg, hdbt, hdgc, hdbc = ln_param_grads(dHY, sv.hnorm, Hh)
    grads = {
        "W_xh": mm(X2.T, dXW2),
        "W_hh": mm(Hprev2.T, dHH2),
        "b": dA2.sum(axis=0),
        "ln_gamma": dg, "ln_beta": dbt, "ln_c_gamma": dgc, "ln_c_beta": dbc,
        "hyper_W_xh": xp.concatenate([mm(X2.T, dHA2), mm(Hprev2.T, dHA2)], axis=0),
        "hyper_W_hh": mm(st.hhat[:T].reshape(TB, Hh).T, dHA2),
        "hyper_ln_gamma": hdg, "hyper_ln_beta": hdbt, "hyper_ln_c_gamma": hdgc,
        "hyper_ln_c_beta": hdbc,
        "W_zw": mm(Hhat2.T, dZW.reshape(TB, 8 * E)),
        "b_zw": dZW.reshape(TB, 8 * E).sum(axis=0),
        # W_alpha[k] = sum over steps of zw_k^T @ dalpha_k: [8, E, TB] @ [8, TB, H]
        "W_alpha": mm(sv.zw.reshape(TB, 8, E).transpose(1, 2, 0),
                      dALPHA.transpose(1, 0, 2, 3).reshape(8, TB, H)),
        "W_zb": mm(Hhat2.T, dZB.reshape(TB, 4 * E)),
        # W_beta[k] = sum over steps of zb_k^T @ da_k: [4, E, TB] @ [4, TB, H]
        "W_beta": mm(sv.zb.reshape(TB, 4, E).transpose(1, 2, 0),
                     dA.reshape(TB, 4, H).transpose(1, 0, 2)),
    }
    # forward was: XW = X @ W_xh and HX = X @ hyper_W_xh[:D] over all steps
    dx = (mm(dXW2, p["W_xh"].T) + mm(dHA2, p["hyper_W_xh"][:D].T)).reshape(T, B, D)
    dstate0 = xp.concatenate([dh_next, dhhat_next, dc, dchat], axis=1)
    return dx, dstate0, grads


def hyper_lstm_step(x_t, state, p, kernels=None):
    """One inference step (no dropout, no mask, no cache); same numbers as ``hyper_lstm_forward``.

    Inputs: x_t [B, D]; state [B, 2H + 2Hh]. Returns: h [B, H]; new_state [B, 2H + 2Hh].
    """
    mm = matmul if kernels is None else kernels.matmul
    xp = get_xp(x_t)
    D, H, Hh, E = hyper_sizes(p)
    B = x_t.shape[0]
    dt = xp.result_type(x_t.dtype, p["W_xh"].dtype)
    prev = [xp.ascontiguousarray(s, dtype=dt) for s in hyper_lstm_split_state(state, H, Hh)]
    new = [xp.empty_like(s) for s in prev]
    xw = mm(x_t, p["W_xh"])
    hx = mm(x_t, p["hyper_W_xh"][:D])
    hyper_step_forward(p, xw, hx, prev, None, None, new, step_buffers(xp, B, H, Hh, E, dt),
                       kernels)
    return new[0], xp.concatenate(new, axis=1)
