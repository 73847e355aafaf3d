"""The whole model of ``layers/sketch_rnn.py`` on the fast layers, in row blocks.

``sketch_rnn_forward`` / ``sketch_rnn_backward`` take the reference's arguments and give its
numbers to float rounding (tests/test_model.py, tests/test_threads.py), skipping work:

    * the encoder sorts the rows by length and runs only the real rows of each step
      (``host_lengths``, ``fast/encoder.py``); the two directions may run in two threads;
    * the decoder takes z once per sequence (``x_const``) unless input dropout masks it per step,
      and the gradient w.r.t. its input is computed only for that z part (``need_dx``);
    * the decoder and the loss run in row blocks (``threads``, a ``fast/threads.py``
      StepThreads): every row is independent until the losses and gradients are summed, so
      each block's forward and backward is one job; the encoder, latent layer and KL run on the
      whole batch, before and after the blocks.

A call may also hold only some rows of a batch of ``batch_rows`` (data-parallel training,
``mpi.py``): the losses and gradients are then this part's share of the whole batch's (its
sums over the whole batch's B N), and ``reduce`` sums a float over the parts, so that the KL
floor sees the whole batch's KL. Summing the parts' losses and gradients gives the whole batch's.

The noise is drawn for the whole batch and sliced, so a split step sees the same masks and eps
as an unsplit one. The backward returns fresh arrays, one per parameter name.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..layers.cells import cell_options, get_cell
from ..layers.latent import (kl_backward, kl_floor_backward, kl_floor_forward, kl_forward,
                             latent_backward, latent_forward)
from ..layers.sketch_rnn import group, sketch_rnn_losses
from ..xp import get_xp
from .cells import fast_cell
from .encoder import encoder_backward, encoder_forward
from .sequence import resolve_kernels

LATENT = ("mu/W", "mu/b", "sigma/W", "sigma/b")


def _serial(fn, jobs):
    return [fn(job) for job in jobs]


def sketch_rnn_forward(params, x, lengths, noise, hp, kl_weight, kernels=None, host_lengths=None,
                       threads=None, wait_noise=None, backward=True, batch_rows=None,
                       reduce=None):
    """``layers.sketch_rnn.sketch_rnn_forward`` (same arguments, same returns), faster.

    host_lengths: the lengths as a host NumPy array (the encoder sorts its rows by them), or
    None for the masked encoder. threads: a ``StepThreads`` (row blocks, each in a thread), or
    None for one block in this thread. wait_noise: None, or a function to call before the
    decoder reads noise.keep_dec, in_mask and out_mask (they may still be being drawn).
    backward: False when no ``sketch_rnn_backward`` follows (the loss kernel then skips the
    gradient). batch_rows, reduce: this call's B rows are part of a batch of ``batch_rows``
    rows split between processes; ``reduce(float) -> float`` sums a number over the parts
    (None: the call holds the whole batch)."""
    K = resolve_kernels(kernels)
    xp = get_xp(x)
    N, B = x.shape[0] - 1, x.shape[1]
    B_all = B if batch_rows is None else int(batch_rows)       # the whole batch's rows
    blocks = [(0, B)] if threads is None else threads.blocks(B)
    run = _serial if threads is None else threads.map
    split = len(blocks) > 1
    # the encoder's two directions in two threads when the step is split
    parallel = (lambda thunks: run(lambda f: f(), thunks)) if split else None
    dec_cell = fast_cell(get_cell(hp.dec_model, **cell_options(hp.dec_model, hp)))
    head = SimpleNamespace(parallel=parallel)
    if hp.conditional:
        enc_cell = fast_cell(get_cell(hp.enc_model, **cell_options(hp.enc_model, hp)))
        h_enc, head.enc = encoder_forward(x[1:], lengths, group(params, "enc_fw/"),
                                          group(params, "enc_bw/"), enc_cell, hp.enc_rnn_size,
                                          noise.keep_enc_fw, noise.keep_enc_bw, K,
                                          host_lengths=host_lengths, parallel=parallel)
        mu, s, head.z, head.lat = latent_forward(h_enc, {k: params[k] for k in LATENT},
                                                 noise.eps)
        kl, head.kl = kl_forward(mu, s)
        head.kl_share = 1.0
        if reduce is not None:
            # the whole batch's KL: the parts' means weighted by their rows, summed over parts
            head.kl_share = B / B_all
            kl = xp.asarray(reduce(float(kl) * head.kl_share), dtype=x.dtype)
        kl_term, head.floor = kl_floor_forward(kl, kl_weight, hp.kl_tolerance)
        head.state0 = xp.tanh(head.z @ params["dec_init/W"] + params["dec_init/b"])
    else:
        kl = kl_term = xp.zeros((), dtype=x.dtype)
        head.z = None
        head.state0 = xp.zeros((B, dec_cell.state_size(hp.dec_rnn_size)), dtype=x.dtype)
    if wait_noise is not None:
        wait_noise()
    common = dict(params=params, hp=hp, cell=dec_cell, K=K, B=B_all, N=N, backward=backward)
    jobs = [_rows_job(x, noise, head, r0, r1, split, common) for r0, r1 in blocks]
    outs = run(_rows_forward, jobs)
    # the blocks' sums (one block: exactly the whole batch's numbers)
    offset_sum, pen_sum = outs[0]
    for o in outs[1:]:
        offset_sum = offset_sum + o[0]
        pen_sum = pen_sum + o[1]
    losses = sketch_rnn_losses(offset_sum, pen_sum, B_all, N, kl, kl_term, kl_weight, x.dtype)
    return losses, SimpleNamespace(hp=hp, params=params, head=head, jobs=jobs, run=run)


def sketch_rnn_backward(cache) -> dict:
    """``layers.sketch_rnn.sketch_rnn_backward``: {parameter name: fresh array}."""
    hp, head = cache.hp, cache.head
    outs = cache.run(_rows_backward, cache.jobs)
    # the blocks' gradients summed (in block order)
    grads = outs[0][0]
    for g, _ in outs[1:]:
        for k in grads:
            grads[k] += g[k]
    if not hp.conditional:
        return grads
    xp = get_xp(head.z)
    dz = outs[0][1] if len(outs) == 1 else xp.concatenate([o[1] for o in outs], axis=0)
    # forward was: loss += w * max(KL, kl_tolerance), KL of (mu, s), z = mu + exp(s/2) eps;
    # a part's KL enters the whole batch's with weight kl_share
    dmu_kl, ds_kl = kl_backward(kl_floor_backward(1.0, head.floor) * head.kl_share, head.kl)
    dh_enc, g_lat = latent_backward(dz, dmu_kl, ds_kl, head.lat)
    grads.update(g_lat)
    _, g_fw, g_bw = encoder_backward(dh_enc, head.enc, need_dx=False, parallel=head.parallel)
    grads.update({"enc_fw/" + k: g for k, g in g_fw.items()})
    grads.update({"enc_bw/" + k: g for k, g in g_bw.items()})
    return grads


# ---------------------------------------------------------------------------------------------
# One row block: the decoder and the loss of rows r0:r1

def _rows_job(x, noise, head, r0, r1, split, common):
    """The inputs of the decoder's rows r0:r1: x [N+1, B', 5], z and state0 [B', ...], the
    noise rows (views of the whole batch's arrays when the batch is split, made contiguous by
    ``_contiguous`` in the block's own thread; the whole arrays otherwise), and ``common``
    (parameters, hp, the decoder cell, kernels, the whole batch's B and N, backward)."""

    def rows(a, axis):
        if a is None or not split:
            return a
        return a[r0:r1] if axis == 0 else a[:, r0:r1]

    return SimpleNamespace(
        x=rows(x, 1), z=rows(head.z, 0), state0=rows(head.state0, 0),
        keep_dec=rows(noise.keep_dec, 1), in_mask=rows(noise.in_mask, 1),
        out_mask=rows(noise.out_mask, 1), **common)


def _contiguous(job):
    """Copy a job's row views to contiguous arrays (the compiled kernels vectorize only over
    contiguous rows), in the thread that runs the job, where the copies run in parallel."""
    xp = get_xp(job.x)
    for name in ("x", "z", "state0", "keep_dec", "in_mask", "out_mask"):
        a = getattr(job, name)
        if a is not None:
            setattr(job, name, xp.ascontiguousarray(a))


def _rows_forward(job):
    """Decoder and loss of one row block: its (offset_sum, pen_sum), the whole batch's scale
    applied later; the cache goes into ``job``."""
    hp, K, P = job.hp, job.K, job.params
    _contiguous(job)
    xp = get_xp(job.x)
    x, N = job.x, job.N
    Bp = x.shape[1]
    Hd, Nz = hp.dec_rnn_size, hp.z_size
    # decoder inputs [S_{i-1}, z]: z is the same at every step, so the cell projects it once
    # (x_const) instead of repeating it N times, unless input dropout masks it per step
    job.z_const = hp.conditional and job.in_mask is None
    dec_in, x_const = x[:-1], None
    if job.z_const:
        x_const = job.z
    else:
        if hp.conditional:
            dec_in = xp.concatenate([dec_in, xp.broadcast_to(job.z[None], (N, Bp, Nz))],
                                    axis=2)
        if job.in_mask is not None:
            dec_in = dec_in * job.in_mask
    hs, _, job.dec = job.cell.forward(dec_in, job.state0, group(P, "dec/"), keep=job.keep_dec,
                                      mask=None, kernels=K, x_const=x_const)
    hs2 = hs.reshape(N * Bp, Hd)
    if job.out_mask is not None:
        hs2 = hs2 * job.out_mask.reshape(N * Bp, Hd)
    job.hs2 = hs2
    y = K.matmul(hs2, P["out/W"])                                   # [N*B', 6M+3]
    y += P["out/b"]
    target = x[1:].reshape(N * Bp, 5)                                # rows 1..N_max
    if job.backward:
        offset_sum, pen_sum, job.dy = K.mdn_loss_and_grad(y, target, 1.0 / (job.B * N))
    else:
        offset_sum, pen_sum = K.mdn_loss(y, target)
    return offset_sum, pen_sum


def _rows_backward(job):
    """Backward of one row block: (its gradients of the decoder's parameters, out/* and
    dec_init/*, and dz [B', N_z], the gradient w.r.t. its rows of z; None if decoder-only)."""
    hp, P, K, N = job.hp, job.params, job.K, job.N
    Bp = job.x.shape[1]
    Hd = hp.dec_rnn_size
    grads = {}
    # forward was: y = hs2 @ W_out + b_out
    grads["out/W"] = K.matmul(job.hs2.T, job.dy)
    grads["out/b"] = job.dy.sum(axis=0)
    dhs2 = K.matmul(job.dy, P["out/W"].T)
    if job.out_mask is not None:
        dhs2 *= job.out_mask.reshape(N * Bp, Hd)
    # the gradient w.r.t. the decoder's per-step input is needed only for its z part when z
    # goes in at every step (input dropout); the strokes are data
    need_dx = hp.conditional and not job.z_const
    ddec_in, dstate0, g_dec = job.cell.backward(dhs2.reshape(N, Bp, Hd), None, job.dec,
                                                need_dx=need_dx)
    grads.update({"dec/" + k: g for k, g in g_dec.items()})
    if not hp.conditional:
        return grads, None
    if job.z_const:
        # forward was: the cell's input [S_{i-1}, z] with z given once (x_const)
        dz = ddec_in[1]
    else:
        if job.in_mask is not None:
            ddec_in = ddec_in * job.in_mask
        # forward was: dec_in = [S_{i-1}, z] for every step
        dz = ddec_in[:, :, 5:].sum(axis=0)
    # forward was: state0 = tanh(z @ W_init + b_init)
    dpre = dstate0 * (1.0 - job.state0 * job.state0)
    grads["dec_init/W"] = job.z.T @ dpre
    grads["dec_init/b"] = dpre.sum(axis=0)
    dz += dpre @ P["dec_init/W"].T
    return grads, dz
