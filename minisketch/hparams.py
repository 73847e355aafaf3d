"""Hyperparameters: one dataclass with the reference names and defaults.

Names and defaults follow the authors' reference code (Magenta ``sketch_rnn``,
``get_default_hparams``) and the paper (Ha & Eck 2017, section 3 and appendix); the command line
of ``python -m minisketch.train`` is generated from this class (``--dec_model hyper``).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

from .errors import MinisketchError

CELLS = ("lstm", "layer_norm", "hyper")
CHOICES = {"enc_model": CELLS, "dec_model": CELLS}
MAX_UNITS = 4096              # largest layer width (the paper's largest decoder is 2048)
MAX_SEQ_LEN = 10_000          # longest sketch a model is built for (QuickDraw: 250 after RDP)
# field -> (low, high, low excluded): the range validate() accepts
RANGES = {
    "max_seq_len": (1, MAX_SEQ_LEN, False), "batch_size": (1, 10_000, False),
    "enc_rnn_size": (1, MAX_UNITS, False), "dec_rnn_size": (1, MAX_UNITS, False),
    "z_size": (1, MAX_UNITS, False), "num_mixture": (1, 1000, False),
    "hyper_num_units": (1, MAX_UNITS, False), "hyper_embedding_size": (1, MAX_UNITS, False),
    "random_scale_factor": (0.0, 1.0, False), "augment_stroke_prob": (0.0, 1.0, False),
    "recurrent_dropout_prob": (0.0, 1.0, True), "input_dropout_prob": (0.0, 1.0, True),
    "output_dropout_prob": (0.0, 1.0, True),
    "kl_weight": (0.0, 1e6, False), "kl_weight_start": (0.0, 1e6, False),
    "kl_decay_rate": (0.0, 1.0, False), "kl_tolerance": (0.0, 1e6, False),
    "learning_rate": (0.0, 10.0, True), "decay_rate": (0.0, 1.0, True),
    "min_learning_rate": (0.0, 10.0, False), "grad_clip": (0.0, 1e6, True),
}


@dataclass
class HParams:
    # --- data ---
    max_seq_len: int = 250            # longest sketch kept; N_max = longest kept sketch (reference 250)
    random_scale_factor: float = 0.15  # training augmentation: scale dx, dy by 1 +- f (SPEC 1.4)
    augment_stroke_prob: float = 0.10  # training augmentation: point dropping probability
    # --- model sizes ---
    enc_model: str = "lstm"           # encoder cell: lstm | layer_norm | hyper
    dec_model: str = "lstm"           # decoder cell: lstm | layer_norm | hyper
    enc_rnn_size: int = 256           # encoder units per direction (paper: 256)
    dec_rnn_size: int = 512           # decoder units (paper: 512; 2048 for the hyper paper runs)
    z_size: int = 128                 # latent size N_z (paper: 128)
    num_mixture: int = 20             # M, bivariate Gaussian components (paper: 20)
    hyper_num_units: int = 256        # HyperLSTM: hyper cell units (reference 256)
    hyper_embedding_size: int = 32    # HyperLSTM: embedding size (reference 32)
    conditional: bool = True          # False: decoder-only (unconditional) model, no KL
    # --- regularization ---
    use_recurrent_dropout: bool = True   # dropout on the candidate g (Semeniuta et al. 2016)
    recurrent_dropout_prob: float = 0.90  # keep probability
    use_input_dropout: bool = False      # dropout on the decoder input
    input_dropout_prob: float = 0.90     # keep probability
    use_output_dropout: bool = False     # dropout on the decoder output h
    output_dropout_prob: float = 0.90    # keep probability
    # --- objective ---
    kl_weight: float = 0.5            # w_KL (paper: 0.5 for most classes)
    kl_weight_start: float = 0.01     # w_start of the KL annealing schedule
    kl_decay_rate: float = 0.99995    # R of the KL annealing schedule
    kl_tolerance: float = 0.2         # KL_min floor (no KL gradient below it)
    # --- optimization ---
    batch_size: int = 100
    learning_rate: float = 0.001
    decay_rate: float = 0.9999        # lr_step = (lr - lr_min) * decay_rate^step + lr_min
    min_learning_rate: float = 0.00001
    grad_clip: float = 1.0            # element-wise clipping to [-grad_clip, grad_clip]

    def __post_init__(self):
        self.validate()

    def validate(self) -> "HParams":
        """Check every field's type and range (see :data:`RANGES`); raise MinisketchError
        naming the first bad one. Numbers are normalized in place (``1`` -> ``1.0`` for a float
        field, NumPy scalars -> Python), so the config is plain JSON."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in CHOICES:
                if value not in CHOICES[f.name]:
                    raise MinisketchError(f"{f.name} must be one of "
                                          f"{', '.join(CHOICES[f.name])}, got {value!r}")
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind == "bool":
                if not isinstance(value, (bool, np.bool_)):
                    raise MinisketchError(f"{f.name} must be true or false, got {value!r}")
                setattr(self, f.name, bool(value))
                continue
            lo, hi, lo_open = RANGES[f.name]
            if kind == "int":
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                    raise MinisketchError(f"{f.name} must be an integer, got {value!r}")
                value = int(value)
            else:
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                    raise MinisketchError(f"{f.name} must be a number, got {value!r}")
                value = float(value)
            below = value <= lo if lo_open else value < lo
            if not math.isfinite(value) or below or value > hi:
                what = "an integer" if kind == "int" else "a number"
                raise MinisketchError(f"{f.name} must be {what} in {'(' if lo_open else '['}"
                                      f"{lo:g}, {hi:g}], got {value!r}")
            setattr(self, f.name, value)
        if self.min_learning_rate > self.learning_rate:
            raise MinisketchError(f"min_learning_rate ({self.min_learning_rate:g}) must not be "
                                  f"above learning_rate ({self.learning_rate:g})")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HParams":
        if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
            raise MinisketchError(f"hyperparameters must be a mapping of names to values, "
                                  f"got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MinisketchError(f"unknown hyperparameter(s): {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **kw) -> "HParams":
        return HParams.from_dict({**self.to_dict(), **kw})


def _parse_bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (1/0/true/false), got {s!r}")


def add_hparam_arguments(parser: argparse.ArgumentParser, defaults: HParams | None = None,
                         title: str = "hyperparameters (HParams fields)") -> None:
    """Add ``--NAME VALUE`` for every HParams field (dashes shown; parsed default None = not
    given). ``defaults``: the values a run uses when a flag is not given (a preset's), shown in
    ``--help``; HParams() when None."""
    defaults = defaults or HParams()
    group = parser.add_argument_group(title)
    for f in fields(HParams):
        kind = {"bool": _parse_bool, "int": int, "float": float, "str": str}[
            f.type if isinstance(f.type, str) else f.type.__name__]
        kw = {"type": kind, "default": None, "dest": f.name,
              "metavar": {"bool": "0|1", "int": "N", "float": "X", "str": "NAME"}[
                  f.type if isinstance(f.type, str) else f.type.__name__],
              "help": f"default {_show(getattr(defaults, f.name))}"}
        if f.name in ("enc_model", "dec_model"):
            kw["choices"] = CELLS
            kw["metavar"] = "{" + ",".join(CELLS) + "}"
        group.add_argument("--" + f.name.replace("_", "-"), **kw)


def _show(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def hparams_from_args(args: argparse.Namespace, base: HParams | None = None) -> HParams:
    """HParams from parsed arguments: fields given on the command line override ``base``."""
    base = base or HParams()
    given = {f.name: getattr(args, f.name) for f in fields(HParams)
             if getattr(args, f.name, None) is not None}
    return base.replace(**given)
