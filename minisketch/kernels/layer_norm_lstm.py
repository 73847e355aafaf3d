"""The layer-norm LSTM cell step, compiled for the CPU (Numba) and the GPU (CUDA).

Both replace the reference step functions ``ln_lstm_cell_forward`` / ``ln_lstm_cell_backward`` of
``layers/layer_norm_lstm.py`` (also the two cells of the HyperLSTM) with the same arguments and
outputs, and are tested against them in ``tests/test_kernel_contract.py``.

Numba: ``_ln_*_rows`` does rows lo..hi-1: per row the layer norms of the four gate blocks and of
c (two-pass mean and variance, accumulated in float64 by ``numerics.sum64``), the gates and the
cell update in one pass; ``_ln_*_par`` splits the rows over Numba's threads.

CUDA: one thread block per row; the layer-norm sums over each gate block and over c are
shared-memory block reductions (``block_sum``, accumulated in double), the rest is pointwise:
one kernel per step and direction.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..layers import layer_norm_lstm as ref
from . import cuda
from .constants import FORGET_BIAS, LN_EPS
from .jit import optional, parallel, serial, threads_for, warm
from .numerics import sigmoid, sum64, sum_prod64, sum_sqdev64, tanh


# ---------------------------------------------------------------------------------------------
# Numba (CPU)

@serial
def _ln_fwd_rows(lo_row, hi_row, a_t, c_prev, h_prev, keep_t, use_keep, mask_t, use_mask, gamma,
                 beta, gamma_c, beta_c, c_out, h_out, act_out, norm_out, rstd_out):
    H = c_prev.shape[1]
    dtype = c_out.dtype.type
    fb = dtype(FORGET_BIAS)
    eps = dtype(LN_EPS)
    one = dtype(1.0)
    gi, gj, gf, go = gamma[:H], gamma[H:2 * H], gamma[2 * H:3 * H], gamma[3 * H:4 * H]
    bi, bj, bf, bo = beta[:H], beta[H:2 * H], beta[2 * H:3 * H], beta[3 * H:4 * H]
    for b in range(lo_row, hi_row):
        a = a_t[b]
        act = act_out[b]
        nrm = norm_out[b]
        cp = c_prev[b]
        co = c_out[b]
        hout = h_out[b]
        kp = keep_t[b if use_keep else 0]
        # LN(a_k) of the four gate blocks (two-pass mean and variance)
        for blk in range(4):
            lo = blk * H
            mean = dtype(sum64(a, lo, H) / H)
            rstd = one / np.sqrt(dtype(sum_sqdev64(a, lo, H, mean) / H) + eps)
            rstd_out[b, blk] = rstd
            ab = a[lo:lo + H]
            nb = nrm[lo:lo + H]
            for k in range(H):
                nb[k] = (ab[k] - mean) * rstd
        ni, nj, nf, no, nc = (nrm[:H], nrm[H:2 * H], nrm[2 * H:3 * H], nrm[3 * H:4 * H],
                              nrm[4 * H:5 * H])
        ai, ag, af, ao, at = (act[:H], act[H:2 * H], act[2 * H:3 * H], act[3 * H:4 * H],
                              act[4 * H:5 * H])
        # y_k = gamma_k LN(a_k) + beta_k; the gates; c before masking
        for k in range(H):
            i = sigmoid(ni[k] * gi[k] + bi[k])
            g = tanh(nj[k] * gj[k] + bj[k])
            f = sigmoid((nf[k] * gf[k] + bf[k]) + fb)
            o = sigmoid(no[k] * go[k] + bo[k])
            gd = g * kp[k] if use_keep else g
            ai[k] = i
            ag[k] = g
            af[k] = f
            ao[k] = o
            co[k] = f * cp[k] + i * gd
        # h = o * tanh(gamma_c LN(c) + beta_c)
        mean = dtype(sum64(co, 0, H) / H)
        rstd = one / np.sqrt(dtype(sum_sqdev64(co, 0, H, mean) / H) + eps)
        rstd_out[b, 4] = rstd
        for k in range(H):
            chat = (co[k] - mean) * rstd
            nc[k] = chat
            tc = tanh(chat * gamma_c[k] + beta_c[k])
            at[k] = tc
            hout[k] = ao[k] * tc
        if use_mask and mask_t[b] == 0:
            hp = h_prev[b]
            for k in range(H):
                co[k] = cp[k]
                hout[k] = hp[k]


@parallel
def _ln_fwd_par(n, a_t, c_prev, h_prev, keep_t, use_keep, mask_t, use_mask, gamma, beta,
                gamma_c, beta_c, c_out, h_out, act_out, norm_out, rstd_out):
    B = c_prev.shape[0]
    for j in prange(n):
        _ln_fwd_rows(j * B // n, (j + 1) * B // n, a_t, c_prev, h_prev, keep_t, use_keep,
                     mask_t, use_mask, gamma, beta, gamma_c, beta_c, c_out, h_out, act_out,
                     norm_out, rstd_out)


def ln_lstm_cell_forward_numba(a_t, c_prev, h_prev, keep_t, mask_t, gamma, beta, gamma_c, beta_c,
                               c_out, h_out, act_out, norm_out, rstd_out):
    """Compiled ``layers.layer_norm_lstm.ln_lstm_cell_forward`` (same arguments and outputs).
    Means and variances are accumulated in float64."""
    keep, use_keep = optional(keep_t, c_out, 2)
    mask, use_mask = optional(mask_t, c_out, 1)
    B, H = c_prev.shape
    n = threads_for(B, 4 * H)
    if n > 1:
        _ln_fwd_par(n, a_t, c_prev, h_prev, keep, use_keep, mask, use_mask, gamma, beta,
                    gamma_c, beta_c, c_out, h_out, act_out, norm_out, rstd_out)
    else:
        _ln_fwd_rows(0, B, a_t, c_prev, h_prev, keep, use_keep, mask, use_mask, gamma, beta,
                     gamma_c, beta_c, c_out, h_out, act_out, norm_out, rstd_out)


@serial
def _ln_bwd_rows(lo_row, hi_row, dh_t, dc_t, c_prev, keep_t, use_keep, mask_t, use_mask, gamma,
                 gamma_c, act_t, norm_t, rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out):
    H = c_prev.shape[1]
    dtype = da_out.dtype.type
    one = dtype(1.0)
    zero = dtype(0.0)
    for b in range(lo_row, hi_row):
        dh = dh_t[b]
        dct = dc_t[b]
        dcp = dc_prev_out[b]
        dhp = dh_pass_out[b]
        da = da_out[b]
        dy = dy_out[b]
        if use_mask and mask_t[b] == 0:
            for k in range(4 * H):
                da[k] = zero
            for k in range(5 * H):
                dy[k] = zero
            for k in range(H):
                dcp[k] = dct[k]
                dhp[k] = dh[k]
            continue
        act = act_t[b]
        nrm = norm_t[b]
        ai, ag, af, ao, at = (act[:H], act[H:2 * H], act[2 * H:3 * H], act[3 * H:4 * H],
                              act[4 * H:5 * H])
        dyi, dyj, dyf, dyo, dyc = (dy[:H], dy[H:2 * H], dy[2 * H:3 * H], dy[3 * H:4 * H],
                                   dy[4 * H:5 * H])
        nc = nrm[4 * H:5 * H]
        cp = c_prev[b]
        kp = keep_t[b if use_keep else 0]
        # forward was: h = o * tanh(y_c), y_c = gamma_c LN(c) + beta_c.
        # da[:H] holds dxhat_c = dy_c * gamma_c for the LN backward (scratch until overwritten)
        dxc = da[:H]
        for k in range(H):
            tc = at[k]
            d = dh[k] * ao[k] * (one - tc * tc)
            dyc[k] = d
            dxc[k] = d * gamma_c[k]
        # LN backward: dc = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
        m1 = dtype(sum64(dxc, 0, H) / H)
        m2 = dtype(sum_prod64(dxc, 0, nc, 0, H) / H)
        rstd = rstd_t[b, 4]
        for k in range(H):
            dc = dct[k] + rstd * (dxc[k] - m1 - nc[k] * m2)
            i = ai[k]
            g = ag[k]
            f = af[k]
            o = ao[k]
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
            # forward was: i, g, f, o = sigmoid(y_i), tanh(y_j), sigmoid(y_f + 1), sigmoid(y_o)
            dyi[k] = di * i * (one - i)
            dyj[k] = dg * (one - g * g)
            dyf[k] = df * f * (one - f)
            dyo[k] = (dh[k] * at[k]) * o * (one - o)
        # forward was: y_k = gamma_k LN(a_k) + beta_k: da = LN backward of dxhat = dy * gamma
        for blk in range(4):
            lo = blk * H
            dab = da[lo:lo + H]
            dyb = dy[lo:lo + H]
            gb = gamma[lo:lo + H]
            nb = nrm[lo:lo + H]
            for k in range(H):
                dab[k] = dyb[k] * gb[k]
            m1 = dtype(sum64(dab, 0, H) / H)
            m2 = dtype(sum_prod64(dab, 0, nb, 0, H) / H)
            rstd = rstd_t[b, blk]
            for k in range(H):
                dab[k] = rstd * (dab[k] - m1 - nb[k] * m2)


@parallel
def _ln_bwd_par(n, dh_t, dc_t, c_prev, keep_t, use_keep, mask_t, use_mask, gamma, gamma_c,
                act_t, norm_t, rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out):
    B = c_prev.shape[0]
    for j in prange(n):
        _ln_bwd_rows(j * B // n, (j + 1) * B // n, dh_t, dc_t, c_prev, keep_t, use_keep,
                     mask_t, use_mask, gamma, gamma_c, act_t, norm_t, rstd_t, da_out, dy_out,
                     dc_prev_out, dh_pass_out)


def ln_lstm_cell_backward_numba(dh_t, dc_t, c_prev, keep_t, mask_t, gamma, gamma_c, act_t, norm_t,
                                rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out):
    """Compiled ``layers.layer_norm_lstm.ln_lstm_cell_backward`` (same arguments and outputs).
    The layer-norm backward's means are accumulated in float64."""
    keep, use_keep = optional(keep_t, da_out, 2)
    mask, use_mask = optional(mask_t, da_out, 1)
    B, H = c_prev.shape
    n = threads_for(B, 4 * H)
    if n > 1:
        _ln_bwd_par(n, dh_t, dc_t, c_prev, keep, use_keep, mask, use_mask, gamma, gamma_c,
                    act_t, norm_t, rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out)
    else:
        _ln_bwd_rows(0, B, dh_t, dc_t, c_prev, keep, use_keep, mask, use_mask, gamma, gamma_c,
                     act_t, norm_t, rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out)


