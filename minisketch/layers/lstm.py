"""LSTM cell over a whole (padded, time-major) sequence, forward and backward.

Math (SPEC section 3; gate blocks in the order i, j, f, o; forget bias +1 added at run time):

    a = x_t @ W_xh + h_prev @ W_hh + b                       [B, 4H] = [a_i | a_j | a_f | a_o]
    i = sigmoid(a_i)   g = tanh(a_j) * keep_t   f = sigmoid(a_f + 1)   o = sigmoid(a_o)
    c = f * c_prev + i * g
    h = o * tanh(c)

``keep_t`` is the recurrent-dropout multiplier of the candidate (Semeniuta et al. 2016): entries 0
or 1/keep_prob, drawn by the caller, None for no dropout. ``mask_t`` marks real steps (1) and
padding steps (0); at a padding step the state passes through unchanged (c = c_prev, h = h_prev)
and so do the gradients.

State layout: one array [B, 2H] = [c | h] (the magenta.js layout).

Parameters (short names; the model prefixes them, e.g. "dec/W_xh"):
    W_xh [D, 4H]   Glorot-uniform
    W_hh [H, 4H]   four independent orthogonal H x H blocks
    b    [4H]      zeros (the forget bias +1 is not stored)

How the work is laid out (the Numba and CuPy kernel sets keep this shape):
    * all input projections are ONE matmul: X.reshape(T*B, D) @ W_xh;
    * per step only h_prev @ W_hh, then the pointwise gate math in ``lstm_cell_forward`` /
      ``lstm_cell_backward``, which write into preallocated arrays (dispatched via ``kernels``);
    * weight gradients are ONE matmul each over all steps (H_prev.reshape(T*B, H).T @ dA...);
    * every per-step buffer is allocated once per sequence.

Two optional arguments of the sequence functions (here and in ``layer_norm_lstm.py``) skip work
without changing the math; calls without them are unchanged:
    * ``x_const`` [B, Dc]: an input that is the same at every step (sketch-rnn's decoder feeds
      [S_{i-1}, z]). Then x is [T, B, Dx], the cell's input at step t is concat(x_t, x_const)
      with Dx + Dc = D, and x_const @ W_xh[Dx:] is computed once instead of T times. Backward
      then returns dx as the pair (dx_seq [T, B, Dx], dx_const [B, Dc]).
    * ``active``: a host sequence of T non-increasing ints (the batch sorted by length, longest
      first) in place of ``mask``: rows [0, active[t]) run step t, rows [active[t], B) are
      padding (as mask[t, b] = b < active[t]). Only the leading rows are computed (recurrent
      matmul and step kernel on contiguous prefix slices); the padding rows' state and
      gradients are copied through. The backward keeps the per-step gradients of the real rows
      only, packed step after step ([sum(active), ...], ``pack_rows``), so the all-steps
      weight-gradient products run over those rows and no zeros.

``lstm_backward`` returns fresh gradient arrays (nothing is accumulated into buffers).
Everything runs on NumPy or CuPy arrays unchanged: the array module comes from the inputs.
"""
from __future__ import annotations

import numpy as np

from ..xp import get_xp
from .linear import glorot_uniform, orthogonal

FORGET_BIAS = 1.0  # added to the forget-gate pre-activation at run time (SPEC section 3)


# ---------------------------------------------------------------------------------------------
# Pointwise helpers (numerically stable, any dtype, NumPy or CuPy)

def sigmoid(x, out=None):
    """1 / (1 + exp(-x)) without overflow: exp is only taken of -|x| <= 0.

    x any shape; out (same shape) to write into, or None for a new array. Returns the result."""
    xp = get_xp(x)
    e = xp.exp(-xp.abs(x))                      # in (0, 1]
    num = xp.where(x >= 0, 1.0, e)              # 1 / (1 + e) for x >= 0, e / (1 + e) below
    return xp.divide(num, 1.0 + e, out=out)


def resolve_kernels(kernels):
    """The kernel namespace to use: ``kernels`` itself, or the reference set for None."""
    if kernels is not None:
        return kernels
    from ..kernels.reference import kernel_set  # late import: kernels/reference imports layers
    return kernel_set()


