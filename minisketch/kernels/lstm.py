"""The LSTM cell step, compiled for the CPU (Numba) and the GPU (CUDA).

Both replace the reference step functions ``lstm_cell_forward`` / ``lstm_cell_backward`` of
``layers/lstm.py`` with the same arguments and outputs (their docstrings are the contract), and
are tested against them in ``tests/test_kernel_contract.py``.

Numba: ``_lstm_*_rows`` does rows lo..hi-1, one pass over a row's units with every gate in
registers, writing straight into the preallocated outputs; ``_lstm_*_par`` splits the rows over
Numba's threads (``jit.threads_for``). The forward matches the reference to a few ulp (its
exp/tanh/sigmoid are ``numerics.py``'s); the backward is pure arithmetic in the reference's
order, so it matches bit for bit.

CUDA: one thread per (row, unit) computes the four gates, the cell update, dropout and the
padding mask in one kernel (``lstm_cell_fwd`` / ``lstm_cell_bwd``).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..layers import lstm as ref
from . import cuda
from .constants import FORGET_BIAS
from .jit import optional, parallel, serial, threads_for, warm
from .numerics import sigmoid, tanh


# ---------------------------------------------------------------------------------------------
# Numba (CPU)
#
# Inner loops index one view per gate block (a[:H], a[H:2H], ...) rather than a[k], a[H + k]:
# with offsets into one array LLVM cannot prove the stores independent and does not vectorize.


@serial
def _lstm_fwd_rows(lo, hi, xw_t, hh_t, c_prev, h_prev, keep_t, use_keep, mask_t, use_mask,
                   c_out, h_out, act_out):
    H = c_prev.shape[1]
    fb = c_out.dtype.type(FORGET_BIAS)
    for b in range(lo, hi):
        xw = xw_t[b]
        hh = hh_t[b]
        act = act_out[b]
        xi, xj, xf, xo = xw[:H], xw[H:2 * H], xw[2 * H:3 * H], xw[3 * H:4 * H]
        hi_, hj, hf, ho = hh[:H], hh[H:2 * H], hh[2 * H:3 * H], hh[3 * H:4 * H]
        ai, ag, af, ao, at = (act[:H], act[H:2 * H], act[2 * H:3 * H], act[3 * H:4 * H],
                              act[4 * H:5 * H])
        cp = c_prev[b]
        co = c_out[b]
        hout = h_out[b]
        kp = keep_t[b if use_keep else 0]
        for k in range(H):
            i = sigmoid(xi[k] + hi_[k])
            g = tanh(xj[k] + hj[k])
            f = sigmoid((xf[k] + hf[k]) + fb)
            o = sigmoid(xo[k] + ho[k])
            gd = g * kp[k] if use_keep else g
            c = f * cp[k] + i * gd
            tc = tanh(c)
            ai[k] = i
            ag[k] = g
            af[k] = f
            ao[k] = o
            at[k] = tc
            co[k] = c
            hout[k] = o * tc
        if use_mask and mask_t[b] == 0:
            # padding step: the state passes through
            hp = h_prev[b]
            for k in range(H):
                co[k] = cp[k]
                hout[k] = hp[k]


@parallel
def _lstm_fwd_par(n, xw_t, hh_t, c_prev, h_prev, keep_t, use_keep, mask_t, use_mask, c_out,
                  h_out, act_out):
    B = c_prev.shape[0]
    for j in prange(n):
        _lstm_fwd_rows(j * B // n, (j + 1) * B // n, xw_t, hh_t, c_prev, h_prev, keep_t,
                       use_keep, mask_t, use_mask, c_out, h_out, act_out)


def lstm_cell_forward_numba(xw_t, hh_t, c_prev, h_prev, keep_t, mask_t, c_out, h_out, act_out):
    """Compiled ``layers.lstm.lstm_cell_forward`` (same arguments and outputs)."""
    keep, use_keep = optional(keep_t, c_out, 2)
    mask, use_mask = optional(mask_t, c_out, 1)
    B, H = c_prev.shape
    n = threads_for(B, 4 * H)
    if n > 1:
        _lstm_fwd_par(n, xw_t, hh_t, c_prev, h_prev, keep, use_keep, mask, use_mask, c_out,
                      h_out, act_out)
    else:
        _lstm_fwd_rows(0, B, xw_t, hh_t, c_prev, h_prev, keep, use_keep, mask, use_mask, c_out,
                       h_out, act_out)


@serial
def _lstm_bwd_rows(lo, hi, dh_t, dc_t, c_prev, act_t, keep_t, use_keep, mask_t, use_mask,
                   da_out, dc_prev_out, dh_pass_out):
    H = c_prev.shape[1]
    one = da_out.dtype.type(1.0)
    zero = da_out.dtype.type(0.0)
    for b in range(lo, hi):
        dh = dh_t[b]
        dct = dc_t[b]
        dcp = dc_prev_out[b]
        dhp = dh_pass_out[b]
        da = da_out[b]
        if use_mask and mask_t[b] == 0:
            # forward was: c_out = c_prev, h_out = h_prev (padding step)
            for k in range(4 * H):
                da[k] = zero
            for k in range(H):
                dcp[k] = dct[k]
                dhp[k] = dh[k]
            continue
        act = act_t[b]
        ai, ag, af, ao, at = (act[:H], act[H:2 * H], act[2 * H:3 * H], act[3 * H:4 * H],
                              act[4 * H:5 * H])
        dai, dag, daf, dao = da[:H], da[H:2 * H], da[2 * H:3 * H], da[3 * H:4 * H]
        cp = c_prev[b]
        kp = keep_t[b if use_keep else 0]
        for k in range(H):
            i = ai[k]
            g = ag[k]
            f = af[k]
            o = ao[k]
            tc = at[k]
            # forward was: h = o * tanh(c)
            do = dh[k] * tc
            dc = dct[k] + dh[k] * o * (one - tc * tc)
            # forward was: c = f * c_prev + i * (g * keep)
            if use_keep:
                di = dc * (g * kp[k])
                dg = dc * i * kp[k]
            else:
                di = dc * g
                dg = dc * i
            df = dc * cp[k]
            dcp[k] = dc * f
            dhp[k] = zero
            # forward was: i, g, f, o = sigmoid(a_i), tanh(a_j), sigmoid(a_f + 1), sigmoid(a_o)
            dai[k] = di * i * (one - i)
            dag[k] = dg * (one - g * g)
            daf[k] = df * f * (one - f)
            dao[k] = do * o * (one - o)


@parallel
def _lstm_bwd_par(n, dh_t, dc_t, c_prev, act_t, keep_t, use_keep, mask_t, use_mask, da_out,
                  dc_prev_out, dh_pass_out):
    B = c_prev.shape[0]
    for j in prange(n):
        _lstm_bwd_rows(j * B // n, (j + 1) * B // n, dh_t, dc_t, c_prev, act_t, keep_t,
                       use_keep, mask_t, use_mask, da_out, dc_prev_out, dh_pass_out)


def lstm_cell_backward_numba(dh_t, dc_t, c_prev, act_t, keep_t, mask_t, da_out, dc_prev_out,
                             dh_pass_out):
    """Compiled ``layers.lstm.lstm_cell_backward`` (same arguments and outputs). Pure
    arithmetic in the reference's order: the outputs match it bit for bit."""
    keep, use_keep = optional(keep_t, da_out, 2)
    mask, use_mask = optional(mask_t, da_out, 1)
    B, H = c_prev.shape
    n = threads_for(B, 4 * H)
    if n > 1:
        _lstm_bwd_par(n, dh_t, dc_t, c_prev, act_t, keep, use_keep, mask, use_mask, da_out,
                      dc_prev_out, dh_pass_out)
    else:
        _lstm_bwd_rows(0, B, dh_t, dc_t, c_prev, act_t, keep, use_keep, mask, use_mask, da_out,
                       dc_prev_out, dh_pass_out)


