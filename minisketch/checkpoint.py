"""Checkpoints and model files: atomic, pickle-free ``.npz`` archives.

One format serves training checkpoints (``checkpoint.npz``, ``best.npz``) and saved models
(:func:`save_model`); a model file is a checkpoint without optimizer state. Entries:

    format          uint8 [n]   UTF-8 JSON {"format": "minisketch-checkpoint", "version": 1}
    config          uint8 [n]   UTF-8 JSON: {"hparams": {...}, "scale_factor", "max_seq_len",
                                "backend", "dtype", "seed", "num_params"} (+ "training": {...}
                                options for training checkpoints)
    state           uint8 [n]   UTF-8 JSON: {"step": int, "rng": {name: bit_generator.state},
                                "train": {...}} (the RNG states of NumPy Generators are dicts
                                of ints; PCG64's 128-bit integers are plain JSON numbers)
    params/<name>   float [...] every model parameter, by name (``model.param_names``)
    optim/m, optim/v float [P]  Adam moments over the flat parameter vector (checkpoints only)
    optim/t         int64 []    Adam step count
    optim/betas_eps float64 [3] beta1, beta2, eps

Everything is a plain numeric array, so ``np.load(path, allow_pickle=False)`` reads it: loading
a file never runs code. Writes go to a temporary file in the target's folder, are flushed and
fsync'ed, then renamed over the target (``os.replace``), so a reader (or a crash) never sees a
half-written checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .xp import to_numpy
from .errors import MinisketchError, ModelError
from .fileio import atomic_open
from .hparams import HParams
from .models import builtin_model_path, is_builtin

FORMAT = "minisketch-checkpoint"
VERSION = 1


# ----------------------------------------------------------------------------- JSON in arrays

def json_to_array(obj) -> np.ndarray:
    """A JSON-serializable object as a uint8 array of its UTF-8 text (strict JSON: no NaN)."""
    text = json.dumps(obj, sort_keys=True, allow_nan=False)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def array_to_json(a: np.ndarray):
    """Inverse of :func:`json_to_array`."""
    a = np.asarray(a)
    if a.dtype != np.uint8 or a.ndim != 1:
        raise ValueError(f"expected a 1-D uint8 array of JSON text, got {a.dtype} {a.shape}")
    return json.loads(a.tobytes().decode("utf-8"))


# ----------------------------------------------------------------------------- writing

def write_npz_atomic(path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` into ``path`` atomically (``fileio.atomic_open``: temporary file, fsync,
    rename)."""
    with atomic_open(path) as f:
        np.savez(f, **arrays)


def save_checkpoint(path, params: dict, config: dict, step: int = 0, optimizer: dict | None = None,
                    rng: dict | None = None, train_state: dict | None = None) -> None:
    """Write a checkpoint atomically.

    ``params``: name -> array (NumPy or CuPy; copied to the host); ``config``: JSON dict (see
    the module docstring); ``optimizer``: ``Adam.state_dict()`` or None; ``rng``: name ->
    ``Generator.bit_generator.state``; ``train_state``: any JSON dict the training loop needs
    to continue exactly (best loss so far, running averages, elapsed time).
    """
    arrays = {
        "format": json_to_array({"format": FORMAT, "version": VERSION}),
        "config": json_to_array(config),
        "state": json_to_array({"step": int(step), "rng": rng or {},
                                "train": train_state or {}}),
    }
    for name, a in params.items():
        arrays[f"params/{name}"] = np.ascontiguousarray(to_numpy(a))
    if optimizer is not None:
        for key in ("m", "v", "t", "betas_eps"):
            arrays[f"optim/{key}"] = np.asarray(optimizer[key])
    write_npz_atomic(path, arrays)


# ----------------------------------------------------------------------------- reading

