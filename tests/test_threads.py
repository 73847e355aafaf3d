"""Split steps: a batch cut into row blocks run in threads gives the unsplit step's numbers.

``SketchRNN(threads=n)`` runs each row block's forward and backward in its own thread and sums
the losses and gradients (fast/threads.py, fast/sketch_rnn.py). Checked here against
``threads=1``: float64 to 1e-12 relative (only the order of the sums differs), float32 to 1e-5;
and the split step's
gradients against float64 central differences (tolerance 1e-6, the whole-model metric of
tests/test_model.py). Also: the fast encoder's length-sorted path (``host_lengths``) against the
reference's masked one, the reused dropout-mask buffers against a fresh draw, and the CPU helpers.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from test_model import COMBOS, check_model_gradients, perturb, random_sketches, tiny_hp

from minisketch.cpu import blas_threads, get_blas_threads, keep_freed_memory
from minisketch.errors import ModelError
from minisketch.fast import encoder as fast_encoder
from minisketch.fast.cells import fast_cell
from minisketch.layers.cells import get_cell
from minisketch.layers.encoder import encoder_backward, encoder_forward
from minisketch.model import MIN_ROWS_PER_THREAD, SketchRNN, default_threads
from minisketch.strokes import make_batch

BACKENDS = ("numpy", "numba")


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def run_step(hp, backend, dtype, threads, batch, step=5, seed=3):
    model = SketchRNN(hp, backend=backend, dtype=dtype, seed=seed, scale_factor=4.0,
                      threads=threads)
    perturb(model, np.random.default_rng(seed))
    losses, _ = model.loss_and_grad(batch, step)
    ev = model.evaluate(batch, step)
    return ({k: float(v) for k, v in losses.items()}, model.flat_grad.copy(),
            {k: float(v) for k, v in ev.items()})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("enc,dec,conditional", COMBOS)
def test_split_step_equals_unsplit(enc, dec, conditional, backend):
    """7 sketches of mixed lengths, every dropout on, input dropout off (so z goes in once per
    sequence) and on: 3 row blocks vs 1."""
    rng = np.random.default_rng(COMBOS.index((enc, dec, conditional)))
    batch = make_batch(random_sketches(rng, [6, 1, 4, 6, 2, 5, 3]), max_len=6, scale_factor=4.0)
    for input_dropout in (False, True):
        hp = tiny_hp(enc, dec, conditional, use_input_dropout=input_dropout,
                     input_dropout_prob=0.8, use_output_dropout=True, output_dropout_prob=0.8)
        for dtype, tol in (("float64", 1e-12), ("float32", 1e-5)):
            l1, g1, e1 = run_step(hp, backend, dtype, 1, batch)
            l3, g3, e3 = run_step(hp, backend, dtype, 3, batch)
            for k in l1:
                assert abs(l1[k] - l3[k]) <= tol * max(abs(l1[k]), 1.0), (dtype, k)
                assert abs(e1[k] - e3[k]) <= tol * max(abs(e1[k]), 1.0), (dtype, k)
            assert rel(g3, g1) <= tol, dtype
            assert np.all(np.isfinite(g3))


@pytest.mark.parametrize("dec", ("lstm", "layer_norm", "hyper"))
def test_split_step_gradients(dec):
    """Central differences of the loss of a step split into 2 blocks (input dropout off, so
    the decoder takes z once per sequence; recurrent and output dropout on)."""
    hp = tiny_hp("lstm", dec, True, use_output_dropout=True, output_dropout_prob=0.8)
    rng = np.random.default_rng(7)
    model = SketchRNN(hp, dtype="float64", seed=3, scale_factor=4.0, threads=2)
    perturb(model, rng)
    batch = make_batch(random_sketches(rng, [6, 2, 4, 5]), max_len=6, scale_factor=4.0)
    assert len(model._row_parts(4)) == 2
    errs = check_model_gradients(model, batch, step=11, max_entries=3)
    assert set(errs) == set(model.param_names)


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_split_equals_unsplit_hypothesis(data):
    """Drawn: cells, conditional or not, batch 1..9, N_max 1..6, lengths, blocks 2..4."""
    combo = data.draw(st.sampled_from(COMBOS), label="combo")
    B = data.draw(st.integers(1, 9), label="B")
    N = data.draw(st.integers(1, 6), label="N_max")
    lengths = data.draw(st.lists(st.integers(1, N), min_size=B, max_size=B), label="lengths")
    threads = data.draw(st.integers(2, 4), label="threads")
    hp = tiny_hp(*combo, max_seq_len=N,
                 use_input_dropout=data.draw(st.booleans(), label="input_dropout"))
    seed = data.draw(st.integers(0, 2 ** 31 - 1), label="seed")
    batch = make_batch(random_sketches(np.random.default_rng(seed), lengths), max_len=N,
                       scale_factor=4.0)
    l1, g1, _ = run_step(hp, "numpy", "float64", 1, batch, step=seed % 97, seed=seed % 1000)
    ln, gn, _ = run_step(hp, "numpy", "float64", threads, batch, step=seed % 97,
                         seed=seed % 1000)
    assert abs(l1["loss"] - ln["loss"]) <= 1e-12 * max(abs(l1["loss"]), 1.0)
    assert rel(gn, g1) <= 1e-12


def test_row_blocks_and_thread_settings(monkeypatch):
    hp = tiny_hp()
    monkeypatch.delenv("MINISKETCH_THREADS", raising=False)
    auto = SketchRNN(hp)
    assert auto.threads == default_threads("numpy") >= 1
    # automatic: no block below MIN_ROWS_PER_THREAD rows
    for B in (1, MIN_ROWS_PER_THREAD, 100, 1000):
        parts = auto._row_parts(B)
        assert parts[0][0] == 0 and parts[-1][1] == B
        assert all(r1 - r0 >= min(B, MIN_ROWS_PER_THREAD) for r0, r1 in parts)
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    # explicit: exactly that many blocks (at most B), near-equal
    assert SketchRNN(hp, threads=3)._row_parts(10) == [(0, 3), (3, 6), (6, 10)]
    assert SketchRNN(hp, threads=4)._row_parts(2) == [(0, 1), (1, 2)]
    monkeypatch.setenv("MINISKETCH_THREADS", "3")
    assert SketchRNN(hp).threads == 3
    assert default_threads("cupy") == 1
    monkeypatch.setenv("MINISKETCH_THREADS", "zero")
    with pytest.raises(ModelError, match="MINISKETCH_THREADS"):
        SketchRNN(hp)
    monkeypatch.delenv("MINISKETCH_THREADS")
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises((ModelError, TypeError, ValueError)):
            SketchRNN(hp, threads=bad)


@pytest.mark.parametrize("cell_name", ("lstm", "layer_norm", "hyper"))
def test_encoder_sorted_rows_equal_masked(cell_name):
    """The fast encoder with host_lengths (rows sorted by length, cells run only on the real rows
    of each step) and without: the reference's masked encoding and gradients (float64, 1e-12)."""
    opts = {"hyper_num_units": 3, "hyper_embedding_size": 2} if cell_name == "hyper" else {}
    cell = get_cell(cell_name, **opts)
    rng = np.random.default_rng(1)
    T, B, D, H = 7, 6, 5, 4
    pf, pb = cell.init(rng, D, H, np.float64), cell.init(rng, D, H, np.float64)
    for lengths in ([6, 3, 7, 1, 1, 2], [7, 7, 5, 4, 2, 1], [1, 1, 1, 1, 1, 1]):
        L = np.array(lengths)
        x = rng.normal(size=(T, B, D))
        kf, kb = 2 * rng.random((T, B, H)), 2 * rng.random((T, B, H))
        dh = rng.normal(size=(B, 2 * H))
        h1, c1 = encoder_forward(x, L, pf, pb, cell, H, kf, kb)
        dx1, gf1, gb1 = encoder_backward(dh, c1)
        for host in (L, None):
            h2, c2 = fast_encoder.encoder_forward(x, L, pf, pb, fast_cell(cell), H, kf, kb,
                                                  host_lengths=host)
            assert rel(h2, h1) <= 1e-12
            dx2, gf2, gb2 = fast_encoder.encoder_backward(dh, c2)
            assert rel(dx2, dx1) <= 1e-12
            for k in gf1:
                assert rel(gf2[k], gf1[k]) <= 1e-12 and rel(gb2[k], gb1[k]) <= 1e-12, k


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_reused_mask_buffers_hold_a_fresh_draw(dtype):
    """The host masks drawn into reused buffers are exactly ``(uniform < keep) / keep`` of the
    (seed, step) stream, step after step."""
    hp = tiny_hp(use_input_dropout=True, input_dropout_prob=0.8, use_output_dropout=True,
                 output_dropout_prob=0.6, recurrent_dropout_prob=0.7)
    model = SketchRNN(hp, dtype=dtype, seed=4)
    B, N = 5, 6
    dt = np.dtype(dtype)
    previous = None
    for step in (0, 1, 2):
        noise = model._draw_noise(model._noise_rng(step), B, N, True)
        r = np.random.default_rng([4, step])
        r.standard_normal((B, hp.z_size))
        for name, width, keep in (("keep_enc_fw", 3, 0.7), ("keep_enc_bw", 3, 0.7),
                                  ("keep_dec", 4, 0.7), ("in_mask", 7, 0.8),
                                  ("out_mask", 4, 0.6)):
            want = (r.random((N, B, width), dtype=np.float32) < keep).astype(dt) * dt.type(
                1 / keep)
            got = getattr(noise, name)
            assert got.dtype == dt and np.array_equal(got, want), (step, name)
        if previous is not None:
            assert not np.array_equal(previous, noise.keep_dec)
        previous = noise.keep_dec.copy()


def test_blas_threads_and_malloc_helpers(monkeypatch):
    monkeypatch.delenv("MINISKETCH_THREADS", raising=False)
    assert isinstance(keep_freed_memory(), bool)
    n = get_blas_threads()
    if n is None:
        pytest.skip("NumPy's BLAS here is not OpenBLAS: its thread count is not controlled")
    with blas_threads(1):
        assert get_blas_threads() == 1
        cores = default_threads("numpy")        # BLAS on one thread: one block per core
        assert cores >= 1
    assert get_blas_threads() == n
    with blas_threads(2):
        assert default_threads("numba") == 1    # BLAS threads of its own: no split
    with pytest.raises(RuntimeError):
        with blas_threads(1):
            raise RuntimeError("restored even on errors")
    assert get_blas_threads() == n
