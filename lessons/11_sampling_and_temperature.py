"""Lesson 11: sampling a sketch, one row at a time, and what temperature does.

What you will build: the generation loop of sketch-rnn. At each step the decoder's 6M + 3 outputs
define a distribution over the next row; you draw the pen state and a mixture component from
softmaxes sharpened by the temperature tau, then the offset from that component's correlated
bivariate normal (widened by sqrt(tau)), and feed the row back in until the pen says "end".
You write the categorical sampler, one sampling step and the whole loop by hand, replay exactly
the random numbers ``minisketch.sampling`` uses, and require identical sketches. Then you check
the sampler's statistics against the mixture's formulas and sweep tau from 0.01 to 1.

What you need: lessons 07 (the mixture) and 08 (the decoder). The model is the one that lesson
10 saves (``lessons/out/10_model.npz``, in full mode when it is there), else the trained model
shipped in the package, ``builtin:shapes`` (always in fast mode).

How to run:  python lessons/11_sampling_and_temperature.py                  (full, < 1 min)
             MINISKETCH_FAST=1 python lessons/11_sampling_and_temperature.py  (fast, tests)
Figures go to lessons/out/.
"""
# %%
from course import FAST, OUT, drawable, rng, save_grid, savefig, trained_model

import math

import numpy as np
import matplotlib.pyplot as plt
from minisketch import render, sampling

# %% [markdown]
# ## 1. A model to sample from
# float64, so the hand loop and the library agree to rounding.

# %%
model, model_name = trained_model(dtype="float64")
print(f"sampling from {model_name}: {model}")
M = model.hp.num_mixture

# %% [markdown]
# ## 2. Temperature on a categorical distribution
# The paper's eq. 9 divides the logits of both softmaxes by a temperature $\tau$:
#
# $$
# p_k(\tau) = \frac{e^{l_k / \tau}}{\sum_j e^{l_j / \tau}} .
# $$
#
# $\tau = 1$ is the model's own distribution; $\tau \to 0$ puts all mass on the argmax;
# $\tau > 1$ flattens it. Sampling with one uniform $u$ per draw, by the inverse CDF: the
# first $k$ whose cumulative weight reaches $u$ times the total.

# %%
def categorical_by_hand(logits, u, tau):
    w = np.exp((logits - logits.max(axis=1, keepdims=True)) / tau)
    c = np.cumsum(w, axis=1)
    return np.array([int(np.argmax(c[i] >= u[i] * c[i, -1])) for i in range(len(u))])


rng = rng(0)
logits = rng.standard_normal((500, 5)) * 2
u = 1.0 - rng.random(500)                      # in (0, 1], as the library draws them
for tau in (0.1, 0.5, 1.0, 2.0):
    mine = categorical_by_hand(logits, u, tau)
    lib = sampling.categorical(logits.copy(), u, tau)
    assert np.array_equal(mine, lib), f"categorical draws differ at tau={tau}"
print("categorical sampler: hand draws equal sampling.categorical at tau 0.1, 0.5, 1, 2")

taus = np.logspace(-2, 1, 40)
l0 = np.array([2.0, 1.0, 0.5, -1.0, -3.0])
ent = []
for tau in taus:
    p = np.exp((l0 - l0.max()) / tau)
    p /= p.sum()
    ent.append(-(p * np.log(p + 1e-300)).sum())
assert ent[0] < 1e-6 and abs(ent[-1] - np.log(5)) < 0.1, \
    "entropy: 0 at tau -> 0, log K as tau grows"

# %% [markdown]
# ## 3. One sampling step
# Draw the pen state and a mixture component with the tempered softmaxes, then the offset from
# that component; eq. 9 also scales each variance by $\tau$, i.e. each $\sigma$ by
# $\sqrt\tau$:
#
# $$
# \begin{aligned}
# \text{pen} &\sim \operatorname{softmax}(\hat q / \tau), \qquad
# k \sim \operatorname{softmax}(\hat\pi / \tau) \\
# \sigma_x &= e^{\hat\sigma_{x,k}} \sqrt\tau, \qquad \sigma_y = e^{\hat\sigma_{y,k}} \sqrt\tau,
# \qquad \rho = \tanh \hat\rho_k \\
# \Delta x &= \mu_{x,k} + \sigma_x e_1 \\
# \Delta y &= \mu_{y,k} + \sigma_y \left(\rho e_1 + \sqrt{1 - \rho^2} \, e_2\right),
# \qquad e_1, e_2 \sim N(0, 1) \text{ independent.}
# \end{aligned}
# $$
#
# The last line gives $\operatorname{Var}(\Delta y) = \sigma_y^2$ and
# $\operatorname{Cov}(\Delta x, \Delta y) = \rho \sigma_x \sigma_y$: a correlated pair from
# two independent normals (a $2 \times 2$ Cholesky factor).
#
# > **Your turn.** `lessons/exercises/11_sampling_and_temperature.py`: the categorical draw and
# > one sampling step; `python lessons/grade.py 11` replays the library's random numbers
# > through them.

