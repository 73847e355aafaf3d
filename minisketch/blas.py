"""Matrix products through CBLAS ``?gemm``: Intel MKL when it is installed, for the Numba backend.

A CPU training step's time is mostly matrix products, most of them small per-step recurrent
products on one thread, where NumPy's bundled OpenBLAS is slower than MKL, the library PyTorch's
CPU build links (``benchmarks/blas_shapes.py``, benchmarks/README.md). So the Numba backend's
``matmul`` multiplies through MKL's CBLAS when MKL is installed (``pip install -e ".[mkl]"``: the
``mkl`` wheel, Intel Simplified Software License) and through ``numpy.matmul`` otherwise; only
the rounding of each product differs (float32: about 1e-7 relative).

MKL is used beside NumPy's OpenBLAS only (a NumPy built on MKL or Accelerate is left alone), and
only while OpenBLAS is on one thread: inside the training step's row-block threads, and
everywhere under ``python -m minisketch.train`` (which sets ``OPENBLAS_NUM_THREADS=1``). MKL runs
sequentially, on the calling thread, and gives the same bits for the same inputs whatever their
alignment, so runs stay reproducible. ``MINISKETCH_BLAS`` (read once): ``auto`` (default) as
above; ``numpy`` never uses MKL; ``mkl`` requires it (a clear error when it cannot be loaded).

What goes through CBLAS: float32 or float64 operands of one dtype, 2-D (or 3-D with the same
leading size, one call per matrix), each row-major or a transposed row-major view (``a.T``) with
unit stride along one axis, and an ``out`` that is row-major and overlaps neither operand.
Anything else (other dtypes, broadcasting, strided views, empty shapes) goes to ``numpy.matmul``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import sysconfig
import threading

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .cpu import get_blas_threads, openblas_paths
from .errors import BackendError

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
CHOICES = ("auto", "numpy", "mkl")
MKL_HELP = 'install it with pip install -e ".[mkl]" (x86-64 only)'


class Cblas:
    """``sgemm`` / ``dgemm`` of one CBLAS library, called from compiled code.

    lib: a loaded ``ctypes.CDLL``; sgemm, dgemm: the symbol names; int_type: the library's
    integer (``ctypes.c_int`` for the LP64 interface, ``ctypes.c_int64`` for ILP64). The call
    goes through ``_gemm``, a Numba function given the symbol's address, which also checks the
    layouts: through ctypes, converting the arguments alone would cost more than a small product
    of the step (benchmarks/README.md)."""

    def __init__(self, name: str, lib, sgemm: str, dgemm: str, int_type=ctypes.c_int):
        self.name = name
        self.ilp64 = ctypes.sizeof(int_type) == 8
        self._int_max = 2 ** (8 * ctypes.sizeof(int_type) - 1) - 1
        self._funcs = {}
        for dtype, sym in ((np.dtype(np.float32), sgemm), (np.dtype(np.float64), dgemm)):
            addr = ctypes.cast(getattr(lib, sym), ctypes.c_void_p).value
            self._funcs[dtype] = (addr, dtype.type(1.0), dtype.type(0.0))

    def matmul(self, a, b, out=None):
        """``a @ b`` (into ``out`` when given) through this library, or None when the operands
        are not a case it takes (see the module docstring); then nothing was written."""
        if type(a) is not np.ndarray or type(b) is not np.ndarray:
            return None
        f = self._funcs.get(a.dtype)
        nd = a.ndim
        if f is None or b.dtype != a.dtype or b.ndim != nd or nd not in (2, 3):
            return None
        m, k = a.shape[-2:]
        n = b.shape[-1]
        if (b.shape[-2] != k or (nd == 3 and a.shape[0] != b.shape[0])
                or min(a.shape + b.shape) == 0 or max(m, n, k) > self._int_max):
            return None
        shape = (m, n) if nd == 2 else (a.shape[0], m, n)
        if out is None:
            out = np.empty(shape, dtype=a.dtype)
        elif (type(out) is not np.ndarray or out.dtype != a.dtype or out.shape != shape
              or np.may_share_memory(out, a) or np.may_share_memory(out, b)):
            return None
        addr, one, zero = f
        if nd == 2:
            done = _gemm(addr, self.ilp64, one, zero, a, b, out)
        else:
            done = _gemm_stack(addr, self.ilp64, one, zero, a, b, out)
        return out if done else None


# ---------------------------------------------------------------------------------------------
# The compiled call: the layouts checked, then the library's ?gemm called through its address
# (an argument, not a constant baked into the code, so Numba caches the compiled code on disk)

@intrinsic
def _call_gemm(typingctx, addr, order, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc):
    """Call the C function at ``addr`` as
    void f(int, int, int, int, int, int, real, void*, int, void*, int, real, void*, int)
    with the integer width of the arguments given (pointers passed as 64-bit integers: the
    same registers in the x86-64 and AArch64 C calling conventions)."""
    sig = types.void(addr, order, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(),
                               [context.get_value_type(t) for t in signature.args[1:]])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, args[1:])
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, nogil=True)
def _layout_nb(rows, cols, s0, s1, it, ptr):
    """(transpose flag, leading dimension) of a [rows, cols] matrix with strides (s0, s1) bytes
    at address ptr, for a row-major CBLAS call; flag 0 when it is neither row-major nor a
    transposed row-major view, or is misaligned. A length-1 axis may have any stride."""
    if ptr % it != 0:
        return 0, 0
    if (s1 == it or cols == 1) and (rows == 1 or (s0 > 0 and s0 % it == 0 and s0 >= cols * it)):
        return _NO_TRANS, (s0 // it if rows > 1 else cols)
    if (s0 == it or rows == 1) and (cols == 1 or (s1 > 0 and s1 % it == 0 and s1 >= rows * it)):
        return _TRANS, (s1 // it if cols > 1 else rows)
    return 0, 0


@njit(cache=True, nogil=True)
def _gemm_at(addr, ilp64, one, zero, m, n, k, ta, lda, pa, tb, ldb, pb, ldo, po):
    if ilp64:
        _call_gemm(addr, np.int64(_ROW_MAJOR), np.int64(ta), np.int64(tb), np.int64(m),
                   np.int64(n), np.int64(k), one, np.int64(pa), np.int64(lda), np.int64(pb),
                   np.int64(ldb), zero, np.int64(po), np.int64(ldo))
    else:
        _call_gemm(addr, np.int32(_ROW_MAJOR), np.int32(ta), np.int32(tb), np.int32(m),
                   np.int32(n), np.int32(k), one, np.int64(pa), np.int32(lda), np.int64(pb),
                   np.int32(ldb), zero, np.int64(po), np.int32(ldo))


@njit(cache=True, nogil=True)
def _gemm(addr, ilp64, one, zero, a, b, out):
    """out = a @ b for 2-D a [m, k], b [k, n], out [m, n] (shapes checked by the caller);
    False, with nothing written, when a layout is not one CBLAS takes."""
    m, k = a.shape
    n = b.shape[1]
    it = a.itemsize
    ta, lda = _layout_nb(m, k, a.strides[0], a.strides[1], it, a.ctypes.data)
    tb, ldb = _layout_nb(k, n, b.strides[0], b.strides[1], it, b.ctypes.data)
    to, ldo = _layout_nb(m, n, out.strides[0], out.strides[1], it, out.ctypes.data)
    if ta == 0 or tb == 0 or to != _NO_TRANS:
        return False
    _gemm_at(addr, ilp64, one, zero, m, n, k, ta, lda, a.ctypes.data, tb, ldb, b.ctypes.data,
             ldo, out.ctypes.data)
    return True


@njit(cache=True, nogil=True)
def _gemm_stack(addr, ilp64, one, zero, a, b, out):
    """``_gemm`` for every matrix of the stacks a [S, m, k], b [S, k, n], out [S, m, n]."""
    S, m, k = a.shape
    n = b.shape[2]
    it = a.itemsize
    ta, lda = _layout_nb(m, k, a.strides[1], a.strides[2], it, a.ctypes.data)
    tb, ldb = _layout_nb(k, n, b.strides[1], b.strides[2], it, b.ctypes.data)
    to, ldo = _layout_nb(m, n, out.strides[1], out.strides[2], it, out.ctypes.data)
    if (ta == 0 or tb == 0 or to != _NO_TRANS or a.strides[0] % it or b.strides[0] % it
            or out.strides[0] % it):
        return False
    for i in range(S):
        _gemm_at(addr, ilp64, one, zero, m, n, k, ta, lda, a.ctypes.data + i * a.strides[0],
                 tb, ldb, b.ctypes.data + i * b.strides[0], ldo,
                 out.ctypes.data + i * out.strides[0])
    return True


# ---------------------------------------------------------------------------------------------
# Finding the libraries

def _mkl_paths() -> list:
    """Where the ``mkl`` wheel (or a system MKL) puts libmkl_rt: the environment's lib folder,
    the user site's, then the loader's search path."""
    roots = [os.path.join(sys.prefix, "lib"), os.path.join(sysconfig.get_paths()["data"], "lib")]
    try:
        import site
        roots.append(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            site.getusersitepackages()))), "lib"))
    except Exception:
        pass
    paths = []
    for root in roots:
        for name in ("libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so", "libmkl_rt.dylib"):
            p = os.path.join(root, name)
            if os.path.exists(p) and p not in paths:
                paths.append(p)
    found = ctypes.util.find_library("mkl_rt")
    if found and found not in paths:
        paths.append(found)
    return paths


def load_mkl():
    """A ``Cblas`` on MKL with the sequential threading layer, or None when MKL is not found.
    MKL's threading layer is process-wide and fixed by the first call into the library, so this
    sets it before anything else calls it."""
    for path in _mkl_paths():
        try:
            lib = ctypes.CDLL(path)
            set_layer = lib.MKL_Set_Threading_Layer
        except (OSError, AttributeError):
            continue
        set_layer.restype = ctypes.c_int
        set_layer.argtypes = [ctypes.c_int]
        set_layer(1)                                    # MKL_THREADING_SEQUENTIAL
        try:
            cb = Cblas("mkl", lib, "cblas_sgemm", "cblas_dgemm", ctypes.c_int)
        except AttributeError:
            continue
        cb.version = _mkl_version(lib)
        cb.path = path
        return cb
    return None


def _mkl_version(lib) -> str:
    try:
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, len(buf))
        return buf.value.decode("ascii", "replace").strip()
    except Exception:
        return "MKL (version unknown)"


def load_numpy_openblas():
    """A ``Cblas`` on the OpenBLAS inside NumPy's wheel (ILP64 symbols ``scipy_cblas_?gemm64_``),
    or None. The library NumPy itself multiplies with: the tests run ``Cblas`` on it, so the
    layout logic is checked where MKL is not installed."""
    for path in openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for s, d, it in (("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", ctypes.c_int64),
                         ("cblas_sgemm64_", "cblas_dgemm64_", ctypes.c_int64),
                         ("cblas_sgemm", "cblas_dgemm", ctypes.c_int)):
            if hasattr(lib, s) and hasattr(lib, d):
                return Cblas("openblas", lib, s, d, it)
    return None


# ---------------------------------------------------------------------------------------------
# The Numba backend's product

_lock = threading.Lock()
_state = None          # (Cblas or None,) once MINISKETCH_BLAS is resolved


def _resolve():
    global _state
    if _state is not None:
        return _state
    with _lock:
        if _state is None:
            choice = os.environ.get("MINISKETCH_BLAS", "auto").strip().lower() or "auto"
            if choice not in CHOICES:
                raise BackendError(f"MINISKETCH_BLAS must be one of {', '.join(CHOICES)}, "
                                   f"got {choice!r}")
            lib = None
            if choice != "numpy":
                # only beside NumPy's OpenBLAS (whose thread count is known)
                if get_blas_threads() is not None:
                    lib = load_mkl()
                if lib is None and choice == "mkl":
                    raise BackendError("MINISKETCH_BLAS=mkl but MKL could not be loaded beside "
                                       f"NumPy's OpenBLAS: {MKL_HELP}")
            _state = (lib,)
    return _state


def check() -> None:
    """Resolve ``MINISKETCH_BLAS`` now: raises BackendError for a bad value, or for ``mkl``
    when MKL cannot be loaded."""
    _resolve()


def mkl():
    """The MKL ``Cblas`` the Numba backend uses, or None (not installed, or turned off)."""
    return _resolve()[0]


def describe() -> str:
    """Which library the Numba backend's products go to, in words (for logs and benchmarks)."""
    lib = mkl()
    if lib is None:
        return "NumPy's matmul"
    return f"{lib.version} (sequential) where OpenBLAS is on one thread, else NumPy's matmul"


