"""Lesson 13 (optional): layer normalization and the HyperLSTM, sketch-rnn's two other cells.

What you will build: first layer norm itself, forward and the backward pass everyone gets wrong
the first time (the mean and the variance both depend on every input); then the layer-norm LSTM
(Ba, Kiros & Hinton 2016), each gate block normalized over its units and the cell state
normalized before the output tanh; then the HyperLSTM (Ha, Dai & Le 2016), where a small
layer-norm LSTM, the "hyper cell", watches the main cell and rescales its eight weight blocks at
every step. Each is written in NumPy from the formulas and compared with
``minisketch.layers.layer_norm_lstm`` and ``minisketch.layers.hyper_lstm``; the library's
backward passes are gradient-checked against *your* forward code. A figure shows what layer
norm buys: gates that do not saturate however large the inputs get.

This lesson is optional: the model of lessons 08-12 uses plain LSTMs, and nothing later needs
it. The paper's best decoders are HyperLSTMs (``HParams(dec_model="hyper")``).

What you need: lessons 03-04 (the LSTM step and BPTT) and 02 (gradient checks).

How to run:  python lessons/13_layer_norm_and_hyperlstm.py                  (full, seconds)
             MINISKETCH_FAST=1 python lessons/13_layer_norm_and_hyperlstm.py  (fast, tests)
Figures go to lessons/out/.
"""
# %%
from course import FAST, rng, savefig

import numpy as np
import matplotlib.pyplot as plt
import minisketch as ms
from minisketch import gradcheck, shapes
from minisketch.layers import hyper_lstm, layer_norm_lstm, lstm
from minisketch.layers.activations import sigmoid

rng = rng(0)
LN_EPS = 1e-3

# %% [markdown]
# ## 1. Layer norm, forward and backward
# Over the $N$ units of one vector $v$:
#
# $$
# \mu = \tfrac{1}{N} \textstyle\sum_k v_k, \quad
# \text{var} = \tfrac{1}{N} \textstyle\sum_k (v_k - \mu)^2, \quad
# r = (\text{var} + 10^{-3})^{-1/2}, \quad
# \hat x = (v - \mu) \, r, \quad y = \gamma \odot \hat x + \beta .
# $$
#
# Backward. Every $\hat x_j$ depends on every $v_k$ (through $\mu$ and var): with
# $\partial \mu / \partial v_k = 1/N$ and $\partial r / \partial v_k = -r^3 (v_k - \mu) / N$,
#
# $$
# \frac{\partial \hat x_j}{\partial v_k}
# = r \left(\delta_{jk} - \tfrac{1}{N}\right) - (v_j - \mu) \, r^3 (v_k - \mu) / N
# = r \left(\delta_{jk} - \tfrac{1}{N} - \tfrac{1}{N} \hat x_j \hat x_k\right),
# $$
#
# and contracting with the upstream gradient $g = \partial L / \partial \hat x$:
#
# $$
# \frac{\partial L}{\partial v} = r \left(g - \operatorname{mean}(g)
# - \hat x \odot \operatorname{mean}(g \odot \hat x)\right).
# $$

# %%
def layer_norm_by_hand(v):
    d = v - v.mean(axis=-1, keepdims=True)
    r = 1.0 / np.sqrt((d * d).mean(axis=-1, keepdims=True) + LN_EPS)
    return d * r, r


def layer_norm_backward_by_hand(g, xhat, r):
    return r * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))


v = rng.standard_normal((3, 7)) * 2 + 1
G = rng.standard_normal((3, 7))
xhat, r = layer_norm_by_hand(v)
dv = layer_norm_backward_by_hand(G, xhat, r)
assert np.allclose(xhat.mean(-1), 0, atol=1e-12), "layer norm output must have mean 0 (1e-12)"
errs = gradcheck.check_gradients(lambda: float(np.sum(layer_norm_by_hand(v)[0] * G)), {"v": v},
                                 {"v": dv}, tol=1e-6)
print(f"layer norm backward, gradient check: {errs['v']:.1e} (tol 1e-6)")
# the gradient of a layer norm is orthogonal to the all-ones vector: shifting v changes nothing
assert np.allclose(dv.sum(-1), 0, atol=1e-12), "dL/dv must sum to 0 over the units (1e-12)"

