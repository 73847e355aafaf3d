"""The models a draw server offers: loading, naming, what each can do, one lock each.

A ``--model`` PATH is ``builtin:shapes``, a training run folder, a ``.npz`` model or checkpoint,
a magenta.js ``.gen.json``, or a folder holding several of those (looked at one level deep;
files that are not models, such as datasets, are skipped with a warning). Each becomes a
:class:`DrawModel` with a unique name, the modes it supports (``finish`` and ``dream`` for every
model; ``variations`` and ``morph`` need an encoder), a typical sketch size (so that the page
can map its drawing area to the model's pixel units) and, when its training data is known and
on this machine, a few test-set sketches for the page's example buttons. Nothing here downloads.

A model's arrays and buffers are shared by every request, so :meth:`DrawModel.turn` lets one
request at a time use it, and refuses (:class:`Busy`) when too many are already waiting.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint, load_model
from ..errors import MinisketchError, ModelError

BUILTIN_PREFIX = "builtin:"
DEFAULT_MODEL = "builtin:shapes"
MAX_WAITING = 8                 # requests queued on one model (the running one included)
EXTENT_SAMPLES = 8              # sketches dreamt at load time to measure a typical size
EXTENT_TEMPERATURE = 0.5


class Busy(MinisketchError):
    """Too many requests are already waiting for this model."""


class DrawModel:
    """One served model: ``name``, ``model`` (a SketchRNN), where it came from and its data.

    ``data``: the dataset SOURCEs it was trained on when they are on this machine (else None);
    ``extent``: median width-or-height of a few of its own sketches, in its pixel units.
    """

    def __init__(self, name: str, model, origin: str, data: list[str] | None):
        self.name, self.model, self.origin, self.data = name, model, origin, data
        self.lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._waiting = 0
        self._examples = None
        self.extent = self._measure_extent()

    @property
    def conditional(self) -> bool:
        return bool(self.model.hp.conditional)

    @property
    def modes(self) -> list[str]:
        return ["finish", "variations", "morph", "dream"] if self.conditional else \
            ["finish", "dream"]

    def info(self) -> dict:
        """What ``GET /api/models`` says about this model."""
        hp = self.model.hp
        return {"name": self.name, "kind": "conditional" if self.conditional else "decoder-only",
                "cell": hp.dec_model, "encoder_cell": hp.enc_model if self.conditional else None,
                "num_mixture": int(hp.num_mixture), "dec_rnn_size": int(hp.dec_rnn_size),
                "z_size": int(hp.z_size) if self.conditional else None,
                "max_seq_len": int(hp.max_seq_len),
                "scale_factor": round(float(self.model.scale_factor), 6),
                "num_params": int(self.model.num_params), "modes": self.modes,
                "examples": self.data is not None, "extent": round(self.extent, 3),
                "origin": self.origin}

    @contextmanager
    def turn(self):
        """Hold the model for one request (waits for the requests before it)."""
        with self._count_lock:
            if self._waiting >= MAX_WAITING:
                raise Busy(f"model {self.name} is busy with {self._waiting} requests; "
                           f"try again in a moment")
            self._waiting += 1
        try:
            with self.lock:
                yield self.model
        finally:
            with self._count_lock:
                self._waiting -= 1

    @property
    def waiting(self) -> int:
        with self._count_lock:
            return self._waiting

    def examples(self) -> list[np.ndarray]:
        """The test split of the model's training data (loaded once; call inside :meth:`turn`)."""
        if self.data is None:
            raise ModelError(f"model {self.name} does not say which data it was trained on "
                             f"(or that data is not on this machine), so it has no examples")
        if self._examples is None:
            from ..datasets import load_dataset
            ds = load_dataset(self.data, max_seq_len=int(self.model.hp.max_seq_len))
            self._examples = list(ds.test)
        return self._examples

    def _measure_extent(self) -> float:
        """Median of max(width, height) over a few dreams; also runs the model once (warm-up)."""
        from ..sampling import sample
        sketches = sample(self.model, n=EXTENT_SAMPLES, temperature=EXTENT_TEMPERATURE, seed=0)
        sizes = [sketch_size(s) for s in sketches if len(s) >= 2]
        fallback = 16.0 * float(self.model.scale_factor)
        size = float(np.median(sizes)) if sizes else fallback
        return size if np.isfinite(size) and size > 0 else fallback