# ---------------------------------------------------------------------------------------------
# CUDA (GPU)

CUDA_SOURCE = cuda.render(r"""
// ---------------------------------------------------------------------------------------------
// LSTM (layers/lstm.py lstm_cell_forward / lstm_cell_backward), one thread per (b, k).

template <typename T>
__global__ void lstm_cell_fwd(const T* xw, const T* hh, const T* c_prev, const T* h_prev,
                              const T* keep, const T* mask, T* c_out, T* h_out, T* act,
                              const int B, const int H, const int has_keep, const int has_mask) {
    GRID_STRIDE(idx, (long long)B * H) {
        const long long b = idx / H, k = idx - b * H;
        const long long a0 = b * 4 * H + k;        // gate block g of row b: a0 + g * H
        // a = xw_t + hh_t
        const T i = k_sigmoid(xw[a0] + hh[a0]);
        const T g = k_tanh(xw[a0 + H] + hh[a0 + H]);
        const T f = k_sigmoid((xw[a0 + 2 * H] + hh[a0 + 2 * H]) + T($FORGET_BIAS));   // forget bias +1
        const T o = k_sigmoid(xw[a0 + 3 * H] + hh[a0 + 3 * H]);
        const T gd = has_keep ? g * keep[idx] : g;
        const T cp = c_prev[idx];
        const T c = f * cp + i * gd;
        const T tc = k_tanh(c);
        const T h = o * tc;
        const long long s0 = b * 5 * H + k;
        act[s0] = i; act[s0 + H] = g; act[s0 + 2 * H] = f; act[s0 + 3 * H] = o;
        act[s0 + 4 * H] = tc;
        const bool real = !has_mask || mask[b] != T(0);
        c_out[idx] = real ? c : cp;
        h_out[idx] = real ? h : h_prev[idx];
    }
}

template <typename T>
__global__ void lstm_cell_bwd(const T* dh_t, const T* dc_t, const T* c_prev, const T* act,
                              const T* keep, const T* mask, T* da, T* dc_prev, T* dh_pass,
                              const int B, const int H, const int has_keep, const int has_mask) {
    GRID_STRIDE(idx, (long long)B * H) {
        const long long b = idx / H, k = idx - b * H;
        const long long s0 = b * 5 * H + k;
        const T i = act[s0], g = act[s0 + H], f = act[s0 + 2 * H], o = act[s0 + 3 * H];
        const T tc = act[s0 + 4 * H];
        const T dh = dh_t[idx], dct = dc_t[idx];
        // forward was: h = o * tanh(c)
        const T d_o = dh * tc;
        const T dc = dct + dh * o * (T(1) - tc * tc);
        // forward was: c = f * c_prev + i * gd, gd = g * keep
        const T kp = has_keep ? keep[idx] : T(1);
        const T gd = has_keep ? g * kp : g;
        const T di = dc * gd;
        const T dg = has_keep ? dc * i * kp : dc * i;
        const T df = dc * c_prev[idx];
        const T dcp = dc * f;
        const bool real = !has_mask || mask[b] != T(0);
        const long long a0 = b * 4 * H + k;
        da[a0]         = real ? di * i * (T(1) - i) : T(0);
        da[a0 + H]     = real ? dg * (T(1) - g * g) : T(0);
        da[a0 + 2 * H] = real ? df * f * (T(1) - f) : T(0);
        da[a0 + 3 * H] = real ? d_o * o * (T(1) - o) : T(0);
        dc_prev[idx] = real ? dcp : dct;
        dh_pass[idx] = real ? T(0) : dh;
    }
}
""", FORGET_BIAS=FORGET_BIAS)
CUDA = cuda.Module(CUDA_SOURCE, ("lstm_cell_fwd", "lstm_cell_bwd"))


