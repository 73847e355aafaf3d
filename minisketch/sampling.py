"""Sampling from a trained sketch-rnn, and the four uses of the paper (SPEC section 4).

One decoding step, for every row still drawing:

    y = decoder_step(x_t, z, state)            raw outputs [a, 6M+3]
    pen   ~ softmax(pen_logits / tau)          p1 pen down, p2 lift, p3 end
    k     ~ softmax(pi_logits / tau)           mixture component
    sigma_x, sigma_y = exp(log sigma) * sqrt(tau),   rho = tanh(rho logit)
    dx = mu_x + sigma_x e1
    dy = mu_y + sigma_y (rho e1 + sqrt(1 - rho^2) e2)      e1, e2 ~ N(0, 1)
    x_{t+1} = (dx, dy, one_hot(pen))

Greedy decoding (tau -> 0) takes the argmax pen and component and the component's mean. A row
stops at p3 (not part of the sketch) or after ``max_len`` steps and leaves the batch. The uses:
:func:`sample`, :func:`reconstruct`, :func:`interpolate` (:func:`slerp`, :func:`lerp`),
:func:`analogy` (z_a - z_b + z_c) and :func:`complete`. Any backend: arrays live in ``model.xp``;
random numbers come from a host ``np.random.default_rng(seed)`` uploaded in chunks of
:data:`RNG_CHUNK` steps; only the pen state of the rows still drawing comes back per step.
Sketches in and out are stroke-3 NumPy arrays in data units (``model.scale_factor``).
"""
from __future__ import annotations

import math

import numpy as np

from .xp import to_numpy
from .errors import DataError, MinisketchError, ModelError

RNG_CHUNK = 64        # steps of random numbers drawn (and uploaded) at once
PEN_DOWN, PEN_LIFT, PEN_END = 0, 1, 2
START_ROW = (0.0, 0.0, 1.0, 0.0, 0.0)     # S0, the first decoder input


# ----------------------------------------------------------------------------- one step

def categorical(logits, u, temperature=1.0):
    """Draw one category per row from ``softmax(logits / temperature)``.

    logits [a, K] (xp array), u [a] uniforms in (0, 1] -> int [a] in 0..K-1.
    Inverse CDF with one uniform per row: the first index whose cumulative weight reaches
    ``u * total``, with weights ``exp((l - max l) / tau)`` (no normalizing needed). A category
    of weight 0 is never drawn (its cumulative weight equals its predecessor's).
    """
    w = logits - logits.max(axis=1, keepdims=True)
    if temperature != 1.0:
        w *= 1.0 / temperature
    xp = _xp_of(w)
    xp.exp(w, out=w)
    c = xp.cumsum(w, axis=1, out=w)
    return (c >= (u * c[:, -1])[:, None]).argmax(axis=1)


def sample_step(y, num_mixture, temperature=1.0, u=None, e=None, greedy=False):
    """Draw the next row of every sketch from the decoder's raw outputs.

    y [a, 6M+3] raw outputs (layout of SPEC 2); u [a, 2] uniforms (pen, component) and
    e [a, 2] standard normals, both in y's array module and dtype (unused when greedy).
    Returns ``(offsets [a, 2] normalized units, pen [a] int (0 down, 1 lift, 2 end),
    component [a] int)`` as arrays of y's module.
    """
    xp = _xp_of(y)
    M = num_mixture
    a = y.shape[0]
    if greedy:
        pen = y[:, :3].argmax(axis=1)
        k = y[:, 3:3 + M].argmax(axis=1)
    else:
        pen = categorical(y[:, :3], u[:, 0], temperature)
        k = categorical(y[:, 3:3 + M], u[:, 1], temperature)
    # gather mu_x, mu_y, log sigma_x, log sigma_y, rho logit of the chosen component: [a, 5]
    cols = k[:, None] + xp.arange(3 + M, 3 + 6 * M, M)[None, :]
    g = y[xp.arange(a)[:, None], cols]
    offsets = xp.empty((a, 2), dtype=y.dtype)
    if greedy:
        offsets[...] = g[:, 0:2]
        return offsets, pen, k
    s = xp.exp(g[:, 2:4]) * math.sqrt(temperature)        # sigma_x, sigma_y
    rho = xp.tanh(g[:, 4])
    e1, e2 = e[:, 0], e[:, 1]
    offsets[:, 0] = g[:, 0] + s[:, 0] * e1
    offsets[:, 1] = g[:, 1] + s[:, 1] * (rho * e1 + xp.sqrt(xp.maximum(1.0 - rho * rho, 0.0)) * e2)
    return offsets, pen, k


