"""The encoder of ``layers/encoder.py``, skipping the padding and running both directions at once.

``encoder_forward(..., host_lengths=, parallel=)`` gives the reference's numbers to float
rounding (tests/test_threads.py, tests/test_step_layout.py): with the lengths on the host, the
rows are sorted by length (longest first), so at step t the real rows are a prefix and the fast
cells compute only those (``active``, ``fast/sequence.py``); ``parallel`` runs the two
independent directions through a runner (two threads in the model). ``cell`` is a fast cell
(``fast/cells.py``). ``encoder_backward(..., need_dx=False)`` skips the gradient w.r.t. x.
Fresh arrays. NumPy or CuPy arrays.
"""
from __future__ import annotations

import numpy as np

from ..layers.encoder import reverse_index
from ..xp import get_xp


def _run_both(parallel, fw, bw):
    """(fw(), bw()): one after the other, or through ``parallel`` (a function that runs a list
    of thunks, in threads say, and returns their results in order)."""
    if parallel is None:
        return fw(), bw()
    return tuple(parallel([fw, bw]))


def encoder_forward(x, lengths, p_fw, p_bw, cell, hidden_size, keep_fw=None, keep_bw=None,
                    kernels=None, host_lengths=None, parallel=None):
    """Run both directions and return the final hidden states.

    Inputs:
        x [T, B, D]        time-major rows 1..T (real rows, then padding)
        lengths [B]        int array (same array module as x), 1 <= L_b <= T
        p_fw, p_bw         parameter dicts of the two directions' cells
        cell               namespace from ``fast.cells.fast_cell`` (both directions use the
                           same cell kind)
        hidden_size        H, the units of each direction
        keep_fw, keep_bw   [T, B, H] recurrent-dropout multipliers per direction, or None
                           (keep_bw[t] is used at the backward direction's step t)
        kernels            step-function namespace (None = reference)
        host_lengths       the same lengths as a host (NumPy) array, or None. When given, the
                           rows are sorted by length (longest first) inside the encoder so that
                           at step t the real rows are a prefix, and the cells compute only
                           those (``active``); padding steps cost nothing. Same numbers as
                           the masked run to float rounding.
        parallel           None (the directions run one after the other), or a function that
                           runs a list of thunks and returns their results in order: the two
                           directions are independent, so it may run them in two threads.
                           Same numbers either way.
    Returns:
        h [B, 2H] = [h_fw_final | h_bw_final]; cache for ``encoder_backward``.
    """
    xp = get_xp(x)
    T, B, _ = x.shape
    order = None
    if host_lengths is not None:
        Lh = np.asarray(host_lengths).astype(np.int64).reshape(-1)
        order = np.argsort(-Lh, kind="stable")                      # longest first
        if np.array_equal(order, np.arange(B)):
            order = None                                            # already sorted
        else:
            perm = xp.asarray(order)
            # take(axis=1) gives C-contiguous arrays (x[:, perm] would not be): the compiled
            # step kernels vectorize only over contiguous rows
            x = xp.take(x, perm, axis=1)
            lengths = lengths[perm]
            Lh = Lh[order]
        # real rows at step t: those with L_b > t, a prefix once sorted
        active = np.searchsorted(-Lh, -np.arange(T), side="left").tolist()
    H = int(hidden_size)
    cols = xp.arange(B)
    rev = reverse_index(lengths, T)
    x_rev = x[rev, cols[None, :]]                                          # [T, B, D]
    state0 = xp.zeros((B, cell.state_size(H)), dtype=x.dtype)
    if host_lengths is None:
        opts = {"mask": (xp.arange(T)[:, None] < lengths[None, :]).astype(x.dtype)}  # [T, B]
    else:
        opts = {"active": active}
    def sorted_rows(keep):
        # the masks' rows follow the sorted sketches; gathered in each direction's own thread
        return keep if keep is None or order is None else xp.take(keep, perm, axis=1)

    (hs_f, _, cache_f), (hs_b, _, cache_b) = _run_both(
        parallel,
        lambda: cell.forward(x, state0, p_fw, keep=sorted_rows(keep_fw), kernels=kernels,
                             **opts),
        lambda: cell.forward(x_rev, state0, p_bw, keep=sorted_rows(keep_bw), kernels=kernels,
                             **opts))
    last = lengths - 1
    h = xp.concatenate([hs_f[last, cols], hs_b[last, cols]], axis=1)
    if order is not None:
        # forward was: rows sorted by ``order``; put them back
        h_sorted, h = h, xp.empty_like(h)
        h[xp.asarray(order)] = h_sorted
    cache = (x.shape, rev, last, H, cache_f, cache_b, cell, x.dtype, order)
    return h, cache


def encoder_backward(dh, cache, need_dx=True, parallel=None):
    """Gradients of ``encoder_forward`` (fresh arrays).

    Inputs:  dh [B, 2H] gradient w.r.t. h; cache from the forward; need_dx=False skips the
             gradient w.r.t. x (the model's encoder reads data: nobody needs it);
             parallel as in ``encoder_forward``.
    Returns: dx [T, B, D] (None with need_dx=False); grads_fw, grads_bw (dicts shaped like p_fw,
             p_bw).
    """
    (T, B, D), rev, last, H, cache_f, cache_b, cell, dtype, order = cache
    xp = get_xp(dh)
    cols = xp.arange(B)
    if order is not None:
        perm = xp.asarray(order)
        dh = dh[perm]                           # into the forward's sorted row order
    # forward was: h = [hs_f[L-1] | hs_b[L-1]] (one gathered step per sketch)
    dhs_f = xp.zeros((T, B, H), dtype=dtype)
    dhs_f[last, cols] = dh[:, :H]
    dhs_b = xp.zeros((T, B, H), dtype=dtype)
    dhs_b[last, cols] = dh[:, H:]
    (dx_f, _, grads_fw), (dx_rev, _, grads_bw) = _run_both(
        parallel,
        lambda: cell.backward(dhs_f, None, cache_f, need_dx=need_dx),
        lambda: cell.backward(dhs_b, None, cache_b, need_dx=need_dx))
    if not need_dx:
        return None, grads_fw, grads_bw
    # forward was: x_rev = x[rev, b] with rev a permutation of each column: scatter back
    dx = dx_f.copy()
    dx[rev, cols[None, :]] += dx_rev
    if order is not None:
        # forward was: x = x[:, order]
        dx_sorted, dx = dx, xp.empty_like(dx)
        dx[:, perm] = dx_sorted
    return dx, grads_fw, grads_bw
