"""Lesson 10: the training run: a small sketch-rnn trained on the CPU, start to finish.

What you will build: a complete training loop of your own around ``SketchRNN.loss_and_grad``
(lesson 08's loss and gradient) and lesson 09's clipped Adam and schedules: seeded, augmented
batches, periodic validation over the whole validation set, the best parameters kept, a loss
plot, then samples and reconstructions from the model you trained. The full run trains a small
conditional model on ``builtin:shapes`` on the CPU (the ``quick`` preset's schedules of
``python -m minisketch.train`` with a smaller network, on the Numba backend) for at most 12
minutes of training, and saves it to ``lessons/out/10_model.npz``, which lessons 11 and 12 then
use in full mode.

What you need: lessons 08 (the loss and its gradient) and 09 (the optimizer and schedules).

How to run:  python lessons/10_training_run.py                    (full: up to ~13 minutes)
             MINISKETCH_FAST=1 python lessons/10_training_run.py  (fast: a tiny model, seconds)
Figures go to lessons/out/ (10_loss.png, 10_samples.png, 10_reconstructions.png, ...).
"""
# %%
from course import FAST, LESSON10_MODEL, OUT, save_grid, savefig

import time

import numpy as np
import matplotlib.pyplot as plt
import minisketch as ms
from minisketch import optim, shapes, strokes
from minisketch.batching import eval_batches
from minisketch.train import PRESETS, evaluate as library_evaluate

# %% [markdown]
# ## 1. Data and model
# Full run: the whole `builtin:shapes` set (4900 training sketches of 7 classes) and the
# `quick` preset's schedules with a smaller network (encoder 64 units each way, decoder 192,
# $N_z = 32$, $M = 10$; the exact count is printed below) on the Numba backend (lesson 15: the
# same numbers as NumPy, with the pointwise math compiled). On a CPU, more updates beat a bigger
# model: the run stops after 3000 updates or 12 minutes of training, whichever comes first, and
# prints how many steps it managed. Fast run: 8 sketches per class and a tiny model on the
# NumPy backend.

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
    hp = ms.HParams().replace(**PRESETS["quick"]["hparams"]).replace(
        max_seq_len=N_max, enc_rnn_size=64, dec_rnn_size=192)
    max_steps, eval_every = 3000, 250
    time_budget = 12 * 60.0            # seconds of training, so the lesson ends within 15 min
    backend = "numba"
model = ms.SketchRNN(hp, backend=backend, dtype="float32", seed=0, scale_factor=sf)
print(model, f"| train {len(train_set)}, valid {len(valid_set)}, N_max {N_max}, scale {sf:.3f}")

# %% [markdown]
# ## 2. Evaluation over a whole split
# Each batch's loss is a mean over its sketches (with the same $N_{\max}$ normalization), so
# the loss of the whole set is the sketch-weighted mean of batch losses. Dropout is off.

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
# ## 3. The loop
# Each step:
#
# 1. take the next random batch (no repeats within a batch), augmented as in lesson 01:
#    random scale $\pm 15\%$, 10% of eligible points dropped;
# 2. `losses = model.loss_and_grad(batch, step)`, its noise seeded by (seed, step);
# 3. one clipped Adam update with the learning rate of this step (lesson 09);
# 4. every `eval_every` steps: validate, and keep the parameters if they are the best so far.

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
# ## 4. Save, reload, look
# `save_model` writes parameters and config in a pickle-free `.npz`; `load_model` rebuilds the
# model. Then the loss curves, a grid of samples from $z \sim N(0, I)$ at temperature 0.4, and
# reconstructions of validation sketches.

# %%
TAG = "_fast" if FAST else ""          # a fast run must not overwrite the full run's results
model_path = LESSON10_MODEL if not FAST else OUT / "10_model_fast.npz"
ms.save_model(model, model_path)
reloaded = ms.load_model(model_path, backend=backend)
vb = next(iter(eval_batches(valid_set, 16, N_max, sf))).batch
a, b = float(model.evaluate(vb)["loss"]), float(reloaded.evaluate(vb)["loss"])
assert a == b, f"a reloaded model must give the identical loss ({a} vs {b})"
print(f"saved {model_path.relative_to(OUT.parent.parent)}")