# ---------------------------------------------------------------------------------------------
# CUDA (GPU)

CUDA_SOURCE = cuda.render(r"""
// ---------------------------------------------------------------------------------------------
// Layer-norm LSTM (layers/layer_norm_lstm.py), one block per row b; threads stride over units.

template <typename T>
__global__ void ln_lstm_cell_fwd(const T* a_t, const T* c_prev, const T* h_prev,
                                 const T* keep, const T* mask,
                                 const T* ln_g, const T* ln_b, const T* ln_gc,
                                 const T* ln_bc, T* c_out, T* h_out, T* act, T* nrm,
                                 T* rsd, const int B, const int H, const int has_keep,
                                 const int has_mask) {
    __shared__ double sh[33 * 4];
    const T eps = T($LN_EPS);
    for (long long b = blockIdx.x; b < B; b += gridDim.x) {
        const T* a = a_t + b * 4 * H;
        T* act_b = act + b * 5 * H;
        T* norm_b = nrm + b * 5 * H;
        // mean of each gate block
        double s[4] = {0.0, 0.0, 0.0, 0.0};
        for (int k = threadIdx.x; k < H; k += blockDim.x) {
            #pragma unroll
            for (int q = 0; q < 4; ++q) s[q] += (double)a[q * H + k];
        }
        block_sum<4>(s, sh);
        T mean[4];
        #pragma unroll
        for (int q = 0; q < 4; ++q) mean[q] = T(s[q] / H);
        // two-pass variance: mean of (a - mean)^2
        double v[4] = {0.0, 0.0, 0.0, 0.0};
        for (int k = threadIdx.x; k < H; k += blockDim.x) {
            #pragma unroll
            for (int q = 0; q < 4; ++q) {
                const T d = a[q * H + k] - mean[q];
                v[q] += (double)(d * d);
            }
        }
        block_sum<4>(v, sh);
        T rs[4];
        #pragma unroll
        for (int q = 0; q < 4; ++q) rs[q] = T(1) / k_sqrt(T(v[q] / H) + eps);
        // gates and the new (un-normalized) c; c goes into norm's c slot until LN(c) is known
        double sc = 0.0;
        for (int k = threadIdx.x; k < H; k += blockDim.x) {
            T y[4];
            #pragma unroll
            for (int q = 0; q < 4; ++q) {
                const T xhat = (a[q * H + k] - mean[q]) * rs[q];
                norm_b[q * H + k] = xhat;
                y[q] = xhat * ln_g[q * H + k] + ln_b[q * H + k];
            }
            const T i = k_sigmoid(y[0]);
            const T g = k_tanh(y[1]);
            const T f = k_sigmoid(y[2] + T($FORGET_BIAS));
            const T o = k_sigmoid(y[3]);
            act_b[k] = i; act_b[H + k] = g; act_b[2 * H + k] = f; act_b[3 * H + k] = o;
            const T gd = has_keep ? g * keep[b * H + k] : g;
            const T c = f * c_prev[b * H + k] + i * gd;
            norm_b[4 * H + k] = c;
            sc += (double)c;
        }
        double t1[1] = {sc};
        block_sum<1>(t1, sh);
        const T mean_c = T(t1[0] / H);
        double vc = 0.0;
        for (int k = threadIdx.x; k < H; k += blockDim.x) {
            const T d = norm_b[4 * H + k] - mean_c;
            vc += (double)(d * d);
        }
        double t2[1] = {vc};
        block_sum<1>(t2, sh);
        const T rs_c = T(1) / k_sqrt(T(t2[0] / H) + eps);
        const bool real = !has_mask || mask[b] != T(0);
        for (int k = threadIdx.x; k < H; k += blockDim.x) {
            const T c = norm_b[4 * H + k];
            const T chat = (c - mean_c) * rs_c;
            norm_b[4 * H + k] = chat;
            const T tc = k_tanh(chat * ln_gc[k] + ln_bc[k]);
            act_b[4 * H + k] = tc;
            const T h = act_b[3 * H + k] * tc;
            c_out[b * H + k] = real ? c : c_prev[b * H + k];
            h_out[b * H + k] = real ? h : h_prev[b * H + k];
        }
        if (threadIdx.x == 0) {
            #pragma unroll
            for (int q = 0; q < 4; ++q) rsd[b * 5 + q] = rs[q];
            rsd[b * 5 + 4] = rs_c;
        }
        __syncthreads();
    }
}

template <typename T>
__global__ void ln_lstm_cell_bwd(const T* dh_t, const T* dc_t, const T* c_prev, const T* keep,
                                 const T* mask, const T* ln_g, const T* ln_gc,
                                 const T* act, const T* nrm, const T* rsd,
                                 T* da, T* dy, T* dc_prev, T* dh_pass,
                                 const int B, const int H, const int has_keep,
                                 const int has_mask) {
    __shared__ double sh[33 * 8];
    for (long long b = blockIdx.x; b < B; b += gridDim.x) {
        const long long r = b * H;          // row offset in [B, H] arrays
        const T* act_b = act + b * 5 * H;
        const T* norm_b = nrm + b * 5 * H;
        T* da_b = da + b * 4 * H;
        T* dy_b = dy + b * 5 * H;
        const bool real = !has_mask || mask[b] != T(0);
        if (!real) {   // a padding step: the state and its gradient pass through (uniform per block)
            for (int k = threadIdx.x; k < H; k += blockDim.x) {
                #pragma unroll
                for (int q = 0; q < 4; ++q) da_b[q * H + k] = T(0);
                #pragma unroll
                for (int q = 0; q < 5; ++q) dy_b[q * H + k] = T(0);
                dc_prev[r + k] = dc_t[r + k];
                dh_pass[r + k] = dh_t[r + k];
            }
            continue;
        }
        const T rs_c = rsd[b * 5 + 4];
        // forward was: h = o * tanh(y_c), y_c = gamma_c * LN(c) + beta_c
        double s[2] = {0.0, 0.0};
        for (int k = threadIdx.x; k < H; k += blockDim.x) {
            const T o = act_b[3 * H + k], tc = act_b[4 * H + k];
            const T dyc = dh_t[r + k] * o * (T(1) - tc * tc);
            const T dxh = dyc * ln_gc[k];
            s[0] += (double)dxh;
            s[1] += (double)(dxh * norm_b[4 * H + k]);
        }
        block_sum<2>(s, sh);
        const T m1c = T(s[0] / H), m2c = T(s[1] / H);
        double s8[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        for (int k = threadIdx.x; k < H; k += blockDim.x) {
            const T i = act_b[k], g = act_b[H + k], f = act_b[2 * H + k];
            const T o = act_b[3 * H + k], tc = act_b[4 * H + k];
            const T dh = dh_t[r + k];
            const T d_o = dh * tc;
            const T dyc = dh * o * (T(1) - tc * tc);
            const T chat = norm_b[4 * H + k];
            // LN backward: dv = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            const T dc = dc_t[r + k] + rs_c * ((dyc * ln_gc[k] - m1c) - chat * m2c);
            // forward was: c = f * c_prev + i * gd, gd = g * keep
            const T kp = has_keep ? keep[r + k] : T(1);
            const T gd = has_keep ? g * kp : g;
            const T di = dc * gd;
            const T dg = has_keep ? dc * i * kp : dc * i;
            const T df = dc * c_prev[r + k];
            dc_prev[r + k] = dc * f;
            dh_pass[r + k] = T(0);
            T dyq[4];
            dyq[0] = di * i * (T(1) - i);
            dyq[1] = dg * (T(1) - g * g);
            dyq[2] = df * f * (T(1) - f);
            dyq[3] = d_o * o * (T(1) - o);
            #pragma unroll
            for (int q = 0; q < 4; ++q) {
                dy_b[q * H + k] = dyq[q];
                const T dxh = dyq[q] * ln_g[q * H + k];
                da_b[q * H + k] = dxh;                 // scratch until the means are known
                s8[q] += (double)dxh;
                s8[4 + q] += (double)(dxh * norm_b[q * H + k]);
            }
            dy_b[4 * H + k] = dyc;
        }
        block_sum<8>(s8, sh);
        T m1[4], m2[4], rs[4];
        #pragma unroll
        for (int q = 0; q < 4; ++q) {
            m1[q] = T(s8[q] / H);
            m2[q] = T(s8[4 + q] / H);
            rs[q] = rsd[b * 5 + q];
        }
        for (int k = threadIdx.x; k < H; k += blockDim.x) {
            #pragma unroll
            for (int q = 0; q < 4; ++q) {
                const T dxh = da_b[q * H + k];
                da_b[q * H + k] = rs[q] * ((dxh - m1[q]) - norm_b[q * H + k] * m2[q]);
            }
        }
        __syncthreads();
    }
}
""", FORGET_BIAS=FORGET_BIAS, LN_EPS=LN_EPS)
CUDA = cuda.Module(CUDA_SOURCE, ("ln_lstm_cell_fwd", "ln_lstm_cell_bwd"))


