"""CUDA for the GPU kernels: the device code they share, compiling on first use, launch helpers.

Each op's module (``lstm.py``, ...) holds its CUDA source beside its Numba kernel. ``Module``
compiles PRELUDE + that source with NVRTC (CuPy's RawModule) on first use, each kernel a
template over the element type T, instantiated for float and double. The options hold
``--fmad=false``, so a*b + c is not contracted into one fused multiply-add: results then differ
from NumPy's only in the last bits of exp/tanh/log (CUDA's math library against NumPy's), in
summation order, and in float32 subnormals, which CuPy's always-added ``-ftz=true`` flushes to
zero. CuPy keeps the compiled binaries in its disk cache.

Constants of the reference reach the sources through ``render`` (``constants.py``), never
restated. Arguments a kernel cannot take (see ``fast``) go to the reference function instead, so
every call is correct. Launches are asynchronous on the current stream, and scalars passed in
are host numbers. CuPy is imported on first use: the kernel modules import without it.
"""
from __future__ import annotations

from string import Template

import numpy as np

THREADS = 256          # threads per block of every kernel (a multiple of 32: warp reductions)
MAX_BLOCKS = 65535     # grid-stride loops cover any size with at most this many blocks
NVRTC_OPTIONS = ("--fmad=false",)
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

# Device code every kernel module may use: math overloads by element type, the grid-stride loop,
# the reference's sigmoid, and a block-wide sum (the layer-norm reductions).
PRELUDE = r"""
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
"""


def cupy():
    """The cupy module (imported on first use)."""
    import cupy as cp
    return cp


class Module:
    """The CUDA kernels of one op: ``PRELUDE + source``, compiled on the first ``kernel`` call.

    source: CUDA text defining ``template <typename T> __global__`` kernels; names: their names."""

    def __init__(self, source: str, names):
        self.source = PRELUDE + source
        self.names = tuple(names)
        self._raw = None           # the cupy.RawModule
        self._functions = {}       # (name, dtype) -> cupy.RawKernel

    def name_expressions(self) -> list:
        return [f"{k}<{t}>" for k in self.names for t in CTYPES.values()]

    def kernel(self, name: str, dtype):
        """The compiled kernel ``name<T>`` for dtype (compiles the module on the first call)."""
        key = (name, dtype)
        fn = self._functions.get(key)
        if fn is None:
            if self._raw is None:
                self._raw = cupy().RawModule(code=self.source, options=NVRTC_OPTIONS,
                                             name_expressions=self.name_expressions())
            fn = self._raw.get_function(f"{name}<{CTYPES[dtype]}>")
            self._functions[key] = fn
        return fn

    def compile(self) -> None:
        """Compile every kernel for both dtypes now."""
        for name in self.names:
            for dt in CTYPES:
                self.kernel(name, dt)


def c_literal(x) -> str:
    """The shortest C literal that reads back as the double ``x``: ``1`` for 1.0, ``1e-3`` for
    0.001, else Python's shortest repr."""
    x = float(x)
    if x.is_integer() and abs(x) < 2.0 ** 53:
        return str(int(x))
    text = repr(x)
    for digits in range(17):
        mantissa, exponent = f"{x:.{digits}e}".split("e")
        if float(mantissa + "e" + exponent) == x:
            sci = f"{mantissa}e{int(exponent)}"
            return sci if len(sci) < len(text) else text
    return text


def render(source: str, **constants) -> str:
    """``source`` with each ``$NAME`` replaced by constants[NAME]: a float as ``c_literal``, an
    integer (a NumPy uint64, say) as a hexadecimal unsigned long long literal."""
    text = {}
    for name, value in constants.items():
        if isinstance(value, (int, np.integer)):
            text[name] = f"0x{int(value):X}ULL"
        else:
            text[name] = c_literal(value)
    return Template(source).substitute(text)


def c_contiguous(a) -> bool:
    # cupy.ndarray keeps the flag as ``_c_contiguous``; reading it skips building a Flags object
    # (these checks run a few thousand times per training step)
    c = getattr(a, "_c_contiguous", None)
    return a.flags.c_contiguous if c is None else bool(c)


def fast(dtype, *arrays) -> bool:
    """True when every array (None entries skipped) is C-contiguous with this float dtype: the
    arguments a kernel takes."""
    if dtype not in CTYPES:
        return False
    for a in arrays:
        if a is not None and (a.dtype != dtype or not c_contiguous(a)):
            return False
    return True


def mask_as(mask_t, dtype):
    """The padding mask in the kernels' dtype (the kernels read it as T; only != 0 matters)."""
    if mask_t is None or mask_t.dtype == dtype:
        return mask_t
    return (mask_t != 0).astype(dtype)


def grid(n: int) -> tuple:
    """Blocks of THREADS threads for n elements (grid-stride loops beyond MAX_BLOCKS)."""
    return (max(1, min(MAX_BLOCKS, (n + THREADS - 1) // THREADS)),)


def rows_grid(rows: int) -> tuple:
    """One block per row (block-stride loop beyond MAX_BLOCKS)."""
    return (max(1, min(MAX_BLOCKS, rows)),)
