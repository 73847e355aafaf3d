"""The magenta.js ``.gen.json`` model format: read and write decoder-only LSTM sketch-rnn models.

A file is a JSON list ``[info, shapes, weights]`` (SPEC section 5): ``info`` holds ``name``,
``scale_factor`` (data units), ``max_seq_len``, ``mode`` (2 or ``"gen"``: decoder-only) and
``version``; ``shapes`` is ``[[H, 6M+3], [6M+3], [5, 4H], [H, 4H], [4H]]``; ``weights`` are five
base64 strings of little-endian int16, in the order of ``shapes``. Under minisketch's parameter
names (weights ``[in, out]``, applied as ``x @ W``, gate blocks i, j, f, o)::

    "out/W"     [H, 6M+3]   output projection  y = h @ out/W + out/b
    "out/b"     [6M+3]
    "dec/W_xh"  [5, 4H]     input-to-gates     a = x @ W_xh + h_prev @ W_hh + b
    "dec/W_hh"  [H, 4H]
    "dec/b"     [4H]        stored without the forget bias +1 (added at run time)

A weight is stored as ``q = clip(round(w * 32767 / 10), -32767, 32767)`` and read back as
``10 * q / 32767`` (step D = 10 / 32767, about 3.05e-4, saturating at +-10; the round-trip bound
is derived in :func:`write_gen_json`). magenta.js hard-codes M = 20 mixture components: reading
accepts any M consistent with the shapes; exporting refuses M != 20.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

import numpy as np

from .errors import ModelError
from .fileio import read_regular
from .fileio import write_bytes_atomic as _write_bytes_atomic
from .hparams import MAX_SEQ_LEN

ARRAY_NAMES = ("out/W", "out/b", "dec/W_xh", "dec/W_hh", "dec/b")  # the file's order
QUANT_RANGE = 10.0          # weights are stored in [-10, 10]
QUANT_LEVELS = 32767        # ... as int16 in [-32767, 32767]
QUANT_STEP = QUANT_RANGE / QUANT_LEVELS                 # D, about 3.05e-4
ROUND_TRIP_BOUND = QUANT_STEP / 2                       # |w - dequantize(quantize(w))| for |w| <= 10
FLOAT32_BOUND = ROUND_TRIP_BOUND + QUANT_RANGE * 2.0 ** -24  # the same, after reading as float32
MAGENTA_NUM_MIXTURE = 20    # magenta.js hard-codes M
GEN_MODES = (2, "gen")      # decoder-only; 0/"vae" and others are conditional models
FORMAT_VERSION = 6
MAX_FILE_BYTES = 2 ** 28    # a .gen.json (the 512-unit magenta.js models: 3 MB)


@dataclass(frozen=True)
class QuantizationReport:
    """What :func:`write_gen_json` had to do to fit the weights into int16.

    ``n_weights``: values written; ``n_clipped``: how many were beyond +-10 and saturated;
    ``max_abs``: the largest ``|w|`` (so the caller can warn when it exceeds 10);
    ``max_error``: the largest ``|w - dequantize(quantize(w))|`` (at most ``ROUND_TRIP_BOUND``
    when nothing was clipped).
    """
    n_weights: int
    n_clipped: int
    max_abs: float
    max_error: float


# ----------------------------------------------------------------------------- quantization

def quantize(w) -> np.ndarray:
    """Weights (any shape) -> int16 ``clip(round(w * 32767 / 10), -32767, 32767)``."""
    t = np.rint(np.asarray(w, dtype=np.float64) * (QUANT_LEVELS / QUANT_RANGE))
    return np.clip(t, -QUANT_LEVELS, QUANT_LEVELS).astype(np.int16)


def dequantize(q, dtype=np.float32) -> np.ndarray:
    """int16 -> ``10.0 * q / 32767``, computed in float64 and cast to ``dtype``."""
    return (QUANT_RANGE * np.asarray(q, dtype=np.float64) / QUANT_LEVELS).astype(dtype)


# ----------------------------------------------------------------------------- shapes

def expected_shapes(dec_rnn_size: int, num_mixture: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the five arrays of a decoder-only LSTM with H units and M mixtures."""
    H, K = dec_rnn_size, 6 * num_mixture + 3
    return {"out/W": (H, K), "out/b": (K,), "dec/W_xh": (5, 4 * H),
            "dec/W_hh": (H, 4 * H), "dec/b": (4 * H,)}