# %%
def sample_step_by_hand(y, M, tau, u, e):
    pen = categorical_by_hand(y[:, :3], u[:, 0], tau)
    k = categorical_by_hand(y[:, 3:3 + M], u[:, 1], tau)
    rows = np.arange(len(y))
    mx, my = y[rows, 3 + M + k], y[rows, 3 + 2 * M + k]
    sx = np.exp(y[rows, 3 + 3 * M + k]) * math.sqrt(tau)
    sy = np.exp(y[rows, 3 + 4 * M + k]) * math.sqrt(tau)
    rho = np.tanh(y[rows, 3 + 5 * M + k])
    dx = mx + sx * e[:, 0]
    dy = my + sy * (rho * e[:, 0] + np.sqrt(1 - rho ** 2) * e[:, 1])
    return np.stack([dx, dy], axis=1), pen, k


y_demo = rng.standard_normal((6, 6 * M + 3))
u2, e2 = 1.0 - rng.random((6, 2)), rng.standard_normal((6, 2))
d_h, pen_h, k_h = sample_step_by_hand(y_demo, M, 0.7, u2, e2)
d_l, pen_l, k_l = sampling.sample_step(y_demo, M, 0.7, u2, e2)
assert np.array_equal(pen_h, pen_l) and np.array_equal(k_h, k_l), "pen/component draws differ"
assert np.allclose(d_h, d_l, rtol=0, atol=1e-14), "offsets differ from sample_step (1e-14)"

# statistics of the offset sampler against the component's formulas
n = 4000 if FAST else 200000
y1 = np.zeros((n, 6 * M + 3))
y1[:, 3] = 50.0                                   # component 0 always chosen
y1[:, 3 + M], y1[:, 3 + 2 * M] = 0.3, -0.2        # mu_x, mu_y
y1[:, 3 + 3 * M], y1[:, 3 + 4 * M] = np.log(0.5), np.log(0.2)
y1[:, 3 + 5 * M] = np.arctanh(0.8)                # rho = 0.8
for tau in (1.0, 0.25):
    d, _, _ = sampling.sample_step(y1, M, tau, 1.0 - rng.random((n, 2)),
                                   rng.standard_normal((n, 2)))
    cov = np.cov(d.T)
    want = tau * np.array([[0.25, 0.8 * 0.5 * 0.2], [0.8 * 0.5 * 0.2, 0.04]])
    tol = 6 * np.sqrt(2.0 / n) * np.sqrt(np.outer(np.diag(want), np.diag(want)))
    print(f"tau={tau}: sample covariance {np.round(cov.ravel(), 4)}, "
          f"formula {np.round(want.ravel(), 4)}")
    assert np.all(np.abs(cov - want) < tol), "sample covariance off by more than 6 std errors"
    assert np.allclose(d.mean(0), [0.3, -0.2], atol=6 * np.sqrt(want.diagonal() / n)), "mean off"

# %% [markdown]
# ## 4. The whole loop, with the library's random numbers
# The library draws, from `np.random.default_rng(seed)`: $z \sim N(0, I)$ first (conditional
# model, no $z$ given), then for every block of 64 steps the uniforms `1 - rng.random((64, n, 2))`
# and normals `rng.standard_normal((64, n, 2))`. Replaying exactly that, the hand loop must
# produce the same sketch. Each sampled row becomes the next input: the decoder now reads its
# own drawing, where training read the data (teacher forcing, lesson 08).

