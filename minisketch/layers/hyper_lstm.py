"""HyperLSTM cell (Ha, Dai & Le 2016, as used by sketch-rnn) over a time-major sequence.

A small layer-norm LSTM, the *hyper cell* (Hh = ``hyper_num_units`` units, no dropout), reads
concat(x_t, h_prev) and produces h_hat. From h_hat come per-unit scales of the eight weight blocks
{W_xh x, W_hh h} x {i, j, f, o} of the main cell, and biases of its four h-blocks (SPEC section 3):

    hyper cell:  a_hat = [x_t, h_prev] @ hyper_W_xh + h_hat_prev @ hyper_W_hh
                 (c_hat, h_hat) = layer-norm LSTM update of (c_hat_prev, h_hat_prev) from a_hat
    embeddings:  zw = h_hat @ W_zw + b_zw          [B, 8E]  (block k uses zw[:, kE:(k+1)E])
                 zb = h_hat @ W_zb                 [B, 4E]
    scales:      alpha_k = zw_k @ W_alpha[k]       [B, H]   k = 0..7: x-blocks i, j, f, o,
                                                            then h-blocks i, j, f, o
    biases:      beta_k  = zb_k @ W_beta[k]        [B, H]   k = 0..3: gates i, j, f, o
    main cell:   a_k = alpha_k * (x_t @ W_xh)_k + alpha_{4+k} * (h_prev @ W_hh)_k + beta_k + b_k
                 then exactly the layer-norm LSTM (``layer_norm_lstm.py``) from a:
                 y_k = gamma_k LN(a_k) + beta'_k; c = c_prev sigmoid(y_f + 1) + sigmoid(y_i) g;
                 g = tanh(y_j) * keep_t; h = tanh(gamma_c LN(c) + beta'_c) sigmoid(y_o)

State layout: one array [B, 2H + 2Hh] = [h | h_hat | c | c_hat] (SPEC; magenta's layout).

Parameters (E = ``hyper_embedding_size``):
    W_xh [D, 4H]              Glorot-uniform
    W_hh [H, 4H]              four independent orthogonal H x H blocks
    b [4H]                    zeros (plain gate bias)
    ln_gamma [4H], ln_beta [4H], ln_c_gamma [H], ln_c_beta [H]   ones / zeros
    hyper_W_xh [D + H, 4Hh]   the hyper cell's input weights; rows 0..D-1 read x, rows D.. read
                              h_prev (Glorot-uniform over fan-in D + H)
    hyper_W_hh [Hh, 4Hh], hyper_ln_gamma [4Hh], hyper_ln_beta [4Hh], hyper_ln_c_gamma [Hh],
    hyper_ln_c_beta [Hh]      the rest of the hyper cell (a layer-norm LSTM, reference init)
    W_zw [Hh, 8E]             zeros      (the eight z_w projections side by side)
    b_zw [8E]                 ones
    W_alpha [8, E, H]         0.1 / E    (so alpha = 0.1 at init)
    W_zb [Hh, 4E]             N(0, 0.01^2), no bias
    W_beta [4, E, H]          zeros

Work layout: one matmul each for the input projections x @ W_xh and x @ hyper_W_xh[:D] over all
steps; per step the recurrent matmuls (h_prev @ W_hh, h_prev @ hyper_W_xh[D:],
h_hat_prev @ hyper_W_hh, the embedding and scale matmuls) and the pointwise step functions
``ln_lstm_cell_forward`` (hyper cell and main cell), ``hyper_modulate_forward`` and their
backward twins, dispatched through ``kernels``; weight gradients one matmul (or one batched
matmul / reduction) each over all steps; buffers allocated once per sequence.

Saved per-step arrays are [B, ...] slices of per-sequence [T, B, ...] arrays, except alpha: its
step t is one flat run of 8 B H values holding the step's [8, n, H] scales (n = B without
``active``), so that the scales of a leading-row prefix are contiguous too. The gradients that
only parameter reductions read (W_alpha's, one batched [8, E, n] @ [8, n, H] product a step, and
the layer-norm gammas' and betas') are summed one of two ways, chosen by ``per_step`` of
``hyper_lstm_backward`` (the same numbers up to float rounding):
    * per step (the default on the host): added up step by step into small float64
      accumulators, instead of keeping [T, B, ...] arrays of per-step gradients (1.6 GB fewer at
      the reference sizes, for about the same work);
    * all steps (the default on a GPU, where memory is plentiful and each small launch costs
      more than its arithmetic): the per-step gradients are kept, dALPHA as [8, T, B, H] (the
      layout of one batched [8, E, T B] @ [8, T B, H] product: the reshape is free), and reduced
      once after the loop, a dozen fewer launches a step.

Two optional arguments of ``hyper_lstm_forward`` skip work without changing the math (the
backward reads them from the cache); calls without them are unchanged:
    * ``x_const`` [B, Dc]: an input that is the same at every step (sketch-rnn's decoder reads
      [S_{i-1}, z]). Then x is [T, B, Dx] with Dx + Dc = D, the input at step t is
      concat(x_t, x_const), and both projections of the input (x @ W_xh and the hyper cell's
      x @ hyper_W_xh[:D]) project x_const once per sequence and add it to every step's projection.
      ``hyper_lstm_backward`` then returns dx as the pair (dx_seq [T, B, Dx], dx_const [B, Dc]).
    * ``active``: a host sequence (list, tuple, range or NumPy integer array; never a device
      array) of T non-increasing ints in [0, B], used instead of ``mask``: rows b < active[t] run
      step t, the others are padding steps, exactly as mask[t, b] = (b < active[t]). Only the
      leading rows are computed: every per-step matmul and step function works on contiguous
      [:n] prefix slices; the padding rows' state (h, h_hat, c, c_hat) and its gradient are
      copied through; a step with n = 0 does no work.

``hyper_lstm_backward`` returns fresh gradient arrays (nothing is accumulated into buffers).
Runs on NumPy or CuPy arrays unchanged.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..xp import get_xp
from .layer_norm_lstm import ln_lstm_init, ln_param_grads
from .linear import glorot_uniform, orthogonal
from .lstm import (check_active, input_projection, input_projection_backward,
                   resolve_kernels)

HYPER_NUM_UNITS = 256       # Hh, sketch-rnn's hyper_num_units
HYPER_EMBEDDING_SIZE = 32   # E, sketch-rnn's hyper_embedding_size
ALPHA_INIT = 0.1            # alpha = 0.1 at init (W_alpha = 0.1 / E, zw = 1)


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
# One step of the sequence code (shared by forward and step, so both give the same numbers)

def _sizes(p):
    H = p["W_hh"].shape[0]
    Hh = p["hyper_W_hh"].shape[0]
    E = p["W_zw"].shape[1] // 8
    D = p["W_xh"].shape[0]
    return D, H, Hh, E


def _step_buffers(xp, B, H, Hh, E, dt):
    """Scratch and saved arrays of one step (the forward uses views of per-sequence arrays)."""
    return SimpleNamespace(
        hh=xp.empty((B, 4 * H), dt), ha=xp.empty((B, 4 * Hh), dt), tmp=xp.empty((B, 4 * Hh), dt),
        hact=xp.empty((B, 5 * Hh), dt), hnorm=xp.empty((B, 5 * Hh), dt),
        hrstd=xp.empty((B, 5), dt), zw=xp.empty((B, 8 * E), dt), alpha=xp.empty((8, B, H), dt),
        zb=xp.empty((B, 4 * E), dt), beta=xp.empty((4, B, H), dt), a=xp.empty((B, 4 * H), dt),
        act=xp.empty((B, 5 * H), dt), norm=xp.empty((B, 5 * H), dt), rstd=xp.empty((B, 5), dt))


def _step_forward(K, p, xw_t, hx_t, h_prev, hhat_prev, c_prev, chat_prev, keep_t, mask_t,
                  h_out, hhat_out, c_out, chat_out, buf):
    """One HyperLSTM step. xw_t = x_t @ W_xh, hx_t = x_t @ hyper_W_xh[:D] (precomputed for all
    steps by the caller); writes the new state parts and the saved arrays in ``buf``."""
    D, H, Hh, E = _sizes(p)
    B = h_prev.shape[0]
    # hyper cell: a_hat = x_t @ hyper_W_xh[:D] + h_prev @ hyper_W_xh[D:] + h_hat_prev @ hyper_W_hh
    K.matmul(h_prev, p["hyper_W_xh"][D:], out=buf.ha)
    buf.ha += hx_t
    K.matmul(hhat_prev, p["hyper_W_hh"], out=buf.tmp)
    buf.ha += buf.tmp
    K.ln_lstm_cell_forward(buf.ha, chat_prev, hhat_prev, None, mask_t, p["hyper_ln_gamma"],
                           p["hyper_ln_beta"], p["hyper_ln_c_gamma"], p["hyper_ln_c_beta"],
                           chat_out, hhat_out, buf.hact, buf.hnorm, buf.hrstd)
    # embeddings and the per-unit scales / biases they give
    K.matmul(hhat_out, p["W_zw"], out=buf.zw)
    buf.zw += p["b_zw"]
    K.matmul(buf.zw.reshape(B, 8, E).transpose(1, 0, 2), p["W_alpha"], out=buf.alpha)
    K.matmul(hhat_out, p["W_zb"], out=buf.zb)
    K.matmul(buf.zb.reshape(B, 4, E).transpose(1, 0, 2), p["W_beta"], out=buf.beta)
    # main cell
    K.matmul(h_prev, p["W_hh"], out=buf.hh)
    K.hyper_modulate_forward(xw_t, buf.hh, buf.alpha, buf.beta, p["b"], buf.a)
    K.ln_lstm_cell_forward(buf.a, c_prev, h_prev, keep_t, mask_t, p["ln_gamma"], p["ln_beta"],
                           p["ln_c_gamma"], p["ln_c_beta"], c_out, h_out, buf.act, buf.norm,
                           buf.rstd)


# ---------------------------------------------------------------------------------------------
# Options of the sequence functions: a constant input part and leading-row padding

def _check_x_const(x_const, B: int, Dx: int, D: int):
    """x_const must be [B, D - Dx] (D: the input size of the parameters)."""
    if x_const is None:
        if Dx != D:
            raise ValueError(f"x has {Dx} features per step but the parameters read {D}")
        return
    if x_const.ndim != 2 or x_const.shape[0] != B or Dx + x_const.shape[1] != D:
        raise ValueError(f"x_const must be [B, D - Dx] = [{B}, {D - Dx}], "
                         f"got {tuple(x_const.shape)}")


# ---------------------------------------------------------------------------------------------
# Sequence forward / backward

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
    D, H, Hh, E = _sizes(p)
    T, B, Dx = x.shape
    _check_x_const(x_const, B, Dx, D)
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
        _step_forward(K, p, XW[t][:n], HX[t][:n], st.h[t][:n], st.hhat[t][:n], st.c[t][:n],
                      st.chat[t][:n], None if keep is None else keep[t][:n],
                      None if mask is None else mask[t], st.h[t + 1][:n], st.hhat[t + 1][:n],
                      st.c[t + 1][:n], st.chat[t + 1][:n], buf)
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
    D, H, Hh, E = _sizes(p)
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
            for a, g in zip(acc.ln, ln_param_grads(dY_t, sv.norm[t][:n], H, out=ln_t)):
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
            for a, g in zip(acc.hln, ln_param_grads(dHY_t, sv.hnorm[t][:n], Hh, out=hln_t)):
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


def hyper_lstm_step(x_t, state, p, kernels=None):
    """One inference step (no dropout, no mask, no cache); same numbers as ``hyper_lstm_forward``.

    Inputs: x_t [B, D]; state [B, 2H + 2Hh]. Returns: h [B, H]; new_state [B, 2H + 2Hh].
    """
    K = resolve_kernels(kernels)
    xp = get_xp(x_t)
    D, H, Hh, E = _sizes(p)
    B = x_t.shape[0]
    dt = xp.result_type(x_t.dtype, p["W_xh"].dtype)
    parts = [xp.ascontiguousarray(s, dtype=dt) for s in hyper_lstm_split_state(state, H, Hh)]
    out = [xp.empty_like(s) for s in parts]
    xw = K.matmul(x_t, p["W_xh"])
    hx = K.matmul(x_t, p["hyper_W_xh"][:D])
    _step_forward(K, p, xw, hx, *parts, None, None, *out, _step_buffers(xp, B, H, Hh, E, dt))
    return out[0], xp.concatenate(out, axis=1)
