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
from course import FAST, rng, savefig

import numpy as np
import matplotlib.pyplot as plt
import minisketch as ms
from minisketch import gradcheck, optim
from minisketch.layers import latent

rng = rng(0)

# %% [markdown]
# ## 0. Why a VAE?
# The decoder could be trained alone, as a model of "what comes next" (a decoder-only
# sketch-rnn does exactly that, lesson 14). The encoder and a latent vector $z$ add a *code* for
# the whole sketch: the decoder learns to draw the sketch that $z$ describes, so we can encode a
# drawing and redraw it, walk between two drawings, or do arithmetic on them (lesson 12). A
# plain autoencoder would map each sketch to a point and leave the space between points
# meaningless. The variational autoencoder (Kingma & Welling 2014) instead encodes each sketch
# as a small Gaussian cloud $N(\mu, \sigma^2)$, trains the decoder on random points of that
# cloud, and pulls every cloud toward the prior $N(0, I)$ with a KL penalty: the codes then fill
# one region without holes, and *any* $z$ from $N(0, I)$ decodes to a plausible sketch, which
# is how lesson 01's model drew from random $z$.
#
# ## 1. From h to a distribution over z
# The paper's eq. 2, with $s = \hat\sigma$ the log variance:
#
# $$
# \mu = h W_\mu + b_\mu, \qquad s = h W_s + b_s, \qquad
# z = \mu + e^{s/2} \odot \epsilon, \quad \epsilon \sim N(0, I),
# $$
#
# all $[B, N_z]$. $s = \log \sigma^2$ may be any real number, so the layer needs no
# constraint to keep $\sigma$ positive. The noise $\epsilon$ is drawn by the caller (the
# model seeds it by step, so a loss is a deterministic function of the parameters and can be
# gradient-checked).

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
# We need $\partial / \partial \mu$ of an expectation $E_z[f(z)]$. Two unbiased estimators
# exist:
#
# | estimator | one-sample estimate |
# |---|---|
# | pathwise (reparameterized) | $f'(\mu + \sigma \epsilon)$: differentiate $f$ through the sample |
# | score function (REINFORCE) | $f(z) \, \partial \log q(z) / \partial \mu = f(z) (z - \mu) / \sigma^2$ |
#
# For $f(z) = z^2$ the exact answer is $\partial_\mu (\mu^2 + \sigma^2) = 2 \mu$. Both are
# right on average, but the pathwise one has far less variance, and it is what lets a VAE train
# with one sample per sketch.

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
ax.set_title("Which one-sample estimate of d/dmu E[z^2] is less noisy? (z ~ N(0.7, 0.5^2))",
             fontsize=9)
ax.legend(fontsize=8)
savefig(fig, "06_gradient_estimators.png")

# %% [markdown]
# ## 3. The KL divergence to the prior, derived
# For one unit, $q = N(\mu, \sigma^2)$, $p = N(0, 1)$; the $\log \sqrt{2\pi}$ terms cancel,
# $E_q[(z - \mu)^2] = \sigma^2$ and $E_q[z^2] = \sigma^2 + \mu^2$:
#
# $$
# \begin{aligned}
# \mathrm{KL}(q \,\|\, p) &= E_q[\log q(z) - \log p(z)] \\
# &= E_q\left[-\log \sigma - \frac{(z - \mu)^2}{2 \sigma^2} + \frac{z^2}{2}\right] \\
# &= -\log \sigma - \frac{1}{2} + \frac{\sigma^2 + \mu^2}{2} \\
# &= -\frac{1}{2} \left(1 + s - \mu^2 - e^s\right), \qquad s = \log \sigma^2 .
# \end{aligned}
# $$
#
# sketch-rnn averages over the batch *and* the $N_z$ units (the paper's eq. 11, per sketch):
#
# $$
# L_{KL} = -\frac{1}{2 B N_z} \sum_{b, k} \left(1 + s_{bk} - \mu_{bk}^2 - e^{s_{bk}}\right).
# $$

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
print(f"KL closed form {closed:.5f}, Monte Carlo {terms.mean():.5f} "
      f"+- {terms.std() / np.sqrt(n_mc):.5f}")
assert abs(terms.mean() - closed) < 5 * terms.std() / np.sqrt(n_mc), \
    "Monte Carlo KL is more than 5 standard errors from the closed form"

# %% [markdown]
# ## 4. Backward: through the sample and through the KL
#
# | forward | backward |
# |---|---|
# | $z = \mu + e^{s/2} \epsilon$ | $d\mu \mathrel{+}= dz$, $\; ds \mathrel{+}= dz \odot \epsilon \odot e^{s/2} / 2$ |
# | $L_{KL} = -c \sum (1 + s - \mu^2 - e^s)$, $c = 1 / (2 B N_z)$ | $d\mu \mathrel{+}= dL_{KL} \cdot 2 c \mu$, $\; ds \mathrel{+}= dL_{KL} \cdot c (e^s - 1)$ |
# | $\mu = h W_\mu + b_\mu$, $s = h W_s + b_s$ | the linear backward of lesson 02, twice |
#
# The objective's KL term is $w \max(L_{KL}, KL_{\min})$: its gradient is $w$ above the
# floor and exactly 0 below it. The floor stops the optimizer from squeezing the last nats of
# information out of $z$ (the "KL sticks at 0.2" that users see is this floor at work).
#
# > **Your turn.** `lessons/exercises/06_latent_variable.py`: the sample, the KL and both
# > gradients; `python lessons/grade.py 06` grades them.

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
# Early in training the decoder has not learned to use $z$, and a full-weight KL would push
# every encoding onto the prior before it carries any information ("posterior collapse"). So
# the KL weight starts at $w_{\text{start}} = 0.01$ and approaches $w_{KL} = 0.5$ (the paper's
# annealed loss in section 3.4; the form below is the reference code's):
#
# $$
# w_{\text{step}} = w_{KL} - (w_{KL} - w_{\text{start}}) R^{\text{step}}, \qquad R = 0.99995
# \quad (\text{half-way after about 14k steps}).
# $$

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
axes[0].set_title("How fast does the KL weight rise? (R = 0.99995)", fontsize=9)
kls = np.linspace(0, 1, 200)
axes[1].plot(kls, 0.5 * np.maximum(kls, kl_min), label="w * max(KL, 0.2), w = 0.5")
axes[1].plot(kls, 0.5 * kls, "--", color="0.6", label="w * KL (no floor)")
axes[1].set_xlabel("raw KL")
axes[1].set_ylabel("KL term of the loss")
axes[1].set_title("Where does the KL term stop pushing? (floor 0.2)", fontsize=9)
axes[1].legend(fontsize=8)
savefig(fig, "06_kl_schedule_and_floor.png")
print("lesson 06 checks passed")

# %% [markdown]
# ## Exercises
# Graded: `lessons/exercises/06_latent_variable.py` (`python lessons/grade.py 06`).
#
# 1. Derive the KL between two diagonal Gaussians N(mu1, s1) and N(mu2, s2) and check it by
#    Monte Carlo as in section 3.
# 2. Why parameterize s = log sigma^2 rather than sigma directly? What would the gradient of
#    the KL with respect to sigma look like near sigma = 0?
# 3. With `kl_tolerance = 0.2` nats per unit and N_z = 128, how many nats of information can
#    z carry "for free"? Relate that to how much detail a reconstruction can keep.
# 4. Plot the variance of the score-function estimator against mu. Where is it worst?