# %%
def sample_by_hand(model, tau, seed, max_len):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((1, model.hp.z_size)) if model.hp.conditional else None
    state = model.initial_state(z, 1)
    x = np.array([[0.0, 0.0, 1.0, 0.0, 0.0]])       # S0
    rows = []
    for t in range(max_len):
        if t % 64 == 0:
            steps = min(64, max_len - t)
            U, E = 1.0 - rng.random((steps, 1, 2)), rng.standard_normal((steps, 1, 2))
        y, state = model.decoder_step(x, z, state)
        d, pen, _ = sample_step_by_hand(y, M, tau, U[t % 64], E[t % 64])
        if pen[0] == 2:                               # p3: the sketch has ended
            break
        rows.append([d[0, 0], d[0, 1], float(pen[0] == 1)])
        x = np.zeros((1, 5))
        x[0, :2], x[0, 2 + pen[0]] = d[0], 1.0
    s3 = np.array(rows).reshape(-1, 3)
    s3[:, :2] *= model.scale_factor                    # back to data units
    return s3


max_len = model.hp.max_seq_len
for seed in range(3):
    mine = sample_by_hand(model, 0.6, seed, max_len)
    lib = model.sample(n=1, temperature=0.6, seed=seed)[0]
    assert mine.shape == lib.shape, f"seed {seed}: {len(mine)} rows by hand, {len(lib)} by library"
    assert np.allclose(mine, lib, rtol=1e-6, atol=1e-6), f"seed {seed}: sketches differ (1e-6)"
print(f"hand sampling loop == model.sample for 3 seeds (lengths "
      f"{[len(model.sample(temperature=0.6, seed=s)[0]) for s in range(3)]})")

# %% [markdown]
# ## 5. A temperature sweep
# Rows: different $z \sim N(0, I)$; columns: $\tau$ from 0.01 (nearly greedy, smooth,
# repetitive) to 1 (the model's full variability, messier). The paper shows the same kind of
# grid.

# %%
temps = render.SWEEP_TEMPERATURES
n_rows = 2 if FAST else 5
zs = np.random.default_rng(42).standard_normal((n_rows, model.hp.z_size))
rows = []
for i in range(n_rows):
    row = [model.sample(z=zs[i], temperature=t, seed=100 + i)[0] for t in temps]
    rows.append(drawable(row))
svg = render.temperature_sweep_svg(rows, temperatures=temps)
(OUT / "11_temperature_sweep.svg").write_text(svg, encoding="utf-8")
save_grid([s for row in rows for s in row], "11_temperature_sweep.png",
          "What does temperature do to a sketch? (rows: z; columns: tau)", ncols=len(temps),
          labels=[f"tau={t:g}" for _ in rows for t in temps])
greedy = [model.sample(z=zs[i], greedy=True)[0] for i in range(n_rows)]
greedy_again = [model.sample(z=zs[i], greedy=True, seed=7)[0] for i in range(n_rows)]
assert all(np.array_equal(a, b) for a, b in zip(greedy, greedy_again)), \
    "greedy decoding must not depend on the seed"

fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogx(taus, ent)
ax.axhline(np.log(5), color="0.6", ls=":", label="log K (uniform)")
ax.set_xlabel("temperature tau")
ax.set_ylabel("entropy of softmax(l / tau)")
ax.set_title("How random is a softmax at temperature tau?", fontsize=9)
ax.legend(fontsize=8)
savefig(fig, "11_entropy_vs_temperature.png")


def travel(s):
    """Total pen travel of a sketch (px), a rough measure of how much it wanders."""
    return float(np.hypot(s[:, 0], s[:, 1]).sum())


lo = np.mean([travel(model.sample(z=z, temperature=0.05, seed=1)[0]) for z in zs])
hi = np.mean([travel(model.sample(z=z, temperature=1.0, seed=1)[0]) for z in zs])
print(f"mean pen travel: tau 0.05 -> {lo:.0f} px, tau 1.0 -> {hi:.0f} px")
print("lesson 11 checks passed")

# %% [markdown]
# ## Exercises
# Graded: `lessons/exercises/11_sampling_and_temperature.py` (`python lessons/grade.py 11`).
#
# 1. The paper scales sigma by sqrt(tau). Derive what that means for the offset's covariance,
#    and check it with the statistics code of section 3 at tau = 0.1.
# 2. Implement top-p ("nucleus") sampling for the pen and component choices and compare sweeps.
# 3. Why does sampling at tau -> 0 often produce a sketch that never ends (it runs to N_max)?
#    Count how many greedy samples of the trained model hit `max_seq_len`.
# 4. The library decodes many sketches at once and drops finished rows from the batch. Time
#    `model.sample(n=64)` against 64 calls of `model.sample(n=1)`.
