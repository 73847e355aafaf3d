"""Lesson 12: the latent space: reconstruction, interpolation and sketch analogies.

What you will build: the tools of the paper's "after training" section, on top of a trained
conditional model. Encode a sketch to mu (its deterministic embedding) and decode it again
(conditional reconstruction); walk the latent space between two encodings with spherical
(slerp) and linear (lerp) interpolation and decode each point; do latent arithmetic,
z = z(a) - z(b) + z(c). You write slerp and lerp by hand and check their geometry, compare
every tool with ``minisketch.sampling``, and measure how well the latent space separates the
seven shape classes.

What you need: lessons 06 (the latent variable) and 11 (sampling). The model is the one that
lesson 10 saves (``lessons/out/10_model.npz``, in full mode when it is there), else the trained
model shipped in the package, ``builtin:shapes`` (always in fast mode).

How to run:  python lessons/12_latent_space.py                    (full, about a minute)
             MINISKETCH_FAST=1 python lessons/12_latent_space.py  (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
from course import FAST, drawable, save_grid, savefig, trained_model

import math

import numpy as np
import matplotlib.pyplot as plt
from minisketch import sampling, shapes, strokes

# %% [markdown]
# ## 1. A model and labelled sketches

# %%
model, model_name = trained_model()
print(f"exploring the latent space of {model_name}: {model}")
per_class = 20 if FAST else 50
splits, labels = shapes.generate(seed=0, sizes={"train": 1, "valid": 1, "test": per_class})
test = [strokes.clamp_stroke3(s) for s in splits["test"]]
test_labels = labels["test"]
by_class = {name: [s for s, l in zip(test, test_labels) if l == c]
            for c, name in enumerate(shapes.CLASSES)}


# %% [markdown]
# ## 2. Reconstruction
# `model.encode` returns mu and sigma; mu is the embedding (no noise). Reconstruction decodes
# from z = mu at a low temperature. The library's `reconstruct` is exactly "encode, repeat,
# sample": check that.

# %%
picks = [by_class[c][0] for c in shapes.CLASSES]
mu, sigma = model.encode(picks)
print(f"mu {mu.shape}, mean sigma {sigma.mean():.3f} (the prior's is 1)")
mine = model.sample(z=np.repeat(mu, 2, axis=0), temperature=0.2, seed=5)
lib = sampling.reconstruct(model, picks, temperature=0.2, n=2, seed=5)
assert all(np.array_equal(a, b) for a, b in zip(mine, lib)), "reconstruct != encode + sample"
save_grid(picks + drawable(lib[0::2]) + drawable(lib[1::2]), "12_reconstructions.png",
          "Does decoding the code mu give the sketch back? (top: input; below: two decodings)",
          ncols=len(picks), labels=list(shapes.CLASSES) + ["decoded"] * (2 * len(picks)))

# %% [markdown]
# ## 3. Interpolation: lerp and slerp
#
# $$
# \operatorname{lerp}(z_0, z_1, t) = (1 - t) z_0 + t z_1, \qquad
# \operatorname{slerp}(z_0, z_1, t) = \frac{\sin((1 - t) \omega)}{\sin \omega} z_0
# + \frac{\sin(t \omega)}{\sin \omega} z_1, \quad
# \cos \omega = \frac{z_0 \cdot z_1}{|z_0| |z_1|} .
# $$
#
# In high dimension, samples of $N(0, I)$ live near a sphere of radius $\sqrt{N_z}$. The
# midpoint of a lerp between two such points falls *inside* the sphere (norm about
# $\sqrt{N_z / 2}$ for near-orthogonal codes): a region the decoder rarely saw in training.
# Slerp stays on the arc.

# %%
def lerp_by_hand(z0, z1, t):
    t = np.asarray(t, dtype=float)[:, None]
    return (1 - t) * z0 + t * z1


def slerp_by_hand(z0, z1, t):
    w = math.acos(np.clip(z0 @ z1 / (np.linalg.norm(z0) * np.linalg.norm(z1)), -1, 1))
    t = np.asarray(t, dtype=float)[:, None]
    return (np.sin((1 - t) * w) * z0 + np.sin(t * w) * z1) / math.sin(w)


rz = np.random.default_rng(0).standard_normal((2, 128))
ts = np.linspace(0, 1, 9)
assert np.allclose(lerp_by_hand(*rz, ts), sampling.lerp(*rz, ts), rtol=0, atol=1e-12)
assert np.allclose(slerp_by_hand(*rz, ts), sampling.slerp(*rz, ts), rtol=0, atol=1e-12)
equal_norm = rz / np.linalg.norm(rz, axis=1, keepdims=True) * 11.3
norms_s = np.linalg.norm(sampling.slerp(*equal_norm, ts), axis=1)
norms_l = np.linalg.norm(sampling.lerp(*equal_norm, ts), axis=1)
assert np.allclose(norms_s, 11.3, rtol=1e-12), "slerp between equal-norm codes keeps the norm"
print(f"norm along the path (|z0| = |z1| = 11.3): slerp {norms_s.min():.2f}..{norms_s.max():.2f},"
      f" lerp dips to {norms_l.min():.2f}")
assert norms_l.min() < 0.8 * 11.3, "lerp between near-orthogonal codes cuts inside the sphere"

a, b = by_class["triangle"][1], by_class["spiral"][1]
path_s = sampling.interpolate(model, a, b, n_steps=7, method="slerp", temperature=0.1, seed=0)
path_l = sampling.interpolate(model, a, b, n_steps=7, method="lerp", temperature=0.1, seed=0)
za, zb = model.encode([a, b])[0]
mine = model.sample(z=slerp_by_hand(za, zb, np.linspace(0, 1, 7)), temperature=0.1, seed=0)
assert all(np.array_equal(x, y) for x, y in zip(mine, path_s)), "interpolate != slerp + sample"
save_grid([a] + drawable(path_s) + [b] + [a] + drawable(path_l) + [b], "12_interpolation.png",
          "What lies between a triangle and a spiral? (top: slerp, bottom: lerp)", ncols=9,
          labels=["triangle"] + [f"slerp {t:.2f}" for t in np.linspace(0, 1, 7)]
          + ["spiral", "triangle"] + [f"lerp {t:.2f}" for t in np.linspace(0, 1, 7)]
          + ["spiral"])

# %% [markdown]
# ## 4. Analogies
# A house is a square with a roof. If the latent space encodes "has a roof" as a direction,
# $z(\text{house}) - z(\text{square}) + z(\text{triangle})$ should decode to a triangle with
# something on top, or at least move toward the house. (With the paper's cat/pig models:
# $z(\text{cat head}) + z(\text{full pig}) - z(\text{pig head})$ gives a full cat.)

# %%
house, square, triangle = by_class["house"][2], by_class["square"][2], by_class["triangle"][2]
z_h, z_s, z_t = model.encode([house, square, triangle])[0]
z_new = z_h - z_s + z_t
mine = model.sample(z=z_new, temperature=0.1, n=3, seed=1)
lib = sampling.analogy(model, house, square, triangle, n=3, temperature=0.1, seed=1)
assert all(np.array_equal(x, y) for x, y in zip(mine, lib)), "analogy != z_a - z_b + z_c"
save_grid([house, square, triangle] + drawable(lib), "12_analogy.png",
          "Is 'house minus square plus triangle' a triangle with a roof?", ncols=6,
          labels=["house (a)", "- square (b)", "+ triangle (c)", "a - b + c", "", ""])

# %% [markdown]
# ## 5. How the classes sit in latent space
# Project the $\mu$ of every test sketch on its first two principal components, and measure a
# simple separability score: leave-one-out nearest-neighbour classification in latent space
# (each sketch takes the class of the closest other $\mu$). Chance is 1/7 = 0.14. A class is
# not one blob (size, rotation and start point also live in $z$), so a class mean classifies
# worse.

# %%
mus, _ = model.encode(test)
centered = mus - mus.mean(0)
_, _, vt = np.linalg.svd(centered, full_matrices=False)
proj = centered @ vt[:2].T
dist = np.linalg.norm(mus[:, None, :] - mus[None, :, :], axis=2)
np.fill_diagonal(dist, np.inf)                       # leave each sketch out of its own vote
acc = float((test_labels[dist.argmin(axis=1)] == test_labels).mean())
print(f"nearest-neighbour class accuracy in latent space: {acc:.2f} (chance 0.14)")
fig, ax = plt.subplots(figsize=(5.5, 4.5))
for c, name in enumerate(shapes.CLASSES):
    sel = test_labels == c
    ax.scatter(proj[sel, 0], proj[sel, 1], s=10, label=name)
ax.set_title(f"Do the classes separate in latent space? mu of test sketches, first two\n"
             f"principal components (nearest-neighbour accuracy {acc:.2f}, chance 0.14)",
             fontsize=9)
ax.legend(fontsize=7, markerscale=1.5)
savefig(fig, "12_latent_pca.png")
assert acc > 0.5, f"a trained model's latent space should separate the classes (acc {acc:.2f})"
print("lesson 12 checks passed")

# %% [markdown]
# ## Exercises
# 1. Interpolate between two sketches of the *same* class (two circles of different sizes).
#    Which latent direction changes the size?
# 2. Average the mu of all houses minus the average mu of all squares: a "roof vector". Add it
#    to several triangles and circles and decode. Does it work better than one analogy?
# 3. Decode z = 0 (the prior's mean) at tau 0.1. What does the model consider the most
#    "typical" sketch?
# 4. Encode a sketch drawn upside down (flip dy). Is its reconstruction upright or flipped?
#    What does that say about what the encoder learned?
