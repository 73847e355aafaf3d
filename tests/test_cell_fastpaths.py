"""The fast LSTM and layer-norm LSTM (``minisketch/fast/``) against the reference layers: the two
work-saving options ``x_const`` (an input repeated at every step, projected once) and ``active``
(per-step count of leading real rows, only those computed), and the calls without them.

Equalities (float64): every output and gradient of the fast call equals the reference call's
(``layers/``, concatenated input, ``mask[t, b] = b < active[t]``) to float rounding: |got - ref| <=
1e-12 (|ref| + max|ref|) per tensor, the metric of tests/test_numba_kernels.py with its float64
tolerance tightened to 1e-12 (the two calls differ only in summation order: a split matmul, a
matmul over fewer rows, dA summed over time before the matmul). The Numba kernel set with both
options against the reference kernels with both options: tests/test_numba_kernels.py's metric
and tolerances (1e-10 float64, 1e-5 float32, with its float32 fallback to "no farther from the
float64 evaluation than the float32 reference, times 2").
Gradient check: minisketch.gradcheck with the recurrent-cell settings of tests/test_cells.py
(fourth-order stencil, eps 3e-6, TOL 1e-6, rounding floor from f_scale; layer-norm H drawn from
{1, 3, 4, 5} for the reason given there), with x_const and active both on.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minisketch.fast.cells import fast_cell
from minisketch.gradcheck import check_gradients
from minisketch.kernels import numba_cpu, reference
from minisketch.layers.cells import get_cell

NAMES = ["lstm", "layer_norm"]
EQ_TOL = 1e-12                       # optimized call vs plain call, float64
KERNEL_TOL = {np.float64: 1e-10, np.float32: 1e-5}
TOL = 1e-6                           # gradient checks, as tests/test_cells.py
EPS = 3e-6
HYP = settings(max_examples=15, deadline=None,
               suppress_health_check=[HealthCheck.too_slow,
                                      HealthCheck.function_scoped_fixture])
NB = numba_cpu.kernel_set()
# the cell functions that must be computed only on the active rows
CELL_FUNCS = ("lstm_cell_forward", "lstm_cell_backward", "ln_lstm_cell_forward",
              "ln_lstm_cell_backward")


@pytest.fixture(scope="module")
def warm_numba():
    """Compile (or load from Numba's cache) the serial kernels once for this module."""
    numba_cpu.warm_up(("float64", "float32"), parallel=False)


# ---------------------------------------------------------------------------------------------
# helpers

def _case(name, seed, T, B, Dx, Dc, H, keep_prob=None, perturb=0.3):
    """Random float64 params (init perturbed away from its special values), x [T, B, Dx],
    x_const [B, Dc], state0, keep, and the readout weights R [T, B, H], Rs [B, 2H]; the fast
    cell and the reference cell."""
    ref = get_cell(name)
    cell = fast_cell(ref)
    rng = np.random.default_rng(seed)
    p = cell.init(rng, Dx + Dc, H, np.float64)
    for k in p:
        p[k] = p[k] + perturb * rng.standard_normal(p[k].shape)
    S = cell.state_size(H)
    keep = None if keep_prob is None else (rng.random((T, B, H)) < keep_prob) / keep_prob
    return SimpleNamespace(
        cell=cell, ref=ref, p=p, x=rng.standard_normal((T, B, Dx)),
        x_const=rng.standard_normal((B, Dc)), state0=0.5 * rng.standard_normal((B, S)),
        keep=keep, R=rng.standard_normal((T, B, H)), Rs=rng.standard_normal((B, S)))


def _mask(active, B):
    """The mask [T, B] that says what ``active`` says: mask[t, b] = b < active[t]."""
    return (np.arange(B)[None, :] < np.asarray(active)[:, None]).astype(np.float64)


def _concat(x, x_const):
    """The input the cell sees with x_const: concat(x_t, x_const) at every step."""
    T = x.shape[0]
    return np.concatenate([x, np.broadcast_to(x_const[None], (T,) + x_const.shape)], axis=2)


def _active_from_draw(values):
    """Non-increasing active from arbitrary draws in [0, B]."""
    return sorted(values, reverse=True)


def _err(got, ref):
    """max over entries of |got - ref| / (|ref| + max|ref|) (0 for all-zero references)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if ref.size == 0:
        return 0.0
    den = np.abs(ref) + np.max(np.abs(ref))
    num = np.abs(got - ref)
    return float(np.max(np.where(den > 0, num / np.where(den > 0, den, 1.0), num)))


def assert_close(label, got, ref, tol, ref64=None):
    """|got - ref| <= tol (|ref| + max|ref|) elementwise (tests/test_numba_kernels.py's metric);
    with ``ref64`` (the reference in float64 on the same inputs) a float32 element that misses
    may instead be as close to ref64 as ref is, times 2, plus the same bound around ref64."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{label}: shape {got.shape} != {ref.shape}"
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(ref)), f"{label}: not finite"
    if ref.size == 0:
        return
    err = np.abs(got - ref)
    bound = tol * (np.abs(ref) + np.max(np.abs(ref)))
    bad = err > bound
    if ref64 is not None and bad.any():
        r64 = np.asarray(ref64, dtype=np.float64)
        own = np.abs(ref - r64)
        bad &= ~(np.abs(got - r64) <= 2.0 * own + tol * (np.abs(r64) + np.max(np.abs(r64))))
    if bad.any():
        k = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape)
        raise AssertionError(f"{label}: worst at {k}: got {got[k]!r}, reference {ref[k]!r}, "
                             f"|diff| {err[k]:.3e} > bound {bound[k]:.3e}")


