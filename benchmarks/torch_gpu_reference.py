"""The same sketch-rnn training step in PyTorch, for a side-by-side timing (never a dependency).

    python benchmarks/torch_gpu_reference.py --dec lstm --batch 100 --nmax 250 [--steps K] [--json]

One step = forward over a synthetic batch (bidirectional LSTM encoder over the real rows,
latent sample, decoder over N_max steps, mixture-density + pen loss, KL), backward,
element-wise gradient clipping and Adam, as minisketch does (SPEC sections 2-3). Sizes are the
reference ones (encoder 256 per direction, decoder 512, N_z 128, M 20, hyper 256/32).

The LSTM decoder is ``torch.nn.LSTM`` (cuDNN, the fast path most PyTorch users get; cuDNN has
no recurrent dropout on the candidate, so this one runs without it). The layer-norm and
HyperLSTM decoders are Python loops over hand-written cells with recurrent dropout, as a
PyTorch user would write them. It times with CUDA events (``--device cpu`` runs it on the CPU
with a host clock, to try the script without a GPU). ``--json`` prints one line with
``median_ms``, ``backend`` ("torch"), ``dec``, ``batch``, ``nmax``, ``device``.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # a benchmark helper: say what is missing and stop
    print("error: torch is not installed; this optional benchmark needs PyTorch", file=sys.stderr)
    raise SystemExit(1)

LN_EPS = 1e-3


def layer_norm(a, gamma, beta):
    """(a - mean) / sqrt(var + 1e-3) over the last axis, scaled and shifted."""
    mean = a.mean(dim=-1, keepdim=True)
    var = ((a - mean) ** 2).mean(dim=-1, keepdim=True)
    return (a - mean) * torch.rsqrt(var + LN_EPS) * gamma + beta


class LayerNormLSTMCell(nn.Module):
    """SPEC 3 layer-norm LSTM: no bias, LN per gate block (i, j, f, o) and on c."""

    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.W_xh = nn.Parameter(torch.empty(d, 4 * h))
        self.W_hh = nn.Parameter(torch.empty(h, 4 * h))
        nn.init.xavier_uniform_(self.W_xh)
        nn.init.orthogonal_(self.W_hh)
        self.gamma = nn.Parameter(torch.ones(4, h))
        self.beta = nn.Parameter(torch.zeros(4, h))
        self.gamma_c = nn.Parameter(torch.ones(h))
        self.beta_c = nn.Parameter(torch.zeros(h))

    def step(self, xw_t, c, h, keep_t):
        a = (xw_t + h @ self.W_hh).view(-1, 4, self.h)
        a = layer_norm(a, self.gamma, self.beta)
        i, j, f, o = a.unbind(1)
        g = torch.tanh(j)
        if keep_t is not None:
            g = g * keep_t
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * g
        h = torch.tanh(layer_norm(c, self.gamma_c, self.beta_c)) * torch.sigmoid(o)
        return c, h

    def forward(self, x, c, h, keep):
        T, B, D = x.shape
        xw = (x.reshape(T * B, D) @ self.W_xh).view(T, B, -1)
        hs = []
        for t in range(T):
            c, h = self.step(xw[t], c, h, None if keep is None else keep[t])
            hs.append(h)
        return torch.stack(hs)


class HyperLSTMCell(nn.Module):
    """SPEC 3 HyperLSTM (Ha, Dai & Le 2016) with layer norm, hyper cell of n_hyper units."""

    def __init__(self, d, h, n_hyper=256, n_emb=32):
        super().__init__()
        self.h, self.e = h, n_emb
        self.hyper = LayerNormLSTMCell(d + h, n_hyper)
        self.W_xh = nn.Parameter(torch.empty(d, 4 * h))
        self.W_hh = nn.Parameter(torch.empty(h, 4 * h))
        nn.init.xavier_uniform_(self.W_xh)
        nn.init.orthogonal_(self.W_hh)
        self.b = nn.Parameter(torch.zeros(4 * h))
        self.W_zw = nn.Parameter(torch.zeros(n_hyper, 8 * n_emb))      # 8 blocks: x i,j,f,o; h i,j,f,o
        self.b_zw = nn.Parameter(torch.ones(8 * n_emb))
        self.W_alpha = nn.Parameter(torch.full((8, n_emb, h), 0.1 / n_emb))
        self.W_zb = nn.Parameter(0.01 * torch.randn(n_hyper, 4 * n_emb))
        self.W_beta = nn.Parameter(torch.zeros(4, n_emb, h))
        self.gamma = nn.Parameter(torch.ones(4, h))
        self.beta = nn.Parameter(torch.zeros(4, h))
        self.gamma_c = nn.Parameter(torch.ones(h))
        self.beta_c = nn.Parameter(torch.zeros(h))

    def forward(self, x, h0, c0, hh0, hc0, keep):
        T, B, D = x.shape
        xw = (x.reshape(T * B, D) @ self.W_xh).view(T, B, 4, self.h)
        xh_hyper = (x.reshape(T * B, D) @ self.hyper.W_xh[:D]).view(T, B, -1)
        W_hyper_h = self.hyper.W_xh[D:]
        h, c, hh, hc = h0, c0, hh0, hc0
        hs = []
        for t in range(T):
            # hyper cell reads concat(x_t, h_prev)
            hc, hh = self.hyper.step(xh_hyper[t] + h @ W_hyper_h, hc, hh,
                                     None if keep is None else keep[t][:, :hh.shape[1]])
            zw = (hh @ self.W_zw + self.b_zw).view(B, 8, self.e)
            alpha = torch.einsum("bke,keh->bkh", zw, self.W_alpha)
            zb = (hh @ self.W_zb).view(B, 4, self.e)
            beta_h = torch.einsum("bke,keh->bkh", zb, self.W_beta)
            a = (xw[t] * alpha[:, :4] + (h @ self.W_hh).view(B, 4, self.h) * alpha[:, 4:]
                 + beta_h + self.b.view(4, self.h))
            a = layer_norm(a, self.gamma, self.beta)
            i, j, f, o = a.unbind(1)
            g = torch.tanh(j)
            if keep is not None:
                g = g * keep[t]
            c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * g
            h = torch.tanh(layer_norm(c, self.gamma_c, self.beta_c)) * torch.sigmoid(o)
            hs.append(h)
        return torch.stack(hs)


class SketchRNN(nn.Module):
    def __init__(self, dec, enc_h=256, dec_h=512, nz=128, m=20, n_hyper=256, n_emb=32):
        super().__init__()
        self.dec, self.dec_h, self.nz, self.m, self.n_hyper = dec, dec_h, nz, m, n_hyper
        self.enc = nn.LSTM(5, enc_h, bidirectional=True)
        self.mu = nn.Linear(2 * enc_h, nz)
        self.sigma = nn.Linear(2 * enc_h, nz)
        state = {"lstm": 2 * dec_h, "layer_norm": 2 * dec_h, "hyper": 2 * dec_h + 2 * n_hyper}[dec]
        self.dec_init = nn.Linear(nz, state)
        if dec == "lstm":
            self.cell = nn.LSTM(5 + nz, dec_h)
            with torch.no_grad():  # forget bias +1 (torch keeps two biases; put it in one)
                self.cell.bias_ih_l0.zero_()
                self.cell.bias_hh_l0.zero_()
                self.cell.bias_ih_l0[2 * dec_h:3 * dec_h] = 1.0  # torch gate order i, f, g, o
        elif dec == "layer_norm":
            self.cell = LayerNormLSTMCell(5 + nz, dec_h)
        else:
            self.cell = HyperLSTMCell(5 + nz, dec_h, n_hyper, n_emb)
        self.out = nn.Linear(dec_h, 6 * m + 3)

    def loss(self, strokes, lengths, keep_prob=0.9):
        # strokes [T+1, B, 5] time-major, lengths [B] (int64 on the device)
        T1, B, _ = strokes.shape
        T = T1 - 1
        packed = nn.utils.rnn.pack_padded_sequence(strokes[1:], lengths.cpu(),
                                                   enforce_sorted=False)
        _, (h_n, _) = self.enc(packed)
        h = torch.cat([h_n[0], h_n[1]], dim=1)
        mu, s = self.mu(h), self.sigma(h)
        z = mu + torch.exp(s / 2) * torch.randn_like(mu)
        state = torch.tanh(self.dec_init(z))
        x = torch.cat([strokes[:-1], z.unsqueeze(0).expand(T, B, self.nz)], dim=2)
        H = self.dec_h
        if self.dec == "lstm":
            c0, h0 = state[:, :H], state[:, H:]
            hs, _ = self.cell(x, (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()))
        else:
            keep_w = H
            keep = (torch.rand(T, B, keep_w, device=x.device) < keep_prob).to(x.dtype) / keep_prob
            if self.dec == "layer_norm":
                hs = self.cell(x, state[:, :H], state[:, H:], keep)
            else:
                hn = self.n_hyper
                h0, hh0 = state[:, :H], state[:, H:H + hn]
                c0, hc0 = state[:, H + hn:2 * H + hn], state[:, 2 * H + hn:]
                hs = self.cell(x, h0, c0, hh0, hc0, keep)
        y = self.out(hs)                                   # [T, B, 6M+3]
        tgt = strokes[1:]
        M = self.m
        pen_logits = y[..., :3]
        pi_logits, mx, my, lsx, lsy, rho_logits = torch.split(y[..., 3:], M, dim=-1)
        rho = torch.tanh(rho_logits)
        dx, dy = tgt[..., 0:1], tgt[..., 1:2]
        n1 = (dx - mx) * torch.exp(-lsx)
        n2 = (dy - my) * torch.exp(-lsy)
        one_m_r2 = 1.0 - rho * rho
        zz = n1 * n1 + n2 * n2 - 2.0 * rho * n1 * n2
        log_n = (-zz / (2.0 * one_m_r2) - math.log(2.0 * math.pi) - lsx - lsy
                 - 0.5 * torch.log(one_m_r2))
        log_mix = torch.logsumexp(F.log_softmax(pi_logits, dim=-1) + log_n, dim=-1)
        real = 1.0 - tgt[..., 4]
        offset = -(log_mix * real).sum()
        pen = -(F.log_softmax(pen_logits, dim=-1) * tgt[..., 2:]).sum()
        recon = (offset + pen) / (B * T)
        kl = -0.5 * torch.mean(1.0 + s - mu * mu - torch.exp(s))
        return recon + 0.01 * torch.clamp(kl, min=0.2)


def synthetic_batch(B, T, device, gen):
    """Random normalized stroke-5 [T+1, B, 5] (S0 first, padding after each length)."""
    lengths = torch.randint(T // 2, T + 1, (B,), generator=gen)
    lengths[0] = T
    s = torch.zeros(T + 1, B, 5)
    s[0, :, 2] = 1.0
    s[1:, :, :2] = torch.randn(T, B, 2, generator=gen)
    lift = torch.rand(T, B, generator=gen) < 0.1
    s[1:, :, 2] = (~lift).float()
    s[1:, :, 3] = lift.float()
    t_idx = torch.arange(1, T + 1).unsqueeze(1)
    pad = t_idx > lengths.unsqueeze(0)
    s[1:][pad] = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    return s.to(device), lengths.to(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dec", choices=("lstm", "layer_norm", "hyper"), default="lstm")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--nmax", type=int, default=250)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 3 warm-up steps)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: torch sees no CUDA device (use --device cpu to run on the CPU)",
              file=sys.stderr)
        return 1
    dev = torch.device(args.device)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = SketchRNN(args.dec).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    strokes, lengths = synthetic_batch(args.batch, args.nmax, dev, gen)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model.loss(strokes, lengths)
        loss.backward()
        for q in model.parameters():
            q.grad.clamp_(-1.0, 1.0)
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            loss = step()
            times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    loss_v = float(loss.detach())
    if args.json:
        print(json.dumps({"median_ms": med, "backend": "torch", "dec": args.dec,
                          "batch": args.batch, "nmax": args.nmax, "device": str(dev),
                          "torch": torch.__version__, "steps": args.steps, "loss": loss_v}))
    else:
        print(f"torch {torch.__version__} {dev} dec={args.dec} batch={args.batch} "
              f"nmax={args.nmax}: median {med:.1f} ms/step over {args.steps} steps "
              f"(loss {loss_v:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
