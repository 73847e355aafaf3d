"""Lesson 01: what sketch-rnn draws, and how a sketch becomes numbers a network can read.

First the destination: a trained sketch-rnn (the model shipped with minisketch, and the
magenta.js sheep when ../shared/data is present) drawing new sketches, an animation of one being
drawn, and a map of the whole model naming the lesson that builds each part. Then the first
piece, by hand in plain NumPy: absolute pen paths (polylines) -> stroke-3 offsets
``(dx, dy, p)`` -> stroke-5 rows ``(dx, dy, p1, p2, p3)``, the normalizing scale factor of a
dataset, the padded batch ``[B, N_max + 1, 5]`` with its start token, and the two training
augmentations. Each piece is compared with the library's version (``minisketch.strokes``,
``minisketch.datasets``), so the lesson and the library cannot drift.

What you need: nothing from earlier lessons; NumPy and matplotlib.

How to run:  python lessons/01_strokes_and_datasets.py          (full, seconds)
             MINISKETCH_FAST=1 python lessons/01_strokes_and_datasets.py   (fast, as the tests do)
Figures go to lessons/out/; the rendered page is docs/lessons/01_strokes_and_datasets.md.
"""
# %% [markdown]
# ## 0. Where this course is going
# sketch-rnn (Ha & Eck 2017, [arXiv:1704.03477](https://arxiv.org/abs/1704.03477)) draws the
# way a person does: one pen movement at a time, deciding after each one where the pen goes
# next and whether it lifts. Trained on thousands of doodles of one kind of thing, it draws new
# ones. By lesson 10 you will have written every forward and backward pass of it yourself and
# trained one; lessons 11-12 then draw with it. Here is where that ends up: the model shipped
# with minisketch, trained on `builtin:shapes` (seven classes of mouse-like doodles), drawing
# from random latent vectors, in a few lines:

# %%
from course import FAST, OUT, SHARED, rng, save_grid, savefig

import numpy as np
import matplotlib.pyplot as plt
import minisketch as ms
from minisketch import render, strokes

model = ms.load_model("builtin:shapes")
drawn = model.sample(n=16 if FAST else 24, temperature=0.3, seed=0)
save_grid(drawn, "01_model_draws.png", "What does a trained sketch-rnn draw? "
          "(builtin:shapes, random z, temperature 0.3)")
print(model)

# %% [markdown]
# The library can also animate the drawing, one row of the sketch per frame (a red dot is the
# pen):

# %%
frames = render.save_gif(drawn[:3], OUT / "01_drawing.gif", stride=2, cell=144, ncols=3,
                         frame_ms=50)
print(f"wrote {frames} frames")

# %% [markdown]
# With the third-party data of the development folder `../shared/data`, the same library runs
# the sheep model that magenta.js ships (a decoder-only LSTM trained on QuickDraw sheep):

# %%
sheep_model_path = SHARED / "pretrained" / "sheep.gen.json"
if sheep_model_path.is_file():
    sheep_model = ms.load_model(sheep_model_path)
    sheep_drawn = sheep_model.sample(n=4 if FAST else 8, temperature=0.4, seed=0)
    save_grid(sheep_drawn, "01_sheep_model_draws.png",
              "What does magenta.js's sheep model draw? (temperature 0.4)")
else:
    print(f"note: {sheep_model_path} is absent, so no sheep today")

# %% [markdown]
# What is inside: an **encoder** reads a whole sketch and summarizes it; the summary becomes
# a **latent vector** z; a **decoder** starts from z and predicts the sketch row by row, each
# prediction a **mixture** of Gaussians over the next pen movement plus a choice of pen state.
# The map below names the lesson that builds each block.

# %%
from diagram import save_model_diagram

save_model_diagram(OUT / "01_model_diagram.png",
                   "What is sketch-rnn made of, and which lesson builds each part?")

# %% [markdown]
# The rest of this lesson builds the first box: turning a drawing into the rows the model reads.
#
# ## 1. A sketch is a list of strokes
# Draw a little house by hand: a square body (one stroke, pen down the whole way), a roof
# (a second stroke) and a door (a third). Coordinates are pixels, y grows downward as on a
# screen. This is the *polyline* form: one array of absolute points per stroke.

# %%
house = [
    np.array([[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]], dtype=float),   # body
    np.array([[-5, 0], [20, -25], [45, 0]], dtype=float),                 # roof
    np.array([[15, 40], [15, 22], [25, 22], [25, 40]], dtype=float),      # door
]