# ----------------------------------------------------------------------------- helpers

def _xp_of(a):
    if type(a).__module__.startswith("cupy"):
        import cupy
        return cupy
    return np


def _map_state(state, f):
    """Apply ``f`` to every array of a decoder state (an array, or a tuple/list/dict of them)."""
    if isinstance(state, tuple):
        return tuple(_map_state(s, f) for s in state)
    if isinstance(state, list):
        return [_map_state(s, f) for s in state]
    if isinstance(state, dict):
        return {k: _map_state(s, f) for k, s in state.items()}
    return f(state)


def check_sketch(sketch, what: str = "sketch") -> np.ndarray:
    """A stroke-3 array ``[L, 3]`` (L >= 1, finite numbers) or a DataError saying what is wrong."""
    try:
        s = np.asarray(sketch)
    except Exception:
        raise DataError(f"{what} is not an array of numbers") from None
    if s.dtype == object or not (np.issubdtype(s.dtype, np.number) or s.dtype == bool):
        raise DataError(f"{what} must hold numbers, got dtype {s.dtype}")
    if s.ndim != 2 or s.shape[1] != 3:
        raise DataError(f"{what} must be stroke-3 rows (dx, dy, p) of shape [L, 3], "
                        f"got shape {list(s.shape)}")
    if s.shape[0] == 0:
        raise DataError(f"{what} is empty (0 points); give a sketch with at least one point")
    if np.issubdtype(s.dtype, np.complexfloating):
        raise DataError(f"{what} must hold real numbers, got dtype {s.dtype}")
    if np.issubdtype(s.dtype, np.floating) and not np.all(np.isfinite(s)):
        raise DataError(f"{what} holds NaN or infinite values")
    return s


def _check_temperature(temperature) -> float:
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise MinisketchError(f"temperature must be a positive number, got {temperature!r} "
                              f"(use greedy decoding for the tau -> 0 limit)")
    return t


def _resolve_z(model, z, n, rng):
    """The latent codes as a host float64 array [n, Nz] (None for decoder-only models) and n."""
    n = int(n)
    if n < 1:
        raise MinisketchError(f"n must be at least 1, got {n}")
    hp = model.hp
    if not hp.conditional:
        if z is not None:
            raise ModelError("this is a decoder-only model: it takes no latent vector z")
        return None, n
    if z is None:
        return rng.standard_normal((n, hp.z_size)), n
    z = np.asarray(to_numpy(z), dtype=np.float64)
    if z.ndim == 1:
        z = z[None, :]
    if z.ndim != 2 or z.shape[1] != hp.z_size:
        raise ModelError(f"z must have shape [n, {hp.z_size}] or [{hp.z_size}] for this model, "
                         f"got {list(np.shape(z))}")
    if not np.all(np.isfinite(z)):
        raise ModelError("z holds NaN or infinite values")
    if z.shape[0] == 1 and n > 1:
        z = np.repeat(z, n, axis=0)
    elif n not in (1, z.shape[0]):
        raise ModelError(f"n = {n} sketches but z has {z.shape[0]} rows; give one z per sketch "
                         f"or a single z")
    return z, z.shape[0]


