"""minisketch: a from-scratch, readable and fast sketch-rnn (Ha & Eck 2017).

    import minisketch as ms
    ds = ms.load_dataset("builtin:shapes")
    model = ms.SketchRNN(ms.HParams(), backend="numpy", seed=0)

Public names are imported lazily so that ``import minisketch`` stays fast and a missing optional
piece (CuPy) never breaks the rest.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "MinisketchError": "errors", "DataError": "errors", "ModelError": "errors",
    "BackendError": "errors",
    "get_backend": "backend",
    "HParams": "hparams",
    "Dataset": "datasets", "load_dataset": "datasets", "load_svg": "svg",
    "make_batch": "strokes", "Batch": "strokes",
    "stroke3_to_stroke5": "strokes", "stroke5_to_stroke3": "strokes",
    "stroke3_to_polylines": "strokes", "polylines_to_stroke3": "strokes",
    "BatchIterator": "batching",
    "SketchRNN": "model",
    "sketch_rnn_forward": "layers.sketch_rnn", "sketch_rnn_backward": "layers.sketch_rnn",
    "load_model": "checkpoint", "save_model": "checkpoint",
    "slerp": "sampling", "lerp": "sampling", "complete": "sampling",
    "to_svg": "render", "save_drawing": "render",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        mod = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        value = getattr(mod, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'minisketch' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