def _sizes_from_shapes(shapes: list[tuple[int, ...]], where: str) -> tuple[int, int]:
    """(H, M) from the five shapes in file order, or ModelError saying which one is off."""
    if len(shapes[3]) != 2:
        raise ModelError(f"{where}: dec/W_hh must be 2-D [H, 4H], got shape {list(shapes[3])}")
    H = shapes[3][0]
    if H < 1:
        raise ModelError(f"{where}: dec/W_hh has H = {H} units; expected at least 1")
    if len(shapes[0]) != 2 or shapes[0][0] != H:
        raise ModelError(f"{where}: out/W must be [H, 6M+3] = [{H}, ...], got {list(shapes[0])}")
    K = shapes[0][1]
    if K < 9 or (K - 3) % 6:
        raise ModelError(f"{where}: out/W has {K} outputs; a mixture density output has "
                         f"6M+3 (M >= 1 an integer), e.g. 123 for M = 20")
    M = (K - 3) // 6
    for name, got in zip(ARRAY_NAMES, shapes):
        want = expected_shapes(H, M)[name]
        if tuple(got) != want:
            raise ModelError(f"{where}: {name} has shape {list(got)}, but a decoder-only LSTM "
                             f"with H = {H}, M = {M} needs {list(want)} (5 inputs, 4H gates); "
                             f"only decoder-only LSTM models (mode 2) can be read")
    return H, M


# ----------------------------------------------------------------------------- reading

def _check_info(info, where: str) -> dict:
    if not isinstance(info, dict):
        raise ModelError(f"{where}: the first element (info) must be a JSON object, "
                         f"got {type(info).__name__}")
    missing = [k for k in ("scale_factor", "max_seq_len", "mode") if k not in info]
    if missing:
        raise ModelError(f"{where}: info is missing {', '.join(missing)}; a magenta.js model "
                         f"has name, scale_factor, max_seq_len, mode and version")
    mode = info["mode"]
    if isinstance(mode, bool) or mode not in GEN_MODES:
        raise ModelError(f"{where}: info mode is {mode!r}, but only decoder-only models "
                         f"(mode 2 or \"gen\") are supported; conditional (VAE) models are not")
    sf = info["scale_factor"]
    if isinstance(sf, bool) or not isinstance(sf, (int, float)) or not math.isfinite(sf) \
            or sf <= 0:
        raise ModelError(f"{where}: info scale_factor must be a finite positive number, "
                         f"got {sf!r}")
    n = info["max_seq_len"]
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) \
            or n != int(n) or not 1 <= n <= MAX_SEQ_LEN:
        raise ModelError(f"{where}: info max_seq_len must be an integer from 1 to "
                         f"{MAX_SEQ_LEN}, got {n!r}")
    return info


def _check_shape_list(shapes, where: str) -> list[tuple[int, ...]]:
    if not isinstance(shapes, list) or len(shapes) != len(ARRAY_NAMES):
        count = len(shapes) if isinstance(shapes, list) else type(shapes).__name__
        raise ModelError(f"{where}: expected {len(ARRAY_NAMES)} array shapes (a decoder-only "
                         f"LSTM: {', '.join(ARRAY_NAMES)}), got {count}")
    out = []
    for name, s in zip(ARRAY_NAMES, shapes):
        if not isinstance(s, list) or not s or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in s):
            raise ModelError(f"{where}: the shape of {name} must be a list of positive "
                             f"integers, got {s!r}")
        out.append(tuple(s))
    return out


def _decode_array(b64, shape: tuple[int, ...], name: str, where: str) -> np.ndarray:
    if not isinstance(b64, str):
        raise ModelError(f"{where}: the weights of {name} must be a base64 string, "
                         f"got {type(b64).__name__}")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ModelError(f"{where}: the weights of {name} are not valid base64 ({e})") from None
    want = 2 * math.prod(shape)
    if len(raw) != want:
        raise ModelError(f"{where}: the weights of {name} hold {len(raw)} bytes, but shape "
                         f"{list(shape)} needs {want} (int16); the file is truncated or "
                         f"its shapes are wrong")
    return dequantize(np.frombuffer(raw, dtype="<i2").reshape(shape))


