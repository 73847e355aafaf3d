"""Element-wise clipping + Adam over the flat parameter vector, compiled for the CPU (Numba) and
the GPU (CUDA).

Both replace the reference ``clip_adam_update`` of ``optim.py`` (same arguments, same in-place
updates of ``flat``, ``m`` and ``v``), and are tested against it in
``tests/test_kernel_contract.py``. One pass over the vectors, with the reference's formula and
evaluation order and its host-computed float64 scalars cast to the arrays' dtype: every operation
is correctly rounded, so the Numba version matches bit for bit, and the CUDA one too wherever no
float32 value is subnormal (CuPy flushes those to zero).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .. import optim as ref
from . import cuda
from .jit import parallel, serial, threads_for, warm


# ---------------------------------------------------------------------------------------------
# Numba (CPU)

@serial
def _adam_rows(lo, hi, flat, grad, m, v, clip, b1, one_m_b1, b2, one_m_b2, bc2, eps, s):
    for j in range(lo, hi):
        g = grad[j]
        if g > clip:          # nan fails both tests and stays nan, as with np.clip
            g = clip
        elif g < -clip:
            g = -clip
        mj = b1 * m[j] + one_m_b1 * g
        vj = b2 * v[j] + one_m_b2 * (g * g)
        m[j] = mj
        v[j] = vj
        flat[j] = flat[j] - (mj / (np.sqrt(vj / bc2) + eps)) * s


@parallel
def _adam_par(n, flat, grad, m, v, clip, b1, one_m_b1, b2, one_m_b2, bc2, eps, s):
    P = flat.shape[0]
    for j in prange(n):
        _adam_rows(j * P // n, (j + 1) * P // n, flat, grad, m, v, clip, b1, one_m_b1, b2,
                   one_m_b2, bc2, eps, s)


def clip_adam_update_numba(flat, grad, m, v, step, lr, clip, beta1=0.9, beta2=0.999, eps=1e-8):
    """Compiled ``optim.clip_adam_update``: same arguments and in-place updates, the same
    arithmetic in the same order with the same host-computed scalars (bit-identical)."""
    bc1, bc2 = ref.adam_bias_corrections(step, beta1, beta2)
    dt = flat.dtype.type
    args = (flat, grad, m, v, dt(clip), dt(beta1), dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2),
            dt(bc2), dt(eps), dt(lr / bc1))
    P = flat.shape[0]
    n = threads_for(P, 1)
    if n > 1:
        _adam_par(n, *args)
    else:
        _adam_rows(0, P, *args)


# ---------------------------------------------------------------------------------------------
# CUDA (GPU)

CUDA_SOURCE = r"""
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
"""
CUDA = cuda.Module(CUDA_SOURCE, ("clip_adam",))


def clip_adam_update_cuda(flat, grad, m, v, step, lr, clip, beta1=0.9, beta2=0.999, eps=1e-8):
    """Fused ``optim.clip_adam_update``: one kernel, same formula and evaluation order, with the
    scalars computed in float64 on the host and cast to the arrays' dtype."""
    dt = flat.dtype
    if not cuda.fast(dt, flat, grad, m, v) or not (flat.shape == grad.shape == m.shape == v.shape):
        return ref.clip_adam_update(flat, grad, m, v, step, lr, clip, beta1, beta2, eps)
    bc1, bc2 = ref.adam_bias_corrections(step, beta1, beta2)
    n = flat.size
    if n == 0:
        return None
    c = dt.type
    CUDA.kernel("clip_adam", dt)(
        cuda.grid(n), (cuda.THREADS,),
        (flat, grad, m, v, np.int64(n), c(clip), c(beta1), c(1.0 - beta1), c(beta2),
         c(1.0 - beta2), c(bc2), c(eps), c(lr / bc1)))
    return None


def warm_up_numba(dtype, parallel_drivers: bool) -> None:
    """Compile (or load from the cache) the row function for ``dtype`` on tiny inputs, and the
    parallel driver too when ``parallel_drivers``."""
    dt = np.dtype(dtype)
    z = lambda *s: np.zeros(s, dtype=dt)  # noqa: E731
    warm(_adam_rows, _adam_par, parallel_drivers, z(4), z(4), z(4), z(4),
         *(dt.type(v) for v in (1, .9, .1, .999, .001, .5, 1e-8, 1e-3)))
