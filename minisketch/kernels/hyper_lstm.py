"""The HyperLSTM's gate modulation, compiled for the CPU (Numba) and the GPU (CUDA).

Both replace the reference step functions ``hyper_modulate_forward`` /
``hyper_modulate_backward`` of ``layers/hyper_lstm.py`` with the same arguments and outputs, and
are tested against them in ``tests/test_kernel_contract.py``. Pure arithmetic in the reference's
order, so the Numba version matches it bit for bit.

Numba: ``_hyper_*_rows`` does rows lo..hi-1, gate block by gate block; ``_hyper_*_par`` splits
the rows over Numba's threads. CUDA: one thread per (row, unit) over the four gates.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..layers import hyper_lstm as ref
from . import cuda
from .jit import parallel, serial, threads_for, warm


# ---------------------------------------------------------------------------------------------
# Numba (CPU)

@serial
def _hyper_fwd_rows(lo_row, hi_row, xw_t, hh_t, alpha_t, beta_t, b, a_out):
    H = b.shape[0] // 4
    for r in range(lo_row, hi_row):
        for blk in range(4):
            lo = blk * H
            ax = alpha_t[blk, r]
            ah = alpha_t[4 + blk, r]
            bt = beta_t[blk, r]
            xw = xw_t[r, lo:lo + H]
            hh = hh_t[r, lo:lo + H]
            bb = b[lo:lo + H]
            a = a_out[r, lo:lo + H]
            for k in range(H):
                a[k] = (ax[k] * xw[k] + (ah[k] * hh[k] + bt[k])) + bb[k]


@parallel
def _hyper_fwd_par(n, xw_t, hh_t, alpha_t, beta_t, b, a_out):
    B = xw_t.shape[0]
    for j in prange(n):
        _hyper_fwd_rows(j * B // n, (j + 1) * B // n, xw_t, hh_t, alpha_t, beta_t, b, a_out)


def hyper_modulate_forward_numba(xw_t, hh_t, alpha_t, beta_t, b, a_out):
    """Compiled ``layers.hyper_lstm.hyper_modulate_forward`` (same arguments and output)."""
    B, H4 = xw_t.shape
    n = threads_for(B, H4)
    if n > 1:
        _hyper_fwd_par(n, xw_t, hh_t, alpha_t, beta_t, b, a_out)
    else:
        _hyper_fwd_rows(0, B, xw_t, hh_t, alpha_t, beta_t, b, a_out)


@serial
def _hyper_bwd_rows(lo_row, hi_row, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
    H = da_t.shape[1] // 4
    for r in range(lo_row, hi_row):
        for blk in range(4):
            lo = blk * H
            da = da_t[r, lo:lo + H]
            xw = xw_t[r, lo:lo + H]
            hh = hh_t[r, lo:lo + H]
            ax = alpha_t[blk, r]
            ah = alpha_t[4 + blk, r]
            dxw = dxw_out[r, lo:lo + H]
            dhh = dhh_out[r, lo:lo + H]
            dax = dalpha_out[blk, r]
            dah = dalpha_out[4 + blk, r]
            for k in range(H):
                d = da[k]
                # forward was: a_k = alpha_k * xw_k + (alpha_{4+k} * hh_k + beta_k) + b_k
                dxw[k] = ax[k] * d
                dhh[k] = ah[k] * d
                dax[k] = d * xw[k]
                dah[k] = d * hh[k]


@parallel
def _hyper_bwd_par(n, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
    B = da_t.shape[0]
    for j in prange(n):
        _hyper_bwd_rows(j * B // n, (j + 1) * B // n, da_t, xw_t, hh_t, alpha_t, dxw_out,
                        dhh_out, dalpha_out)


def hyper_modulate_backward_numba(da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
    """Compiled ``layers.hyper_lstm.hyper_modulate_backward`` (same arguments and outputs)."""
    B, H4 = da_t.shape
    n = threads_for(B, H4)
    if n > 1:
        _hyper_bwd_par(n, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out)
    else:
        _hyper_bwd_rows(0, B, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out)


# ---------------------------------------------------------------------------------------------
# CUDA (GPU)

CUDA_SOURCE = r"""
// ---------------------------------------------------------------------------------------------
// HyperLSTM modulation (layers/hyper_lstm.py), one thread per (b, unit k) over the four gates.

