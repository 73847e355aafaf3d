#!/usr/bin/env bash
# One prepared check of the cupy backend on a GPU machine (planned for ~7 minutes on an H100).
#
#   bash benchmarks/gpu_check.sh            (from the repository root or anywhere)
#
# Sections, each with its own time limit and a global budget (BUDGET_S, default 420 s); a
# failing section is reported and the script goes on:
#   env        nvidia-smi, Python / NumPy / CuPy / Numba / torch versions
#   compile    every CUDA kernel of the CuPy kernel set (minisketch/kernels/cupy_gpu.py) for
#              float32 and float64
#   gpu-tests  pytest -m gpu on tests/test_kernel_contract.py and test_fast_backend_models.py
#              (kernel-by-kernel and whole-model comparisons with the NumPy reference; prints a
#              table of errors)
#   cpu-tests  only with CPU_TESTS=1: the layer and MDN unit tests on the host
#   train      300 steps of python -m minisketch.train --backend cupy on $DATA, checking that
#              the losses are finite and fall
#   bench      benchmarks/bench_step.py --backend cupy for the lstm / layer_norm / hyper decoders
#              at batch 100, N_max 250, and lstm at batch 1000
#   profile    one LSTM step: host noise time, host call time, GPU event time
#   torch      benchmarks/torch_gpu_reference.py, the same step in PyTorch (if torch imports)
# and LAST a table: median ms per step per configuration vs the targets and PyTorch.
#
# Data: DATA (default .gpudata/aaron_sheep.npz, an ignored folder that travels with the tree;
# copy ../shared/data/aaron_sheep.npz there first). Without it the train section uses
# builtin:shapes. Logs go to $OUT when set (the device machine sets it), else
# benchmarks/out/gpu_check.
set -u

cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
OUT_DIR=${OUT:-benchmarks/out/gpu_check}
mkdir -p "$OUT_DIR"
DATA=${DATA:-.gpudata/aaron_sheep.npz}
BUDGET_S=${BUDGET_S:-420}
TRAIN_STEPS=${TRAIN_STEPS:-300}
BENCH_STEPS=${BENCH_STEPS:-10}
PY=${PYTHON:-python}
START=$(date +%s)
FAILED=()
SKIPPED=()
exec > >(tee -a "$OUT_DIR/gpu_check.log") 2>&1

elapsed() { echo $(( $(date +%s) - START )); }

# run NAME LIMIT_S CMD...: run CMD with at most LIMIT_S seconds (less if the budget is nearly
# spent), its output to the screen and to $OUT_DIR/NAME.log; record failures, never stop.
run() {
    local name=$1 limit=$2
    shift 2
    local left=$(( BUDGET_S - $(elapsed) - 15 ))
    echo
    echo "=== $name  (t=$(elapsed)s, limit ${limit}s, budget left ${left}s)"
    if [ "$left" -lt 20 ]; then
        echo "--- $name SKIPPED: time budget spent"
        SKIPPED+=("$name")
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    timeout -k 5 "$limit" "$@" > >(tee "$OUT_DIR/$name.log") 2>&1
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 124 ] && echo "--- $name TIMED OUT after ${limit}s" \
                          || echo "--- $name FAILED (exit $rc)"
        FAILED+=("$name (exit $rc)")
    fi
    return 0
}

# ------------------------------------------------------------------------------------- env
run env 30 bash -c '
    nvidia-smi || echo "nvidia-smi not available"
    '"$PY"' - <<EOF
import platform, sys
print("python", sys.version.split()[0], platform.platform())
import numpy; print("numpy", numpy.__version__)
import numba; print("numba", numba.__version__)
try:
    import cupy
    print("cupy", cupy.__version__, "| CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "| driver", cupy.cuda.runtime.driverGetVersion(),
          "| devices", cupy.cuda.runtime.getDeviceCount())
    d = cupy.cuda.Device(0)
    print("device 0:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
          "compute capability", d.compute_capability,
          "memory %.1f GiB" % (d.mem_info[1] / 2**30))
except Exception as e:
    print("cupy unusable:", type(e).__name__, e)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except Exception as e:
    print("torch not importable:", type(e).__name__)
EOF
'

# --------------------------------------------------------------------------------- compile
run compile 120 "$PY" - <<'EOF'
import time
from minisketch.backend import get_backend
from minisketch.kernels import cupy_gpu
t = time.perf_counter()
be = get_backend("cupy")          # the same path the model takes (require_cupy + kernel_set)
cupy_gpu.compile_all()
print(f"compiled {len(cupy_gpu.kernel_names())} kernels x 2 dtypes in {time.perf_counter() - t:.1f} s;"
      f" fused entries: {', '.join(cupy_gpu.fused_names())}")
EOF

# ------------------------------------------------------------------------------- gpu tests
run gpu-tests ${TESTS_LIMIT_S:-170} "$PY" -m pytest -m gpu tests/test_kernel_contract.py tests/test_fast_backend_models.py -q -s -p no:cacheprovider \
    -o addopts="" --durations=5

