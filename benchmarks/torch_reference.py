"""The minisketch training step written in PyTorch, for side-by-side CPU timings (never a
dependency of minisketch; run only where torch is installed).

    python benchmarks/torch_reference.py --dec lstm|layer_norm|hyper --batch N --nmax T \
        [--steps K] [--warmup W] [--dtype float32] [--threads N] [--fused] [--json] [--check]

One step, as in benchmarks/bench_step.py: forward on the same random sketch-like batch
(``bench_step.random_batch``), the loss of SPEC 2 (stable log-sum-exp mixture loss + pen
cross-entropy over all B x N_max rows, KL with its floor and the annealed weight), autograd
backward, element-wise gradient clipping (``clip_grad_value_``) and ``torch.optim.Adam`` with the
decayed learning rate. Same sizes (reference configuration: LSTM encoder 256 per direction,
decoder 512, N_z 128, M 20, HyperLSTM 256 / 32), same initial parameters (copied from a
minisketch model with the same seed) and the same noise (eps and the recurrent-dropout masks,
drawn by minisketch's own ``SketchRNN._draw_noise`` for each step), so the step computes the
same function as minisketch's ``loss_and_grad`` + ``clip_adam_update``; ``--check`` verifies
that on a small float64 model (loss and every gradient tensor) before anything is timed.

Cells (SPEC 3), written step by step in torch, as a PyTorch user writes a custom RNN:
  * LSTM: per step ``addmm`` of the recurrent product onto the precomputed input projection,
    then sigmoid/tanh gates, recurrent dropout on the candidate, forget bias +1;
  * layer-norm LSTM: the four gate blocks normalized with ``F.layer_norm`` (eps 1e-3, per-unit
    gamma/beta), LN on c;
  * HyperLSTM: the layer-norm hyper cell on [x, h], embeddings z_w, z_b and the eight per-unit
    scales / four biases as batched matmuls, then the layer-norm main cell.
Each loop walks the precomputed input projection with ``unbind`` (indexing ``xw[t]`` instead makes
autograd build one full-size zero gradient per step, quadratic in N_max). The encoder runs both
directions over all N_max steps (the backward direction on each sketch's
rows reversed within its length) and reads the final states at step L - 1, which gives the same
values and gradients as minisketch's masked encoder.

``--fused`` (LSTM cells only): ``torch.nn.LSTM`` (oneDNN/MKL fused kernels) for the encoder
(bidirectional, ``pack_padded_sequence`` over the real rows) and the decoder, with the weights
mapped to torch's gate order and the forget bias +1 folded into ``bias_ih``. nn.LSTM has no
recurrent dropout on the candidate, so it computes minisketch's function only with
``--recurrent-dropout 0`` (which this option requires); compare it against bench_step.py
``--recurrent-dropout 0``.

Reports median / min / max ms over the timed steps, the median process CPU time per step, the
first step, peak RSS (VmHWM), FLOPs
(``bench_step.step_flops``) and a torch sgemm peak on the same threads; ``--json`` prints one
line with at least ``median_ms``, ``backend`` ("torch"), ``dec``, ``batch``, ``nmax``.
"""
from __future__ import annotations

import os

# NumPy only builds the data and the initial parameters here: keep its BLAS to one thread, so its
# threads do not compete with torch's (two thread pools in one process slow both down).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_step  # noqa: E402  (same folder: batch, FLOP count, memory, summaries)

