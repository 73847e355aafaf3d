"""CPU run-time settings: how many threads NumPy's BLAS uses, and keeping freed memory.

``blas_threads(n)`` runs a block with OpenBLAS on n threads and restores the old count after;
``get_blas_threads`` reads it. The CPU backends run a training step in row blocks, one Python
thread each (``SketchRNN(threads=)``), and each block's matrix products must then use one BLAS
thread: several OpenBLAS thread pools taking turns on the same cores are slower than one thread
each (benchmarks/README.md). The count is normally fixed by ``OPENBLAS_NUM_THREADS`` before
NumPy loads; these functions change it at run time through OpenBLAS's own
``openblas_set_num_threads``, called through ctypes (NumPy's wheels ship OpenBLAS with the symbol
prefix ``scipy_`` and suffix ``64_``; ``openblas_paths`` finds the library). Where NumPy uses
another BLAS (Accelerate, MKL) or the library cannot be found, ``blas_threads`` does nothing and
``get_blas_threads`` returns None.

``keep_freed_memory`` keeps the training step's large freed arrays in the process (glibc);
``return_freed_memory`` gives memory freed so far back to the system (after loading data).
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading
from contextlib import contextmanager

import numpy as np

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads")

_lock = threading.Lock()
_funcs = None          # (get, set) once looked up; (None, None) when there is no OpenBLAS


def openblas_paths() -> list:
    """Shared libraries that may be NumPy's OpenBLAS: those already mapped into this process
    (Linux), then the ones shipped inside the NumPy wheel."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "openblas" in os.path.basename(p).lower() and p not in paths:
                    paths.append(p)
    except OSError:
        pass
    root = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*"):
        paths += [p for p in sorted(glob.glob(os.path.join(root, pattern))) if p not in paths]
    return paths


def _lookup():
    global _funcs
    if _funcs is not None:
        return _funcs
    _funcs = (None, None)
    for path in openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        get = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
        set_ = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
        if get is not None and set_ is not None:
            get.restype = ctypes.c_int
            get.argtypes = []
            set_.restype = None
            set_.argtypes = [ctypes.c_int]
            _funcs = (get, set_)
            break
    return _funcs


def get_blas_threads() -> int | None:
    """OpenBLAS's current thread count, or None where it cannot be controlled."""
    get, _ = _lookup()
    return None if get is None else int(get())


@contextmanager
def blas_threads(n: int):
    """Run the block with BLAS on ``n`` threads (OpenBLAS), restoring the old count after.

    Not reentrant across Python threads: call it from the thread that starts the workers."""
    get, set_ = _lookup()
    if get is None:
        yield
        return
    with _lock:
        old = int(get())
        if old != n:
            set_(int(n))
    try:
        yield
    finally:
        if old != n:
            with _lock:
                set_(old)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process: no mmap for large blocks (M_MMAP_MAX = 0),
    no trimming of the heap below 2 GiB free (M_TRIM_THRESHOLD), and one malloc arena for all
    threads (M_ARENA_MAX = 1).

    A training step allocates its large per-sequence arrays afresh; returned to the kernel after
    each step, that memory is faulted in again by the next, page by page (benchmarks/README.md).
    The third setting matters when a step runs in worker threads: glibc gives each thread an
    arena of 64 MB heaps, and a larger block is mmapped and unmapped whatever M_MMAP_MAX says.
    Process-wide; call it before the threads first allocate (the training command calls it at
    start for the CPU backends). Returns True when glibc accepted the settings, False elsewhere
    (not Linux/glibc: nothing changes)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
    return (bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
            and bool(mallopt(M_ARENA_MAX, 1)))


def return_freed_memory() -> bool:
    """Give the heap's free memory back to the system (glibc ``malloc_trim``): after loading a
    dataset, the lists and temporaries it freed. Returns True when glibc released some."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