def check_active(active, T: int, B: int, mask=None):
    """Validate the ``active`` argument of a sequence function; returns a tuple of T Python ints
    (or None for None).

    active: a host sequence (list, tuple, range or NumPy integer array, never a device array) of T
    ints with B >= active[0] >= active[1] >= ... >= 0. Raises ValueError when it has the wrong
    length, is not non-increasing, is out of range, holds non-integers, or when ``mask`` is
    given too (they say the same thing two ways); TypeError for a device (CuPy) array."""
    if active is None:
        return None
    if mask is not None:
        raise ValueError("give either mask or active, not both")
    if hasattr(active, "__cuda_array_interface__"):
        raise TypeError("active must be a host sequence of ints (list, tuple or NumPy array), "
                        "not a device array: its values steer the Python loop over steps")
    arr = np.asarray(active)
    if arr.ndim != 1 or arr.shape[0] != T:
        raise ValueError(f"active must hold one int per step: expected length {T}, "
                         f"got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"active must hold integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > B):
        raise ValueError(f"active entries must lie in [0, {B}] (the batch size), "
                         f"got min {arr.min()} and max {arr.max()}")
    if arr.size > 1 and np.any(arr[1:] > arr[:-1]):
        raise ValueError("active must be non-increasing (sort the batch by length, longest "
                         "first)")
    return tuple(int(n) for n in arr)


def input_projection(x, W_xh, b=None, x_const=None, kernels=None):
    """All steps' input projections [T, B, 4H] at once: x @ W_xh (+ b).

    x [T, B, D] and W_xh [D, 4H]; or, with x_const [B, Dc], x [T, B, Dx] (Dx + Dc = D) and the
    input at every step concat(x_t, x_const): x @ W_xh[:Dx] + (x_const @ W_xh[Dx:] + b), whose
    second term is computed once for all steps. b [4H] or None (no bias). kernels: whose
    ``matmul`` multiplies (None = the reference's)."""
    K = resolve_kernels(kernels)
    T, B, Dx = x.shape
    if x_const is None:
        XW = K.matmul(x.reshape(T * B, Dx), W_xh).reshape(T, B, W_xh.shape[1])
        if b is not None:
            XW += b
        return XW
    if x_const.ndim != 2 or x_const.shape[0] != B or Dx + x_const.shape[1] != W_xh.shape[0]:
        raise ValueError(f"x_const must be [B, D - Dx] = [{B}, {W_xh.shape[0] - Dx}], "
                         f"got {tuple(x_const.shape)}")
    XW = K.matmul(x.reshape(T * B, Dx), W_xh[:Dx]).reshape(T, B, W_xh.shape[1])
    cw = K.matmul(x_const, W_xh[Dx:])
    if b is not None:
        cw += b
    XW += cw[None]
    return XW


def input_projection_backward(dA, x, W_xh, x_const=None, need_dx=True, kernels=None):
    """Backward of ``input_projection`` given dA [T, B, 4H], the gradient w.r.t. its output.

    Returns (dx, dW_xh [D, 4H], dA_sum): without x_const dx [T, B, D] and dA_sum None; with it
    dx = (dx_seq [T, B, Dx], dx_const [B, Dc]) and dA_sum = dA summed over steps [B, 4H] (what
    the bias gradient needs). need_dx=False skips the gradient w.r.t. the per-step input x (a
    [T B, 4H] x [4H, Dx] product nobody reads when x is data): dx, or dx_seq, is then None.
    kernels: whose ``matmul`` multiplies (None = the reference's)."""
    K = resolve_kernels(kernels)
    T, B, Dx = x.shape
    G = dA.shape[2]
    dA2 = dA.reshape(T * B, G)
    if x_const is None:
        # forward was: XW = X @ W_xh, one matmul over all steps
        dx = K.matmul(dA2, W_xh.T).reshape(T, B, Dx) if need_dx else None
        return dx, K.matmul(x.reshape(T * B, Dx).T, dA2), None
    # forward was: XW[t] = x_t @ W_xh[:Dx] + x_const @ W_xh[Dx:] at every step t, so the
    # constant part's gradients see dA summed over the steps
    dA_sum = dA.sum(axis=0)
    dx_seq = K.matmul(dA2, W_xh[:Dx].T).reshape(T, B, Dx) if need_dx else None
    dx_const, dW = _x_const_grads(x.reshape(T * B, Dx), dA2, dA_sum, W_xh, x_const, K)
    return (dx_seq, dx_const), dW, dA_sum


def _x_const_grads(X2, dA2, dA_sum, W_xh, x_const, K):
    """The gradients of ``input_projection`` with x_const, given the per-step inputs X2 [R, Dx]
    and their gradients dA2 [R, G] (R rows over all steps) and dA summed over the steps per
    batch row, dA_sum [B, G]: (dx_const [B, Dc], dW_xh [D, G]). K: the kernels (``matmul``)."""
    xp = get_xp(dA2)
    Dx = X2.shape[1]
    dx_const = K.matmul(dA_sum, W_xh[Dx:].T)
    dW = xp.empty(W_xh.shape, dtype=xp.result_type(X2.dtype, x_const.dtype, dA2.dtype))
    K.matmul(X2.T, dA2, out=dW[:Dx])
    K.matmul(x_const.T, dA_sum, out=dW[Dx:])
    return dx_const, dW


