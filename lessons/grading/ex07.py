"""Lesson 07's checks: the loss against mdn.mdn_loss (1e-12 relative), the gradient against
mdn.mdn_loss_and_grad (1e-10 relative) and central differences of the library's loss (1e-6)."""
import numpy as np

from minisketch.layers import mdn

from grading import Check, Wrong, compare, gradient_check, unpack

CASES = ((6, 4), (5, 1), (3, 2))      # rows N, components M


def _case(seed, N, M):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((N, 6 * M + 3))
    y[:, 3 + 3 * M:3 + 5 * M] -= 1.0                       # sigmas around e^-1
    target = np.zeros((N, 5))
    target[:, :2] = 0.5 * rng.standard_normal((N, 2))
    target[np.arange(N), 2 + rng.integers(0, 2, N)] = 1.0   # pen down or lift
    target[-1] = (0, 0, 0, 0, 1)                            # a padding row
    return y, target


def check_loss(fn):
    for seed, (N, M) in enumerate(CASES):
        y, target = _case(seed, N, M)
        got = unpack(fn(y.copy(), target), 2, "offset_sum, pen_sum")
        off, pen = mdn.mdn_loss(y, target)
        compare(f"offset_sum (N={N}, M={M})", got[0], float(off), 1e-12, relative=True)
        compare(f"pen_sum (N={N}, M={M})", got[1], float(pen), 1e-12, relative=True)


def check_grad(fn):
    for seed, (N, M) in enumerate(CASES):
        y, target = _case(10 + seed, N, M)
        scale = 1.0 / N
        got = np.asarray(fn(y.copy(), target, scale))
        _, _, want = mdn.mdn_loss_and_grad(y, target, scale)
        if got.shape != want.shape:
            raise Wrong(f"dy has shape {got.shape}, expected {want.shape} (N={N}, M={M})")
        names = ["pen logits"] * 3 + [n for n in ("pi logits", "mu_x", "mu_y", "log sigma_x",
                                                  "log sigma_y", "rho logits") for _ in range(M)]
        err = np.abs(got - want).max(axis=0) / max(np.abs(want).max(), 1e-300)
        if err.max() > 1e-10:
            col = int(np.argmax(err))
            compare(f"dy[:, {col}] (the {names[col]} block; N={N}, M={M})", got[:, col],
                    want[:, col], 1e-10 * np.abs(want).max())

        def loss():
            o, p = mdn.mdn_loss(y, target)
            return scale * float(o + p)
        gradient_check(loss, {"y": y}, {"y": got})


CHECKS = [
    Check("mixture_loss", check_loss, [
        "Split y with split(y); pi = softmax(pi logits), q = softmax(pen logits), "
        "sigma = exp(log sigma), rho = tanh(rho logit).",
        "With n1 = dx - mu_x, n2 = dy - mu_y (broadcast [N, 1] against [N, M]): "
        "Z = (n1/sx)^2 + (n2/sy)^2 - 2 rho n1 n2 / (sx sy) and "
        "N = exp(-Z / (2 (1 - rho^2))) / (2 pi sx sy sqrt(1 - rho^2)).",
        "offset = -log((pi * N).sum(1) + 1e-6) * (1 - p3), pen = -(target[:, 2:] * log q).sum(1); "
        "return the two sums as floats.",
    ]),
    Check("mixture_grad", check_grad, [
        "Work with u = n1 / sx, v = n2 / sy, Q = 1 - rho^2 and the responsibilities "
        "gamma_k = pi_k N_k / (sum_j pi_j N_j + 1e-6), set to 0 on padding rows.",
        "d ell / d log N_k = -gamma_k; then the chain rule through each raw output, e.g. "
        "d log N / d mu_x = (u - rho v) / (Q sx), d log N / d log sigma_x = u (u - rho v) / Q - 1.",
        "Blocks: pen q - p; pi pi * sum(gamma) - gamma; mu_x -gamma (u - rho v) / (Q sx); "
        "log sigma_x gamma - gamma u (u - rho v) / Q; rho -gamma (u v - rho Z / Q + rho); "
        "the y blocks swap u <-> v. Multiply everything by scale.",
    ]),
]
