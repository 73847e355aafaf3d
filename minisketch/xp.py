"""The array-module helpers: which module (NumPy or CuPy) an array belongs to, and a host copy.

Every layer takes its array module from its inputs (``xp = get_xp(x)``) instead of a global, so
the same code runs on NumPy and CuPy arrays. This module imports NumPy only (CuPy is imported
when a CuPy array is seen), so everything else can import it.
"""
from __future__ import annotations

from types import ModuleType

import numpy as np


def get_xp(a) -> ModuleType:
    """The array module (numpy or cupy) that array ``a`` belongs to."""
    if type(a).__module__.startswith("cupy"):
        import cupy  # only reached with a CuPy array, so CuPy is installed
        return cupy
    return np


def to_numpy(a):
    """A NumPy copy (or view) of a NumPy or CuPy array."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)
