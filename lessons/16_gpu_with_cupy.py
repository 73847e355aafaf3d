"""Lesson 16: the GPU with CuPy: the same array code, and one fused kernel per step.

What you will build: a fused CUDA kernel for the LSTM step, written as a CuPy
``ElementwiseKernel`` whose body is a handful of plain assignments. The same body text is
checked against the reference step function twice: compiled as CUDA on a GPU when one is
present, and executed line by line with NumPy on the CPU (so the lesson checks the kernel's
math everywhere). You count what fusion saves (kernel launches and bytes moved through memory,
read off the kernel text itself), see why minisketch's layer code runs on CuPy arrays unchanged
(``xp = get_xp(x)``), and, on a GPU, time the unfused array code, your kernel and the library's
(the CUDA source in ``minisketch/kernels/lstm.py``, beside the Numba kernel of lesson 15) with
CUDA events, and compare a whole training step on the GPU with the NumPy reference.

What you need: lesson 03 (the LSTM step) and lesson 15 (the same idea with Numba on the CPU).
Without CuPy or without a CUDA device the lesson runs its CPU path and says so.
Install CuPy with ``pip install -e ".[cuda12]"`` (or ``.[cuda13]``).

How to run:  python lessons/16_gpu_with_cupy.py                    (full)
             MINISKETCH_FAST=1 python lessons/16_gpu_with_cupy.py  (fast, as the tests do)
Figures go to lessons/out/.
"""
# %%
from course import FAST, savefig

import re

import numpy as np
import matplotlib.pyplot as plt
import minisketch as ms
from minisketch.backend import get_xp, require_cupy
from minisketch.errors import BackendError
from minisketch.layers import lstm

try:
    cp = require_cupy()                 # CuPy importable and at least one CUDA device
    GPU = True
    print("CuPy", cp.__version__, "on", cp.cuda.runtime.getDeviceProperties(0)["name"].decode())
except BackendError as e:
    cp, GPU = None, False
    print(f"note: no GPU path here ({e}).\nThe lesson runs its CPU path: the kernel's math is "
          "checked with NumPy, and the timings need a GPU.")

# %% [markdown]
# ## 1. One code path for NumPy and CuPy
# Every layer function asks its input which array module it belongs to, `xp = get_xp(x)`, and
# calls `xp.tanh`, `xp.matmul`, ... CuPy mirrors NumPy's API, so the reference LSTM runs on GPU
# arrays with no change at all: the backend is chosen by where the arrays live.

# %%
x_host = np.zeros((2, 3))
assert get_xp(x_host) is np, "a NumPy array belongs to numpy"
if GPU:
    assert get_xp(cp.zeros((2, 3))) is cp, "a CuPy array belongs to cupy"
try:
    ms.get_backend("cupy")
    backend_ok = True
except BackendError as e:
    backend_ok = False
    assert "pip install" in str(e), "the error should say how to install CuPy"
    print(f"get_backend('cupy') says: {e}")
assert backend_ok == GPU, "the cupy backend is available exactly when CuPy sees a device"

# %% [markdown]
# ## 2. Why fuse?
# In NumPy (or CuPy's array code) every operation is one pass over memory: `sigmoid(a_i)` reads
# a_i and writes a temporary, `f * c_prev` reads two arrays and writes a third, and so on, one
# GPU kernel launch each (~5-10 us of overhead apiece). A *fused* kernel reads each input once,
# keeps every intermediate in registers, and writes only the outputs. The body below is the LSTM
# step of lesson 03 with one thread per (row, unit); every line is valid CUDA C (inside the kernel,
# with `T` the element type) and valid Python.

# %%
KERNEL_LINES = [                  # (CuPy reserves the name i for the element index)
    "gi = 1 / (1 + exp(-ai))",
    "gj = tanh(aj)",
    "gf = 1 / (1 + exp(-(af + 1)))",
    "go = 1 / (1 + exp(-ao))",
    "c = gf * c_prev + gi * gj",
    "h = go * tanh(c)",
]
INPUTS, OUTPUTS = ["ai", "aj", "af", "ao", "c_prev"], ["c", "h"]
TEMPS = ["gi", "gj", "gf", "go"]


def kernel_source(lines):
    """CUDA body: temporaries declared with the element type T, outputs assigned."""
    out = []
    for line in lines:
        name = line.split("=")[0].strip()
        out.append(("T " if name in TEMPS else "") + line + ";")
    return "\n".join(out)


print(kernel_source(KERNEL_LINES))


def run_kernel_with_numpy(lines, **arrays):
    """Execute the kernel body with NumPy arrays: exactly the statements the GPU would run."""
    env = {"exp": np.exp, "tanh": np.tanh, **arrays}
    for line in lines:
        exec(line, env)
    return {k: env[k] for k in OUTPUTS}


# %% [markdown]
# ### The kernel's math, checked on the CPU
# Compare the kernel body, run by NumPy, with the reference step function
# (`lstm_cell_forward`, lessons 03-04) on random inputs.

