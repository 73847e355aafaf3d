#!/usr/bin/env bash
# Retrain the packaged model minisketch/models/shapes.npz (loaded as "builtin:shapes").
#
#   scripts/train_builtin_model.sh [RUN_DIR]      (default runs/builtin-shapes)
#
# Trains a conditional model on builtin:shapes with the Numba backend on every core, then
# converts its best.npz to the float16 package file with scripts/pack_model.py.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/builtin-shapes}
python -m minisketch.train --data builtin:shapes --preset paper --backend numba --seed 0 \
    --enc_rnn_size 128 --dec_rnn_size 256 --z_size 32 --num_mixture 10 \
    --batch_size 64 --learning_rate 0.002 --decay_rate 0.9999 --min_learning_rate 0.00005 \
    --kl_weight 0.5 --kl_decay_rate 0.9995 \
    --steps 8000 --eval-every 1000 --out "$RUN"
python scripts/pack_model.py "$RUN/best.npz" minisketch/models/shapes.npz