if [ "${CPU_TESTS:-0}" = "1" ]; then
    run cpu-tests 90 "$PY" -m pytest tests/test_cells.py tests/test_mdn.py -q -x \
        -p no:cacheprovider
fi

# ----------------------------------------------------------------------------------- train
if [ -f "$DATA" ]; then
    TRAIN_DATA=("--data" "$DATA")
else
    echo "note: $DATA not found; training on builtin:shapes instead"
    TRAIN_DATA=("--data" "builtin:shapes")
fi
# the run folder (checkpoints of tens of MB) stays out of $OUT; its log and plot are copied there
TRAIN_OUT=benchmarks/out/gpu_check_train
rm -rf "$TRAIN_OUT"
run train ${TRAIN_LIMIT_S:-150} "$PY" -m minisketch.train --backend cupy "${TRAIN_DATA[@]}" \
    --steps "$TRAIN_STEPS" --eval-every 100 --samples 0 --out "$TRAIN_OUT"
cp "$TRAIN_OUT/log.jsonl" "$OUT_DIR/train_log.jsonl" 2>/dev/null
cp "$TRAIN_OUT/loss.png" "$OUT_DIR/train_loss.png" 2>/dev/null
run train-check 20 "$PY" - "$TRAIN_OUT/log.jsonl" <<'EOF'
import json, math, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
ok = True
print(f"{'step':>6} {'seconds':>8} {'train loss':>11} {'valid loss':>11} {'valid recon':>12} "
      f"{'valid kl':>9}")
for r in rows:
    print(f"{r['step']:>6} {r['seconds']:>8.1f} {r['train']['loss']:>11.4f} "
          f"{r['valid']['loss']:>11.4f} {r['valid']['recon']:>12.4f} {r['valid']['kl']:>9.4f}")
    for part in ("train", "valid"):
        if not all(math.isfinite(v) for v in r[part].values()):
            print(f"NON-FINITE {part} losses at step {r['step']}")
            ok = False
if len(rows) < 2:
    print("fewer than two evaluations logged")
    ok = False
elif not rows[-1]["valid"]["loss"] < rows[0]["valid"]["loss"] - 0.05:
    print(f"valid loss did not fall: {rows[0]['valid']['loss']:.4f} -> "
          f"{rows[-1]['valid']['loss']:.4f}")
    ok = False
if len(rows) >= 2:
    steps = rows[-1]["step"] - rows[0]["step"]
    print(f"{steps} steps in {rows[-1]['seconds'] - rows[0]['seconds']:.1f} s "
          f"(evaluations included)")
