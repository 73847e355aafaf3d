"""Bidirectional encoder over variable-length sketches (SPEC section 2).

Both directions read only each sketch's own L real rows, then padding steps (mask 0, where the
state passes through): the forward direction rows 1, 2, ..., L; the backward direction rows
L, L-1, ..., 1, gathered by index, x_rev[t, b] = x[L_b - 1 - t, b] for t < L_b. The encoding
is h = [h_fw at step L, h_bw at step L] ([B, 2H]), gathered from each direction's outputs.

Inputs are time-major: x [T, B, D] holds rows 1..T of the batch (the start token S0 excluded),
lengths [B] with 1 <= L_b <= T. ``cell`` is a namespace from ``layers.cells.get_cell``; the two
directions have their own parameters (the model's "enc_fw/*" and "enc_bw/*").
``encoder_backward`` returns fresh arrays. NumPy or CuPy, unchanged. The fast twin (rows sorted
by length, padding skipped, the directions in two threads) is ``minisketch/fast/encoder.py``.
"""
from __future__ import annotations

from ..xp import get_xp


def reverse_index(lengths, T):
    """[T, B] row index read by the backward direction at step t: L_b - 1 - t for t < L_b, else t.

    Each column is a permutation of 0..T-1 (the real rows reversed, padding rows in place), so
    gathering with it and scattering back with it are exact inverses."""
    xp = get_xp(lengths)
    t = xp.arange(T)[:, None]
    L = lengths[None, :]
    return xp.where(t < L, L - 1 - t, t)


def encoder_forward(x, lengths, p_fw, p_bw, cell, hidden_size, keep_fw=None, keep_bw=None,
                    kernels=None):
    """Run both directions and return the final hidden states.

    Inputs:
        x [T, B, D]        time-major rows 1..T (real rows, then padding)
        lengths [B]        int array (same array module as x), 1 <= L_b <= T
        p_fw, p_bw         parameter dicts of the two directions' cells
        cell               namespace from ``get_cell`` (both directions use the same cell kind)
        hidden_size        H, the units of each direction
        keep_fw, keep_bw   [T, B, H] recurrent-dropout multipliers per direction, or None
                           (keep_bw[t] is used at the backward direction's step t)
        kernels            the kernel set the cells run on (None: the reference step functions)
    Returns:
        h [B, 2H] = [h_fw_final | h_bw_final]; cache for ``encoder_backward``.
    """
    xp = get_xp(x)
    T, B, _ = x.shape
    cols = xp.arange(B)
    mask = (xp.arange(T)[:, None] < lengths[None, :]).astype(x.dtype)        # [T, B]
    rev = reverse_index(lengths, T)
    x_rev = x[rev, cols[None, :]]                                          # [T, B, D]
    state0 = xp.zeros((B, cell.state_size(hidden_size)), dtype=x.dtype)
    hs_f, _, cache_f = cell.forward(x, state0, p_fw, keep=keep_fw, mask=mask, kernels=kernels)
    hs_b, _, cache_b = cell.forward(x_rev, state0, p_bw, keep=keep_bw, mask=mask,
                                    kernels=kernels)
    last = lengths - 1
    h = xp.concatenate([hs_f[last, cols], hs_b[last, cols]], axis=1)
    return h, (x.shape, x.dtype, rev, last, hidden_size, cache_f, cache_b, cell)


def encoder_backward(dh, cache):
    """Gradients of ``encoder_forward`` (fresh arrays).

    Inputs:  dh [B, 2H] gradient w.r.t. h; cache from the forward.
    Returns: dx [T, B, D]; grads_fw, grads_bw (dicts shaped like p_fw, p_bw).
    """
    (T, B, D), dtype, rev, last, H, cache_f, cache_b, cell = cache
    xp = get_xp(dh)
    cols = xp.arange(B)
    # forward was: h = [hs_f[L-1] | hs_b[L-1]] (one gathered step per sketch)
    dhs_f = xp.zeros((T, B, H), dtype=dtype)
    dhs_f[last, cols] = dh[:, :H]
    dhs_b = xp.zeros((T, B, H), dtype=dtype)
    dhs_b[last, cols] = dh[:, H:]
    dx, _, grads_fw = cell.backward(dhs_f, None, cache_f)
    dx_rev, _, grads_bw = cell.backward(dhs_b, None, cache_b)
    # forward was: x_rev = x[rev, b] with rev a permutation of each column: scatter back
    dx[rev, cols[None, :]] += dx_rev
    return dx, grads_fw, grads_bw
