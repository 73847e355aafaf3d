"""The fast HyperLSTM (fast/hyper_lstm.py) against the reference (layers/hyper_lstm.py): ``x_const``
(an input part repeated at every step, projected once) and ``active`` (leading-row padding, only
the active rows computed) must give the reference's numbers:

    * x_const == the reference on the concatenated input concat(x_t, x_const) at every step:
      forward outputs, dx_seq == dx[..., :Dx], dx_const == dx[..., Dx:] summed over steps,
      dstate0, every grad;
    * active == the reference's mask with mask[t, b] = (b < active[t]);
    * the per-step and the all-steps parameter sums of the fast backward agree;
    * the Numba kernel set == the reference set with both options on;
    * central-difference gradient checks with both options on (the metric, stencil, eps and
      tolerance of tests/test_cells.py, and its HyperLSTM shapes: H in {1, 3, 4, 5}, Hh 3, E 2).

Equalities are float64 to 1e-12 relative to the tensor's largest entry (the only differences are
the matmuls' summation orders: a [T B, Dx] @ [Dx, G] plus a [B, Dc] @ [Dc, G] product instead of
one [T B, D] @ [D, G], and n-row instead of B-row products).
"""
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minisketch.fast.cells import fast_cell
from minisketch.fast.sequence import ln_param_grads_into
from minisketch.gradcheck import check_gradients
from minisketch.kernels import numba_cpu, reference
from minisketch.layers import layer_norm_lstm
from minisketch.layers.cells import get_cell

HH, EMB = 3, 2                  # hyper_num_units, hyper_embedding_size (as in test_cells.py)
REF = get_cell("hyper", hyper_num_units=HH, hyper_embedding_size=EMB)
CELL = fast_cell(REF)
TOL = 1e-6                      # gradient check: tests/test_cells.py's TOL, EPS and stencil
EPS = 3e-6
EQ = 1e-12                      # float64 equality of two ways to compute the same thing
HYP = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _case(seed, T, B, Dx, Dc, H, keep_prob=None, lengths=None, perturb=0.3, scale=1.0):
    """Random float64 parameters (init perturbed), inputs split into x_seq [T, B, Dx] and
    x_const [B, Dc], a batch sorted by length (longest first) as mask and as active."""
    rng = np.random.default_rng(seed)
    p = CELL.init(rng, Dx + Dc, H, np.float64)
    for k in p:
        p[k] = p[k] + perturb * rng.standard_normal(p[k].shape)
    S = CELL.state_size(H)
    x = scale * rng.standard_normal((T, B, Dx))
    xc = scale * rng.standard_normal((B, Dc))
    state0 = 0.5 * rng.standard_normal((B, S))
    keep = None if keep_prob is None else (rng.random((T, B, H)) < keep_prob) / keep_prob
    if lengths is None:
        lengths = rng.integers(0, T + 1, size=B)
    lengths = np.sort(np.asarray(lengths))[::-1]
    active = [int(np.sum(lengths > t)) for t in range(T)]
    mask = (np.arange(B)[None, :] < np.asarray(active)[:, None]).astype(np.float64)
    R = rng.standard_normal((T, B, H))
    Rs = rng.standard_normal((B, S))
    return SimpleNamespace(p=p, x=x, xc=xc, state0=state0, keep=keep, mask=mask, active=active,
                           R=R, Rs=Rs, T=T, B=B, Dx=Dx)


def _full(c):
    """The concatenated input concat(x_t, x_const) at every step: [T, B, Dx + Dc]."""
    return np.concatenate([c.x, np.broadcast_to(c.xc, (c.T,) + c.xc.shape)], axis=2)


def _run(c, x, dstate=True, dhs=True, ref=False, **kw):
    """Forward + backward of the fast cell, or with ref=True of the reference cell."""
    cell = REF if ref else CELL
    hs, sT, cache = cell.forward(x, c.state0, c.p, keep=c.keep, **kw)
    hs = hs.copy()
    dx, ds0, grads = cell.backward(c.R if dhs else None, c.Rs if dstate else None, cache)
    return hs, sT, dx, ds0, grads


