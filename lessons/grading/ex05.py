"""Lesson 05's checks: the reverse index and the encoder against minisketch.layers.encoder
(exact, 1e-12), the backward against central differences of the library's encoder (1e-6)."""
import numpy as np

from minisketch.layers import cells, encoder, lstm

from grading import Check, Wrong, compare, compare_all, gradient_check, unpack

CASES = (((9, 4, 1, 6), 5, 4), ((3,), 5, 3), ((5, 5), 2, 2))     # lengths, D, H


def _case(seed, lengths, D, H):
    rng = np.random.default_rng(seed)
    T, B = max(lengths), len(lengths)
    x = rng.standard_normal((T, B, D))
    x[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0.0     # padding rows
    p_fw = lstm.lstm_init(rng, D, H, dtype=np.float64)
    p_bw = lstm.lstm_init(rng, D, H, dtype=np.float64)
    p_bw["b"] = 0.1 * rng.standard_normal(4 * H)
    return x, np.array(lengths), p_fw, p_bw


def check_reverse_index(fn):
    for lengths in ((9, 4, 1, 6), (3,), (5, 5), (1, 1, 2)):
        T = max(lengths) + 1                           # one step of padding for everyone
        got = np.asarray(fn(np.array(lengths), T))
        want = encoder.reverse_index(np.array(lengths), T)
        if got.shape != want.shape or not np.array_equal(got, want):
            bad = "shape " + str(got.shape) if got.shape != want.shape else \
                f"column {int(np.argmax((got != want).any(axis=0)))}: {got.T.tolist()}"
            raise Wrong(f"rev for lengths {list(lengths)}, T={T} is wrong ({bad}); expected "
                        f"{want.T.tolist()} (one row per sketch)")
        if not np.issubdtype(got.dtype, np.integer):
            raise Wrong(f"rev must be an integer array (it indexes rows), got {got.dtype}")


def check_forward(fn):
    for seed, (lengths, D, H) in enumerate(CASES):
        x, lengths, p_fw, p_bw = _case(seed, lengths, D, H)
        want, _ = encoder.encoder_forward(x, lengths, p_fw, p_bw, cells.get_cell("lstm"), H)
        got = unpack(fn(x, lengths, p_fw, p_bw), 2, "h, cache")
        compare(f"h (lengths {lengths.tolist()})", got[0], want, 1e-12)


def _library_cache(x, lengths, p_fw, p_bw):
    T, B, _ = x.shape
    H = p_fw["W_hh"].shape[0]
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)
    rev = encoder.reverse_index(lengths, T)
    zero = np.zeros((B, 2 * H))
    _, _, cache_fw = lstm.lstm_forward(x, zero, p_fw, mask=mask)
    _, _, cache_bw = lstm.lstm_forward(x[rev, np.arange(B)[None, :]], zero, p_bw, mask=mask)
    return dict(rev=rev, last=lengths - 1, cache_fw=cache_fw, cache_bw=cache_bw)


def check_backward(fn):
    cell = cells.get_cell("lstm")
    for seed, (lengths, D, H) in enumerate(CASES):
        x, lengths, p_fw, p_bw = _case(10 + seed, lengths, D, H)
        dh = np.random.default_rng(40 + seed).standard_normal((len(lengths), 2 * H))
        got = unpack(fn(dh.copy(), _library_cache(x, lengths, p_fw, p_bw)), 3,
                     "dx, grads_fw, grads_bw")
        _, enc_cache = encoder.encoder_forward(x, lengths, p_fw, p_bw, cell, H)
        dx, g_fw, g_bw = encoder.encoder_backward(dh, enc_cache)
        tag = f" (lengths {lengths.tolist()})"
        compare("dx" + tag, got[0], dx, 1e-12)
        compare_all(got[1], g_fw, 1e-12, "forward direction's d{}" + tag)
        compare_all(got[2], g_bw, 1e-12, "backward direction's d{}" + tag)

        def loss():
            return float(np.sum(encoder.encoder_forward(x, lengths, p_fw, p_bw, cell, H)[0] * dh))
        gradient_check(loss, {"x": x, "bw/W_xh": p_bw["W_xh"], "bw/b": p_bw["b"]},
                       {"x": np.asarray(got[0]), "bw/W_xh": got[2]["W_xh"], "bw/b": got[2]["b"]},
                       max_entries=30)


CHECKS = [
    Check("reverse_index", check_reverse_index, [
        "Sketch b has L_b real rows: at step t < L_b the backward direction reads row "
        "L_b - 1 - t; at the padding steps t >= L_b any row will do, as long as each column "
        "stays a permutation: use t itself.",
        "np.where(t < L, L - 1 - t, t) with t = np.arange(T)[:, None] and "
        "L = lengths[None, :] builds all of it at once.",
    ]),
    Check("encoder_forward", check_forward, [
        "mask[t, b] = t < L_b. The forward direction is lstm.lstm_forward(x, zeros, p_fw, "
        "mask=mask); the backward one runs on x gathered by the reverse index.",
        "Gather: x_rev = x[rev, np.arange(B)[None, :]] ([T, B, D]); both directions use the "
        "same mask, because both read L_b real rows first.",
        "h_fw = hs_f[lengths - 1, np.arange(B)], likewise h_bw; h = np.concatenate([h_fw, h_bw], "
        "axis=1); return h and dict(rev=..., last=lengths - 1, cache_fw=..., cache_bw=...).",
    ]),
    Check("encoder_backward", check_backward, [
        "Undo a gather with a scatter: the forward picked hs[last[b], b], so dhs is zero "
        "except dhs[last[b], b] = dh[b] (first H columns for the forward direction).",
        "Run lstm.lstm_backward(dhs_f, None, cache['cache_fw']) and likewise for the backward "
        "direction; the latter's dx is with respect to x_rev.",
        "x_rev[t, b] = x[rev[t, b], b] is a permutation of each column, so "
        "dx[rev, cols] += dx_rev adds every entry exactly once (cols = np.arange(B)[None, :]).",
    ]),
]
