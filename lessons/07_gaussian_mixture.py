"""Lesson 07: the bivariate Gaussian mixture output and its gradient.

What you will build: sketch-rnn's output layer. For every step the decoder emits 6M + 3 numbers
that define a distribution over the next row: a mixture of M bivariate normals (weights pi,
means mu_x, mu_y, standard deviations sigma_x, sigma_y, correlations rho) for the pen offset,
and a 3-way softmax q for the pen state. You write the density and the reconstruction loss
straight from the paper's formulas, derive the gradient with respect to all 6M + 3 raw outputs
via the "responsibilities" gamma_k, and compare with ``minisketch.layers.mdn``. Then you push the
naive formulas until they break (rho -> +-1, tiny sigma, far targets) and see how the library's
log-space form stays finite, with gradient checks right at those edges.

What you need: lesson 02 (gradient checks). Lessons 03-06 are not needed for this one.

How to run:  python lessons/07_gaussian_mixture.py                    (full, seconds)
             MINISKETCH_FAST=1 python lessons/07_gaussian_mixture.py  (fast, as the tests do)
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
from minisketch import gradcheck
from minisketch.layers import mdn

FAST = os.environ.get("MINISKETCH_FAST", "0") == "1"
OUT = ROOT / "lessons" / "out"
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The output layout and the density
# The raw output row is
# `[pen logits (3) | pi logits (M) | mu_x | mu_y | log sigma_x | log sigma_y | rho logits]`, and
#
#     pi = softmax(pi logits),  q = softmax(pen logits),  sigma = exp(.),  rho = tanh(.)
#     n1 = dx - mu_x,  n2 = dy - mu_y
#     Z  = (n1/s_x)^2 + (n2/s_y)^2 - 2 rho n1 n2 / (s_x s_y)
#     N  = exp(-Z / (2 (1 - rho^2))) / (2 pi s_x s_y sqrt(1 - rho^2))
#
# Reconstruction loss of a target row (dx, dy, p1, p2, p3):
#
#     offset term  -log(sum_k pi_k N_k + 1e-6)   only on real rows (p3 = 0)
#     pen term     -sum_j p_j log q_j             on every row, padding included

# %%
M, N = 4, 6


def softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def split(y):
    M = (y.shape[1] - 3) // 6
    return [y[:, :3]] + [y[:, 3 + k * M:3 + (k + 1) * M] for k in range(6)]


def naive_loss_rows(y, target):
    pen_l, pi_l, mu_x, mu_y, ls_x, ls_y, r = split(y)
    pi, q = softmax(pi_l), softmax(pen_l)
    sx, sy, rho = np.exp(ls_x), np.exp(ls_y), np.tanh(r)
    n1, n2 = target[:, :1] - mu_x, target[:, 1:2] - mu_y
    Z = (n1 / sx) ** 2 + (n2 / sy) ** 2 - 2 * rho * n1 * n2 / (sx * sy)
    dens = np.exp(-Z / (2 * (1 - rho ** 2))) / (2 * np.pi * sx * sy * np.sqrt(1 - rho ** 2))
    offset = -np.log((pi * dens).sum(axis=1) + 1e-6) * (1 - target[:, 4])
    pen = -(target[:, 2:] * np.log(q)).sum(axis=1)
    return offset, pen


y = rng.standard_normal((N, 6 * M + 3))
y[:, 3 + 3 * M:3 + 5 * M] -= 1.0                       # sigmas around e^-1
target = np.zeros((N, 5))
target[:, :2] = rng.standard_normal((N, 2))
target[np.arange(N), 2 + rng.integers(0, 2, N)] = 1.0   # pen down or lift
target[-1] = (0, 0, 0, 0, 1)                            # one padding row
off, pen = naive_loss_rows(y, target)
off_lib, pen_lib = mdn.mdn_loss(y, target)
print(f"offset sum: hand {off.sum():.12f}  library {float(off_lib):.12f}")
print(f"pen sum:    hand {pen.sum():.12f}  library {float(pen_lib):.12f}")
assert abs(off.sum() - float(off_lib)) < 1e-12 * max(1, abs(off.sum())), "offset sums differ (1e-12)"
assert abs(pen.sum() - float(pen_lib)) < 1e-12 * max(1, abs(pen.sum())), "pen sums differ (1e-12)"
assert off[-1] == 0.0, "padding rows carry no offset loss"

# %% [markdown]
# ## 2. The gradient, via responsibilities
# Write u = n1 / s_x, v = n2 / s_y (standardized offsets) and Q = 1 - rho^2:
#
#     log N_k = -(u^2 + v^2 - 2 rho u v) / (2Q) - log 2pi - ls_x - ls_y - log(Q) / 2
#     ell = -log(sum_k pi_k N_k + 1e-6),     gamma_k = pi_k N_k / (sum_j pi_j N_j + 1e-6)
#
# `gamma_k` is how much component k "explains" the target. Then d ell / d log N_k = -gamma_k,
# and the chain rule through each raw output gives (per component, per row):
#
#     d ell / d pi logit_k  = pi_k * sum_j gamma_j - gamma_k
#     d ell / d mu_x        = -gamma (u - rho v) / (Q s_x)          (y: swap u <-> v, x -> y)
#     d ell / d ls_x        = gamma - gamma u (u - rho v) / Q
#     d ell / d rho logit   = -gamma (u v - rho Z / Q + rho)         (dQ/dr = -2 rho Q)
#     d pen / d pen logit_j = q_j - p_j
#
# (The 1e-6 makes sum_j gamma_j slightly below 1; keep it exact rather than assuming 1.)

# %%
def naive_grad(y, target, scale):
    pen_l, pi_l, mu_x, mu_y, ls_x, ls_y, r = split(y)
    pi, q = softmax(pi_l), softmax(pen_l)
    sx, sy, rho = np.exp(ls_x), np.exp(ls_y), np.tanh(r)
    u, v = (target[:, :1] - mu_x) / sx, (target[:, 1:2] - mu_y) / sy
    Q = 1 - rho ** 2
    Z = u * u + v * v - 2 * rho * u * v
    dens = np.exp(-Z / (2 * Q)) / (2 * np.pi * sx * sy * np.sqrt(Q))
    gamma = pi * dens / ((pi * dens).sum(axis=1, keepdims=True) + 1e-6)
    gamma = gamma * (1 - target[:, 4:5])                  # padding rows: no offset gradient
    g = np.concatenate([
        q - target[:, 2:],
        pi * gamma.sum(axis=1, keepdims=True) - gamma,
        -gamma * (u - rho * v) / (Q * sx),
        -gamma * (v - rho * u) / (Q * sy),
        gamma - gamma * u * (u - rho * v) / Q,
        gamma - gamma * v * (v - rho * u) / Q,
        -gamma * (u * v - rho * Z / Q + rho)], axis=1)
    return scale * g


scale = 1.0 / N
g_hand = naive_grad(y, target, scale)
_, _, g_lib = mdn.mdn_loss_and_grad(y, target, scale)
rel = gradcheck.rel_error(g_hand, g_lib, floor=1e-12)
print(f"hand gradient vs mdn_loss_and_grad: relative error {rel:.1e}")
assert rel < 1e-10, f"hand MDN gradient differs from the library by {rel:.1e} (> 1e-10 relative)"


def loss_fn():
    off, pen = naive_loss_rows(y, target)
    return scale * (off.sum() + pen.sum())


errs = gradcheck.check_gradients(loss_fn, {"y": y}, {"y": g_hand}, tol=1e-6)
print(f"gradient check of the hand formulas (tol 1e-6): {errs['y']:.1e}")

# %% [markdown]
# ## 3. Where the textbook formula breaks
# Training pushes rho toward +-1 (strokes along a diagonal) and sigma toward 0 (confident
# predictions). In float64, tanh(20) rounds to exactly 1, so 1 - rho^2 = 0: the naive density
# divides by zero. The library never forms N_k; it works with log N_k and a log-sum-exp:
#
#     w = (u - rho v) cosh(r)          so Z / (1 - rho^2) = w^2 + v^2    (no division by 0)
#     log(1 - rho^2) = 2 (log 2 - |r| - log1p(exp(-2|r|)))                (exact for any r)
#     log(sum_k e^{a_k} + 1e-6), a_k = log pi_k + log N_k, as a log-sum-exp with log 1e-6 inside

# %%
r_grid = np.linspace(0, 40, 41 if FAST else 161)
naive_vals, lib_vals = [], []
y1 = np.zeros((1, 6 * 1 + 3))
t1 = np.array([[0.3, 0.3, 1.0, 0.0, 0.0]])             # a target on the diagonal
with np.errstate(all="ignore"):
    for r in r_grid:
        y1[0, -1] = r
        naive_vals.append(float(naive_loss_rows(y1, t1)[0][0]))
        lib_vals.append(float(mdn.mdn_loss(y1, t1)[0]))
naive_vals, lib_vals = np.array(naive_vals), np.array(lib_vals)
ok = np.isfinite(naive_vals)
print(f"naive loss finite up to rho logit {r_grid[ok].max():.0f}; library finite everywhere: "
      f"{np.all(np.isfinite(lib_vals))}")
assert np.all(np.isfinite(lib_vals)), "the library's loss must be finite for every rho logit"
assert not np.all(ok), "the naive formula should break down for large rho logits"
assert np.allclose(naive_vals[r_grid <= 5], lib_vals[r_grid <= 5], rtol=1e-10, atol=0), \
    "where the naive formula is fine, both agree (rel 1e-10)"

# %% [markdown]
# Gradient checks right at the edges: rho logits +-8 (rho = +-0.99999977), log sigma = -6
# (sigma = 0.0025), targets several sigmas away, a padding row and M = 1.

# %%
edge_cases = {
    "rho near +1": dict(r=8.0, ls=-1.0, M=3),
    "rho near -1": dict(r=-8.0, ls=-1.0, M=3),
    "tiny sigma": dict(r=0.3, ls=-6.0, M=3),
    "M = 1": dict(r=2.0, ls=-0.5, M=1),
}
for name, cfg in edge_cases.items():
    Mi = cfg["M"]
    ye = 0.3 * rng.standard_normal((5, 6 * Mi + 3))
    ye[:, 3 + 3 * Mi:3 + 5 * Mi] = cfg["ls"]
    ye[:, 3 + 5 * Mi:] = cfg["r"]
    te = np.zeros((5, 5))
    # targets a few sigmas from the first component's mean, along the correlated direction
    sig = np.exp(cfg["ls"])
    te[:, 0] = ye[:, 3 + Mi] + 2.0 * sig * rng.standard_normal(5)
    te[:, 1] = ye[:, 3 + 2 * Mi] + np.sign(cfg["r"]) * (te[:, 0] - ye[:, 3 + Mi]) \
        + 0.01 * sig * rng.standard_normal(5)
    te[:, 2] = 1.0
    te[-1] = (0, 0, 0, 0, 1)

    def f():
        o, p_ = mdn.mdn_loss(ye, te)
        return float(o + p_)

    _, _, ge = mdn.mdn_loss_and_grad(ye, te, 1.0)
    e = gradcheck.check_gradients(f, {"y": ye}, {"y": ge}, eps=1e-7 if cfg["ls"] < -3 else 1e-6,
                                  tol=1e-6)["y"]
    print(f"  {name:12s}: loss {f():+10.3f}, gradient check error {e:.1e} (tol 1e-6)")

# %% [markdown]
# ## 4. A picture of one mixture
# Three components with different shapes; the contours are the offset density of the next pen
# position. Training moves these blobs so the actual next offset lands where the density is high.

# %%
M3 = 3
y3 = np.zeros((1, 6 * M3 + 3))
_, pi_l, mx, my, lsx, lsy, rl = split(y3)
pi_l[:] = [0.0, -0.5, -1.0]
mx[:], my[:] = [-1.0, 1.0, 0.5], [0.0, 0.5, -1.2]
lsx[:], lsy[:] = np.log([0.5, 0.3, 0.8]), np.log([0.5, 0.8, 0.2])
rl[:] = [0.0, 1.2, -0.8]
xs = np.linspace(-3, 3, 121 if FAST else 301)
gx, gy = np.meshgrid(xs, xs)
grid_t = np.zeros((gx.size, 5))
grid_t[:, 0], grid_t[:, 1], grid_t[:, 2] = gx.ravel(), gy.ravel(), 1.0
yy = np.repeat(y3, gx.size, axis=0)
dens = np.exp(-naive_loss_rows(yy, grid_t)[0]) - 1e-6
cell = (xs[1] - xs[0]) ** 2
mass = dens.sum() * cell
print(f"the mixture density integrates to {mass:.4f} over the plotted square")
assert abs(mass - 1.0) < 0.02, "a mixture density should integrate to ~1 (2% tolerance)"
fig, ax = plt.subplots(figsize=(4.2, 4))
ax.contourf(gx, gy, dens.reshape(gx.shape), levels=20, cmap="viridis")
ax.plot(mx, my, "w+", ms=10)
ax.set_aspect("equal")
ax.set_title("offset density of a 3-component mixture", fontsize=9)
ax.set_xlabel("dx")
ax.set_ylabel("dy")
fig.tight_layout()
fig.savefig(OUT / "07_mixture_density.png", dpi=100)
plt.close(fig)

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(r_grid, lib_vals, label="library (log space)")
ax.plot(r_grid[ok], naive_vals[ok], "--", label="naive formula")
ax.set_xlabel("rho logit r (rho = tanh r)")
ax.set_ylabel("offset loss")
ax.set_title("a target on the diagonal as rho -> 1", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "07_rho_stability.png", dpi=100)
plt.close(fig)
print("lesson 07 checks passed")

# %% [markdown]
# ## Exercises
# 1. Sampling from the mixture: pick k ~ pi, then draw (dx, dy) with the right correlation
#    (hint: dy = mu_y + s_y (rho e1 + sqrt(1 - rho^2) e2) when dx = mu_x + s_x e1). Check the
#    sample covariance against [[s_x^2, rho s_x s_y], [rho s_x s_y, s_y^2]].
# 2. The offset loss is often negative. Why is that fine for a density, and what value does
#    it approach as sigma -> 0 on a perfectly predicted target (remember the 1e-6)?
# 3. Derive d ell / d rho logit in the library's w-form and show it equals the formula above.
# 4. Why does the pen term run over padding rows while the offset term does not?