hist = np.array(history)
fig, ax = plt.subplots(figsize=(6, 3.5))
w = max(1, len(hist) // 50)
smooth = np.convolve(hist[:, 1], np.ones(w) / w, mode="valid")
ax.plot(np.arange(len(smooth)) + w, smooth, label="train recon (smoothed)")
ax.plot([s for s, _ in evals], [v["recon"] for _, v in evals], "o-", label="valid recon")
ax.plot([s for s, _ in evals], [v["kl"] for _, v in evals], "s--", label="valid KL (raw)")
ax.axhline(hp.kl_tolerance, color="0.6", lw=0.8, ls=":", label="KL floor")
ax.set_xlabel("step")
ax.set_ylabel("nats")
ax.set_title(f"Is the model learning? builtin:shapes, {'fast' if FAST else 'full'} run", fontsize=9)
ax.legend(fontsize=8)
savefig(fig, f"10_loss{TAG}.png")

samples = model.sample(n=16, temperature=0.4, seed=1)
save_grid(samples, f"10_samples{TAG}.png", f"What does the model trained here draw after "
          f"{step} steps? (random z, temperature 0.4)")
recon_in = valid_set[:8]
mu, _ = model.encode(recon_in)
recon_out = model.sample(z=mu, temperature=0.2, seed=2)
save_grid(list(recon_in) + list(recon_out), f"10_reconstructions{TAG}.png",
          "Can it redraw a validation sketch from its code? (top: input, bottom: decoded mu)",
          labels=["input"] * 8 + ["reconstruction"] * 8)
print("sketch lengths drawn from random z:", [len(s) for s in samples])

# %% [markdown]
# What to look for in the run shown on this page (3000 steps; a slower machine stops earlier):
#
# - The validation reconstruction loss falls fast for the first few hundred steps, then
#   slowly; it lies *below* the training curve because training batches are augmented
#   (stretched, points dropped: harder to predict) while validation sketches are not.
# - The KL rises to the floor of 0.2 nats per unit within the first 500 steps, while its
#   weight is still growing, and stays there: below the floor the KL costs nothing, above it
#   every nat is charged, so the encoder uses what the floor gives away and little more.
#   With $N_z = 32$ that is about 6 nats for a whole sketch: enough to tell a spiral from a
#   zigzag, not enough to pin down every detail.
# - The samples from random $z$ are mostly recognizable circles, spirals, zigzags, triangles
#   and squares; stars come out as crossed triangles, and houses, the hardest class (three
#   strokes), rarely appear. The reconstructions keep the class of spirals, zigzags and squares
#   but can swap a square for a star or a house for a triangle: the code holds the gist, and
#   the decoder fills in the rest. The packaged model `builtin:shapes` (encoder 128, decoder
#   256, 20,000 steps of batch 64 with recurrent dropout: `scripts/train_builtin_model.sh`)
#   does better; lessons 11 and 12 use the model trained here.
#
# ## 5. Checks
# The validation loss must have dropped well below its starting value (at init the decoder
# knows nothing: the reconstruction loss is printed at step 0 above). The full run must also
# reach a reconstruction loss below 0 nats and draw sketches that do not stop at once; the
# thresholds are loose on purpose, because a busy machine gets fewer steps into the time
# budget.

# %%
drop = v0["recon"] - final_valid["recon"]
print(f"valid recon: {v0['recon']:.3f} -> {final_valid['recon']:.3f} (drop {drop:.3f})")
assert np.isfinite(final_valid["loss"]), "final validation loss must be finite"
if FAST:
    assert drop > 0.2, f"30 steps of a tiny model should lower valid recon by > 0.2 ({drop:.3f})"
else:
    assert drop > 2.0, f"training should lower valid recon by > 2.0 nats (got {drop:.3f})"
    assert final_valid["recon"] < 0.0, "a trained model's valid recon should be below 0"
    n_empty = sum(len(s) == 0 for s in samples)
    assert n_empty <= 2, f"a trained model should rarely end a sketch at once ({n_empty} of 16)"
print("lesson 10 checks passed")

# %% [markdown]
# ## Exercises
# 1. Replace the model's optimizer by one with global-norm clipping (lesson 09's exercise 1)
#    and train the fast model both ways. Which is more stable with a larger learning rate?
# 2. Turn augmentation off (`augment=None`) in the full run and compare the gap between train
#    and valid reconstruction loss.
# 3. Set `kl_decay_rate=1.0` and `kl_weight_start=0.5` (no annealing). Does the KL collapse to
#    the floor faster? Do reconstructions get worse?
# 4. The same loop, with checkpoints, resume, logging and a loss plot, is
#    `python -m minisketch.train` (see `minisketch/train.py`). Run it with `--steps 200` and
#    compare its `log.jsonl` with this lesson's printout.
