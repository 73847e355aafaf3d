#!/usr/bin/env bash
# Convergence check on short_kanji (issue 4): a small conditional model, 1500 steps, evaluated
# at steps 0, 500, 1000 and 1500; prints the validation reconstruction loss curve.
#
# Target: valid recon at step 1500 <= 0.20. The authors' reference code with the same settings
# logs about 2.47 at step 0, 0.499 at 500, 0.258 at 1000 and 0.139-0.157 at 1500.
#
# usage: benchmarks/convergence_kanji.sh [OUT_DIR] [extra train options, e.g. --backend numba]
# It takes a while on a laptop CPU (run it in the background: nohup ... &).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${KANJI:-../shared/data/short_kanji.npz}"
OUT="${1:-runs/convergence_kanji-$(date +%Y%m%d-%H%M%S)}"
shift || true
if [ ! -f "$DATA" ]; then
    echo "error: $DATA not found (set KANJI=/path/to/short_kanji.npz)" >&2
    exit 1
fi
start=$(date +%s)
python -m minisketch.train --data "$DATA" --out "$OUT" \
    --enc_rnn_size 64 --dec_rnn_size 128 --z_size 32 --num_mixture 10 --batch_size 32 \
    --use_recurrent_dropout 0 --augment_stroke_prob 0 --seed 0 --steps 1500 --eval-every 500 \
    "$@"
echo "wall time: $(( $(date +%s) - start )) s"
python - "$OUT/log.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"{'step':>6} {'valid recon':>12} {'valid kl':>9} {'valid loss':>11} {'train recon':>12} {'seconds':>8}")
for r in rows:
    print(f"{r['step']:>6} {r['valid']['recon']:>12.4f} {r['valid']['kl']:>9.4f} "
          f"{r['valid']['loss']:>11.4f} {r['train']['recon']:>12.4f} {r['seconds']:>8.0f}")
last = rows[-1]
ok = last["step"] >= 1500 and last["valid"]["recon"] <= 0.20
print(f"valid recon at step {last['step']}: {last['valid']['recon']:.4f} "
      f"(target <= 0.20): {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF
