"""Lesson 10: the training loop: Adam, element-wise clipping, schedules, and a real small model.

What you will build: the optimizer sketch-rnn uses, written by hand (Adam with bias correction,
gradients clipped *element-wise* to [-1, 1] rather than by global norm) and the two schedules
(learning-rate decay, KL-weight annealing), each compared with ``minisketch.optim``. Then a
complete training loop of your own around ``SketchRNN.loss_and_grad``: seeded, augmented
batches, periodic validation over the whole validation set, the best parameters kept, a loss
plot and a grid of samples. The full run trains a small conditional model on ``builtin:shapes``
on the CPU (the schedules of the ``quick`` preset of ``python -m minisketch.train`` with a
smaller network, on the Numba backend), for at most 12 minutes of training, and saves it to
``lessons/out/10_model.npz`` for lessons 11-12.

What you need: lesson 08 (the loss and its gradient); lesson 06 (the KL schedule).

How to run:  python lessons/10_training.py                    (full: up to ~13 minutes on 2 cores)
             MINISKETCH_FAST=1 python lessons/10_training.py  (fast: a tiny model, seconds)
Figures go to lessons/out/ (10_schedules.png, 10_loss.png, 10_samples.png, ...).
"""
# %%
import os
import sys
import time
from pathlib import Path

# The matrices of a small model are small: one BLAS thread is faster than two fighting over a
# shared machine (measured here: 0.45 s per step instead of 1.7-5 s). Set before NumPy loads;
# export OPENBLAS_NUM_THREADS yourself to override.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import minisketch as ms
from minisketch import optim, render, shapes, strokes
from minisketch.batching import eval_batches
from minisketch.train import PRESETS, evaluate as library_evaluate

FAST = os.environ.get("MINISKETCH_FAST", "0") == "1"
OUT = ROOT / "lessons" / "out"
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Adam with element-wise clipping, by hand
# For every parameter, with g its gradient, at update t = 1, 2, ...:
#
#     g = clip(g, -1, 1)                          element-wise (SPEC 2: not a global norm)
#     m = b1 m + (1 - b1) g                       running mean of gradients      (b1 = 0.9)
#     v = b2 v + (1 - b2) g^2                     running mean of squares        (b2 = 0.999)
#     theta -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + 1e-8)
#
# The bias corrections undo the zero start of m and v: after one step m = 0.1 g, and
# m / (1 - 0.9) = g. The step size is then about lr in every coordinate whatever the gradient's
# scale: Adam is invariant to rescaling the loss.

# %%
def clip_adam_by_hand(theta, grad, m, v, t, lr, clip, b1=0.9, b2=0.999, eps=1e-8):
    g = np.clip(grad, -clip, clip)
    m[:] = b1 * m + (1 - b1) * g
    v[:] = b2 * v + (1 - b2) * g * g
    theta -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


rng = np.random.default_rng(0)
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
# first step: every coordinate moves by lr (up to eps) against the sign of its gradient
theta1, m1, v1 = np.zeros(3), np.zeros(3), np.zeros(3)
clip_adam_by_hand(theta1, np.array([1e-4, -3.0, 50.0]), m1, v1, 1, lr=1e-3, clip=1.0)
assert np.allclose(theta1, [-1e-3, 1e-3, -1e-3], rtol=1e-3), "Adam's first step is lr * sign(g)"

# %% [markdown]
# ### Element-wise versus global-norm clipping
# One exploding entry, the rest ordinary. Global-norm clipping rescales the whole vector, so the
# ordinary entries nearly vanish; element-wise clipping caps only the outlier. (With Adam the
# difference is smaller than for SGD, but it still changes m and v.)

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
#
#     lr_step = (lr - lr_min) * decay^step + lr_min
#     w_step  = w_KL - (w_KL - w_start) * R^step
#
# The paper's values (lr 1e-3, decay 0.9999, R 0.99995) suit 100k+ steps. The `quick` preset
# shortens both so that a model trained for ~1500 steps sees the whole schedule.

# %%
hp_quick = ms.HParams().replace(**PRESETS["quick"]["hparams"])
print("quick preset:", PRESETS["quick"]["hparams"])


def lr_by_hand(hp, step):
    return (hp.learning_rate - hp.min_learning_rate) * hp.decay_rate ** step + hp.min_learning_rate


steps_axis = np.arange(0, 3001, 10)
for hp_ in (ms.HParams(), hp_quick):
    for s in (0, 1, 100, 1000, 2999):
        assert abs(lr_by_hand(hp_, s) - optim.learning_rate(hp_, s)) < 1e-18, "lr schedule differs"
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for hp_, name in ((ms.HParams(), "paper"), (hp_quick, "quick preset")):
    axes[0].plot(steps_axis, [optim.learning_rate(hp_, int(s)) for s in steps_axis], label=name)
    axes[1].plot(steps_axis, [optim.kl_weight(hp_, int(s)) for s in steps_axis], label=name)
axes[0].set_title("learning rate", fontsize=9)
axes[1].set_title("KL weight", fontsize=9)
for ax in axes:
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "10_schedules.png", dpi=100)
plt.close(fig)

# %% [markdown]
# ## 3. Data and model
# Full run: the whole `builtin:shapes` set (4900 training sketches of 7 classes) and the
# `quick` preset's schedules with a smaller network (encoder 64 units each way, decoder 192,
# N_z 32, M 10: ~0.23M parameters) on the Numba backend (lesson 14: the same numbers as NumPy,
# with the pointwise math compiled). On a CPU, more updates beat a bigger model: this one takes
# ~0.2 s per step, so it gets ~3000 updates in the time budget. Fast run: 8 sketches per class
# and a tiny model on the NumPy backend.

# %%
if FAST:
    splits, labels = shapes.generate(seed=0, sizes={"train": 8, "valid": 2, "test": 2})
    train_set = [strokes.clamp_stroke3(s) for s in splits["train"]]
    valid_set = [strokes.clamp_stroke3(s) for s in splits["valid"]]
    sf = strokes.scale_factor(train_set)
    N_max = max(len(s) for s in train_set + valid_set)
    hp = ms.HParams(enc_rnn_size=16, dec_rnn_size=32, z_size=8, num_mixture=3, batch_size=8,
                    max_seq_len=N_max, use_recurrent_dropout=False, learning_rate=3e-3,
                    kl_decay_rate=0.99)
    max_steps, eval_every, time_budget = 30, 10, 60.0
    backend = "numpy"
else:
    ds = ms.load_dataset("builtin:shapes")
    train_set, valid_set, sf, N_max = ds.train, ds.valid, ds.scale_factor, ds.max_seq_len
    hp = hp_quick.replace(max_seq_len=N_max, enc_rnn_size=64, dec_rnn_size=192)
    max_steps, eval_every = 3000, 250
    time_budget = 12 * 60.0            # seconds of training, so the lesson ends within 15 min
    backend = "numba"
model = ms.SketchRNN(hp, backend=backend, dtype="float32", seed=0, scale_factor=sf)
print(model, f"| train {len(train_set)}, valid {len(valid_set)}, N_max {N_max}, scale {sf:.3f}")

# %% [markdown]
# ## 4. Evaluation over a whole split
# Each batch's loss is a mean over its sketches (with the same N_max normalization), so the
# loss of the whole set is the sketch-weighted mean of batch losses. Dropout is off.

# %%
def evaluate(model, sketches, step, batch_size=100):
    keys = ("loss", "recon", "offset", "pen", "kl")
    totals, n = dict.fromkeys(keys, 0.0), 0
    for batch, n_real in eval_batches(sketches, batch_size, N_max, sf):
        losses = model.evaluate(batch, step=step)
        for k in keys:
            totals[k] += float(losses[k]) * n_real
        n += n_real
    return {k: v / n for k, v in totals.items()}


v0 = evaluate(model, valid_set, step=0)
v0_lib = library_evaluate(model, valid_set, 100, N_max, sf, step=0)
assert all(abs(v0[k] - v0_lib[k]) < 1e-9 for k in v0), "evaluation differs from train.evaluate"
print("step 0 validation:", {k: round(v, 4) for k, v in v0.items()})

# %% [markdown]
# ## 5. The loop
#
#     batch  = next random batch (no repeats within a batch), augmented: random scale +-15%,
#              10% of eligible points dropped
#     losses = model.loss_and_grad(batch, step)       # noise seeded by (seed, step)
#     Adam update with lr_step and clip 1.0; every eval_every steps: validate, keep the best

# %%
batches = ms.BatchIterator(train_set, hp.batch_size, N_max, sf, rng=0,
                           augment=strokes.Augment.from_hparams(hp))
adam = optim.Adam(model.flat)
history, evals = [], [(0, v0)]
best = (v0["loss"], 0, model.state_dict())
t_start = time.perf_counter()
step = 0
while step < max_steps:
    batch = batches.next_batch()
    losses, _ = model.loss_and_grad(batch, step)
    loss = float(losses["loss"])
    assert np.isfinite(loss), f"non-finite training loss at step {step}"
    adam.update(model.flat, model.flat_grad, optim.learning_rate(hp, step), hp.grad_clip)
    history.append([float(losses[k]) for k in ("loss", "recon", "kl")])
    step += 1
    out_of_time = time.perf_counter() - t_start > time_budget
    if step % eval_every == 0 or step == max_steps or out_of_time:
        v = evaluate(model, valid_set, step)
        evals.append((step, v))
        if v["loss"] < best[0]:
            best = (v["loss"], step, model.state_dict())
        print(f"step {step:5d}  train loss {np.mean([h[0] for h in history[-eval_every:]]):+.3f}  "
              f"valid loss {v['loss']:+.3f} (recon {v['recon']:+.3f}, kl {v['kl']:.3f})  "
              f"{time.perf_counter() - t_start:6.0f} s", flush=True)
    if out_of_time:
        print(f"note: stopped at step {step} of {max_steps}: the {time_budget:.0f} s training "
              "budget of this lesson is used up (a busy machine trains slower)")
        break