def lstm_cell_forward_cuda(xw_t, hh_t, c_prev, h_prev, keep_t, mask_t, c_out, h_out, act_out):
    """Fused ``layers.lstm.lstm_cell_forward`` (same signature and outputs)."""
    dt = c_out.dtype
    mask_t = cuda.mask_as(mask_t, dt)
    if not cuda.fast(dt, xw_t, hh_t, c_prev, h_prev, keep_t, mask_t, c_out, h_out, act_out):
        return ref.lstm_cell_forward(xw_t, hh_t, c_prev, h_prev, keep_t, mask_t, c_out, h_out,
                                     act_out)
    B, H = c_prev.shape
    if B * H == 0:
        return None
    CUDA.kernel("lstm_cell_fwd", dt)(
        cuda.grid(B * H), (cuda.THREADS,),
        (xw_t, hh_t, c_prev, h_prev, c_prev if keep_t is None else keep_t,
         c_prev if mask_t is None else mask_t, c_out, h_out, act_out,
         np.int32(B), np.int32(H), np.int32(keep_t is not None), np.int32(mask_t is not None)))
    return None


def lstm_cell_backward_cuda(dh_t, dc_t, c_prev, act_t, keep_t, mask_t, da_out, dc_prev_out,
                            dh_pass_out):
    """Fused ``layers.lstm.lstm_cell_backward`` (same signature and outputs)."""
    dt = da_out.dtype
    mask_t = cuda.mask_as(mask_t, dt)
    if not cuda.fast(dt, dh_t, dc_t, c_prev, act_t, keep_t, mask_t, da_out, dc_prev_out,
                     dh_pass_out):
        return ref.lstm_cell_backward(dh_t, dc_t, c_prev, act_t, keep_t, mask_t, da_out,
                                      dc_prev_out, dh_pass_out)
    B, H = c_prev.shape
    if B * H == 0:
        return None
    CUDA.kernel("lstm_cell_bwd", dt)(
        cuda.grid(B * H), (cuda.THREADS,),
        (dh_t, dc_t, c_prev, act_t, c_prev if keep_t is None else keep_t,
         c_prev if mask_t is None else mask_t, da_out, dc_prev_out, dh_pass_out,
         np.int32(B), np.int32(H), np.int32(keep_t is not None), np.int32(mask_t is not None)))
    return None


def warm_up_numba(dtype, parallel_drivers: bool) -> None:
    """Compile (or load from the cache) the row functions for ``dtype`` on tiny inputs, and the
    parallel drivers too when ``parallel_drivers``."""
    B, H = 2, 3
    z = lambda *s: np.zeros(s, dtype=dtype)  # noqa: E731
    keep, mask = np.ones((B, H), dtype), np.ones(B, dtype)
    warm(_lstm_fwd_rows, _lstm_fwd_par, parallel_drivers,
         z(B, 4 * H), z(B, 4 * H), z(B, H), z(B, H), keep, True, mask, True, z(B, H), z(B, H),
         z(B, 5 * H))
    warm(_lstm_bwd_rows, _lstm_bwd_par, parallel_drivers,
         z(B, H), z(B, H), z(B, H), z(B, 5 * H), keep, True, mask, True, z(B, 4 * H), z(B, H),
         z(B, H))