# %%
rng = np.random.default_rng(0)
B, H = (8, 16) if FAST else (100, 512)
xw = rng.standard_normal((B, 4 * H))
hh = rng.standard_normal((B, 4 * H))
c_prev = rng.standard_normal((B, H))
h_prev = rng.standard_normal((B, H))
a = xw + hh
res = run_kernel_with_numpy(KERNEL_LINES, ai=a[:, :H], aj=a[:, H:2 * H], af=a[:, 2 * H:3 * H],
                            ao=a[:, 3 * H:], c_prev=c_prev)
c_ref, h_ref, act_ref = np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))
lstm.lstm_cell_forward(xw, hh, c_prev, h_prev, None, None, c_ref, h_ref, act_ref)
err_cpu = max(float(np.abs(res["c"] - c_ref).max()), float(np.abs(res["h"] - h_ref).max()))
print(f"kernel body run by NumPy vs lstm_cell_forward: max error {err_cpu:.1e}")
assert err_cpu < 1e-14, f"the kernel's math differs from the reference by {err_cpu:.1e} (> 1e-14)"

# %% [markdown]
# ### What fusion saves, read off the kernel text
# Unfused, each statement is at least one pass: it reads the arrays it names and writes one
# (and `exp(-(x))`, `1 + ...`, `1 / ...` are separate passes too: count operators). Fused, the
# kernel reads the 5 inputs and writes the 2 outputs once. Counting from the text:

# %%
def count_passes(line):
    """Element-wise passes NumPy makes for one statement: one per operator or function call."""
    rhs = line.split("=", 1)[1]
    calls = len(re.findall(r"\b(exp|tanh)\(", rhs))
    ops = len(re.findall(r"[-+*/]", rhs))
    return calls + ops


unfused_passes = sum(count_passes(line) for line in KERNEL_LINES)
# each pass reads ~2 arrays and writes 1 (a unary pass reads 1): 3 array transfers is an upper
# bound, 2 a lower one; the fused kernel moves len(INPUTS) + len(OUTPUTS) arrays
bytes_per_array = B * H * 8
unfused_bytes = (2 * unfused_passes * bytes_per_array, 3 * unfused_passes * bytes_per_array)
fused_bytes = (len(INPUTS) + len(OUTPUTS)) * bytes_per_array
print(f"unfused: {unfused_passes} kernel launches, {unfused_bytes[0] / 1e3:.0f}-"
      f"{unfused_bytes[1] / 1e3:.0f} kB moved; fused: 1 launch, {fused_bytes / 1e3:.0f} kB "
      f"(B={B}, H={H}, float64)")
assert unfused_passes >= 10, "the LSTM step is many element-wise passes when unfused"
assert fused_bytes * 2 < unfused_bytes[0], "fusion should at least halve the memory traffic"

# %% [markdown]
# ## 3. On the GPU: compile, compare, time
# `cp.ElementwiseKernel(inputs, outputs, body)` compiles the body once per dtype (CUDA C via
# NVRTC) and launches one thread per element; passing the four gate blocks as strided views of
# `a` works because elementwise kernels index their arguments by shape and strides.
#
# GPU work is asynchronous: a host clock around a launch measures only the launch. Time with
# CUDA events recorded on the stream, and synchronize on the end event.

# %%
def time_gpu(fn, repeats):
    fn()                                          # warm-up (and compilation)
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) * 1000.0)   # ms -> us
    return float(np.median(times))


