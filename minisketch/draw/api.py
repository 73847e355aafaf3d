"""The draw server's JSON API: check a request completely, then run the model.

    GET  /api/models                                      [model info, ...] (DrawModel.info)
    GET  /api/examples?model=M&n=4&seed=0                 n test-set sketches of M's data
    POST /api/complete    {model, strokes, n, temperature, seed}   n endings of the strokes
    POST /api/variations  {model, strokes, n, temperature, seed}   n decodings of mu(strokes)
    POST /api/morph       {model, sketches: [A, B], n, temperature, seed}  n points of the
                                                          slerp path from mu(A) to mu(B)
    POST /api/dream       {model, n, temperature, seed}            n sketches, z ~ N(0, I)

``strokes`` (and A, B) are stroke-3 rows ``[dx, dy, pen_lifted]`` in the model's pixel units
(data units), pen 0 or 1, used as given. Every answer is ``{"sketches": [stroke-3, ...],
"seconds": s}``; a completion begins with the request's rows exactly, the sampled rows are
rounded to 1/1000 of a unit. ``model`` defaults to the first model served; ``n`` to 4 (morph:
5); ``temperature`` to 0.8 for complete (the paper's value), 0.5 otherwise; ``seed`` to 0.

A bad request raises :class:`ApiError` (status, message) before any model work: the server
answers ``{"error": message}`` with that status. The ``MAX_*`` limits bound one request's work.
"""
from __future__ import annotations

import json
import math
import re
import time

import numpy as np

from ..errors import MinisketchError
from ..sampling import encode_mu, sample, slerp
from .models import Busy, DrawModel

MAX_BODY = 1_000_000            # bytes of a request body
MAX_DEPTH = 4                   # JSON nesting: object > sketches > sketch > row
MAX_POINTS = 3000               # stroke-3 rows in one request, all sketches together
MAX_N = 16                      # sketches asked for
MAX_TEMPERATURE = 2.0           # temperatures are in (0, MAX_TEMPERATURE]
MAX_COORD = 10_000.0            # |dx|, |dy| in model units (datasets are clamped to 1000)
MAX_SEED = 2**32 - 1
ROUND = 3                       # decimals of the sampled rows in answers

DEFAULT_N = {"morph": 5}
DEFAULT_TEMPERATURE = {"complete": 0.8}
FIELDS = {
    "complete": ("model", "strokes", "n", "temperature", "seed"),
    "variations": ("model", "strokes", "n", "temperature", "seed"),
    "morph": ("model", "sketches", "n", "temperature", "seed"),
    "dream": ("model", "n", "temperature", "seed"),
}
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


