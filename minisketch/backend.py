"""Backend choice: which array module and which kernel set a model runs on.

A backend is chosen explicitly (``backend="numpy" | "numba" | "cupy"``), never through a global.
``numpy`` runs the reference step functions (``kernels/reference.py``); ``numba`` swaps in
compiled CPU kernels with the same signatures; ``cupy`` runs the same array code on the GPU, with
fused CUDA kernels. ``get_xp`` and ``to_numpy`` live in ``xp.py`` (re-exported here).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType, SimpleNamespace

import numpy as np

from .errors import BackendError
from .kernels import reference
from .xp import get_xp, to_numpy

__all__ = ["BACKENDS", "Backend", "get_backend", "get_xp", "require_cupy", "to_numpy"]

BACKENDS = ("numpy", "numba", "cupy")

CUPY_HELP = ('the cupy backend needs CuPy and a CUDA GPU: install it with '
             'pip install -e ".[cuda12]" (CUDA 12) or pip install -e ".[cuda13]" (CUDA 13)')


def require_cupy() -> ModuleType:
    """Import CuPy and check a device exists, or raise one clear BackendError."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install
        raise BackendError(f"{CUPY_HELP} (import failed: {type(e).__name__})") from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        raise BackendError(f"{CUPY_HELP} (no usable CUDA device: {type(e).__name__})") from None
    if n < 1:
        raise BackendError(f"{CUPY_HELP} (no CUDA device found)")
    return cupy


@dataclass(frozen=True)
class Backend:
    """``name``, the array module ``xp`` and ``kernels``: a namespace of step functions."""
    name: str
    xp: ModuleType
    kernels: SimpleNamespace


def get_backend(name: str) -> Backend:
    """The Backend called ``name`` (a Backend is returned as it is); BackendError for an unknown
    name or a backend that cannot run here. Numba and CuPy are imported only when chosen."""
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "numpy":
        return Backend("numpy", np, reference.kernel_set())
    if name == "numba":
        from . import blas
        from .kernels import numba_cpu
        blas.check()          # a bad MINISKETCH_BLAS is one clear error here, not mid-step
        return Backend("numba", np, numba_cpu.kernel_set())
    cupy = require_cupy()
    from .kernels import cupy_gpu
    return Backend("cupy", cupy, cupy_gpu.kernel_set())
