"""SketchRNN: the whole model (SPEC section 2) wired from the reference layers.

Conditional model (``hp.conditional``, the default):

    encoder   h = [h_fw, h_bw] over each sketch's rows 1..L           layers/encoder.py
    latent    mu, s = h W + b;  z = mu + exp(s/2) eps;  KL            layers/latent.py
    init      state0 = tanh(z @ W_init + b_init)  (the cell's whole state vector)
    decoder   inputs concat(S_{i-1}, z), i = 1..N_max; one cell step each
    output    y_i = h_i @ W_out + b_out  [6M + 3]                        layers/mdn.py
    loss      L_R + w_step * max(KL, kl_tolerance),
              w_step = kl_weight - (kl_weight - kl_weight_start) * kl_decay_rate^step

Decoder-only model (``hp.conditional = False``): no encoder and no z; decoder inputs S_{i-1}
(5 values); zero initial state; loss = L_R (no KL term).

Parameters live in one flat 1-D array ``model.flat`` (``model.params[name]`` are views into it,
in ``model.param_names`` order); ``loss_and_grad`` overwrites one flat gradient array
``model.flat_grad`` (``model.grads[name]`` views). Names: ``enc_fw/<key>``, ``enc_bw/<key>``,
``mu/W``, ``mu/b``, ``sigma/W``, ``sigma/b``, ``dec_init/W``, ``dec_init/b``, ``dec/<key>``,
``out/W``, ``out/b`` (``<key>`` the cell's parameter names, e.g. ``W_xh``, ``W_hh``, ``b``).

Randomness: ``loss_and_grad(batch, step)`` and ``evaluate`` draw everything from a generator
seeded by ``(seed, step)``, in a fixed order. With ``noise="host"`` (the default on NumPy) that
is ``np.random.default_rng([seed, step])`` on the host, uploaded once; with ``noise="device"``
(the default on Numba and CuPy) it is the counter-based generator of ``noise.py``, whose uniforms
are computed in place by the backend's kernels: on a GPU the masks never cross the bus (tens of
millions of uniforms per reference step), and Numba's compiled hash draws them about three times
faster than NumPy's PCG64 (its step spent ~0.1 s of CPU a step on noise before). Both are
deterministic for a seed and step. The two are different streams; the device stream is
bit-identical on every backend (its dropout masks exactly, eps to rounding), so Numba and CuPy
runs draw the same masks, and ``noise="device"`` on NumPy reproduces them. The order:
eps [B, N_z] (conditional models, always), and when training: recurrent-dropout masks of the
encoder's forward and backward cells [N, B, H_e] (conditional), of the decoder cell [N, B, H_d],
the input-dropout mask [N, B, 5 (+ N_z)] and the output-dropout mask [N, B, H_d] (each only when
its ``use_*`` switch is on). Masks are 0 or 1/keep, with keep-or-drop decided by float32 uniforms,
so a float32 and a float64 model see the same masks.

Threads: on the CPU backends one step runs in ``threads`` Python threads (by default one per
core) with BLAS on one thread each; the Numba kernels, NumPy's loops and BLAS release the GIL.
The encoder runs on the whole batch with its two directions in two threads (they are independent
until their final states are joined), then the latent layer and the KL on the whole batch; the
decoder and the loss are split into row blocks, each run through its forward and backward in its
own thread (every row is independent until the losses and gradients are summed); the backward
joins the blocks' dz and runs the latent layer and the two encoder directions the same way. The
directions keep the encoder's per-step products at the whole batch's 100 rows instead of two
50-row halves (small products run well below BLAS's speed). The noise is drawn for the whole
batch and sliced, so a split step has the same masks and eps as an unsplit one; its losses and
gradients are sums of the blocks', equal to the unsplit step's to float rounding. The split is
fixed by ``threads`` and the batch size, so a run is deterministic on a given machine;
``threads=1`` (or ``MINISKETCH_THREADS=1``) gives exactly the unsplit numbers.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np

from .backend import get_backend, to_numpy
from .errors import DataError, ModelError
from .hparams import HParams
from .layers.cells import cell_options, get_cell
from .layers.encoder import encoder_backward, encoder_forward
from .layers.latent import (INIT_STD, kl_backward, kl_floor_backward, kl_floor_forward,
                            kl_forward, latent_backward, latent_forward, latent_init)
from .layers.linear import glorot_uniform
from .layers.mdn import mdn_params
from .noise import HashNoise
from .optim import kl_weight

DTYPES = ("float32", "float64")
ENCODE_CHUNK = 256      # sketches encoded per pass in ``encode``
MIN_ROWS_PER_THREAD = 16   # automatic threads: no row block smaller than this


def default_threads(backend_name: str) -> int:
    """Row blocks per step when ``threads`` is not given: ``MINISKETCH_THREADS`` if set; else, on
    the CPU backends, the cores this process may use when NumPy's BLAS runs on one thread (as
    ``python -m minisketch.train`` sets it), and 1 when BLAS has threads of its own (then the
    products are already parallel, and switching BLAS to one thread for every split step was
    measured slower: 5.7 s against 2.8 s per paper-size step on 2 cores) or cannot be queried;
    1 on the GPU."""
    if backend_name == "cupy":
        return 1
    env = os.environ.get("MINISKETCH_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ModelError(f"MINISKETCH_THREADS must be a positive integer, got {env!r}")
        return n
    from .cpu import get_blas_threads
    if get_blas_threads() != 1:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # not Linux
        return max(1, os.cpu_count() or 1)


class SketchRNN:
    """sketch-rnn (Ha & Eck 2017). See the module docstring and ARCHITECTURE.md "Model API".

    hp: HParams. backend: "numpy" | "numba" | "cupy" (or a Backend). dtype: "float32" or
    "float64". seed: non-negative int, seeds the initialization and (with the step) all noise.
    scale_factor: the training data's normalizing factor (data units per model unit).
    noise: "host" | "device" | None: which generator draws the per-step noise (None: "host" on
    the numpy backend, "device" on numba and cupy; see the module docstring).
    threads: row blocks a step is split into, each run in its own thread (see "Threads" in the
    module docstring); None: ``default_threads`` (the CPU cores; 1 on the GPU), with blocks of at
    least ``MIN_ROWS_PER_THREAD`` rows; an int: exactly that many blocks (at most B).
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
        self._auto_threads = threads is None
        if threads is None:
            threads = default_threads(self.backend.name)
        if isinstance(threads, bool) or int(threads) != threads or int(threads) < 1:
            raise ModelError(f"threads must be a positive integer, got {threads!r}")
        self.threads = int(threads)
        self._pool = None                 # worker threads, started on the first split step
        self._noise_pool = None           # one more thread for the decoder's noise
        self._pool_size = 0
        self._extra_flat_grads = []       # gradient buffers of row blocks 2, 3, ...
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

    def loss_and_grad(self, batch, step: int, training: bool = True):
        """Losses and gradients of one batch.

        batch: Batch(strokes [B, N+1, 5] host float32, normalized, S0 first; lengths [B]).
        step:  the training step (seeds the noise with ``seed``; sets the KL weight).
        training: False turns dropout off (eps is still drawn from (seed, step)).
        Returns (losses, grads): losses is a dict of 0-d arrays ``loss``, ``recon``, ``offset``,
        ``pen``, ``kl`` (raw, unfloored; 0 for decoder-only), ``kl_weight``; grads is
        ``model.grads`` (views into ``model.flat_grad``, overwritten by this call).
        """
        return self._run(batch, step, training, backward=True), self.grads

    def evaluate(self, batch, step: int = 0) -> dict:
        """Losses of one batch, forward only, dropout off (same dict as ``loss_and_grad``)."""
        return self._run(batch, step, training=False, backward=False)

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
        """The row blocks [(r0, r1), ...] one step is split into (see "Threads" in the module
        docstring): ``threads`` blocks of near-equal size, fewer when the batch is small."""
        n = self.threads
        if self._auto_threads:
            n = min(n, B // MIN_ROWS_PER_THREAD)
        n = max(1, min(n, B))
        edges = [B * k // n for k in range(n + 1)]
        return list(zip(edges[:-1], edges[1:]))

    def _map(self, fn, jobs):
        """fn(job) for every job: in this thread when there is one, else one worker thread per
        job (BLAS on one thread inside, restored after). Results in job order."""
        if len(jobs) == 1:
            return [fn(jobs[0])]
        from .cpu import blas_threads
        if self._pool is None or self._pool_size < len(jobs):
            if self._pool is not None:
                self._pool.shutdown()
            self._pool_size = len(jobs)
            self._pool = ThreadPoolExecutor(max_workers=len(jobs),
                                            thread_name_prefix="minisketch")
        with blas_threads(1):
            futures = [self._pool.submit(fn, job) for job in jobs]
            return [f.result() for f in futures]

    def _noise_worker(self) -> ThreadPoolExecutor:
        """One thread for drawing noise beside the step's workers (started on first use)."""
        if self._noise_pool is None:
            self._noise_pool = ThreadPoolExecutor(max_workers=1,
                                                  thread_name_prefix="minisketch-noise")
        return self._noise_pool

    def _run(self, batch, step, training, backward):
        hp, xp, dt = self.hp, self.xp, self.dtype
        strokes, lengths = self._check_batch(batch)
        B, N = strokes.shape[0], strokes.shape[1] - 1
        rng = self._noise_rng(step)
        noise = self._draw_head_noise(rng, B, N, training)
        parts = self._row_parts(B)
        if len(parts) > 1 and xp is np:
            # the decoder's masks continue rng's stream in a thread of their own while the
            # encoder runs (the same numbers as drawn here; the draw is serial work otherwise)
            rows_noise = self._noise_worker().submit(self._draw_rows_noise, rng, B, N, training,
                                                     noise)
        else:
            self._draw_rows_noise(rng, B, N, training, noise)
            rows_noise = None
        # the host batch, time-major [N+1, B, 5], uploaded once
        x = xp.asarray(np.ascontiguousarray(strokes.transpose(1, 0, 2), dtype=dt))
        w_step = self.kl_weight(step)
        head = self._forward_head(x, lengths, noise, B, len(parts) > 1)
        if rows_noise is not None:
            rows_noise.result()
        jobs = [self._rows_job(x, noise, head, r0, r1, B, N, backward, len(parts) > 1)
                for r0, r1 in parts]
        fwd = self._map(self._forward_rows, jobs)
        # the parts' sums (one part: exactly the whole batch's numbers)
        offset_sum, pen_sum = fwd[0].offset_sum, fwd[0].pen_sum
        for f in fwd[1:]:
            offset_sum = offset_sum + f.offset_sum
            pen_sum = pen_sum + f.pen_sum
        scale = 1.0 / (B * N)
        offset = offset_sum * scale
        pen = pen_sum * scale
        recon = offset + pen
        kl = head.kl
        if hp.conditional:
            kl_term, floor_cache = kl_floor_forward(kl, w_step, hp.kl_tolerance)
        else:
            kl_term = kl
        losses = {name: xp.asarray(v, dtype=dt) for name, v in (
            ("loss", recon + kl_term), ("recon", recon), ("offset", offset), ("pen", pen),
            ("kl", kl), ("kl_weight", w_step))}
        if not backward:
            return losses
        for job, f, grads in zip(jobs, fwd, self._part_grads(len(parts))):
            job.cache, job.grads = f.cache, grads
        self._map(self._backward_rows, jobs)
        for flat in self._extra_flat_grads[:len(parts) - 1]:
            self._flat_grad += flat
        if hp.conditional:
            # forward was: loss += w_step * max(KL, kl_tolerance)
            dkl = kl_floor_backward(1.0, floor_cache)
            dz = jobs[0].dz if len(jobs) == 1 else xp.concatenate([j.dz for j in jobs], axis=0)
            # written after the blocks' sum, so it overwrites whatever the extra buffers held
            self._backward_head(dz, dkl, head, len(parts) > 1)
        return losses

    def _directions(self, split: bool):
        """How the encoder runs its two directions: in two threads when the step is split."""
        if not split:
            return None
        return lambda thunks: self._map(lambda f: f(), thunks)

    def _forward_head(self, x, lengths, noise, B: int, split: bool):
        """The whole batch's encoder, latent sample, KL and decoder initial state (the part of a
        step before the decoder). Returns a namespace with z, state0, kl and the caches."""
        hp, xp, dt, K, P = self.hp, self.xp, self.dtype, self.backend.kernels, self.params
        head = SimpleNamespace()
        if not hp.conditional:
            head.kl = xp.zeros((), dtype=dt)
            head.z = None
            head.state0 = xp.zeros((B, self.dec_state_size), dtype=dt)
            return head
        h_enc, head.enc = encoder_forward(x[1:], xp.asarray(lengths), self._p_enc_fw,
                                          self._p_enc_bw, self.enc_cell, hp.enc_rnn_size,
                                          noise.keep_enc_fw, noise.keep_enc_bw, K,
                                          host_lengths=lengths,
                                          parallel=self._directions(split))
        mu, s, head.z, head.lat = latent_forward(h_enc, self._p_lat, noise.eps)
        head.kl, head.kl_cache = kl_forward(mu, s)
        head.state0 = xp.tanh(head.z @ P["dec_init/W"] + P["dec_init/b"])
        return head

    def _backward_head(self, dz, dkl, head, split: bool):
        """Backward of ``_forward_head`` given dz [B, N_z] from the decoder blocks: writes the
        latent layer's and the encoder's gradients into ``self.grads``."""
        G = self.grads
        dmu_kl, ds_kl = kl_backward(dkl, head.kl_cache)
        dh_enc, g_lat = latent_backward(dz, dmu_kl, ds_kl, head.lat)
        for k, g in g_lat.items():
            G[k][...] = g
        _, g_fw, g_bw = encoder_backward(dh_enc, head.enc, need_dx=False,
                                         parallel=self._directions(split))
        for k, g in g_fw.items():
            G["enc_fw/" + k][...] = g
        for k, g in g_bw.items():
            G["enc_bw/" + k][...] = g

    def _part_grads(self, n: int) -> list:
        """Gradient dicts for n row blocks: ``self.grads`` first, then views of extra flat
        buffers (added into ``flat_grad`` after the backward)."""
        while len(self._extra_flat_grads) < n - 1:
            self._extra_flat_grads.append(self.xp.zeros_like(self._flat))
        out = [self.grads]
        for flat in self._extra_flat_grads[:n - 1]:
            views, offset = {}, 0
            for name in self.param_names:
                a = self.params[name]
                views[name] = flat[offset:offset + a.size].reshape(a.shape)
                offset += a.size
            out.append(views)
        return out

    def _rows_job(self, x, noise, head, r0, r1, B, N, backward, split):
        """The inputs of the decoder's rows r0:r1: x [N+1, B', 5], z and state0 [B', ...], the
        noise rows (views of the whole batch's arrays when the batch is split, made contiguous
        by ``_job_rows`` in the block's own thread; the whole arrays otherwise)."""

        def rows(a, axis):
            if a is None or not split:
                return a
            return a[r0:r1] if axis == 0 else a[:, r0:r1]

        return SimpleNamespace(
            x=rows(x, 1), B=B, N=N, backward=backward, z=rows(head.z, 0),
            state0=rows(head.state0, 0), keep_dec=rows(noise.keep_dec, 1),
            in_mask=rows(noise.in_mask, 1), out_mask=rows(noise.out_mask, 1))

    def _job_rows(self, job):
        """Copy a job's row views to contiguous arrays (the compiled kernels vectorize only over
        contiguous rows), in the thread that runs the job: the masks' copies are 25 MB each at
        the reference size, serial work when the main thread made them."""
        xp = self.xp
        for name in ("x", "z", "state0", "keep_dec", "in_mask", "out_mask"):
            a = getattr(job, name)
            if a is not None:
                setattr(job, name, xp.ascontiguousarray(a))

    def _forward_rows(self, job):
        """Decoder and loss of one row block. Returns its offset and pen loss sums (scaled by
        the whole batch's 1 / (B N) only later) and the cache."""
        hp, xp, K = self.hp, self.xp, self.backend.kernels
        P = self.params
        self._job_rows(job)
        x, N = job.x, job.N
        Bp = x.shape[1]
        Hd, Nz = hp.dec_rnn_size, hp.z_size
        c = SimpleNamespace(z=job.z, state0=job.state0)
        # decoder inputs [S_{i-1}, z]: z is the same at every step, so the cell projects it once
        # (x_const) instead of repeating it N times, unless input dropout masks it per step
        c.z_const = hp.conditional and job.in_mask is None
        if c.z_const:
            dec_in, x_const = x[:-1], c.z
        else:
            dec_in, x_const = x[:-1], None
            if hp.conditional:
                dec_in = xp.concatenate([dec_in, xp.broadcast_to(c.z[None], (N, Bp, Nz))],
                                        axis=2)
            if job.in_mask is not None:
                dec_in = dec_in * job.in_mask
        hs, _, c.dec = self.dec_cell.forward(dec_in, c.state0, self._p_dec,
                                             keep=job.keep_dec, mask=None, kernels=K,
                                             x_const=x_const)
        hs2 = hs.reshape(N * Bp, Hd)
        if job.out_mask is not None:
            hs2 = hs2 * job.out_mask.reshape(N * Bp, Hd)
        c.hs2 = hs2
        y = K.matmul(hs2, P["out/W"])                                   # [N*B', 6M+3]
        y += P["out/b"]
        target = x[1:].reshape(N * Bp, 5)                                # rows 1..N_max
        if job.backward:
            offset_sum, pen_sum, c.dy = K.mdn_loss_and_grad(y, target, 1.0 / (job.B * N))
        else:
            offset_sum, pen_sum = K.mdn_loss(y, target)
        return SimpleNamespace(offset_sum=offset_sum, pen_sum=pen_sum, cache=c)

    def _backward_rows(self, job):
        """Backward of one row block's decoder and loss: overwrites the decoder's gradient views
        in ``job.grads`` and sets ``job.dz`` (the block's gradient w.r.t. z; conditional)."""
        hp, P, G = self.hp, self.params, job.grads
        c, N = job.cache, job.N
        Bp = job.x.shape[1]
        Hd = hp.dec_rnn_size
        # forward was: y = hs2 @ W_out + b_out
        K = self.backend.kernels
        G["out/W"][...] = K.matmul(c.hs2.T, c.dy)
        G["out/b"][...] = c.dy.sum(axis=0)
        dhs2 = K.matmul(c.dy, P["out/W"].T)
        if job.out_mask is not None:
            dhs2 *= job.out_mask.reshape(N * Bp, Hd)
        # the gradient w.r.t. the decoder's per-step input is needed only for its z part when z
        # goes in at every step (input dropout); the strokes are data
        need_dx = hp.conditional and not c.z_const
        ddec_in, dstate0, g_dec = self.dec_cell.backward(dhs2.reshape(N, Bp, Hd), None, c.dec,
                                                         need_dx=need_dx)
        for k, g in g_dec.items():
            G["dec/" + k][...] = g
        if not hp.conditional:
            return
        if c.z_const:
            # forward was: the cell's input [S_{i-1}, z] with z given once (x_const)
            dz = ddec_in[1]
        else:
            if job.in_mask is not None:
                ddec_in = ddec_in * job.in_mask
            # forward was: dec_in = [S_{i-1}, z] for every step
            dz = ddec_in[:, :, 5:].sum(axis=0)
        # forward was: state0 = tanh(z @ W_init + b_init)
        dpre = dstate0 * (1.0 - c.state0 * c.state0)
        G["dec_init/W"][...] = c.z.T @ dpre
        G["dec_init/b"][...] = dpre.sum(axis=0)
        dz += dpre @ P["dec_init/W"].T
        job.dz = dz

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
        from .strokes import make_batch
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
                                   self.enc_cell, hp.enc_rnn_size, kernels=self.kernels,
                                   host_lengths=batch.lengths)
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
        from .sampling import sample
        return sample(self, n=n, temperature=temperature, z=z, seed=seed, **kw)

    def complete(self, prefix_sketch, n: int = 4, temperature: float = 0.8, seed: int = 0,
                 **kw):
        """Finish an incomplete stroke-3 sketch (data units) n ways: a list of stroke-3 that each
        begin with the prefix; see ``minisketch.sampling.complete``."""
        from .sampling import complete
        return complete(self, prefix_sketch, n=n, temperature=temperature, seed=seed, **kw)

    def __repr__(self) -> str:
        hp = self.hp
        kind = (f"{hp.enc_model}/{hp.dec_model} conditional" if hp.conditional
                else f"{hp.dec_model} decoder-only")
        return (f"SketchRNN({kind}, {self.num_params:,} parameters, backend "
                f"{self.backend.name}, {self.dtype.name})")
