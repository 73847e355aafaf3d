"""Pointwise activations shared by the recurrent cells (any dtype, NumPy or CuPy arrays)."""
from __future__ import annotations

from ..xp import get_xp


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)) without overflow: exp is only taken of -|x| <= 0.

    x any shape; out (same shape) to write into, or None for a new array. Returns the result."""
    xp = get_xp(x)
    e = xp.exp(-xp.abs(x))                      # in (0, 1]
    num = xp.where(x >= 0, 1.0, e)              # 1 / (1 + e) for x >= 0, e / (1 + e) below
    return xp.divide(num, 1.0 + e, out=out)