LN_EPS = 1e-3
FORGET_BIAS = 1.0
LOG_2PI = math.log(2.0 * math.pi)
LOG_LOSS_EPS = math.log(1e-6)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dec", choices=("lstm", "layer_norm", "hyper"), required=True)
    p.add_argument("--enc", choices=("lstm", "layer_norm", "hyper"), default="lstm")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--nmax", type=int, required=True)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--recurrent-dropout", type=int, choices=(0, 1), default=1)
    p.add_argument("--fused", action="store_true",
                   help="torch.nn.LSTM for encoder and decoder (needs --recurrent-dropout 0)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--no-peak", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="first compare loss and gradients with minisketch (small, float64)")
    p.add_argument("--malloc-keep", action="store_true",
                   help="keep freed memory in the process (as bench_step.py --malloc-keep)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.fused and (args.recurrent_dropout or args.dec != "lstm" or args.enc != "lstm"):
        p.error("--fused is nn.LSTM: it needs --dec lstm --enc lstm --recurrent-dropout 0")
    return args


def import_torch():
    try:
        import torch
    except ImportError:
        print("error: torch is not installed; this optional benchmark needs PyTorch "
              "(pip install torch)", file=sys.stderr)
        raise SystemExit(1)
    return torch


torch = None
F = None


# ---------------------------------------------------------------------------------------------
# Cells, step by step (SPEC 3). p: dict of tensors (minisketch names); state tuples.

def lstm_seq(p, x, c, h, keep):
    """x [T, B, D] -> hs [T, B, H] (stacked), LSTM with recurrent dropout on the candidate."""
    T, B, D = x.shape
    xw = torch.addmm(p["b"], x.reshape(T * B, D), p["W_xh"]).view(T, B, -1)
    hs = []
    for t, xw_t in enumerate(xw.unbind(0)):
        a = torch.addmm(xw_t, h, p["W_hh"])
        i, j, f, o = a.chunk(4, 1)
        g = torch.tanh(j)
        if keep is not None:
            g = g * keep[t]
        c = torch.sigmoid(f + FORGET_BIAS) * c + torch.sigmoid(i) * g
        h = torch.tanh(c) * torch.sigmoid(o)
        hs.append(h)
    return torch.stack(hs), c, h


def ln_gates(a, gamma, beta, H):
    """Layer norm over each of the four gate blocks of a [B, 4H], then per-unit scale/shift."""
    B = a.shape[0]
    n = F.layer_norm(a.view(B, 4, H), (H,), eps=LN_EPS)
    return n * gamma.view(4, H) + beta.view(4, H)


def ln_cell_update(y, c, keep_t, gamma_c, beta_c):
    i, j, f, o = y.unbind(1)
    g = torch.tanh(j)
    if keep_t is not None:
        g = g * keep_t
    c = torch.sigmoid(f + FORGET_BIAS) * c + torch.sigmoid(i) * g
    h = torch.tanh(F.layer_norm(c, c.shape[1:], gamma_c, beta_c, eps=LN_EPS)) * torch.sigmoid(o)
    return c, h


def ln_lstm_seq(p, x, c, h, keep):
    T, B, D = x.shape
    H = p["W_hh"].shape[0]
    xw = (x.reshape(T * B, D) @ p["W_xh"]).view(T, B, -1)
    hs = []
    for t, xw_t in enumerate(xw.unbind(0)):
        a = torch.addmm(xw_t, h, p["W_hh"])
        c, h = ln_cell_update(ln_gates(a, p["ln_gamma"], p["ln_beta"], H), c,
                              None if keep is None else keep[t], p["ln_c_gamma"], p["ln_c_beta"])
        hs.append(h)
    return torch.stack(hs), c, h


def hyper_lstm_seq(p, x, state, keep):
    """state = (h, h_hat, c, c_hat); returns hs [T, B, H] and the final state."""
    T, B, D = x.shape
    H = p["W_hh"].shape[0]
    Hh = p["hyper_W_hh"].shape[0]
    E = p["W_zw"].shape[1] // 8
    h, hh, c, ch = state
    x2 = x.reshape(T * B, D)
    xw = (x2 @ p["W_xh"]).view(T, B, 4 * H)
    hx = (x2 @ p["hyper_W_xh"][:D]).view(T, B, 4 * Hh)
    W_hx = p["hyper_W_xh"][D:]
    hs = []
    for t, (xw_t, hx_t) in enumerate(zip(xw.unbind(0), hx.unbind(0))):
        # hyper cell: layer-norm LSTM on [x, h_prev], no dropout
        a_hat = hx_t + h @ W_hx + hh @ p["hyper_W_hh"]
        ch, hh = ln_cell_update(ln_gates(a_hat, p["hyper_ln_gamma"], p["hyper_ln_beta"], Hh),
                                ch, None, p["hyper_ln_c_gamma"], p["hyper_ln_c_beta"])
        zw = torch.addmm(p["b_zw"], hh, p["W_zw"]).view(B, 8, E).transpose(0, 1)
        alpha = torch.bmm(zw, p["W_alpha"])                           # [8, B, H]
        zb = (hh @ p["W_zb"]).view(B, 4, E).transpose(0, 1)
        beta = torch.bmm(zb, p["W_beta"])                             # [4, B, H]
        hw = (h @ p["W_hh"]).view(B, 4, H).transpose(0, 1)            # [4, B, H]
        a = alpha[:4] * xw_t.view(B, 4, H).transpose(0, 1) + (alpha[4:] * hw + beta)
        a = a.transpose(0, 1).reshape(B, 4 * H) + p["b"]
        c, h = ln_cell_update(ln_gates(a, p["ln_gamma"], p["ln_beta"], H), c,
                              None if keep is None else keep[t], p["ln_c_gamma"], p["ln_c_beta"])
        hs.append(h)
    return torch.stack(hs), (h, hh, c, ch)


def run_cell(kind, p, x, state, keep):
    """Run cell ``kind`` from a flat state [B, S] (minisketch layout); returns hs [T, B, H]."""
    if kind == "hyper":
        H = p["W_hh"].shape[0]
        Hh = p["hyper_W_hh"].shape[0]
        parts = (state[:, :H], state[:, H:H + Hh], state[:, H + Hh:2 * H + Hh],
                 state[:, 2 * H + Hh:])
        return hyper_lstm_seq(p, x, parts, keep)[0]
    H = p["W_hh"].shape[0]
    fn = lstm_seq if kind == "lstm" else ln_lstm_seq
    return fn(p, x, state[:, :H], state[:, H:], keep)[0]


# ---------------------------------------------------------------------------------------------
# The model

def mdn_loss_sums(y, target, M):
    """(offset_sum, pen_sum) of SPEC 2 in the stable form of minisketch.layers.mdn."""
    pen_l = y[:, :3]
    pi_l, mu_x, mu_y, ls_x, ls_y, r = y[:, 3:].split(M, dim=1)
    dx, dy = target[:, 0:1], target[:, 1:2]
    log_pi = torch.log_softmax(pi_l, dim=1)
    u = (dx - mu_x) * torch.exp(-ls_x)
    v = (dy - mu_y) * torch.exp(-ls_y)
    rho = torch.tanh(r)
    w = (u - rho * v) * torch.cosh(r)
    ar = r.abs()
    log_1mr2 = 2.0 * (math.log(2.0) - ar - torch.log1p(torch.exp(-2.0 * ar)))
    a = log_pi - 0.5 * (w * w + v * v) - LOG_2PI - ls_x - ls_y - 0.5 * log_1mr2
    eps_col = torch.full_like(a[:, :1], LOG_LOSS_EPS)
    log_sum = torch.logsumexp(torch.cat([a, eps_col], dim=1), dim=1)
    offset_sum = (-log_sum * (1.0 - target[:, 4])).sum()
    pen_sum = -(target[:, 2:5] * torch.log_softmax(pen_l, dim=1)).sum()
    return offset_sum, pen_sum


class TorchSketchRNN:
    """Parameters copied from a minisketch SketchRNN (same names); ``loss(batch, noise, w)``."""

    def __init__(self, ms_model, fused=False):
        self.hp = ms_model.hp
        self.dtype = getattr(torch, ms_model.dtype.name)
        sd = ms_model.state_dict()
        self.p = {k: torch.tensor(v, dtype=self.dtype, requires_grad=True) for k, v in sd.items()}
        self.fused = fused
        if fused:
            self._build_fused(sd)

    def params(self):
        if self.fused:
            keep = {k: v for k, v in self.p.items()
                    if not k.startswith(("enc_fw/", "enc_bw/", "dec/"))}
            return list(keep.values()) + list(self.enc_rnn.parameters()) + \
                list(self.dec_rnn.parameters())
        return list(self.p.values())

    @staticmethod
    def _to_torch_lstm(W_xh, W_hh, b):
        """minisketch [D, 4H] blocks i, j, f, o -> torch [4H, D] blocks i, f, g(=j), o; the
        forget bias +1 folded into bias_ih."""
        H = W_hh.shape[0]
        order = lambda a: torch.cat([a[..., 0:H], a[..., 2 * H:3 * H],  # noqa: E731
                                     a[..., H:2 * H], a[..., 3 * H:4 * H]], dim=-1)
        b = torch.tensor(b).clone()
        b[2 * H:3 * H] += FORGET_BIAS
        return (order(torch.tensor(W_xh)).T.contiguous(), order(torch.tensor(W_hh)).T.contiguous(),
                order(b), torch.zeros(4 * H, dtype=b.dtype))

    def _build_fused(self, sd):
        hp = self.hp
        self.enc_rnn = torch.nn.LSTM(5, hp.enc_rnn_size, bidirectional=True).to(self.dtype)
        self.dec_rnn = torch.nn.LSTM(5 + hp.z_size, hp.dec_rnn_size).to(self.dtype)
        with torch.no_grad():
            for suffix, prefix in (("", "enc_fw/"), ("_reverse", "enc_bw/")):
                wi, wh, bi, bh = self._to_torch_lstm(sd[prefix + "W_xh"], sd[prefix + "W_hh"],
                                                     sd[prefix + "b"])
                getattr(self.enc_rnn, "weight_ih_l0" + suffix).copy_(wi)
                getattr(self.enc_rnn, "weight_hh_l0" + suffix).copy_(wh)
                getattr(self.enc_rnn, "bias_ih_l0" + suffix).copy_(bi)
                getattr(self.enc_rnn, "bias_hh_l0" + suffix).copy_(bh)
            wi, wh, bi, bh = self._to_torch_lstm(sd["dec/W_xh"], sd["dec/W_hh"], sd["dec/b"])
            self.dec_rnn.weight_ih_l0.copy_(wi)
            self.dec_rnn.weight_hh_l0.copy_(wh)
            self.dec_rnn.bias_ih_l0.copy_(bi)
            self.dec_rnn.bias_hh_l0.copy_(bh)

    def loss(self, strokes, lengths, noise, w_step):
        """strokes [N+1, B, 5] time-major tensor; lengths LongTensor [B]; noise from
        minisketch's _draw_noise (torch tensors or None)."""
        hp, p = self.hp, self.p
        N1, B, _ = strokes.shape
        N = N1 - 1
        x = strokes[1:]
        cols = torch.arange(B)
        last = lengths - 1
        if self.fused:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
            _, (h_n, _) = self.enc_rnn(packed)                     # [2, B, He]
            h_enc = torch.cat([h_n[0], h_n[1]], dim=1)
        else:
            t = torch.arange(N)[:, None]
            rev = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
            x_rev = x[rev, cols[None, :]]
            zeros = torch.zeros(B, bench_step.state_size(hp.enc_model, hp.enc_rnn_size,
                                                         hp.hyper_num_units), dtype=self.dtype)
            enc_p = lambda pre: {k[len(pre):]: v for k, v in p.items()  # noqa: E731
                                 if k.startswith(pre)}
            hs_f = run_cell(hp.enc_model, enc_p("enc_fw/"), x, zeros, noise["keep_enc_fw"])
            hs_b = run_cell(hp.enc_model, enc_p("enc_bw/"), x_rev, zeros, noise["keep_enc_bw"])
            h_enc = torch.cat([hs_f[last, cols], hs_b[last, cols]], dim=1)
        mu = h_enc @ p["mu/W"] + p["mu/b"]
        s = h_enc @ p["sigma/W"] + p["sigma/b"]
        z = mu + torch.exp(s / 2.0) * noise["eps"]
        kl = -0.5 * torch.mean(1.0 + s - mu * mu - torch.exp(s))
        kl_term = w_step * torch.clamp(kl, min=hp.kl_tolerance)
        state0 = torch.tanh(z @ p["dec_init/W"] + p["dec_init/b"])
        dec_in = torch.cat([strokes[:-1], z[None].expand(N, B, hp.z_size)], dim=2)
        if self.fused:
            H = hp.dec_rnn_size
            hs, _ = self.dec_rnn(dec_in, (state0[None, :, H:].contiguous(),
                                          state0[None, :, :H].contiguous()))
        else:
            dec_p = {k[4:]: v for k, v in p.items() if k.startswith("dec/")}
            hs = run_cell(hp.dec_model, dec_p, dec_in, state0, noise["keep_dec"])
        y = torch.addmm(p["out/b"], hs.reshape(N * B, hp.dec_rnn_size), p["out/W"])
        target = strokes[1:].reshape(N * B, 5)
        offset_sum, pen_sum = mdn_loss_sums(y, target, hp.num_mixture)
        recon = (offset_sum + pen_sum) / (B * N)
        return recon + kl_term


def noise_for(ms_model, B, N, step, dtype):
    """minisketch's own eps and dropout masks for (seed, step), as torch tensors."""
    import numpy as np
    nz = ms_model._draw_noise(np.random.default_rng([ms_model.seed, int(step)]), B, N, True)
    def conv(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
    return {k: conv(getattr(nz, k)) for k in ("eps", "keep_enc_fw", "keep_enc_bw", "keep_dec")}


# ---------------------------------------------------------------------------------------------

def check_against_minisketch(dec, enc, fused):
    """Small float64 model: torch loss and gradients vs minisketch numpy (same params, noise).
    Returns the worst relative error over the loss and every gradient tensor."""
    import numpy as np
    from minisketch.model import SketchRNN
    hp = bench_step.reference_hparams(dec, 4, 12, enc, recurrent_dropout=not fused).replace(
        enc_rnn_size=6, dec_rnn_size=8, z_size=3, num_mixture=3, hyper_num_units=5,
        hyper_embedding_size=2)
    batch = bench_step.random_batch(4, 12, seed=1)
    ms = SketchRNN(hp, backend="numpy", dtype="float64", seed=2)
    rng = np.random.default_rng(3)
    ms.flat[...] += 0.3 * rng.standard_normal(ms.num_params)
    step = 7
    losses, grads = ms.loss_and_grad(batch, step)
    tm = TorchSketchRNN(ms, fused=fused)
    strokes = torch.from_numpy(np.ascontiguousarray(batch.strokes.transpose(1, 0, 2))).double()
    loss = tm.loss(strokes, torch.from_numpy(batch.lengths), noise_for(ms, 4, 12, step,
                                                                        torch.float64),
                   ms.kl_weight(step))
    loss.backward()
    worst = abs(float(loss) - float(losses["loss"])) / abs(float(losses["loss"]))
    names = [k for k in tm.p if not (fused and k.startswith(("enc_fw/", "enc_bw/", "dec/")))]
    for k in names:
        g_t = tm.p[k].grad.numpy()
        g_m = grads[k]
        worst = max(worst, float(np.max(np.abs(g_t - g_m)) / max(np.max(np.abs(g_m)), 1e-300)))
    return worst


def run(args):
    import numpy as np
    from minisketch.model import SketchRNN
    from minisketch.optim import learning_rate

    result = {"backend": "torch", "dec": args.dec, "enc": args.enc, "batch": args.batch,
              "nmax": args.nmax, "dtype": args.dtype, "fused": args.fused,
              "recurrent_dropout": bool(args.recurrent_dropout), "torch": torch.__version__,
              "malloc_keep": bool(args.malloc_keep),
              "torch_threads": torch.get_num_threads()}
    if args.check:
        result["check_max_rel_err"] = check_against_minisketch(args.dec, args.enc, args.fused)
        if not result["check_max_rel_err"] < 1e-8:
            raise SystemExit(f"error: the torch step differs from minisketch "
                             f"(max relative error {result['check_max_rel_err']:.3e})")
    hp = bench_step.reference_hparams(args.dec, args.batch, args.nmax, args.enc,
                                      args.recurrent_dropout)
    batch = bench_step.random_batch(args.batch, args.nmax, seed=args.seed)
    ms = SketchRNN(hp, backend="numpy", dtype=args.dtype, seed=args.seed)
    dt = getattr(torch, args.dtype)
    model = TorchSketchRNN(ms, fused=args.fused)
    params = model.params()
    result["num_params"] = sum(int(p.numel()) for p in params)
    opt = torch.optim.Adam(params, lr=hp.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    strokes = torch.from_numpy(np.ascontiguousarray(batch.strokes.transpose(1, 0, 2))).to(dt)
    lengths = torch.from_numpy(batch.lengths)
    B, N = args.batch, args.nmax

    def one_step(step):
        noise = noise_for(ms, B, N, step, dt)
        opt.zero_grad(set_to_none=True)
        loss = model.loss(strokes, lengths, noise, ms.kl_weight(step))
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, hp.grad_clip)
        for group in opt.param_groups:
            group["lr"] = learning_rate(hp, step)
        opt.step()
        return float(loss)

    t = time.perf_counter()
    loss = one_step(0)
    result["first_step_s"] = time.perf_counter() - t
    for s in range(1, 1 + args.warmup):
        one_step(s)
    times, cpu = [], []
    for s in range(1 + args.warmup, 1 + args.warmup + args.steps):
        t, c = time.perf_counter(), time.process_time()
        loss = one_step(s)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    result.update(bench_step.summarize(times))
    result["cpu_median_ms"] = 1e3 * statistics.median(cpu)
    result["loss"] = loss
    gflop = bench_step.step_flops(hp, B, N) / 1e9
    result["gflop"] = gflop
    result["gflops_achieved"] = gflop / (result["median_ms"] / 1e3)
    if not args.no_peak:
        n = 4096
        a = torch.randn(n, n, dtype=dt)
        b = a.T.contiguous()
        c = torch.empty(n, n, dtype=dt)
        best = float("inf")
        for _ in range(4):
            t = time.perf_counter()
            torch.mm(a, b, out=c)
            best = min(best, time.perf_counter() - t)
        result["blas_peak_gflops"] = 2.0 * n ** 3 / best / 1e9
        result["frac_of_peak"] = result["gflops_achieved"] / result["blas_peak_gflops"]
    result["peak_rss_mib"] = bench_step.peak_rss_mib()
    return result


def report(r):
    print(f"backend torch {r['torch']} ({'nn.LSTM' if r['fused'] else 'step-by-step cells'})  "
          f"dec {r['dec']}  enc {r['enc']}  batch {r['batch']}  nmax {r['nmax']}  {r['dtype']}  "
          f"recurrent dropout {r['recurrent_dropout']}  threads {r['torch_threads']}")
    if "check_max_rel_err" in r:
        print(f"check vs minisketch (float64, small): max relative error "
              f"{r['check_max_rel_err']:.2e}")
    print(f"step: median {r['median_ms']:.1f} ms  (min {r['min_ms']:.1f}, max {r['max_ms']:.1f}, "
          f"{r['steps']} steps); process CPU time {r['cpu_median_ms']:.0f} ms per step; "
          f"first step {r['first_step_s']:.2f} s")
    line = f"{r['gflop']:.1f} GFLOP per step -> {r['gflops_achieved']:.0f} GFLOP/s"
    if "blas_peak_gflops" in r:
        line += (f"; torch 4096^3 matmul {r['blas_peak_gflops']:.0f} GFLOP/s "
                 f"({100 * r['frac_of_peak']:.0f}% of it)")
    print(line)
    print(f"peak RSS {r['peak_rss_mib']:.0f} MiB; loss {r['loss']:.4f}")


def main(argv=None):
    global torch, F
    args = parse_args(argv)
    if args.malloc_keep and not bench_step.keep_freed_memory():
        raise SystemExit("error: --malloc-keep: glibc mallopt is not available here")
    torch = import_torch()
    import torch.nn.functional as F_
    F = F_
    if args.threads:
        torch.set_num_threads(args.threads)
    r = run(args)
    if args.json:
        print(json.dumps(r))
    else:
        report(r)


if __name__ == "__main__":
    main()
