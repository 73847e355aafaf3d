"""Lesson 03: the LSTM cell by hand, forward and backward, for one time step.

What you will build: the LSTM cell sketch-rnn uses (gate blocks in the order i, j, f, o, forget
bias +1 added at run time, recurrent dropout on the candidate), written in plain NumPy; then its
backward pass, derived line by line by undoing the forward lines in reverse order. You compare
both with the library (``minisketch.layers.lstm``: ``lstm_cell_forward``/``lstm_cell_backward``,
the step functions the Numba and CuPy kernels replace, and ``lstm_forward``/``lstm_backward``
with T = 1), prove the hand backward with a gradient check, and build a tiny hand-wired LSTM
that stores a number and remembers it.

What you need: lesson 02 (the linear layer's backward and gradient checking).

How to run:  python lessons/03_lstm_cell.py                      (full, seconds)
             MINISKETCH_FAST=1 python lessons/03_lstm_cell.py    (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
from course import FAST, rng, savefig

import numpy as np
import matplotlib.pyplot as plt
from minisketch import gradcheck
from minisketch.layers import activations, lstm

rng = rng(0)

# %% [markdown]
# ## 1. The forward step
# Why an LSTM at all? The decoder must remember, hundreds of steps later, where a stroke began
# (to close a circle) and what it is drawing. A plain recurrent layer forgets fast (lesson 04
# measures it); the LSTM (Hochreiter & Schmidhuber 1997) keeps a *cell* $c$ that is only ever
# scaled and added to, guarded by gates. One matmul makes all four gate pre-activations from
# the input and the previous output, $a = x W_{xh} + h_{\text{prev}} W_{hh} + b$, a
# $[B, 4H]$ array of blocks $[a_i \mid a_j \mid a_f \mid a_o]$:
#
# $$
# \begin{aligned}
# i &= \sigma(a_i) && \text{input gate: how much new content to write} \\
# g &= \tanh(a_j) \cdot \text{keep}
#   && \text{candidate content (keep: recurrent dropout, 0 or } 1/p) \\
# f &= \sigma(a_f + 1) && \text{forget gate; } +1 \text{ so that } f \approx 0.73 \text{ at init} \\
# o &= \sigma(a_o) && \text{output gate} \\
# c &= f \odot c_{\text{prev}} + i \odot g && \text{the cell: a leaky running sum, the memory} \\
# h &= o \odot \tanh(c) && \text{what the cell shows the rest of the network}
# \end{aligned}
# $$
#
# with $\sigma(a) = 1 / (1 + e^{-a})$. The state is stored as one array `[c | h]` of width
# $2H$ (the magenta.js layout). `sigmoid` is written here once; later lessons import the
# library's, `minisketch.layers.activations.sigmoid`, which computes the same values without
# overflowing for very negative $a$.

# %%
B, D, H = 3, 4, 5


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


a_test = np.linspace(-30, 30, 13)
assert np.allclose(sigmoid(a_test), activations.sigmoid(a_test), rtol=1e-15, atol=0), \
    "sigmoid differs from the library's (1e-15 relative)"


def lstm_step_by_hand(x, c_prev, h_prev, W_xh, W_hh, b, keep=None):
    H = W_hh.shape[0]
    a = x @ W_xh + h_prev @ W_hh + b
    i = sigmoid(a[:, 0:H])
    g = np.tanh(a[:, H:2 * H])
    f = sigmoid(a[:, 2 * H:3 * H] + 1.0)
    o = sigmoid(a[:, 3 * H:4 * H])
    gd = g if keep is None else g * keep
    c = f * c_prev + i * gd
    tc = np.tanh(c)
    h = o * tc
    cache = (x, c_prev, h_prev, i, g, f, o, tc, keep)
    return c, h, cache


p = lstm.lstm_init(rng, D, H, dtype=np.float64)
p["b"] = 0.1 * rng.standard_normal(4 * H)           # nonzero so the check covers b
x = rng.standard_normal((B, D))
c_prev = 0.5 * rng.standard_normal((B, H))
h_prev = 0.5 * rng.standard_normal((B, H))
keep = (rng.random((B, H)) < 0.9) / 0.9              # recurrent dropout, keep probability 0.9

c, h, cache = lstm_step_by_hand(x, c_prev, h_prev, p["W_xh"], p["W_hh"], p["b"], keep)

# the library's step function takes the two matmul results and writes into given buffers
c_lib, h_lib, act_lib = np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))
lstm.lstm_cell_forward(x @ p["W_xh"] + p["b"], h_prev @ p["W_hh"], c_prev, h_prev, keep, None,
                       c_lib, h_lib, act_lib)
err_fwd = max(np.abs(c - c_lib).max(), np.abs(h - h_lib).max())
print(f"forward: max |hand - lstm_cell_forward| = {err_fwd:.1e}")
assert err_fwd < 1e-14, f"hand forward differs from lstm_cell_forward by {err_fwd:.1e} (> 1e-14)"
# the saved activations are [i | tanh(a_j) | f | o | tanh(c)]
_, _, _, i_, g_, f_, o_, tc_, _ = cache
assert np.allclose(act_lib, np.concatenate([i_, g_, f_, o_, tc_], axis=1), rtol=0, atol=1e-14), \
    "act_out layout should be [i | g | f | o | tanh(c)] (1e-14)"
# and lstm_step (inference, no dropout) matches the hand step without dropout
c0, h0, _ = lstm_step_by_hand(x, c_prev, h_prev, p["W_xh"], p["W_hh"], p["b"])
h_step, state_step = lstm.lstm_step(x, np.concatenate([c_prev, h_prev], axis=1), p)
assert np.allclose(state_step, np.concatenate([c0, h0], axis=1), rtol=0, atol=1e-14), \
    "lstm_step state differs from the hand step (1e-14)"

# %% [markdown]
# ## 2. The backward step
# Given $\partial L / \partial h$ and $\partial L / \partial c$ of this step's outputs
# ($dc$ comes from the *next* step's $c_{\text{prev}}$), undo the forward lines from the
# bottom up. Writing $dv$ for $\partial L / \partial v$, each line undoes one forward line:
#
# | forward | backward |
# |---|---|
# | $h = o \odot \tanh c$ | $do = dh \odot \tanh c$, $\; dc \mathrel{+}= dh \odot o \odot (1 - \tanh^2 c)$ |
# | $c = f \odot c_{\text{prev}} + i \odot g_d$ | $df = dc \odot c_{\text{prev}}$, $\; di = dc \odot g_d$, $\; dg_d = dc \odot i$, $\; dc_{\text{prev}} = dc \odot f$ |
# | $g_d = g \odot \text{keep}$ | $dg = dg_d \odot \text{keep}$ |
# | $i, f, o = \sigma(\cdot)$ | $da_{i,f,o} = d(\text{gate}) \odot s (1 - s)$, since $\sigma' = \sigma (1 - \sigma)$ |
# | $g = \tanh a_j$ | $da_j = dg \odot (1 - g^2)$, since $\tanh' = 1 - \tanh^2$ |
# | $a = x W_{xh} + h_{\text{prev}} W_{hh} + b$ | lesson 02: $dx = da\, W_{xh}^\top$, $dh_{\text{prev}} = da\, W_{hh}^\top$, $dW_{xh} = x^\top da$, $dW_{hh} = h_{\text{prev}}^\top da$, $db = \sum_b da$ |
#
# The +1 forget bias is a constant shift: it changes nothing in the backward formulas.
#
# > **Your turn.** Before reading the code below, open `lessons/exercises/03_lstm_cell.py`
# > and write `lstm_step_forward` and `lstm_step_backward` yourself;
# > `python lessons/grade.py 03` grades them with this lesson's checks (`--hint` if stuck).

# %%
def lstm_step_backward_by_hand(dh, dc_next, cache, W_xh, W_hh):
    x, c_prev, h_prev, i, g, f, o, tc, keep = cache
    gd = g if keep is None else g * keep
    do = dh * tc
    dc = dc_next + dh * o * (1.0 - tc * tc)
    df = dc * c_prev
    di = dc * gd
    dg = dc * i if keep is None else dc * i * keep
    dc_prev = dc * f
    da = np.concatenate([di * i * (1 - i), dg * (1 - g * g), df * f * (1 - f), do * o * (1 - o)],
                        axis=1)
    grads = {"x": da @ W_xh.T, "h_prev": da @ W_hh.T, "c_prev": dc_prev,
             "W_xh": x.T @ da, "W_hh": h_prev.T @ da, "b": da.sum(axis=0)}
    return da, grads


Gh = rng.standard_normal((B, H))      # L = sum(h * Gh) + sum(c * Gc): dL/dh = Gh, dL/dc = Gc
Gc = rng.standard_normal((B, H))
da, g_hand = lstm_step_backward_by_hand(Gh, Gc, cache, p["W_xh"], p["W_hh"])

# library step backward: writes da, dc_prev and the pass-through part of dh_prev
da_lib, dcp_lib, dpass_lib = np.empty((B, 4 * H)), np.empty((B, H)), np.empty((B, H))
lstm.lstm_cell_backward(Gh, Gc, c_prev, act_lib, keep, None, da_lib, dcp_lib, dpass_lib)
err_da = float(np.abs(da - da_lib).max())
err_dcp = float(np.abs(g_hand["c_prev"] - dcp_lib).max())
print(f"backward: max |da - lib| = {err_da:.1e}, max |dc_prev - lib| = {err_dcp:.1e}")
assert err_da < 1e-14 and err_dcp < 1e-14, "hand step backward differs from lstm_cell_backward"
assert np.all(dpass_lib == 0), "with no padding mask nothing passes around W_hh"

# the sequence functions with T = 1 give the parameter gradients too
hs, state_T, seq_cache = lstm.lstm_forward(x[None], np.concatenate([c_prev, h_prev], 1), p,
                                           keep=keep[None])
dx_seq, dstate0, g_seq = lstm.lstm_backward(Gh[None], np.concatenate([Gc, np.zeros((B, H))], 1),
                                            seq_cache)
pairs = {"x": dx_seq[0], "c_prev": dstate0[:, :H], "h_prev": dstate0[:, H:], **g_seq}
for name, lib in pairs.items():
    e = float(np.abs(g_hand[name] - lib).max())
    assert e < 1e-13, f"{name}: hand gradient differs from lstm_backward by {e:.1e} (> 1e-13)"
print("hand gradients equal lstm_backward (T = 1) to 1e-13 for", ", ".join(pairs))

# %% [markdown]
# ## 3. Prove the hand backward with central differences
# The library agreeing with us proves only that we made the same choices. The gradient check
# proves the math: every input and parameter, float64, tolerance $10^{-6}$ (lesson 02's
# metric).

# %%
W_xh, W_hh, b = p["W_xh"], p["W_hh"], p["b"]


def L():
    c_, h_, _ = lstm_step_by_hand(x, c_prev, h_prev, W_xh, W_hh, b, keep)
    return float(np.sum(h_ * Gh) + np.sum(c_ * Gc))


errs = gradcheck.check_gradients(
    L, {"x": x, "c_prev": c_prev, "h_prev": h_prev, "W_xh": W_xh, "W_hh": W_hh, "b": b},
    g_hand, tol=1e-6)
print("gradient check (tol 1e-6):", {k: f"{v:.1e}" for k, v in errs.items()})

# %% [markdown]
# ## 4. A hand-wired memory cell
# With $H = 1$ we can set the weights ourselves. Inputs: $s$ ("store now") and $v$ (a value).
# The input gate opens only when $s = 1$; the forget gate forgets only when $s = 1$; the
# candidate is $\tanh(3 v)$. Between stores, with $v = 0$, the cell obeys
# $c_t = f \, c_{t-1}$ exactly, with $f = \sigma(5 + 1)$: the memory leaks by 0.25% per step.
# That +1 forget bias is why an untrained LSTM already remembers a little.

# %%
T = 40 if FAST else 80
W_xh1 = np.zeros((2, 4))
W_xh1[0] = [10.0, 0.0, -10.0, 0.0]      # s: opens i (a_i = 10s - 5), closes f (a_f = 5 - 10s)
W_xh1[1] = [0.0, 3.0, 0.0, 0.0]         # v: the candidate
b1 = np.array([-5.0, 0.0, 5.0, 5.0])    # i mostly shut, f mostly open, o open
W_hh1 = np.zeros((1, 4))
xs = np.zeros((T, 1, 2))
xs[5] = [1.0, 0.5]                      # store 0.5 at t = 5
xs[T // 2] = [1.0, -0.8]                # overwrite with -0.8 halfway


def run_memory_cell(xs):
    cs, hs = np.zeros(len(xs)), np.zeros(len(xs))
    c_t, h_t = np.zeros((1, 1)), np.zeros((1, 1))
    state = np.zeros((1, 2))                           # the library's [c | h]
    p1 = {"W_xh": W_xh1, "W_hh": W_hh1, "b": b1}
    for t in range(len(xs)):
        c_t, h_t, _ = lstm_step_by_hand(xs[t], c_t, h_t, W_xh1, W_hh1, b1)
        _, state = lstm.lstm_step(xs[t], state, p1)
        assert np.allclose(state, np.concatenate([c_t, h_t], 1), rtol=0, atol=1e-14), \
            f"step {t}: hand cell and lstm_step disagree (1e-14)"
        cs[t], hs[t] = c_t[0, 0], h_t[0, 0]
    return cs, hs


cs, hs_ = run_memory_cell(xs)
f_keep = sigmoid(5.0 + 1.0)
t1, t2 = 6, T // 2 - 1
predicted = cs[t1] * f_keep ** (t2 - t1)
print(f"c stored {cs[5]:.4f}; after {t2 - t1} steps c = {cs[t2]:.6f}, f^n c = {predicted:.6f}")
assert abs(cs[t2] - predicted) < 1e-12, "between stores the cell must decay exactly by f per step"
assert abs(cs[5] - (sigmoid(5.0) * np.tanh(1.5) + sigmoid(-4.0) * 0.0)) < 1e-12, \
    "the stored value should be i * tanh(3 * 0.5) with i = sigmoid(5) (to 1e-12)"

fig, ax = plt.subplots(figsize=(7.5, 3))
ax.step(np.arange(T), xs[:, 0, 0], where="mid", label="store signal s", color="0.6")
ax.step(np.arange(T), xs[:, 0, 1], where="mid", label="value v", color="C2")
ax.plot(cs, "C0-", label="cell c")
ax.plot(hs_, "C1--", label="output h")
ax.set_xlabel("time step")
ax.set_title("Can an LSTM cell store a value and hold it? (hand-wired weights)", fontsize=9)
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
savefig(fig, "03_memory_cell.png")
print("lesson 03 checks passed")

# %% [markdown]
# ## Exercises
# Graded: `lessons/exercises/03_lstm_cell.py` (`python lessons/grade.py 03`).
#
# 1. Remove the +1 forget bias from the memory cell (set `b1[2] = 4`). How fast does the
#    stored value leak now? Predict it with f^n before you run it.
# 2. Derive the backward pass of a GRU step the same way (quote each forward line), and check
#    it with `gradcheck.check_gradients`.
# 3. Why does `lstm_cell_forward` save `tanh(c)` rather than `c` for the backward pass? Count
#    the transcendental function calls saved.
# 4. With recurrent dropout, why is the mask applied to g only and not to c or h
#    (Semeniuta et al. 2016)? What would dropping c do to the memory cell above?
