"""Backend choice: which array module and which kernel set a model runs on.

A backend is chosen explicitly (``backend="numpy" | "numba" | "cupy"``), never through a global.
``numpy`` runs the plain reference layer code; ``numba`` swaps in compiled CPU kernels with the
same signatures; ``cupy`` runs the same array code on the GPU, with fused CUDA kernels.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType, SimpleNamespace

import numpy as np

from .errors import BackendError

BACKENDS = ("numpy", "numba", "cupy")

CUPY_HELP = ('the cupy backend needs CuPy and a CUDA GPU: install it with '
             'pip install -e ".[cuda12]" (CUDA 12) or pip install -e ".[cuda13]" (CUDA 13)')


def get_xp(a) -> ModuleType:
    """The array module (numpy or cupy) that array ``a`` belongs to."""
    if type(a).__module__.startswith("cupy"):
        import cupy
        return cupy
    return np


def to_numpy(a):
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


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
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    from .kernels import reference
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
