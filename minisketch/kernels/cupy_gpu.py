"""The CuPy kernel set: the reference step functions as fused CUDA kernels.

``kernel_set()`` returns the reference namespace (``reference.kernel_set()``, whose array code
already runs on CuPy arrays) with the hot entries replaced by hand-written CUDA kernels that
have the same names, signatures and math:

    lstm_cell_forward / lstm_cell_backward        one thread per (row, unit): all four gates,
                                                  the cell update, dropout and padding mask in
                                                  one kernel (the h_prev @ W_hh result is added
                                                  inside, so a step is one GEMM + one kernel)
    ln_lstm_cell_forward / ln_lstm_cell_backward  one thread block per row: the layer-norm
                                                  reductions over each gate block and over c are
                                                  shared-memory block reductions, the rest is
                                                  pointwise; one kernel per step and direction
    mdn_loss_and_grad / mdn_loss                  one thread per row over the M components
                                                  (log-sum-exp form of layers/mdn.py), then one
                                                  small reduction for both sums
    clip_adam_update                              one element-wise kernel over the flat vectors
                                                  (the formula and evaluation order of
                                                  optim.clip_adam_update)

Each kernel mirrors the reference expression by expression, in the arrays' dtype (float32 or
float64; sums of the layer-norm reductions are accumulated in float64), and is compiled with
``--fmad=false`` so that a*b + c is not contracted into one fused multiply-add: the results then
differ from NumPy's only by the last-bit differences of exp/tanh/log between the CUDA math
library and NumPy's, by summation order, and by float32 subnormals, which CuPy's compiler flags
(``-ftz=true``, always appended) flush to zero (tests/test_cupy_kernels.py checks 1e-10 relative
in float64, 1e-5 in float32). ``clip_adam_update`` uses only correctly rounded operations and so
matches the reference bit for bit wherever no float32 value is subnormal.

Arguments that a kernel cannot take (not C-contiguous, a dtype other than float32/float64, mixed
dtypes) go to the reference function instead, so every call is correct; the sequence code in
``layers/`` passes contiguous arrays of one dtype, which take the fast path.

Kernels compile once per process, lazily, on first use (one NVRTC module holding every kernel
for float32 and float64; CuPy also caches the binary on disk). Nothing here synchronizes with
the host: every launch is asynchronous on the current stream, and scalars passed in are host
numbers.
"""
from __future__ import annotations

import numpy as np

from . import reference
from ..layers import hyper_lstm as _hyper_ref
from ..layers import layer_norm_lstm as _ln_ref
from ..layers import lstm as _lstm_ref
from ..layers import mdn as _mdn_ref

THREADS = 256          # threads per block of every kernel (a multiple of 32: warp reductions)
MAX_BLOCKS = 65535     # grid-stride loops cover any size with at most this many blocks
NVRTC_OPTIONS = ("--fmad=false",)
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

# ---------------------------------------------------------------------------------------------
# CUDA source: one module, every kernel a template over the element type T (float / double)

