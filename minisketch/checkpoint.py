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
from .errors import DataError, MinisketchError, ModelError
from .fileio import atomic_open
from .hparams import HParams
from .models import builtin_model_path, is_builtin
from .safe_npz import SPLITS, NotZipError, NpzReader

FORMAT = "minisketch-checkpoint"
VERSION = 1
MAX_MODEL_BYTES = 2 ** 31       # a checkpoint or model file (the paper's HyperLSTM-2048: 274 MB)


# ----------------------------------------------------------------------------- JSON in arrays

def json_to_array(obj) -> np.ndarray:
    """A JSON-serializable object as a uint8 array of its UTF-8 text (strict JSON: no NaN)."""
    text = json.dumps(obj, sort_keys=True, allow_nan=False)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def _no_constant(name):
    raise ValueError(f"{name} is not allowed in strict JSON")


def array_to_json(a: np.ndarray):
    """Inverse of :func:`json_to_array`; ValueError for anything but strict JSON text."""
    a = np.asarray(a)
    if a.dtype != np.uint8 or a.ndim != 1:
        raise ValueError(f"expected a 1-D uint8 array of JSON text, got {a.dtype} {a.shape}")
    try:
        return json.loads(a.tobytes().decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


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


def not_a_model(where: str, why: str = "") -> ModelError:
    """The error for a file that is neither a minisketch nor a magenta.js model."""
    return ModelError(f"{where} is not a model: expected a run folder, a checkpoint .npz or a "
                      f".gen.json{f' ({why})' if why else ''}")


def _read_arrays(path: Path, where: str) -> dict[str, np.ndarray]:
    """The numeric arrays of a checkpoint file, or one ModelError saying what the file is."""
    try:
        with NpzReader(path, MAX_MODEL_BYTES, "checkpoint or model file", ModelError) as z:
            if "format" not in z.names:
                if set(SPLITS) <= set(z.names):
                    raise not_a_model(where, "it is a sketch-rnn dataset")
                raise not_a_model(where, "a .npz without minisketch's 'format' entry")
            return {name: z.read(name) for name in z.names}
    except NotZipError as e:
        why = "it is empty" if "empty" in str(e) else "it is an HTML page" \
            if "HTML" in str(e) else ""
        raise not_a_model(where, why) from None
    except DataError as e:
        reason = str(e)
        if reason.startswith(where):
            reason = reason[len(where):].lstrip(": ")
        reason = reason.replace("; download it again", "")
        raise ModelError(f"{where} is corrupt or truncated and cannot be read "
                         f"({reason})") from None


def _json_entry(arrays: dict, key: str, where: str):
    try:
        return array_to_json(arrays[key])
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{where} is corrupt: its '{key}' entry is not JSON text "
                         f"({e})") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_optimizer(opt: dict, where: str) -> None:
    """Adam's moments, step count and constants: the right kinds of numbers, all finite."""
    m, v, t, be = (opt[k] for k in ("m", "v", "t", "betas_eps"))
    for name, a in (("m", m), ("v", v)):
        if a.ndim != 1 or a.dtype.kind != "f" or not np.isfinite(a).all():
            raise ModelError(f"{where}: optimizer state {name!r} must be a 1-D array of finite "
                             f"floats, got {a.dtype} {list(a.shape)}")
    if m.shape != v.shape or (v < 0).any():
        raise ModelError(f"{where}: optimizer moments do not fit each other (or are negative)")
    if t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
        raise ModelError(f"{where}: optimizer step count must be one integer >= 0")
    if be.shape != (3,) or be.dtype.kind != "f" or not np.isfinite(be).all() or \
            not (0 <= be[0] < 1 and 0 <= be[1] < 1 and be[2] > 0):
        raise ModelError(f"{where}: optimizer constants (beta1, beta2, eps) are out of range")


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint or model file written by :func:`save_checkpoint` (never unpickles).

    Raises :class:`ModelError` naming the file for a missing, special, too large, truncated,
    corrupt or foreign file, and for entries of the wrong kind: non-JSON or non-strict JSON
    text, a negative or non-integer step, non-float or non-finite parameters, an incomplete or
    non-finite optimizer state. Parameter names and shapes are checked against a model by
    :func:`load_params`.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise ModelError(f"no checkpoint at {where}")
    if path.is_dir():
        raise ModelError(f"{where} is a folder; expected a .npz checkpoint file")
    arrays = _read_arrays(path, where)
    head = _json_entry(arrays, "format", where)
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise not_a_model(where, "its format entry is not minisketch's")
    if not _is_int(head.get("version")) or head["version"] < 1:
        raise ModelError(f"{where} is corrupt: its checkpoint version is "
                         f"{head.get('version')!r}")
    if head["version"] > VERSION:
        raise ModelError(f"{where} was written by a newer minisketch (checkpoint version "
                         f"{head['version']}; this one reads {VERSION})")
    missing = [k for k in ("config", "state") if k not in arrays]
    if missing:
        raise ModelError(f"{where} is incomplete: missing {', '.join(missing)}")
    config = _json_entry(arrays, "config", where)
    state = _json_entry(arrays, "state", where)
    if not isinstance(config, dict) or not isinstance(config.get("hparams"), dict):
        raise ModelError(f"{where}: its config has no hyperparameters")
    if not isinstance(state, dict) or not _is_int(state.get("step")) or state["step"] < 0:
        raise ModelError(f"{where}: its state has no valid step count")
    for key in ("rng", "train"):
        if not isinstance(state.get(key) or {}, dict):
            raise ModelError(f"{where}: its state's {key!r} entry is not a JSON object")
    params = {k[len("params/"):]: a for k, a in sorted(arrays.items()) if k.startswith("params/")}
    if not params:
        raise ModelError(f"{where} holds no parameters")
    for name, a in params.items():
        if not np.issubdtype(a.dtype, np.floating):
            raise ModelError(f"{where}: parameter {name} has dtype {a.dtype}, expected floats")
        if not np.isfinite(a).all():
            raise ModelError(f"{where}: parameter {name} holds NaN or infinite values; the "
                             f"model is broken (use an earlier checkpoint)")
    optim_keys = ("m", "v", "t", "betas_eps")
    present = [k for k in optim_keys if f"optim/{k}" in arrays]
    optimizer = {k: arrays[f"optim/{k}"] for k in present} if present else None
    if optimizer is not None:
        if len(optimizer) != 4:
            raise ModelError(f"{where}: its optimizer state is incomplete "
                             f"(has {', '.join(sorted(optimizer))})")
        _check_optimizer(optimizer, where)
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


