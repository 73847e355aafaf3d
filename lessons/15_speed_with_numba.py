"""Lesson 15: speed with Numba: fusing the pointwise math of a step into one compiled loop.

What you will build: a Numba kernel for the LSTM step: one ``@njit`` loop over (row, unit)
that computes the four gates, the cell and the output in registers and writes only c and h,
instead of NumPy's chain of ~20 whole-array operations with a temporary array each. You check it
against the reference step function, time it (wall clock and CPU time, since the machine may be
shared), then compare the library's compiled kernels with the reference, kernel by kernel, and
a whole training step on ``backend="numba"`` with ``backend="numpy"``. The library keeps one file
per op, the Numba kernel beside its CUDA twin: ``minisketch/kernels/lstm.py`` (open it next to
this lesson), ``layer_norm_lstm.py``, ``mdn.py``, ``optim.py`` (clip + Adam), with their
exp/tanh in ``kernels/numerics.py``; ``tests/test_kernel_contract.py`` holds each one to its
reference. Where the time goes afterwards: the matrix products, which stay with BLAS.

What you need: lessons 03-04 (the LSTM step and sequence) and 08 (the training step).

How to run:  python lessons/15_speed_with_numba.py                    (full, about a minute)
             MINISKETCH_FAST=1 python lessons/15_speed_with_numba.py  (fast, as the tests do)
The first run compiles the kernels (tens of seconds; ``cache=True`` keeps the machine code in
``__pycache__`` for later runs). Figures go to lessons/out/.
"""
# %% [markdown]
# The lessons' shared setup runs NumPy's BLAS and Numba on one thread each: on a shared
# 2-core machine, worker threads of both fight over the cores and spin, and timings mean
# little. Export `NUMBA_NUM_THREADS` (and `OPENBLAS_NUM_THREADS`) before running to try more.

# %%
from course import FAST, rng, savefig

import math
import time

import numpy as np
import matplotlib.pyplot as plt
from numba import njit

import minisketch as ms
from minisketch import shapes
from minisketch.kernels import numba_cpu
from minisketch.layers import layer_norm_lstm, lstm, mdn

rng = rng(0)