def sketch_size(s3: np.ndarray) -> float:
    """max(width, height) of a stroke-3 sketch's points (the origin is not one of them)."""
    xy = np.cumsum(np.asarray(s3, dtype=np.float64)[:, 0:2], axis=0)
    return float(np.max(xy.max(axis=0) - xy.min(axis=0)))


# ----------------------------------------------------------------------------- loading

def _local_sources(sources) -> list[str] | None:
    """The dataset SOURCEs if every one is available without a download, else None."""
    if not isinstance(sources, list) or not sources:
        return None
    for s in sources:
        if not isinstance(s, str):
            return None
        if not (s.startswith(BUILTIN_PREFIX) or Path(s).is_file()):
            return None
    return list(sources)


def _training_data(path: Path) -> list[str] | None:
    """The ``--data`` a training checkpoint records, when it is on this machine."""
    if not path.name.endswith(".npz"):
        return None
    training = load_checkpoint(path).config.get("training")
    return _local_sources(training.get("data")) if isinstance(training, dict) else None


def _model_name(path: Path) -> str:
    if path.name in ("best.npz", "checkpoint.npz"):
        return path.parent.resolve().name
    for suffix in (".gen.json", ".json", ".npz"):
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def _is_run_folder(path: Path) -> bool:
    return any((path / f).is_file() for f in ("best.npz", "checkpoint.npz"))


def _model_file(path: Path) -> Path:
    """A run folder -> its best.npz (else checkpoint.npz); a file -> itself."""
    if path.is_dir():
        return path / ("best.npz" if (path / "best.npz").is_file() else "checkpoint.npz")
    return path


def _model_files(folder: Path) -> list[Path]:
    """Candidate models one level inside ``folder`` (run folders, .npz, .gen.json), sorted."""
    found = []
    for p in sorted(folder.iterdir()):
        if p.is_dir() and _is_run_folder(p):
            found.append(p)
        elif p.is_file() and (p.name.endswith(".npz") or p.name.endswith(".gen.json")):
            found.append(p)
    if not found:
        raise ModelError(f"{folder} holds no models (run folders, .npz models or .gen.json "
                         f"files); pass --model with a model file or folder")
    return found


def _load_builtin(spec: str, backend: str):
    try:
        return load_model(spec, backend=backend)
    except ModelError as e:
        raise ModelError(f"the packaged model {spec} cannot be loaded in this installation "
                         f"({e}); pass --model PATH with a run folder, a .npz model or a "
                         f".gen.json") from None


def load_models(specs, backend: str = "numpy", warn=None) -> dict[str, DrawModel]:
    """Load every ``--model`` spec -> ``{name: DrawModel}`` in the order given.

    A folder of several models skips (with a ``warning:`` line through ``warn``) files that are
    not models; a spec that names one model must load, or this raises ModelError.
    """
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    loaded: list[tuple[str, object, str, list | None]] = []
    for spec in specs:
        spec = str(spec)
        if spec.startswith(BUILTIN_PREFIX):
            model = _load_builtin(spec, backend)
            loaded.append((spec, model, spec, _local_sources([spec])))
            continue
        path = Path(spec)
        if path.is_dir() and not _is_run_folder(path):
            for p in _model_files(path):
                file = _model_file(p)
                try:
                    model = load_model(file, backend=backend)
                    loaded.append((_model_name(file), model, str(file), _training_data(file)))
                except MinisketchError as e:
                    warn(f"warning: skipped (not a model): {e}")
            continue
        if not path.exists():
            raise ModelError(f"no model at {spec}: pass a run folder, a .npz model or "
                             f"checkpoint, a .gen.json file, a folder of those, or "
                             f"{DEFAULT_MODEL}")
        file = _model_file(path)
        model = load_model(file, backend=backend)
        loaded.append((_model_name(file), model, str(file), _training_data(file)))
    if not loaded:
        raise ModelError("no models to serve; pass --model with a model file or folder")
    models: dict[str, DrawModel] = {}
    for name, model, origin, data in loaded:
        unique, k = name, 2
        while unique in models:
            unique, k = f"{name}-{k}", k + 1
        models[unique] = DrawModel(unique, model, origin, data)
    return models
