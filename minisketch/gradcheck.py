"""Central-difference gradient checking: the spine of the tests and of the lessons.

Every analytic backward pass is compared, tensor by tensor and by name, in float64, with

    numeric[k] = (f(x + eps e_k) - f(x - eps e_k)) / (2 eps)                       (order 2)

or the fourth-order stencil (``order=4``: truncation error of order eps^4 instead of eps^2),
which the recurrent-cell tests use where a layer norm bends f sharply. The metric per tensor is
``err = max_k |a_k - n_k| / max(|a_k| + |n_k|, floor)``: the usual relative error, with a floor
so that entries whose true gradient is tiny or zero are compared in absolute terms at the level
of the central difference's rounding noise (``noise / tol``) or of ``floor_rel`` times the
tensor's largest entry. A wrong gradient of any noticeable size gives err close to 1 (a sign
flip gives exactly 1). The derivation of the floor: docs/gradient_checks.md.

``check_gradients`` raises ``AssertionError`` naming the tensor and listing its worst entries
(index, analytic, numeric, error); it returns the per-tensor errors so tests and lessons can
report them.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps)  # 2.2e-16


def rel_error(a, n, floor: float = 0.0) -> float:
    """max |a - n| / max(|a| + |n|, floor) over all entries (0.0 for empty arrays).

    With floor = 0 this is the plain relative error; entries where both are exactly 0 count as 0.
    """
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(_entry_errors(a, n, floor)))


def _entry_errors(a: np.ndarray, n: np.ndarray, floor: float) -> np.ndarray:
    num = np.abs(a - n)
    den = np.maximum(np.abs(a) + np.abs(n), floor)
    out = np.zeros_like(num)
    nz = den > 0
    out[nz] = num[nz] / den[nz]
    return out


STENCIL_ABS_SUM = {2: 1.0, 4: 1.5}  # sum of |coefficients| * eps of each stencil


def _f_at(f, x, idx, value) -> float:
    x[idx] = value
    return float(f())


def numerical_grad(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6, indices=None,
                   order: int = 2):
    """Central-difference gradient of the scalar ``f()`` with respect to array ``x``.

    ``x`` is modified in place (each entry nudged by +-eps, then restored exactly), so ``f`` must
    read ``x`` each time it is called. ``x`` must be a float64 NumPy array.

    indices: None for every entry (returns an array shaped like ``x``), or a 1-D sequence of flat
        indices (returns a 1-D array with the derivative for each of them, in order).
    order: 2 (two evaluations per entry) or 4 (four; see the module docstring).
    """
    if order not in STENCIL_ABS_SUM:
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("numerical_grad needs a float64 NumPy array "
                        f"(got {type(x).__name__} {getattr(x, 'dtype', '')})")
    flat = np.arange(x.size) if indices is None else np.asarray(indices, dtype=np.int64)
    out = np.empty(flat.size, dtype=np.float64)
    for j, k in enumerate(flat):
        idx = np.unravel_index(int(k), x.shape)
        old = x[idx]
        try:
            d1 = _f_at(f, x, idx, old + eps) - _f_at(f, x, idx, old - eps)
            if order == 2:
                out[j] = d1 / (2.0 * eps)
            else:
                d2 = _f_at(f, x, idx, old + 2 * eps) - _f_at(f, x, idx, old - 2 * eps)
                out[j] = (8.0 * d1 - d2) / (12.0 * eps)
        finally:
            x[idx] = old
    return out.reshape(x.shape) if indices is None else out


def check_gradients(f: Callable[[], float], params: Mapping[str, np.ndarray],
                    grads: Mapping[str, np.ndarray], eps: float = 1e-6, tol: float = 1e-6,
                    max_entries: int | None = None, seed: int = 0, floor_rel: float = 1e-3,
                    n_worst: int = 5, names=None, order: int = 2,
                    f_scale: float | None = None) -> dict[str, float]:
    """Compare analytic ``grads[name]`` with central differences of ``f()`` for each tensor.

    f:        scalar function of the current contents of the arrays in ``params``.
    params:   name -> float64 NumPy array, nudged in place (and restored).
    grads:    name -> analytic gradient of f at the current params, same shape.
    eps, tol: difference step and the largest allowed error (metric in the module docstring).
    max_entries: check at most this many entries per tensor, chosen at random (seeded by ``seed``
        and the tensor name) without replacement; None checks all.
    floor_rel: the floor's fraction of the tensor's largest numeric gradient.
    names:    which tensors to check (default: every key of ``params``).
    order:    2 or 4, the difference stencil (module docstring).
    f_scale:  the magnitude of the terms f sums (sets the rounding-noise floor); None: |f(x)|.

    Returns {name: err}. Raises AssertionError listing every failing tensor with its ``n_worst``
    entries as (index, analytic, numeric, err).
    """
    names = list(params) if names is None else list(names)
    f0 = float(f())
    if not np.isfinite(f0):
        raise AssertionError(f"check_gradients: f() = {f0} at the starting point")
    if order not in STENCIL_ABS_SUM:
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    F = abs(f0) if f_scale is None else max(float(f_scale), abs(f0))
    noise = 8.0 * STENCIL_ABS_SUM[order] * UNIT_ROUNDOFF * max(F, 1.0) / eps
    errors: dict[str, float] = {}
    failures = []
    for name in names:
        x = params[name]
        if name not in grads:
            raise AssertionError(f"check_gradients: no analytic gradient for {name!r}")
        g = np.asarray(grads[name])
        if g.shape != x.shape:
            raise AssertionError(f"check_gradients: {name!r} gradient has shape {g.shape}, "
                                 f"parameter has {x.shape}")
        if x.size == 0:
            errors[name] = 0.0
            continue
        if max_entries is not None and x.size > max_entries:
            rng = np.random.default_rng([seed, _stable_hash(name)])
            flat = np.sort(rng.choice(x.size, size=max_entries, replace=False))
        else:
            flat = np.arange(x.size)
        num = numerical_grad(f, x, eps=eps, indices=flat, order=order)
        ana = g.reshape(-1)[flat].astype(np.float64)
        floor = max(floor_rel * float(np.max(np.abs(num))), noise / tol)
        e = _entry_errors(ana, num, floor)
        err = float(np.max(e)) if np.all(np.isfinite(e)) else float("inf")
        if not np.all(np.isfinite(ana)):
            err = float("inf")
        errors[name] = err
        if not err <= tol:
            worst = np.argsort(-np.nan_to_num(e, nan=np.inf))[:n_worst]
            rows = "\n".join(
                f"    {_index(int(flat[j]), x.shape)}: analytic {ana[j]:+.10e} "
                f"numeric {num[j]:+.10e} err {e[j]:.2e}" for j in worst)
            failures.append(f"  {name} {x.shape}: err {err:.3e} > tol {tol:.1e} "
                            f"(floor {floor:.2e}, {flat.size} of {x.size} entries checked); "
                            f"worst entries (index: analytic numeric err):\n{rows}")
    if failures:
        raise AssertionError("gradient check failed for " + ", ".join(
            repr(n) for n in names if not errors[n] <= tol) + "\n" + "\n".join(failures))
    return errors


def _index(k: int, shape) -> tuple:
    """Flat index k as a tuple of plain ints (prints as (3, 1))."""
    return tuple(int(i) for i in np.unravel_index(k, shape))


def _stable_hash(name: str) -> int:
    """A process-independent integer for a tensor name (Python's hash() is salted)."""
    h = 0
    for ch in name.encode():
        h = (h * 131 + ch) % (2 ** 31 - 1)
    return h
