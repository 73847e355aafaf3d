"""Lesson 09: layer normalization and the HyperLSTM, sketch-rnn's two other cells.

What you will build: first layer norm itself, forward and the backward pass everyone gets wrong
the first time (the mean and the variance both depend on every input); then the layer-norm LSTM
(Ba, Kiros & Hinton 2016), each gate block normalized over its units and the cell state
normalized before the output tanh; then the HyperLSTM (Ha, Dai & Le 2016), where a small
layer-norm LSTM, the "hyper cell", watches the main cell and rescales its eight weight blocks at
every step. Each is written in NumPy from the formulas and compared with
``minisketch.layers.layer_norm_lstm`` and ``minisketch.layers.hyper_lstm``; the library's
backward passes are gradient-checked against *your* forward code. A figure shows what layer
norm buys: gate pre-activations that stay in range however large the inputs get.

What you need: lessons 03-04 (the LSTM step and BPTT) and 02 (gradient checks).

How to run:  python lessons/09_layer_norm_and_hyperlstm.py                    (full, seconds)
             MINISKETCH_FAST=1 python lessons/09_layer_norm_and_hyperlstm.py  (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
import os
import sys
from pathlib import Path

import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import minisketch as ms
from minisketch import gradcheck
from minisketch.layers import hyper_lstm, layer_norm_lstm, lstm

FAST = os.environ.get("MINISKETCH_FAST", "0") == "1"
OUT = ROOT / "lessons" / "out"
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
LN_EPS = 1e-3


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


# %% [markdown]
# ## 1. Layer norm, forward and backward
# Over the N units of one vector v:
#
#     mu = mean(v),  var = mean((v - mu)^2),  r = 1 / sqrt(var + 1e-3),  xhat = (v - mu) r
#     y = gamma * xhat + beta
#
# Backward. Every xhat_j depends on every v_k (through mu and var), so
#
#     d xhat_j / d v_k = r (delta_jk - 1/N) - (v_j - mu) r^3 (v_k - mu) / N
#                      = r (delta_jk - 1/N - xhat_j xhat_k / N)
#
# and contracting with the upstream gradient g = dL/dxhat:
#
#     dL/dv = r (g - mean(g) - xhat * mean(g * xhat))

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
# No separate bias (beta plays its role). Per step, with blocks k in (i, j, f, o):
#
#     a = x W_xh + h_prev W_hh
#     y_k = gamma_k * LN(a_k) + beta_k
#     i = sigmoid(y_i), g = tanh(y_j), f = sigmoid(y_f + 1), o = sigmoid(y_o)
#     c = f c_prev + i g                     (the un-normalized c is carried)
#     h = o * tanh(gamma_c * LN(c) + beta_c)

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
# Scale the inputs by 1, 10, 100 and look at the forget-gate pre-activations of a plain LSTM and
# of the layer-norm LSTM at the same weights. Without normalization they grow with the input
# and the sigmoids saturate (gradient sigmoid' ~ 0); with it each block has mean beta and
# standard deviation about gamma whatever the scale.

# %%
scales = [1.0, 10.0, 100.0]
xs = rng.standard_normal((20 if FAST else 100, 16, D))
p_plain = {"W_xh": p_ln["W_xh"], "W_hh": p_ln["W_hh"], "b": np.zeros(4 * H)}
p_unit = dict(p_ln, ln_gamma=np.ones(4 * H), ln_beta=np.zeros(4 * H),
              ln_c_gamma=np.ones(H), ln_c_beta=np.zeros(H))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
stds = {"plain": [], "layer norm": []}
for s in scales:
    zero = np.zeros((xs.shape[1], 2 * H))
    # recompute a = x W_xh + h_prev W_hh from each cell's outputs h
    hs_pl, _, _ = lstm.lstm_forward(s * xs, zero, p_plain)
    hs_n, _, _ = layer_norm_lstm.ln_lstm_forward(s * xs, zero, p_unit)
    h_prev_pl = np.concatenate([zero[None, :, H:], hs_pl[:-1]])
    h_prev_n = np.concatenate([zero[None, :, H:], hs_n[:-1]])
    pre_plain = (s * xs @ p_plain["W_xh"] + h_prev_pl @ p_plain["W_hh"])[..., 2 * H:3 * H]
    a_n = (s * xs @ p_unit["W_xh"] + h_prev_n @ p_unit["W_hh"])[..., 2 * H:3 * H]
    pre_ln = layer_norm_by_hand(a_n)[0]          # the normalized forget block LN(a_f)
    for ax, name, pre in ((axes[0], "plain", pre_plain), (axes[1], "layer norm", pre_ln)):
        ax.hist(pre.ravel(), bins=60, histtype="step", density=True, label=f"inputs x {s:g}")
        stds[name].append(float(pre.std()))
axes[0].set_title("plain LSTM: forget pre-activation a_f", fontsize=9)
axes[1].set_title("layer-norm LSTM: LN(a_f)", fontsize=9)
for ax in axes:
    ax.set_xlim(-15, 15)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "09_layer_norm_preactivations.png", dpi=100)
plt.close(fig)
print("std of forget pre-activations at input scales 1, 10, 100:",
      {k: [round(x, 2) for x in v] for k, v in stds.items()})
assert stds["plain"][2] > 5 * stds["plain"][0], "plain pre-activations should grow with the input"
assert max(abs(s - 1.0) for s in stds["layer norm"]) < 0.05, \
    "normalized blocks should keep std ~1 (5%) at every input scale"

# %% [markdown]
# ## 4. The HyperLSTM
# A hyper cell (a layer-norm LSTM with Hh units) reads [x_t, h_prev] and gives h_hat. From it:
#
#     zw = h_hat W_zw + b_zw  (8 embeddings of size E)    alpha_k = zw_k W_alpha[k]   (8 scales)
#     zb = h_hat W_zb         (4 embeddings)              beta_k  = zb_k W_beta[k]    (4 biases)
#     a_k = alpha_k * (x W_xh)_k + alpha_{4+k} * (h_prev W_hh)_k + beta_k + b_k
#
# then the layer-norm LSTM update from a. At init W_zw = 0 and b_zw = 1, so every alpha is
# 0.1 (W_alpha = 0.1 / E); the hyper cell has to *learn* to modulate. State: [h | h_hat | c | c_hat].

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
            trace.append(np.stack(alpha)[:, 0].mean(axis=1))   # mean alpha per block, sketch 0
    return np.stack(hs), np.concatenate([h, hh, c, ch], axis=1)


hs_h, st_h = hyper_by_hand(x, hstate0, p_hy)
hs_hl, st_hl, cache_h = hyper_lstm.hyper_lstm_forward(x, hstate0, p_hy)
err = max(float(np.abs(hs_h - hs_hl).max()), float(np.abs(st_h - st_hl).max()))
print(f"HyperLSTM forward: max |hand - library| = {err:.1e}")
assert err < 1e-13, f"hand HyperLSTM differs from hyper_lstm_forward by {err:.1e} (> 1e-13)"

# %% [markdown]
# ### The new backward piece: modulation
#
#     forward: a_k = alpha_k xw_k + alpha_{4+k} hw_k + beta_k + b_k
#     ->  dxw_k = alpha_k da_k,  dhw_k = alpha_{4+k} da_k,
#         dalpha_k = da_k xw_k,  dalpha_{4+k} = da_k hw_k,  dbeta_k = db_k = da_k
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

trace = []
hyper_by_hand(xs[:, :1], hstate0[:1], p_hy, trace=trace)      # one long input sequence
trace = np.array(trace)
fig, ax = plt.subplots(figsize=(6, 3))
names = [f"{src}-{g}" for src in ("x", "h") for g in "ijfo"]
for k in range(8):
    ax.plot(trace[:, k], label=names[k])
ax.set_xlabel("time step")
ax.set_ylabel("mean alpha of the block")
ax.set_title("HyperLSTM: weight-block scales change at every step", fontsize=9)
ax.legend(fontsize=7, ncol=4)
fig.tight_layout()
fig.savefig(OUT / "09_hyper_alpha.png", dpi=100)
plt.close(fig)
assert np.ptp(trace, axis=0).max() > 1e-3, "with W_zw != 0 the scales must vary over time"
print("lesson 09 checks passed")

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
