"""The mixture density loss and its gradient, compiled for the CPU (Numba) and the GPU (CUDA).

Both replace the reference ``mdn_loss_and_grad`` / ``mdn_loss`` of ``layers/mdn.py`` with the
same arguments and results (the stable log-sum-exp form described there), and are tested
against them in ``tests/test_kernel_contract.py``.

Numba: one fused pass over the rows, in float64 throughout; the row terms are summed in float64
in the same order every call. CUDA: one thread per row over the M components, in the arrays'
dtype, then one small reduction for both sums.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..layers import mdn as ref
from . import cuda
from .constants import LOG_2, LOG_2PI, LOG_LOSS_EPS
from .jit import parallel, serial, threads_for, warm
from .numerics import exp64, log1p_small64, log64, tanh64


# ---------------------------------------------------------------------------------------------
# Numba (CPU)
#
# Rows are processed in blocks of MDN_BLOCK: a block is copied transposed into float64 scratch
# ([6M + 3, rows]), so that every loop runs over the rows of the block, contiguous and long
# enough to vectorize fully (a loop over the M = 20 components of one row leaves too short a
# vector loop and a slow scalar remainder). Sums over components are elementwise across rows,
# in component order.

MDN_BLOCK = 64


@serial
def _mdn_block(nr, M, yt, tt, scale, want_grad, dyt, sc, rv):
    """Loss terms of nr rows held transposed in yt [6M+3, R] (targets tt [5, R]); writes
    rv[0] = offset term times (1 - p3), rv[1] = pen term, and dyt [6M+3, R] if want_grad.
    sc [7, M, R] and rv [10, R] are float64 scratch."""
    pm, lse, pimax, logs, m, tot = rv[2], rv[3], rv[4], rv[5], rv[6], rv[7]
    offset, pen, gsum = rv[0], rv[1], rv[8]
    lpi, aa, uu, vv, ww, rr, ch = sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6]
    p0, p1, p2 = yt[0], yt[1], yt[2]
    dx, dyv, t0, t1, t2 = tt[0], tt[1], tt[2], tt[3], tt[4]
    # pen: log q = log_softmax(pen logits); loss -sum_j t_j log q_j
    for r in range(nr):
        mx = max(p0[r], max(p1[r], p2[r]))
        pm[r] = mx
        ls = log64(exp64(p0[r] - mx) + exp64(p1[r] - mx) + exp64(p2[r] - mx))
        lse[r] = ls
        pen[r] = -(t0[r] * ((p0[r] - mx) - ls) + t1[r] * ((p1[r] - mx) - ls)
                   + t2[r] * ((p2[r] - mx) - ls))
    # log pi = log_softmax(pi logits)
    for r in range(nr):
        pimax[r] = -np.inf
        logs[r] = 0.0
    for k in range(M):
        pil = yt[3 + k]
        for r in range(nr):
            pimax[r] = max(pimax[r], pil[r])
    for k in range(M):
        pil = yt[3 + k]
        for r in range(nr):
            logs[r] += exp64(pil[r] - pimax[r])
    for r in range(nr):
        logs[r] = log64(logs[r])
        m[r] = LOG_LOSS_EPS
    # per component: a_k = log pi_k + log N_k in the stable form of layers/mdn.py
    for k in range(M):
        pil, mx_, my_ = yt[3 + k], yt[3 + M + k], yt[3 + 2 * M + k]
        lsx, lsy, rk = yt[3 + 3 * M + k], yt[3 + 4 * M + k], yt[3 + 5 * M + k]
        lpk, ak, uk, vk, wk, rhok, chk = lpi[k], aa[k], uu[k], vv[k], ww[k], rr[k], ch[k]
        for r in range(nr):
            u = (dx[r] - mx_[r]) * exp64(-lsx[r])
            v = (dyv[r] - my_[r]) * exp64(-lsy[r])
            ar = abs(rk[r])
            e1 = exp64(-ar)                       # e^-|r|
            rho = tanh64(rk[r])
            cosh_r = 0.5 * (1.0 / e1 + e1)
            w = (u - rho * v) * cosh_r             # Z / (1 - rho^2) = w^2 + v^2
            log_1mr2 = 2.0 * (LOG_2 - ar - log1p_small64(e1 * e1))
            log_pi = (pil[r] - pimax[r]) - logs[r]
            a = log_pi + (-0.5 * (w * w + v * v) - LOG_2PI - lsx[r] - lsy[r] - 0.5 * log_1mr2)
            lpk[r] = log_pi
            ak[r] = a
            uk[r] = u
            vk[r] = v
            wk[r] = w
            rhok[r] = rho
            chk[r] = cosh_r
            m[r] = max(m[r], a)
    # log(sum_k exp(a_k) + 1e-6): log(1e-6) is one more term of the log-sum-exp
    for r in range(nr):
        tot[r] = exp64(LOG_LOSS_EPS - m[r])
    for k in range(M):
        ak = aa[k]
        for r in range(nr):
            tot[r] += exp64(ak[r] - m[r])
    for r in range(nr):
        log_sum = m[r] + log64(tot[r])
        tot[r] = log_sum                           # tot now holds log_sum
        offset[r] = -log_sum * (1.0 - t2[r])
    if not want_grad:
        return
    # pen: d/d logits = q * sum_j t_j - t
    for r in range(nr):
        tsum = t0[r] + t1[r] + t2[r]
        dyt[0, r] = (exp64((p0[r] - pm[r]) - lse[r]) * tsum - t0[r]) * scale
        dyt[1, r] = (exp64((p1[r] - pm[r]) - lse[r]) * tsum - t1[r]) * scale
        dyt[2, r] = (exp64((p2[r] - pm[r]) - lse[r]) * tsum - t2[r]) * scale
        gsum[r] = 0.0
    # responsibilities gamma_k = exp(a_k - log_sum) (1 - p3), kept in aa
    for k in range(M):
        ak = aa[k]
        for r in range(nr):
            g = exp64(ak[r] - tot[r]) * (1.0 - t2[r])
            ak[r] = g
            gsum[r] += g
    for k in range(M):
        lsx, lsy = yt[3 + 3 * M + k], yt[3 + 4 * M + k]
        gk, lpk, uk, vk, wk, rhok, chk = aa[k], lpi[k], uu[k], vv[k], ww[k], rr[k], ch[k]
        dpi, dmx, dmy = dyt[3 + k], dyt[3 + M + k], dyt[3 + 2 * M + k]
        dsx, dsy, dr = dyt[3 + 3 * M + k], dyt[3 + 4 * M + k], dyt[3 + 5 * M + k]
        for r in range(nr):
            gm = gk[r]
            u = uk[r]
            v = vk[r]
            w = wk[r]
            rho = rhok[r]
            cosh_r = chk[r]
            # forward was: log N = -(w^2 + v^2)/2 - ls_x - ls_y + log cosh(r) - log 2 pi,
            #              w = u cosh(r) - v sinh(r), u = (dx - mu_x) e^-ls_x, v likewise
            gw = gm * w
            d_u = gw * cosh_r
            d_v = gm * v - gw * (rho * cosh_r)
            dpi[r] = (gsum[r] * exp64(lpk[r]) - gm) * scale
            dmx[r] = (-d_u * exp64(-lsx[r])) * scale
            dmy[r] = (-d_v * exp64(-lsy[r])) * scale
            dsx[r] = (gm - d_u * u) * scale
            dsy[r] = (gm - d_v * v) * scale
            dr[r] = (gw * (rho * w - v / cosh_r) - gm * rho) * scale


@serial
def _mdn_rows(lo, hi, y, target, scale, want_grad, dy, row_loss):
    """Rows lo..hi-1: row_loss[n] = (offset term, pen term), and dy[n] if want_grad."""
    W = y.shape[1]
    M = (W - 3) // 6
    R = MDN_BLOCK
    yt = np.empty((W, R), dtype=np.float64)
    dyt = np.empty((W, R), dtype=np.float64)
    tt = np.empty((5, R), dtype=np.float64)
    sc = np.empty((7, M, R), dtype=np.float64)
    rv = np.empty((10, R), dtype=np.float64)
    dt = dy.dtype.type
    for n0 in range(lo, hi, R):
        nr = min(R, hi - n0)
        for r in range(nr):
            yr = y[n0 + r]
            for j in range(W):
                yt[j, r] = yr[j]
            tr = target[n0 + r]
            for j in range(5):
                tt[j, r] = tr[j]
        _mdn_block(nr, M, yt, tt, scale, want_grad, dyt, sc, rv)
        for r in range(nr):
            row_loss[n0 + r, 0] = rv[0, r]
            row_loss[n0 + r, 1] = rv[1, r]
        if want_grad:
            for r in range(nr):
                dr = dy[n0 + r]
                for j in range(W):
                    dr[j] = dt(dyt[j, r])


@parallel
def _mdn_par(n, y, target, scale, want_grad, dy, row_loss):
    N = y.shape[0]
    for j in prange(n):
        _mdn_rows(j * N // n, (j + 1) * N // n, y, target, scale, want_grad, dy, row_loss)


def _mdn_run(y, target, scale, want_grad):
    ref.check_mdn_inputs(y, target)
    y = np.ascontiguousarray(y)
    target = np.ascontiguousarray(target, dtype=y.dtype)
    N = y.shape[0]
    dy = np.empty_like(y) if want_grad else np.empty((1, y.shape[1]), dtype=y.dtype)
    row_loss = np.empty((N, 2), dtype=np.float64)
    n = threads_for(N, 8 * y.shape[1])
    if n > 1:
        _mdn_par(n, y, target, float(scale), want_grad, dy, row_loss)
    else:
        _mdn_rows(0, N, y, target, float(scale), want_grad, dy, row_loss)
    sums = row_loss.sum(axis=0)      # float64, the same order every call
    return y.dtype.type(sums[0]), y.dtype.type(sums[1]), dy


def mdn_loss_and_grad_numba(y, target, scale):
    """Compiled ``layers.mdn.mdn_loss_and_grad``: (offset_sum, pen_sum, dy), the sums as 0-d
    values of y's dtype, dy a fresh array. Each row is computed in float64 and the row terms
    are summed in float64, in the same order every call (deterministic)."""
    return _mdn_run(y, target, scale, True)


def mdn_loss_numba(y, target):
    """Compiled ``layers.mdn.mdn_loss`` (forward only): (offset_sum, pen_sum)."""
    offset_sum, pen_sum, _ = _mdn_run(y, target, 1.0, False)
    return offset_sum, pen_sum


# ---------------------------------------------------------------------------------------------
# CUDA (GPU)
#
# log 2 and log 2pi are written out in the source to 21 digits: mathematical constants, each
# the double nearest to its value (the reference's LOG_2PI, math.log(2 * math.pi), is the one
# below it).

CUDA_SOURCE = cuda.render(r"""
// ---------------------------------------------------------------------------------------------
// Mixture density loss (layers/mdn.py), one thread per row n of y [N, 6M + 3].