def ln_lstm_cell_forward_cuda(a_t, c_prev, h_prev, keep_t, mask_t, gamma, beta, gamma_c, beta_c,
                              c_out, h_out, act_out, norm_out, rstd_out):
    """Fused ``layers.layer_norm_lstm.ln_lstm_cell_forward`` (same signature and outputs)."""
    dt = c_out.dtype
    mask_t = cuda.mask_as(mask_t, dt)
    if not cuda.fast(dt, a_t, c_prev, h_prev, keep_t, mask_t, gamma, beta, gamma_c, beta_c, c_out,
                     h_out, act_out, norm_out, rstd_out):
        return ref.ln_lstm_cell_forward(a_t, c_prev, h_prev, keep_t, mask_t, gamma, beta,
                                        gamma_c, beta_c, c_out, h_out, act_out, norm_out,
                                        rstd_out)
    B, H = c_prev.shape
    if B * H == 0:
        return None
    CUDA.kernel("ln_lstm_cell_fwd", dt)(
        cuda.rows_grid(B), (cuda.THREADS,),
        (a_t, c_prev, h_prev, c_prev if keep_t is None else keep_t,
         c_prev if mask_t is None else mask_t, gamma, beta, gamma_c, beta_c,
         c_out, h_out, act_out, norm_out, rstd_out,
         np.int32(B), np.int32(H), np.int32(keep_t is not None), np.int32(mask_t is not None)))
    return None


