"""Lesson 04: backpropagation through time, with padding masks.

What you will build: the LSTM over a whole batch of sequences of different lengths (time-major
``[T, B, D]``, a padding mask so each sequence stops at its own end), and its backward pass
through time: the loop that walks the steps in reverse, carrying ``dh_next`` and ``dc_next``.
You will see why all input projections are one matmul and all weight gradients one matmul over
every step, compare everything with ``minisketch.layers.lstm.lstm_forward``/``lstm_backward``,
gradient-check the whole sequence, and plot how a gradient fades as it travels back in time
through a plain tanh RNN versus an LSTM.

What you need: lesson 03 (the LSTM step, forward and backward).

How to run:  python lessons/04_backprop_through_time.py                    (full, seconds)
             MINISKETCH_FAST=1 python lessons/04_backprop_through_time.py  (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
from course import FAST, rng, savefig

import numpy as np
import matplotlib.pyplot as plt
from minisketch import gradcheck
from minisketch.layers import lstm
from minisketch.layers.activations import sigmoid

rng = rng(0)

# %% [markdown]
# ## 1. Forward over time, with a padding mask
# A batch holds sketches of different lengths padded to the longest. $m_{t,b} = 1$ while
# sequence $b$ is still running. At a padding step the state passes through unchanged, so the
# final state of every sequence is the state after *its own* last real step:
#
# $$
# c_t = m_t \, c_{\text{new}} + (1 - m_t) \, c_{t-1}, \qquad h_t \text{ likewise.}
# $$
#
# Everything that does not depend on the recurrence is hoisted out of the loop: the input
# projections of all $T$ steps are a single `[T*B, D] @ [D, 4H]` matmul.
#
# Open `minisketch/layers/lstm.py` beside this lesson: its `lstm_forward` is this same loop,
# with the step's pointwise math in `lstm_cell_forward` (lesson 03).

# %%
T, B, D, H = 7, 3, 4, 5
lengths = np.array([7, 4, 1])                       # one full, one half, one single step
mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)   # [T, B]
x = rng.standard_normal((T, B, D))
p = lstm.lstm_init(rng, D, H, dtype=np.float64)
p["b"] = 0.1 * rng.standard_normal(4 * H)
state0 = 0.3 * rng.standard_normal((B, 2 * H))      # [c0 | h0]
keep = (rng.random((T, B, H)) < 0.9) / 0.9           # recurrent dropout masks, one per step


def lstm_sequence_by_hand(x, state0, W_xh, W_hh, b, keep, mask):
    T, B, _ = x.shape
    H = W_hh.shape[0]
    XW = (x.reshape(T * B, -1) @ W_xh).reshape(T, B, 4 * H) + b   # one matmul for all steps
    c, h = state0[:, :H], state0[:, H:]
    hs, saved = [], []
    for t in range(T):
        a = XW[t] + h @ W_hh
        i, g = sigmoid(a[:, :H]), np.tanh(a[:, H:2 * H])
        f, o = sigmoid(a[:, 2 * H:3 * H] + 1.0), sigmoid(a[:, 3 * H:])
        c_new = f * c + i * g * keep[t]
        tc = np.tanh(c_new)
        h_new = o * tc
        m = mask[t][:, None]
        saved.append((c, h, i, g, f, o, tc, m))       # what the backward step will need
        c = m * c_new + (1 - m) * c
        h = m * h_new + (1 - m) * h
        hs.append(h)
    return np.stack(hs), np.concatenate([c, h], axis=1), saved


hs, state_T, saved = lstm_sequence_by_hand(x, state0, p["W_xh"], p["W_hh"], p["b"], keep, mask)
hs_lib, state_T_lib, cache = lstm.lstm_forward(x, state0, p, keep=keep, mask=mask)
err = max(float(np.abs(hs - hs_lib).max()), float(np.abs(state_T - state_T_lib).max()))
print(f"forward: max |hand - lstm_forward| = {err:.1e}")
assert err < 1e-13, f"hand sequence forward differs from lstm_forward by {err:.1e} (> 1e-13)"

# the final state of sequence 1 (length 4) is its state after step 3, whatever came later
hs4, st4, _ = lstm_sequence_by_hand(x[:4], state0, p["W_xh"], p["W_hh"], p["b"], keep[:4],
                                    np.ones((4, B)))
assert np.allclose(state_T[1], st4[1], rtol=0, atol=1e-14), \
    "padding must carry the state through unchanged (1e-14)"

# %% [markdown]
# ## 2. Backward through time
# Every $h_t$ feeds two places: the loss (`dhs[t]`) and the next step (through $W_{hh}$). So
# the total gradient reaching step $t$'s output is $dh = dh^{\text{loss}}_t + dh_{\text{next}}$,
# and the cell gets $dc_{\text{next}}$ from the next step's $c_{\text{prev}}$. Walk
# $t = T-1, \dots, 0$:
#
# 1. the step backward of lesson 03 gives $da_t$ and $dc_{\text{prev}}$;
# 2. $dh_{\text{next}} = da_t W_{hh}^\top$, because the forward was
#    $a_t = \dots + h_{t-1} W_{hh}$;
# 3. at a padding step ($m = 0$) the forward was $c_t = c_{t-1}$, $h_t = h_{t-1}$, so the
#    gradients pass straight through: $dc_{\text{prev}} = dc$, $dh_{\text{next}} = dh$,
#    $da_t = 0$.
#
# Weight gradients are sums over steps; with every $da_t$ stored they are again one matmul:
#
# $$
# dW_{hh} = \sum_t h_{t-1}^\top \, da_t = H_{\text{prev}}^\top \, dA,
# \qquad H_{\text{prev}} \in \mathbb{R}^{TB \times H}, \; dA \in \mathbb{R}^{TB \times 4H}.
# $$
#
# `lstm_backward` in `minisketch/layers/lstm.py` is the same reversed loop around
# `lstm_cell_backward`, each line marked with the forward line it undoes.
#
# > **Your turn.** Write the backward pass yourself in
# > `lessons/exercises/04_backprop_through_time.py` (the forward is given there) and grade it
# > with `python lessons/grade.py 04`.

# %%
def lstm_sequence_backward_by_hand(dhs, dstate_T, saved, x, W_xh, W_hh, keep, trace=None):
    T, B, D = x.shape
    H = W_hh.shape[0]
    dA = np.zeros((T, B, 4 * H))
    dc_next, dh_next = dstate_T[:, :H].copy(), dstate_T[:, H:].copy()
    H_prev = np.stack([s[1] for s in saved])        # h_{t-1} for every step
    for t in reversed(range(T)):
        c_prev, h_prev, i, g, f, o, tc, m = saved[t]
        dh = dhs[t] + dh_next
        dc = dc_next + dh * o * (1 - tc * tc)      # forward was: h = o * tanh(c)
        do = dh * tc
        gd = g * keep[t]
        di, dg, df = dc * gd, dc * i * keep[t], dc * c_prev   # forward was: c = f c_prev + i gd
        da = np.concatenate([di * i * (1 - i), dg * (1 - g * g), df * f * (1 - f),
                             do * o * (1 - o)], axis=1)
        dA[t] = m * da
        dc_next = m * (dc * f) + (1 - m) * dc_next            # padding: pass straight through
        dh_next = dA[t] @ W_hh.T + (1 - m) * dh
        if trace is not None:                                  # |gradient of the state entering t|
            trace.append(np.sqrt(np.sum(dc_next ** 2) + np.sum(dh_next ** 2)))
    dA2 = dA.reshape(T * B, 4 * H)
    grads = {"W_xh": x.reshape(T * B, D).T @ dA2, "W_hh": H_prev.reshape(T * B, H).T @ dA2,
             "b": dA2.sum(axis=0)}
    return (dA2 @ W_xh.T).reshape(T, B, D), np.concatenate([dc_next, dh_next], 1), grads, dA


Ghs = rng.standard_normal((T, B, H)) * mask[:, :, None]   # loss reads only real steps' h
Gst = rng.standard_normal((B, 2 * H))                       # ... and the final state


def loss():
    hs_, st_, _ = lstm_sequence_by_hand(x, state0, p["W_xh"], p["W_hh"], p["b"], keep, mask)
    return float(np.sum(hs_ * Ghs) + np.sum(st_ * Gst))


dx, dstate0, grads, dA = lstm_sequence_backward_by_hand(Ghs, Gst, saved, x, p["W_xh"],
                                                        p["W_hh"], keep)
dx_lib, dstate0_lib, grads_lib = lstm.lstm_backward(Ghs, Gst, cache)
for name, mine, lib in [("x", dx, dx_lib), ("state0", dstate0, dstate0_lib)] + \
        [(k, grads[k], grads_lib[k]) for k in grads]:
    e = float(np.abs(mine - lib).max())
    assert e < 1e-12, f"{name}: hand BPTT differs from lstm_backward by {e:.1e} (> 1e-12)"
print("hand BPTT equals lstm_backward to 1e-12 for x, state0, W_xh, W_hh, b")

# one matmul over all steps == the sum over steps of per-step outer products
H_prev = np.stack([s[1] for s in saved])
looped = sum(H_prev[t].T @ dA[t] for t in range(T))
assert np.allclose(looped, grads["W_hh"], rtol=0, atol=1e-12), \
    "the single matmul must equal the per-step sum (1e-12)"

# %% [markdown]
# ## 3. Gradient check of the whole sequence
# Central differences through all $T$ steps, masks and dropout included (float64, tolerance
# $10^{-6}$).

# %%
errs = gradcheck.check_gradients(loss, {"x": x, "state0": state0, **p},
                                 {"x": dx, "state0": dstate0, **grads}, tol=1e-6)
print("gradient check through time (tol 1e-6):", {k: f"{v:.1e}" for k, v in errs.items()})
# the padded steps of sequence 2 (length 1) get no gradient at all: they were never used
assert np.all(dx[1:, 2] == 0), "inputs at padding steps must get exactly zero gradient"

# %% [markdown]
# ## 4. How far back does a gradient reach?
# Put the loss on the last output only and measure $|\partial L / \partial h_t|$ for every
# $t$. In a plain tanh RNN $h_t = \tanh(x_t W_x + h_{t-1} W_h)$ each step multiplies the
# gradient by $W_h^\top \operatorname{diag}(1 - h_t^2)$, which shrinks it geometrically. The
# LSTM's cell path multiplies by the forget gate instead, and $dc_{\text{prev}} = dc \odot f$
# with $f$ near 1 lets the gradient travel much further.

# %%
TT, BB, DD, HH = (30, 8, 8, 32) if FAST else (120, 32, 16, 128)
xs = rng.standard_normal((TT, BB, DD))
pl = lstm.lstm_init(np.random.default_rng(1), DD, HH, dtype=np.float64)
ones = np.ones((TT, BB))
_, _, saved_l = lstm_sequence_by_hand(xs, np.zeros((BB, 2 * HH)), pl["W_xh"], pl["W_hh"],
                                      pl["b"], ones[:, :, None], ones)
dhs = np.zeros((TT, BB, HH))
dhs[-1] = 1.0                                      # L = sum(h_{T-1})
trace = []
lstm_sequence_backward_by_hand(dhs, np.zeros((BB, 2 * HH)), saved_l, xs, pl["W_xh"],
                               pl["W_hh"], ones[:, :, None], trace=trace)
g_lstm = [v / np.sqrt(BB) for v in trace[::-1]]    # trace was recorded from t = T-1 down

# plain tanh RNN with the same kind of init: Glorot input weights, orthogonal recurrence
Wx = rng.uniform(-1, 1, (DD, HH)) * np.sqrt(6 / (DD + HH))
Wh = np.linalg.qr(rng.standard_normal((HH, HH)))[0]
hr = [np.zeros((BB, HH))]
for t in range(TT):
    hr.append(np.tanh(xs[t] @ Wx + hr[-1] @ Wh))
dh = np.ones((BB, HH))
g_rnn = [0.0] * TT
for t in reversed(range(TT)):
    da = dh * (1 - hr[t + 1] ** 2)                 # forward was: h_t = tanh(a_t)
    dh = da @ Wh.T                                 # forward was: a_t = ... + h_{t-1} W_h
    g_rnn[t] = np.linalg.norm(dh) / np.sqrt(BB)    # |gradient of the state entering t|

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(range(TT), g_rnn, label="plain tanh RNN")
ax.semilogy(range(TT), g_lstm, label="LSTM (forget bias +1)")
ax.set_xlabel("step t (the loss reads h at the last step)")
ax.set_ylabel("|dL/d state entering step t|")
ax.set_title("How far back in time does a gradient reach?", fontsize=9)
ax.legend()
savefig(fig, "04_gradient_through_time.png")
ratio_rnn, ratio_lstm = g_rnn[0] / g_rnn[-1], g_lstm[0] / g_lstm[-1]
print(f"gradient at t=0 relative to t=T-1: RNN {ratio_rnn:.1e}, LSTM {ratio_lstm:.1e}")
assert ratio_lstm > ratio_rnn, "the LSTM should carry the gradient further back than the RNN"
print("lesson 04 checks passed")

# %% [markdown]
# ## Exercises
# Graded: `lessons/exercises/04_backprop_through_time.py` (`python lessons/grade.py 04`).
#
# 1. Truncated BPTT: cut the backward loop after K steps (set `dh_next = dc_next = 0`). Plot
#    the error of `dW_hh` against the full gradient as K grows.
# 2. Change the forget bias from +1 to -1 in the hand forward and backward. Redraw the figure.
# 3. Why must `dh_next` at a padding step include `(1 - m) * dh`, and what breaks in the
#    gradient check if you drop that term? Try it.
# 4. Count the memory that BPTT keeps: which arrays of size [T, B, H] does `saved` hold, and
#    which of them could be recomputed in the backward pass instead?
