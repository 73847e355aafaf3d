"""Lesson 08: the decoder and the whole loss: wiring sketch-rnn together, forward and backward.

What you will build: the complete sketch-rnn objective from the pieces of lessons 03-07. The
latent z sets the decoder's initial state through ``tanh(z W + b)`` and is appended to every
decoder input; the decoder reads the batch shifted by one row (teacher forcing) and its outputs
go through the mixture loss; the total is ``L_R + w_step * max(L_KL, 0.2)``. You write the
forward and the backward wiring by hand, compare loss and *every gradient tensor by name* with
the library's two functions ``sketch_rnn_forward`` / ``sketch_rnn_backward``
(``minisketch/layers/sketch_rnn.py``, about as long as yours) and with
``SketchRNN.loss_and_grad``, which runs their fast twin (the llm.c way), gradient-check the whole
model in float64, count the parameters of the paper's model, and overfit one small batch as a
sanity check that the gradient really lowers the loss.

What you need: lessons 04 (LSTM over a sequence), 05 (encoder), 06 (latent, KL), 07 (mixture).

How to run:  python lessons/08_decoder_and_loss.py                    (full, under a minute)
             MINISKETCH_FAST=1 python lessons/08_decoder_and_loss.py  (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
from course import FAST, savefig

import time

import numpy as np
import matplotlib.pyplot as plt
import minisketch as ms
from minisketch import gradcheck, optim, shapes
from minisketch.layers import cells, encoder, latent, linear, lstm, mdn
from minisketch.layers.sketch_rnn import sketch_rnn_backward, sketch_rnn_forward

# %% [markdown]
# ## 1. A tiny conditional model and a batch
# The same code runs the paper's model (256/512 units, N_z 128, M 20); tiny sizes keep the
# gradient check fast. float64, so finite differences resolve 1e-6. Recurrent dropout is off
# here to keep the hand wiring short; section 4 checks the model with it on.

# %%
hp = ms.HParams(enc_rnn_size=6, dec_rnn_size=8, z_size=3, num_mixture=2,
                use_recurrent_dropout=False)
model = ms.SketchRNN(hp, dtype="float64", seed=1)
print(model)
rs = np.random.default_rng(5)
sketches = [shapes.make_sketch(k, rs)[: (12 if FAST else 40)] for k in ("circle", "star", "house")]
sf = 12.0
N_max = max(len(s) for s in sketches) + 2             # some padding rows too
batch = ms.make_batch(sketches, max_len=N_max, scale_factor=sf)
B = len(sketches)
step = 7                                              # any step: it seeds eps and sets w_step
# the reference init makes mu, s ~ 0 (KL ~ 0, below the floor, no KL gradient); larger latent
# weights put the KL above its floor so that its gradient path is exercised too
for name in ("mu/W", "sigma/W"):
    model.params[name][...] = np.random.default_rng(9).standard_normal(model.params[name].shape)

# %% [markdown]
# ## 2. The forward wiring, by hand
# **Teacher forcing.** The decoder is trained to predict row $i$ of a sketch from the rows
# before it. During training it reads the *true* previous row $S_{i-1}$ of the data, not the
# row it would have drawn itself (eq. 5: $x_i = [S_{i-1}; z]$). Every step then gets a useful
# gradient, even early on when the model's own drawing would wander off, and all $N$ steps are
# scored in one pass. When sampling (lesson 11) there is no data: the decoder reads its own
# previous sample instead. So the input is the batch shifted by one row: read rows
# $0 \dots N-1$ (row 0 is the start token $S_0$), predict rows $1 \dots N$.
#
# The whole forward, with the paper's equation numbers:
#
# | step | shape | where |
# |---|---|---|
# | $x$ = the batch, time-major (row 0 = $S_0$) | $[N+1, B, 5]$ | lesson 01 |
# | $h_{\text{enc}} = \text{Encoder}(x_{1..N}, L)$ | $[B, 2H_e]$ | eq. 1, lesson 05 |
# | $\mu, s, z = \text{Latent}(h_{\text{enc}}, \epsilon)$, $\epsilon$ from the generator seeded by (seed, step) | $[B, N_z]$ | eq. 2, lesson 06 |
# | $[c_0 ; h_0] = \tanh(z W_z + b_z)$ | $[B, 2H_d]$ | eq. 3 |
# | decoder input $x^{\text{dec}}_i = [x_i ; z]$ for $i = 0 \dots N-1$ (teacher forcing) | $[N, B, 5 + N_z]$ | eq. 5 |
# | $h_{1..N} = \text{LSTM}(x^{\text{dec}}, [c_0; h_0])$, no mask: the decoder runs all $N$ steps | $[N, B, H_d]$ | lessons 03-04 |
# | $y = h W_{\text{out}} + b_{\text{out}}$ | $[N B, 6M + 3]$ | eqs. 5-8 |
# | $L_R = (\text{offset sum} + \text{pen sum}) / (B N)$ against the targets $x_{1..N}$ | scalar | eq. 10, lesson 07 |
# | $\text{loss} = L_R + w_{\text{step}} \max(L_{KL}, 0.2)$ | scalar | eqs. 11-12, lesson 06 |
#
# Dividing by $N = N_{\max}$ rather than by each sketch's own length follows the paper (eq. 10):
# every row of the padded batch counts, and the pen term on the padding rows is what teaches
# the model to stop.

# %%
P = model.params


def group(prefix):
    return {k[len(prefix):]: P[k] for k in P if k.startswith(prefix)}


def forward_by_hand(batch, step):
    x = np.ascontiguousarray(batch.strokes.transpose(1, 0, 2), dtype=np.float64)
    N = x.shape[0] - 1
    eps = np.random.default_rng([model.seed, step]).standard_normal((B, hp.z_size))
    h_enc, enc_c = encoder.encoder_forward(x[1:], batch.lengths, group("enc_fw/"),
                                           group("enc_bw/"), cells.get_cell("lstm"),
                                           hp.enc_rnn_size)
    mu, s, z, lat_c = latent.latent_forward(h_enc, {k: P[k] for k in
                                                    ("mu/W", "mu/b", "sigma/W", "sigma/b")}, eps)
    kl = float(-np.sum(1 + s - mu ** 2 - np.exp(s)) / (2 * mu.size))
    w_step = hp.kl_weight - (hp.kl_weight - hp.kl_weight_start) * hp.kl_decay_rate ** step
    state0 = np.tanh(z @ P["dec_init/W"] + P["dec_init/b"])
    dec_in = np.concatenate([x[:-1], np.repeat(z[None], N, axis=0)], axis=2)
    hs, _, dec_c = lstm.lstm_forward(dec_in, state0, group("dec/"))
    y, out_c = linear.linear_forward(hs.reshape(N * B, -1), P["out/W"], P["out/b"])
    target = x[1:].reshape(N * B, 5)
    offset_sum, pen_sum = mdn.mdn_loss(y, target)
    recon = (float(offset_sum) + float(pen_sum)) / (B * N)
    loss = recon + w_step * max(kl, hp.kl_tolerance)
    cache = dict(x=x, N=N, eps=eps, enc_c=enc_c, lat_c=lat_c, mu=mu, s=s, z=z, kl=kl,
                 w_step=w_step, state0=state0, dec_c=dec_c, out_c=out_c, y=y, target=target)
    return {"loss": loss, "recon": recon, "kl": kl, "kl_weight": w_step}, cache


mine, cache = forward_by_hand(batch, step)
# the library's forward: the same wiring in one function (open layers/sketch_rnn.py beside this)
x_lib, lengths_lib = model.batch_inputs(batch)             # [N+1, B, 5] time-major, [B]
noise = model.draw_noise(step, B, N_max)                     # eps from (seed, step); no dropout
ref_losses, ref_cache = sketch_rnn_forward(model.params, x_lib, lengths_lib, noise, hp,
                                           model.kl_weight(step))
# the model's loss_and_grad runs the fast twin of those functions (z projected once, padding
# skipped, row blocks in threads): the same numbers to float rounding
losses, grads = model.loss_and_grad(batch, step)
for k in mine:
    print(f"{k:9s} hand {mine[k]:+.12f}  sketch_rnn_forward {float(ref_losses[k]):+.12f}  "
          f"model {float(losses[k]):+.12f}")
    assert abs(mine[k] - float(ref_losses[k])) < 1e-12, f"{k}: hand and library differ (> 1e-12)"
    assert abs(mine[k] - float(losses[k])) < 1e-12, f"{k}: hand and model differ (> 1e-12)"
assert mine["kl"] > hp.kl_tolerance, "this example should have its KL above the floor"

# %% [markdown]
# ## 3. The backward wiring, by hand
# Undo the forward lines bottom-up. The two new pieces are the paths of $z$: it feeds every
# decoder step and the initial state, so its gradient is the sum of both.
#
# | forward | backward |
# |---|---|
# | $x^{\text{dec}}_i = [x_i ; z]$ for every $i$ | $dz = \sum_i dx^{\text{dec}}_i[:, 5{:}]$ |
# | $[c_0 ; h_0] = \tanh(z W_z + b_z)$ | $dp = d[c_0; h_0] \odot (1 - [c_0; h_0]^2)$, $\; dW_z = z^\top dp$, $\; dz \mathrel{+}= dp \, W_z^\top$ |
#
# then $z \to (\mu, s) \to h_{\text{enc}} \to$ the encoder's weights, with the KL adding its
# own $d\mu$, $ds$ (lesson 06).

# %%
def backward_by_hand(c):
    N = c["N"]
    _, _, dy = mdn.mdn_loss_and_grad(c["y"], c["target"], 1.0 / (B * N))
    dhs, g_outW, g_outb = linear.linear_backward(dy, c["out_c"])
    ddec_in, dstate0, g_dec = lstm.lstm_backward(dhs.reshape(N, B, -1), None, c["dec_c"])
    dz = ddec_in[:, :, 5:].sum(axis=0)
    dpre = dstate0 * (1 - c["state0"] ** 2)
    g = {"dec_init/W": c["z"].T @ dpre, "dec_init/b": dpre.sum(0), "out/W": g_outW,
         "out/b": g_outb}
    dz += dpre @ P["dec_init/W"].T
    dkl = c["w_step"] * (c["kl"] > hp.kl_tolerance)
    dmu_kl, ds_kl = latent.kl_backward(dkl, (c["mu"], c["s"]))
    dh_enc, g_lat = latent.latent_backward(dz, dmu_kl, ds_kl, c["lat_c"])
    _, g_fw, g_bw = encoder.encoder_backward(dh_enc, c["enc_c"])
    g.update(g_lat)
    g.update({"dec/" + k: v for k, v in g_dec.items()})
    g.update({"enc_fw/" + k: v for k, v in g_fw.items()})
    g.update({"enc_bw/" + k: v for k, v in g_bw.items()})
    return g


g_hand = backward_by_hand(cache)
g_ref = sketch_rnn_backward(ref_cache)
assert set(g_hand) == set(g_ref) == set(model.param_names), "gradients of every parameter"
print(f"{'tensor':14s} {'shape':>10s}  max |hand - sketch_rnn_backward|  max |hand - model|")
for name in model.param_names:
    e_ref = float(np.abs(g_hand[name] - g_ref[name]).max())
    e = float(np.abs(g_hand[name] - grads[name]).max())
    print(f"{name:14s} {str(grads[name].shape):>10s}  {e_ref:.1e}{'':25s}{e:.1e}")
    assert e_ref < 1e-12, f"{name}: hand gradient differs from the library's by {e_ref:.1e}"
    assert e < 1e-12, f"{name}: hand gradient differs from the model's by {e:.1e} (> 1e-12)"

# %% [markdown]
# ## 4. Gradient check of the whole model
# Now the oracle: central differences of `model.loss_and_grad(batch, step)["loss"]` for every
# tensor, with recurrent dropout *on* (the masks are drawn from the generator seeded by
# (seed, step), so the loss is a deterministic function of the parameters). Tolerance 1e-6.

# %%
hp_d = hp.replace(use_recurrent_dropout=True)
model_d = ms.SketchRNN(hp_d, dtype="float64", seed=2)
model_d.params["mu/W"][...] = model.params["mu/W"]            # KL above the floor again
_, g_d = model_d.loss_and_grad(batch, step)
analytic = {k: np.array(v) for k, v in g_d.items()}   # copy: the next calls overwrite grads
t0 = time.time()
errs = gradcheck.check_gradients(lambda: float(model_d.loss_and_grad(batch, step)[0]["loss"]),
                                 model_d.params, analytic, tol=1e-6,
                                 max_entries=3 if FAST else 40)
print(f"whole-model gradient check, dropout on ({time.time() - t0:.1f} s): worst "
      f"{max(errs.values()):.1e} in {max(errs, key=errs.get)} (tol 1e-6)")

# %% [markdown]
# ## 5. The paper's model: counting parameters
# An LSTM with $D$ inputs and $H$ units has $4H (D + H + 1)$ parameters. The conditional model:
#
# | block | parameters |
# |---|---|
# | encoder, two directions | $2 \times 4 \cdot 256 \cdot (5 + 256 + 1)$ |
# | $\mu$ and $s$ projections | $2 \times (512 \cdot 128 + 128)$ |
# | initial state from $z$ | $128 \cdot 1024 + 1024$ |
# | decoder (input $5 + N_z = 133$) | $4 \cdot 512 \cdot (133 + 512 + 1)$ |
# | output ($M = 20$: $6M + 3 = 123$) | $512 \cdot 123 + 123$ |

# %%
def lstm_count(D, H):
    return 4 * H * (D + H + 1)


by_hand = (2 * lstm_count(5, 256) + 2 * (512 * 128 + 128) + (128 * 1024 + 1024)
           + lstm_count(5 + 128, 512) + (512 * 123 + 123))
by_hand_gen = lstm_count(5, 512) + 512 * 123 + 123
print(f"conditional: {by_hand:,} by hand (paper's reference code 2,186,107); "
      f"decoder-only {by_hand_gen:,} (1,123,963)")
assert by_hand == 2186107 and by_hand_gen == 1123963, "hand parameter counts are off"
if not FAST:                                          # building the full model takes a moment
    assert ms.SketchRNN(ms.HParams()).num_params == by_hand, "model count differs"
    assert ms.SketchRNN(ms.HParams(conditional=False)).num_params == by_hand_gen
gen = ms.SketchRNN(ms.HParams(conditional=False, dec_rnn_size=16, num_mixture=3))
assert gen.param_names == ["dec/W_xh", "dec/W_hh", "dec/b", "out/W", "out/b"], \
    "a decoder-only LSTM model holds exactly the magenta.js arrays"

# %% [markdown]
# ## 6. Sanity check: overfit one batch
# If the gradient is right, plain clipped Adam on one fixed batch must drive the
# reconstruction loss far down. (Lesson 09 derives Adam; here we only use it.)

# %%
hp_o = ms.HParams(enc_rnn_size=16, dec_rnn_size=32, z_size=4, num_mixture=3,
                  use_recurrent_dropout=False, kl_weight_start=0.5, kl_decay_rate=1.0)
m_o = ms.SketchRNN(hp_o, dtype="float64", seed=0, scale_factor=sf)
opt = optim.Adam(m_o.flat)
iters = 40 if FAST else 300
history = []
for it in range(iters):
    lo, _ = m_o.loss_and_grad(batch, step=0)           # same batch, same noise every time
    history.append((float(lo["recon"]), float(lo["offset"]), float(lo["pen"])))
    opt.update(m_o.flat, m_o.flat_grad, lr=3e-3, clip=1.0)
history = np.array(history)
print(f"overfitting one batch: recon {history[0, 0]:.3f} -> {history[-1, 0]:.3f}")
assert history[-1, 0] < history[0, 0] - (0.5 if FAST else 2.0), \
    "the reconstruction loss should fall by > 0.5 (fast) / 2.0 (full) nats on a fixed batch"

fig, ax = plt.subplots(figsize=(5.5, 3.2))
for j, name in enumerate(("recon = offset + pen", "offset", "pen")):
    ax.plot(history[:, j], label=name)
ax.set_xlabel("Adam step on one fixed batch")
ax.set_ylabel("loss")
ax.set_title("Does the gradient lower the loss? (Adam on one fixed batch)", fontsize=9)
ax.legend(fontsize=8)
savefig(fig, "08_overfit_one_batch.png")
print("lesson 08 checks passed")

# %% [markdown]
# ## Exercises
# 1. The decoder reads `x[:-1]` and is scored on `x[1:]`. Shift by one row the wrong way
#    (score on `x[:-1]`) and watch the overfitting curve: what does the model learn instead?
# 2. Remove z from the decoder inputs (keep only the initial state). Re-derive `dz` and
#    compare the two models' reconstruction losses after overfitting.
# 3. With B = 100 and N_max = 250, the pen term counts 25000 rows. What fraction of them are
#    padding in aaron_sheep (mean length ~ 70)? Why do the paper's samples still stop?
# 4. Check in float32 (`dtype="float32"`) that the model's loss agrees with the float64 one to
#    about 1e-5 relative, and explain why a float32 gradient check would fail.
