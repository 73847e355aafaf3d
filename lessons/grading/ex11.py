"""Lesson 11's checks: draws equal to sampling.categorical and sampling.sample_step from the
same uniforms and normals (categories exactly, offsets to 1e-14)."""
import numpy as np

from minisketch import sampling

from grading import Check, Wrong, compare, unpack


def check_categorical(fn):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((500, 5)) * 2
    logits[:7, 2] = -np.inf                               # a category that can never be drawn
    u = 1.0 - rng.random(500)                             # in (0, 1], as the library draws
    u[:3] = 1.0
    for tau in (0.1, 0.5, 1.0, 2.0):
        got = np.asarray(fn(logits.copy(), u.copy(), tau))
        want = sampling.categorical(logits.copy(), u, tau)
        if got.shape != want.shape:
            raise Wrong(f"expected one draw per row, shape {want.shape}, got {got.shape}")
        bad = np.flatnonzero(got != want)
        if bad.size:
            r = int(bad[0])
            raise Wrong(f"at tau={tau}, {bad.size} of {len(u)} draws differ; row {r}: got "
                        f"{got[r]}, expected {want[r]} (logits {np.round(logits[r], 3).tolist()}, "
                        f"u {u[r]:.4f})")


def check_sample_step(fn):
    rng = np.random.default_rng(1)
    for M, tau in ((4, 0.7), (1, 1.0), (3, 0.05)):
        a = 40
        y = rng.standard_normal((a, 6 * M + 3))
        u, e = 1.0 - rng.random((a, 2)), rng.standard_normal((a, 2))
        got = unpack(fn(y.copy(), M, tau, u.copy(), e.copy()), 3, "offsets, pen, component")
        want = sampling.sample_step(y.copy(), M, tau, u, e)
        for name, g, w in zip(("pen", "component"), got[1:], want[1:]):
            g = np.asarray(g)
            if g.shape != w.shape or not np.array_equal(g, w):
                raise Wrong(f"{name} draws differ from sampling.sample_step (M={M}, tau={tau})"
                            f": got {g[:8].tolist()}..., expected {w[:8].tolist()}...")
        compare(f"offsets (M={M}, tau={tau})", got[0], want[0], 1e-14)


CHECKS = [
    Check("categorical", check_categorical, [
        "Weights w = exp((logits - max) / tau) need no normalizing: compare the cumulative sum "
        "with u times the total instead.",
        "c = np.cumsum(w, axis=1); the draw is the first k with c[:, k] >= u * c[:, -1] "
        "((c >= ...).argmax(axis=1) finds it).",
    ]),
    Check("sample_step", check_sample_step, [
        "pen = categorical(y[:, :3], u[:, 0], tau) and k = categorical(pi logits, u[:, 1], tau); "
        "then gather the chosen component's five numbers per row.",
        "Component k of row r: mu_x = y[r, 3 + M + k], mu_y = y[r, 3 + 2M + k], log sigma_x at "
        "3 + 3M + k, log sigma_y at 3 + 4M + k, rho logit at 3 + 5M + k; sigma = exp(.) * "
        "sqrt(tau), rho = tanh(.).",
        "dx = mu_x + sigma_x e1 and dy = mu_y + sigma_y (rho e1 + sqrt(1 - rho^2) e2).",
    ]),
]
