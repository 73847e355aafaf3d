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
from course import FAST, rng, savefig

import numpy as np
import matplotlib.pyplot as plt
from minisketch import gradcheck
from minisketch.layers import mdn

rng = rng(0)

# %% [markdown]
# ## 0. Why a mixture?
# At the corner of a square the pen goes on *either* down *or* right; at the end of a stroke it
# may lift and jump anywhere. The next move is often several distinct possibilities, not one
# move plus noise. A single Gaussian fitted to "down or right" puts its mean in between, on a
# diagonal move that nobody makes, and sampling from it would round every corner. A mixture of
# $M$ Gaussians (Bishop 1994; Graves 2013 for handwriting) can put one bump on each
# possibility and weigh them, so its samples choose. The paper uses $M = 20$ (eq. 4); the
# figure in section 4 draws a 3-component mixture.
#
# ## 1. The output layout and the density
# For every step the decoder emits $6M + 3$ numbers (the paper's eqs. 5-8), laid out as
# `[pen logits (3) | pi logits (M) | mu_x | mu_y | log sigma_x | log sigma_y | rho logits]`.
# Softmaxes, exponentials and a tanh turn them into valid parameters:
#
# $$
# \pi = \operatorname{softmax}(\hat\pi), \quad q = \operatorname{softmax}(\hat q), \quad
# \sigma_x = e^{\hat\sigma_x}, \quad \sigma_y = e^{\hat\sigma_y}, \quad
# \rho = \tanh \hat\rho .
# $$
#
# With $n_1 = \Delta x - \mu_x$ and $n_2 = \Delta y - \mu_y$, each component is a
# bivariate normal density:
#
# $$
# Z = \frac{n_1^2}{\sigma_x^2} + \frac{n_2^2}{\sigma_y^2}
# - \frac{2 \rho n_1 n_2}{\sigma_x \sigma_y},
# \qquad
# N(\Delta x, \Delta y) = \frac{1}{2 \pi \sigma_x \sigma_y \sqrt{1 - \rho^2}}
# \exp\left(-\frac{Z}{2 (1 - \rho^2)}\right).
# $$
#
# The reconstruction loss of a target row $(\Delta x, \Delta y, p_1, p_2, p_3)$ (eq. 10, before
# dividing by $N_{\max}$) has two terms:
#
# $$
# \ell_{\text{offset}} = -\log\Big(\sum_k \pi_k N_k(\Delta x, \Delta y) + 10^{-6}\Big)
# \ \text{on real rows } (p_3 = 0), \qquad
# \ell_{\text{pen}} = -\sum_j p_j \log q_j \ \text{on every row, padding included.}
# $$
#
# The $10^{-6}$ caps the offset term at $-\log 10^{-6} = 13.8$ when the density at the target
# is nearly 0; it does *not* bound it from below (section 3).

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
assert abs(off.sum() - float(off_lib)) < 1e-12 * max(1, abs(off.sum())), \
    "offset sums differ (1e-12)"
assert abs(pen.sum() - float(pen_lib)) < 1e-12 * max(1, abs(pen.sum())), "pen sums differ (1e-12)"
assert off[-1] == 0.0, "padding rows carry no offset loss"

