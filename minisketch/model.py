"""SketchRNN: the model's parameters, its training objective and its inference hooks.

The math is ``layers/sketch_rnn.py``'s two functions (encoder, latent, decoder, mixture loss,
and back; SPEC section 2). ``loss_and_grad`` runs their fast twin, ``fast/sketch_rnn.py``
(the same numbers to float rounding), in row blocks of ``threads`` threads on the CPU
(``fast/threads.py``), on the backend's kernel set.

Parameters live in one flat 1-D array ``model.flat`` (``model.params[name]`` are views into it,
in ``model.param_names`` order); ``loss_and_grad`` overwrites one flat gradient array
``model.flat_grad`` (``model.grads[name]`` views), so clip + Adam is one pass over two vectors.
Names: ``enc_fw/<key>``, ``enc_bw/<key>``, ``mu/W``, ``mu/b``, ``sigma/W``, ``sigma/b``,
``dec_init/W``, ``dec_init/b``, ``dec/<key>``, ``out/W``, ``out/b`` (``<key>``: the cell's
parameter names, e.g. ``W_xh``, ``W_hh``, ``b``).

Randomness: a step's eps and dropout masks come from a generator seeded by (seed, step)
(``draw_noise``): host NumPy (``noise="host"``, the numpy backend's default) or the counter-based
generator of ``noise.py`` computed by the backend's kernels where the arrays live
(``noise="device"``, the default on Numba and CuPy). Both are deterministic for a seed and step.
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

from . import sampling
from .backend import get_backend
from .errors import DataError, ModelError
from .fast import sketch_rnn as fast_sketch_rnn
from .fast.cells import fast_cell
from .fast.encoder import encoder_forward
from .fast.threads import MIN_ROWS_PER_THREAD, StepThreads, default_threads
from .hparams import HParams
from .layers.cells import cell_options, get_cell
from .layers.latent import INIT_STD, latent_forward, latent_init
from .layers.linear import glorot_uniform
from .layers.mdn import mdn_params
from .noise import HashNoise
from .optim import kl_weight
from .strokes import make_batch
from .xp import get_xp, to_numpy

__all__ = ["SketchRNN", "DTYPES", "MIN_ROWS_PER_THREAD", "default_threads"]

DTYPES = ("float32", "float64")
ENCODE_CHUNK = 256      # sketches encoded per pass in ``encode``


def _noise_rows(noise: SimpleNamespace, r0: int, r1: int) -> SimpleNamespace:
    """Rows r0:r1 of a step's noise (eps [B, N_z] and the masks [N, B, ...]), contiguous."""
    def rows(a, axis):
        if a is None:
            return None
        xp = get_xp(a)
        return xp.ascontiguousarray(a[r0:r1] if axis == 0 else a[:, r0:r1])

    return SimpleNamespace(eps=rows(noise.eps, 0), keep_enc_fw=rows(noise.keep_enc_fw, 1),
                           keep_enc_bw=rows(noise.keep_enc_bw, 1), keep_dec=rows(noise.keep_dec, 1),
                           in_mask=rows(noise.in_mask, 1), out_mask=rows(noise.out_mask, 1))