template <typename T>
struct MdnComp {   // the per-component intermediates of mdn._offset_terms
    T a, u, v, w, rho, cosh_r, inv_sx, inv_sy;
};

template <typename T>
__device__ __forceinline__ MdnComp<T> mdn_component(const T* yr, const int M, const int k,
                                                    const T dx, const T dyv, const T log_pi) {
    MdnComp<T> c;
    const T mu_x = yr[3 + M + k], mu_y = yr[3 + 2 * M + k];
    const T ls_x = yr[3 + 3 * M + k], ls_y = yr[3 + 4 * M + k], r = yr[3 + 5 * M + k];
    c.inv_sx = k_exp(-ls_x);
    c.inv_sy = k_exp(-ls_y);
    c.u = (dx - mu_x) * c.inv_sx;
    c.v = (dyv - mu_y) * c.inv_sy;
    c.rho = k_tanh(r);
    c.cosh_r = k_cosh(r);
    c.w = (c.u - c.rho * c.v) * c.cosh_r;
    // log(1 - rho^2) = 2 (log 2 - |r| - log1p(exp(-2 |r|)))
    const T ar = k_abs(r);
    const T l1mr2 = T(2) * ((T(0.69314718055994530942) - ar) - k_log1p(k_exp(T(-2) * ar)));
    const T log_n = (((T(-0.5) * (c.w * c.w + c.v * c.v) - T(1.83787706640934548356)) - ls_x)
                     - ls_y) - T(0.5) * l1mr2;
    c.a = log_pi + log_n;
    return c;
}

