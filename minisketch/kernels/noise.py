"""The counter-based uniforms of ``noise.py``, compiled for the CPU (Numba) and the GPU (CUDA).

Both replace the reference ``hash_uniform(key, out)`` of ``noise.py`` with the same signature:
entry i of float32 ``out`` (flat index) is SplitMix64(key + (i + 1) * GOLDEN) >> 40, times
2^-24. Integer arithmetic, then an exact conversion: the uniforms are the reference's bit for
bit on every backend (``tests/test_kernel_contract.py``), so dropout masks are identical.
Numba: one pass over ``out`` (split over Numba's threads when PARALLEL); CUDA: one CuPy
ElementwiseKernel, computed in place with no generator state.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .. import noise as ref
from . import cuda
from .constants import GOLDEN, MIX1, MIX2
from .jit import parallel, serial, threads_for, warm


# ---------------------------------------------------------------------------------------------
# Numba (CPU)

@serial
def _hash_rows(lo, hi, key, out):
    # entry i: SplitMix64(key + (i + 1) * golden) >> 40, times 2^-24 (exact in float32);
    # unsigned 64-bit arithmetic wraps, as NumPy's uint64 does
    s30, s27, s31, s40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
    scale = np.float32(2.0 ** -24)
    for i in range(lo, hi):
        z = key + np.uint64(i + 1) * GOLDEN
        z = (z ^ (z >> s30)) * MIX1
        z = (z ^ (z >> s27)) * MIX2
        z = z ^ (z >> s31)
        out[i] = np.float32(z >> s40) * scale


@parallel
def _hash_par(n, key, out):
    N = out.shape[0]
    for j in prange(n):
        _hash_rows(j * N // n, (j + 1) * N // n, key, out)


def hash_uniform_numba(key, out):
    """Compiled ``noise.hash_uniform``: the same signature, bit-identical uniforms, written into
    float32 ``out`` (C-contiguous)."""
    if out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("hash_uniform writes a C-contiguous float32 array")
    flat = out.reshape(-1)
    k = np.uint64(int(key) & 0xFFFFFFFFFFFFFFFF)
    n = threads_for(flat.shape[0], 1)
    if n > 1:
        _hash_par(n, k, flat)
    else:
        _hash_rows(0, flat.shape[0], k, flat)


# ---------------------------------------------------------------------------------------------
# CUDA (GPU): an elementwise body (CuPy names the flat index i)

CUDA_BODY = cuda.render("""
            unsigned long long z = key + (unsigned long long)(i + 1) * $GOLDEN;
            z = (z ^ (z >> 30)) * $MIX1;
            z = (z ^ (z >> 27)) * $MIX2;
            z = z ^ (z >> 31);
            u = (float)(z >> 40) * 5.9604644775390625e-08f;
            """, GOLDEN=GOLDEN, MIX1=MIX1, MIX2=MIX2)
_hash_kernel = None      # the cupy.ElementwiseKernel, built on first use


def hash_uniform_cuda(key, out):
    """Fused ``noise.hash_uniform`` (same signature): one elementwise pass over ``out``."""
    global _hash_kernel
    if out.dtype != np.float32 or not cuda.c_contiguous(out):
        return ref.hash_uniform(key, out)
    if _hash_kernel is None:
        _hash_kernel = cuda.cupy().ElementwiseKernel(
            "uint64 key", "float32 u", CUDA_BODY, "minisketch_hash_uniform")
    _hash_kernel(np.uint64(int(key) & ((1 << 64) - 1)), out)
    return None


def warm_up_numba(dtype, parallel_drivers: bool) -> None:
    """Compile (or load from the cache) the row function on tiny inputs (float32 uniforms
    whatever ``dtype``), and the parallel driver too when ``parallel_drivers``."""
    warm(_hash_rows, _hash_par, parallel_drivers, np.uint64(1), np.zeros(4, np.float32))