class ApiError(Exception):
    """A request the API refuses: HTTP ``status`` (4xx) and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ----------------------------------------------------------------------------- parsing

def json_depth(body: bytes) -> int:
    """Deepest nesting of [ and { in a JSON text (brackets inside strings do not count)."""
    b = np.frombuffer(_STRING.sub(b'""', body), dtype=np.uint8)
    opens = (b == ord("[")) | (b == ord("{"))
    closes = (b == ord("]")) | (b == ord("}"))
    level = np.cumsum(opens.astype(np.int64) - closes.astype(np.int64))
    return int(level.max(initial=0))


def _reject_constant(name):
    raise ApiError(400, f"{name} is not a number JSON allows; send finite numbers only")


def parse_body(body: bytes) -> dict:
    """A request body (at most MAX_BODY bytes) -> its JSON object, or ApiError 400."""
    depth = json_depth(body)
    if depth > MAX_DEPTH:
        raise ApiError(400, f"the JSON is nested {depth} levels deep; requests need at most "
                            f"{MAX_DEPTH}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text; send a JSON object") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"the body is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ApiError(400, f"the body must be a JSON object, got a JSON {type(obj).__name__}")
    return obj


# ----------------------------------------------------------------------------- fields

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v, what: str) -> float:
    if not _is_number(v):
        raise ApiError(400, f"{what} must be a number, got {json.dumps(v)[:40]}")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise ApiError(400, f"{what} must be a finite number, got {v!r:.40}")
    return f


def _int(v, what: str, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ApiError(400, f"{what} must be a whole number from {lo} to {hi}, got "
                            f"{json.dumps(v)[:40]}")
    if not lo <= v <= hi:
        raise ApiError(400, f"{what} must be from {lo} to {hi}, got {v}")
    return v


def check_strokes(v, what: str = "strokes") -> np.ndarray:
    """A list of ``[dx, dy, pen]`` rows -> float64 [L, 3] (exact values), or ApiError 400."""
    if not isinstance(v, list):
        raise ApiError(400, f"{what} must be a list of [dx, dy, pen_lifted] rows")
    if not v:
        raise ApiError(400, f"{what} is empty: draw something first")
    if len(v) > MAX_POINTS:
        raise ApiError(400, f"{what} has {len(v)} points; at most {MAX_POINTS} are accepted")
    out = np.empty((len(v), 3), dtype=np.float64)
    for i, row in enumerate(v):
        if not isinstance(row, list) or len(row) != 3:
            raise ApiError(400, f"{what} row {i} must be [dx, dy, pen_lifted], got "
                                f"{json.dumps(row)[:40]}")
        dx = _finite(row[0], f"{what} row {i} dx")
        dy = _finite(row[1], f"{what} row {i} dy")
        if abs(dx) > MAX_COORD or abs(dy) > MAX_COORD:
            raise ApiError(400, f"{what} row {i}: offsets must be at most {MAX_COORD:g} "
                                f"model units, got ({dx:g}, {dy:g})")
        pen = row[2]
        if not _is_number(pen) or pen not in (0, 1):
            raise ApiError(400, f"{what} row {i}: pen_lifted must be 0 or 1, got "
                                f"{json.dumps(pen)[:40]}")
        out[i] = dx, dy, pen
    return out


def _model(models: dict, name) -> DrawModel:
    if name is None:
        return next(iter(models.values()))
    if not isinstance(name, str):
        raise ApiError(400, "model must be a model name (a string) from /api/models")
    if name not in models:
        raise ApiError(404, f"unknown model {name[:80]!r}; GET /api/models lists them "
                            f"({', '.join(list(models)[:8])})")
    return models[name]


def _options(mode: str, req: dict) -> tuple[int, float, int]:
    """n, temperature, seed of a request, with the mode's defaults."""
    hi_n = MAX_N
    n = _int(req.get("n", DEFAULT_N.get(mode, 4)), "n", 2 if mode == "morph" else 1, hi_n)
    t = req.get("temperature", DEFAULT_TEMPERATURE.get(mode, 0.5))
    t = _finite(t, "temperature")
    if not 0.0 < t <= MAX_TEMPERATURE:
        raise ApiError(400, f"temperature must be in (0, {MAX_TEMPERATURE:g}], got {t:g}")
    seed = _int(req.get("seed", 0), "seed", 0, MAX_SEED)
    return n, t, seed


def _require_encoder(entry: DrawModel, mode: str):
    if not entry.conditional:
        raise ApiError(400, f"{mode} needs a conditional model (one with an encoder); "
                            f"{entry.name} is decoder-only: use finish or dream")


# ----------------------------------------------------------------------------- answers

def sketch_rows(s: np.ndarray, exact: int = 0) -> list:
    """stroke-3 -> JSON rows; the first ``exact`` rows keep their values, the rest are rounded."""
    s = np.asarray(s, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ApiError(500, "the model produced non-finite numbers; try a lower temperature")
    head = s[:exact]
    tail = np.round(s[exact:], ROUND)
    return [[float(a), float(b), int(p)] for a, b, p in np.concatenate([head, tail])]


def post(models: dict, mode: str, body: bytes) -> dict:
    """Answer ``POST /api/<mode>`` (mode in FIELDS) -> ``{"sketches", "seconds"}``."""
    req = parse_body(body)
    unknown = sorted(set(req) - set(FIELDS[mode]))
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0][:40]!r}; /api/{mode} takes "
                            f"{', '.join(FIELDS[mode])}")
    entry = _model(models, req.get("model"))
    n, temperature, seed = _options(mode, req)
    strokes = sketches = None
    if "strokes" in FIELDS[mode]:
        if "strokes" not in req:
            raise ApiError(400, f"/api/{mode} needs strokes: stroke-3 rows [dx, dy, "
                                f"pen_lifted]")
        strokes = check_strokes(req["strokes"])
    if mode == "morph":
        pair = req.get("sketches")
        if not isinstance(pair, list) or len(pair) != 2:
            raise ApiError(400, "morph needs sketches: a list of two stroke-3 sketches [A, B]")
        sketches = [check_strokes(s, f"sketch {k}") for s, k in zip(pair, "AB")]
        total = sum(len(s) for s in sketches)
        if total > MAX_POINTS:
            raise ApiError(400, f"the two sketches have {total} points together; at most "
                                f"{MAX_POINTS} are accepted")
    if mode in ("variations", "morph"):
        _require_encoder(entry, mode)
    kw = dict(temperature=temperature, seed=seed)
    try:
        with entry.turn() as model:
            t0 = time.perf_counter()
            if mode == "complete":
                out = model.complete(strokes, n=n, **kw)
            elif mode == "variations":
                out = sample(model, n=n, z=encode_mu(model, [strokes])[0], **kw)
            elif mode == "morph":
                za, zb = encode_mu(model, sketches)
                out = sample(model, z=slerp(za, zb, np.linspace(0.0, 1.0, n)), **kw)
            else:
                out = sample(model, n=n, **kw)
            seconds = time.perf_counter() - t0
    except Busy as e:
        raise ApiError(429, str(e)) from None
    except MinisketchError as e:
        raise ApiError(400, str(e)) from None
    exact = len(strokes) if mode == "complete" else 0
    return {"sketches": [sketch_rows(s, exact) for s in out], "seconds": round(seconds, 4)}


