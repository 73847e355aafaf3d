"""How the Numba kernels are compiled and run: the two decorators, the disk cache, the threads.

``@serial`` compiles one thread's loop over a range of rows, ``@parallel`` a ``prange`` driver
that hands contiguous chunks of rows to Numba's threads. Both are ``njit(cache=True,
error_model="numpy", nogil=True)``, without fastmath, so results are reproducible and
gradient-checkable; ``error_model="numpy"`` makes x / 0 give inf or nan as NumPy does (and lets
LLVM vectorize loops that divide); ``nogil`` lets Python threads run kernels side by side.

The disk cache: Numba checks a cached function against its own source file only, but a kernel
holds compiled copies of the functions it calls in other files (``numerics.py``) and of the
constants it reads (``constants.py``). So every kernel is cached in ``CACHE_DIR``, a directory
named after a hash of all the sources in this folder and those constants' values: any change to
any of them gives a new directory, and the kernels compile afresh (``tests/test_kernel_cache.py``).

Threads: ``threads_for`` picks how many row chunks a call uses: 1 (serial) unless
``MINISKETCH_NUMBA_PARALLEL=1`` (read once, at import), and then only for calls of at least
``MIN_PARALLEL_WORK`` elements. Rows are computed the same way on either path, so results do not
depend on the thread count.
"""
from __future__ import annotations

import glob
import hashlib
import os

import numba
import numpy as np

from . import constants

_HERE = os.path.dirname(os.path.abspath(__file__))

SERIAL_OPTIONS = dict(cache=True, error_model="numpy", nogil=True)
PARALLEL_OPTIONS = dict(SERIAL_OPTIONS, parallel=True)


def source_key() -> str:
    """Hash of every ``.py`` file in ``minisketch/kernels`` and of ``constants.values()``."""
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(_HERE, "*.py"))):
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read() + b"\0")
    h.update(repr(sorted(constants.values().items())).encode())
    return h.hexdigest()[:16]


def _cache_root() -> str:
    """NUMBA_CACHE_DIR when set; else this folder's ``__pycache__`` (where Numba would put the
    cache) when writable; else the user's cache folder."""
    if numba.config.CACHE_DIR:
        return numba.config.CACHE_DIR
    local = os.path.join(_HERE, "__pycache__")
    try:
        os.makedirs(local, exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minisketch")


CACHE_DIR = os.path.join(_cache_root(), "numba-" + source_key())


def _cached_njit(options: dict):
    def decorate(fn):
        # Numba picks a function's cache folder when it is decorated, from numba.config
        # (NUMBA_CACHE_DIR); it is set for this one decoration only, so code outside the
        # kernels keeps its own caching
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = CACHE_DIR
        try:
            return numba.njit(**options)(fn)
        finally:
            numba.config.CACHE_DIR = saved
    return decorate


serial = _cached_njit(SERIAL_OPTIONS)
parallel = _cached_njit(PARALLEL_OPTIONS)

# Splitting rows across Numba's threads is opt-in: between two matrix products, Numba's and
# OpenBLAS's idle threads both spin and take the cores from each other (benchmarks/README.md).
PARALLEL = os.environ.get("MINISKETCH_NUMBA_PARALLEL", "0").strip() == "1"
MIN_PARALLEL_WORK = 16384     # elements per call below which a second thread costs more


def threads_for(rows: int, width: int) -> int:
    """How many chunks to split ``rows`` rows of ``width`` elements into (1 = stay serial):
    1 unless PARALLEL; then Numba's thread count (NUMBA_NUM_THREADS / numba.set_num_threads)
    for calls of at least MIN_PARALLEL_WORK elements."""
    if not PARALLEL:
        return 1
    n = numba.get_num_threads()
    if n < 2 or rows < 2 or rows * width < MIN_PARALLEL_WORK:
        return 1
    return min(n, rows)


_DUMMIES: dict = {}


def optional(a, like, ndim: int):
    """(a, True) for an array; (a cached zero array of like's dtype, False) for None. Optional
    arguments (no dropout, no padding mask) become a flag and a dummy array, so each dtype
    compiles once per kernel rather than once per combination of Nones."""
    if a is not None:
        return a, True
    key = (like.dtype.str, ndim)
    d = _DUMMIES.get(key)
    if d is None:
        d = _DUMMIES[key] = np.zeros((1,) * ndim, dtype=like.dtype)
    return d, False


def warm(rows, par, parallel_drivers: bool, *args) -> None:
    """Call a kernel's row function on row 0 of ``args`` (so it compiles, or loads from the
    cache), and its parallel driver with one chunk when ``parallel_drivers``."""
    rows(0, 1, *args)
    if parallel_drivers:
        par(1, *args)