def hparams_from_config(config: dict, where: str = "config") -> HParams:
    """The HParams of a :func:`model_config` dict, validated (ModelError naming ``where``)."""
    try:
        return HParams.from_dict(config["hparams"])
    except (MinisketchError, TypeError, KeyError) as e:
        raise ModelError(f"{where}: unusable hyperparameters ({e})") from None


def min_param_count(hp: HParams) -> int:
    """A lower bound on the parameters of the model ``hp`` describes: its weight matrices
    (every cell has ``W_xh [I, 4H]`` and ``W_hh [H, 4H]``; a HyperLSTM adds its own cell and
    the ``[h, 4e]``/``[e, 4, H]`` projections), with no allocation. A file holding fewer
    parameters cannot be that model, so it is refused before the model is built."""
    def cell(name, n_in, H):
        n = 4 * H * (n_in + H)
        if name == "hyper":
            h, e = hp.hyper_num_units, hp.hyper_embedding_size
            n += 4 * h * (n_in + H + h) + 12 * e * H
        return n
    H, Nz = hp.dec_rnn_size, hp.z_size
    n = H * (6 * hp.num_mixture + 3)
    if not hp.conditional:
        return n + cell(hp.dec_model, 5, H)
    E = hp.enc_rnn_size
    return n + cell(hp.dec_model, 5 + Nz, H) + 2 * cell(hp.enc_model, 5, E) + 4 * E * Nz + \
        2 * Nz * H


def model_from_config(config: dict, backend: str | None = None, dtype: str | None = None,
                      where: str = "config", params: dict | None = None):
    """A freshly initialized SketchRNN built from a :func:`model_config` dict.

    With ``params`` (the arrays that will be loaded into it), a config describing a model far
    larger than they can fill is refused before anything is allocated (a small mismatch is left
    to :func:`check_params`, which names the parameter).
    """
    from .model import SketchRNN
    hp = hparams_from_config(config, where)
    scale_factor, seed = config.get("scale_factor", 1.0), config.get("seed", 0)
    dtype = dtype or config.get("dtype", "float32")
    if isinstance(scale_factor, bool) or not isinstance(scale_factor, (int, float)) or \
            not 0 < scale_factor < 1e300:
        raise ModelError(f"{where}: scale_factor must be a positive number, got {scale_factor!r}")
    if not _is_int(seed) or not 0 <= seed < 2 ** 63:
        raise ModelError(f"{where}: seed must be an integer in [0, 2**63), got {seed!r}")
    if dtype not in ("float32", "float64"):
        raise ModelError(f"{where}: dtype must be float32 or float64, got {dtype!r}")
    if params is not None:
        have, need = sum(int(np.size(a)) for a in params.values()), min_param_count(hp)
        if need > 2 * have + 2 ** 20:
            raise ModelError(f"{where} does not match the model it describes: its "
                             f"hyperparameters need at least {need:,} parameters, the file "
                             f"holds {have:,}")
    return SketchRNN(hp, backend=backend or "numpy", dtype=dtype, seed=seed,
                     scale_factor=float(scale_factor))


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
    try:
        hp = HParams(conditional=False, dec_model="lstm", dec_rnn_size=int(info["dec_rnn_size"]),
                     num_mixture=int(info["num_mixture"]), max_seq_len=int(info["max_seq_len"]))
    except MinisketchError as e:
        raise ModelError(f"{path}: unusable model sizes ({e})") from None
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
    model = model_from_config(ck.config, backend=backend, dtype=dtype, where=str(path),
                              params=ck.params)
    load_params(model, ck.params, str(path))
    return model