def _run(c, *, x_const_mode, masking, active=None, kernels=None, dtype=np.float64,
         dhs=True, dstate=True, ref=False):
    """Forward + backward of case ``c``: the fast cell, or with ref=True the reference cell.

    x_const_mode: "const" (x and x_const separately) or "concat" (the concatenated input).
    masking: None, "mask" (mask built from ``active``) or "active".
    Returns (hs, state_T, dx, dx_const or None, dstate0, grads), all float64 NumPy copies;
    for "concat" dx is split into the x part and the x_const part summed over steps, so the
    two modes compare position by position."""
    cast = (lambda a: None if a is None else np.asarray(a, dtype=dtype))
    p = {k: cast(v) for k, v in c.p.items()}
    Dx = c.x.shape[2]
    kw = dict(keep=cast(c.keep), kernels=kernels)
    if masking == "mask":
        kw["mask"] = cast(_mask(active, c.x.shape[1]))
    elif masking == "active":
        kw["active"] = active
    cell = c.ref if ref else c.cell
    if x_const_mode == "const":
        hs, sT, cache = cell.forward(cast(c.x), cast(c.state0), p, x_const=cast(c.x_const),
                                     **kw)
    else:
        hs, sT, cache = cell.forward(cast(_concat(c.x, c.x_const)), cast(c.state0), p, **kw)
    hs, sT = hs.copy(), sT.copy()
    dx, ds0, grads = cell.backward(cast(c.R) if dhs else None,
                                   cast(c.Rs) if dstate else None, cache)
    if x_const_mode == "const":
        assert isinstance(dx, tuple) and len(dx) == 2
        dx_seq, dx_const = dx
        assert dx_seq.shape == c.x.shape and dx_const.shape == c.x_const.shape
    else:
        assert dx.shape == c.x.shape[:2] + (Dx + c.x_const.shape[1],)
        dx_seq, dx_const = dx[..., :Dx], dx[..., Dx:].sum(axis=0)
    assert set(grads) == set(c.p)
    for k in grads:
        assert grads[k].shape == c.p[k].shape, k
        assert grads[k].dtype == dtype, k
    f64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    return (f64(hs), f64(sT), f64(dx_seq), f64(dx_const), f64(ds0),
            {k: f64(v) for k, v in grads.items()})


OUT_NAMES = ("hs", "state_T", "dx", "dx_const", "dstate0")