template <typename T>
__global__ void hyper_modulate_fwd(const T* xw, const T* hh, const T* alpha, const T* beta,
                                   const T* bias, T* a, const int B, const int H) {
    const long long BH = (long long)B * H;
    GRID_STRIDE(idx, BH) {
        const long long b = idx / H, k = idx - b * H;
        #pragma unroll
        for (int q = 0; q < 4; ++q) {
            const long long r = b * 4 * H + q * H + k;     // [B, 4H] entry of gate q
            // a_q = alpha_q * xw_q + (alpha_{4+q} * hh_q + beta_q) + b_q
            a[r] = (alpha[q * BH + idx] * xw[r] + (alpha[(4 + q) * BH + idx] * hh[r]
                                                   + beta[q * BH + idx])) + bias[q * H + k];
        }
    }
}

template <typename T>
__global__ void hyper_modulate_bwd(const T* da, const T* xw, const T* hh, const T* alpha,
                                   T* dxw, T* dhh, T* dalpha, const int B, const int H) {
    const long long BH = (long long)B * H;
    GRID_STRIDE(idx, BH) {
        const long long b = idx / H, k = idx - b * H;
        #pragma unroll
        for (int q = 0; q < 4; ++q) {
            const long long r = b * 4 * H + q * H + k;
            const T d = da[r];
            dxw[r] = alpha[q * BH + idx] * d;
            dhh[r] = alpha[(4 + q) * BH + idx] * d;
            dalpha[q * BH + idx] = d * xw[r];
            dalpha[(4 + q) * BH + idx] = d * hh[r];
        }
    }
}
"""
CUDA = cuda.Module(CUDA_SOURCE, ("hyper_modulate_fwd", "hyper_modulate_bwd"))


def hyper_modulate_forward_cuda(xw_t, hh_t, alpha_t, beta_t, b, a_out):
    """Fused ``layers.hyper_lstm.hyper_modulate_forward`` (same signature and output)."""
    dt = a_out.dtype
    if not cuda.fast(dt, xw_t, hh_t, alpha_t, beta_t, b, a_out):
        return ref.hyper_modulate_forward(xw_t, hh_t, alpha_t, beta_t, b, a_out)
    B, H4 = a_out.shape
    H = H4 // 4
    if B * H == 0:
        return None
    CUDA.kernel("hyper_modulate_fwd", dt)(
        cuda.grid(B * H), (cuda.THREADS,),
        (xw_t, hh_t, alpha_t, beta_t, b, a_out, np.int32(B), np.int32(H)))
    return None


def hyper_modulate_backward_cuda(da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
    """Fused ``layers.hyper_lstm.hyper_modulate_backward`` (same signature and outputs)."""
    dt = da_t.dtype
    if not cuda.fast(dt, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
        return ref.hyper_modulate_backward(da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out,
                                           dalpha_out)
    B, H4 = da_t.shape
    H = H4 // 4
    if B * H == 0:
        return None
    CUDA.kernel("hyper_modulate_bwd", dt)(
        cuda.grid(B * H), (cuda.THREADS,),
        (da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out, np.int32(B), np.int32(H)))
    return None


def warm_up_numba(dtype, parallel_drivers: bool) -> None:
    """Compile (or load from the cache) the row functions for ``dtype`` on tiny inputs, and the
    parallel drivers too when ``parallel_drivers``."""
    B, H = 2, 3
    z = lambda *s: np.zeros(s, dtype=dtype)  # noqa: E731
    warm(_hyper_fwd_rows, _hyper_fwd_par, parallel_drivers,
         z(B, 4 * H), z(B, 4 * H), z(8, B, H), z(4, B, H), z(4 * H), z(B, 4 * H))
    warm(_hyper_bwd_rows, _hyper_bwd_par, parallel_drivers,
         z(B, 4 * H), z(B, 4 * H), z(B, 4 * H), z(8, B, H), z(B, 4 * H), z(B, 4 * H), z(8, B, H))