# %% [markdown]
# ### stroke-3: offsets and a pen bit
# sketch-rnn never sees absolute positions. Each point becomes the offset from the previous
# point, and a pen bit saying "the pen lifts after this point" (section 3.1 of the paper):
#
# $$
# \text{row}_k = (\Delta x_k, \Delta y_k, p_k), \qquad
# (\Delta x_k, \Delta y_k) = P_k - P_{k-1}, \qquad P_{-1} = (0, 0),
# $$
#
# with $p_k = 1$ if point $k$ is the last point of its stroke, else 0. The jump from the end
# of one stroke to the start of the next is just the next row's offset, travelled with the pen
# up because the previous row had $p = 1$.
#
# **Why offsets rather than positions?** A square is a square wherever it sits on the page:
# offsets do not change when the drawing moves, so the model never has to learn the same
# shape at every position. Each row is a *small local move* whose distribution looks alike at
# every step (mostly short steps along the current direction), which is far easier to predict
# than a point anywhere on the canvas. And when a sampled move is a little off, the rest of the
# drawing shifts with it instead of tearing the line apart. Graves (2013) modelled handwriting
# with offsets for the same reasons; sketch-rnn follows him.

# %%
def polylines_to_stroke3_by_hand(lines):
    points = np.concatenate(lines, axis=0)                       # [L, 2] absolute
    offsets = np.diff(points, axis=0, prepend=np.zeros((1, 2)))  # P_k - P_{k-1}
    pen = np.zeros(len(points))
    ends = np.cumsum([len(s) for s in lines]) - 1                # last point of each stroke
    pen[ends] = 1.0
    return np.column_stack([offsets, pen])


s3 = polylines_to_stroke3_by_hand(house)
print("stroke-3 of the house (first 6 rows):\n", s3[:6])
lib_s3 = strokes.polylines_to_stroke3(house)
assert np.array_equal(s3, lib_s3), "hand stroke-3 differs from strokes.polylines_to_stroke3"

# %% [markdown]
# Going back is a running sum (the absolute position is the sum of all offsets so far), cut
# after every row whose pen bit is 1.

# %%
def stroke3_to_polylines_by_hand(s3):
    xy = np.cumsum(s3[:, :2], axis=0)
    cuts = np.flatnonzero(s3[:, 2] == 1) + 1
    return [piece for piece in np.split(xy, cuts) if len(piece)]


back = stroke3_to_polylines_by_hand(s3)
lib_back = strokes.stroke3_to_polylines(s3)
assert len(back) == len(house) == len(lib_back), "wrong number of strokes after the round trip"
for a, b, c in zip(back, house, lib_back):
    assert np.allclose(a, b, atol=1e-12) and np.allclose(a, c, atol=1e-12), \
        "round trip polylines -> stroke-3 -> polylines must be exact (to 1e-12)"

# %% [markdown]
# ### stroke-5: a one-hot pen state
# The model reads and writes stroke-5 rows $(\Delta x, \Delta y, p_1, p_2, p_3)$: $p_1$ = the
# pen stays down after this point, $p_2$ = the pen lifts, $p_3$ = the sketch has ended.
# Exactly one of the three is 1, so the network can predict the pen state with a 3-way
# softmax (lesson 07). Rows after the end of a sketch are padding, $(0, 0, 0, 0, 1)$: a model
# that must predict them learns *when to stop*.

# %%
def stroke3_to_stroke5_by_hand(s3, max_len):
    out = np.zeros((max_len, 5))
    n = len(s3)
    out[:n, :2] = s3[:, :2]
    out[:n, 2] = 1 - s3[:, 2]       # p1: pen stays down
    out[:n, 3] = s3[:, 2]           # p2: pen lifts
    out[n:, 4] = 1                  # p3: the end (padding rows)
    return out


s5 = stroke3_to_stroke5_by_hand(s3, max_len=16)
assert np.array_equal(s5, strokes.stroke3_to_stroke5(s3, max_len=16)), \
    "hand stroke-5 differs from strokes.stroke3_to_stroke5"
assert np.all(s5[:, 2:].sum(axis=1) == 1), "every stroke-5 pen state must be one-hot"
print("stroke-5 rows 10..15 (the last points, then padding):\n", s5[10:])

# %% [markdown]
# ## 2. Drawing from offsets
# To draw, cut into strokes and plot each with the pen down. Note `invert_yaxis`: the data's y
# grows downward.

# %%
def draw(ax, s3, title=None, color="k", **kw):
    for line in stroke3_to_polylines_by_hand(np.asarray(s3, dtype=float)):
        ax.plot(line[:, 0], line[:, 1], "-", color=color, lw=1.5, **kw)
    ax.set_aspect("equal")
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)


fig, ax = plt.subplots(figsize=(3, 3))
draw(ax, s3, "Can 12 stroke-3 rows draw a house?")
savefig(fig, "01_house.png")