train_seconds = time.perf_counter() - t_start
model.load_state_dict(best[2])
final_valid = evaluate(model, valid_set, step)
print(f"trained {step} steps in {train_seconds:.0f} s; best valid loss {best[0]:.4f} "
      f"at step {best[1]}; final (best params) valid loss {final_valid['loss']:.4f}")

# %% [markdown]
# ## 6. Save, reload, look
# `save_model` writes parameters and config in a pickle-free `.npz`; `load_model` rebuilds the
# model. Then the loss curves and a grid of samples from z ~ N(0, I) at tau = 0.4.

# %%
TAG = "_fast" if FAST else ""          # a fast run must not overwrite the full run's results
model_path = OUT / f"10_model{TAG}.npz"
ms.save_model(model, model_path)
reloaded = ms.load_model(model_path, backend=backend)
vb = next(iter(eval_batches(valid_set, 16, N_max, sf))).batch
a, b = float(model.evaluate(vb)["loss"]), float(reloaded.evaluate(vb)["loss"])
assert a == b, f"a reloaded model must give the identical loss ({a} vs {b})"
print(f"saved {model_path}")

hist = np.array(history)
fig, ax = plt.subplots(figsize=(6, 3.5))
w = max(1, len(hist) // 50)
smooth = np.convolve(hist[:, 1], np.ones(w) / w, mode="valid")
ax.plot(np.arange(len(smooth)) + w, smooth, label="train recon (smoothed)")
ax.plot([s for s, _ in evals], [v["recon"] for _, v in evals], "o-", label="valid recon")
ax.plot([s for s, _ in evals], [v["kl"] for _, v in evals], "s--", label="valid KL (raw)")
ax.axhline(hp.kl_tolerance, color="0.6", lw=0.8, ls=":", label="KL floor")
ax.set_xlabel("step")
ax.set_title(f"training on builtin:shapes ({'fast' if FAST else 'full'} run)", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / f"10_loss{TAG}.png", dpi=100)
plt.close(fig)

def drawable(sketches):
    """An undertrained model may end a sketch at once (0 rows): draw those as a single dot."""
    return [s if len(s) else np.zeros((1, 3), np.float32) for s in sketches]


samples = model.sample(n=16, temperature=0.4, seed=1)
render.save_png(drawable(samples), OUT / f"10_samples{TAG}.png", ncols=8)
recon_in = valid_set[:8]
mu, _ = model.encode(recon_in)
recon_out = model.sample(z=mu, temperature=0.2, seed=2)
render.save_png(list(recon_in) + drawable(recon_out), OUT / f"10_reconstructions{TAG}.png", ncols=8,
                labels=["input"] * 8 + ["reconstruction"] * 8)
print(f"wrote {OUT / f'10_samples{TAG}.png'} and {OUT / f'10_reconstructions{TAG}.png'}")

# %% [markdown]
# ## 7. Checks
# The validation loss must have dropped well below its starting value (at init the decoder
# knows nothing: recon ~ 2.4). The full run must also reach a low reconstruction loss; the
# thresholds come from runs of this lesson (12 minutes, ~2300 steps, reach about -0.7).

# %%
drop = v0["recon"] - final_valid["recon"]
print(f"valid recon: {v0['recon']:.3f} -> {final_valid['recon']:.3f} (drop {drop:.3f})")
assert np.isfinite(final_valid["loss"]), "final validation loss must be finite"
if FAST:
    assert drop > 0.2, f"30 steps on a tiny model should lower valid recon by > 0.2 (got {drop:.3f})"
else:
    assert drop > 2.0, f"training should lower valid recon by > 2.0 nats (got {drop:.3f})"
    assert final_valid["recon"] < 0.0, "a trained model's valid recon should be below 0"
    n_empty = sum(len(s) == 0 for s in samples)
    assert n_empty <= 2, f"a trained model should rarely end a sketch at once ({n_empty} of 16)"
print("lesson 10 checks passed")

# %% [markdown]
# ## Exercises
# 1. Replace element-wise clipping by global-norm clipping (norm 1.0) in `clip_adam_by_hand` and
#    train the fast model both ways. Which is more stable with a larger learning rate?
# 2. Turn augmentation off (`augment=None`) in the full run and compare the gap between train
#    and valid reconstruction loss.
# 3. Set `kl_decay_rate=1.0` and `kl_weight_start=0.5` (no annealing). Does the KL collapse to
#    the floor faster? Do reconstructions get worse?
# 4. The same loop, with checkpoints, resume, logging and a loss plot, is
#    `python -m minisketch.train` (see `minisketch/train.py`). Run it with `--steps 200` and
#    compare its `log.jsonl` with this lesson's printout.