def read_gen_json(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a magenta.js decoder-only LSTM model.

    Returns ``(info, arrays)``. ``info`` is the file's info object plus two derived sizes,
    ``dec_rnn_size`` (H) and ``num_mixture`` (M). ``arrays`` maps the names in
    :data:`ARRAY_NAMES` to float32 arrays (shapes in the module docstring), dequantized as
    ``10.0 * int16 / 32767``. Any problem raises one :class:`ModelError` naming the file.
    """
    where = str(path)
    data = read_regular(path, MAX_FILE_BYTES, ModelError, "magenta.js .gen.json model")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"{where}: not a magenta.js model (not UTF-8 JSON text)") from None
    except json.JSONDecodeError as e:
        raise ModelError(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column "
                         f"{e.colno}); expected a magenta.js .gen.json model") from None
    except (ValueError, RecursionError) as e:     # a 5000-digit number, deep nesting
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ModelError(f"{where}: not a magenta.js model ({why})") from None
    if not isinstance(doc, list) or len(doc) != 3:
        what = f"a list of {len(doc)}" if isinstance(doc, list) else type(doc).__name__
        raise ModelError(f"{where}: a magenta.js model is a JSON list [info, shapes, weights], "
                         f"got {what}")
    info, shapes, weights = doc
    info = dict(_check_info(info, where))
    shapes = _check_shape_list(shapes, where)
    H, M = _sizes_from_shapes(shapes, where)
    if not isinstance(weights, list) or len(weights) != len(ARRAY_NAMES):
        count = len(weights) if isinstance(weights, list) else type(weights).__name__
        raise ModelError(f"{where}: expected {len(ARRAY_NAMES)} weight arrays, got {count}")
    arrays = {name: _decode_array(b64, shape, name, where)
              for name, shape, b64 in zip(ARRAY_NAMES, shapes, weights)}
    info["dec_rnn_size"], info["num_mixture"] = H, M
    return info, arrays


# ----------------------------------------------------------------------------- writing

def _check_write_info(info) -> dict:
    if not isinstance(info, dict):
        raise ModelError(f"info must be a dict with name, scale_factor and max_seq_len, "
                         f"got {type(info).__name__}")
    missing = [k for k in ("name", "scale_factor", "max_seq_len") if k not in info]
    if missing:
        raise ModelError(f"info is missing {', '.join(missing)} (needed by magenta.js)")
    mode = info.get("mode", 2)
    if isinstance(mode, bool) or mode not in GEN_MODES:
        raise ModelError(f"info mode is {mode!r}; only decoder-only models (mode 2) can be "
                         f"exported to magenta.js")
    sf = info["scale_factor"]
    if isinstance(sf, bool) or not isinstance(sf, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(sf)) or sf <= 0:
        raise ModelError(f"info scale_factor must be a finite positive number, got {sf!r}")
    n = info["max_seq_len"]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ModelError(f"info max_seq_len must be a positive integer, got {n!r}")
    return {"name": str(info["name"]), "scale_factor": float(sf), "max_seq_len": int(n),
            "mode": 2, "version": FORMAT_VERSION}


def write_gen_json(path, arrays: dict, info: dict) -> QuantizationReport:
    """Write a decoder-only LSTM model as a magenta.js ``.gen.json`` (atomically).

    ``arrays``: exactly the names in :data:`ARRAY_NAMES` (any float dtype, NumPy arrays), with
    the shapes of a decoder-only LSTM and M = 20. ``info``: ``name``, ``scale_factor`` (data
    units) and ``max_seq_len``; other keys are ignored, ``mode`` (2) and ``version`` (6) are
    written by this function. Returns a :class:`QuantizationReport`; weights beyond +-10 are
    saturated, and the caller decides how to warn about them.

    Round-trip error bound, for ``|w| <= 10``: ``t = w * 32767 / 10`` lies in [-32767, 32767], and
    so does the nearest integer ``round(t)`` (the ends are integers), so clipping never applies.
    Then ``|w - 10 * round(t) / 32767| = (10 / 32767) * |t - round(t)| <= (10 / 32767) / 2 = D /
    2`` (about 1.53e-4). Weights beyond +-10 are clipped to exactly +-10 (the error is ``|w| -
    10``); This function reports how many there were. :func:`read_gen_json` returns float32 arrays
    (what magenta.js computes with); rounding ``10 * q / 32767`` to float32 adds at most ``10 *
    2**-24`` (about 6e-7), so a write/read round trip is within ``D / 2 + 10 * 2**-24``.
    """
    header = _check_write_info(info)
    if not isinstance(arrays, dict) or set(arrays) != set(ARRAY_NAMES):
        got = sorted(arrays) if isinstance(arrays, dict) else type(arrays).__name__
        raise ModelError(f"a decoder-only LSTM model has arrays {list(ARRAY_NAMES)}, got {got}")
    ws = {}
    for name in ARRAY_NAMES:
        w = np.asarray(arrays[name])
        if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
            raise ModelError(f"{name} must be a numeric array, got dtype {w.dtype}")
        w = w.astype(np.float64)
        if not np.all(np.isfinite(w)):
            raise ModelError(f"{name} holds NaN or infinite values; cannot export this model")
        ws[name] = w
    H, M = _sizes_from_shapes([w.shape for w in ws.values()], "model")
    if M != MAGENTA_NUM_MIXTURE:
        raise ModelError(f"magenta.js models have M = {MAGENTA_NUM_MIXTURE} mixture components "
                         f"(hard-coded in the browser); this model has M = {M}")
    qs = {name: quantize(w) for name, w in ws.items()}
    n_weights = sum(w.size for w in ws.values())
    n_clipped = sum(int(np.count_nonzero(np.abs(np.rint(w * (QUANT_LEVELS / QUANT_RANGE)))
                                         > QUANT_LEVELS)) for w in ws.values())
    max_abs = max(float(np.max(np.abs(w))) for w in ws.values())
    max_error = max(float(np.max(np.abs(w - dequantize(qs[n], np.float64))))
                    for n, w in ws.items())
    doc = [header,
           [list(ws[name].shape) for name in ARRAY_NAMES],
           [base64.b64encode(qs[name].astype("<i2").tobytes()).decode("ascii")
            for name in ARRAY_NAMES]]
    _write_bytes_atomic(path, json.dumps(doc).encode("utf-8"))
    return QuantizationReport(n_weights=n_weights, n_clipped=n_clipped, max_abs=max_abs,
                              max_error=max_error)
