"""Trained models shipped inside the package, loaded by name as ``builtin:NAME``.

    ms.load_model("builtin:shapes")
    python -m minisketch.sample generate --model builtin:shapes -n 16 --out shapes.png

``shapes.npz`` is a conditional model (bidirectional LSTM encoder 128, LSTM decoder 256,
z 32, M 10) trained by minisketch on ``builtin:shapes``; its parameters are stored in float16
to stay under 1 MiB and are cast to the model's dtype on loading. ``scripts/train_builtin_model.sh``
retrains and repacks it; the training command is also in the file's config.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelError

PREFIX = "builtin:"
BUILTIN_MODELS = {"shapes": "shapes.npz"}


def is_builtin(name) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def builtin_model_path(name: str) -> Path:
    """``"builtin:shapes"`` -> the path of the packaged ``.npz`` file."""
    key = name[len(PREFIX):]
    if key not in BUILTIN_MODELS:
        known = ", ".join(PREFIX + k for k in BUILTIN_MODELS)
        raise ModelError(f"{name} is not a packaged model; packaged models: {known}")
    path = Path(__file__).resolve().parent / BUILTIN_MODELS[key]
    if not path.is_file():
        raise ModelError(f"the packaged model file {path} is missing from this install; "
                         f"reinstall minisketch or run scripts/train_builtin_model.sh")
    return path