# %% [markdown]
# ## 3. A dataset
# `load_dataset` returns train/valid/test lists of stroke-3 arrays in *data units* (pixels),
# clamped to [-1000, 1000] and cast to float32. `builtin:shapes` is generated on the fly, so it
# works offline; it is what the model in section 0 was trained on. (The library draws such
# grids too: `render.save_png`, `render.save_svg`, and `render.save_gif` for section 0's
# animation.)

# %%
ds = ms.load_dataset("builtin:shapes")
print(ds.info())
labels = [ds.class_names[k] for k in ds.labels["train"][:12]]
fig, axes = plt.subplots(2, 6, figsize=(9, 3.6))
for ax, sk, lab in zip(axes.ravel(), ds.train[:12], labels):
    draw(ax, sk, lab)
fig.suptitle("What do the training sketches of builtin:shapes look like?", fontsize=9)
savefig(fig, "01_shapes_by_hand.png")

# %% [markdown]
# ### The normalizing scale factor
# Offsets are divided by one number for the whole dataset: the population standard deviation
# of every $\Delta x$ and $\Delta y$ of the training set, pooled together (means are *not*
# subtracted from the data; the standard deviation subtracts the mean only to measure the
# spread):
#
# $$
# \sigma_{\text{data}} = \operatorname{std}\left(\{\Delta x_k\} \cup \{\Delta y_k\}\right)
# \quad \text{over all training sketches and rows.}
# $$
#
# One number for both axes keeps the drawing's proportions; one number for the whole set
# keeps big and small sketches apart (a per-sketch scale would make every sketch the same size).

# %%
def scale_factor_by_hand(sketches):
    xy = np.concatenate([np.asarray(s, dtype=np.float64)[:, :2].ravel() for s in sketches])
    return float(np.sqrt(np.mean((xy - xy.mean()) ** 2)))


sf = scale_factor_by_hand(ds.train)
print(f"scale factor by hand {sf:.6f}, library {ds.scale_factor:.6f}")
assert abs(sf - ds.scale_factor) <= 1e-9 * sf, "scale factor differs from the library (rel 1e-9)"

sheep_path = SHARED / "aaron_sheep.npz"
if sheep_path.is_file():
    sheep = ms.load_dataset(sheep_path)
    sheep_sf = scale_factor_by_hand(sheep.train)
    print(f"aaron_sheep: {sheep.info()['splits']}, N_max {sheep.max_seq_len}, "
          f"scale factor {sheep_sf:.6f} (reference 18.519827)")
    assert abs(sheep_sf - 18.519827) < 1e-5, "aaron_sheep scale factor should be 18.519827"
    assert sheep.max_seq_len == 250, "aaron_sheep's longest sketch has 250 points"
    save_grid(sheep.train[:12], "01_sheep.png", "What do people's sheep look like? "
              "(aaron_sheep, the Sheep Market)", ncols=6)
else:
    print(f"note: {sheep_path} is absent, so this lesson uses builtin:shapes only "
          "(download aaron_sheep.npz from the sketch-rnn-datasets collection to see real data)")

# %% [markdown]
# ## 4. A batch: start token, normalized offsets, padding
# The model reads `[B, N_max + 1, 5]`: row 0 is the start token $S_0 = (0, 0, 1, 0, 0)$, rows
# $1..L$ the sketch in stroke-5 with offsets divided by the scale factor, then padding rows.
# The decoder is fed rows $0..N_{\max}-1$ and must predict rows $1..N_{\max}$: at every step
# it reads the *true* previous row, not its own guess ("teacher forcing", lesson 08).

# %%
def make_batch_by_hand(sketches, max_len, scale):
    x = np.zeros((len(sketches), max_len + 1, 5), dtype=np.float32)
    x[:, 0] = (0, 0, 1, 0, 0)
    for b, sk in enumerate(sketches):
        rows = stroke3_to_stroke5_by_hand(np.asarray(sk, dtype=np.float64), max_len)
        rows[:, :2] /= scale
        x[b, 1:] = rows
    return x, np.array([len(s) for s in sketches])


few = ds.train[:4]
x, lengths = make_batch_by_hand(few, ds.max_seq_len, ds.scale_factor)
lib = ms.make_batch(few, max_len=ds.max_seq_len, scale_factor=ds.scale_factor)
err = float(np.max(np.abs(x - lib.strokes)))
print(f"batch {x.shape}, lengths {lengths}, max |hand - library| = {err:.2e}")
assert lib.strokes.shape == (4, ds.max_seq_len + 1, 5), "batch shape must be [B, N_max + 1, 5]"
assert np.array_equal(lengths, lib.lengths), "lengths differ from make_batch"
assert err <= 1e-6, f"hand batch differs from make_batch by {err:.2e} (> 1e-6, float32 rounding)"
# over the whole training set the normalized offsets have standard deviation exactly 1
normed = np.concatenate([np.asarray(s, dtype=np.float64)[:, :2].ravel() for s in ds.train])
normed /= ds.scale_factor
print(f"std of all normalized training offsets: {normed.std():.12f}")
assert abs(normed.std() - 1.0) < 1e-9, "normalized training offsets must have std 1 (to 1e-9)"