_CUDA_SOURCE = r"""
// Math overloads resolved by the element type (so float kernels call the float functions).
__device__ __forceinline__ float  k_exp(float x)    { return expf(x); }
__device__ __forceinline__ double k_exp(double x)   { return exp(x); }
__device__ __forceinline__ float  k_log(float x)    { return logf(x); }
__device__ __forceinline__ double k_log(double x)   { return log(x); }
__device__ __forceinline__ float  k_log1p(float x)  { return log1pf(x); }
__device__ __forceinline__ double k_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float  k_tanh(float x)   { return tanhf(x); }
__device__ __forceinline__ double k_tanh(double x)  { return tanh(x); }
__device__ __forceinline__ float  k_cosh(float x)   { return coshf(x); }
__device__ __forceinline__ double k_cosh(double x)  { return cosh(x); }
__device__ __forceinline__ float  k_sqrt(float x)   { return sqrtf(x); }
__device__ __forceinline__ double k_sqrt(double x)  { return sqrt(x); }
__device__ __forceinline__ float  k_abs(float x)    { return fabsf(x); }
__device__ __forceinline__ double k_abs(double x)   { return fabs(x); }

#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
         i += (long long)blockDim.x * gridDim.x)

// layers/lstm.py sigmoid: exp is only taken of -|x| <= 0 (no overflow), same two branches.
template <typename T>
__device__ __forceinline__ T k_sigmoid(T x) {
    const T e = k_exp(-k_abs(x));
    return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// Sum K per-thread values over the block; every thread gets the K totals.
// blockDim.x must be a multiple of 32; sh holds 33 * K doubles.
template <int K>
__device__ __forceinline__ void block_sum(double (&v)[K], double* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    #pragma unroll
    for (int j = 0; j < K; ++j)
        for (int off = 16; off > 0; off >>= 1) v[j] += __shfl_down_sync(0xffffffffu, v[j], off);
    if (lane == 0) {
        #pragma unroll
        for (int j = 0; j < K; ++j) sh[warp * K + j] = v[j];
    }
    __syncthreads();
    if (warp == 0) {
        #pragma unroll
        for (int j = 0; j < K; ++j) {
            double s = lane < nwarps ? sh[lane * K + j] : 0.0;
            for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
            if (lane == 0) sh[32 * K + j] = s;
        }
    }
    __syncthreads();
    #pragma unroll
    for (int j = 0; j < K; ++j) v[j] = sh[32 * K + j];
    __syncthreads();   // sh may be reused by the next call
}

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
        const T f = k_sigmoid((xw[a0 + 2 * H] + hh[a0 + 2 * H]) + T(1));   // forget bias +1
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
    const T eps = T(1e-3);
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
            const T f = k_sigmoid(y[2] + T(1));
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

// ---------------------------------------------------------------------------------------------
// Clip + Adam (optim.py clip_adam_update) over the flat vectors, in its evaluation order.

template <typename T>
__global__ void clip_adam(T* flat, const T* grad, T* m, T* v, const long long n, const T lim,
                          const T b1, const T c1, const T b2, const T c2, const T bc2,
                          const T adam_eps, const T step_size) {
    GRID_STRIDE(i, n) {
        T g = grad[i];
        if (g < -lim) g = -lim;            // NaN fails both tests and stays NaN, as in xp.clip
        else if (g > lim) g = lim;
        const T mi = b1 * m[i] + c1 * g;   // c1 = 1 - beta1
        const T vi = b2 * v[i] + c2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        flat[i] = flat[i] - (mi / (k_sqrt(vi / bc2) + adam_eps)) * step_size;
    }
}

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
    const T LOG_EPS = T(-13.815510557964274);   // log(1e-6)
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
"""

_KERNELS = ("lstm_cell_fwd", "lstm_cell_bwd", "ln_lstm_cell_fwd", "ln_lstm_cell_bwd",
            "hyper_modulate_fwd", "hyper_modulate_bwd", "mdn_rows", "clip_adam")

_module = None          # the cupy.RawModule, built on first use
_functions = {}         # (kernel name, dtype) -> cupy.RawKernel


def _cupy():
    import cupy
    return cupy


def _kernel(name: str, dtype):
    """The compiled kernel ``name<T>`` for dtype (compiles the module on the first call)."""
    global _module
    key = (name, dtype)
    fn = _functions.get(key)
    if fn is None:
        if _module is None:
            cupy = _cupy()
            _module = cupy.RawModule(
                code=_CUDA_SOURCE, options=NVRTC_OPTIONS,
                name_expressions=[f"{k}<{t}>" for k in _KERNELS for t in _CTYPES.values()])
        fn = _module.get_function(f"{name}<{_CTYPES[dtype]}>")
        _functions[key] = fn
    return fn


def compile_all() -> None:
    """Compile every kernel for both dtypes now (tests and benchmarks call this to keep
    compilation out of timings; normal use compiles on first call)."""
    for name in _KERNELS:
        for dt in _CTYPES:
            _kernel(name, dt)


def _c_contiguous(a) -> bool:
    # cupy.ndarray keeps the flag as ``_c_contiguous``; reading it skips building a Flags object
    # (these checks run a few thousand times per training step)
    c = getattr(a, "_c_contiguous", None)
    return a.flags.c_contiguous if c is None else bool(c)