def _rel(got, ref):
    """max |got - ref| / max |ref| (0 when both are all zeros)."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    d = float(np.max(np.abs(got - ref))) if got.size else 0.0
    s = float(np.max(np.abs(ref))) if ref.size else 0.0
    return d / s if s > 0 else d


def _assert_same(got, ref, tol=EQ):
    """got and ref: (hs, state_T, dx, dstate0, grads); dx of ``got`` may be a (seq, const)
    pair when ``ref``'s is one array (then compared with ref's split, the const part summed)."""
    errs = {"hs": _rel(got[0], ref[0]), "state_T": _rel(got[1], ref[1]),
            "dstate0": _rel(got[3], ref[3])}
    if isinstance(got[2], tuple) and not isinstance(ref[2], tuple):
        Dx = got[2][0].shape[2]
        errs["dx_seq"] = _rel(got[2][0], ref[2][..., :Dx])
        errs["dx_const"] = _rel(got[2][1], ref[2][..., Dx:].sum(axis=0))
    elif isinstance(got[2], tuple):
        errs["dx_seq"] = _rel(got[2][0], ref[2][0])
        errs["dx_const"] = _rel(got[2][1], ref[2][1])
    else:
        errs["dx"] = _rel(got[2], ref[2])
    assert set(got[4]) == set(ref[4])
    for k in ref[4]:
        errs[k] = _rel(got[4][k], ref[4][k])
    assert max(errs.values()) <= tol, errs
    return errs


# ---------------------------------------------------------------------------------------------
# x_const == the concatenated input

@pytest.mark.parametrize("padding", ["none", "mask", "active"])
@pytest.mark.parametrize("keep_prob", [None, 0.7])
def test_x_const_equals_concatenated_input(padding, keep_prob):
    c = _case(3, 6, 5, 4, 3, 5, keep_prob=keep_prob, lengths=[6, 6, 4, 1, 0])
    pad = {"none": {}, "mask": {"mask": c.mask}, "active": {"active": c.active}}[padding]
    ref = _run(c, _full(c), ref=True, **({} if padding == "none" else {"mask": c.mask}))
    got = _run(c, c.x, x_const=c.xc, **pad)
    assert isinstance(got[2], tuple) and got[2][0].shape == c.x.shape
    assert got[2][1].shape == c.xc.shape
    _assert_same(got, ref)


@HYP
@given(T=st.integers(1, 5), B=st.integers(1, 5), Dx=st.integers(1, 3), Dc=st.integers(1, 3),
       H=st.integers(1, 5), seed=st.integers(0, 2 ** 31 - 1), dropout=st.booleans(),
       padding=st.sampled_from(["none", "mask", "active"]), dstate=st.booleans())
def test_x_const_equals_concatenated_input_random(T, B, Dx, Dc, H, seed, dropout, padding,
                                                  dstate):
    c = _case(seed, T, B, Dx, Dc, H, keep_prob=0.75 if dropout else None)
    pad = {"none": {}, "mask": {"mask": c.mask}, "active": {"active": c.active}}[padding]
    ref = _run(c, _full(c), dstate=dstate, ref=True,
               **({} if padding == "none" else {"mask": c.mask}))
    _assert_same(_run(c, c.x, dstate=dstate, x_const=c.xc, **pad), ref)


def test_x_const_float32_keeps_dtype():
    c = _case(4, 3, 2, 2, 2, 3)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    hs, sT, cache = CELL.forward(f32(c.x), f32(c.state0), {k: f32(v) for k, v in c.p.items()},
                                 x_const=f32(c.xc), active=c.active)
    (dxs, dxc), ds0, grads = CELL.backward(f32(c.R), None, cache)
    assert hs.dtype == sT.dtype == dxs.dtype == dxc.dtype == ds0.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


# ---------------------------------------------------------------------------------------------
# active == mask

@pytest.mark.parametrize("keep_prob", [None, 0.7])
@pytest.mark.parametrize("lengths", [[6, 6, 4, 1, 0], [6, 6, 6, 6, 6], [0, 0, 0, 0, 0],
                                     [3, 2, 2, 0, 0]])
def test_active_equals_mask(keep_prob, lengths):
    c = _case(5, 6, 5, 3, 2, 4, keep_prob=keep_prob, lengths=lengths)
    x = _full(c)
    _assert_same(_run(c, x, active=c.active), _run(c, x, mask=c.mask, ref=True))
    _assert_same(_run(c, x, mask=c.mask), _run(c, x, mask=c.mask, ref=True))


@HYP
@given(T=st.integers(1, 6), B=st.integers(1, 6), D=st.integers(1, 3), H=st.integers(1, 5),
       seed=st.integers(0, 2 ** 31 - 1), dropout=st.booleans(), dstate=st.booleans(),
       dhs=st.booleans(), kind=st.sampled_from(["list", "tuple", "array"]), data=st.data())
def test_active_equals_mask_random(T, B, D, H, seed, dropout, dstate, dhs, kind, data):
    lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    c = _case(seed, T, B, D, 1, H, keep_prob=0.75 if dropout else None, lengths=lengths)
    x = _full(c)
    active = {"list": list, "tuple": tuple, "array": np.array}[kind](c.active)
    _assert_same(_run(c, x, dstate=dstate, dhs=dhs, active=active),
                 _run(c, x, dstate=dstate, dhs=dhs, mask=c.mask, ref=True))


@HYP
@given(T=st.integers(1, 6), B=st.integers(1, 5), Dx=st.integers(1, 3), H=st.integers(1, 5),
       seed=st.integers(0, 2 ** 31 - 1), dropout=st.booleans(),
       padding=st.sampled_from(["none", "mask", "active"]), x_const=st.booleans())
def test_per_step_and_all_steps_parameter_sums_agree(T, B, Dx, H, seed, dropout, padding,
                                                     x_const):
    """W_alpha's and the layer norms' gradients summed step by step (the host default) or kept
    and reduced once after the loop (the GPU default): the same numbers to float rounding. The
    norms' never-written padding rows are filled with nan first: the all-steps reductions read
    every row, so they must be zeroed, not trusted."""
    c = _case(seed, T, B, Dx, 2, H, keep_prob=0.75 if dropout else None)
    x = c.x if x_const else _full(c)
    kw = {"x_const": c.xc} if x_const else {}
    kw.update({"none": {}, "mask": {"mask": c.mask}, "active": {"active": c.active}}[padding])
    out = {}
    for per_step in (True, False):
        hs, sT, cache = CELL.forward(x, c.state0, c.p, keep=c.keep, **kw)
        sv, active = cache[8], cache[5]
        if active is not None:
            for t, n in enumerate(active):
                sv.norm[t][n:] = np.nan
                sv.hnorm[t][n:] = np.nan
        hs = hs.copy()
        dx, ds0, grads = CELL.backward(c.R, c.Rs, cache, per_step=per_step)
        assert all(np.isfinite(g).all() for g in grads.values())
        out[per_step] = (hs, sT, dx, ds0, grads)
    _assert_same(out[False], out[True])


def test_active_padding_rows_pass_through_exactly():
    """Rows past active[t] copy the state: a row that never runs ends at its state0, and hs of
    a row after its last real step repeats its last h."""
    c = _case(6, 5, 4, 2, 2, 3, keep_prob=0.8, lengths=[5, 3, 1, 0])
    hs, sT, _ = CELL.forward(c.x, c.state0, c.p, keep=c.keep, x_const=c.xc, active=c.active)
    np.testing.assert_array_equal(sT[3], c.state0[3])
    for b, L in enumerate([5, 3, 1, 0]):
        for t in range(L, 5):
            np.testing.assert_array_equal(hs[t, b], hs[L - 1, b] if L else c.state0[b, :3])


class _Spy:
    """A kernel set that records the rows each step function gets and checks that every array
    argument is C-contiguous (what the Numba and CuPy kernels need)."""

    def __init__(self, ks):
        self.calls = []
        for name in ("ln_lstm_cell_forward", "ln_lstm_cell_backward",
                     "hyper_modulate_forward", "hyper_modulate_backward"):
            setattr(self, name, self._wrap(name, getattr(ks, name)))
        self.matmul = ks.matmul      # products take views of any layout: not checked

    def _wrap(self, name, fn):
        def call(*args):
            for i, a in enumerate(args):
                if isinstance(a, np.ndarray) and a.ndim > 1:
                    assert a.flags.c_contiguous, (name, i, a.shape, a.strides)
            rows = args[0].shape[0]
            self.calls.append((name, rows))
            return fn(*args)
        return call


def test_active_runs_only_the_active_rows_on_contiguous_arrays():
    c = _case(8, 6, 4, 2, 2, 3, keep_prob=0.8, lengths=[5, 4, 2, 0])
    spy = _Spy(reference.kernel_set())
    _, _, cache = CELL.forward(c.x, c.state0, c.p, keep=c.keep, x_const=c.xc,
                               active=c.active, kernels=spy)
    assert c.active == [3, 3, 2, 2, 1, 0]
    want = [n for n in c.active if n > 0]          # the step with n = 0 does no work
    fwd = [(name, rows) for name, rows in spy.calls]
    assert fwd == [(nm, n) for n in want for nm in ("ln_lstm_cell_forward",
                                                    "hyper_modulate_forward",
                                                    "ln_lstm_cell_forward")]
    spy.calls.clear()
    CELL.backward(c.R, c.Rs, cache)
    assert spy.calls == [(nm, n) for n in want[::-1] for nm in ("ln_lstm_cell_backward",
                                                                "hyper_modulate_backward",
                                                                "ln_lstm_cell_backward")]
    c0 = _case(8, 3, 4, 2, 2, 3, lengths=[0, 0, 0, 0])
    spy.calls.clear()
    hs, sT, cache = CELL.forward(_full(c0), c0.state0, c0.p, active=c0.active, kernels=spy)
    CELL.backward(c0.R, c0.Rs, cache)
    assert spy.calls == []


# ---------------------------------------------------------------------------------------------
# Numba kernel set == reference set with both options

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("keep_prob", [None, 0.7])
def test_numba_kernels_match_reference(dtype, keep_prob):
    c = _case(9, 6, 5, 4, 3, 8, keep_prob=keep_prob, lengths=[6, 5, 5, 2, 0], perturb=0.1)
    cast = lambda a: None if a is None else np.asarray(a, dtype=dtype)  # noqa: E731
    p = {k: cast(v) for k, v in c.p.items()}
    out = {}
    for name, ks in (("ref", reference.kernel_set()), ("numba", numba_cpu.kernel_set())):
        hs, sT, cache = CELL.forward(cast(c.x), cast(c.state0), p, keep=cast(c.keep),
                                     x_const=cast(c.xc), active=c.active, kernels=ks)
        hs = hs.copy()
        dx, ds0, grads = CELL.backward(cast(c.R), cast(c.Rs), cache)
        out[name] = (hs, sT, dx, ds0, grads)
    tol = {np.float64: 1e-10, np.float32: 1e-5}[dtype]
    got, ref = out["numba"], out["ref"]
    assert got[0].dtype == dtype
    _assert_same(got, ref, tol=tol)


# ---------------------------------------------------------------------------------------------
# gradient check with both options on

@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(T=st.integers(1, 4), B=st.integers(1, 3), Dx=st.integers(1, 3), Dc=st.integers(1, 2),
       H=st.sampled_from([1, 3, 4, 5]), seed=st.integers(0, 2 ** 31 - 1),
       dropout=st.booleans(), scale=st.floats(0.1, 2.0), data=st.data())
def test_gradients_x_const_and_active(T, B, Dx, Dc, H, seed, dropout, scale, data):
    """check_gradients as tests/test_cells.py uses it (fourth-order stencil, eps 3e-6, tol 1e-6,
    rounding floor from sum |terms|; H in {1, 3, 4, 5}: see its docstring for why not 2)."""
    lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    c = _case(seed, T, B, Dx, Dc, H, keep_prob=0.75 if dropout else None, lengths=lengths,
              scale=scale)
    params = dict(c.p, x=c.x, x_const=c.xc, state0=c.state0)

    def forward():
        return CELL.forward(params["x"], params["state0"], c.p, keep=c.keep,
                            x_const=params["x_const"], active=c.active)

    def loss():
        hs, sT, _ = forward()
        return float(np.sum(hs * c.R) + np.sum(sT * c.Rs))

    hs, sT, cache = forward()
    (dx, dxc), ds0, grads = CELL.backward(c.R, c.Rs, cache)
    ana = dict(grads, x=dx, x_const=dxc, state0=ds0)
    f_scale = np.sum(np.abs(hs * c.R)) + np.sum(np.abs(sT * c.Rs))
    errs = check_gradients(loss, params, ana, eps=EPS, tol=TOL, max_entries=20, order=4,
                           f_scale=f_scale)
    assert max(errs.values()) < TOL, errs


# ---------------------------------------------------------------------------------------------
# argument checks

@pytest.mark.parametrize("active, why", [
    ([3, 3, 2], "length"), ([3, 3, 2, 1, 0, 0], "length"), ([[3, 3, 2, 1, 0]], "length"),
    ([3, 3, 4, 1, 0], "increasing"), ([2, 3, 2, 1, 0], "increasing"),
    ([5, 3, 2, 1, 0], "range"), ([3, 3, 2, 1, -1], "range"),
    ([3.0, 3.0, 2.0, 1.0, 0.0], "integers"), ([3, 3, 2.5, 1, 0], "integers")])
def test_bad_active_raises(active, why):
    c = _case(1, 5, 4, 2, 1, 3)
    with pytest.raises(ValueError):
        CELL.forward(_full(c), c.state0, c.p, active=active)


def test_active_with_mask_raises():
    c = _case(1, 5, 4, 2, 1, 3)
    with pytest.raises(ValueError, match="mask or active"):
        CELL.forward(_full(c), c.state0, c.p, mask=c.mask, active=c.active)


def test_active_device_array_raises():
    class FakeDevice:
        __cuda_array_interface__ = {}
    c = _case(1, 5, 4, 2, 1, 3)
    with pytest.raises(TypeError):
        CELL.forward(_full(c), c.state0, c.p, active=FakeDevice())


def test_bad_x_const_raises():
    c = _case(1, 5, 4, 2, 2, 3)
    with pytest.raises(ValueError, match="x_const"):
        CELL.forward(c.x, c.state0, c.p, x_const=c.xc[:, :1])
    with pytest.raises(ValueError, match="x_const"):
        CELL.forward(c.x, c.state0, c.p, x_const=c.xc[:3])


# ---------------------------------------------------------------------------------------------
# the per-step layer-norm sums

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ln_param_grads_into_buffers_equal_fresh(dtype):
    # the fast hyper_lstm_backward sums these a step at a time into two reused [5H] buffers: the
    # same numbers as fresh arrays, written into those buffers
    rng = np.random.default_rng(3)
    H = 6
    dY = rng.standard_normal((3, 4, 5 * H)).astype(dtype)
    norms = rng.standard_normal((3, 4, 5 * H)).astype(dtype)
    fresh = layer_norm_lstm.ln_param_grads(dY, norms, H)
    out = (np.full(5 * H, np.nan, dtype), np.full(5 * H, np.nan, dtype))
    into = ln_param_grads_into(dY, norms, H, out)
    for a, b in zip(fresh, into):
        np.testing.assert_array_equal(a, b)
    assert all(np.shares_memory(g, out[0]) for g in into[0::2])
    assert all(np.shares_memory(g, out[1]) for g in into[1::2])
    np.testing.assert_allclose(out[0], (dY * norms).sum(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(out[1], dY.sum(axis=(0, 1)), rtol=1e-5)
