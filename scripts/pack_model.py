"""Convert a training checkpoint to a packaged float16 model file (at most 1 MiB).

    python scripts/pack_model.py runs/builtin-shapes/best.npz minisketch/models/shapes.npz

Keeps the config (hyperparameters, scale factor, training options) and the step, drops the
optimizer state, and stores every parameter in float16 (the loader casts it back to the model's
dtype). Prints the validation loss of builtin:shapes with the float32 and the float16
parameters, so the rounding's cost is visible, and records both in the config.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from minisketch.checkpoint import load_checkpoint, load_params, model_from_config, save_checkpoint
from minisketch.datasets import load_dataset
from minisketch.train import evaluate

LIMIT = 1 << 20


def valid_loss(config, params, data) -> float:
    model = model_from_config(config, backend="numpy", dtype="float32")
    load_params(model, params, "packed parameters")
    ds = load_dataset(data, max_seq_len=int(config["max_seq_len"]))
    return evaluate(model, ds.valid, 100, ds.max_seq_len, ds.scale_factor, step=0)["loss"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("out")
    args = p.parse_args()
    ck = load_checkpoint(args.checkpoint)
    half = {}
    for name, a in ck.params.items():
        if np.abs(a).max() >= np.finfo(np.float16).max:
            sys.exit(f"error: parameter {name} does not fit in float16 (max |w| {np.abs(a).max()})")
        half[name] = a.astype(np.float16)
    data = ck.config.get("training", {}).get("data", ["builtin:shapes"])
    loss32 = valid_loss(ck.config, ck.params, data)
    loss16 = valid_loss(ck.config, half, data)
    config = {**ck.config, "package": {"source_step": ck.step, "stored_dtype": "float16",
                                       "valid_loss_float32": round(loss32, 5),
                                       "valid_loss_float16": round(loss16, 5),
                                       "retrain": "scripts/train_builtin_model.sh"}}
    save_checkpoint(args.out, half, config, step=ck.step)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {size} bytes, step {ck.step}, valid loss {loss32:.4f} (float32) "
          f"{loss16:.4f} (float16)")
    if size > LIMIT:
        print(f"error: {args.out} is over 1 MiB ({size} bytes)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