// want_grad = 0: only the per-row losses (mdn_loss). rows [2, N]: offset term, pen term.
template <typename T>
__global__ void mdn_rows(const T* y, const T* target, T* dy, T* rows, const int N, const int M,
                         const T scale, const int want_grad) {
    const T LOG_EPS = T($LOG_LOSS_EPS);   // log(1e-6)
    const int W = 6 * M + 3;
    GRID_STRIDE(n, N) {
        const T* yr = y + n * W;
        const T* tr = target + n * 5;
        const T dx = tr[0], dyv = tr[1], t0 = tr[2], t1 = tr[3], t2 = tr[4];
        const T row_w = T(1) - t2;
        // pen: log softmax of the three logits, cross-entropy with the target one-hot
        T pm = yr[0];
        if (yr[1] > pm || yr[1] != yr[1]) pm = yr[1];
        if (yr[2] > pm || yr[2] != yr[2]) pm = yr[2];
        const T q0 = yr[0] - pm, q1 = yr[1] - pm, q2 = yr[2] - pm;
        const T lse_q = k_log((k_exp(q0) + k_exp(q1)) + k_exp(q2));
        const T lq0 = q0 - lse_q, lq1 = q1 - lse_q, lq2 = q2 - lse_q;
        const T pen = -((t0 * lq0 + t1 * lq1) + t2 * lq2);
        // pi: log softmax
        const T* pl = yr + 3;
        T pimax = pl[0];
        for (int k = 1; k < M; ++k) if (pl[k] > pimax || pl[k] != pl[k]) pimax = pl[k];
        T pisum = T(0);
        for (int k = 0; k < M; ++k) pisum += k_exp(pl[k] - pimax);
        const T lse_pi = k_log(pisum);
        // log(sum_k exp(a_k) + 1e-6) as a log-sum-exp with log(1e-6) as one more term
        T amax = mdn_component(yr, M, 0, dx, dyv, (pl[0] - pimax) - lse_pi).a;
        for (int k = 1; k < M; ++k) {
            const T a = mdn_component(yr, M, k, dx, dyv, (pl[k] - pimax) - lse_pi).a;
            if (a > amax || a != a) amax = a;
        }
        const T m = amax < LOG_EPS ? LOG_EPS : amax;      // NaN propagates
        T total = T(0);
        for (int k = 0; k < M; ++k)
            total += k_exp(mdn_component(yr, M, k, dx, dyv, (pl[k] - pimax) - lse_pi).a - m);
        total += k_exp(LOG_EPS - m);
        const T log_sum = m + k_log(total);
        rows[n] = -log_sum * row_w;
        rows[(long long)N + n] = pen;
        if (!want_grad) continue;
        T* dr = dy + n * W;
        // pen: d/d logits = q * sum_j t_j - t
        const T tsum = (t0 + t1) + t2;
        dr[0] = (k_exp(lq0) * tsum - t0) * scale;
        dr[1] = (k_exp(lq1) * tsum - t1) * scale;
        dr[2] = (k_exp(lq2) * tsum - t2) * scale;
        // offset: gam_k = exp(a_k - log_sum) * row_w (the responsibilities gamma_k)
        T gsum = T(0);
        for (int k = 0; k < M; ++k) {
            const MdnComp<T> c = mdn_component(yr, M, k, dx, dyv, (pl[k] - pimax) - lse_pi);
            const T gam = k_exp(c.a - log_sum) * row_w;
            gsum += gam;
            const T gw = gam * c.w;
            const T d_u = gw * c.cosh_r;
            const T d_v = gam * c.v - gw * (c.rho * c.cosh_r);
            dr[3 + k] = gam;                                   // scratch for the pi gradient
            dr[3 + M + k] = (-d_u * c.inv_sx) * scale;
            dr[3 + 2 * M + k] = (-d_v * c.inv_sy) * scale;
            dr[3 + 3 * M + k] = (gam - d_u * c.u) * scale;
            dr[3 + 4 * M + k] = (gam - d_v * c.v) * scale;
            dr[3 + 5 * M + k] = (gw * (c.rho * c.w - c.v / c.cosh_r) - gam * c.rho) * scale;
        }
        // pi: sum(gamma) * pi_k - gamma_k
        for (int k = 0; k < M; ++k) {
            const T pi_k = k_exp((pl[k] - pimax) - lse_pi);
            dr[3 + k] = (gsum * pi_k - dr[3 + k]) * scale;
        }
    }
}
""", LOG_LOSS_EPS=LOG_LOSS_EPS)
CUDA = cuda.Module(CUDA_SOURCE, ("mdn_rows",))


def _mdn_rows_cuda(y, target, scale, want_grad):
    """Launch mdn_rows: returns (rows [2, N], dy or None)."""
    cupy = cuda.cupy()
    dt = y.dtype
    N, width = y.shape
    M = (width - 3) // 6
    rows = cupy.empty((2, N), dtype=dt)
    dy = cupy.empty_like(y) if want_grad else None
    if N > 0:
        CUDA.kernel("mdn_rows", dt)(
            cuda.grid(N), (cuda.THREADS,),
            (y, target, rows if dy is None else dy, rows, np.int32(N), np.int32(M), dt.type(scale),
             np.int32(bool(want_grad))))
    return rows, dy


def mdn_loss_and_grad_cuda(y, target, scale):
    """Fused ``layers.mdn.mdn_loss_and_grad``: (offset_sum 0-d, pen_sum 0-d, dy [N, 6M+3])."""
    ref.check_mdn_inputs(y, target)
    if y.dtype not in cuda.CTYPES or target.dtype != y.dtype:
        return ref.mdn_loss_and_grad(y, target, scale)
    cupy = cuda.cupy()
    rows, dy = _mdn_rows_cuda(cupy.ascontiguousarray(y), cupy.ascontiguousarray(target), scale,
                              True)
    sums = rows.sum(axis=1)              # the second, cheap step: both sums in one reduction
    return sums[0], sums[1], dy


def mdn_loss_cuda(y, target):
    """Fused ``layers.mdn.mdn_loss`` (forward only): (offset_sum 0-d, pen_sum 0-d)."""
    ref.check_mdn_inputs(y, target)
    if y.dtype not in cuda.CTYPES or target.dtype != y.dtype:
        return ref.mdn_loss(y, target)
    cupy = cuda.cupy()
    rows, _ = _mdn_rows_cuda(cupy.ascontiguousarray(y), cupy.ascontiguousarray(target), 1.0, False)
    sums = rows.sum(axis=1)
    return sums[0], sums[1]


def warm_up_numba(dtype, parallel_drivers: bool) -> None:
    """Compile (or load from the cache) the row function for ``dtype`` on tiny inputs, with and
    without the gradient, and the parallel driver too when ``parallel_drivers``."""
    B, M = 2, 1
    y = np.zeros((B, 6 * M + 3), dtype)
    t = np.zeros((B, 5), dtype)
    t[:, 2] = 1
    for want_grad, dy in ((True, np.zeros((B, 6 * M + 3), dtype)),
                          (False, np.zeros((1, 6 * M + 3), dtype))):
        warm(_mdn_rows, _mdn_par, parallel_drivers, y, t, 1.0, want_grad, dy, np.zeros((B, 2)))