print("TRAIN CHECK", "PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)
EOF

# ----------------------------------------------------------------------------------- bench
BENCH_JSON="$OUT_DIR/bench.jsonl"
TORCH_JSON="$OUT_DIR/torch.jsonl"
: > "$BENCH_JSON"
: > "$TORCH_JSON"
CONFIGS=("lstm 100" "layer_norm 100" "hyper 100" "lstm 1000")
for cfg in "${CONFIGS[@]}"; do
    set -- $cfg
    run "bench-$1-b$2" ${BENCH_LIMIT_S:-60} bash -c "set -o pipefail; $PY benchmarks/bench_step.py --backend cupy \
        --dec $1 --batch $2 --nmax 250 --steps $BENCH_STEPS --json | tee -a $BENCH_JSON"
done

# --------------------------------------------------------------------------------- profile
# Where one LSTM training step's time goes: host-side noise drawing (model._draw_noise), the
# host time of the loss_and_grad call (launch overhead; the call returns before the GPU is done
# when nothing synchronizes), and the GPU time between CUDA events.
run profile 60 "$PY" - <<'EOF'
import time
import numpy as np
import cupy
import minisketch as ms
from minisketch.kernels import cupy_gpu

cupy_gpu.compile_all()
hp = ms.HParams(dec_model="lstm", batch_size=100, max_seq_len=250)
model = ms.SketchRNN(hp, backend="cupy", dtype="float32", seed=0)
rng = np.random.default_rng(0)
sk = []
for i in range(100):
    L = 250 if i == 0 else int(rng.integers(60, 251))
    s = np.zeros((L, 3)); s[:, :2] = np.round(rng.normal(0, 20, (L, 2))); s[:, 2] = rng.random(L) < 0.1
    s[-1, 2] = 1
    sk.append(s)
batch = ms.make_batch(sk, max_len=250, scale_factor=18.5)
for step in range(2):
    model.loss_and_grad(batch, step)
cupy.cuda.Device().synchronize()
noise, host, gpu = [], [], []
for step in range(2, 7):
    t = time.perf_counter()
    model._draw_noise(model._noise_rng(step), 100, 250, True)
    cupy.cuda.Device().synchronize()
    noise.append(time.perf_counter() - t)
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    t = time.perf_counter()
    model.loss_and_grad(batch, step)
    host.append(time.perf_counter() - t)
    e1.record()
    e1.synchronize()
    gpu.append(cupy.cuda.get_elapsed_time(e0, e1) / 1e3)
med = lambda v: 1e3 * float(np.median(v))
print(f"lstm b100 n250 float32: noise draw ({model.noise}) {med(noise):.1f} ms | host time of the "
      f"loss_and_grad call {med(host):.1f} ms | GPU time (events) {med(gpu):.1f} ms")
print("(host call time close to GPU time: launch-bound or synchronizing; noise time is host "
      "work before the first kernel of each step)")
# the decoder recurrence alone (T 250, B 100, D 133, H 512), fused kernels, dropout and no mask
from minisketch.layers import lstm
p = {k: cupy.asarray(v) for k, v in lstm.lstm_init(rng, 133, 512, np.float32).items()}
x = cupy.asarray(rng.standard_normal((250, 100, 133)), dtype=cupy.float32)
s0 = cupy.zeros((100, 1024), cupy.float32)
keep = cupy.ones((250, 100, 512), cupy.float32)
dhs = cupy.ones((250, 100, 512), cupy.float32)
K = model.backend.kernels
for rep in range(3):
    e0, e1, e2 = cupy.cuda.Event(), cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    t0 = time.perf_counter()
    hs, sT, cache = lstm.lstm_forward(x, s0, p, keep=keep, kernels=K)
    t1 = time.perf_counter()
    e1.record()
    lstm.lstm_backward(dhs, None, cache)
    t2 = time.perf_counter()
    e2.record()
    e2.synchronize()
print(f"lstm recurrence T250 B100 H512: forward {cupy.cuda.get_elapsed_time(e0, e1):.1f} ms GPU "
      f"({1e3 * (t1 - t0):.1f} ms host), backward {cupy.cuda.get_elapsed_time(e1, e2):.1f} ms "
      f"GPU ({1e3 * (t2 - t1):.1f} ms host); per step {1e3 * (t2 - t0) / 250:.3f} ms host")
EOF

# ----------------------------------------------------------------------------------- torch
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    for cfg in "${CONFIGS[@]}"; do
        set -- $cfg
        run "torch-$1-b$2" 60 bash -c "set -o pipefail; $PY benchmarks/torch_gpu_reference.py \
            --dec $1 --batch $2 --nmax 250 --steps $BENCH_STEPS --json | tee -a $TORCH_JSON"
    done
else
    echo
    echo "=== torch: not importable with CUDA here; no side-by-side numbers"
fi

# --------------------------------------------------------------------------------- summary
echo
echo "=== summary (t=$(elapsed)s)"
"$PY" - "$BENCH_JSON" "$TORCH_JSON" <<'EOF'
import json, sys

def load(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            out[(r.get("dec"), int(r.get("batch", 0)))] = float(r["median_ms"])
    return out

mine, torch = load(sys.argv[1]), load(sys.argv[2])
# targets (ms per training step, float32, N_max 250) and PyTorch 2.11 on an H100 (given)
rows = [("lstm", 100, 35.0, 35.4), ("layer_norm", 100, 45.0, 217.0), ("hyper", 100, 60.0, 557.0),
        ("lstm", 1000, 113.0, 113.0)]
print(f"{'decoder':<11} {'batch':>5} {'cupy ms':>9} {'target':>7} {'met':>4} "
      f"{'torch here':>10} {'x torch':>8} {'torch H100 (given)':>19}")
for dec, b, target, given in rows:
    ms = mine.get((dec, b))
    th = torch.get((dec, b))
    met = "-" if ms is None else ("yes" if ms <= target else "no")
    ratio = "-" if ms is None or th is None else f"{ms / th:.2f}"
    print(f"{dec:<11} {b:>5} {'-' if ms is None else f'{ms:.1f}':>9} {target:>7.0f} {met:>4} "
          f"{'-' if th is None else f'{th:.1f}':>10} {ratio:>8} {given:>19.1f}")
EOF
if [ "${#SKIPPED[@]}" -gt 0 ]; then
    echo "skipped (budget): ${SKIPPED[*]}"
fi
# The device tool brings back at most 8 files from $OUT: keep the main log and the two JSON
# files as they are and pack the per-section logs and the loss plot into one archive.
if [ -n "${OUT:-}" ]; then
    (cd "$OUT_DIR" && tar czf section_logs.tgz --exclude gpu_check.log --exclude section_logs.tgz \
         ./*.log ./*.png ./train_log.jsonl 2>/dev/null \
     && find . -maxdepth 1 -type f \( -name '*.log' -o -name '*.png' -o -name train_log.jsonl \) \
         ! -name gpu_check.log -delete)
fi
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "FAILED sections: ${FAILED[*]}"
    echo "logs: $OUT_DIR"
    exit 1
fi
echo "all sections passed (logs: $OUT_DIR; total $(elapsed)s)"
