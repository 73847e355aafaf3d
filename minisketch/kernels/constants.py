"""The reference constants the compiled kernels build in, imported from where they are defined.

The Numba kernels read these as compile-time constants and the CUDA sources have them formatted
in (``cuda.render``), so a kernel cannot drift from its reference by restating a number. Kernel
modules take outside constants only from here: ``values()`` is part of the key of the Numba cache
(``jit.py``), so changing one of them recompiles every kernel.
"""
from __future__ import annotations

from ..layers.layer_norm_lstm import LN_EPS
from ..layers.lstm import FORGET_BIAS
from ..layers.mdn import LOG_2, LOG_2PI, LOG_LOSS_EPS
from ..noise import GOLDEN, MIX1, MIX2

__all__ = ["FORGET_BIAS", "LN_EPS", "LOG_2", "LOG_2PI", "LOG_LOSS_EPS", "GOLDEN", "MIX1", "MIX2"]


def values() -> dict:
    """{name: value} of every constant above."""
    g = globals()
    return {name: g[name] for name in __all__}
