"""How the fast path hands a step's work around, checked for same numbers and fast layouts.

* The fast ``encoder_forward`` / ``encoder_backward`` with ``parallel`` (the two directions
  through a runner, in two threads in the model) give exactly the sequential numbers (float64,
  bit for bit: the same operations on the same arrays).
* ``need_dx=False`` on every fast cell's backward, and on the encoder's, skips the input gradient
  and leaves every other gradient bit-identical (float64).
* The length-sorted encoder hands the cells C-contiguous per-step arrays: the compiled step
  kernels vectorize only over contiguous rows, and a strided keep mask (what ``keep[:, perm]``
  gives) once made the encoder's kernels three times slower without changing a number.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from minisketch.fast.cells import fast_cell
from minisketch.fast.encoder import encoder_backward, encoder_forward
from minisketch.layers.cells import get_cell

CELLS = ("lstm", "layer_norm", "hyper")


def cell_for(name):
    opts = {"hyper_num_units": 3, "hyper_embedding_size": 2} if name == "hyper" else {}
    return fast_cell(get_cell(name, **opts))


def setup(name, seed=0, T=7, B=6, D=5, H=4):
    cell = cell_for(name)
    rng = np.random.default_rng(seed)
    pf = {k: v + 0.3 * rng.standard_normal(v.shape)
          for k, v in cell.init(rng, D, H, np.float64).items()}
    pb = {k: v + 0.3 * rng.standard_normal(v.shape)
          for k, v in cell.init(rng, D, H, np.float64).items()}
    L = np.array([6, 3, 7, 1, 2, 7])[:B]
    x = rng.normal(size=(T, B, D))
    kf, kb = 2 * rng.random((T, B, H)), 2 * rng.random((T, B, H))
    dh = rng.normal(size=(B, 2 * H))
    return cell, pf, pb, L, x, kf, kb, dh, H


@pytest.mark.parametrize("name", CELLS)
def test_encoder_directions_in_threads_equal_sequential(name):
    cell, pf, pb, L, x, kf, kb, dh, H = setup(name)
    with ThreadPoolExecutor(2) as pool:
        def par(thunks):
            return [f.result() for f in [pool.submit(t) for t in thunks]]
        for host in (None, L):
            h1, c1 = encoder_forward(x, L, pf, pb, cell, H, kf, kb, host_lengths=host)
            h2, c2 = encoder_forward(x, L, pf, pb, cell, H, kf, kb, host_lengths=host,
                                     parallel=par)
            assert np.array_equal(h1, h2)
            dx1, gf1, gb1 = encoder_backward(dh, c1)
            dx2, gf2, gb2 = encoder_backward(dh, c2, parallel=par)
            assert np.array_equal(dx1, dx2)
            for k in gf1:
                assert np.array_equal(gf1[k], gf2[k]) and np.array_equal(gb1[k], gb2[k]), k


@pytest.mark.parametrize("name", CELLS)
def test_encoder_need_dx_false_skips_only_dx(name):
    cell, pf, pb, L, x, kf, kb, dh, H = setup(name, seed=1)
    for host in (None, L):
        _, c = encoder_forward(x, L, pf, pb, cell, H, kf, kb, host_lengths=host)
        dx1, gf1, gb1 = encoder_backward(dh, c)
        dx2, gf2, gb2 = encoder_backward(dh, c, need_dx=False)
        assert dx1 is not None and dx2 is None
        for k in gf1:
            assert np.array_equal(gf1[k], gf2[k]) and np.array_equal(gb1[k], gb2[k]), k


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("with_const", (False, True))
def test_cell_need_dx_false_skips_only_dx(name, with_const):
    cell = cell_for(name)
    rng = np.random.default_rng(2)
    T, B, Dx, Dc, H = 5, 3, 2, 3, 4
    p = {k: v + 0.3 * rng.standard_normal(v.shape)
         for k, v in cell.init(rng, Dx + Dc, H, np.float64).items()}
    x_const = rng.normal(size=(B, Dc)) if with_const else None
    x = rng.normal(size=(T, B, Dx if with_const else Dx + Dc))
    state0 = rng.normal(size=(B, cell.state_size(H)))
    keep = 2 * rng.random((T, B, H))
    _, _, cache = cell.forward(x, state0, p, keep=keep, x_const=x_const)
    dhs = rng.normal(size=(T, B, H))
    dT = rng.normal(size=(B, cell.state_size(H)))
    dx1, ds1, g1 = cell.backward(dhs, dT, cache)
    dx2, ds2, g2 = cell.backward(dhs, dT, cache, need_dx=False)
    if with_const:
        assert dx1[0] is not None and dx2[0] is None
        assert np.array_equal(dx1[1], dx2[1])
    else:
        assert dx1 is not None and dx2 is None
    assert np.array_equal(ds1, ds2)
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), k


@pytest.mark.parametrize("name", CELLS)
def test_sorted_encoder_hands_cells_contiguous_arrays(name):
    """Unsorted lengths force the row permutation; every array the cells receive is
    C-contiguous."""
    cell, pf, pb, L, x, kf, kb, dh, H = setup(name, seed=3)
    assert not np.array_equal(np.argsort(-L, kind="stable"), np.arange(len(L)))
    seen = []

    def forward(x_, state0, p, keep=None, **kw):
        seen.append(("x", x_.flags.c_contiguous))
        seen.append(("keep", keep.flags.c_contiguous))
        return cell.forward(x_, state0, p, keep=keep, **kw)

    spy = SimpleNamespace(**{**vars(cell), "forward": forward})
    encoder_forward(x, L, pf, pb, spy, H, kf, kb, host_lengths=L)
    assert len(seen) == 4 and all(ok for _, ok in seen), seen