def matmul(a, b, out=None):
    """The Numba backend's ``matmul`` kernel: ``numpy.matmul(a, b, out=out)``, computed by MKL
    when it is loaded, OpenBLAS is on one thread and the operands are a case CBLAS takes."""
    lib = _resolve()[0]
    if lib is not None and get_blas_threads() == 1:
        r = lib.matmul(a, b, out)
        if r is not None:
            return r
    return np.matmul(a, b, out=out)


def reset_for_tests() -> None:
    """Forget the resolved choice (tests that change ``MINISKETCH_BLAS``)."""
    global _state
    with _lock:
        _state = None


def warm_up(dtypes=("float32", "float64")) -> None:
    """Compile (or load from Numba's cache) the compiled call for the array layouts the model's
    products have (row-major, transposed and strided views; 2-D and 3-D), when MKL is in use."""
    lib = mkl()
    if lib is None:
        return
    for name in dtypes:
        dt = np.dtype(name)
        c = np.zeros((3, 3), dt)
        views = (c, c.T, np.zeros((3, 4), dt)[:, :3])             # layouts C, F and A
        for a in views:
            for b in views:
                lib.matmul(a, b, np.empty((3, 3), dt))
        c3 = np.zeros((2, 3, 3), dt)
        for a in (c3, c3.transpose(1, 0, 2)):
            for b in (c3, c3.transpose(1, 0, 2)):
                lib.matmul(a, b, np.empty((2, 3, 3), dt))
