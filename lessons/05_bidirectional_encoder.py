"""Lesson 05: the bidirectional encoder: reading a whole sketch from both ends.

What you will build: sketch-rnn's encoder, two LSTMs over the sketch's rows, one forward
(rows 1..L) and one backward (rows L..1), whose final hidden states are concatenated into
``h = [h_fw | h_bw]``, the summary of the sketch that the latent layer (lesson 06) turns into
mu and sigma. The subtle part is padding: in a batch, the backward direction must start at each
sketch's *own* last row, not at the end of the padded array. You build the reverse index by
hand, run both directions with the LSTM of lessons 03-04, write the backward pass (gather ->
scatter), and compare with ``minisketch.layers.encoder`` (the same two functions, about as
long as yours); then you prove that a sketch's encoding does not depend on what else is in its
batch.

What you need: lessons 01 (batches) and 04 (the LSTM over a padded sequence).

How to run:  python lessons/05_bidirectional_encoder.py                    (full, seconds)
             MINISKETCH_FAST=1 python lessons/05_bidirectional_encoder.py  (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
from course import FAST, rng, savefig

import numpy as np
import matplotlib.pyplot as plt
import minisketch as ms
from minisketch import gradcheck, shapes
from minisketch.layers import cells, encoder, lstm

rng = rng(0)

# %% [markdown]
# ## 1. A batch of real sketches
# Why read the sketch from both ends? The encoder's job is a summary of the *whole* drawing
# (paper, eq. 1: $h = [h_\rightarrow ; h_\leftarrow]$). A single forward LSTM's final state
# is dominated by the last strokes; the backward direction's final state is dominated by the
# first ones, so together they cover both ends.
#
# A few builtin:shapes sketches of different lengths. The encoder reads rows 1..L of the batch
# (the start token S0 is for the decoder), time-major: `x [T, B, 5]`.

# %%
rng_shapes = np.random.default_rng(3)
sketches = [shapes.make_sketch(kind, rng_shapes) for kind in ("circle", "zigzag", "star", "house")]
lengths = np.array([len(s) for s in sketches])
T = int(lengths.max())
batch = ms.make_batch(sketches, max_len=T, scale_factor=12.0, dtype=np.float64)
x = np.ascontiguousarray(batch.strokes[:, 1:].transpose(1, 0, 2))   # [T, B, 5]
B, D = x.shape[1], x.shape[2]
H = 8 if FAST else 32
print("lengths", lengths, "x", x.shape)

# %% [markdown]
# ## 2. The reverse index
# The backward direction reads, at its step $t$, row $L_b - 1 - t$ of sketch $b$ while
# $t < L_b$; the steps after that are padding (masked, the state passes through). Flipping the
# whole padded array instead would make the short sketches start with a run of padding rows.
#
# $$
# \text{rev}_{t,b} = \begin{cases} L_b - 1 - t & t < L_b \\ t & \text{otherwise} \end{cases}
# $$

# %%
def reverse_index_by_hand(lengths, T):
    rev = np.zeros((T, len(lengths)), dtype=np.int64)
    for b, L in enumerate(lengths):
        for t in range(T):
            rev[t, b] = L - 1 - t if t < L else t
    return rev


rev = reverse_index_by_hand(lengths, T)
assert np.array_equal(rev, encoder.reverse_index(lengths, T)), "reverse index differs"
for b in range(B):
    assert sorted(rev[:, b]) == list(range(T)), "each column must be a permutation of 0..T-1"

fig, axes = plt.subplots(1, 2, figsize=(8, 3))
naive = np.broadcast_to(np.arange(T)[::-1, None], (T, B))
for ax, idx, title in ((axes[0], rev, "reverse index (per-sketch)"),
                       (axes[1], naive, "naive flip of the padded array")):
    reads_pad = idx >= lengths[None, :]                        # the row read is padding
    real_step = np.arange(T)[:, None] < lengths[None, :]       # the step is a real step
    img = np.where(real_step & reads_pad, 2, np.where(real_step, 1, 0))
    ax.imshow(img.T, aspect="auto", cmap="Greys", vmin=0, vmax=2.5, interpolation="nearest")
    ax.set_xlabel("backward-direction step t")
    ax.set_ylabel("sketch b")
    ax.set_title(title + "\n(dark: a real step that reads padding)", fontsize=8)
fig.suptitle("Does the backward direction ever read a padding row at a real step?", fontsize=9)
savefig(fig, "05_reverse_index.png")
assert not np.any((np.arange(T)[:, None] < lengths) & (rev >= lengths)), \
    "with the per-sketch index no real step reads a padding row"

# %% [markdown]
# ## 3. Forward pass by hand
#
# $$
# \begin{aligned}
# m_{t,b} &= [t < L_b] \\
# h_\rightarrow &= \text{LSTM}_\rightarrow(x, m)_{L_b - 1, b} \\
# h_\leftarrow &= \text{LSTM}_\leftarrow(x_{\text{rev}}, m)_{L_b - 1, b} \\
# h &= [h_\rightarrow ; h_\leftarrow] \in \mathbb{R}^{B \times 2H}
# \end{aligned}
# $$
#
# Both directions start from a zero state and have their own weights.

# %%
p_fw = lstm.lstm_init(rng, D, H, dtype=np.float64)
p_bw = lstm.lstm_init(rng, D, H, dtype=np.float64)
cols = np.arange(B)


def encoder_by_hand(x, lengths, p_fw, p_bw):
    T, B, _ = x.shape
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(x.dtype)
    rev = reverse_index_by_hand(lengths, T)
    x_rev = x[rev, np.arange(B)[None, :]]
    zero = np.zeros((B, 2 * p_fw["W_hh"].shape[0]))
    hs_f, _, cache_f = lstm.lstm_forward(x, zero, p_fw, mask=mask)
    hs_b, _, cache_b = lstm.lstm_forward(x_rev, zero, p_bw, mask=mask)
    last = lengths - 1
    h = np.concatenate([hs_f[last, np.arange(B)], hs_b[last, np.arange(B)]], axis=1)
    return h, (rev, last, cache_f, cache_b)


h, hand_cache = encoder_by_hand(x, lengths, p_fw, p_bw)
cell = cells.get_cell("lstm")
h_lib, enc_cache = encoder.encoder_forward(x, lengths, p_fw, p_bw, cell, H)
err = float(np.abs(h - h_lib).max())
print(f"encoding h {h.shape}: max |hand - encoder_forward| = {err:.1e}")
assert err < 1e-14, f"hand encoder differs from encoder_forward by {err:.1e} (> 1e-14)"

# %% [markdown]
# ## 4. Backward pass: gather forward, scatter backward
# The forward *gathered* one step per sketch (`hs[L_b - 1, b]`), so the backward *scatters*
# `dh` into a zero `[T, B, H]` array at those steps. The reversed input was a gather with a
# permutation, so its gradient goes back with the same index: `dx[rev[t, b], b] += dx_rev[t, b]`.
#
# > **Your turn.** `lessons/exercises/05_bidirectional_encoder.py` asks for the reverse index,
# > the encoder's forward and its backward; `python lessons/grade.py 05` grades them.

# %%
def encoder_backward_by_hand(dh, x, hand_cache):
    rev, last, cache_f, cache_b = hand_cache
    T, B, _ = x.shape
    H = dh.shape[1] // 2
    dhs_f = np.zeros((T, B, H))
    dhs_b = np.zeros((T, B, H))
    dhs_f[last, np.arange(B)] = dh[:, :H]         # forward was: h_fw = hs_f[L - 1]
    dhs_b[last, np.arange(B)] = dh[:, H:]
    dx_f, _, g_fw = lstm.lstm_backward(dhs_f, None, cache_f)
    dx_rev, _, g_bw = lstm.lstm_backward(dhs_b, None, cache_b)
    dx = dx_f.copy()
    for b in range(B):                              # forward was: x_rev[t, b] = x[rev[t, b], b]
        for t in range(T):
            dx[rev[t, b], b] += dx_rev[t, b]
    return dx, g_fw, g_bw


G = rng.standard_normal(h.shape)                    # L = sum(h * G)
dx, g_fw, g_bw = encoder_backward_by_hand(G, x, hand_cache)
dx_lib, g_fw_lib, g_bw_lib = encoder.encoder_backward(G, enc_cache)
worst = max([float(np.abs(dx - dx_lib).max())] +
            [float(np.abs(g_fw[k] - g_fw_lib[k]).max()) for k in g_fw] +
            [float(np.abs(g_bw[k] - g_bw_lib[k]).max()) for k in g_bw])
print(f"backward: max |hand - encoder_backward| over dx and all weights = {worst:.1e}")
assert worst < 1e-12, f"hand encoder backward differs from the library by {worst:.1e} (> 1e-12)"
assert np.all(dx[lengths[2]:, 2] == 0), "padding rows of a short sketch must get zero gradient"


def L():
    return float(np.sum(encoder_by_hand(x, lengths, p_fw, p_bw)[0] * G))


errs = gradcheck.check_gradients(
    L, {"x": x, "fw/W_hh": p_fw["W_hh"], "bw/W_xh": p_bw["W_xh"], "bw/b": p_bw["b"]},
    {"x": dx, "fw/W_hh": g_fw["W_hh"], "bw/W_xh": g_bw["W_xh"], "bw/b": g_bw["b"]},
    tol=1e-6, max_entries=40 if FAST else None)
print("gradient check (tol 1e-6):", {k: f"{v:.1e}" for k, v in errs.items()})

# %% [markdown]
# ## 5. An encoding must not depend on its batch-mates
# Encode each sketch alone (B = 1, no padding at all) and compare with its row of the batched
# encoding. With the naive flip this fails for every sketch shorter than the longest.

# %%
for b, s in enumerate(sketches):
    alone = ms.make_batch([s], max_len=len(s), scale_factor=12.0, dtype=np.float64)
    xa = np.ascontiguousarray(alone.strokes[:, 1:].transpose(1, 0, 2))
    ha, _ = encoder.encoder_forward(xa, alone.lengths, p_fw, p_bw, cell, H)
    e = float(np.abs(ha[0] - h_lib[b]).max())
    assert e < 1e-13, f"sketch {b}: alone vs in a batch differ by {e:.1e} (> 1e-13)"


def naive_encoder(x, lengths):
    x_flip = x[::-1]
    zero = np.zeros((x.shape[1], 2 * H))
    hs_f, _, _ = lstm.lstm_forward(x, zero, p_fw, mask=(np.arange(T)[:, None] < lengths))
    hs_b, _, _ = lstm.lstm_forward(np.ascontiguousarray(x_flip), zero, p_bw)
    return np.concatenate([hs_f[lengths - 1, cols], hs_b[-1]], axis=1)


naive_err = np.abs(naive_encoder(x, lengths) - h_lib).max(axis=1)
print("naive flip, error per sketch:", np.array2string(naive_err, precision=2))
assert naive_err[np.argmax(lengths)] < 1e-13 and naive_err[lengths < T].min() > 1e-6, \
    "the naive flip should be right only for the longest sketch"
print("lesson 05 checks passed")

# %% [markdown]
# ## Exercises
# Graded: `lessons/exercises/05_bidirectional_encoder.py` (`python lessons/grade.py 05`).
#
# 1. The library gathers `x[rev, cols]` with one fancy-indexing call and scatters with
#    `dx[rev, cols] += dx_rev`. Why is `+=` with fancy indexing safe here, when it is not in
#    general (hint: `np.add.at`, and what a permutation guarantees)?
# 2. Replace the LSTM in both directions with the layer-norm cell
#    (`cells.get_cell("layer_norm")`) and rerun the checks. Which lines of this lesson change?
# 3. Instead of the final states, average `hs_f` over the real steps. Write the backward pass
#    of that pooling and gradient-check it.
# 4. The paper's encoder has 256 units each way. How many parameters does it have for 5 inputs?
#    Check your answer against `lstm.lstm_init`.
