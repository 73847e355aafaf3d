"""Lesson 14: completing unfinished sketches, and running magenta.js's pretrained models.

What you will build: a reader for the magenta.js ``.gen.json`` format (JSON, base64, int16
weights on a 10/32767 grid), checked against ``minisketch.magenta`` and against the reference
vector the browser produces; the decoder-only LSTM run by hand from those arrays; and sketch
completion: feed the start of a drawing through the decoder to build its hidden state, then
sample several different endings (the paper uses a decoder-only model and tau = 0.8). Your
completion loop replays the library's random numbers and must match ``sampling.complete``.
Finally you export a model back to ``.gen.json`` and read it again.

What you need: lessons 03 (LSTM step) and 11 (the sampling loop). The pretrained sheep and bird
models are read from ../shared/data/pretrained/ when that folder exists; otherwise the lesson
builds a small untrained decoder-only model to read and check against, says so, and draws its
pictures with the trained model shipped in the package, ``builtin:shapes``.

How to run:  python lessons/14_completion_and_magenta.py                    (full, < 1 minute)
             MINISKETCH_FAST=1 python lessons/14_completion_and_magenta.py  (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
from course import FAST, OUT, SHARED, drawable, save_grid

import base64
import json
import math
from pathlib import Path

import numpy as np
import minisketch as ms
from minisketch import magenta, sampling, shapes, strokes
from minisketch.layers.activations import sigmoid

SHEEP = SHARED / "pretrained" / "sheep.gen.json"
BIRD = SHARED / "pretrained" / "bird.gen.json"
HAVE_PRETRAINED = SHEEP.is_file() and BIRD.is_file()

# %% [markdown]
# ## 1. The file format, read by hand
# `[info, shapes, weights]`: `weights[i]` is base64 of little-endian int16 values $q$, and the
# weight is $w = 10 q / 32767$ (a grid of step $3.05 \cdot 10^{-4}$ that saturates at
# $\pm 10$). The five arrays
# are `out/W [H, 6M+3]`, `out/b`, `dec/W_xh [5, 4H]`, `dec/W_hh [H, 4H]`, `dec/b [4H]`.

# %%
if not HAVE_PRETRAINED:
    print(f"note: {SHEEP.parent} is absent; this lesson builds a small untrained decoder-only "
          "model and exports it to .gen.json to have a file to read (the sketches will be "
          "scribbles; the pretrained sheep and bird models come with magenta.js)")
    hp_small = ms.HParams(conditional=False, dec_rnn_size=64, num_mixture=20, max_seq_len=80)
    small = ms.SketchRNN(hp_small, seed=0, scale_factor=12.0)
    SHEEP = OUT / "14_untrained.gen.json"
    magenta.write_gen_json(SHEEP, small.state_dict(),
                           {"name": "untrained", "scale_factor": 12.0, "max_seq_len": 80})
    BIRD = SHEEP


def read_gen_json_by_hand(path):
    info, shape_list, weights = json.loads(Path(path).read_text())
    names = ("out/W", "out/b", "dec/W_xh", "dec/W_hh", "dec/b")
    arrays = {}
    for name, shape, b64 in zip(names, shape_list, weights):
        q = np.frombuffer(base64.b64decode(b64), dtype="<i2").reshape(shape)
        arrays[name] = (10.0 * q.astype(np.float64) / 32767).astype(np.float32)
    return info, arrays


info, arrays = read_gen_json_by_hand(SHEEP)
info_lib, arrays_lib = magenta.read_gen_json(SHEEP)
for name in arrays:
    assert np.array_equal(arrays[name], arrays_lib[name]), f"{name}: hand reader differs"
H = arrays["dec/W_hh"].shape[0]
M = (arrays["out/b"].shape[0] - 3) // 6
print(f"{info['name']}: H = {H}, M = {M}, scale_factor {info['scale_factor']}, "
      f"max_seq_len {info['max_seq_len']}; "
      f"|w| <= {max(np.abs(a).max() for a in arrays.values()):.2f}")

# %% [markdown]
# ## 2. The first step by hand, and the reference vector
# Decoder-only: zero initial state, input S0 = (0, 0, 1, 0, 0). One LSTM step (lesson 03) and
# the output layer give the pen logits; magenta.js reports pen probabilities
# (0.9959959, 0.0040026, 0.0000015) for the sheep model at tau = 1.

# %%
def decoder_step_by_hand(x, c, h, A):
    a = x @ A["dec/W_xh"] + h @ A["dec/W_hh"] + A["dec/b"]
    H = c.shape[1]
    i, g = sigmoid(a[:, :H]), np.tanh(a[:, H:2 * H])
    f, o = sigmoid(a[:, 2 * H:3 * H] + 1.0), sigmoid(a[:, 3 * H:])
    c = f * c + i * g
    h = o * np.tanh(c)
    return h @ A["out/W"] + A["out/b"], c, h


A64 = {k: v.astype(np.float64) for k, v in arrays.items()}
s0 = np.array([[0.0, 0.0, 1.0, 0.0, 0.0]])
y0, _, _ = decoder_step_by_hand(s0, np.zeros((1, H)), np.zeros((1, H)), A64)
pen0 = np.exp(y0[0, :3] - y0[0, :3].max())
pen0 /= pen0.sum()
model = ms.load_model(SHEEP, dtype="float64")         # the library's loader (decoder-only LSTM)
mix = model.mixture(np.zeros((0, 5)))
print(f"pen probabilities after S0: hand {np.round(pen0, 7)}, library {np.round(mix['pen'][0], 7)}")
assert np.allclose(pen0, mix["pen"][0], rtol=0, atol=1e-12), "hand step differs from the model"
if HAVE_PRETRAINED:
    ref = np.array([0.9959959, 0.0040026, 0.0000015])
    assert np.allclose(pen0, ref, rtol=0, atol=2e-7), f"sheep reference vector: got {pen0}"

# %% [markdown]
# ## 3. Completing a sketch
# Feed S0 and the prefix rows 1..L-1 through the decoder (teacher forcing: the model *reads*
# the human's strokes instead of its own samples); the last prefix row is the input of the first
# sampled step. From that one state, each ending is a separate sample. For a conditional model
# `complete` first encodes the prefix to z.
#
# The random numbers come from `default_rng(seed)` exactly as in lesson 11 (no z draw for a
# decoder-only model), so the hand loop must reproduce the library's endings.

# %%
def complete_by_hand(model, prefix, n, tau, seed, max_len):
    rng = np.random.default_rng(seed)
    sf = model.scale_factor
    rows = np.zeros((len(prefix), 5))
    rows[:, :2] = prefix[:, :2] / sf
    rows[:, 2], rows[:, 3] = prefix[:, 2] < 0.5, prefix[:, 2] > 0.5
    c, h = np.zeros((1, H)), np.zeros((1, H))
    for x in [s0[0]] + list(rows[:-1]):                    # teacher forcing
        _, c, h = decoder_step_by_hand(x[None], c, h, A64)
    c, h = np.repeat(c, n, 0), np.repeat(h, n, 0)
    x = np.repeat(rows[-1:], n, 0)
    out = [[] for _ in range(n)]
    alive = np.ones(n, dtype=bool)
    for t in range(max_len):
        if t % 64 == 0:
            steps = min(64, max_len - t)
            U, E = 1.0 - rng.random((steps, n, 2)), rng.standard_normal((steps, n, 2))
        if not alive.any():
            break
        y, c, h = decoder_step_by_hand(x, c, h, A64)
        for r in np.flatnonzero(alive):
            u, e = U[t % 64, r], E[t % 64, r]
            w = np.exp((y[r, :3] - y[r, :3].max()) / tau)
            pen = int(np.argmax(np.cumsum(w) >= u[0] * w.sum()))
            w = np.exp((y[r, 3:3 + M] - y[r, 3:3 + M].max()) / tau)
            k = int(np.argmax(np.cumsum(w) >= u[1] * w.sum()))
            mx, my, lsx, lsy, rl = y[r, 3 + M + k::M][:5]
            sx, sy = math.exp(lsx) * math.sqrt(tau), math.exp(lsy) * math.sqrt(tau)
            rho = math.tanh(rl)
            dx = mx + sx * e[0]
            dy = my + sy * (rho * e[0] + math.sqrt(1 - rho * rho) * e[1])
            if pen == 2:
                alive[r] = False
                continue
            out[r].append([dx * sf, dy * sf, float(pen == 1)])
            x[r] = [dx, dy, pen == 0, pen == 1, 0.0]
    return [np.concatenate([prefix, np.array(o).reshape(-1, 3)]) for o in out]


if HAVE_PRETRAINED and (SHARED / "aaron_sheep.npz").is_file():
    sheep_ds = ms.load_dataset(SHARED / "aaron_sheep.npz")
    human, human_sf = sheep_ds.test[:4 if not FAST else 1], sheep_ds.scale_factor
    src = "aaron_sheep test sketches"
else:
    human = [shapes.make_sketch(k, np.random.default_rng(i))
             for i, k in enumerate(("house", "star", "circle", "square"))][:4 if not FAST else 1]
    human_sf = strokes.scale_factor(human)
    src = "builtin:shapes sketches"
# A model carries its training data's scale factor and divides inputs by it. The pretrained
# sheep model learned QuickDraw sheep (offsets of std 63 px); the Sheep Market drawings have
# std 18.5 px. Rescale the drawings to the model's data units so their normalized offsets look
# like what the model was trained on.
rescale = model.scale_factor / human_sf
originals = [np.asarray(s, dtype=np.float64) for s in human]
human = [s * [rescale, rescale, 1.0] for s in originals]
print(f"rescaled the {src} by {rescale:.2f} to the model's units")
prefixes = [np.asarray(s[: max(2, len(s) // 2)], dtype=np.float64) for s in human]
n_end, max_len = (2, 30) if FAST else (4, 120)
mine = complete_by_hand(model, prefixes[0], n_end, 0.8, seed=3, max_len=max_len)
lib = sampling.complete(model, prefixes[0], n=n_end, temperature=0.8, seed=3, max_len=max_len)
for a, b in zip(mine, lib):
    assert a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-9), \
        "hand completion differs from sampling.complete (1e-9)"
print(f"hand completion == sampling.complete ({n_end} endings of a {len(prefixes[0])}-row prefix)")

# The pictures: the sheep model when it is there, else the packaged model (a conditional one:
# it encodes the prefix to choose z, then continues it; it was trained on these shapes, so
# they need no rescaling).
if HAVE_PRETRAINED:
    draw_model, draw_name, drawn, draw_len = model, info["name"], human, max_len
else:
    draw_model, draw_name, drawn = ms.load_model("builtin:shapes"), "builtin:shapes", originals
    draw_len = None                      # its own N_max: the shapes are short
cells, labels, grey = [], [], []
for s in drawn:
    p = s[: max(2, len(s) // 2)]
    ends = draw_model.complete(p.astype(np.float32), n=n_end, temperature=0.8, seed=11,
                               max_len=draw_len)
    cells += [s, p] + list(ends)
    labels += ["original", "prefix (half)"] + [f"completion {j + 1}" for j in range(n_end)]
    grey += [0, 0] + [len(p)] * n_end                # the kept half grey, the ending black
    assert all(np.array_equal(e[:len(p)], p.astype(np.float32)) for e in ends), \
        "every completion must start with the prefix exactly"
save_grid(cells, "14_completions.png", f"How does the {draw_name} model finish a half-drawn "
          "sketch? (grey: the given half)", ncols=2 + n_end, labels=labels, grey_rows=grey)
print(f"completed the first halves of {len(drawn)} {src} with the {draw_name} model")

# %% [markdown]
# ## 4. Unconditional samples from the pretrained models

# %%
gallery, names = [], []
use_bird = HAVE_PRETRAINED and not FAST
for path in ((SHEEP, BIRD) if use_bird else (SHEEP,)):
    m = model if path == SHEEP else ms.load_model(path)
    if not HAVE_PRETRAINED:                # no pretrained models here: the packaged one draws
        m, path = draw_model, "builtin:shapes"
    sks = m.sample(n=2 if FAST else 8, temperature=0.5, seed=0, max_len=draw_len)
    gallery += drawable(sks)
    names += [Path(path).name.split(".")[0]] * len(sks)
save_grid(gallery, "14_magenta_samples.png", "What do the models draw on their own? "
          "(temperature 0.5)", ncols=len(gallery) // (2 if use_bird else 1), labels=names)
if HAVE_PRETRAINED and not FAST:
    lengths = [len(s) for s in gallery]
    assert np.median(lengths) > 10, "pretrained models should draw sketches of some length"

# %% [markdown]
# ## 5. Export, and read it back
# The loaded weights already sit on the int16 grid, so writing and reading them again must give
# the identical float32 arrays (quantizing a grid value returns the same integer).

# %%
out_path = OUT / "14_roundtrip.gen.json"
report = magenta.write_gen_json(out_path, model.state_dict(),
                                {"name": "roundtrip", "scale_factor": model.scale_factor,
                                 "max_seq_len": model.hp.max_seq_len})
_, back = magenta.read_gen_json(out_path)
for name in magenta.ARRAY_NAMES:
    assert np.array_equal(back[name], arrays_lib[name]), f"{name} changed in the round trip"
print(f"exported and re-read {report.n_weights:,} weights: identical (max error "
      f"{report.max_error:.1e}, clipped {report.n_clipped})")
print("lesson 14 checks passed")

# %% [markdown]
# ## Exercises
# 1. Complete the same prefix at tau 0.2, 0.5 and 1.0. How does the variety of endings change?
# 2. Use the *bird* model to complete a sheep prefix. What does a bird model make of a sheep's
#    body?
# 3. Train a decoder-only model with M = 20 on builtin:shapes (`python -m minisketch.train
#    --conditional 0 --num_mixture 20`) and export it with `python -m minisketch.export`; load
#    the file in magenta.js's sketch demo.
# 4. The int16 grid has step 3.05e-4. Perturb every weight of the sheep model by +-1.5e-4
#    (the worst-case quantization error) and measure how much the pen probabilities after S0
#    change.
