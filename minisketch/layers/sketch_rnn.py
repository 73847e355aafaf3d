"""The whole sketch-rnn (SPEC section 2) as two functions, ``sketch_rnn_forward`` and
``sketch_rnn_backward``, wired from the reference layers.

    encoder   h = [h_fw, h_bw] over each sketch's rows 1..L                    encoder.py
    latent    mu, s = h W + b;  z = mu + exp(s / 2) eps;  KL                      latent.py
    init      state0 = tanh(z @ W_init + b_init)    (the decoder's whole state)
    decoder   input [S_{i-1}, z] at step i = 1..N_max (teacher forcing)           lstm.py, ...
    output    y = h @ W_out + b_out [6M + 3];  L_R = (offset + pen sums) / (B N_max)  mdn.py
    loss      L_R + w * max(KL, kl_tolerance)
A decoder-only model (hp.conditional False) has no encoder and no z: input S_{i-1}, zero
initial state, loss L_R.

Inputs: params {name: array} with the model's names ("enc_fw/W_xh", ..., "out/b"); x [N+1, B, 5]
time-major stroke-5 rows in the model dtype, row 0 = S0; lengths [B] ints (same array module);
noise: a namespace with eps [B, N_z] (None for decoder-only) and the dropout multipliers, each
None when off: keep_enc_fw, keep_enc_bw [N, B, H_e], keep_dec [N, B, H_d], in_mask
[N, B, 5 (+ N_z)], out_mask [N, B, H_d]. The backward returns fresh arrays, one per name.
``SketchRNN.loss_and_grad`` runs the fast twin (``fast/sketch_rnn.py``), tested against these.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..xp import get_xp
from .cells import cell_options, get_cell
from .encoder import encoder_backward, encoder_forward
from .latent import (kl_backward, kl_floor_backward, kl_floor_forward, kl_forward,
                     latent_backward, latent_forward)
from .linear import linear_backward, linear_forward
from .mdn import mdn_loss, mdn_loss_and_grad


def group(params: dict, prefix: str) -> dict:
    """{key: array} of the parameters named prefix + key (e.g. "dec/" -> W_xh, W_hh, b)."""
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def sketch_rnn_losses(offset_sum, pen_sum, B: int, N: int, kl, kl_term, kl_weight, dtype):
    """The losses dict of the model (0-d arrays of ``dtype``): loss = recon + kl_term,
    recon = offset + pen, each sum divided by B N; kl (raw, unfloored) and kl_weight."""
    xp = get_xp(kl)
    scale = 1.0 / (B * N)
    offset, pen = offset_sum * scale, pen_sum * scale
    recon = offset + pen
    return {name: xp.asarray(v, dtype=dtype) for name, v in (
        ("loss", recon + kl_term), ("recon", recon), ("offset", offset), ("pen", pen),
        ("kl", kl), ("kl_weight", kl_weight))}


def sketch_rnn_forward(params, x, lengths, noise, hp, kl_weight, kernels=None):
    """Losses of one batch (module docstring for the inputs; kl_weight: w, the KL term's
    weight at this step; kernels: the kernel set the cells and the loss run on, None for the
    reference step functions).

    Returns: losses {"loss", "recon", "offset", "pen", "kl", "kl_weight"} (0-d arrays), and the
    cache for ``sketch_rnn_backward``.
    """
    xp = get_xp(x)
    N, B = x.shape[0] - 1, x.shape[1]
    dec_cell = get_cell(hp.dec_model, **cell_options(hp.dec_model, hp))
    c = SimpleNamespace(params=params, noise=noise, hp=hp, kernels=kernels, dec_cell=dec_cell,
                        N=N, B=B)
    if hp.conditional:
        # encoder: both directions over each sketch's own rows 1..L
        enc_cell = get_cell(hp.enc_model, **cell_options(hp.enc_model, hp))
        h, c.enc = encoder_forward(x[1:], lengths, group(params, "enc_fw/"),
                                   group(params, "enc_bw/"), enc_cell, hp.enc_rnn_size,
                                   noise.keep_enc_fw, noise.keep_enc_bw, kernels)
        # latent: z = mu + exp(s / 2) eps, and the KL term with its floor
        p_lat = {k: params[k] for k in ("mu/W", "mu/b", "sigma/W", "sigma/b")}
        mu, s, c.z, c.lat = latent_forward(h, p_lat, noise.eps)
        kl, c.kl = kl_forward(mu, s)
        kl_term, c.floor = kl_floor_forward(kl, kl_weight, hp.kl_tolerance)
        # the decoder starts from tanh(z W + b) and reads z beside every stroke
        c.state0 = xp.tanh(c.z @ params["dec_init/W"] + params["dec_init/b"])
        dec_in = xp.concatenate([x[:-1], xp.broadcast_to(c.z[None], (N, B, hp.z_size))],
                                axis=2)
    else:
        kl = kl_term = xp.zeros((), dtype=x.dtype)
        c.state0 = xp.zeros((B, dec_cell.state_size(hp.dec_rnn_size)), dtype=x.dtype)
        dec_in = x[:-1]
    if noise.in_mask is not None:
        dec_in = dec_in * noise.in_mask                                     # input dropout
    # decoder over all N steps (teacher forcing: input row i - 1, target row i)
    hs, _, c.dec = dec_cell.forward(dec_in, c.state0, group(params, "dec/"), keep=noise.keep_dec,
                                    kernels=kernels)
    hs = hs.reshape(N * B, hp.dec_rnn_size)
    if noise.out_mask is not None:
        hs = hs * noise.out_mask.reshape(N * B, hp.dec_rnn_size)            # output dropout
    # mixture parameters of every row, and the two loss sums over every target row
    c.y, c.out = linear_forward(hs, params["out/W"], params["out/b"])
    c.target = x[1:].reshape(N * B, 5)
    loss = mdn_loss if kernels is None else kernels.mdn_loss
    offset_sum, pen_sum = loss(c.y, c.target)
    return sketch_rnn_losses(offset_sum, pen_sum, B, N, kl, kl_term, kl_weight, x.dtype), c


def sketch_rnn_backward(cache) -> dict:
    """Gradients of ``sketch_rnn_forward``'s loss: {parameter name: fresh array}."""
    c = cache
    hp, params, noise, N, B = c.hp, c.params, c.noise, c.N, c.B
    grads = {}
    # forward was: loss = (offset_sum + pen_sum) / (B N) + ..., the sums from mdn_loss(y, target)
    loss_and_grad = mdn_loss_and_grad if c.kernels is None else c.kernels.mdn_loss_and_grad
    _, _, dy = loss_and_grad(c.y, c.target, 1.0 / (B * N))
    # forward was: y = hs @ W_out + b_out (hs after output dropout)
    dhs, grads["out/W"], grads["out/b"] = linear_backward(dy, c.out)
    if noise.out_mask is not None:
        dhs = dhs * noise.out_mask.reshape(N * B, hp.dec_rnn_size)
    ddec_in, dstate0, g_dec = c.dec_cell.backward(dhs.reshape(N, B, hp.dec_rnn_size), None, c.dec)
    grads.update({"dec/" + k: g for k, g in g_dec.items()})
    if not hp.conditional:
        return grads
    if noise.in_mask is not None:
        ddec_in = ddec_in * noise.in_mask
    # forward was: dec_in = [S_{i-1}, z] at every step, so z gets the sum over steps
    dz = ddec_in[:, :, 5:].sum(axis=0)
    # forward was: state0 = tanh(z @ W_init + b_init)
    dpre = dstate0 * (1.0 - c.state0 * c.state0)
    grads["dec_init/W"] = c.z.T @ dpre
    grads["dec_init/b"] = dpre.sum(axis=0)
    dz += dpre @ params["dec_init/W"].T
    # forward was: loss += w * max(KL, kl_tolerance) with KL of (mu, s), z = mu + exp(s/2) eps
    dmu_kl, ds_kl = kl_backward(kl_floor_backward(1.0, c.floor), c.kl)
    dh, g_lat = latent_backward(dz, dmu_kl, ds_kl, c.lat)
    grads.update(g_lat)
    # forward was: h = encoder(x[1:]) (the data needs no gradient: dx is dropped)
    _, g_fw, g_bw = encoder_backward(dh, c.enc)
    grads.update({"enc_fw/" + k: g for k, g in g_fw.items()})
    grads.update({"enc_bw/" + k: g for k, g in g_bw.items()})
    return grads
