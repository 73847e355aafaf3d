"""What the fast recurrent layers share: the options that skip work, and their helpers.

The fast sequence functions (``fast/lstm.py``, ``layer_norm_lstm.py``, ``hyper_lstm.py``) compute
the reference math of ``layers/`` with two options that change the work, not the result:

    * ``x_const`` [B, Dc]: an input part that is the same at every step (sketch-rnn's decoder
      reads [S_{i-1}, z]). x is then [T, B, Dx], the step input concat(x_t, x_const), and
      x_const @ W_xh[Dx:] is computed once, not T times; the backward returns dx as the pair
      (dx_seq [T, B, Dx], dx_const [B, Dc]).
    * ``active``: a host sequence of T non-increasing ints in [0, B] instead of ``mask`` (the
      batch sorted by length, longest first): rows b < active[t] run step t, the others are
      padding, as mask[t, b] = b < active[t]. Only the leading rows are computed, on contiguous
      prefix slices; the backward keeps the real rows' per-step gradients packed step after step
      ([sum(active), ...], ``pack_rows``), so the all-steps products skip the padding.

Each is tested against the reference with the concatenated input and the mask
(tests/test_cell_fastpaths.py, tests/test_hyper_fastpaths.py).
"""
from __future__ import annotations

import numpy as np

from ..kernels import reference
from ..xp import get_xp


def resolve_kernels(kernels):
    """The kernel set to use: ``kernels`` itself, or the reference step functions for None."""
    return reference.kernel_set() if kernels is None else kernels


def check_active(active, T: int, B: int, mask=None):
    """Validate the ``active`` argument of a sequence function; returns a tuple of T Python ints
    (or None for None).

    active: a host sequence (list, tuple, range or NumPy integer array, never a device array) of T
    ints with B >= active[0] >= active[1] >= ... >= 0. Raises ValueError when it has the wrong
    length, is not non-increasing, is out of range, holds non-integers, or when ``mask`` is
    given too (they say the same thing two ways); TypeError for a device (CuPy) array."""
    if active is None:
        return None
    if mask is not None:
        raise ValueError("give either mask or active, not both")
    if hasattr(active, "__cuda_array_interface__"):
        raise TypeError("active must be a host sequence of ints (list, tuple or NumPy array), "
                        "not a device array: its values steer the Python loop over steps")
    arr = np.asarray(active)
    if arr.ndim != 1 or arr.shape[0] != T:
        raise ValueError(f"active must hold one int per step: expected length {T}, "
                         f"got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"active must hold integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > B):
        raise ValueError(f"active entries must lie in [0, {B}] (the batch size), "
                         f"got min {arr.min()} and max {arr.max()}")
    if arr.size > 1 and np.any(arr[1:] > arr[:-1]):
        raise ValueError("active must be non-increasing (sort the batch by length, longest "
                         "first)")
    return tuple(int(n) for n in arr)


def input_projection(x, W_xh, b=None, x_const=None, kernels=None):
    """All steps' input projections [T, B, 4H] at once: x @ W_xh (+ b).

    x [T, B, D] and W_xh [D, 4H]; or, with x_const [B, Dc], x [T, B, Dx] (Dx + Dc = D) and the
    input at every step concat(x_t, x_const): x @ W_xh[:Dx] + (x_const @ W_xh[Dx:] + b), whose
    second term is computed once for all steps. b [4H] or None (no bias). kernels: whose
    ``matmul`` multiplies (None = the reference's)."""
    K = resolve_kernels(kernels)
    T, B, Dx = x.shape
    if x_const is None:
        XW = K.matmul(x.reshape(T * B, Dx), W_xh).reshape(T, B, W_xh.shape[1])
        if b is not None:
            XW += b
        return XW
    if x_const.ndim != 2 or x_const.shape[0] != B or Dx + x_const.shape[1] != W_xh.shape[0]:
        raise ValueError(f"x_const must be [B, D - Dx] = [{B}, {W_xh.shape[0] - Dx}], "
                         f"got {tuple(x_const.shape)}")
    XW = K.matmul(x.reshape(T * B, Dx), W_xh[:Dx]).reshape(T, B, W_xh.shape[1])
    cw = K.matmul(x_const, W_xh[Dx:])
    if b is not None:
        cw += b
    XW += cw[None]
    return XW