# %% [markdown]
# ## 2. The gradient, step by step
# Per row, with standardized offsets $u = n_1 / \sigma_x$, $v = n_2 / \sigma_y$ and
# $Q = 1 - \rho^2$, work with logarithms:
#
# $$
# \log N_k = -\frac{u^2 + v^2 - 2 \rho u v}{2 Q} - \log 2\pi - \hat\sigma_x - \hat\sigma_y
# - \tfrac{1}{2} \log Q, \qquad
# \ell = -\log\Big(\sum_k e^{\log \pi_k + \log N_k} + 10^{-6}\Big).
# $$
#
# **Step 1: the responsibilities.** $\ell$ depends on component $k$ only through
# $a_k = \log \pi_k + \log N_k$, and
#
# $$
# \frac{\partial \ell}{\partial a_k} = -\frac{\pi_k N_k}{\sum_j \pi_j N_j + 10^{-6}}
# = -\gamma_k .
# $$
#
# $\gamma_k$ is how much component $k$ "explains" the target (the $10^{-6}$ makes
# $\sum_k \gamma_k$ slightly below 1; keep it exact rather than assuming 1). Every gradient
# below is $-\gamma_k$ times the derivative of $\log \pi_k$ or $\log N_k$.
#
# **Step 2: the mixture weights.** $\log \pi_k = \hat\pi_k - \log \sum_j e^{\hat\pi_j}$,
# so $\partial \log \pi_k / \partial \hat\pi_m = \delta_{km} - \pi_m$ and
#
# $$
# \frac{\partial \ell}{\partial \hat\pi_m} = \sum_k (-\gamma_k)(\delta_{km} - \pi_m)
# = \pi_m \sum_k \gamma_k - \gamma_m .
# $$
#
# **Step 3: the means.** $\partial \log N / \partial u = -(u - \rho v) / Q$ and
# $\partial u / \partial \mu_x = -1 / \sigma_x$, so
#
# $$
# \frac{\partial \ell}{\partial \mu_x} = -\gamma \, \frac{u - \rho v}{Q \sigma_x}
# \qquad (\mu_y: \text{swap } u \leftrightarrow v, \ \sigma_x \to \sigma_y).
# $$
#
# **Step 4: the log standard deviations.** $u = n_1 e^{-\hat\sigma_x}$ gives
# $\partial u / \partial \hat\sigma_x = -u$, and $\log N$ also holds $-\hat\sigma_x$
# directly:
#
# $$
# \frac{\partial \log N}{\partial \hat\sigma_x} = \frac{u (u - \rho v)}{Q} - 1
# \quad\Rightarrow\quad
# \frac{\partial \ell}{\partial \hat\sigma_x} = \gamma - \gamma \, \frac{u (u - \rho v)}{Q}.
# $$
#
# **Step 5: the correlation.** With $Z = u^2 + v^2 - 2 \rho u v$:
# $\partial Z / \partial \rho = -2 u v$ and $\partial Q / \partial \rho = -2 \rho$, so
# $\partial \log N / \partial \rho = (u v - \rho Z / Q + \rho) / Q$; the tanh contributes
# $\partial \rho / \partial \hat\rho = 1 - \rho^2 = Q$, which cancels the $1/Q$:
#
# $$
# \frac{\partial \ell}{\partial \hat\rho} = -\gamma \left(u v - \frac{\rho Z}{Q} + \rho\right).
# $$
#
# **Step 6: the pen.** $\ell_{\text{pen}} = -\sum_j p_j \log q_j$ with $q$ a softmax, so
# as in step 2,
# $\partial \ell_{\text{pen}} / \partial \hat q_m = q_m \sum_j p_j - p_m = q_m - p_m$
# (the $p_j$ are one-hot).
#
# > **Your turn.** `lessons/exercises/07_gaussian_mixture.py`: the loss and its gradient;
# > `python lessons/grade.py 07` grades them against the library.

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
# Training pushes $\rho$ toward $\pm 1$ (strokes along a diagonal) and $\sigma$ toward 0
# (confident predictions). In float64, $\tanh(20)$ rounds to exactly 1, so $1 - \rho^2 = 0$:
# the naive density divides by zero. The library never forms $N_k$; it works with
# $\log N_k$ and a log-sum-exp:
#
# $$
# w = (u - \rho v) \cosh \hat\rho \ \Rightarrow\ \frac{Z}{1 - \rho^2} = w^2 + v^2,
# \qquad
# \log(1 - \rho^2) = 2 \left(\log 2 - |\hat\rho| - \operatorname{log1p}(e^{-2 |\hat\rho|})\right),
# $$
#
# both exact for any $\hat\rho$, and $\log(\sum_k e^{a_k} + 10^{-6})$ as a log-sum-exp with
# $\log 10^{-6}$ as one more term.
#
# The figure below also shows something about the model, not the arithmetic: for a target
# exactly on the diagonal, the loss keeps falling as $\hat\rho$ grows, about one nat per unit
# of $\hat\rho$, to $-37$ at $\hat\rho = 40$. The likelihood is *degenerate*: a component
# squeezed onto the line $\Delta y = \Delta x$ has a density on that line that grows like
# $1 / \sqrt{1 - \rho^2} \approx e^{|\hat\rho|} / 2$, without bound (the same happens as
# $\sigma \to 0$ on a perfectly predicted target). Maximum likelihood has no optimum there.
# Real data keeps it finite (no stroke is exactly collinear for long, and one component must
# serve many rows), but the loss must be computed so that such values stay finite: that is the
# log-space form's job.

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
ax.set_title("Where will the next pen move land? (a 3-component mixture)", fontsize=9)
ax.set_xlabel("dx")
ax.set_ylabel("dy")
savefig(fig, "07_mixture_density.png")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(r_grid, lib_vals, label="library (log space)")
ax.plot(r_grid[ok], naive_vals[ok], "--", label="naive formula (NaN/inf beyond)")
ax.set_xlabel("rho logit r (rho = tanh r)")
ax.set_ylabel("offset loss (nats)")
ax.set_title("What happens to the loss as rho -> 1 for a target on the diagonal?", fontsize=9)
ax.legend(fontsize=8)
savefig(fig, "07_rho_stability.png")
print("lesson 07 checks passed")

# %% [markdown]
# ## Exercises
# Graded: `lessons/exercises/07_gaussian_mixture.py` (`python lessons/grade.py 07`).
#
# 1. Sampling from the mixture: pick k ~ pi, then draw (dx, dy) with the right correlation
#    (hint: dy = mu_y + s_y (rho e1 + sqrt(1 - rho^2) e2) when dx = mu_x + s_x e1). Check the
#    sample covariance against [[s_x^2, rho s_x s_y], [rho s_x s_y, s_y^2]].
# 2. The offset loss is often negative. Why is that fine for a density? On a perfectly
#    predicted target, what happens to it as sigma -> 0, and why does the 1e-6 not stop it
#    (which direction does the 1e-6 bound the loss in)?
# 3. Derive d ell / d rho logit in the library's w-form and show it equals the formula above.
# 4. Why does the pen term run over padding rows while the offset term does not?