def _compare(label, got, ref, tol, ref64=None):
    """assert_close every output and gradient of two ``_run`` results; returns the worst
    _err over them."""
    worst = 0.0
    for j, nm in enumerate(OUT_NAMES):
        assert_close(f"{label} {nm}", got[j], ref[j], tol,
                     None if ref64 is None else ref64[j])
        worst = max(worst, _err(got[j], ref[j]))
    for k in ref[5]:
        assert_close(f"{label} grad {k}", got[5][k], ref[5][k], tol,
                     None if ref64 is None else ref64[5][k])
        worst = max(worst, _err(got[5][k], ref[5][k]))
    return worst


def _spy_kernels(base, calls):
    """``base``'s kernel set with the cell functions wrapped: each call records (name, rows)
    and checks that every array argument is C-contiguous (the Numba and CuPy kernels rely
    on it) and that no mask is passed."""
    ns = SimpleNamespace(**vars(base))
    for fname in CELL_FUNCS:
        fn = getattr(base, fname)

        def wrapped(*args, _fn=fn, _name=fname):
            arrays = [a for a in args if isinstance(a, np.ndarray)]
            assert all(a.flags.c_contiguous for a in arrays), _name
            ln = _name.startswith("ln_")
            assert args[4 if ln else 5] is None, f"{_name} got a mask"
            rows = args[1].shape[0] if ln else args[2].shape[0]
            calls.append((_name, rows))
            return _fn(*args)
        setattr(ns, fname, wrapped)
    return ns


# ---------------------------------------------------------------------------------------------
# x_const == concatenated input

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("keep_prob", [None, 0.7])
@pytest.mark.parametrize("masking", [None, "mask", "active"])
def test_x_const_equals_concatenated_input(name, keep_prob, masking):
    T, B, Dx, Dc, H = 6, 5, 3, 4, 5
    c = _case(name, 101, T, B, Dx, Dc, H, keep_prob=keep_prob)
    active = [5, 5, 4, 2, 2, 0]
    got = _run(c, x_const_mode="const", masking=masking, active=active)
    ref = _run(c, x_const_mode="concat", masking=masking and "mask", active=active, ref=True)
    _compare(f"{name} x_const", got, ref, EQ_TOL)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("keep_prob", [None, 0.7])
@pytest.mark.parametrize("masking", [None, "mask"])
def test_fast_without_options_equals_reference(name, keep_prob, masking):
    c = _case(name, 303, 6, 5, 3, 4, 5, keep_prob=keep_prob)
    active = [5, 4, 4, 2, 1, 0]
    for dhs, dstate in ((True, True), (True, False), (False, True)):
        got = _run(c, x_const_mode="concat", masking=masking, active=active, dhs=dhs,
                   dstate=dstate)
        ref = _run(c, x_const_mode="concat", masking=masking, active=active, dhs=dhs,
                   dstate=dstate, ref=True)
        _compare(f"{name} fast vs reference dhs={dhs} dstate={dstate}", got, ref, EQ_TOL)


@pytest.mark.parametrize("name", NAMES)
def test_x_const_equals_concatenated_input_hypothesis(name):
    @HYP
    @given(T=st.integers(1, 5), B=st.integers(1, 4), Dx=st.integers(1, 3), Dc=st.integers(0, 3),
           H=st.integers(1, 5), keep=st.booleans(), masking=st.sampled_from([None, "active"]),
           seed=st.integers(0, 2 ** 31 - 1), data=st.data())
    def check(T, B, Dx, Dc, H, keep, masking, seed, data):
        c = _case(name, seed, T, B, Dx, Dc, H, keep_prob=0.75 if keep else None)
        active = _active_from_draw(data.draw(st.lists(st.integers(0, B), min_size=T,
                                                      max_size=T)))
        # both options together against neither: concatenated input with the mask
        got = _run(c, x_const_mode="const", masking=masking, active=active)
        ref = _run(c, x_const_mode="concat", masking=None if masking is None else "mask",
                   active=active, ref=True)
        _compare(f"{name} x_const", got, ref, EQ_TOL)
    check()