timings = {}
if GPU:
    fused = cp.ElementwiseKernel(
        "T ai, T aj, T af, T ao, T c_prev", "T c, T h", kernel_source(KERNEL_LINES),
        "lesson15_lstm_step")
    xw_d, hh_d = cp.asarray(xw), cp.asarray(hh)
    cprev_d, hprev_d = cp.asarray(c_prev), cp.asarray(h_prev)
    a_d = xw_d + hh_d
    c_d, h_d = cp.empty((B, H)), cp.empty((B, H))
    fused(a_d[:, :H], a_d[:, H:2 * H], a_d[:, 2 * H:3 * H], a_d[:, 3 * H:], cprev_d, c_d, h_d)
    err_gpu = max(float(cp.abs(c_d - cp.asarray(c_ref)).max()),
                  float(cp.abs(h_d - cp.asarray(h_ref)).max()))
    print(f"ElementwiseKernel on the GPU vs the NumPy reference: max error {err_gpu:.1e}")
    assert err_gpu < 1e-13, f"GPU kernel differs from the reference by {err_gpu:.1e} (> 1e-13)"

    # the reference step function on CuPy arrays (unfused), and the library's fused kernel
    from minisketch.kernels import cupy_gpu
    c2, h2, act2 = cp.empty((B, H)), cp.empty((B, H)), cp.empty((B, 5 * H))
    lib_k = cupy_gpu.kernel_set()
    lib_k.lstm_cell_forward(xw_d, hh_d, cprev_d, hprev_d, None, None, c2, h2, act2)
    err_lib = float(cp.abs(h2 - cp.asarray(h_ref)).max())
    assert err_lib < 1e-13, f"library CUDA kernel differs from the reference by {err_lib:.1e}"
    reps = 20 if FAST else 200
    timings["array code (unfused)"] = time_gpu(lambda: lstm.lstm_cell_forward(
        xw_d, hh_d, cprev_d, hprev_d, None, None, c2, h2, act2), reps)
    timings["lesson kernel (fused)"] = time_gpu(lambda: fused(
        a_d[:, :H], a_d[:, H:2 * H], a_d[:, 2 * H:3 * H], a_d[:, 3 * H:], cprev_d, c_d, h_d), reps)
    timings["library kernel (fused)"] = time_gpu(lambda: lib_k.lstm_cell_forward(
        xw_d, hh_d, cprev_d, hprev_d, None, None, c2, h2, act2), reps)
    for k, v in timings.items():
        print(f"  {k:24s} {v:8.1f} us per step")
    # (timings are observations, printed above, never asserted: they depend on the card)
    print(f"  fusion: {timings['array code (unfused)'] / timings['library kernel (fused)']:.0f}x "
          "fewer microseconds per step than the chain of array operations")

    # a whole training step on the GPU equals the NumPy reference (float64)
    hp = ms.HParams(enc_rnn_size=32, dec_rnn_size=64, z_size=8, num_mixture=5,
                    use_recurrent_dropout=True)
    sk = []
    for n in (30, 22, 41):                        # three random stroke-3 scribbles
        s3 = np.zeros((n, 3))
        s3[:, :2] = rng.integers(-5, 6, (n, 2))
        s3[:, 2] = rng.random(n) < 0.1
        sk.append(s3)
    batch = ms.make_batch(sk, max_len=41, scale_factor=5.0)
    m_cpu = ms.SketchRNN(hp, backend="numpy", dtype="float64", seed=1)
    m_gpu = ms.SketchRNN(hp, backend="cupy", dtype="float64", seed=1, noise="host")
    l_cpu, g_cpu = m_cpu.loss_and_grad(batch, step=3)
    l_gpu, _ = m_gpu.loss_and_grad(batch, step=3)
    g_err = float(np.abs(cp.asnumpy(m_gpu.flat_grad) - m_cpu.flat_grad).max())
    scale = float(np.abs(m_cpu.flat_grad).max())
    print(f"training step, cupy vs numpy: loss {float(l_gpu['loss']):.12f} vs "
          f"{float(l_cpu['loss']):.12f}; max gradient difference {g_err:.1e} (scale {scale:.1e})")
    assert abs(float(l_gpu["loss"]) - float(l_cpu["loss"])) < 1e-10, "losses differ (1e-10)"
    assert g_err < 1e-9 * max(scale, 1.0), "gradients differ (1e-9 of their scale)"

# %% [markdown]
# ## 4. A picture
# Left: launches and memory traffic of the step, from the kernel text (any machine). Right:
# measured microseconds per step (GPU only).

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].bar(["unfused\n(low)", "unfused\n(high)", "fused"],
            [unfused_bytes[0] / 1e3, unfused_bytes[1] / 1e3, fused_bytes / 1e3],
            color=["C0", "C0", "C2"])
axes[0].set_ylabel("kB moved per LSTM step")
axes[0].set_title(f"How much memory traffic does fusion save?\nB={B}, H={H}: "
                  f"{unfused_passes} launches vs 1", fontsize=9)
if timings:
    axes[1].bar(list(timings), list(timings.values()), color=["C0", "C2", "C1"])
    axes[1].set_ylabel("us per step (CUDA events)")
    axes[1].tick_params(axis="x", labelsize=7)
    axes[1].set_title("And how much time, measured on the GPU?", fontsize=9)
else:
    axes[1].text(0.5, 0.5, "no CUDA device here:\ntimings need a GPU", ha="center", va="center")
    axes[1].set_axis_off()
savefig(fig, "16_fusion.png")
print("lesson 16 checks passed" + ("" if GPU else " (CPU path)"))

# %% [markdown]
# ## Exercises
# 1. Write the backward step as a second kernel body (lesson 03's formulas) and check it the
#    same way, with NumPy first.
# 2. On a GPU, time the whole `lstm_forward` over T = 250 steps with the reference kernels and
#    with `cupy_gpu.kernel_set()`. How much of the time is now the `h_prev @ W_hh` GEMM?
# 3. Why does `kernels/cuda.py` compile with `--fmad=false`? What would a fused
#    multiply-add change in the comparison with NumPy?
# 4. At batch 1 (sampling one sketch) the GPU is mostly idle. Estimate from the timings the
#    batch size at which the GPU step beats the Numba CPU step of lesson 15.