def ln_lstm_cell_backward_cuda(dh_t, dc_t, c_prev, keep_t, mask_t, gamma, gamma_c, act_t, norm_t,
                               rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out):
    """Fused ``layers.layer_norm_lstm.ln_lstm_cell_backward`` (same signature and outputs)."""
    dt = da_out.dtype
    mask_t = cuda.mask_as(mask_t, dt)
    if not cuda.fast(dt, dh_t, dc_t, c_prev, keep_t, mask_t, gamma, gamma_c, act_t, norm_t, rstd_t,
                     da_out, dy_out, dc_prev_out, dh_pass_out):
        return ref.ln_lstm_cell_backward(dh_t, dc_t, c_prev, keep_t, mask_t, gamma,
                                         gamma_c, act_t, norm_t, rstd_t, da_out, dy_out,
                                         dc_prev_out, dh_pass_out)
    B, H = c_prev.shape
    if B * H == 0:
        return None
    CUDA.kernel("ln_lstm_cell_bwd", dt)(
        cuda.rows_grid(B), (cuda.THREADS,),
        (dh_t, dc_t, c_prev, c_prev if keep_t is None else keep_t,
         c_prev if mask_t is None else mask_t, gamma, gamma_c, act_t, norm_t, rstd_t,
         da_out, dy_out, dc_prev_out, dh_pass_out,
         np.int32(B), np.int32(H), np.int32(keep_t is not None), np.int32(mask_t is not None)))
    return None


def warm_up_numba(dtype, parallel_drivers: bool) -> None:
    """Compile (or load from the cache) the row functions for ``dtype`` on tiny inputs, and the
    parallel drivers too when ``parallel_drivers``."""
    B, H = 2, 3
    z = lambda *s: np.zeros(s, dtype=dtype)  # noqa: E731
    o = lambda *s: np.ones(s, dtype=dtype)  # noqa: E731
    keep, mask = o(B, H), o(B)
    warm(_ln_fwd_rows, _ln_fwd_par, parallel_drivers,
         z(B, 4 * H), z(B, H), z(B, H), keep, True, mask, True, o(4 * H), z(4 * H), o(H), z(H),
         z(B, H), z(B, H), z(B, 5 * H), z(B, 5 * H), z(B, 5))
    warm(_ln_bwd_rows, _ln_bwd_par, parallel_drivers,
         z(B, H), z(B, H), z(B, H), keep, True, mask, True, o(4 * H), o(H), z(B, 5 * H),
         z(B, 5 * H), o(B, 5), z(B, 4 * H), z(B, 5 * H), z(B, H), z(B, H))