def _stroke3_to_inputs(s3: np.ndarray, scale_factor: float) -> np.ndarray:
    """stroke-3 in data units -> decoder inputs [L, 5] float64 (normalized offsets, p1 p2 0)."""
    x = np.zeros((len(s3), 5))
    x[:, 0:2] = np.asarray(s3[:, 0:2], dtype=np.float64) / scale_factor
    lift = np.asarray(s3[:, 2], dtype=np.float64) > 0.5
    x[:, 2] = ~lift
    x[:, 3] = lift
    return x


def _start_inputs(xp, dtype, n):
    return xp.asarray(np.tile(np.asarray(START_ROW, dtype=dtype), (n, 1)))


# ----------------------------------------------------------------------------- decoding

def _run_prefix(model, prefix, zx, state, n):
    """Teacher-force S0 and every prefix row but the last; return (state, last row as input).

    The last prefix row is the input of the first sampled step, so the state returned has
    seen S0 .. row L-1 and the first decoder step of the loop reads row L.
    """
    xp, dtype = model.xp, np.dtype(model.dtype)
    rows = _stroke3_to_inputs(prefix, float(model.scale_factor))
    inputs = xp.asarray(np.concatenate([[START_ROW], rows]).astype(dtype))   # [L + 1, 5]
    for t in range(len(rows)):                    # S0, row 1, ..., row L-1
        x = xp.ascontiguousarray(xp.broadcast_to(inputs[t], (n, 5)))
        _, state = model.decoder_step(x, zx, state)
    return state, xp.ascontiguousarray(xp.broadcast_to(inputs[-1], (n, 5)))


def _initial(model, z, n, prefix):
    """Start state [n, ...] and first input [n, 5] (after the prefix when there is one)."""
    xp, dtype = model.xp, np.dtype(model.dtype)
    zx = None if z is None else xp.asarray(z.astype(dtype))
    if prefix is None:
        return model.initial_state(zx, n), _start_inputs(xp, dtype, n), zx
    same = z is None or bool(np.all(z == z[:1]))
    if same and n > 1:   # one prefix pass for all rows, then copy the state
        z1 = None if zx is None else zx[:1]
        state, x = _run_prefix(model, prefix, z1, model.initial_state(z1, 1), 1)
        state = _map_state(state, lambda s: xp.repeat(s, n, axis=0))
        return state, xp.repeat(x, n, axis=0), zx
    state, x = _run_prefix(model, prefix, zx, model.initial_state(zx, n), n)
    return state, x, zx


def _decode(model, state, x, zx, n, temperature, rng, greedy, max_len):
    """The sampling loop. Returns host arrays offsets [T, n, 2] (normalized), pen [T, n] int8
    and lengths [n] (rows before each sketch's end)."""
    xp, dtype = model.xp, np.dtype(model.dtype)
    M = int(model.hp.num_mixture)
    T = int(max_len)
    offsets = xp.zeros((T, n, 2), dtype=dtype)
    pens = np.full((T, n), PEN_END, dtype=np.int8)
    lengths = np.full(n, T, dtype=np.int64)
    active = np.arange(n)                 # host: original row of each decoder row
    active_x = xp.asarray(active)
    eye = xp.eye(3, dtype=dtype)
    U = E = None
    for t in range(T):
        if not len(active):
            break
        y, state = model.decoder_step(x, zx, state)
        if greedy:
            u = e = None
        else:
            if t % RNG_CHUNK == 0:        # random numbers for every row, drawn per chunk
                steps = min(RNG_CHUNK, T - t)
                U = xp.asarray((1.0 - rng.random((steps, n, 2))).astype(dtype))  # (0, 1]
                E = xp.asarray(rng.standard_normal((steps, n, 2)).astype(dtype))
            u, e = U[t % RNG_CHUNK], E[t % RNG_CHUNK]
            if len(active) < n:
                u, e = u[active_x], e[active_x]
        d, pen, _ = sample_step(y, M, temperature, u, e, greedy)
        offsets[t, active_x] = d
        pen_h = to_numpy(pen).astype(np.int8)
        pens[t, active] = pen_h
        x = xp.empty((len(active), 5), dtype=dtype)
        x[:, 0:2] = d
        x[:, 2:5] = eye[pen]
        ended = pen_h == PEN_END
        if ended.any():
            lengths[active[ended]] = t
            keep = np.flatnonzero(~ended)
            keep_x = xp.asarray(keep)
            active = active[keep]
            active_x = xp.asarray(active)
            state = _map_state(state, lambda s: s[keep_x])
            x = x[keep_x]
            if zx is not None:
                zx = zx[keep_x]
    return to_numpy(offsets), pens, lengths