# ---------------------------------------------------------------------------------------------
# active == mask

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("keep_prob", [None, 0.7])
@pytest.mark.parametrize("active", [[4, 4, 4, 4, 4], [4, 3, 3, 1, 0], [0, 0, 0, 0, 0],
                                    [2, 2, 1, 1, 1], [4, 0, 0, 0, 0]])
def test_active_equals_mask(name, keep_prob, active):
    c = _case(name, 202, 5, 4, 3, 2, 4, keep_prob=keep_prob)
    for dhs, dstate in ((True, True), (True, False), (False, True)):
        got = _run(c, x_const_mode="concat", masking="active", active=active, dhs=dhs,
                   dstate=dstate)
        ref = _run(c, x_const_mode="concat", masking="mask", active=active, dhs=dhs,
                   dstate=dstate, ref=True)
        _compare(f"{name} active {active} dhs={dhs} dstate={dstate}", got, ref, EQ_TOL)


@pytest.mark.parametrize("name", NAMES)
def test_active_equals_mask_hypothesis(name):
    @HYP
    @given(T=st.integers(1, 6), B=st.integers(1, 5), H=st.integers(1, 5), keep=st.booleans(),
           use_const=st.booleans(), seed=st.integers(0, 2 ** 31 - 1), data=st.data())
    def check(T, B, H, keep, use_const, seed, data):
        c = _case(name, seed, T, B, 2, 3, H, keep_prob=0.75 if keep else None)
        active = _active_from_draw(data.draw(st.lists(st.integers(0, B), min_size=T,
                                                      max_size=T)))
        got = _run(c, x_const_mode="const" if use_const else "concat", masking="active",
                   active=active)
        ref = _run(c, x_const_mode="concat", masking="mask", active=active, ref=True)
        _compare(f"{name} active {active}", got, ref, EQ_TOL)
    check()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("as_type", [list, tuple, np.array])
