"""Lesson 03's checks: the step against lstm_cell_forward, the backward against lstm_backward
with T = 1 (1e-12) and against central differences of the library's forward (1e-6)."""
import numpy as np

from minisketch.layers import lstm

from grading import Check, compare, compare_all, gradient_check, unpack

CASES = ((3, 4, 5, True), (1, 2, 3, False), (4, 3, 3, True))   # B, D, H, dropout


def _case(seed, B, D, H, dropout):
    rng = np.random.default_rng(seed)
    p = lstm.lstm_init(rng, D, H, dtype=np.float64)
    p["b"] = 0.1 * rng.standard_normal(4 * H)
    x = rng.standard_normal((B, D))
    c_prev, h_prev = 0.5 * rng.standard_normal((B, H)), 0.5 * rng.standard_normal((B, H))
    keep = (rng.random((B, H)) < 0.9) / 0.9 if dropout else None
    return p, x, c_prev, h_prev, keep


def _library_step(p, x, c_prev, h_prev, keep):
    B, H = c_prev.shape
    c, h, act = np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))
    lstm.lstm_cell_forward(x @ p["W_xh"] + p["b"], h_prev @ p["W_hh"], c_prev, h_prev, keep, None,
                           c, h, act)
    i, g, f, o, tc = np.split(act, 5, axis=1)
    cache = dict(x=x, c_prev=c_prev, h_prev=h_prev, i=i, g=g, f=f, o=o, tc=tc, keep=keep)
    return c, h, cache


def check_forward(fn):
    for seed, (B, D, H, dropout) in enumerate(CASES):
        p, x, c_prev, h_prev, keep = _case(seed, B, D, H, dropout)
        c, h, want_cache = _library_step(p, x, c_prev, h_prev, keep)
        got = unpack(fn(x, c_prev, h_prev, p["W_xh"], p["W_hh"], p["b"], keep), 3, "c, h, cache")
        tag = f" (B={B}, H={H}{', dropout' if dropout else ''})"
        compare("c" + tag, got[0], c, 1e-12)
        compare("h" + tag, got[1], h, 1e-12)
        compare_all(got[2], {k: want_cache[k] for k in "igfo"} | {"tc": want_cache["tc"]},
                    1e-12, "cache['{}']" + tag)


def check_backward(fn):
    for seed, (B, D, H, dropout) in enumerate(CASES):
        p, x, c_prev, h_prev, keep = _case(10 + seed, B, D, H, dropout)
        _, _, cache = _library_step(p, x, c_prev, h_prev, keep)
        rng = np.random.default_rng(20 + seed)
        Gh, Gc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
        got = fn(Gh.copy(), Gc.copy(), dict(cache), p["W_xh"], p["W_hh"])
        state0 = np.concatenate([c_prev, h_prev], axis=1)
        _, _, seq_cache = lstm.lstm_forward(x[None], state0, p,
                                            keep=None if keep is None else keep[None])
        dx, dstate0, g = lstm.lstm_backward(Gh[None], np.concatenate([Gc, 0 * Gc], 1), seq_cache)
        want = {"x": dx[0], "c_prev": dstate0[:, :H], "h_prev": dstate0[:, H:], **g}
        compare_all(got, want, 1e-12, f"d{{}} (B={B}, H={H}{', dropout' if dropout else ''})")

        def loss():
            c, h, _ = _library_step(p, x, c_prev, h_prev, keep)
            return float(np.sum(h * Gh) + np.sum(c * Gc))
        gradient_check(loss, {"x": x, "c_prev": c_prev, "h_prev": h_prev, **p},
                       {k: np.asarray(got[k]) for k in want})


CHECKS = [
    Check("lstm_step_forward", check_forward, [
        "a = x @ W_xh + h_prev @ W_hh + b is [B, 4H]; the four gates are its column blocks "
        "a[:, k*H:(k+1)*H] in the order i, j, f, o.",
        "i, f, o are sigmoids (f of a_f + 1), g = tanh(a_j); dropout multiplies g by keep only "
        "inside c = f * c_prev + i * (g * keep); h = o * tanh(c).",
        "Return c, h and dict(x=x, c_prev=c_prev, h_prev=h_prev, i=i, g=g, f=f, o=o, "
        "tc=np.tanh(c), keep=keep), with g before dropout.",
    ]),
    Check("lstm_step_backward", check_backward, [
        "Undo the forward lines from the bottom up: first h = o * tanh(c), then "
        "c = f * c_prev + i * gd, then the gates, then the matmul.",
        "dc gets two contributions: the dc passed in, plus dh * o * (1 - tanh(c)^2). Gate "
        "derivatives: sigmoid' = s (1 - s), tanh' = 1 - tanh^2; with dropout, dg = dc * i * keep.",
        "Stack da = [di i(1-i) | dg (1-g^2) | df f(1-f) | do o(1-o)] into [B, 4H]; then "
        "lesson 02: x = da @ W_xh.T, h_prev = da @ W_hh.T, W_xh = x.T @ da, W_hh = h_prev.T @ da, "
        "b = da.sum(0), and c_prev = dc * f.",
    ]),
]