# %% [markdown]
# ## 2. The layer-norm LSTM
# No separate bias ($\beta$ plays its role). Per step, with blocks $k \in (i, j, f, o)$:
#
# $$
# \begin{aligned}
# a &= x W_{xh} + h_{\text{prev}} W_{hh}, \qquad
#   y_k = \gamma_k \odot \operatorname{LN}(a_k) + \beta_k \\
# i &= \sigma(y_i), \quad g = \tanh(y_j), \quad f = \sigma(y_f + 1), \quad o = \sigma(y_o) \\
# c &= f \odot c_{\text{prev}} + i \odot g
#   \qquad \text{(the un-normalized } c \text{ is carried)} \\
# h &= o \odot \tanh(\gamma_c \odot \operatorname{LN}(c) + \beta_c)
# \end{aligned}
# $$

# %%
T, B, D, H = 5, 3, 4, 6
p_ln = layer_norm_lstm.ln_lstm_init(rng, D, H, dtype=np.float64)
for k in ("ln_gamma", "ln_beta", "ln_c_gamma", "ln_c_beta"):   # move them off 1 / 0
    p_ln[k] = p_ln[k] + 0.2 * rng.standard_normal(p_ln[k].shape)
x = rng.standard_normal((T, B, D))
state0 = 0.3 * rng.standard_normal((B, 2 * H))


