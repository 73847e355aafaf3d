"""Lesson 02: a linear layer, its backward pass, and how to prove a gradient right.

What you will build: the affine layer ``y = x @ W + b`` with its backward pass derived by hand
(index notation -> matrix form), a central-difference gradient checker written from scratch,
and the relative-error metric that decides "right" or "wrong". Then you compare both with the
library (``minisketch.layers.linear`` and ``minisketch.gradcheck``), watch the checker catch a
planted bug, and plot why we check in float64 with a central difference and eps near 1e-6.
Every later lesson proves its backward pass with this tool.

What you need: lesson 01 is not required; just NumPy and matplotlib.

How to run:  python lessons/02_linear_and_gradcheck.py                 (full, seconds)
             MINISKETCH_FAST=1 python lessons/02_linear_and_gradcheck.py  (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
from course import FAST, rng, savefig

import numpy as np
import matplotlib.pyplot as plt
from minisketch import gradcheck
from minisketch.layers import linear

rng = rng(0)

# %% [markdown]
# ## 1. Forward
# Weights are stored `[in, out]` and applied as `x @ W` (the magenta.js layout):
#
# $$
# y_{no} = \sum_d x_{nd} W_{do} + b_o .
# $$

# %%
N, D, O = 5, 4, 3
x = rng.standard_normal((N, D))
W = rng.standard_normal((D, O))
b = rng.standard_normal(O)


def linear_forward_by_hand(x, W, b):
    return x @ W + b


y = linear_forward_by_hand(x, W, b)
y_lib, cache = linear.linear_forward(x, W, b)
assert np.allclose(y, y_lib, rtol=0, atol=1e-12), "forward differs from linear_forward (1e-12)"

# %% [markdown]
# ## 2. Backward, by hand
# Put the layer inside a scalar loss. The cheapest way to make *any* upstream gradient is
# $L = \sum_{no} y_{no} G_{no}$ for a fixed random $G$, because then
# $\partial L / \partial y = G$ exactly. The chain rule, one index at a time, using
# $\partial y_{no} / \partial x_{nd} = W_{do}$, $\partial y_{no} / \partial W_{do} = x_{nd}$
# and $\partial y_{no} / \partial b_o = 1$:
#
# $$
# \frac{\partial L}{\partial x_{nd}} = \sum_o G_{no} W_{do}
# \;\Rightarrow\; dx = G W^\top, \qquad
# \frac{\partial L}{\partial W_{do}} = \sum_n x_{nd} G_{no}
# \;\Rightarrow\; dW = x^\top G, \qquad
# \frac{\partial L}{\partial b_o} = \sum_n G_{no}
# \;\Rightarrow\; db = \textstyle\sum_n G_{n\cdot} .
# $$
#
# A shape check catches most slips: `dW` must be `[D, O]` like `W`, and `x.T @ G` is the only
# product of `x [N, D]` and `G [N, O]` with that shape. Note that `dW` and `db` *sum over the
# batch*: every example uses the same weights.

# %%
G = rng.standard_normal((N, O))


def linear_backward_by_hand(dy, x, W):
    return dy @ W.T, x.T @ dy, dy.sum(axis=0)


dx, dW, db = linear_backward_by_hand(G, x, W)
dx_lib, dW_lib, db_lib = linear.linear_backward(G, cache)
for name, mine, lib in (("dx", dx, dx_lib), ("dW", dW, dW_lib), ("db", db, db_lib)):
    err = float(np.max(np.abs(mine - lib)))
    print(f"{name}: max |hand - library| = {err:.1e}")
    assert err < 1e-12, f"{name} differs from linear_backward by {err:.2e} (> 1e-12)"

# %% [markdown]
# ## 3. A gradient checker from scratch
# The derivative is a limit; a central difference approximates it with an error of order
# $\epsilon^2$ (the $\epsilon^2$ terms of the two Taylor expansions cancel):
#
# $$
# \frac{\partial L}{\partial \theta_k} \approx
# \frac{L(\theta + \epsilon e_k) - L(\theta - \epsilon e_k)}{2 \epsilon} .
# $$
#
# Compare analytic $a$ and numeric $n$ with a relative error, which does not care about the
# scale of the gradient:
#
# $$
# \text{err} = \max_k \frac{|a_k - n_k|}{\max(|a_k| + |n_k|, \text{floor})} .
# $$
#
# The floor stops entries whose true gradient is 0 from dividing rounding noise by ~0.
# To make the test meaningful we put a nonlinearity after the layer,
# $L = \sum \tanh(x W + b) \odot G$, whose backward is
# $\partial L / \partial y = G \odot (1 - \tanh^2 y)$.

# %%
def loss(x, W, b):
    return float(np.sum(np.tanh(x @ W + b) * G))


def grads_by_hand(x, W, b):
    t = np.tanh(x @ W + b)
    dy = G * (1.0 - t * t)               # forward was: t = tanh(y), L = sum(t * G)
    return linear_backward_by_hand(dy, x, W)


def numeric_grad_by_hand(f, theta, eps=1e-6):
    g = np.zeros_like(theta)
    for k in np.ndindex(theta.shape):
        old = theta[k]
        theta[k] = old + eps
        fp = f()
        theta[k] = old - eps
        fm = f()
        theta[k] = old                    # restore exactly
        g[k] = (fp - fm) / (2 * eps)
    return g


def rel_err_by_hand(a, n, floor=1e-8):
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)))


dx, dW, db = grads_by_hand(x, W, b)
f = lambda: loss(x, W, b)
errs = {}
for name, theta, analytic in (("x", x, dx), ("W", W, dW), ("b", b, db)):
    numeric = numeric_grad_by_hand(f, theta)
    errs[name] = rel_err_by_hand(analytic, numeric)
    # the library's numerical_grad is the same formula: it must give the same numbers
    lib_numeric = gradcheck.numerical_grad(f, theta, eps=1e-6)
    assert np.allclose(numeric, lib_numeric, rtol=0, atol=1e-12), \
        f"hand numeric gradient of {name} differs from gradcheck.numerical_grad (1e-12)"
print("hand-made gradient check, relative errors:", {k: f"{v:.1e}" for k, v in errs.items()})
# rounding in L(theta +- eps) is ~1e-16 |L| / 1e-6 ~ 1e-10 absolute: an entry of size 1e-3
# can only be checked to ~1e-7 relative, so 1e-6 is a tight but honest tolerance
assert max(errs.values()) < 1e-6, f"hand gradient check failed (tol 1e-6): {errs}"

# the library's checker (used by every test) agrees; it raises with the worst entries if not
lib_errs = gradcheck.check_gradients(f, {"x": x, "W": W, "b": b}, {"x": dx, "W": dW, "b": db},
                                     tol=1e-6)
print("gradcheck.check_gradients:", {k: f"{v:.1e}" for k, v in lib_errs.items()})

# %% [markdown]
# ## 4. The checker must be able to fail
# A check that cannot fail proves nothing. Plant the most common bug, forgetting that `db`
# sums over the batch (using only the first row), and make sure the checker refuses it.

# %%
wrong_db = G[0] * (1.0 - np.tanh(x @ W + b)[0] ** 2)
try:
    gradcheck.check_gradients(f, {"b": b}, {"b": wrong_db}, tol=1e-6)
    caught = False
except AssertionError as e:
    caught = True
    print("the planted bug is caught:\n", str(e).splitlines()[1])
assert caught, "check_gradients accepted a wrong gradient for b"
assert rel_err_by_hand(wrong_db, numeric_grad_by_hand(f, b)) > 1e-2, \
    "the hand checker should see a large error (> 1e-2) for the wrong db"

# %% [markdown]
# ## 5. Why central differences, float64 and eps ~ 1e-6
# Two errors compete. Truncation: forward differences
# $(L(\theta + \epsilon) - L(\theta)) / \epsilon$ are off by $O(\epsilon)$, central ones by
# $O(\epsilon^2)$. Rounding: each $L$
# carries about $u |L|$ of rounding ($u = 2.2 \cdot 10^{-16}$ in float64,
# $1.2 \cdot 10^{-7}$ in float32), divided by $\epsilon$. Balancing $\epsilon^2$ against
# $u / \epsilon$ puts the sweet spot of a central difference near $\epsilon = u^{1/3}$:
# about $6 \cdot 10^{-6}$ in float64, but $5 \cdot 10^{-3}$ in float32, where the answer is
# only good to about $10^{-5}$: not enough to tell a subtle bug from noise. Hence: check in
# float64.

# %%
eps_grid = np.logspace(-12, -1, 12 if FAST else 45)
true_dW = grads_by_hand(x, W, b)[1][1, 2]
curves = {}
for dtype in (np.float64, np.float32):
    xs, Ws, bs, Gs = (a.astype(dtype) for a in (x, W, b, G))
    L = lambda Wk: np.sum(np.tanh(xs @ Wk + bs) * Gs, dtype=dtype)
    for kind in ("central", "forward"):
        errs_k = []
        for eps in eps_grid:
            Wp, Wm = Ws.copy(), Ws.copy()
            Wp[1, 2] += dtype(eps)
            Wm[1, 2] -= dtype(eps) if kind == "central" else 0
            step = (float(Wp[1, 2]) - float(Wm[1, 2]))      # the step actually taken
            num = (float(L(Wp)) - float(L(Wm))) / step if step else np.nan
            errs_k.append(abs(num - true_dW) / abs(true_dW))
        curves[(dtype.__name__, kind)] = np.array(errs_k)

fig, ax = plt.subplots(figsize=(5.5, 3.8))
for (dt, kind), e in curves.items():
    ax.loglog(eps_grid, np.maximum(e, 1e-17), "-" if kind == "central" else "--",
              label=f"{kind}, {dt}")
ax.set_xlabel("eps")
ax.set_ylabel("relative error of dL/dW[1,2]")
ax.set_title("Which eps gives the most accurate finite difference?", fontsize=9)
ax.legend(fontsize=8)
savefig(fig, "02_finite_difference_error.png")

best64 = np.nanmin(curves[("float64", "central")])
best32 = np.nanmin(curves[("float32", "central")])
print(f"best relative error: central float64 {best64:.1e}, central float32 {best32:.1e}")
assert best64 < 1e-9, f"central differences in float64 should reach 1e-9 (got {best64:.1e})"
assert best32 > 1e-7, f"float32 should not resolve gradients to 1e-7 (got {best32:.1e})"
# truncation regime: central error falls ~100x per decade of eps, forward only ~10x
big = (eps_grid >= 1e-3) & (eps_grid <= 1e-1)
slope_c = np.polyfit(np.log10(eps_grid[big]), np.log10(curves[("float64", "central")][big]), 1)[0]
slope_f = np.polyfit(np.log10(eps_grid[big]), np.log10(curves[("float64", "forward")][big]), 1)[0]
print(f"truncation slopes: central {slope_c:.2f} (theory 2), forward {slope_f:.2f} (theory 1)")
assert abs(slope_c - 2) < 0.35 and abs(slope_f - 1) < 0.35, "truncation slopes should be 2 and 1"

# %% [markdown]
# ## 6. Initialization
# `glorot_uniform` draws from $U(-l, l)$ with
# $l = \sqrt{6 / (\text{fan}_\text{in} + \text{fan}_\text{out})}$, so the variance
# $l^2 / 3 = 2 / (\text{fan}_\text{in} + \text{fan}_\text{out})$ keeps activations and
# gradients at the same scale in both directions. `orthogonal` gives $Q$ with
# $Q^\top Q = I$ (used for the recurrent weights, lesson 03).

# %%
fan_in, fan_out = (64, 32) if FAST else (512, 256)
Wg = linear.glorot_uniform(np.random.default_rng(1), fan_in, fan_out, dtype=np.float64)
var_theory = 2.0 / (fan_in + fan_out)
rel = abs(Wg.var() - var_theory) / var_theory
print(f"glorot variance {Wg.var():.5f}, theory {var_theory:.5f} (rel diff {rel:.3f})")
assert rel < 0.1, \
    f"Glorot variance off by {rel:.2f} (> 10%; sampling noise is ~{np.sqrt(1.6 / Wg.size):.3f})"
Q = linear.orthogonal(np.random.default_rng(2), 32, dtype=np.float64)
ortho_err = float(np.max(np.abs(Q.T @ Q - np.eye(32))))
assert ortho_err < 1e-12, f"orthogonal() is not orthogonal: |Q^T Q - I| = {ortho_err:.1e}"
print("lesson 02 checks passed")

# %% [markdown]
# ## Exercises
# 1. Add a ReLU between two linear layers and derive the backward pass of the pair; check it
#    with `gradcheck.check_gradients`. What happens to the check at an input exactly at 0?
# 2. Plant a transpose bug (`dW = G.T @ x`) with a square W so the shapes still match. Does
#    the checker catch it? Why is a square test case a good idea?
# 3. In the figure, where does the float32 central curve bottom out, and how does that compare
#    with u^(2/3) for u = 1.2e-7?
# 4. Why does the library's checker add a floor based on the rounding noise of `f` rather than
#    a fixed 1e-8?