class SketchRNN:
    """sketch-rnn (Ha & Eck 2017). See the module docstring and ARCHITECTURE.md "Model API".

    hp: HParams. backend: "numpy" | "numba" | "cupy" (or a Backend). dtype: "float32" or
    "float64". seed: non-negative int, seeds the initialization and (with the step) all noise.
    scale_factor: the training data's normalizing factor (data units per model unit).
    noise: "host" | "device" | None: which generator draws the per-step noise (None: "host" on
    the numpy backend, "device" on numba and cupy; see ``draw_noise``).
    threads: row blocks a step is split into, each run in its own thread (``fast/threads.py``);
    None: ``default_threads`` (the CPU cores; 1 on the GPU), with blocks of at least
    ``MIN_ROWS_PER_THREAD`` rows; an int: exactly that many blocks (at most B).
    """

    def __init__(self, hp: HParams, backend="numpy", dtype="float32", seed: int = 0,
                 scale_factor: float = 1.0, noise: str | None = None, threads: int | None = None):
        if not isinstance(hp, HParams):
            raise ModelError(f"SketchRNN needs an HParams, got {type(hp).__name__}")
        hp.validate()
        self.hp = hp
        self.backend = get_backend(backend)
        self.xp = self.backend.xp
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt is None or dt.name not in DTYPES:
            raise ModelError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.dtype = dt
        if int(seed) != seed or int(seed) < 0:
            raise ModelError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        scale_factor = float(scale_factor)
        if not (np.isfinite(scale_factor) and scale_factor > 0):
            raise ModelError(f"scale_factor must be a positive number, got {scale_factor}")
        self.scale_factor = scale_factor
        if noise is None:
            noise = "host" if self.backend.name == "numpy" else "device"
        if noise not in ("host", "device"):
            raise ModelError(f"noise must be 'host' or 'device', got {noise!r}")
        self.noise = noise
        auto = threads is None
        if threads is None:
            threads = default_threads(self.backend.name)
        if isinstance(threads, bool) or int(threads) != threads or int(threads) < 1:
            raise ModelError(f"threads must be a positive integer, got {threads!r}")
        self.threads = int(threads)
        self._threads = StepThreads(self.threads, auto)
        self._noise_bufs = {}             # host dropout-mask buffers (see ``_noise_buffers``)

        self.dec_cell = get_cell(hp.dec_model, **cell_options(hp.dec_model, hp))
        self.enc_cell = (get_cell(hp.enc_model, **cell_options(hp.enc_model, hp))
                         if hp.conditional else None)
        self.dec_state_size = int(self.dec_cell.state_size(hp.dec_rnn_size))
        self.dec_input_size = 5 + (hp.z_size if hp.conditional else 0)
        self.num_outputs = 6 * hp.num_mixture + 3

        init = self.reference_init()
        self.param_names = list(init)
        host = np.concatenate([a.reshape(-1) for a in init.values()]).astype(self.dtype)
        self._flat = self.xp.asarray(host)
        self._flat_grad = self.xp.zeros_like(self._flat)
        self.params, self.grads = {}, {}
        offset = 0
        for name, a in init.items():
            n = a.size
            self.params[name] = self._flat[offset:offset + n].reshape(a.shape)
            self.grads[name] = self._flat_grad[offset:offset + n].reshape(a.shape)
            offset += n
        self._p_dec = self._group("dec/")
        if hp.conditional:
            self._p_enc_fw = self._group("enc_fw/")
            self._p_enc_bw = self._group("enc_bw/")
            self._p_lat = {k: self.params[k] for k in ("mu/W", "mu/b", "sigma/W", "sigma/b")}

    # ------------------------------------------------------------------ parameters

    @property
    def flat(self):
        """1-D array of every parameter (update it in place; params[name] are views into it)."""
        return self._flat

    @property
    def flat_grad(self):
        """1-D gradient array, overwritten by each ``loss_and_grad`` (grads[name] are views)."""
        return self._flat_grad

    @property
    def num_params(self) -> int:
        return int(self._flat.size)

    @property
    def kernels(self) -> SimpleNamespace:
        return self.backend.kernels

    def _group(self, prefix: str) -> dict:
        """{cell key: view} of the parameters named prefix + key."""
        return {n[len(prefix):]: self.params[n] for n in self.param_names if n.startswith(prefix)}

    def reference_init(self) -> dict:
        """The reference initialization (SPEC 3) as float64 NumPy arrays, in parameter order.

        Drawn from ``np.random.default_rng(seed)`` on the host in that order, so the same seed
        gives the same initial parameters for every dtype and backend."""
        hp = self.hp
        rng = np.random.default_rng(self.seed)
        arrays = {}
        if hp.conditional:
            for direction in ("enc_fw", "enc_bw"):
                for k, v in self.enc_cell.init(rng, 5, hp.enc_rnn_size, np.float64).items():
                    arrays[f"{direction}/{k}"] = v
            arrays.update(latent_init(rng, 2 * hp.enc_rnn_size, hp.z_size, np.float64))
            arrays["dec_init/W"] = INIT_STD * rng.standard_normal((hp.z_size,
                                                                    self.dec_state_size))
            arrays["dec_init/b"] = np.zeros(self.dec_state_size)
        for k, v in self.dec_cell.init(rng, self.dec_input_size, hp.dec_rnn_size,
                                       np.float64).items():
            arrays[f"dec/{k}"] = v
        arrays["out/W"] = glorot_uniform(rng, hp.dec_rnn_size, self.num_outputs, np.float64)
        arrays["out/b"] = np.zeros(self.num_outputs)
        return {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}

    def state_dict(self) -> dict:
        """{name: NumPy copy of the parameter} in ``param_names`` order (model dtype)."""
        return {n: np.array(to_numpy(self.params[n])) for n in self.param_names}

    def load_state_dict(self, d) -> None:
        """Copy parameters in from a {name: array} with exactly this model's names and shapes."""
        missing = [n for n in self.param_names if n not in d]
        extra = sorted(set(d) - set(self.param_names))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing[:8])}" +
                             (f" (+{len(missing) - 8} more)" if len(missing) > 8 else ""))
            if extra:
                parts.append(f"unexpected {', '.join(extra[:8])}" +
                             (f" (+{len(extra) - 8} more)" if len(extra) > 8 else ""))
            raise ModelError("parameters do not fit this model (" + "; ".join(parts) +
                             "): were they saved from a model with other hyperparameters?")
        for n in self.param_names:
            a = np.asarray(to_numpy(d[n]))
            if a.shape != self.params[n].shape:
                raise ModelError(f"parameter {n} has shape {list(a.shape)}, this model needs "
                                 f"{list(self.params[n].shape)}")
        for n in self.param_names:
            self.params[n][...] = self.xp.asarray(np.asarray(to_numpy(d[n]), dtype=self.dtype))

    # ------------------------------------------------------------------ training objective

    def kl_weight(self, step: int) -> float:
        """w_step = w_KL - (w_KL - w_start) * R^step (0.0 for a decoder-only model)."""
        if not self.hp.conditional:
            return 0.0
        return float(kl_weight(self.hp, int(step)))

    def loss_and_grad(self, batch, step: int, training: bool = True, part=None):
        """Losses and gradients of one batch (or of a part of it).

        batch: Batch(strokes [B, N+1, 5] host float32, normalized, S0 first; lengths [B]).
        step:  the training step (seeds the noise with ``seed``; sets the KL weight).
        training: False turns dropout off (eps is still drawn from (seed, step)).
        Returns (losses, grads): losses is a dict of 0-d arrays ``loss``, ``recon``, ``offset``,
        ``pen``, ``kl`` (raw, unfloored; 0 for decoder-only), ``kl_weight``; grads is
        ``model.grads`` (views into ``model.flat_grad``, overwritten by this call).
        part: None, or ``(r0, r1, reduce)``: only rows r0:r1 of the batch, with the noise of the
        whole batch's rows r0:r1; losses and gradients are then that part's share of the whole
        batch's (``fast/sketch_rnn.py``; summed over the parts, the whole batch's), and
        ``reduce(float) -> float`` sums a number over the parts (the KL; ``mpi.py``).
        """
        return self._run(batch, step, training, backward=True, part=part), self.grads

    def evaluate(self, batch, step: int = 0) -> dict:
        """Losses of one batch, forward only, dropout off (same dict as ``loss_and_grad``)."""
        return self._run(batch, step, training=False, backward=False)

    def batch_inputs(self, batch):
        """(x, lengths) of a batch as the model's functions read them: x [N+1, B, 5] time-major
        in the model dtype and lengths [B] int64, both on the model's device."""
        strokes, lengths = self._check_batch(batch)
        x = self.xp.asarray(np.ascontiguousarray(strokes.transpose(1, 0, 2), dtype=self.dtype))
        return x, self.xp.asarray(lengths)

    def draw_noise(self, step: int, B: int, N: int, training: bool = True) -> SimpleNamespace:
        """The noise of step ``step`` for a batch of B sketches padded to N rows, as
        ``loss_and_grad`` draws it (``layers/sketch_rnn.py`` lists the fields): from the
        generator seeded by (seed, step), in this order: eps [B, N_z] (conditional models, also
        when not training), then when training the recurrent-dropout masks of the encoder's
        forward and backward cells [N, B, H_e] (conditional), of the decoder cell [N, B, H_d],
        the input-dropout mask [N, B, 5 (+ N_z)] and the output-dropout mask [N, B, H_d], each
        only when its ``use_*`` switch is on. Masks are 0 or 1/keep, decided by float32
        uniforms, so a float32 and a float64 model see the same masks. The device stream is
        bit-identical on every backend (its masks exactly, eps to rounding)."""
        return self._draw_noise(self._noise_rng(step), int(B), int(N), training)

    def _check_batch(self, batch):
        try:
            strokes, lengths = batch.strokes, batch.lengths
        except AttributeError:
            strokes, lengths = batch
        strokes = np.asarray(to_numpy(strokes))
        lengths = np.asarray(to_numpy(lengths)).astype(np.int64)
        if strokes.ndim != 3 or strokes.shape[2] != 5 or strokes.shape[1] < 2:
            raise DataError(f"a batch is stroke-5 [B, N_max + 1, 5] with N_max >= 1, got shape "
                            f"{list(strokes.shape)}")
        B, N = strokes.shape[0], strokes.shape[1] - 1
        if B < 1:
            raise DataError(f"a batch needs at least one sketch, got an empty batch of shape "
                            f"{list(strokes.shape)}")
        if lengths.shape != (B,):
            raise DataError(f"batch lengths must have shape [{B}], got {list(lengths.shape)}")
        lo = 1 if self.hp.conditional else 0
        if lengths.min() < lo or lengths.max() > N:
            raise DataError(f"batch lengths must lie in {lo}..{N} (N_max), got "
                            f"{int(lengths.min())}..{int(lengths.max())}")
        return strokes, lengths

    def _noise_rng(self, step: int):
        """The generator of one step's noise: host NumPy, or the counter-based ``HashNoise``
        computed by the backend's kernels where the arrays live (see ``noise``)."""
        if self.noise == "host":
            return np.random.default_rng([self.seed, int(step)])
        key = np.random.SeedSequence([self.seed, int(step)]).generate_state(1, np.uint64)[0]
        return HashNoise(self.xp, self.backend.kernels, int(key))

    def _draw_noise(self, rng, B: int, N: int, training: bool) -> SimpleNamespace:
        """eps and dropout masks from ``rng`` in the fixed order of the module docstring."""
        out = self._draw_head_noise(rng, B, N, training)
        self._draw_rows_noise(rng, B, N, training, out)
        return out

    def _mask(self, rng, name, shape, keep):
        """A dropout multiplier array (0 or 1 / keep) of ``shape`` from ``rng``."""
        xp, dt = self.xp, self.dtype
        if xp is not np:
            drop = rng.random(shape, dtype=np.float32) < keep    # float32 uniforms
            return xp.asarray(drop).astype(dt) * dt.type(1.0 / keep)
        # host arrays (either generator): the same numbers drawn into buffers kept from step to
        # step (no fresh 50 MB arrays to fault in), converted in place
        u, drop, out = self._noise_buffers(name, shape)
        rng.random(dtype=np.float32, out=u)
        np.less(u, keep, out=drop)
        return np.multiply(drop, dt.type(1.0 / keep), out=out)

    def _draw_head_noise(self, rng, B: int, N: int, training: bool) -> SimpleNamespace:
        """The first part of ``_draw_noise``: eps and the encoder's masks (what the encoder and
        the latent layer read); the decoder's masks are left None."""
        hp, xp, dt = self.hp, self.xp, self.dtype
        mask = functools.partial(self._mask, rng)
        out = SimpleNamespace(eps=None, keep_enc_fw=None, keep_enc_bw=None, keep_dec=None,
                              in_mask=None, out_mask=None)
        if hp.conditional:
            out.eps = xp.asarray(rng.standard_normal((B, hp.z_size), dtype=np.float64)
                                 .astype(dt))
        if not training:
            return out
        if hp.use_recurrent_dropout and hp.conditional:
            out.keep_enc_fw = mask("enc_fw", (N, B, hp.enc_rnn_size), hp.recurrent_dropout_prob)
            out.keep_enc_bw = mask("enc_bw", (N, B, hp.enc_rnn_size), hp.recurrent_dropout_prob)
        return out

    def _draw_rows_noise(self, rng, B: int, N: int, training: bool, out: SimpleNamespace):
        """The rest of ``_draw_noise`` after ``_draw_head_noise`` (same ``rng``, continuing its
        stream): the decoder's masks, written into ``out``."""
        hp = self.hp
        if not training:
            return out
        mask = functools.partial(self._mask, rng)
        if hp.use_recurrent_dropout:
            out.keep_dec = mask("dec", (N, B, hp.dec_rnn_size), hp.recurrent_dropout_prob)
        if hp.use_input_dropout:
            out.in_mask = mask("in", (N, B, self.dec_input_size), hp.input_dropout_prob)
        if hp.use_output_dropout:
            out.out_mask = mask("out", (N, B, hp.dec_rnn_size), hp.output_dropout_prob)
        return out

    def _noise_buffers(self, name: str, shape) -> tuple:
        """(uniforms float32, bool, mask of the model dtype) host buffers of one mask, reused
        while the shape stays the same (a step's masks live until the next step draws)."""
        bufs = self._noise_bufs.get(name)
        if bufs is None or bufs[0].shape != tuple(shape):
            u = np.empty(shape, dtype=np.float32)
            out = u if self.dtype == np.float32 else np.empty(shape, dtype=self.dtype)
            bufs = (u, np.empty(shape, dtype=bool), out)
            self._noise_bufs[name] = bufs
        return bufs

    def _row_parts(self, B: int) -> list:
        """The row blocks [(r0, r1), ...] a step of B rows is split into."""
        return self._threads.blocks(B)

    def _run(self, batch, step, training, backward, part=None):
        xp = self.xp
        strokes, lengths = self._check_batch(batch)
        B, N = strokes.shape[0], strokes.shape[1] - 1
        rng = self._noise_rng(step)
        noise = self._draw_head_noise(rng, B, N, training)
        wait_noise, batch_rows, reduce = None, None, None
        if part is not None:
            # rows r0:r1 of the batch, with their rows of the whole batch's noise
            r0, r1, reduce = part
            if not 0 <= r0 < r1 <= B:
                raise ModelError(f"part rows {r0}:{r1} do not lie in a batch of {B}")
            self._draw_rows_noise(rng, B, N, training, noise)
            noise = _noise_rows(noise, r0, r1)
            strokes, lengths, batch_rows = strokes[r0:r1], lengths[r0:r1], B
        elif len(self._threads.blocks(B)) > 1 and xp is np:
            # the decoder's masks continue rng's stream in a thread of their own while the
            # encoder runs (the same numbers as drawn here; the draw is serial work otherwise)
            wait_noise = self._threads.beside(self._draw_rows_noise, rng, B, N, training, noise)
        else:
            self._draw_rows_noise(rng, B, N, training, noise)
        # the host batch, time-major [N+1, B, 5], uploaded once
        x = xp.asarray(np.ascontiguousarray(strokes.transpose(1, 0, 2), dtype=self.dtype))
        losses, cache = fast_sketch_rnn.sketch_rnn_forward(
            self.params, x, xp.asarray(lengths), noise, self.hp, self.kl_weight(step),
            self.kernels, host_lengths=lengths, threads=self._threads, wait_noise=wait_noise,
            backward=backward, batch_rows=batch_rows, reduce=reduce)
        if backward:
            for name, g in fast_sketch_rnn.sketch_rnn_backward(cache).items():
                self.grads[name][...] = g
        return losses

    # ------------------------------------------------------------------ inference hooks

    def _require_conditional(self, what: str):
        if not self.hp.conditional:
            raise ModelError(f"{what} needs a conditional model (with an encoder); this one is "
                             f"decoder-only (hp.conditional = False)")

    def _z_rows(self, z, n: int):
        """z as an xp [n, N_z] array of the model dtype (None: the prior mean, zeros)."""
        xp, Nz = self.xp, self.hp.z_size
        if z is None:
            return xp.zeros((n, Nz), dtype=self.dtype)
        z = xp.asarray(z, dtype=self.dtype)
        if z.ndim == 1:
            z = z[None, :]
        if z.ndim != 2 or z.shape[1] != Nz or z.shape[0] not in (1, n):
            raise ModelError(f"z must have shape [{n}, {Nz}] or [{Nz}], got {list(z.shape)}")
        if z.shape[0] != n:
            z = xp.broadcast_to(z, (n, Nz))
        return z

    def encode(self, sketches):
        """Encode stroke-3 sketches (data units). Returns NumPy float64 (mu, sigma) [n, N_z],
        sigma = exp(s / 2). Deterministic (no noise, no dropout)."""
        self._require_conditional("encode")
        sketches = [np.asarray(to_numpy(s)) for s in sketches]
        for i, s in enumerate(sketches):
            if s.ndim != 2 or s.shape[1] != 3 or len(s) < 1:
                raise DataError(f"sketch {i} must be a non-empty stroke-3 array [L, 3], got "
                                f"shape {list(s.shape)}")
        xp, dt, hp = self.xp, self.dtype, self.hp
        mus, sigmas = [], []
        for start in range(0, len(sketches), ENCODE_CHUNK):
            chunk = sketches[start:start + ENCODE_CHUNK]
            batch = make_batch(chunk, max_len=max(len(s) for s in chunk),
                               scale_factor=self.scale_factor)
            x = xp.asarray(np.ascontiguousarray(batch.strokes[:, 1:].transpose(1, 0, 2),
                                                dtype=dt))
            h, _ = encoder_forward(x, xp.asarray(batch.lengths), self._p_enc_fw, self._p_enc_bw,
                                   fast_cell(self.enc_cell), hp.enc_rnn_size,
                                   kernels=self.kernels, host_lengths=batch.lengths)
            mu, s, _, _ = latent_forward(h, self._p_lat, xp.zeros((len(chunk), hp.z_size), dt))
            mus.append(to_numpy(mu).astype(np.float64))
            sigmas.append(np.exp(0.5 * to_numpy(s).astype(np.float64)))
        if not mus:
            empty = np.zeros((0, hp.z_size))
            return empty, empty.copy()
        return np.concatenate(mus), np.concatenate(sigmas)

    def initial_state(self, z, n: int):
        """Decoder start state [n, S]: tanh(z W_init + b_init), z [n, N_z] or [N_z] (None: the
        prior mean 0); zeros for a decoder-only model (which takes z = None)."""
        xp, n = self.xp, int(n)
        if not self.hp.conditional:
            if z is not None:
                raise ModelError("this is a decoder-only model: it takes no latent vector z")
            return xp.zeros((n, self.dec_state_size), dtype=self.dtype)
        return xp.tanh(self._z_rows(z, n) @ self.params["dec_init/W"] + self.params["dec_init/b"])

    def decoder_step(self, x_t, z, state):
        """One decoder step, no dropout. x_t [n, 5] normalized stroke-5 input; z [n, N_z] (or
        [N_z]; None: zeros / decoder-only); state [n, S]. Returns y [n, 6M + 3] raw outputs
        (SPEC 2 layout) and the new state [n, S]."""
        xp, P = self.xp, self.params
        x_t = xp.asarray(x_t, dtype=self.dtype)
        n = x_t.shape[0]
        if self.hp.conditional:
            x_t = xp.concatenate([x_t, self._z_rows(z, n)], axis=1)
        elif z is not None:
            raise ModelError("this is a decoder-only model: it takes no latent vector z")
        h, state = self.dec_cell.step(x_t, state, self._p_dec, kernels=self.kernels)
        return h @ P["out/W"] + P["out/b"], state

    def mixture(self, sketch5, z=None) -> dict:
        """Next-row distributions along a sketch (CONTRACT): sketch5 [L, 5] stroke-5 in data units
        without S0 (L may be 0). Runs the decoder over S0 and the L rows from z's initial state
        (None: z = 0 for a conditional model; zeros state for decoder-only). Returns float64 NumPy
        pi, mu_x, mu_y, sigma_x, sigma_y, rho [L + 1, M] (normalized offsets) and pen [L + 1, 3].
        """
        xp, dt, P = self.xp, self.dtype, self.params
        s5 = np.asarray(to_numpy(sketch5), dtype=np.float64)
        if s5.size == 0:
            s5 = s5.reshape(0, 5)
        if s5.ndim != 2 or s5.shape[1] != 5:
            raise DataError(f"mixture needs a stroke-5 sketch [L, 5], got shape {list(s5.shape)}")
        inputs = np.zeros((len(s5) + 1, 1, 5))
        inputs[0, 0, 2] = 1.0                                            # S0
        inputs[1:, 0] = s5
        inputs[1:, 0, :2] /= self.scale_factor
        x = xp.asarray(inputs.astype(dt))
        T = x.shape[0]
        state0 = self.initial_state(z if self.hp.conditional else None, 1)
        if self.hp.conditional:
            x = xp.concatenate([x, xp.broadcast_to(self._z_rows(z, 1)[None],
                                                   (T, 1, self.hp.z_size))], axis=2)
        hs, _, _ = self.dec_cell.forward(x, state0, self._p_dec, kernels=self.kernels)
        y = hs.reshape(T, self.hp.dec_rnn_size) @ P["out/W"] + P["out/b"]
        return {k: to_numpy(v).astype(np.float64) for k, v in mdn_params(y).items()}

    def sample(self, n: int = 1, temperature: float = 1.0, z=None, seed: int = 0, **kw):
        """Sample sketches (list of stroke-3 in data units); see ``minisketch.sampling.sample``."""
        return sampling.sample(self, n=n, temperature=temperature, z=z, seed=seed, **kw)

    def complete(self, prefix_sketch, n: int = 4, temperature: float = 0.8, seed: int = 0,
                 **kw):
        """Finish an incomplete stroke-3 sketch (data units) n ways: a list of stroke-3 that each
        begin with the prefix; see ``minisketch.sampling.complete``."""
        return sampling.complete(self, prefix_sketch, n=n, temperature=temperature, seed=seed, **kw)

    def __repr__(self) -> str:
        hp = self.hp
        kind = (f"{hp.enc_model}/{hp.dec_model} conditional" if hp.conditional
                else f"{hp.dec_model} decoder-only")
        return (f"SketchRNN({kind}, {self.num_params:,} parameters, backend "
                f"{self.backend.name}, {self.dtype.name})")
