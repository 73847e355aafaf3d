"""Lesson 04's checks: BPTT against lstm_backward over a padded batch (1e-12) and against
central differences through every step (1e-6); the given forward against lstm_forward."""
import numpy as np

from minisketch.layers import lstm

from grading import Check, Wrong, compare, compare_all, gradient_check, unpack

# T, lengths (one full, one half, one single step...), D, H, dropout
CASES = ((7, (7, 4, 1), 4, 5, True), (5, (5, 5), 3, 4, False), (4, (1,), 2, 3, True))


def _case(seed, T, lengths, D, H, dropout):
    rng = np.random.default_rng(seed)
    B = len(lengths)
    mask = (np.arange(T)[:, None] < np.array(lengths)[None, :]).astype(np.float64)
    p = lstm.lstm_init(rng, D, H, dtype=np.float64)
    p["b"] = 0.1 * rng.standard_normal(4 * H)
    x = rng.standard_normal((T, B, D))
    state0 = 0.3 * rng.standard_normal((B, 2 * H))
    keep = (rng.random((T, B, H)) < 0.9) / 0.9 if dropout else None
    return p, x, state0, keep, mask


def _library_cache(p, x, state0, keep, mask):
    """The exercise's cache layout, built from the library's forward."""
    hs, state_T, cache = lstm.lstm_forward(x, state0, p, keep=keep, mask=mask)
    _, _, _, _, hs_all, cs_all, acts, _ = cache
    T = len(x)
    i, g, f, o, tc = np.split(acts, 5, axis=2)
    ex = dict(x=x, keep=keep, mask=mask, W_xh=p["W_xh"], W_hh=p["W_hh"],
              c_prev=cs_all[:T].copy(), h_prev=hs_all[:T].copy(), i=i, g=g, f=f, o=o, tc=tc)
    return hs.copy(), state_T, cache, ex


def check_forward(fn):
    for seed, case in enumerate(CASES):
        p, x, state0, keep, mask = _case(seed, *case)
        hs, state_T, _, _ = _library_cache(p, x, state0, keep, mask)
        got = unpack(fn(x, state0, p["W_xh"], p["W_hh"], p["b"], keep, mask), 3,
                     "hs, state_T, cache")
        compare("hs", got[0], hs, 1e-12)
        compare("state_T", got[1], state_T, 1e-12)


def check_backward(fn):
    for seed, case in enumerate(CASES):
        p, x, state0, keep, mask = _case(10 + seed, *case)
        _, _, lib_cache, ex_cache = _library_cache(p, x, state0, keep, mask)
        rng = np.random.default_rng(30 + seed)
        T, B, H = len(x), x.shape[1], p["W_hh"].shape[0]
        dhs = rng.standard_normal((T, B, H)) * mask[:, :, None]    # the loss reads real steps
        dstate_T = rng.standard_normal((B, 2 * H))
        got = unpack(fn(dhs.copy(), dstate_T.copy(), ex_cache), 3, "dx, dstate0, grads")
        dx, dstate0, grads = lstm.lstm_backward(dhs, dstate_T, lib_cache)
        tag = f" (T={T}, lengths {list(case[1])}{', dropout' if case[4] else ''})"
        compare("dx" + tag, got[0], dx, 1e-12)
        compare("dstate0" + tag, got[1], dstate0, 1e-12)
        compare_all(got[2], grads, 1e-12, "d{}" + tag)
        if np.any(np.asarray(got[0])[mask == 0]):
            raise Wrong("inputs at padding steps must get exactly zero gradient" + tag)

        def loss():
            hs_, st_, _ = lstm.lstm_forward(x, state0, p, keep=keep, mask=mask)
            return float(np.sum(hs_ * dhs) + np.sum(st_ * dstate_T))
        gradient_check(loss, {"x": x, "state0": state0, **p},
                       {"x": np.asarray(got[0]), "state0": np.asarray(got[1]), **got[2]})


CHECKS = [
    Check("lstm_sequence_forward", check_forward, [
        "This one is given: if it fails, compare your copy with the lesson's section 1.",
    ]),
    Check("lstm_sequence_backward", check_backward, [
        "Walk t = T-1 down to 0. The gradient reaching step t's output is dhs[t] + dh_next "
        "(h_t feeds the loss and the next step); the cell gets dc_next from the next step.",
        "Inside the loop it is lesson 03's step backward on cache[k][t], giving da_t [B, 4H]; "
        "then dh_next = da_t @ W_hh.T and dc_next = dc * f. At a padding step (mask 0) the "
        "forward copied the state, so da_t = 0 and both gradients pass straight through.",
        "With m = mask[t][:, None]: dA[t] = m * da; dc_next = m * dc * f + (1 - m) * dc_next; "
        "dh_next = dA[t] @ W_hh.T + (1 - m) * dh. After the loop: dA as [T*B, 4H] gives "
        "W_xh = X.T @ dA, W_hh = H_prev.T @ dA, b = dA.sum(0), dx = dA @ W_xh.T, and "
        "dstate0 = [dc_next | dh_next].",
    ]),
]