def timed(fn, repeats):
    """Median wall-clock and CPU seconds of fn() over `repeats` calls (after one warm-up)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


# %% [markdown]
# ## 1. A fused LSTM step, by hand
# The same math as lesson 03, but one scalar at a time: Numba compiles the loop to machine code,
# every intermediate lives in a register, and memory is touched once per input and output.
#
# $$
# \text{for every row } b \text{ and unit } k: \quad
# i = \sigma(a_i), \ g = \tanh(a_j), \ f = \sigma(a_f + 1), \ o = \sigma(a_o), \
# c = f c_{\text{prev}} + i g, \ h = o \tanh(c).
# $$

# %%
@njit(cache=True)
def lstm_step_numba(xw, hh, c_prev, c_out, h_out):
    B, H = c_prev.shape
    for b in range(B):
        for k in range(H):
            ai = xw[b, k] + hh[b, k]
            aj = xw[b, H + k] + hh[b, H + k]
            af = xw[b, 2 * H + k] + hh[b, 2 * H + k]
            ao = xw[b, 3 * H + k] + hh[b, 3 * H + k]
            i = 1.0 / (1.0 + math.exp(-ai))
            g = math.tanh(aj)
            f = 1.0 / (1.0 + math.exp(-(af + 1.0)))
            o = 1.0 / (1.0 + math.exp(-ao))
            c = f * c_prev[b, k] + i * g
            c_out[b, k] = c
            h_out[b, k] = o * math.tanh(c)


B, H = (16, 64) if FAST else (100, 512)
xw, hh = rng.standard_normal((B, 4 * H)), rng.standard_normal((B, 4 * H))
c_prev, h_prev = rng.standard_normal((B, H)), rng.standard_normal((B, H))
c_ref, h_ref, act = np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))
lstm.lstm_cell_forward(xw, hh, c_prev, h_prev, None, None, c_ref, h_ref, act)
c_n, h_n = np.empty((B, H)), np.empty((B, H))
t0 = time.perf_counter()
lstm_step_numba(xw, hh, c_prev, c_n, h_n)             # first call: compile (or load the cache)
print(f"first call (compile or cache load): {time.perf_counter() - t0:.2f} s")
err = max(float(np.abs(c_n - c_ref).max()), float(np.abs(h_n - h_ref).max()))
print(f"hand Numba step vs lstm_cell_forward: max error {err:.1e}")
assert err < 1e-14, f"hand Numba kernel differs from the reference by {err:.1e} (> 1e-14)"

# %% [markdown]
# ## 2. How much faster?
# Fusing alone is not the whole story. Our loop calls libm's `exp` and `tanh`, one scalar call
# per value (~20 ns each, and LLVM cannot vectorize across a call), while NumPy's own exp/tanh
# process several values per instruction (SIMD). So at B = 100, H = 512 in float64 our loop
# is only about as fast as NumPy's chain of array operations. The library's kernel also saves
# the activations for the backward pass and handles dropout and padding masks, but it computes
# exp/tanh with its own short polynomial code that LLVM *can* vectorize (kernels/numerics.py),
# and that makes it several times faster. Times are medians; on a shared machine, trust the CPU
# seconds.

# %%
K = numba_cpu.kernel_set()
repeats = 5 if FAST else 50
c2, h2, act2 = np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))
results = {
    "NumPy reference": timed(lambda: lstm.lstm_cell_forward(
        xw, hh, c_prev, h_prev, None, None, c2, h2, act2), repeats),
    "lesson's Numba loop": timed(lambda: lstm_step_numba(xw, hh, c_prev, c_n, h_n), repeats),
    "library Numba kernel": timed(lambda: K.lstm_cell_forward(
        xw, hh, c_prev, h_prev, None, None, c2, h2, act2), repeats),
}
for name, (w, c) in results.items():
    print(f"  {name:22s} {w * 1e6:9.1f} us wall  {c * 1e6:9.1f} us CPU")
speedup_hand = results["NumPy reference"][1] / max(results["lesson's Numba loop"][1], 1e-9)
speedup = results["NumPy reference"][1] / max(results["library Numba kernel"][1], 1e-9)
print(f"CPU time of the NumPy chain / fused kernel (B={B}, H={H}): lesson's loop "
      f"{speedup_hand:.1f}x, library kernel {speedup:.1f}x")

# %% [markdown]
# ## 3. The library's kernels against the reference
# Same signatures, same outputs: each kernel is checked on random inputs, forward and backward,
# with dropout and a padding mask. Tolerance 1e-12 relative in float64 (the kernels' exp/tanh
# are within ~2 ulp of NumPy's; sums may be ordered differently).

# %%
def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


keep = (rng.random((B, H)) < 0.9) / 0.9
mask = (rng.random(B) < 0.8).astype(np.float64)
outs_ref = [np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))]
outs_nb = [np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))]
lstm.lstm_cell_forward(xw, hh, c_prev, h_prev, keep, mask, *outs_ref)
K.lstm_cell_forward(xw, hh, c_prev, h_prev, keep, mask, *outs_nb)
errs = {"lstm forward": max(rel(a, b) for a, b in zip(outs_nb, outs_ref))}
dh, dc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
bw_ref = [np.empty((B, 4 * H)), np.empty((B, H)), np.empty((B, H))]
bw_nb = [np.empty((B, 4 * H)), np.empty((B, H)), np.empty((B, H))]
lstm.lstm_cell_backward(dh, dc, c_prev, outs_ref[2], keep, mask, *bw_ref)
K.lstm_cell_backward(dh, dc, c_prev, outs_ref[2], keep, mask, *bw_nb)
errs["lstm backward"] = max(rel(a, b) for a, b in zip(bw_nb, bw_ref))

gam, bet = 1 + 0.1 * rng.standard_normal(4 * H), 0.1 * rng.standard_normal(4 * H)
gc, bc = 1 + 0.1 * rng.standard_normal(H), 0.1 * rng.standard_normal(H)
ln_ref = [np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H)), np.empty((B, 5 * H)),
          np.empty((B, 5))]
ln_nb = [np.empty_like(a) for a in ln_ref]
layer_norm_lstm.ln_lstm_cell_forward(xw, c_prev, h_prev, keep, mask, gam, bet, gc, bc, *ln_ref)
K.ln_lstm_cell_forward(xw, c_prev, h_prev, keep, mask, gam, bet, gc, bc, *ln_nb)
errs["layer-norm lstm forward"] = max(rel(a, b) for a, b in zip(ln_nb, ln_ref))

Mx, Nr = 5, 4 * B
y = rng.standard_normal((Nr, 6 * Mx + 3))
tgt = np.zeros((Nr, 5))
tgt[:, :2] = rng.standard_normal((Nr, 2))
tgt[np.arange(Nr), 2 + rng.integers(0, 3, Nr)] = 1.0
o_r, p_r, g_r = mdn.mdn_loss_and_grad(y, tgt, 0.01)
o_n, p_n, g_n = K.mdn_loss_and_grad(y, tgt, 0.01)
errs["mdn loss + gradient"] = max(rel(np.asarray(o_n), np.asarray(o_r)),
                                  rel(np.asarray(p_n), np.asarray(p_r)), rel(g_n, g_r))
for name, e in errs.items():
    print(f"  {name:24s} relative error {e:.1e}")
    assert e < 1e-12, f"{name}: Numba kernel differs from the reference by {e:.1e} (> 1e-12)"

# %% [markdown]
# ## 4. A whole training step
# `SketchRNN(hp, backend="numba")` swaps the kernel set, and by default one more thing: where the
# dropout noise comes from. NumPy draws it with its PCG64 generator (`noise="host"`); Numba uses
# the counter-based hash of `minisketch/noise.py` (`noise="device"`, also CuPy's), which its
# compiled kernel computes three times faster, and which gives the same masks on every backend.
# To compare the two models we give both the same stream. In float64 the loss and every
# gradient must match the NumPy model; then time both on the same batch. The gain is smaller
# than for the step kernel alone: most of a training step is matrix products, which both
# backends leave to BLAS.

# %%
if FAST:
    hp = ms.HParams(enc_rnn_size=16, dec_rnn_size=32, z_size=8, num_mixture=4, batch_size=8)
    n_sk, step_repeats = 8, 2
else:
    hp = ms.HParams(enc_rnn_size=128, dec_rnn_size=256, z_size=32, num_mixture=10,
                    batch_size=64)
    n_sk, step_repeats = 64, 5
r = np.random.default_rng(1)
sk = [shapes.make_sketch(shapes.CLASSES[i % 7], r) for i in range(n_sk)]
batch = ms.make_batch(sk, max_len=max(len(s) for s in sk), scale_factor=12.0)
assert ms.SketchRNN(hp, backend="numba").noise == "device"
models = {b: ms.SketchRNN(hp, backend=b, dtype="float64", seed=0, noise="device")
          for b in ("numpy", "numba")}
losses = {b: m.loss_and_grad(batch, step=1)[0] for b, m in models.items()}
g_err = rel(models["numba"].flat_grad, models["numpy"].flat_grad)
l_err = abs(float(losses["numba"]["loss"]) - float(losses["numpy"]["loss"]))
print(f"training step numba vs numpy: |loss diff| {l_err:.1e}, gradient relative error {g_err:.1e}")
assert l_err < 1e-10 and g_err < 1e-9, "the numba model must match the numpy model (float64)"

step_times = {}
for b in ("numpy", "numba"):
    m32 = ms.SketchRNN(hp, backend=b, dtype="float32", seed=0)
    step_times[b] = timed(lambda: m32.loss_and_grad(batch, step=1), step_repeats)
    print(f"  float32 training step, {b:5s}: {step_times[b][0] * 1e3:8.1f} ms wall, "
          f"{step_times[b][1] * 1e3:8.1f} ms CPU")

# %% [markdown]
# ## 5. A picture

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
names = list(results)
axes[0].bar(range(3), [results[n][1] * 1e6 for n in names], color=["C0", "C2", "C1"])
axes[0].set_xticks(range(3), names, fontsize=7)
axes[0].set_ylabel("CPU us per LSTM step")
axes[0].set_title(f"How much CPU does one LSTM step's pointwise math take?\n"
                  f"B={B}, H={H}, float64", fontsize=9)
axes[1].bar(range(2), [step_times[b][1] * 1e3 for b in step_times], color=["C0", "C1"])
axes[1].set_xticks(range(2), [f"backend={b}" for b in step_times], fontsize=8)
axes[1].set_ylabel("CPU ms per training step")
axes[1].set_title("And a whole training step (forward + backward)?\nfloat32", fontsize=9)
savefig(fig, "15_numba_speed.png")
# Timings are observations, not checks: they depend on the machine and its load, so they are
# printed (and plotted) but never asserted on.
print(f"the library's fused kernel: {speedup:.1f}x less CPU time than the NumPy chain")
print("lesson 15 checks passed")

# %% [markdown]
# ## Exercises
# 1. Add `parallel=True` and `prange` over rows to `lstm_step_numba` and run with
#    `NUMBA_NUM_THREADS=2`. When does it pay off, and why not for B = 1 (sampling)?
# 2. Write the backward step as a Numba loop and compare it with `lstm_cell_backward`.
# 3. Profile a full training step (`cProfile`) with both backends. What fraction of the time
#    is in `matmul` once the pointwise math is compiled?
# 4. Try `fastmath=True` on your loop. How large is the difference from the reference, and
#    why do the library's kernels refuse it (hint: gradient checks)?
# 5. Replace `math.exp` in your loop by a vectorizable approximation (e.g. range reduction
#    plus a polynomial) and measure again; compare its accuracy with `np.exp`.
