"""Counter-based random numbers: the same uniforms on NumPy and on CuPy, drawn where they are used.

Training needs tens of millions of dropout uniforms per step at the reference size (recurrent
dropout masks [N_max, B, H] for three cells). Drawing them on the host and uploading them costs
more than the whole GPU step, and a stateful device generator is expensive to re-seed every step.
A counter-based generator needs neither: uniform number i of a stream is a pure function of
(key, i), so each backend computes it in place, in parallel, with no state to carry.

The function is SplitMix64 (Steele, Lea & Flood 2014, the finalizer of Java's SplittableRandom):

    z = key + (i + 1) * 0x9E3779B97F4A7C15            (mod 2^64)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z =  z ^ (z >> 31)
    u = (z >> 40) * 2^-24                              (float32 in [0, 1), exact)

Integer arithmetic only up to the last line, and the float32 conversion is exact, so NumPy and
CuPy give bit-identical uniforms, hence identical dropout masks. ``hash_uniform(key, out)`` is the
kernel-set entry (the CuPy set replaces it with one fused ElementwiseKernel with this signature);
:class:`HashNoise` is the small generator the model draws a step's noise from.
"""
from __future__ import annotations

import numpy as np

from .xp import get_xp

# SplitMix64's increment (the golden ratio in 64 bits) and its finalizer's two multipliers,
# which the compiled kernels import (kernels/noise.py)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


def splitmix64(z):
    """The SplitMix64 finalizer of a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


def hash_uniform(key, out):
    """Fill float32 ``out`` (any shape, C-contiguous) with uniforms in [0, 1): entry i (flat
    index) is SplitMix64(key + (i + 1) * golden) >> 40, times 2^-24. key: int in [0, 2^64).
    Writes into ``out``; returns nothing."""
    xp = get_xp(out)
    i = xp.arange(1, out.size + 1, dtype=xp.uint64)
    with np.errstate(over="ignore"):
        z = splitmix64(xp.uint64(int(key) & _MASK64) + i * GOLDEN)
    out.reshape(-1)[...] = (z >> np.uint64(40)).astype(xp.float32) * np.float32(2.0 ** -24)


class HashNoise:
    """The noise of one training step: ``random`` and ``standard_normal`` like a NumPy Generator
    (the two methods the model uses), each call drawing from a fresh stream of ``key``.

    xp: the array module of the results; kernels: the backend's kernel set (its
    ``hash_uniform``); key: an int (the model derives it from (seed, step))."""

    def __init__(self, xp, kernels, key: int):
        self.xp, self.kernels, self.key, self.calls = xp, kernels, int(key) & _MASK64, 0

    def _stream_key(self) -> int:
        self.calls += 1
        z = splitmix64(np.array([(self.key + self.calls * 0x632BE59BD9B4E019) & _MASK64],
                                dtype=np.uint64))
        return int(z[0])

    def _uniforms(self, shape, out=None):
        if out is None:
            out = self.xp.empty(shape, dtype=self.xp.float32)
        self.kernels.hash_uniform(self._stream_key(), out)
        return out

    def random(self, shape=None, dtype=np.float32, out=None):
        """Uniforms in [0, 1) of ``shape`` (float32: 24 random bits each), or written into
        ``out`` (a C-contiguous float32 array; then shape may be None), as NumPy's
        ``Generator.random`` does."""
        if np.dtype(dtype) != np.float32:
            raise ValueError("HashNoise.random draws float32 uniforms only")
        if out is not None and shape is not None and tuple(out.shape) != tuple(shape):
            raise ValueError(f"out has shape {out.shape}, not {tuple(shape)}")
        return self._uniforms(shape, out)

    def standard_normal(self, shape, dtype=np.float64):
        """Standard normals by Box-Muller from two uniform streams (in ``dtype``)."""
        xp = self.xp
        u1 = 1.0 - self._uniforms(shape).astype(np.float64)       # (0, 1]: log is finite
        u2 = self._uniforms(shape).astype(np.float64)
        return (xp.sqrt(-2.0 * xp.log(u1)) * xp.cos(2.0 * np.pi * u2)).astype(dtype)