def _fast(dtype, *arrays) -> bool:
    """True when every array (None entries skipped) is C-contiguous with this float dtype."""
    if dtype not in _CTYPES:
        return False
    for a in arrays:
        if a is not None and (a.dtype != dtype or not _c_contiguous(a)):
            return False
    return True


def _mask_as(mask_t, dtype):
    """The padding mask in the kernels' dtype (the kernels read it as T; only != 0 matters)."""
    if mask_t is None or mask_t.dtype == dtype:
        return mask_t
    return (mask_t != 0).astype(dtype)


def _grid(n: int) -> tuple:
    return (max(1, min(MAX_BLOCKS, (n + THREADS - 1) // THREADS)),)


def _rows_grid(rows: int) -> tuple:
    return (max(1, min(MAX_BLOCKS, rows)),)


_I32 = np.int32

# ---------------------------------------------------------------------------------------------
# LSTM


def lstm_cell_forward(xw_t, hh_t, c_prev, h_prev, keep_t, mask_t, c_out, h_out, act_out):
    """Fused ``layers.lstm.lstm_cell_forward`` (same signature and outputs)."""
    dt = c_out.dtype
    mask_t = _mask_as(mask_t, dt)
    if not _fast(dt, xw_t, hh_t, c_prev, h_prev, keep_t, mask_t, c_out, h_out, act_out):
        return _lstm_ref.lstm_cell_forward(xw_t, hh_t, c_prev, h_prev, keep_t, mask_t, c_out,
                                           h_out, act_out)
    B, H = c_prev.shape
    if B * H == 0:
        return None
    _kernel("lstm_cell_fwd", dt)(
        _grid(B * H), (THREADS,),
        (xw_t, hh_t, c_prev, h_prev, c_prev if keep_t is None else keep_t,
         c_prev if mask_t is None else mask_t, c_out, h_out, act_out,
         _I32(B), _I32(H), _I32(keep_t is not None), _I32(mask_t is not None)))
    return None


def lstm_cell_backward(dh_t, dc_t, c_prev, act_t, keep_t, mask_t, da_out, dc_prev_out,
                       dh_pass_out):
    """Fused ``layers.lstm.lstm_cell_backward`` (same signature and outputs)."""
    dt = da_out.dtype
    mask_t = _mask_as(mask_t, dt)
    if not _fast(dt, dh_t, dc_t, c_prev, act_t, keep_t, mask_t, da_out, dc_prev_out,
                 dh_pass_out):
        return _lstm_ref.lstm_cell_backward(dh_t, dc_t, c_prev, act_t, keep_t, mask_t, da_out,
                                            dc_prev_out, dh_pass_out)
    B, H = c_prev.shape
    if B * H == 0:
        return None
    _kernel("lstm_cell_bwd", dt)(
        _grid(B * H), (THREADS,),
        (dh_t, dc_t, c_prev, act_t, c_prev if keep_t is None else keep_t,
         c_prev if mask_t is None else mask_t, da_out, dc_prev_out, dh_pass_out,
         _I32(B), _I32(H), _I32(keep_t is not None), _I32(mask_t is not None)))
    return None


# ---------------------------------------------------------------------------------------------
# Layer-norm LSTM


def ln_lstm_cell_forward(a_t, c_prev, h_prev, keep_t, mask_t, gamma, beta, gamma_c, beta_c,
                         c_out, h_out, act_out, norm_out, rstd_out):
    """Fused ``layers.layer_norm_lstm.ln_lstm_cell_forward`` (same signature and outputs)."""
    dt = c_out.dtype
    mask_t = _mask_as(mask_t, dt)
    if not _fast(dt, a_t, c_prev, h_prev, keep_t, mask_t, gamma, beta, gamma_c, beta_c, c_out,
                 h_out, act_out, norm_out, rstd_out):
        return _ln_ref.ln_lstm_cell_forward(a_t, c_prev, h_prev, keep_t, mask_t, gamma, beta,
                                            gamma_c, beta_c, c_out, h_out, act_out, norm_out,
                                            rstd_out)
    B, H = c_prev.shape
    if B * H == 0:
        return None
    _kernel("ln_lstm_cell_fwd", dt)(
        _rows_grid(B), (THREADS,),
        (a_t, c_prev, h_prev, c_prev if keep_t is None else keep_t,
         c_prev if mask_t is None else mask_t, gamma, beta, gamma_c, beta_c,
         c_out, h_out, act_out, norm_out, rstd_out,
         _I32(B), _I32(H), _I32(keep_t is not None), _I32(mask_t is not None)))
    return None


def ln_lstm_cell_backward(dh_t, dc_t, c_prev, keep_t, mask_t, gamma, gamma_c, act_t, norm_t,
                          rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out):
    """Fused ``layers.layer_norm_lstm.ln_lstm_cell_backward`` (same signature and outputs)."""
    dt = da_out.dtype
    mask_t = _mask_as(mask_t, dt)
    if not _fast(dt, dh_t, dc_t, c_prev, keep_t, mask_t, gamma, gamma_c, act_t, norm_t, rstd_t,
                 da_out, dy_out, dc_prev_out, dh_pass_out):
        return _ln_ref.ln_lstm_cell_backward(dh_t, dc_t, c_prev, keep_t, mask_t, gamma,
                                             gamma_c, act_t, norm_t, rstd_t, da_out, dy_out,
                                             dc_prev_out, dh_pass_out)
    B, H = c_prev.shape
    if B * H == 0:
        return None
    _kernel("ln_lstm_cell_bwd", dt)(
        _rows_grid(B), (THREADS,),
        (dh_t, dc_t, c_prev, c_prev if keep_t is None else keep_t,
         c_prev if mask_t is None else mask_t, gamma, gamma_c, act_t, norm_t, rstd_t,
         da_out, dy_out, dc_prev_out, dh_pass_out,
         _I32(B), _I32(H), _I32(keep_t is not None), _I32(mask_t is not None)))
    return None


# ---------------------------------------------------------------------------------------------
# Mixture density loss


def _mdn_rows(y, target, scale, want_grad):
    """Launch mdn_rows: returns (rows [2, N], dy or None)."""
    cupy = _cupy()
    dt = y.dtype
    N, width = y.shape
    M = (width - 3) // 6
    rows = cupy.empty((2, N), dtype=dt)
    dy = cupy.empty_like(y) if want_grad else None
    if N > 0:
        _kernel("mdn_rows", dt)(
            _grid(N), (THREADS,),
            (y, target, rows if dy is None else dy, rows, _I32(N), _I32(M), dt.type(scale),
             _I32(bool(want_grad))))
    return rows, dy


def mdn_loss_and_grad(y, target, scale):
    """Fused ``layers.mdn.mdn_loss_and_grad``: (offset_sum 0-d, pen_sum 0-d, dy [N, 6M+3])."""
    _mdn_ref._check_shapes(y, target)
    if y.dtype not in _CTYPES or target.dtype != y.dtype:
        return _mdn_ref.mdn_loss_and_grad(y, target, scale)
    cupy = _cupy()
    rows, dy = _mdn_rows(cupy.ascontiguousarray(y), cupy.ascontiguousarray(target), scale, True)
    sums = rows.sum(axis=1)              # the second, cheap step: both sums in one reduction
    return sums[0], sums[1], dy


def mdn_loss(y, target):
    """Fused ``layers.mdn.mdn_loss`` (forward only): (offset_sum 0-d, pen_sum 0-d)."""
    _mdn_ref._check_shapes(y, target)
    if y.dtype not in _CTYPES or target.dtype != y.dtype:
        return _mdn_ref.mdn_loss(y, target)
    cupy = _cupy()
    rows, _ = _mdn_rows(cupy.ascontiguousarray(y), cupy.ascontiguousarray(target), 1.0, False)
    sums = rows.sum(axis=1)
    return sums[0], sums[1]


# ---------------------------------------------------------------------------------------------
# Clip + Adam over the flat parameter vector


def clip_adam_update(flat, grad, m, v, step, lr, clip, beta1=0.9, beta2=0.999, eps=1e-8):
    """Fused ``optim.clip_adam_update``: one kernel, same formula and evaluation order, with the
    scalars computed in float64 on the host and cast to the arrays' dtype."""
    from .. import optim
    dt = flat.dtype
    if not _fast(dt, flat, grad, m, v) or not (flat.shape == grad.shape == m.shape == v.shape):
        return optim.clip_adam_update(flat, grad, m, v, step, lr, clip, beta1, beta2, eps)
    bc1, bc2 = optim.adam_bias_corrections(step, beta1, beta2)
    n = flat.size
    if n == 0:
        return None
    c = dt.type
    _kernel("clip_adam", dt)(
        _grid(n), (THREADS,),
        (flat, grad, m, v, np.int64(n), c(clip), c(beta1), c(1.0 - beta1), c(beta2),
         c(1.0 - beta2), c(bc2), c(eps), c(lr / bc1)))
    return None


# ---------------------------------------------------------------------------------------------
# HyperLSTM modulation


def hyper_modulate_forward(xw_t, hh_t, alpha_t, beta_t, b, a_out):
    """Fused ``layers.hyper_lstm.hyper_modulate_forward`` (same signature and output)."""
    dt = a_out.dtype
    if not _fast(dt, xw_t, hh_t, alpha_t, beta_t, b, a_out):
        return _hyper_ref.hyper_modulate_forward(xw_t, hh_t, alpha_t, beta_t, b, a_out)
    B, H4 = a_out.shape
    H = H4 // 4
    if B * H == 0:
        return None
    _kernel("hyper_modulate_fwd", dt)(
        _grid(B * H), (THREADS,), (xw_t, hh_t, alpha_t, beta_t, b, a_out, _I32(B), _I32(H)))
    return None


def hyper_modulate_backward(da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
    """Fused ``layers.hyper_lstm.hyper_modulate_backward`` (same signature and outputs)."""
    dt = da_t.dtype
    if not _fast(dt, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
        return _hyper_ref.hyper_modulate_backward(da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out,
                                                  dalpha_out)
    B, H4 = da_t.shape
    H = H4 // 4
    if B * H == 0:
        return None
    _kernel("hyper_modulate_bwd", dt)(
        _grid(B * H), (THREADS,),
        (da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out, _I32(B), _I32(H)))
    return None


# ---------------------------------------------------------------------------------------------
# Counter-based uniforms (noise.hash_uniform): SplitMix64 of (key, flat index), bit-identical to
# the NumPy reference, computed in place with no generator state

_hash_kernel = None


def hash_uniform(key, out):
    """Fused ``noise.hash_uniform`` (same signature): one elementwise pass over ``out``."""
    from .. import noise
    global _hash_kernel
    if out.dtype != np.float32 or not _c_contiguous(out):
        return noise.hash_uniform(key, out)
    if _hash_kernel is None:
        _hash_kernel = _cupy().ElementwiseKernel(
            "uint64 key", "float32 u",
            """
            unsigned long long z = key + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ULL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            z = z ^ (z >> 31);
            u = (float)(z >> 40) * 5.9604644775390625e-08f;
            """, "minisketch_hash_uniform")
    _hash_kernel(np.uint64(int(key) & ((1 << 64) - 1)), out)
    return None


# ---------------------------------------------------------------------------------------------

_FUSED = {
    "lstm_cell_forward": lstm_cell_forward,
    "lstm_cell_backward": lstm_cell_backward,
    "ln_lstm_cell_forward": ln_lstm_cell_forward,
    "ln_lstm_cell_backward": ln_lstm_cell_backward,
    "hyper_modulate_forward": hyper_modulate_forward,
    "hyper_modulate_backward": hyper_modulate_backward,
    "mdn_loss_and_grad": mdn_loss_and_grad,
    "mdn_loss": mdn_loss,
    "clip_adam_update": clip_adam_update,
    "hash_uniform": hash_uniform,
}


def fused_names() -> tuple:
    """Names of the entries this module replaces with CUDA kernels."""
    return tuple(_FUSED)


def kernel_set():
    """The reference namespace with every fused entry replaced (same names and signatures).

    Entries the reference set does not (yet) have are added as well only for
    ``clip_adam_update``, which ``optim.Adam.for_model`` looks up by name."""
    ks = reference.kernel_set()
    for name, fn in _FUSED.items():
        if hasattr(ks, name) or name == "clip_adam_update":
            setattr(ks, name, fn)
    return ks