@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read: host arrays and JSON dicts."""
    path: str
    config: dict
    params: dict[str, np.ndarray]
    step: int = 0
    optimizer: dict | None = None
    rng: dict = field(default_factory=dict)
    train_state: dict = field(default_factory=dict)


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint or model file written by :func:`save_checkpoint` (never unpickles).

    Raises :class:`ModelError` naming the file for a missing, truncated, corrupt or foreign
    file. Parameter names and shapes are checked against a model by :func:`load_params`.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise ModelError(f"no checkpoint at {where}")
    if path.is_dir():
        raise ModelError(f"{where} is a folder; expected a .npz checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "format" not in files:
                raise ModelError(f"{where} is not a minisketch checkpoint (it has no 'format' "
                                 f"entry; a dataset .npz is not a model)")
            head = array_to_json(z["format"])
            if not isinstance(head, dict) or head.get("format") != FORMAT:
                raise ModelError(f"{where} is not a minisketch checkpoint (format {head!r})")
            if int(head.get("version", -1)) > VERSION:
                raise ModelError(f"{where} was written by a newer minisketch (checkpoint "
                                 f"version {head.get('version')}; this one reads {VERSION})")
            missing = [k for k in ("config", "state") if k not in files]
            if missing:
                raise ModelError(f"{where} is incomplete: missing {', '.join(missing)}")
            config = array_to_json(z["config"])
            state = array_to_json(z["state"])
            params = {k[len("params/"):]: z[k] for k in sorted(files) if k.startswith("params/")}
            optim_keys = ("m", "v", "t", "betas_eps")
            present = [k for k in optim_keys if f"optim/{k}" in files]
            optimizer = {k: z[f"optim/{k}"] for k in present} if present else None
    except ModelError:
        raise
    except Exception as e:  # BadZipFile, CRC errors, EOFError, ValueError (pickled entries), ...
        raise ModelError(f"{where} is corrupt or truncated and cannot be read "
                         f"({type(e).__name__}: {e}); use another checkpoint (best.npz, or "
                         f"train again without --resume)") from None
    if not isinstance(config, dict) or not isinstance(config.get("hparams"), dict):
        raise ModelError(f"{where}: its config has no hyperparameters")
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or state["step"] < 0:
        raise ModelError(f"{where}: its state has no valid step count")
    if not params:
        raise ModelError(f"{where} holds no parameters")
    for name, a in params.items():
        if not np.issubdtype(a.dtype, np.floating):
            raise ModelError(f"{where}: parameter {name} has dtype {a.dtype}, expected floats")
    if optimizer is not None and len(optimizer) != 4:
        raise ModelError(f"{where}: its optimizer state is incomplete "
                         f"(has {', '.join(sorted(optimizer))})")
    return Checkpoint(path=where, config=config, params=params, step=state["step"],
                      optimizer=optimizer, rng=dict(state.get("rng") or {}),
                      train_state=dict(state.get("train") or {}))


# ----------------------------------------------------------------------------- models

def model_config(model) -> dict:
    """The JSON config that rebuilds ``model``: hyperparameters, units, backend, dtype, seed."""
    return {"hparams": model.hp.to_dict(), "scale_factor": float(model.scale_factor),
            "max_seq_len": int(model.hp.max_seq_len), "backend": model.backend.name,
            "dtype": np.dtype(model.dtype).name, "seed": int(model.seed),
            "num_params": int(model.num_params)}


def model_from_config(config: dict, backend: str | None = None, dtype: str | None = None,
                      where: str = "config"):
    """A freshly initialized SketchRNN built from a :func:`model_config` dict."""
    from .model import SketchRNN
    try:
        hp = HParams.from_dict(config["hparams"])
        scale_factor = float(config.get("scale_factor", 1.0))
        seed = int(config.get("seed", 0))
    except (MinisketchError, TypeError, ValueError, KeyError) as e:
        raise ModelError(f"{where}: unusable hyperparameters ({e})") from None
    if not np.isfinite(scale_factor) or scale_factor <= 0:
        raise ModelError(f"{where}: scale_factor must be a positive number, got {scale_factor}")
    return SketchRNN(hp, backend=backend or "numpy",
                     dtype=dtype or config.get("dtype", "float32"), seed=seed,
                     scale_factor=scale_factor)


def check_params(model, params: dict, where: str) -> None:
    """Raise ModelError unless ``params`` has exactly the model's names and shapes."""
    want = {name: tuple(model.params[name].shape) for name in model.param_names}
    missing = [n for n in want if n not in params]
    extra = [n for n in params if n not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        raise ModelError(f"{where} does not match the model it describes: "
                         f"{'; '.join(parts)}")
    for name, shape in want.items():
        got = tuple(np.shape(params[name]))
        if got != shape:
            raise ModelError(f"{where} does not match the model: parameter {name} has shape "
                             f"{list(got)}, the model's config needs {list(shape)}")


def load_params(model, params: dict, where: str) -> None:
    """Check names and shapes, then copy ``params`` into ``model`` (cast to its dtype)."""
    check_params(model, params, where)
    model.load_state_dict({n: np.asarray(params[n], dtype=model.dtype) for n in model.param_names})


def save_model(model, path) -> None:
    """Write ``model`` (parameters + config, no optimizer state) as a ``.npz`` model file."""
    save_checkpoint(path, model.state_dict(), model_config(model))


def _model_from_gen_json(path, backend: str, dtype: str | None):
    from .magenta import read_gen_json
    from .model import SketchRNN
    info, arrays = read_gen_json(path)
    hp = HParams(conditional=False, dec_model="lstm", dec_rnn_size=int(info["dec_rnn_size"]),
                 num_mixture=int(info["num_mixture"]), max_seq_len=int(info["max_seq_len"]))
    model = SketchRNN(hp, backend=backend, dtype=dtype or "float32", seed=0,
                      scale_factor=float(info["scale_factor"]))
    load_params(model, arrays, str(path))
    return model


def resolve_model_path(path) -> Path:
    """A training output folder -> its best.npz (else checkpoint.npz); a file -> itself;
    ``builtin:NAME`` -> the model file shipped in the package (``minisketch/models``)."""
    if is_builtin(path):
        return builtin_model_path(path)
    path = Path(path)
    if path.is_dir():
        for name in ("best.npz", "checkpoint.npz"):
            if (path / name).is_file():
                return path / name
        raise ModelError(f"{path} holds no best.npz or checkpoint.npz; pass a training output "
                         f"folder, a .npz model or a .gen.json file")
    if not path.exists():
        raise ModelError(f"no model at {path}")
    return path


def load_model(path, backend: str = "numpy", dtype: str | None = None):
    """Load a model from a training folder, a ``.npz`` checkpoint/model, a ``.gen.json`` or a
    packaged model (``"builtin:shapes"``).

    ``dtype`` defaults to the file's (float32 for magenta.js models).
    """
    path = resolve_model_path(path)
    if path.name.endswith(".json"):
        return _model_from_gen_json(path, backend, dtype)
    ck = load_checkpoint(path)
    model = model_from_config(ck.config, backend=backend, dtype=dtype, where=str(path))
    load_params(model, ck.params, str(path))
    return model