def ln_lstm_by_hand(x, state0, p):
    H = p["W_hh"].shape[0]
    c, h = state0[:, :H], state0[:, H:]
    hs = []
    for t in range(len(x)):
        a = x[t] @ p["W_xh"] + h @ p["W_hh"]
        y = np.concatenate([layer_norm_by_hand(a[:, k * H:(k + 1) * H])[0] for k in range(4)],
                           axis=1) * p["ln_gamma"] + p["ln_beta"]
        i, g = sigmoid(y[:, :H]), np.tanh(y[:, H:2 * H])
        f, o = sigmoid(y[:, 2 * H:3 * H] + 1.0), sigmoid(y[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(p["ln_c_gamma"] * layer_norm_by_hand(c)[0] + p["ln_c_beta"])
        hs.append(h)
    return np.stack(hs), np.concatenate([c, h], axis=1)


hs, st = ln_lstm_by_hand(x, state0, p_ln)
hs_lib, st_lib, cache_ln = layer_norm_lstm.ln_lstm_forward(x, state0, p_ln)
err = max(float(np.abs(hs - hs_lib).max()), float(np.abs(st - st_lib).max()))
print(f"layer-norm LSTM forward: max |hand - library| = {err:.1e}")
assert err < 1e-13, f"hand layer-norm LSTM differs from ln_lstm_forward by {err:.1e} (> 1e-13)"

# the library's backward against central differences of the hand forward, every tensor.
# eps = 1e-5 rather than 1e-6: the normalizations add rounding to every evaluation of the
# loss, so the rounding term u|L|/eps of lesson 02's error curve is larger; at 1e-5 the
# truncation error (~eps^2) is still far below the 1e-6 tolerance.
Gh = rng.standard_normal((T, B, H))
dx, dst0, g_ln = layer_norm_lstm.ln_lstm_backward(Gh, None, cache_ln)
errs = gradcheck.check_gradients(lambda: float(np.sum(ln_lstm_by_hand(x, state0, p_ln)[0] * Gh)),
                                 {"x": x, "state0": state0, **p_ln},
                                 {"x": dx, "state0": dst0, **g_ln}, eps=1e-5, tol=1e-6)
print("ln_lstm_backward vs central differences of the hand forward (tol 1e-6): worst "
      f"{max(errs.values()):.1e} ({max(errs, key=errs.get)})")

# %% [markdown]
# ## 3. What layer norm buys
# A gate whose pre-activation sits far out on the sigmoid's flat tail is *saturated*: its
# derivative is nearly 0, so almost no gradient flows through it and it stops learning. Scale
# the inputs of a plain LSTM and of a layer-norm LSTM (same weights, $H = 64$ or more units)
# and count the gate units whose derivative is below 1% of its maximum
# ($\sigma' < 0.0025$, $\tanh' < 0.01$). The plain cell's pre-activations grow with the
# input; the layer-norm cell's are renormalized to mean $\beta$ and spread $\gamma$ in every
# block, whatever the scale.

# %%
Hb = 64 if FAST else 128
scales = np.logspace(-1, 2.5, 8 if FAST else 15)
xs = rng.standard_normal((20 if FAST else 60, 16, D))
p_big = layer_norm_lstm.ln_lstm_init(np.random.default_rng(5), D, Hb, dtype=np.float64)
p_plain = {"W_xh": p_big["W_xh"], "W_hh": p_big["W_hh"], "b": np.zeros(4 * Hb)}


def gate_inputs(hs, x, p, normalize):
    """What each step's four gates receive: a, or gamma * LN(a) + beta per block; [T, B, 4H]."""
    H = p["W_hh"].shape[0]
    h_prev = np.concatenate([np.zeros((1,) + hs.shape[1:]), hs[:-1]])
    a = x @ p["W_xh"] + h_prev @ p["W_hh"]
    if not normalize:
        return a + p["b"]
    norm = np.concatenate([layer_norm_by_hand(a[..., k * H:(k + 1) * H])[0] for k in range(4)],
                          axis=-1)
    return norm * p["ln_gamma"] + p["ln_beta"]


def saturated(y):
    """Fraction of gate units whose derivative is below 1% of its maximum."""
    H = y.shape[-1] // 4
    i, f, o = (sigmoid(y[..., k * H:(k + 1) * H] + (1.0 if k == 2 else 0.0)) for k in (0, 2, 3))
    g = np.tanh(y[..., H:2 * H])
    flat = [s * (1 - s) / 0.25 for s in (i, f, o)] + [1 - g * g]
    return float(np.mean(np.concatenate([d.ravel() for d in flat]) < 0.01))


frac = {"plain LSTM": [], "layer-norm LSTM": []}
zero = np.zeros((xs.shape[1], 2 * Hb))
for s in scales:
    hs_pl, _, _ = lstm.lstm_forward(s * xs, zero, p_plain)
    hs_n, _, _ = layer_norm_lstm.ln_lstm_forward(s * xs, zero, p_big)
    frac["plain LSTM"].append(saturated(gate_inputs(hs_pl, s * xs, p_plain, False)))
    frac["layer-norm LSTM"].append(saturated(gate_inputs(hs_n, s * xs, p_big, True)))
fig, ax = plt.subplots(figsize=(6, 3.4))
for name, f in frac.items():
    ax.semilogx(scales, f, "o-", label=name)
ax.set_xlabel("input scale (x multiplied by)")
ax.set_ylabel("fraction of saturated gate units")
ax.set_title(f"Do the gates saturate as the inputs grow? (H = {Hb}, same weights)", fontsize=9)
ax.legend(fontsize=8)
savefig(fig, "13_gate_saturation.png")
print("saturated fraction at input scales", np.round(scales[[0, len(scales) // 2, -1]], 1), ":",
      {k: [round(v[j], 3) for j in (0, len(scales) // 2, -1)] for k, v in frac.items()})
assert frac["plain LSTM"][-1] > 0.5, "a plain LSTM's gates should saturate at large input scales"
assert max(frac["layer-norm LSTM"]) < 0.02, "layer-norm gates should not saturate at any scale"

# %% [markdown]
# ## 4. The HyperLSTM
# A hyper cell (a layer-norm LSTM with $H_h$ units) reads $[x_t, h_{\text{prev}}]$ and gives
# $\hat h$. From it, eight weight scales $\alpha$ and four biases $\beta$ for the main cell:
#
# $$
# \begin{aligned}
# z_w &= \hat h W_{zw} + b_{zw} \ (8 \text{ embeddings of size } E), &
# \alpha_k &= z_{w,k} W_{\alpha,k} \ (8 \text{ scales}) \\
# z_b &= \hat h W_{zb} \ (4 \text{ embeddings}), &
# \beta_k &= z_{b,k} W_{\beta,k} \ (4 \text{ biases}) \\
# a_k &= \alpha_k \odot (x W_{xh})_k + \alpha_{4+k} \odot (h_{\text{prev}} W_{hh})_k + \beta_k + b_k
# \end{aligned}
# $$
#
# then the layer-norm LSTM update from $a$. At init $W_{zw} = 0$ and $b_{zw} = 1$, so every
# $\alpha$ is 0.1 ($W_\alpha = 0.1 / E$); the hyper cell has to *learn* to modulate. The state
# is $[h \mid \hat h \mid c \mid \hat c]$.

# %%
Hh, E = 5, 2
p_hy = hyper_lstm.hyper_lstm_init(rng, D, H, dtype=np.float64, hyper_num_units=Hh,
                                  hyper_embedding_size=E)
for k in ("W_zw", "W_beta", "b"):                   # move the zero-initialized ones off zero
    p_hy[k] = p_hy[k] + 0.3 * rng.standard_normal(p_hy[k].shape)
hstate0 = 0.3 * rng.standard_normal((B, 2 * H + 2 * Hh))


def ln_cell_step(a, c, p, prefix=""):
    """One layer-norm LSTM update from raw pre-activations a (section 2's math)."""
    H = c.shape[1]
    y = np.concatenate([layer_norm_by_hand(a[:, k * H:(k + 1) * H])[0] for k in range(4)],
                       axis=1) * p[prefix + "ln_gamma"] + p[prefix + "ln_beta"]
    i, g = sigmoid(y[:, :H]), np.tanh(y[:, H:2 * H])
    f, o = sigmoid(y[:, 2 * H:3 * H] + 1.0), sigmoid(y[:, 3 * H:])
    c = f * c + i * g
    h = o * np.tanh(p[prefix + "ln_c_gamma"] * layer_norm_by_hand(c)[0] + p[prefix + "ln_c_beta"])
    return c, h


def hyper_by_hand(x, state0, p, trace=None):
    H, Hh = p["W_hh"].shape[0], p["hyper_W_hh"].shape[0]
    E = p["W_zw"].shape[1] // 8
    h, hh = state0[:, :H], state0[:, H:H + Hh]
    c, ch = state0[:, H + Hh:2 * H + Hh], state0[:, 2 * H + Hh:]
    hs = []
    for t in range(len(x)):
        a_hat = np.concatenate([x[t], h], axis=1) @ p["hyper_W_xh"] + hh @ p["hyper_W_hh"]
        ch, hh = ln_cell_step(a_hat, ch, p, prefix="hyper_")
        zw = hh @ p["W_zw"] + p["b_zw"]
        zb = hh @ p["W_zb"]
        alpha = [zw[:, k * E:(k + 1) * E] @ p["W_alpha"][k] for k in range(8)]
        beta = [zb[:, k * E:(k + 1) * E] @ p["W_beta"][k] for k in range(4)]
        xw, hw = x[t] @ p["W_xh"], h @ p["W_hh"]
        a = np.concatenate([alpha[k] * xw[:, k * H:(k + 1) * H]
                            + alpha[4 + k] * hw[:, k * H:(k + 1) * H] + beta[k]
                            for k in range(4)], axis=1) + p["b"]
        c, h = ln_cell_step(a, c, p)
        hs.append(h)
        if trace is not None:
            trace.append(np.stack(alpha)[:, 0])                 # [8, H]: every scale, row 0
    return np.stack(hs), np.concatenate([h, hh, c, ch], axis=1)


hs_h, st_h = hyper_by_hand(x, hstate0, p_hy)
hs_hl, st_hl, cache_h = hyper_lstm.hyper_lstm_forward(x, hstate0, p_hy)
err = max(float(np.abs(hs_h - hs_hl).max()), float(np.abs(st_h - st_hl).max()))
print(f"HyperLSTM forward: max |hand - library| = {err:.1e}")
assert err < 1e-13, f"hand HyperLSTM differs from hyper_lstm_forward by {err:.1e} (> 1e-13)"

# %% [markdown]
# ### The new backward piece: modulation
#
# The forward was $a_k = \alpha_k \odot xw_k + \alpha_{4+k} \odot hw_k + \beta_k + b_k$, so
#
# $$
# dxw_k = \alpha_k \odot da_k, \quad dhw_k = \alpha_{4+k} \odot da_k, \quad
# d\alpha_k = da_k \odot xw_k, \quad d\alpha_{4+k} = da_k \odot hw_k, \quad
# d\beta_k = db_k = da_k .
# $$
#
# Everything else is layer-norm LSTM backward (twice) and linear backward. Compare the
# modulation step with the library's, then gradient-check the library's full HyperLSTM backward
# against your forward.

# %%
xw_t, hw_t = rng.standard_normal((B, 4 * H)), rng.standard_normal((B, 4 * H))
alpha_t, da_t = rng.standard_normal((8, B, H)), rng.standard_normal((B, 4 * H))
dxw, dhw, dal = np.empty((B, 4 * H)), np.empty((B, 4 * H)), np.empty((8, B, H))
hyper_lstm.hyper_modulate_backward(da_t, xw_t, hw_t, alpha_t, dxw, dhw, dal)
blocks = [slice(k * H, (k + 1) * H) for k in range(4)]
for k, s in enumerate(blocks):
    assert np.allclose(dxw[:, s], alpha_t[k] * da_t[:, s], rtol=0, atol=1e-15)
    assert np.allclose(dhw[:, s], alpha_t[4 + k] * da_t[:, s], rtol=0, atol=1e-15)
    assert np.allclose(dal[k], da_t[:, s] * xw_t[:, s], rtol=0, atol=1e-15)
    assert np.allclose(dal[4 + k], da_t[:, s] * hw_t[:, s], rtol=0, atol=1e-15)
print("modulation backward: hand formulas equal hyper_modulate_backward (1e-15)")

Gh = rng.standard_normal((T, B, H))
dx_h, dst_h, g_hy = hyper_lstm.hyper_lstm_backward(Gh, None, cache_h)
errs = gradcheck.check_gradients(
    lambda: float(np.sum(hyper_by_hand(x, hstate0, p_hy)[0] * Gh)),
    {"x": x, "state0": hstate0, **p_hy}, {"x": dx_h, "state0": dst_h, **g_hy}, eps=1e-5, tol=1e-6,
    max_entries=6 if FAST else None)
print(f"hyper_lstm_backward vs central differences of the hand forward, {len(errs)} tensors "
      f"(tol 1e-6): worst {max(errs.values()):.1e} ({max(errs, key=errs.get)})")

# %% [markdown]
# ## 5. Using the cells in the model
# `HParams(dec_model=...)` picks the decoder cell ("lstm", "layer_norm", "hyper"); the paper's
# best results use the HyperLSTM decoder. Each has its own parameter count.

# %%
for cell in ("lstm", "layer_norm", "hyper"):
    hp = ms.HParams(dec_model=cell, enc_rnn_size=32, dec_rnn_size=64, z_size=16,
                    hyper_num_units=32, hyper_embedding_size=8)
    print(f"  dec_model={cell:10s} {ms.SketchRNN(hp).num_params:8,d} parameters")

# %% [markdown]
# What does the modulation look like? Feed one real sketch (its stroke-5 rows, 5 inputs) through
# a HyperLSTM with 64 units whose $W_{zw}$ is moved off its zero init, and follow the scales
# $\alpha$ of the recurrent weight blocks at every step. ($W_\alpha$ starts equal for every
# unit, so all units of a block share one scale: one line per block is the whole picture.)

# %%
sketch = shapes.make_sketch("house", np.random.default_rng(4))
rows = ms.make_batch([sketch], max_len=len(sketch), scale_factor=12.0, dtype=np.float64)
x_sk = np.ascontiguousarray(rows.strokes[:, 1:].transpose(1, 0, 2))      # [T, 1, 5]
p_vis = hyper_lstm.hyper_lstm_init(np.random.default_rng(6), 5, 64, dtype=np.float64,
                                   hyper_num_units=32, hyper_embedding_size=8)
p_vis["W_zw"] = p_vis["W_zw"] + 0.5 * np.random.default_rng(7).standard_normal(
    p_vis["W_zw"].shape)
trace = []
hyper_by_hand(x_sk, np.zeros((1, 2 * 64 + 2 * 32)), p_vis, trace=trace)
alpha_h = np.array(trace)[:, 4:8].mean(axis=2)    # [T, 4]: the h-path blocks i, j, f, o
lifts = np.flatnonzero(sketch[:, 2] > 0.5)
fig, ax = plt.subplots(figsize=(7, 3.2))
for k, gate in enumerate(("input i", "candidate g", "forget f", "output o")):
    ax.plot(alpha_h[:, k], label=f"{gate}")
ax.axhline(0.1, color="0.5", ls="--", lw=1, label="reference init (0.1)")
for t in lifts:
    ax.axvline(t, color="C3", lw=0.6, alpha=0.5)
ax.set_xlabel("step along a sketch of a house (red: pen lifts)")
ax.set_ylabel("alpha of the recurrent weights")
ax.set_title("Does the HyperLSTM rescale its weights at every step?", fontsize=9)
ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.2))
savefig(fig, "13_hyper_alpha.png")
spread = float(np.ptp(alpha_h, axis=0).max())
print(f"the scales of the recurrent blocks move over ranges of up to {spread:.3f} along "
      "the sketch")
assert spread > 1e-3, "with W_zw != 0 the scales must vary over time"
print("lesson 13 checks passed")

# %% [markdown]
# ## Exercises
# 1. Show that `LN(s * v) = LN(v)` for any s > 0 when the variance is much larger than 1e-3.
#    Why does the 1e-3 matter for inputs that are nearly constant?
# 2. Write the single-step backward of the layer-norm LSTM by hand (lesson 03's step backward
#    plus two layer-norm backwards) and compare with `ln_lstm_cell_backward`.
# 3. At the reference init (W_zw = 0, b_zw = 1, W_alpha = 0.1/E), alpha = 0.1 everywhere. Why
#    is the HyperLSTM then *not* just a layer-norm LSTM with weights scaled by 0.1?
#    (Hint: layer norm after the scaling, and the beta path.)
# 4. Count the HyperLSTM's parameters by hand for H = 512, Hh = 256, E = 32, D = 133.