def _to_stroke3(offsets, pens, lengths, scale_factor, dtype=np.float32):
    out = []
    for i, L in enumerate(lengths):
        s = np.empty((int(L), 3), dtype=dtype)
        s[:, 0:2] = offsets[:L, i].astype(np.float64) * scale_factor
        s[:, 2] = pens[:L, i] == PEN_LIFT
        out.append(s)
    return out


def sample(model, n=1, temperature=1.0, z=None, seed=0, greedy=False, max_len=None,
           prefix=None):
    """Sample ``n`` sketches, all decoded together. Returns a list of stroke-3 arrays (data units).

    model: a SketchRNN (any backend). temperature: tau > 0 (ignored when ``greedy``).
    z: latent codes [n, Nz] or [Nz] for a conditional model (None: z ~ N(0, I)); a 2-D z with
    k rows and the default n = 1 gives k sketches. Decoder-only models take no z.
    seed: the host generator's seed (z, pen, component and offset noise). greedy: argmax pen
    and component, offset = the component's mean. max_len: most rows per sketch (default the
    model's N_max; with a prefix, N_max minus the prefix length, at least 0).
    prefix: stroke-3 [L, 3] every sketch starts with (see :func:`complete`).

    Output arrays are float32 with pen 1 = lift; with a prefix, their first L rows are the
    prefix itself (dtype ``result_type(prefix, float32)``).
    """
    temperature = _check_temperature(temperature)
    rng = np.random.default_rng(seed)
    z, n = _resolve_z(model, z, n, rng)
    N_max = int(model.hp.max_seq_len)
    if prefix is not None:
        prefix = check_sketch(prefix, "the prefix")
        if max_len is None:
            max_len = max(N_max - len(prefix), 0)
    max_len = N_max if max_len is None else int(max_len)
    if max_len < 0:
        raise MinisketchError(f"max_len must be >= 0, got {max_len}")
    state, x, zx = _initial(model, z, n, prefix)
    offsets, pens, lengths = _decode(model, state, x, zx, n, temperature, rng, greedy, max_len)
    if prefix is None:
        return _to_stroke3(offsets, pens, lengths, float(model.scale_factor))
    dtype = np.result_type(prefix.dtype, np.float32)
    ends = _to_stroke3(offsets, pens, lengths, float(model.scale_factor), dtype)
    return [np.concatenate([prefix.astype(dtype, copy=False), e], axis=0) for e in ends]


def complete(model, prefix_sketch, n=4, temperature=0.8, seed=0, z=None, greedy=False,
             max_len=None):
    """Finish an incomplete sketch ``n`` different ways (SPEC 4; the paper uses tau = 0.8).

    The prefix (stroke-3, data units) is fed through the decoder from the start state (for a
    conditional model from ``z`` given, else from the encoding (mu) of the prefix itself), then
    ``n`` endings are sampled. Each returned sketch begins with the prefix rows exactly as given
    (the last prefix row keeps its own pen state), followed by the sampled continuation.
    """
    prefix = check_sketch(prefix_sketch, "the sketch to complete")
    if model.hp.conditional and z is None:
        mu, _ = model.encode([prefix])
        z = np.asarray(to_numpy(mu))[0]
    return sample(model, n=n, temperature=temperature, z=z, seed=seed, greedy=greedy,
                  max_len=max_len, prefix=prefix)


# ----------------------------------------------------------------------------- latent tools

