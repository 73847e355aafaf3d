"""Lesson 06: the latent variable: reparameterization, the KL term, its floor and annealing.

What you will build: the VAE part of sketch-rnn. The encoder's summary h (lesson 05) becomes a
Gaussian N(mu, sigma^2) over a latent vector z; a sample is drawn as ``z = mu + sigma * eps``
so that gradients can flow through the sampling; the KL divergence to N(0, I) pulls the
encodings toward the prior, but only above a floor (``kl_tolerance`` = 0.2) and with a weight
that is annealed from 0.01 up to 0.5. You derive each formula, check the KL against a Monte Carlo
estimate, write the backward passes by hand and compare with ``minisketch.layers.latent`` and
``minisketch.optim.kl_weight``, and see why the reparameterized gradient is the one to use.

What you need: lesson 02 (linear layers, gradient checks); lesson 05 for where h comes from.

How to run:  python lessons/06_latent_variable.py                    (full, seconds)
             MINISKETCH_FAST=1 python lessons/06_latent_variable.py  (fast, as the tests do)
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
from minisketch import gradcheck, optim
from minisketch.layers import latent

FAST = os.environ.get("MINISKETCH_FAST", "0") == "1"
OUT = ROOT / "lessons" / "out"
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. From h to a distribution over z
#
#     mu = h @ W_mu + b_mu                  [B, N_z]
#     s  = h @ W_s + b_s                    log sigma^2 (any real number, so no constraint)
#     z  = mu + exp(s / 2) * eps,  eps ~ N(0, I)
#
# The noise eps is drawn by the caller (the model seeds it by step, so a loss is a
# deterministic function of the parameters and can be gradient-checked).

# %%
B, Dh, Nz = 4, 6, 3
h = rng.standard_normal((B, Dh))
p = {"mu/W": 0.5 * rng.standard_normal((Dh, Nz)), "mu/b": 0.1 * rng.standard_normal(Nz),
     "sigma/W": 0.5 * rng.standard_normal((Dh, Nz)), "sigma/b": 0.1 * rng.standard_normal(Nz)}
eps = rng.standard_normal((B, Nz))


def latent_by_hand(h, p, eps):
    mu = h @ p["mu/W"] + p["mu/b"]
    s = h @ p["sigma/W"] + p["sigma/b"]
    return mu, s, mu + np.exp(s / 2) * eps


mu, s, z = latent_by_hand(h, p, eps)
mu_l, s_l, z_l, lat_cache = latent.latent_forward(h, p, eps)
err = max(np.abs(mu - mu_l).max(), np.abs(s - s_l).max(), np.abs(z - z_l).max())
assert err < 1e-14, f"hand latent forward differs from latent_forward by {err:.1e} (> 1e-14)"

# %% [markdown]
# ## 2. Why reparameterize?
# We need d/dmu of an expectation E_z[f(z)]. Two unbiased estimators exist:
#
#     pathwise (reparameterized):  f'(mu + sigma eps)                       (differentiate f)
#     score function (REINFORCE):  f(z) * d log q(z) / dmu = f(z) (z - mu) / sigma^2
#
# For f(z) = z^2 the exact answer is d/dmu (mu^2 + sigma^2) = 2 mu. Both are right on average,
# but the pathwise one has far less variance, and it is what lets a VAE train with one sample.

# %%
n = 2000 if FAST else 200000
m0, s0 = 0.7, 0.5
e = np.random.default_rng(1).standard_normal(n)
zz = m0 + s0 * e
pathwise = 2 * zz
score = zz ** 2 * (zz - m0) / s0 ** 2
for name, est in (("pathwise", pathwise), ("score", score)):
    se = est.std() / np.sqrt(n)
    print(f"{name:9s}: mean {est.mean():.4f} +- {se:.4f} (exact {2 * m0}), std {est.std():.3f}")
    assert abs(est.mean() - 2 * m0) < 5 * se, f"{name} estimator mean is off by > 5 std errors"
assert pathwise.std() < 0.5 * score.std(), "the pathwise estimator should have far less variance"

fig, ax = plt.subplots(figsize=(6, 3.2))
bins = np.linspace(-6, 10, 80)
ax.hist(score, bins=bins, alpha=0.6, density=True, label=f"score function (std {score.std():.2f})")
ax.hist(pathwise, bins=bins, alpha=0.6, density=True, label=f"pathwise (std {pathwise.std():.2f})")
ax.axvline(2 * m0, color="k", lw=1, label="exact gradient 2 mu")
ax.set_title("one-sample estimates of d/dmu E[z^2], z ~ N(0.7, 0.5^2)", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "06_gradient_estimators.png", dpi=100)
plt.close(fig)

# %% [markdown]
# ## 3. The KL divergence to the prior, derived
# For one unit, q = N(mu, sigma^2), p = N(0, 1):
#
#     KL(q || p) = E_q[log q(z) - log p(z)]
#                = E_q[-log sigma - (z - mu)^2 / (2 sigma^2) + z^2 / 2]
#                = -log sigma - 1/2 + (sigma^2 + mu^2) / 2
#                = -1/2 (1 + s - mu^2 - exp(s)),     s = log sigma^2
#
# sketch-rnn averages over the batch *and* the N_z units:
# `L_KL = -1 / (2 B N_z) * sum(1 + s - mu^2 - exp(s))`.

# %%
def kl_by_hand(mu, s):
    return float(-np.sum(1 + s - mu ** 2 - np.exp(s)) / (2 * mu.size))


kl_val = kl_by_hand(mu, s)
kl_lib, kl_cache = latent.kl_forward(mu, s)
assert abs(kl_val - float(kl_lib)) < 1e-14, "hand KL differs from kl_forward (1e-14)"

# Monte Carlo check of the closed form for one (mu, s) pair
n_mc = 20000 if FAST else 2000000
mu1, s1 = 0.8, -0.6
zmc = mu1 + np.exp(s1 / 2) * np.random.default_rng(2).standard_normal(n_mc)
log_q = -0.5 * np.log(2 * np.pi) - s1 / 2 - (zmc - mu1) ** 2 / (2 * np.exp(s1))
log_p = -0.5 * np.log(2 * np.pi) - zmc ** 2 / 2
terms = log_q - log_p
closed = -0.5 * (1 + s1 - mu1 ** 2 - np.exp(s1))
print(f"KL closed form {closed:.5f}, Monte Carlo {terms.mean():.5f} +- {terms.std() / np.sqrt(n_mc):.5f}")
assert abs(terms.mean() - closed) < 5 * terms.std() / np.sqrt(n_mc), \
    "Monte Carlo KL is more than 5 standard errors from the closed form"

# %% [markdown]
# ## 4. Backward: through the sample and through the KL
#
#     forward: z = mu + exp(s/2) eps      ->  dmu += dz,   ds += dz * eps * exp(s/2) / 2
#     forward: KL = -c sum(1 + s - mu^2 - e^s), c = 1/(2 B N_z)
#                                         ->  dmu += dKL * 2 c mu,   ds += dKL * c (e^s - 1)
#     forward: mu = h W_mu + b_mu, s = h W_s + b_s   ->  linear backward (lesson 02), twice
#
# The objective's KL term is `w * max(KL, KL_min)`: its gradient is w above the floor and
# exactly 0 below it. The floor stops the optimizer from squeezing the last nats of
# information out of z (the "KL sticks at 0.2" users see is this floor at work).

# %%
def latent_kl_backward_by_hand(dz, dterm, h, p, eps, mu, s, w, kl_min):
    kl = kl_by_hand(mu, s)
    dkl = dterm * w * (kl > kl_min)
    c = 1.0 / (2 * mu.size)
    dmu = dz + dkl * 2 * c * mu
    ds = dz * eps * np.exp(s / 2) / 2 + dkl * c * (np.exp(s) - 1)
    dh = dmu @ p["mu/W"].T + ds @ p["sigma/W"].T
    return dh, {"mu/W": h.T @ dmu, "mu/b": dmu.sum(0), "sigma/W": h.T @ ds, "sigma/b": ds.sum(0)}


G = rng.standard_normal((B, Nz))
w, kl_min = 0.3, 0.2


def objective():
    mu_, s_, z_ = latent_by_hand(h, p, eps)
    return float(np.sum(z_ * G) + w * max(kl_by_hand(mu_, s_), kl_min))


dh, grads = latent_kl_backward_by_hand(G, 1.0, h, p, eps, mu, s, w, kl_min)
# the same with the library's pieces
term, floor_cache = latent.kl_floor_forward(kl_lib, w, kl_min)
dkl_lib = latent.kl_floor_backward(1.0, floor_cache)
dmu_kl, ds_kl = latent.kl_backward(dkl_lib, kl_cache)
dh_lib, grads_lib = latent.latent_backward(G, dmu_kl, ds_kl, lat_cache)
worst = max([float(np.abs(dh - dh_lib).max())] +
            [float(np.abs(grads[k] - grads_lib[k]).max()) for k in grads])
assert worst < 1e-13, f"hand latent+KL backward differs from the library by {worst:.1e} (> 1e-13)"
print(f"KL = {kl_val:.3f} (floor {kl_min}); hand vs library gradients agree to {worst:.0e}")
assert kl_val > kl_min + 0.05, "this example should sit above the floor (so the KL is active)"
errs = gradcheck.check_gradients(objective, {"h": h, **p}, {"h": dh, **grads}, tol=1e-6)
print("gradient check above the floor (tol 1e-6):", {k: f"{v:.0e}" for k, v in errs.items()})

# below the floor the KL contributes no gradient at all: shrink mu and s toward the prior
p_small = {k: v * 0.05 for k, v in p.items()}
mu2, s2, _ = latent_by_hand(h, p_small, eps)
assert kl_by_hand(mu2, s2) < kl_min, "this example should sit below the floor"
_, g_below = latent_kl_backward_by_hand(np.zeros_like(G), 1.0, h, p_small, eps, mu2, s2, w, kl_min)
assert all(np.all(g == 0) for g in g_below.values()), "below the floor the KL gradient must be 0"

# %% [markdown]
# ## 5. KL annealing
# Early in training the decoder has not learned to use z, and a full-weight KL would push every
# encoding onto the prior before it carries any information ("posterior collapse"). So the KL
# weight starts at w_start = 0.01 and approaches w_KL = 0.5:
#
#     w_step = w_KL - (w_KL - w_start) * R^step,    R = 0.99995  (half-way after ~14k steps)

# %%
hp = ms.HParams()


def kl_weight_by_hand(step):
    return hp.kl_weight - (hp.kl_weight - hp.kl_weight_start) * hp.kl_decay_rate ** step


steps = np.arange(0, 100001, 1000 if FAST else 100)
ws = np.array([kl_weight_by_hand(t) for t in steps])
ws_lib = np.array([optim.kl_weight(hp, int(t)) for t in steps])
assert np.allclose(ws, ws_lib, rtol=0, atol=1e-15), "KL schedule differs from optim.kl_weight"
assert abs(ws[0] - 0.01) < 1e-15 and abs(ws[-1] - 0.5) < 0.005, "schedule runs from 0.01 to ~0.5"
half = np.log(0.5) / np.log(hp.kl_decay_rate)
print(f"KL weight reaches the half-way point after {half:.0f} steps")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].plot(steps, ws)
axes[0].set_xlabel("training step")
axes[0].set_ylabel("KL weight w_step")
axes[0].set_title("KL annealing (R = 0.99995)", fontsize=9)
kls = np.linspace(0, 1, 200)
axes[1].plot(kls, 0.5 * np.maximum(kls, kl_min), label="w * max(KL, 0.2), w = 0.5")
axes[1].plot(kls, 0.5 * kls, "--", color="0.6", label="w * KL (no floor)")
axes[1].set_xlabel("raw KL")
axes[1].set_ylabel("KL term of the loss")
axes[1].set_title("the floor: no gradient below KL_min", fontsize=9)
axes[1].legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "06_kl_schedule_and_floor.png", dpi=100)
plt.close(fig)
print("lesson 06 checks passed")

# %% [markdown]
# ## Exercises
# 1. Derive the KL between two diagonal Gaussians N(mu1, s1) and N(mu2, s2) and check it by
#    Monte Carlo as in section 3.
# 2. Why parameterize s = log sigma^2 rather than sigma directly? What would the gradient of
#    the KL with respect to sigma look like near sigma = 0?
# 3. With `kl_tolerance = 0.2` nats per unit and N_z = 128, how many nats of information can
#    z carry "for free"? Relate that to how much detail a reconstruction can keep.
# 4. Plot the variance of the score-function estimator against mu. Where is it worst?
