"""Lesson 09: the optimizer and its schedules: clipped Adam, the learning rate, the KL weight.

What you will build: the optimizer sketch-rnn uses, written by hand: Adam with bias correction,
gradients clipped *element-wise* to [-1, 1] rather than by their global norm, and the two
schedules (learning-rate decay, KL-weight annealing), each compared with ``minisketch.optim``.
You will see what Adam's per-coordinate step buys and what clipping takes away (Adam alone does
not care how the loss is scaled; clipped Adam does), and what the paper's schedules and the
``quick`` preset's shorter ones look like over a training run. Lesson 10 then uses all of it.

What you need: lesson 08 (the loss and its gradient, and the overfitting check that already
used Adam); lesson 06 (the KL term).

How to run:  python lessons/09_optimizer_and_schedules.py                    (full, seconds)
             MINISKETCH_FAST=1 python lessons/09_optimizer_and_schedules.py  (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
from course import FAST, rng, savefig

import numpy as np
import matplotlib.pyplot as plt
import minisketch as ms
from minisketch import optim
from minisketch.train import PRESETS

rng = rng(0)

# %% [markdown]
# ## 1. Adam with element-wise clipping, by hand
# Plain gradient descent takes the same step size in every coordinate, so the learning rate
# must suit the steepest one. Adam (Kingma & Ba 2015) divides each coordinate's step by a
# running estimate of its gradient's size, so every parameter moves at about the same pace.
# For every parameter, with $g$ its gradient, at update $t = 1, 2, \dots$:
#
# $$
# \begin{aligned}
# g &\leftarrow \min(\max(g, -1), 1) && \text{element-wise clipping, not a global norm} \\
# m &\leftarrow \beta_1 m + (1 - \beta_1) g && \text{running mean of gradients}, \ \beta_1 = 0.9 \\
# v &\leftarrow \beta_2 v + (1 - \beta_2) g^2
#   && \text{running mean of squares}, \ \beta_2 = 0.999 \\
# \theta &\leftarrow \theta - \eta \,
#   \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + 10^{-8}}
# \end{aligned}
# $$
#
# The bias corrections undo the zero start of $m$ and $v$: after one step $m = 0.1 g$, and
# $m / (1 - 0.9) = g$. So the first step moves every coordinate by $\eta$ against the sign of
# its gradient, whatever its size.

# %%
def clip_adam_by_hand(theta, grad, m, v, t, lr, clip, b1=0.9, b2=0.999, eps=1e-8):
    g = np.clip(grad, -clip, clip)
    m[:] = b1 * m + (1 - b1) * g
    v[:] = b2 * v + (1 - b2) * g * g
    theta -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


P = 1000
theta_h, theta_l = np.zeros(P), np.zeros(P)
m_h, v_h, m_l, v_l = (np.zeros(P) for _ in range(4))
for t in range(1, 6):
    grad = 2.0 * rng.standard_normal(P)                 # some entries beyond the clip bound
    clip_adam_by_hand(theta_h, grad, m_h, v_h, t, lr=1e-3, clip=1.0)
    optim.clip_adam_update(theta_l, grad, m_l, v_l, t, lr=1e-3, clip=1.0)
err = float(np.abs(theta_h - theta_l).max())
print(f"5 Adam steps: max |hand - optim.clip_adam_update| = {err:.1e}")
assert err < 1e-15, f"hand Adam differs from the library by {err:.1e} (> 1e-15)"
theta1, m1, v1 = np.zeros(3), np.zeros(3), np.zeros(3)
clip_adam_by_hand(theta1, np.array([1e-4, -3.0, 50.0]), m1, v1, 1, lr=1e-3, clip=1.0)
print("first step for gradients (1e-4, -3, 50):", theta1)
assert np.allclose(theta1, [-1e-3, 1e-3, -1e-3], rtol=1e-3), "Adam's first step is lr * sign(g)"

# %% [markdown]
# ### Does the scale of the loss matter?
# Without clipping, multiplying the loss by $c > 0$ multiplies $m$ by $c$ and $\sqrt{v}$ by
# $c$: the update is unchanged (up to the $10^{-8}$), so Adam does not care how the loss is
# scaled. Clipping breaks that: it caps gradients at 1 *in the loss's units*, so the larger
# the loss's scale, the more coordinates are clipped, and a clipped coordinate's update no
# longer follows its gradient. Watch it on a badly conditioned quadratic,
# $L = \tfrac{1}{2}(x_1^2 + 100 x_2^2)$, started at $(3, 3)$, with the loss as it is and times 100.

# %%
curv = np.array([1.0, 100.0])
steps = 300
runs = {}
for clip in (np.inf, 1.0):
    for c in (1.0, 100.0):
        x, m, v, losses = np.array([3.0, 3.0]), np.zeros(2), np.zeros(2), []
        for t in range(1, steps + 1):
            clip_adam_by_hand(x, c * curv * x, m, v, t, lr=0.05, clip=clip)
            losses.append(0.5 * float(np.sum(curv * x * x)))
        runs[(clip, c)] = np.array(losses)
same = np.max(np.abs(runs[(np.inf, 1.0)] - runs[(np.inf, 100.0)]) / runs[(np.inf, 1.0)])
apart = runs[(1.0, 100.0)][-1] / runs[(1.0, 1.0)][-1]
print(f"no clipping: loss x1 and x100 give the same path (relative difference {same:.1e}); "
      f"clipping at 1: after {steps} steps the x100 run's loss is {apart:.1e} times the x1 run's")
assert same < 1e-6, "without clipping Adam's path must not depend on the loss scale"
assert apart > 1e3, "with clipping at 1 the loss scale must change the path"

fig, ax = plt.subplots(figsize=(6, 3.4))
for (clip, c), losses in runs.items():
    ax.semilogy(losses, "-" if clip == np.inf else "--", lw=1.5 if c == 1 else 2.5,
                alpha=1.0 if c == 1 else 0.5,
                label=f"{'no clipping' if clip == np.inf else 'clip at 1'}, loss x{c:g}")
ax.set_xlabel("Adam step")
ax.set_ylabel("L (unscaled)")
ax.set_title("Does multiplying the loss by 100 change Adam's path?", fontsize=9)
ax.legend(fontsize=8)
savefig(fig, "09_adam_loss_scale.png")

# %% [markdown]
# ### Element-wise versus global-norm clipping
# Why clip at all? A recurrent network's gradient occasionally explodes (a long product of
# Jacobians, lesson 04); one such step can undo hours of training. One exploding entry, the
# rest ordinary: global-norm clipping rescales the whole vector, so the ordinary entries nearly
# vanish; element-wise clipping (what sketch-rnn's reference code does) caps only the outlier.

# %%
g = np.array([0.3, -0.2, 0.1, 400.0])
elementwise = np.clip(g, -1, 1)
global_norm = g * min(1.0, 1.0 / np.linalg.norm(g))
print("gradient        ", g)
print("element-wise    ", elementwise)
print("global norm 1.0 ", np.round(global_norm, 6))
assert np.allclose(elementwise[:3], g[:3]) and global_norm[0] < 1e-3, \
    "element-wise clipping keeps small entries; global-norm clipping shrinks them"

# %% [markdown]
# ## 2. Schedules
# Two numbers change during training. The learning rate decays toward a floor, so late steps
# refine rather than jump; the KL weight rises from almost 0, so the encoder learns to put
# information into $z$ before the KL term pulls it toward the prior (lesson 06):
#
# $$
# \eta_{\text{step}} = (\eta - \eta_{\min}) \, d^{\,\text{step}} + \eta_{\min}, \qquad
# w_{\text{step}} = w_{KL} - (w_{KL} - w_{\text{start}}) \, R^{\text{step}} .
# $$
#
# The paper's values ($\eta = 10^{-3}$, $d = 0.9999$, $R = 0.99995$) suit 100k steps and more.
# The `quick` preset of `python -m minisketch.train` shortens both for a few thousand steps;
# the numbers below say how far each gets.

# %%
hp_paper = ms.HParams()
hp_quick = hp_paper.replace(**PRESETS["quick"]["hparams"])
print("quick preset:", PRESETS["quick"]["hparams"])


def lr_by_hand(hp, step):
    return (hp.learning_rate - hp.min_learning_rate) * hp.decay_rate ** step + hp.min_learning_rate


def kl_weight_by_hand(hp, step):
    return hp.kl_weight - (hp.kl_weight - hp.kl_weight_start) * hp.kl_decay_rate ** step


for hp_ in (hp_paper, hp_quick):
    for s in (0, 1, 100, 1000, 2999):
        assert abs(lr_by_hand(hp_, s) - optim.learning_rate(hp_, s)) < 1e-18, "lr schedule differs"
        assert abs(kl_weight_by_hand(hp_, s) - optim.kl_weight(hp_, s)) < 1e-15, "KL weight differs"
for name, hp_ in (("paper", hp_paper), ("quick", hp_quick)):
    kl99 = np.log(0.01) / np.log(hp_.kl_decay_rate)     # steps to close 99% of the KL gap
    lr3k = lr_by_hand(hp_, 3000)
    print(f"{name:5s}: the KL weight closes 99% of its way to {hp_.kl_weight} in {kl99:5.0f} "
          "steps; "
          f"learning rate at step 3000 {lr3k:.2e} ({lr3k / hp_.learning_rate:.0%} of its start "
          f"{hp_.learning_rate:g}, floor {hp_.min_learning_rate:g})")

steps_axis = np.arange(0, 3001 if FAST else 10001, 10)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for hp_, name in ((hp_paper, "paper"), (hp_quick, "quick preset")):
    axes[0].plot(steps_axis, [optim.learning_rate(hp_, int(s)) for s in steps_axis], label=name)
    axes[1].plot(steps_axis, [optim.kl_weight(hp_, int(s)) for s in steps_axis], label=name)
axes[0].set_title("How fast does the learning rate decay?", fontsize=9)
axes[1].set_title("How fast does the KL weight reach 0.5?", fontsize=9)
for ax in axes:
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
savefig(fig, "09_schedules.png")
print("lesson 09 checks passed")

# %% [markdown]
# So the quick preset's KL weight is at full strength within the first thousand steps, while
# its learning rate is still above half its starting value at step 3000: a run of a few
# thousand steps sees the whole KL schedule but only the start of the learning-rate decay.
#
# > **Your turn.** `lessons/exercises/09_optimizer_and_schedules.py`: clipped Adam and the two
# > schedules; `python lessons/grade.py 09` grades them.
#
# ## Exercises
# Graded: `lessons/exercises/09_optimizer_and_schedules.py` (`python lessons/grade.py 09`).
#
# 1. Replace element-wise clipping by global-norm clipping (norm 1.0) in `clip_adam_by_hand` and
#    rerun the quadratic of section 1 at loss scales 1 and 100. Which one still depends on the
#    scale?
# 2. Drop the bias corrections. How large is the first step now, and how many steps does it
#    take for the missing correction to stop mattering (compare $\beta_2^t$ with 1)?
# 3. With $d = 0.9999$, how many steps until the paper's learning rate is half-way to its
#    floor? Check against `optim.learning_rate`.
# 4. Lesson 10 trains with these pieces. Predict what its loss curve does around the step
#    where the KL weight reaches full strength, then look.