def test_active_accepts_host_sequences(name, as_type):
    c = _case(name, 5, 4, 3, 2, 1, 3)
    active = [3, 2, 2, 0]
    got = _run(c, x_const_mode="const", masking="active", active=as_type(active))
    ref = _run(c, x_const_mode="const", masking="active", active=active)
    _compare(f"{name} {as_type.__name__}", got, ref, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_active_computes_only_the_active_rows(name):
    """The step kernels see exactly active[t] rows (C-contiguous slices, no mask) and are not
    called at a step with no active row."""
    c = _case(name, 9, 6, 5, 2, 2, 3, keep_prob=0.8)
    active = [5, 4, 4, 2, 0, 0]
    calls = []
    K = _spy_kernels(reference.kernel_set(), calls)
    _run(c, x_const_mode="const", masking="active", active=active, kernels=K)
    prefix = "lstm" if name == "lstm" else "ln_lstm"
    fwd = [r for f, r in calls if f == f"{prefix}_cell_forward"]
    bwd = [r for f, r in calls if f == f"{prefix}_cell_backward"]
    assert fwd == [n for n in active if n > 0]
    assert bwd == [n for n in reversed(active) if n > 0]


# ---------------------------------------------------------------------------------------------
# Numba kernels with both options

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_kernels_with_both_options(name, dtype, warm_numba):
    @HYP
    @given(T=st.integers(1, 5), B=st.integers(1, 5), H=st.integers(1, 9), keep=st.booleans(),
           seed=st.integers(0, 2 ** 31 - 1), data=st.data())
    def check(T, B, H, keep, seed, data):
        c = _case(name, seed, T, B, 3, 4, H, keep_prob=0.75 if keep else None)
        active = _active_from_draw(data.draw(st.lists(st.integers(0, B), min_size=T,
                                                      max_size=T)))
        kw = dict(x_const_mode="const", masking="active", active=active)
        got = _run(c, kernels=NB, dtype=dtype, **kw)
        ref = _run(c, dtype=dtype, **kw)
        ref64 = None
        if dtype == np.float32:
            # the reference in float64 on the same (float32-rounded) inputs
            c64 = SimpleNamespace(**vars(c))
            r32 = lambda a: None if a is None else a.astype(np.float32).astype(np.float64)  # noqa
            for k in ("x", "x_const", "state0", "keep", "R", "Rs"):
                setattr(c64, k, r32(getattr(c, k)))
            c64.p = {k: r32(v) for k, v in c.p.items()}
            ref64 = _run(c64, **kw)
        _compare(f"{name} numba {np.dtype(dtype).name}", got, ref, KERNEL_TOL[dtype], ref64)
    check()


# ---------------------------------------------------------------------------------------------
# gradient check with both options on

@pytest.mark.parametrize("name", NAMES)
def test_gradients_with_x_const_and_active(name):
    hidden = st.integers(1, 4) if name == "lstm" else st.sampled_from([1, 3, 4, 5])

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(T=st.integers(1, 5), B=st.integers(1, 4), Dx=st.integers(1, 3), Dc=st.integers(1, 3),
           H=hidden, keep=st.booleans(), seed=st.integers(0, 2 ** 31 - 1), data=st.data())
    def check(T, B, Dx, Dc, H, keep, seed, data):
        c = _case(name, seed, T, B, Dx, Dc, H, keep_prob=0.75 if keep else None)
        active = _active_from_draw(data.draw(st.lists(st.integers(0, B), min_size=T,
                                                      max_size=T)))
        fwd = lambda: c.cell.forward(c.x, c.state0, c.p, keep=c.keep, x_const=c.x_const,  # noqa
                                     active=active)

        def loss():
            hs, sT, _ = fwd()
            return float(np.sum(hs * c.R) + np.sum(sT * c.Rs))
        hs, sT, cache = fwd()
        (dx, dx_const), ds0, grads = c.cell.backward(c.R, c.Rs, cache)
        params = dict(c.p, x=c.x, x_const=c.x_const, state0=c.state0)
        ana = dict(grads, x=dx, x_const=dx_const, state0=ds0)
        f_scale = np.sum(np.abs(hs * c.R)) + np.sum(np.abs(sT * c.Rs))
        errs = check_gradients(loss, params, ana, eps=EPS, tol=TOL, order=4, f_scale=f_scale)
        assert max(errs.values()) < TOL, errs
    check()


# ---------------------------------------------------------------------------------------------
# argument checks

class _FakeDeviceArray:
    """Stands in for a CuPy array (what the check looks at)."""
    __cuda_array_interface__ = {}

    def __len__(self):
        return 3


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [
    [3, 2],                     # wrong length (T = 3)
    [3, 2, 1, 0],               # wrong length
    [[3, 2, 1]],                # not 1-D
    [2, 3, 1],                  # increasing
    [0, 0, 1],                  # increasing at the end
    [4, 2, 1],                  # > B (B = 3)
    [3, 2, -1],                 # < 0
    [3.0, 2.0, 1.0],            # not integers
    np.array([3.0, 2.0, 1.0]),  # not integers
])
def test_bad_active_raises(name, bad):
    c = _case(name, 0, 3, 3, 2, 1, 2)
    with pytest.raises(ValueError):
        c.cell.forward(c.x, c.state0, c.p, active=bad)


@pytest.mark.parametrize("name", NAMES)
def test_active_with_mask_or_on_device_raises(name):
    c = _case(name, 0, 3, 3, 2, 1, 2)
    with pytest.raises(ValueError, match="mask"):
        c.cell.forward(c.x, c.state0, c.p, mask=_mask([3, 2, 1], 3), active=[3, 2, 1])
    with pytest.raises(TypeError, match="host"):
        c.cell.forward(c.x, c.state0, c.p, active=_FakeDeviceArray())


@pytest.mark.parametrize("name", NAMES)
def test_bad_x_const_shape_raises(name):
    c = _case(name, 0, 3, 3, 2, 2, 2)
    with pytest.raises(ValueError, match="x_const"):
        c.cell.forward(c.x, c.state0, c.p, x_const=c.x_const[:, :1])     # Dx + Dc != D
    with pytest.raises(ValueError, match="x_const"):
        c.cell.forward(c.x, c.state0, c.p, x_const=c.x_const[:2])        # wrong batch