def row_offsets(active) -> list:
    """Offsets of each step's real rows in the packed layout: [0, n_0, n_0 + n_1, ...]."""
    offs = [0]
    for n in active:
        offs.append(offs[-1] + n)
    return offs


def pack_rows(a, active):
    """The real rows of a per-step array a [T, B, ...] (rows b < active[t] of step t), packed
    step after step: [sum(active), ...]."""
    xp = get_xp(a)
    parts = [a[t][:n] for t, n in enumerate(active) if n > 0]
    if not parts:
        return xp.empty((0,) + tuple(a.shape[2:]), dtype=a.dtype)
    return xp.concatenate(parts, axis=0)


def packed_input_projection_backward(dA, x, W_xh, x_const, need_dx, active, offs, K):
    """``input_projection_backward`` for a packed dA [sum(active), G] (the real rows only, as
    ``pack_rows`` lays them out): the same returns, dx unpacked to [T, B, Dx] with zeros on the
    padding rows (their gradient). K: the kernels (``matmul``)."""
    xp = get_xp(dA)
    T, B, Dx = x.shape
    G = dA.shape[1]
    Xp = pack_rows(x, active)                                           # [R, Dx]
    W_seq = W_xh if x_const is None else W_xh[:Dx]
    dx = None
    if need_dx:
        dxp = K.matmul(dA, W_seq.T)
        dx = xp.zeros((T, B, Dx), dtype=dxp.dtype)
        for t, n in enumerate(active):
            dx[t][:n] = dxp[offs[t]:offs[t + 1]]
    if x_const is None:
        return dx, K.matmul(Xp.T, dA), None
    # forward was: XW[t] = x_t @ W_xh[:Dx] + x_const @ W_xh[Dx:] for the real rows of step t
    dA_sum = xp.zeros((B, G), dtype=dA.dtype)
    for t, n in enumerate(active):
        if n > 0:
            dA_sum[:n] += dA[offs[t]:offs[t + 1]]
    dx_const, dW = _x_const_grads(Xp, dA, dA_sum, W_xh, x_const, K)
    return (dx, dx_const), dW, dA_sum


def all_steps_backward(dA, x, W_xh, x_const, need_dx, hs_prev, active, K):
    """The all-steps part of a recurrent backward (``lstm_backward``, ``ln_lstm_backward``):
    the input projection's gradients, and the rows that the W_hh gradient multiplies.

    dA: [T, B, G] without ``active``, packed [sum(active), G] with it (``pack_rows``' layout);
    hs_prev [T, B, H]: the h entering each step. Returns (dx, dW_xh, dA_sum, H2, dA2) with
    dW_hh = H2.T @ dA2: all T B rows without active, the real rows only with it. K: the
    kernels (``matmul``)."""
    if active is None:
        T, B, H = hs_prev.shape
        dx, dW_xh, dA_sum = input_projection_backward(dA, x, W_xh, x_const, need_dx, K)
        return dx, dW_xh, dA_sum, hs_prev.reshape(T * B, H), dA.reshape(T * B, -1)
    dx, dW_xh, dA_sum = packed_input_projection_backward(dA, x, W_xh, x_const, need_dx, active,
                                                         row_offsets(active), K)
    return dx, dW_xh, dA_sum, pack_rows(hs_prev, active), dA


# ---------------------------------------------------------------------------------------------
# Parameters

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
# Sequence forward / backward

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


def lstm_step(x_t, state, p, kernels=None):
    """One inference step (no dropout, no mask, no cache); same numbers as ``lstm_forward``.

    Inputs: x_t [B, D]; state [B, 2H] = [c | h]; p as for ``lstm_forward``.
    Returns: h [B, H]; new_state [B, 2H].
    """
    K = resolve_kernels(kernels)
    xp = get_xp(x_t)
    W_xh, W_hh, b = p["W_xh"], p["W_hh"], p["b"]
    H = W_hh.shape[0]
    B = x_t.shape[0]
    dt = xp.result_type(x_t.dtype, W_xh.dtype)
    xw = K.matmul(x_t, W_xh)
    xw += b
    c_prev = xp.ascontiguousarray(state[:, :H], dtype=dt)
    h_prev = xp.ascontiguousarray(state[:, H:], dtype=dt)
    hh = K.matmul(h_prev, W_hh)
    c = xp.empty((B, H), dtype=dt)
    h = xp.empty((B, H), dtype=dt)
    act = xp.empty((B, 5 * H), dtype=dt)
    K.lstm_cell_forward(xw, hh, c_prev, h_prev, None, None, c, h, act)
    return h, xp.concatenate([c, h], axis=1)