def input_projection_backward(dA, x, W_xh, x_const=None, need_dx=True, kernels=None):
    """Backward of ``input_projection`` given dA [T, B, 4H], the gradient w.r.t. its output.

    Returns (dx, dW_xh [D, 4H], dA_sum): without x_const dx [T, B, D] and dA_sum None; with it
    dx = (dx_seq [T, B, Dx], dx_const [B, Dc]) and dA_sum = dA summed over steps [B, 4H] (what
    the bias gradient needs). need_dx=False skips the gradient w.r.t. the per-step input x (a
    [T B, 4H] x [4H, Dx] product nobody reads when x is data): dx, or dx_seq, is then None.
    kernels: whose ``matmul`` multiplies (None = the reference's)."""
    K = resolve_kernels(kernels)
    T, B, Dx = x.shape
    G = dA.shape[2]
    dA2 = dA.reshape(T * B, G)
    if x_const is None:
        # forward was: XW = X @ W_xh, one matmul over all steps
        dx = K.matmul(dA2, W_xh.T).reshape(T, B, Dx) if need_dx else None
        return dx, K.matmul(x.reshape(T * B, Dx).T, dA2), None
    # forward was: XW[t] = x_t @ W_xh[:Dx] + x_const @ W_xh[Dx:] at every step t, so the
    # constant part's gradients see dA summed over the steps
    dA_sum = dA.sum(axis=0)
    dx_seq = K.matmul(dA2, W_xh[:Dx].T).reshape(T, B, Dx) if need_dx else None
    dx_const, dW = _x_const_grads(x.reshape(T * B, Dx), dA2, dA_sum, W_xh, x_const, K)
    return (dx_seq, dx_const), dW, dA_sum


def _x_const_grads(X2, dA2, dA_sum, W_xh, x_const, K):
    """The gradients of ``input_projection`` with x_const, given the per-step inputs X2 [R, Dx]
    and their gradients dA2 [R, G] (R rows over all steps) and dA summed over the steps per
    batch row, dA_sum [B, G]: (dx_const [B, Dc], dW_xh [D, G]). K: the kernels (``matmul``)."""
    xp = get_xp(dA2)
    Dx = X2.shape[1]
    dx_const = K.matmul(dA_sum, W_xh[Dx:].T)
    dW = xp.empty(W_xh.shape, dtype=xp.result_type(X2.dtype, x_const.dtype, dA2.dtype))
    K.matmul(X2.T, dA2, out=dW[:Dx])
    K.matmul(x_const.T, dA_sum, out=dW[Dx:])
    return dx_const, dW


def row_offsets(active) -> list:
    """Offsets of each step's real rows in the packed layout: [0, n_0, n_0 + n_1, ...]."""
    offs = [0]
    for n in active:
        offs.append(offs[-1] + n)
    return offs


def pack_rows(a, active):
    """The real rows of a per-step array a [T, B, ...] (rows b < active[t] of step t), packed
    step after step: [sum(active), ...]."""
    xp = get_xp(a)
    parts = [a[t][:n] for t, n in enumerate(active) if n > 0]
    if not parts:
        return xp.empty((0,) + tuple(a.shape[2:]), dtype=a.dtype)
    return xp.concatenate(parts, axis=0)


