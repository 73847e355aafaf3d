"""Bidirectional encoder: reads only each sketch's own rows, both ways, and its gradient is exact.

Gradient checks: float64 central differences of sum(G * h) for a fixed random G, against
``encoder_backward``, for every parameter tensor of both directions and the input x; metric of
``minisketch.gradcheck`` (max |a - n| / max(|a| + |n|, floor)), tolerance 1e-6. The stencil and
the draws are those of tests/test_cells.py for recurrent cells, for the reasons given there:
fourth-order differences at eps 3e-6 with the rounding floor from sum|G * h| (hypothesis found
a HyperLSTM encoder case where the second-order stencil at eps 1e-6 was 1.65e-6 off from the
analytic gradient, its truncation error, not the gradient's), and no layer norm over 2 units for
the layer-norm cells (H = 2 is drawn for the plain LSTM only).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minisketch.gradcheck import check_gradients
from minisketch.layers.cells import get_cell
from minisketch.layers.encoder import encoder_backward, encoder_forward, reverse_index

CELLS = ["lstm", "layer_norm", "hyper"]
GRAD_TOL = 1e-6


def cell_for(name):
    opts = {"hyper_num_units": 3, "hyper_embedding_size": 2} if name == "hyper" else {}
    return get_cell(name, **opts)


def random_params(cell, rng, D, H, spread=0.5):
    """Reference init, then every entry moved by noise so no gradient is trivially 0 or 1."""
    p = cell.init(rng, D, H, np.float64)
    return {k: v + spread * rng.standard_normal(v.shape) for k, v in p.items()}


def random_batch(rng, B, T, lengths):
    """x [T, B, 5]: real stroke-5 rows for t < L_b, padding rows (0, 0, 0, 0, 1) after."""
    x = np.zeros((T, B, 5))
    for b, L in enumerate(lengths):
        x[:L, b, :2] = rng.normal(size=(L, 2))
        pen = rng.integers(0, 2, size=L)
        x[np.arange(L), b, 2 + pen] = 1.0
        x[L:, b, 4] = 1.0
    return x


def keep_mask(rng, T, B, H, keep=0.7):
    return (rng.random((T, B, H)) < keep) / keep


@pytest.mark.parametrize("cell_name", CELLS)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_encoder_gradients(cell_name, data):
    """Batch 1 and length 1 included, lengths differ so the tails are all padding."""
    B = data.draw(st.integers(1, 3), label="B")
    T = data.draw(st.integers(1, 5), label="T")
    lengths = np.array(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B),
                                 label="lengths"))
    H = data.draw(st.integers(2, 4) if cell_name == "lstm" else st.sampled_from([3, 4]),
                  label="H")
    dropout = data.draw(st.booleans(), label="dropout")
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 31 - 1), label="seed"))
    cell = cell_for(cell_name)
    x = random_batch(rng, B, T, lengths)
    p_fw = random_params(cell, rng, 5, H)
    p_bw = random_params(cell, rng, 5, H)
    kf = keep_mask(rng, T, B, H) if dropout else None
    kb = keep_mask(rng, T, B, H) if dropout else None
    G = rng.standard_normal((B, 2 * H))

    def f():
        h, _ = encoder_forward(x, lengths, p_fw, p_bw, cell, H, kf, kb)
        return float((G * h).sum())

    h, cache = encoder_forward(x, lengths, p_fw, p_bw, cell, H, kf, kb)
    dx, g_fw, g_bw = encoder_backward(G, cache)
    params = {"x": x, **{f"fw/{k}": v for k, v in p_fw.items()},
              **{f"bw/{k}": v for k, v in p_bw.items()}}
    grads = {"x": dx, **{f"fw/{k}": v for k, v in g_fw.items()},
             **{f"bw/{k}": v for k, v in g_bw.items()}}
    check_gradients(f, params, grads, eps=3e-6, tol=GRAD_TOL, max_entries=6, order=4,
                    f_scale=float(np.sum(np.abs(G * h))))
    # padding rows never enter a real step: their gradient is exactly zero
    for b, L in enumerate(lengths):
        assert np.all(dx[L:, b] == 0.0)


@pytest.mark.parametrize("cell_name", CELLS)
def test_each_sketch_is_encoded_alone_from_its_own_rows(cell_name):
    """h of a sketch in a padded batch equals h of the sketch alone without padding, and the
    backward half equals the cell run forward over the reversed rows (from the last real row)."""
    rng = np.random.default_rng(5)
    cell = cell_for(cell_name)
    H, T = 3, 6
    lengths = np.array([6, 2, 4, 1])
    x = random_batch(rng, len(lengths), T, lengths)
    x[:, :, :2][x[:, :, 4] == 1] = 7.0           # junk in the padding must not matter
    p_fw = random_params(cell, rng, 5, H)
    p_bw = random_params(cell, rng, 5, H)
    h, _ = encoder_forward(x, lengths, p_fw, p_bw, cell, H)
    for b, L in enumerate(lengths):
        xb = x[:L, b:b + 1]
        alone, _ = encoder_forward(xb, np.array([L]), p_fw, p_bw, cell, H)
        np.testing.assert_allclose(h[b], alone[0], rtol=1e-12, atol=1e-14)
        s0 = np.zeros((1, cell.state_size(H)))
        hs_b, _, _ = cell.forward(xb[::-1].copy(), s0, p_bw)
        np.testing.assert_allclose(h[b, H:], hs_b[-1, 0], rtol=1e-12, atol=1e-14)
        hs_f, _, _ = cell.forward(xb.copy(), s0, p_fw)
        np.testing.assert_allclose(h[b, :H], hs_f[-1, 0], rtol=1e-12, atol=1e-14)


def test_reverse_index_is_a_per_sketch_reversal():
    idx = reverse_index(np.array([3, 1, 4]), 4)
    assert idx.tolist() == [[2, 0, 3], [1, 1, 2], [0, 2, 1], [3, 3, 0]]
    for b in range(3):
        assert sorted(idx[:, b]) == [0, 1, 2, 3]
