#!/usr/bin/env bash
# The MPI training checks on a GPU machine (docs/mpi.md), one short prepared run (~3 minutes).
#
#   bash benchmarks/gpu_mpi_check.sh        (needs CuPy, a GPU, mpi4py and an mpiexec)
#
#   reference  python -m minisketch.train --backend cupy --dtype float64, 20 steps of a small
#              model on builtin:shapes, no MPI
#   nccl       the same under mpiexec -n 1 with MINISKETCH_MPI_WORLD=1: the data-parallel step,
#              its gradient allreduce through NCCL (a one-GPU world)
#   host       mpiexec -n 2 on one GPU: NCCL takes one rank per GPU, so the sum goes through
#              host memory and MPI; each rank computes half of every batch
#   compare    each run's parameters against the reference (norm-relative, bound 1e-10)
# Logs go to $OUT when set (the device machine sets it), else benchmarks/out/gpu_mpi.
set -u
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT_DIR=${OUT:-benchmarks/out/gpu_mpi}
RUNS=$(mktemp -d)
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
BACKEND=${BACKEND:-cupy}      # BACKEND=numpy runs the same checks on a CPU (no NCCL there)
ARGS=(--data builtin:shapes --backend "$BACKEND" --dtype float64 --steps 20 --eval-every 10
      --samples 0 --enc_rnn_size 32 --dec_rnn_size 64 --z_size 16 --num_mixture 5
      --batch_size 32 --use_recurrent_dropout 1)
FAILED=0

run() {     # NAME CMD...: output to the screen and $OUT_DIR/NAME.log, a 240 s limit
    local name=$1
    shift
    echo "=== $name"
    timeout -k 5 240 "$@" > "$OUT_DIR/$name.log" 2>&1
    local rc=$?
    grep -v "^train" "$OUT_DIR/$name.log" | tail -n 12
    echo "--- $name: exit $rc"
    [ "$rc" -eq 0 ] || FAILED=1
}

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
$PY -c "import mpi4py; from mpi4py import MPI; print('mpi4py', mpi4py.__version__, \
MPI.Get_library_version().splitlines()[0])"
[ "$BACKEND" = cupy ] && $PY -c "import cupy; from cupy.cuda import nccl; print('cupy', \
cupy.__version__, 'nccl', nccl.get_version() if getattr(nccl, 'available', True) else 'absent')"
run reference $PY -m minisketch.train "${ARGS[@]}" --out "$RUNS/reference"
run nccl env MINISKETCH_MPI_WORLD=1 mpiexec -n 1 $PY -m mpi4py -m minisketch.train \
    "${ARGS[@]}" --out "$RUNS/nccl"
run host mpiexec -n 2 $PY -m mpi4py -m minisketch.train "${ARGS[@]}" --out "$RUNS/host"
echo "=== compare"
$PY - "$RUNS" <<'EOF' || FAILED=1
import sys
from pathlib import Path
import numpy as np
from minisketch.checkpoint import load_checkpoint

def flat(name):
    ck = load_checkpoint(Path(sys.argv[1]) / name / "checkpoint.npz")
    return ck.step, np.concatenate([ck.params[k].ravel() for k in sorted(ck.params)])

step, ref = flat("reference")
bad = False
for name in ("nccl", "host"):
    s, p = flat(name)
    err = np.linalg.norm(p - ref) / np.linalg.norm(ref)
    print(f"{name}: step {s} vs {step}, relative difference {err:.3g} (bound 1e-10)")
    bad |= not (s == step and err <= 1e-10)
sys.exit(1 if bad else 0)
EOF
grep -h "gradients summed by" "$OUT_DIR"/nccl.log "$OUT_DIR"/host.log | sed 's/.*; //'
echo "gpu_mpi_check: $([ $FAILED -eq 0 ] && echo PASSED || echo FAILED)"
exit $FAILED