def packed_input_projection_backward(dA, x, W_xh, x_const, need_dx, active, offs, K):
    """``input_projection_backward`` for a packed dA [sum(active), G] (the real rows only, as
    ``pack_rows`` lays them out): the same returns, dx unpacked to [T, B, Dx] with zeros on the
    padding rows (their gradient). K: the kernels (``matmul``)."""
    xp = get_xp(dA)
    T, B, Dx = x.shape
    G = dA.shape[1]
    Xp = pack_rows(x, active)                                           # [R, Dx]
    W_seq = W_xh if x_const is None else W_xh[:Dx]
    dx = None
    if need_dx:
        dxp = K.matmul(dA, W_seq.T)
        dx = xp.zeros((T, B, Dx), dtype=dxp.dtype)
        for t, n in enumerate(active):
            dx[t][:n] = dxp[offs[t]:offs[t + 1]]
    if x_const is None:
        return dx, K.matmul(Xp.T, dA), None
    # forward was: XW[t] = x_t @ W_xh[:Dx] + x_const @ W_xh[Dx:] for the real rows of step t
    dA_sum = xp.zeros((B, G), dtype=dA.dtype)
    for t, n in enumerate(active):
        if n > 0:
            dA_sum[:n] += dA[offs[t]:offs[t + 1]]
    dx_const, dW = _x_const_grads(Xp, dA, dA_sum, W_xh, x_const, K)
    return (dx, dx_const), dW, dA_sum


def all_steps_backward(dA, x, W_xh, x_const, need_dx, hs_prev, active, K):
    """The all-steps part of a recurrent backward (``lstm_backward``, ``ln_lstm_backward``):
    the input projection's gradients, and the rows that the W_hh gradient multiplies.

    dA: [T, B, G] without ``active``, packed [sum(active), G] with it (``pack_rows``' layout);
    hs_prev [T, B, H]: the h entering each step. Returns (dx, dW_xh, dA_sum, H2, dA2) with
    dW_hh = H2.T @ dA2: all T B rows without active, the real rows only with it. K: the
    kernels (``matmul``)."""
    if active is None:
        T, B, H = hs_prev.shape
        dx, dW_xh, dA_sum = input_projection_backward(dA, x, W_xh, x_const, need_dx, K)
        return dx, dW_xh, dA_sum, hs_prev.reshape(T * B, H), dA.reshape(T * B, -1)
    dx, dW_xh, dA_sum = packed_input_projection_backward(dA, x, W_xh, x_const, need_dx, active,
                                                         row_offsets(active), K)
    return dx, dW_xh, dA_sum, pack_rows(hs_prev, active), dA


def check_x_const(x_const, B: int, Dx: int, D: int):
    """x_const must be [B, D - Dx] (D: the input size of the parameters)."""
    if x_const is None:
        if Dx != D:
            raise ValueError(f"x has {Dx} features per step but the parameters read {D}")
        return
    if x_const.ndim != 2 or x_const.shape[0] != B or Dx + x_const.shape[1] != D:
        raise ValueError(f"x_const must be [B, D - Dx] = [{B}, {D - Dx}], "
                         f"got {tuple(x_const.shape)}")


def ln_param_grads_into(dY, norms, H, out):
    """``layers.layer_norm_lstm.ln_param_grads`` written into out = (dgamma_all, dbeta_all), two
    [5H] arrays of dY's dtype (for a caller that sums them a step at a time without allocating).
    Returns the four views (dgamma [4H], dbeta [4H], dgamma_c [H], dbeta_c [H])."""
    xp = get_xp(dY)
    n = dY.shape[-1]
    dY2, norms2 = dY.reshape(-1, n), norms.reshape(-1, n)
    dgamma, dbeta = out
    if xp is np:
        xp.einsum("ij,ij->j", dY2, norms2, out=dgamma)
    else:   # CuPy's einsum takes no out=
        dgamma[...] = xp.einsum("ij,ij->j", dY2, norms2)
    dY2.sum(axis=0, out=dbeta)
    return dgamma[:4 * H], dbeta[:4 * H], dgamma[4 * H:], dbeta[4 * H:]