def lerp(z0, z1, t):
    """Linear interpolation ``(1 - t) z0 + t z1``; t a number -> [Nz], t a 1-D array -> [k, Nz]."""
    z0, z1 = np.asarray(z0, dtype=np.float64), np.asarray(z1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    tt = t[..., None]
    return (1.0 - tt) * z0 + tt * z1


def slerp(z0, z1, t, eps=1e-7):
    """Spherical interpolation (Shoemake 1985) between z0 and z1 at t (number or 1-D array).

    With omega the angle between them: ``sin((1-t) omega)/sin(omega) z0 + sin(t omega)/sin(omega)
    z1``; t = 0 and t = 1 give z0 and z1, and when |z0| = |z1| every point has that norm. Falls
    back to :func:`lerp` when sin(omega) < eps (nearly parallel or opposite, or a zero vector).
    """
    z0, z1 = np.asarray(z0, dtype=np.float64), np.asarray(z1, dtype=np.float64)
    n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
    if n0 == 0 or n1 == 0:
        return lerp(z0, z1, t)
    omega = math.acos(float(np.clip(np.dot(z0 / n0, z1 / n1), -1.0, 1.0)))
    so = math.sin(omega)
    if so < eps:
        return lerp(z0, z1, t)
    tt = np.asarray(t, dtype=np.float64)[..., None]
    return np.sin((1.0 - tt) * omega) / so * z0 + np.sin(tt * omega) / so * z1


def _require_encoder(model, what):
    if not model.hp.conditional:
        raise ModelError(f"{what} needs a conditional model (one with an encoder); this is a "
                         f"decoder-only model: use generate or complete instead")


def encode_mu(model, sketches, what="sketch"):
    """mu (the deterministic embedding) of each sketch: host float64 [n, Nz]."""
    _require_encoder(model, "encoding")
    sketches = [check_sketch(s, f"{what} {i + 1}") for i, s in enumerate(sketches)]
    mu, _ = model.encode(sketches)
    return np.asarray(to_numpy(mu), dtype=np.float64)


def reconstruct(model, sketches, temperature=0.5, n=1, seed=0, greedy=False, max_len=None):
    """Encode each sketch (mu) and decode it ``n`` times: a list of len(sketches) * n sketches
    (the n reconstructions of the first sketch come first)."""
    _require_encoder(model, "reconstruction")
    mu = encode_mu(model, sketches)
    z = np.repeat(mu, int(n), axis=0)
    return sample(model, z=z, temperature=temperature, seed=seed, greedy=greedy,
                  max_len=max_len)


def interpolate(model, sketch_a, sketch_b, n_steps=5, method="slerp", temperature=0.5, seed=0,
                greedy=False, max_len=None):
    """Decode ``n_steps`` points on the latent path from sketch_a's code to sketch_b's.

    method: "slerp" (spherical, as in the paper) or "lerp". The path is t = 0, 1/(k-1), ..., 1,
    so the first and last sketches decode the two encodings themselves.
    """
    _require_encoder(model, "interpolation")
    if method not in ("slerp", "lerp"):
        raise MinisketchError(f"method must be slerp or lerp, got {method!r}")
    n_steps = int(n_steps)
    if n_steps < 2:
        raise MinisketchError(f"interpolation needs at least 2 steps, got {n_steps}")
    za, zb = encode_mu(model, [sketch_a, sketch_b])
    t = np.linspace(0.0, 1.0, n_steps)
    z = slerp(za, zb, t) if method == "slerp" else lerp(za, zb, t)
    return sample(model, z=z, temperature=temperature, seed=seed, greedy=greedy,
                  max_len=max_len)


def analogy(model, a, b, c, n=1, temperature=0.5, seed=0, greedy=False, max_len=None):
    """Sketch analogy: decode ``n`` sketches from z = z_a - z_b + z_c (encodings by mu).

    E.g. a = full pig, b = pig head, c = cat head: "a cat with a pig's body"."""
    _require_encoder(model, "an analogy")
    za, zb, zc = encode_mu(model, [a, b, c])
    return sample(model, n=n, z=za - zb + zc, temperature=temperature, seed=seed, greedy=greedy,
                  max_len=max_len)