# %% [markdown]
# ## 5. Training-time augmentation
# Two cheap augmentations, applied afresh each time a sketch is put in a batch: stretch
# $\Delta x$ and $\Delta y$ by independent factors in $[1 - 0.15, 1 + 0.15]$, and drop some
# pen-down points inside long runs, adding each dropped offset to the last kept row so that the
# rest of the drawing does not move. The model then sees a slightly different sketch every
# epoch. Drawn on *shared* axes, the stretches are visible as different sizes, and the kept
# points all lie on the original line.

# %%
r = rng(0)
sk = np.asarray(ds.train[0], dtype=np.float32)
dropped = strokes.drop_points(sk, 0.3, r)
abs_before = np.cumsum(sk[:, :2], axis=0)
abs_after = np.cumsum(dropped[:, :2], axis=0)
# every kept point is one of the original absolute points, and the sketch ends where it did
matches = (np.abs(abs_after[:, None, :] - abs_before[None, :, :]).max(axis=2) < 1e-3).any(axis=1)
assert matches.all(), "drop_points must keep absolute positions (to 1e-3 px)"
assert np.allclose(abs_after[-1], abs_before[-1], atol=1e-3), "the last point must not move"
assert dropped[:, 2].sum() == sk[:, 2].sum(), "drop_points must keep every pen lift"
print(f"drop_points(p=0.3): {len(sk)} -> {len(dropped)} points")
scaled = [strokes.random_scale(sk, 0.15, r) for _ in range(3)]
extent = [np.ptp(np.cumsum(s[:, :2], axis=0), axis=0) for s in [sk] + scaled]
print("width x height of the original and three random scalings (px):",
      ", ".join(f"{w:.0f} x {h:.0f}" for w, h in extent))

fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.6), sharex=True, sharey=True)
for s, c in zip(scaled, ("C0", "C1", "C2")):
    draw(axes[0], s, color=c, alpha=0.8)
draw(axes[0], sk, color="k")
axes[0].set_title("random scale x3 (colours) over the original (black)", fontsize=8)
draw(axes[1], sk, color="0.7")
kept = np.cumsum(dropped[:, :2], axis=0)
axes[1].plot(kept[:, 0], kept[:, 1], "o", ms=3, color="C3")
axes[1].set_title(f"points kept by drop_points (red): {len(dropped)} of {len(sk)}", fontsize=8)
for ax in axes:
    ax.axis("on")
    ax.tick_params(labelsize=7)
fig.suptitle("Does augmentation change the sketch's size? Does dropping points move it?",
             fontsize=9)
savefig(fig, "01_augment.png")

# %% [markdown]
# ## 6. Checks
# Everything above already asserted as it went (exact equality where the arithmetic is the
# same, 1e-9 relative for the scale factor, 1e-6 for float32 batches). One last look at the
# sizes that the rest of the course relies on:

# %%
assert ds.max_seq_len == max(len(s) for s in ds.train + ds.valid + ds.test), \
    "N_max is the longest sketch over all three splits"
assert all(s.dtype == np.float32 for s in ds.train[:50]), "datasets hold float32 stroke-3"
assert sum(len(s) > 0 for s in drawn) >= len(drawn) - 1, "the trained model draws sketches"
print("lesson 01 checks passed")

# %% [markdown]
# ## Exercises
# 1. Write `stroke5_to_stroke3_by_hand` (stop at the first $p_3$ row) and compare it with
#    `strokes.stroke5_to_stroke3` on `lib.strokes[0, 1:]`.
# 2. Ramer-Douglas-Peucker: implement the recursive version and compare it with
#    `strokes.rdp` on a spiral from `ds.train`; plot the number of points kept against epsilon.
# 3. Why is the scale factor computed on the training split only? What would go wrong if it
#    were computed per sketch?
# 4. The house has 3 strokes but 12 rows. How many rows would a sketch need if the pen state
#    were stored as a separate "move to" row instead of a pen bit?
# 5. Sample from the packaged model at temperatures 0.1 and 1.0 (`model.sample(n=8,
#    temperature=...)`) and compare the grids. Lesson 11 explains what you see.