def examples(models: dict, query: dict) -> dict:
    """Answer ``GET /api/examples`` (query: parsed ``{name: [values]}``) -> ``{"sketches",
    "indices"}``: n test-set sketches of the model's training data, chosen by seed."""
    allowed = ("model", "n", "seed")
    for k, v in query.items():
        if k not in allowed:
            raise ApiError(400, f"unknown query parameter {k[:40]!r}; /api/examples takes "
                                f"{', '.join(allowed)}")
        if len(v) != 1:
            raise ApiError(400, f"give {k} once")
    entry = _model(models, query["model"][0] if "model" in query else None)
    values = {}
    for k, default, hi in (("n", 4, MAX_N), ("seed", 0, MAX_SEED)):
        text = query.get(k, [str(default)])[0]
        if not re.fullmatch(r"[0-9]{1,10}", text):
            raise ApiError(400, f"{k} must be a whole number from {k == 'n'} to {hi}, got "
                                f"{text[:40]!r}")
        values[k] = _int(int(text), k, 1 if k == "n" else 0, hi)
    if entry.data is None:
        raise ApiError(404, f"model {entry.name} has no examples: its training data is not "
                            f"known or not on this machine")
    try:
        with entry.turn():
            test = entry.examples()
    except Busy as e:
        raise ApiError(429, str(e)) from None
    except MinisketchError as e:
        raise ApiError(404, f"model {entry.name} has no examples ({e})") from None
    rng = np.random.default_rng(values["seed"])
    idx = rng.choice(len(test), size=min(values["n"], len(test)), replace=False)
    return {"sketches": [sketch_rows(test[i], len(test[i])) for i in idx],
            "indices": [int(i) for i in idx]}


def model_list(models: dict) -> list:
    """Answer ``GET /api/models``: every served model's info, the default first."""
    return [m.info() for m in models.values()]
