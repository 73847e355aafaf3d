"""The Numba CPU kernel set: the reference step functions compiled, fused and multi-threaded.

``kernel_set()`` returns the reference namespace (``kernels/reference.py``) with these entries
replaced by compiled kernels of the same names, signatures and semantics (the docstrings of the
reference functions in ``minisketch/layers`` are the contract):

    lstm_cell_forward / lstm_cell_backward          layers/lstm.py
    ln_lstm_cell_forward / ln_lstm_cell_backward    layers/layer_norm_lstm.py (also the HyperLSTM's
                                                    two cells)
    hyper_modulate_forward / hyper_modulate_backward  layers/hyper_lstm.py
    mdn_loss_and_grad / mdn_loss                    layers/mdn.py
    clip_adam_update                                optim.py (not in the reference set: the
                                                    optimizer falls back to optim's function)
    hash_uniform                                    noise.py (the counter-based uniforms)

Anything else in the reference set stays as it is, but for ``matmul``: matrix products are left to
BLAS, through ``minisketch.blas.matmul`` (MKL when installed, else NumPy's ``matmul``); what is
compiled here is everything between them: each kernel is one pass over its rows, writing straight
into the preallocated outputs, with no temporaries.

How the kernels are written
---------------------------
* ``@njit(cache=True, error_model="numpy")``, no ``fastmath``: results are reproducible and
  gradient-checkable. ``error_model="numpy"`` makes a division by zero give inf/nan (as NumPy
  does) instead of raising, which is also what lets LLVM vectorize loops that divide.
* Each kernel is a serial function over a range of rows (batch rows, MDN rows, or chunks of the
  parameter vector) plus a ``parallel=True`` driver that hands contiguous chunks of rows to
  Numba's threads (``prange``). The public function picks the driver: serial unless
  ``MINISKETCH_NUMBA_PARALLEL=1`` (see PARALLEL below for why that is opt-in), below
  ``MIN_PARALLEL_WORK`` elements, or with one Numba thread. Rows are computed the same way on
  either path, so the results do not depend on the thread count. Kernels release the GIL
  (``nogil``), so threads that run independent work (two half-batches, say) overlap them.
* Within a row the loop over units is contiguous and SIMD-vectorized (one view per gate block).
* Arithmetic runs in the arrays' dtype (float32 or float64), in the reference's order where the
  reference is pure arithmetic, so those outputs match it bit for bit; reductions (layer-norm
  means and variances) accumulate in float64, in eight lanes held as one LLVM vector (see
  "Float64 sums" below: Numba leaves LLVM's SLP vectorizer off); the MDN row is computed in
  float64 throughout.
* exp / tanh / sigmoid / log are the functions below, not libm: libm's are scalar calls that LLVM
  cannot vectorize (Numba has no SVML here), and a scalar tanh costs ~20 ns, more than the whole
  fused LSTM update of a unit should. They are plain polynomial code: range reduction by powers
  of two (Cody & Waite), a Taylor polynomial, and the power of two built from its exponent bits.
  Accuracy: within 3 ulp of NumPy's results in float64 and float32 over the whole range,
  overflow, underflow, subnormals, inf and nan included (tests/test_numba_kernels.py).
* ``None`` arguments (no dropout, no padding mask) become a flag and a dummy array, so each dtype
  compiles once per kernel rather than once per combination of Nones.
"""
from __future__ import annotations

import math
import os
from decimal import Decimal, localcontext
from fractions import Fraction
from types import SimpleNamespace

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from . import reference
from .. import blas

FORGET_BIAS = 1.0       # layers/lstm.py
LN_EPS = 1e-3           # layers/layer_norm_lstm.py
LOSS_EPS = 1e-6         # layers/mdn.py: -log(sum_k pi_k N_k + 1e-6)
LOG_LOSS_EPS = math.log(LOSS_EPS)
LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)

_JIT = dict(cache=True, error_model="numpy", nogil=True)      # serial code
_PJIT = dict(cache=True, error_model="numpy", nogil=True, parallel=True)


# ---------------------------------------------------------------------------------------------
# Bit casts (LLVM ``bitcast``: free, and vectorizable, unlike a call to ldexp/frexp)

@intrinsic
def _f64_from_bits(typingctx, i):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _f32_from_bits(typingctx, i):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _bits_of_f64(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


# ---------------------------------------------------------------------------------------------
# Constants of the elementary functions, derived here (not copied): ln 2 to 60 digits, split into
# a head with few mantissa bits (so n * head is exact for the |n| that occur) and a tail.

def _ln2_split(head_bits: int):
    with localcontext() as ctx:
        ctx.prec = 60
        ln2 = Decimal(2).ln()
        m, e = math.frexp(float(ln2))
        head = math.ldexp(math.floor(m * 2.0 ** head_bits) / 2.0 ** head_bits, e)
        tail = float(ln2 - Decimal(head))
        inv = float(1 / ln2)
    return head, tail, inv


_D_LN2_HI, _D_LN2_LO, _D_LOG2E = (np.float64(v) for v in _ln2_split(32))
_S_LN2_HI, _S_LN2_LO, _S_LOG2E = (np.float32(v) for v in _ln2_split(12))
_D_RND = np.float64(1.5 * 2.0 ** 52)    # (v + RND) - RND rounds v to an integer (|v| < 2^51)
_S_RND = np.float32(1.5 * 2.0 ** 23)
# 1/k! for the Taylor polynomial of e^r - 1 on |r| <= ln2 / 2: degree 13 leaves a remainder
# below 2^-56 relative in float64, degree 7 below 2^-27 in float32.
(_D2, _D3, _D4, _D5, _D6, _D7, _D8, _D9, _D10, _D11, _D12, _D13) = (
    np.float64(float(Fraction(1, math.factorial(k)))) for k in range(2, 14))
(_S2, _S3, _S4, _S5, _S6, _S7) = (
    np.float32(float(Fraction(1, math.factorial(k)))) for k in range(2, 8))
# log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716 for m in [sqrt(1/2), sqrt(2)):
# coefficients 1 / (2j + 1) of the odd series of atanh, up to s^25 (remainder < 2^-60).
(_L3, _L5, _L7, _L9, _L11, _L13, _L15, _L17, _L19, _L21, _L23, _L25) = (
    np.float64(float(Fraction(1, k))) for k in range(3, 27, 2))
_SQRT_HALF_BITS = int(np.float64(math.sqrt(0.5)).view(np.int64))
_MANT_MASK = (1 << 52) - 1
_D_LN2 = np.float64(math.log(2.0))

_F32 = np.float32
_S_ONE, _S_TWO, _S_M2, _S_TANH_FLOOR = _F32(1.0), _F32(2.0), _F32(-2.0), _F32(-20.0)
_S_EXP_LO, _S_EXP_HI = _F32(-104.0), _F32(89.0)


# ---------------------------------------------------------------------------------------------
# Elementary functions, float64 and float32 versions (scalar code that LLVM vectorizes)

@njit(**_JIT)
def _expm1_poly64(r):
    """e^r - 1 for |r| <= ln2/2 (Taylor, Horner form)."""
    return r + r * r * (_D2 + r * (_D3 + r * (_D4 + r * (_D5 + r * (_D6 + r * (_D7 + r * (
        _D8 + r * (_D9 + r * (_D10 + r * (_D11 + r * (_D12 + r * _D13)))))))))))


@njit(**_JIT)
def _expm1_poly32(r):
    return r + r * r * (_S2 + r * (_S3 + r * (_S4 + r * (_S5 + r * (_S6 + r * _S7)))))


@njit(**_JIT)
def _exp64(x):
    """e^x for every float64 x (inf for x > 709.78, 0 below -745.13, subnormals between)."""
    xc = min(max(x, -746.0), 710.0)
    nf = (xc * _D_LOG2E + _D_RND) - _D_RND          # n = round(x / ln 2)
    r = (xc - nf * _D_LN2_HI) - nf * _D_LN2_LO       # x - n ln 2, |r| <= ln2 / 2
    n = np.int64(nf)
    n1 = n >> 1                                      # 2^n as 2^n1 * 2^n2: each a normal number
    n2 = n - n1
    e = ((1.0 + _expm1_poly64(r)) * _f64_from_bits((n1 + 1023) << 52)) \
        * _f64_from_bits((n2 + 1023) << 52)
    return e if x == x else x                        # nan stays nan


@njit(**_JIT)
def _exp32(x):
    xc = min(max(x, _S_EXP_LO), _S_EXP_HI)
    nf = (xc * _S_LOG2E + _S_RND) - _S_RND
    r = (xc - nf * _S_LN2_HI) - nf * _S_LN2_LO
    n = np.int32(nf)
    n1 = n >> np.int32(1)
    n2 = n - n1
    e = ((_S_ONE + _expm1_poly32(r)) * _f32_from_bits((n1 + np.int32(127)) << np.int32(23))) \
        * _f32_from_bits((n2 + np.int32(127)) << np.int32(23))
    return e if x == x else x


@njit(**_JIT)
def _tanh64(x):
    """tanh(x) = -em / (2 + em) with em = e^(-2|x|) - 1, computed without cancellation."""
    y = max(-2.0 * abs(x), -40.0)                    # below -40, tanh rounds to +-1 anyway
    nf = (y * _D_LOG2E + _D_RND) - _D_RND
    r = (y - nf * _D_LN2_HI) - nf * _D_LN2_LO
    s = _f64_from_bits((np.int64(nf) + 1023) << 52)  # 2^n, n in [-58, 0]
    em = s * _expm1_poly64(r) + (s - 1.0)            # 2^n (e^r - 1) + (2^n - 1) = e^y - 1
    t = -em / (2.0 + em)
    t = t if x >= 0.0 else -t
    return t if x == x else x


@njit(**_JIT)
def _tanh32(x):
    y = max(_S_M2 * abs(x), _S_TANH_FLOOR)
    nf = (y * _S_LOG2E + _S_RND) - _S_RND
    r = (y - nf * _S_LN2_HI) - nf * _S_LN2_LO
    s = _f32_from_bits((np.int32(nf) + np.int32(127)) << np.int32(23))
    em = s * _expm1_poly32(r) + (s - _S_ONE)
    t = -em / (_S_TWO + em)
    t = t if x >= 0 else -t
    return t if x == x else x


@njit(**_JIT)
def _log64(x):
    """log(x) for x > 0 finite normal (the MDN only takes logs of sums >= 1)."""
    bits = _bits_of_f64(x)
    k = ((bits - _SQRT_HALF_BITS) >> 52)             # x = 2^k m with m in [sqrt(1/2), sqrt(2))
    m = _f64_from_bits(bits - (k << 52))
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = s2 * (_L3 + s2 * (_L5 + s2 * (_L7 + s2 * (_L9 + s2 * (_L11 + s2 * (_L13 + s2 * (
        _L15 + s2 * (_L17 + s2 * (_L19 + s2 * (_L21 + s2 * (_L23 + s2 * _L25)))))))))))
    return np.float64(k) * _D_LN2 + (2.0 * s + 2.0 * s * p)


@njit(**_JIT)
def _log1p_small64(u):
    """log(1 + u) for u in [0, 1], accurate for tiny u (corrects the rounding of 1 + u)."""
    w = 1.0 + u
    return _log64(w) - ((w - 1.0) - u) / w


def _exp(x):
    """exp in the dtype of x. In jitted code the overload below picks _exp32/_exp64; called
    from plain Python it is NumPy's exp."""
    return np.exp(x)


def _tanh(x):
    """tanh in the dtype of x. In jitted code the overload below picks _tanh32/_tanh64; called
    from plain Python it is NumPy's tanh."""
    return np.tanh(x)


@overload(_exp)
def _ov_exp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    if x == types.float64:
        return lambda x: _exp64(x)


@overload(_tanh)
def _ov_tanh(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    if x == types.float64:
        return lambda x: _tanh64(x)


@njit(**_JIT)
def _sigmoid64(x):
    """1 / (1 + e^-x) as the reference writes it: e = exp(-|x|) <= 1, then 1 / (1 + e) for
    x >= 0, e / (1 + e) below (no overflow anywhere)."""
    e = _exp64(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)


@njit(**_JIT)
def _sigmoid32(x):
    e = _exp32(-abs(x))
    return _S_ONE / (_S_ONE + e) if x >= 0 else e / (_S_ONE + e)


def _sigmoid(x):
    """sigmoid in the dtype of x. In jitted code the overload below picks _sigmoid32/_sigmoid64;
    called from plain Python it is the same stable formula in NumPy."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@overload(_sigmoid)
def _ov_sigmoid(x):
    if x == types.float32:
        return lambda x: _sigmoid32(x)
    if x == types.float64:
        return lambda x: _sigmoid64(x)


# ---------------------------------------------------------------------------------------------
# Float64 sums as 8 independent accumulators (the fallback of the vector sums below, for strided
# arrays, and their definition: the same lanes, the same order, the same bits).

@njit(**_JIT)
def _sum_scalar(v, lo, n):
    """sum(v[lo:lo+n]) in float64."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = n - n % 8
    for k in range(lo, lo + n8, 8):
        s0 += v[k]
        s1 += v[k + 1]
        s2 += v[k + 2]
        s3 += v[k + 3]
        s4 += v[k + 4]
        s5 += v[k + 5]
        s6 += v[k + 6]
        s7 += v[k + 7]
    for k in range(lo + n8, lo + n):
        s0 += v[k]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(**_JIT)
def _sum_sqdev_scalar(v, lo, n, mean):
    """sum((v[lo:lo+n] - mean)^2) in float64, with (v - mean) rounded to v's dtype first, as
    the reference's two-pass variance does."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = n - n % 8
    for k in range(lo, lo + n8, 8):
        d0 = v[k] - mean
        d1 = v[k + 1] - mean
        d2 = v[k + 2] - mean
        d3 = v[k + 3] - mean
        d4 = v[k + 4] - mean
        d5 = v[k + 5] - mean
        d6 = v[k + 6] - mean
        d7 = v[k + 7] - mean
        s0 += np.float64(d0 * d0)
        s1 += np.float64(d1 * d1)
        s2 += np.float64(d2 * d2)
        s3 += np.float64(d3 * d3)
        s4 += np.float64(d4 * d4)
        s5 += np.float64(d5 * d5)
        s6 += np.float64(d6 * d6)
        s7 += np.float64(d7 * d7)
    for k in range(lo + n8, lo + n):
        d = v[k] - mean
        s0 += np.float64(d * d)
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(**_JIT)
def _sum_prod_scalar(u, ulo, v, vlo, n):
    """sum(u[ulo:ulo+n] * v[vlo:vlo+n]) in float64 (each product rounded to the dtype first)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = n - n % 8
    d = vlo - ulo
    for k in range(ulo, ulo + n8, 8):
        s0 += np.float64(u[k] * v[k + d])
        s1 += np.float64(u[k + 1] * v[k + d + 1])
        s2 += np.float64(u[k + 2] * v[k + d + 2])
        s3 += np.float64(u[k + 3] * v[k + d + 3])
        s4 += np.float64(u[k + 4] * v[k + d + 4])
        s5 += np.float64(u[k + 5] * v[k + d + 5])
        s6 += np.float64(u[k + 6] * v[k + d + 6])
        s7 += np.float64(u[k + 7] * v[k + d + 7])
    for k in range(ulo + n8, ulo + n):
        s0 += np.float64(u[k] * v[k + d])
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


# ---------------------------------------------------------------------------------------------
# Float64 sums of 8 lanes (lane j adds elements j, j + 8, j + 16, ... in order), then a fixed
# tree: ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)). Without fastmath LLVM may not reorder
# one running sum, so a plain loop adds one element per 4 cycles; written as eight scalar sums it
# stays scalar too, because Numba runs LLVM without its SLP vectorizer (NUMBA_SLP_VECTORIZE=0, a
# process-wide setting). So for contiguous arrays the lanes are an explicit LLVM vector
# <8 x double> (``_lanes``): the same additions in the same order as eight scalar sums, hence the
# same bits as the scalar loops below (the fallback for strided arrays), twice as fast or more.

def _make_lanes(mode: int):
    """An intrinsic lanes(u, ulo, v, vlo, n8, mean) -> the 8 lane sums (float64) over the n8
    (a multiple of 8) elements from u[ulo] of: mode 0 u; mode 1 (u - mean)^2; mode 2 u * v[vlo..],
    each term computed in the arrays' dtype and then widened to float64. u, v: 1-D contiguous
    arrays of one float dtype."""

    @intrinsic
    def lanes(typingctx, u, ulo, v, vlo, n8, mean):
        for a in (u, v):
            if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                    and a.dtype in (types.float32, types.float64)):
                return None
        if v.dtype != u.dtype or not isinstance(mean, types.Float):
            return None
        sig = types.UniTuple(types.float64, 8)(u, ulo, v, vlo, n8, mean)

        def codegen(context, builder, signature, args):
            ut, ulo_t, vt, vlo_t, n8_t, mean_t = signature.args
            i64 = ir.IntType(64)
            elt = context.get_value_type(ut.dtype)
            vec = ir.VectorType(elt, 8)
            dvec = ir.VectorType(ir.DoubleType(), 8)
            align = context.get_abi_sizeof(elt)
            udata = context.make_array(ut)(context, builder, args[0]).data
            vdata = context.make_array(vt)(context, builder, args[2]).data
            ulo_v = context.cast(builder, args[1], ulo_t, types.int64)
            vlo_v = context.cast(builder, args[3], vlo_t, types.int64)
            n8_v = context.cast(builder, args[4], n8_t, types.int64)
            m = context.cast(builder, args[5], mean_t, ut.dtype)
            mvec = ir.Constant(vec, ir.Undefined)
            for j in range(8):
                mvec = builder.insert_element(mvec, m, ir.Constant(ir.IntType(32), j))
            pre = builder.block
            hdr = builder.append_basic_block("lanes.hdr")
            body = builder.append_basic_block("lanes.body")
            done = builder.append_basic_block("lanes.done")
            builder.branch(hdr)
            builder.position_at_end(hdr)
            i = builder.phi(i64)
            acc = builder.phi(dvec)
            i.add_incoming(ir.Constant(i64, 0), pre)
            acc.add_incoming(ir.Constant(dvec, [0.0] * 8), pre)
            builder.cbranch(builder.icmp_signed("<", i, n8_v), body, done)
            builder.position_at_end(body)

            def load(data, lo):
                ptr = builder.gep(data, [builder.add(lo, i)])
                return builder.load(builder.bitcast(ptr, vec.as_pointer()), align=align)

            x = load(udata, ulo_v)
            if mode == 1:
                d = builder.fsub(x, mvec)
                x = builder.fmul(d, d)
            elif mode == 2:
                x = builder.fmul(x, load(vdata, vlo_v))
            if elt != ir.DoubleType():
                x = builder.fpext(x, dvec)
            acc_next = builder.fadd(acc, x)
            i_next = builder.add(i, ir.Constant(i64, 8))
            body_end = builder.block
            builder.branch(hdr)
            i.add_incoming(i_next, body_end)
            acc.add_incoming(acc_next, body_end)
            builder.position_at_end(done)
            parts = [builder.extract_element(acc, ir.Constant(ir.IntType(32), j))
                     for j in range(8)]
            return context.make_tuple(builder, signature.return_type, parts)
        return sig, codegen
    return lanes


_lanes_sum, _lanes_sqdev, _lanes_prod = _make_lanes(0), _make_lanes(1), _make_lanes(2)


def _contiguous(a) -> bool:
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"


def _sum(v, lo, n):
    """sum(v[lo:lo+n]) in float64. In jitted code the overload below picks the vector lanes
    (contiguous v) or the scalar loops; called from plain Python it is the scalar loops."""
    return _sum_scalar(v, lo, n)


def _sum_sqdev(v, lo, n, mean):
    """sum((v[lo:lo+n] - mean)^2) in float64, with (v - mean) rounded to v's dtype first, as
    the reference's two-pass variance does (overloaded in jitted code like ``_sum``)."""
    return _sum_sqdev_scalar(v, lo, n, mean)


def _sum_prod(u, ulo, v, vlo, n):
    """sum(u[ulo:ulo+n] * v[vlo:vlo+n]) in float64, each product rounded to the dtype first
    (overloaded in jitted code like ``_sum``)."""
    return _sum_prod_scalar(u, ulo, v, vlo, n)


@njit(**_JIT)
def _tree(s0, s):
    """The lanes' sum, s0 in place of lane 0: the scalar loops' order."""
    return ((s0 + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


@overload(_sum)
def _ov_sum(v, lo, n):
    if not _contiguous(v):
        return lambda v, lo, n: _sum_scalar(v, lo, n)

    def impl(v, lo, n):
        n8 = n - n % 8
        s = _lanes_sum(v, lo, v, lo, n8, 0.0)
        s0 = s[0]
        for k in range(lo + n8, lo + n):
            s0 += v[k]
        return _tree(s0, s)
    return impl


@overload(_sum_sqdev)
def _ov_sum_sqdev(v, lo, n, mean):
    if not _contiguous(v):
        return lambda v, lo, n, mean: _sum_sqdev_scalar(v, lo, n, mean)

    def impl(v, lo, n, mean):
        n8 = n - n % 8
        s = _lanes_sqdev(v, lo, v, lo, n8, mean)
        s0 = s[0]
        for k in range(lo + n8, lo + n):
            d = v[k] - mean
            s0 += np.float64(d * d)
        return _tree(s0, s)
    return impl


@overload(_sum_prod)
def _ov_sum_prod(u, ulo, v, vlo, n):
    if not (_contiguous(u) and _contiguous(v)) or u.dtype != v.dtype:
        return lambda u, ulo, v, vlo, n: _sum_prod_scalar(u, ulo, v, vlo, n)

    def impl(u, ulo, v, vlo, n):
        n8 = n - n % 8
        s = _lanes_prod(u, ulo, v, vlo, n8, 0.0)
        s0 = s[0]
        d = vlo - ulo
        for k in range(ulo + n8, ulo + n):
            s0 += np.float64(u[k] * v[k + d])
        return _tree(s0, s)
    return impl


# ---------------------------------------------------------------------------------------------
# How a kernel runs: a serial ``_*_rows(lo, hi, ...)`` function does rows lo..hi-1; a parallel
# driver ``_*_par(n, ...)`` splits the rows into n contiguous chunks with ``prange``; the public
# function (reference name and signature) turns None arguments into flags plus a dummy array (so
# each dtype compiles once, not once per None combination) and picks the driver.

# Splitting rows across Numba's threads is opt-in: MINISKETCH_NUMBA_PARALLEL=1 in the
# environment (read once, at import). Measured on 2 cores with NumPy's OpenBLAS on 2 threads, a
# full training step got slower with it (LSTM decoder: 3.8 s against 2.7-3.0 s serial, and far
# worse on a busy machine): between two matrix products OpenBLAS's idle threads spin, Numba's
# threads spin, and the two pools take the cores from each other. With one BLAS thread the
# split pays off a little (3.3 s against 3.5 s), but less than a second BLAS thread does.
PARALLEL = os.environ.get("MINISKETCH_NUMBA_PARALLEL", "0").strip() == "1"
MIN_PARALLEL_WORK = 16384     # elements per call below which a second thread costs more


def _threads_for(rows: int, width: int) -> int:
    """How many chunks to split ``rows`` rows of ``width`` elements into (1 = stay serial):
    1 unless PARALLEL; then Numba's thread count (NUMBA_NUM_THREADS / numba.set_num_threads)
    for calls of at least MIN_PARALLEL_WORK elements."""
    if not PARALLEL:
        return 1
    n = numba.get_num_threads()
    if n < 2 or rows < 2 or rows * width < MIN_PARALLEL_WORK:
        return 1
    return min(n, rows)


_DUMMIES: dict = {}


def _opt(a, like, ndim: int):
    """(a, True) for an array; (a cached zero array of like's dtype, False) for None."""
    if a is not None:
        return a, True
    key = (like.dtype.str, ndim)
    d = _DUMMIES.get(key)
    if d is None:
        d = _DUMMIES[key] = np.zeros((1,) * ndim, dtype=like.dtype)
    return d, False


# ---------------------------------------------------------------------------------------------
# LSTM (layers/lstm.py)
#
# Inner loops index one view per gate block (a[:H], a[H:2H], ...) rather than a[k], a[H + k]:
# with offsets into one array LLVM cannot prove the stores independent and does not vectorize
# (measured: 7 ns per element instead of 1).

@njit(**_JIT)
def _lstm_fwd_rows(lo, hi, xw_t, hh_t, c_prev, h_prev, keep_t, use_keep, mask_t, use_mask,
                   c_out, h_out, act_out):
    H = c_prev.shape[1]
    fb = c_out.dtype.type(FORGET_BIAS)
    for b in range(lo, hi):
        xw = xw_t[b]
        hh = hh_t[b]
        act = act_out[b]
        xi, xj, xf, xo = xw[:H], xw[H:2 * H], xw[2 * H:3 * H], xw[3 * H:4 * H]
        hi_, hj, hf, ho = hh[:H], hh[H:2 * H], hh[2 * H:3 * H], hh[3 * H:4 * H]
        ai, ag, af, ao, at = (act[:H], act[H:2 * H], act[2 * H:3 * H], act[3 * H:4 * H],
                              act[4 * H:5 * H])
        cp = c_prev[b]
        co = c_out[b]
        hout = h_out[b]
        kp = keep_t[b if use_keep else 0]
        for k in range(H):
            i = _sigmoid(xi[k] + hi_[k])
            g = _tanh(xj[k] + hj[k])
            f = _sigmoid((xf[k] + hf[k]) + fb)
            o = _sigmoid(xo[k] + ho[k])
            gd = g * kp[k] if use_keep else g
            c = f * cp[k] + i * gd
            tc = _tanh(c)
            ai[k] = i
            ag[k] = g
            af[k] = f
            ao[k] = o
            at[k] = tc
            co[k] = c
            hout[k] = o * tc
        if use_mask and mask_t[b] == 0:
            # padding step: the state passes through
            hp = h_prev[b]
            for k in range(H):
                co[k] = cp[k]
                hout[k] = hp[k]


@njit(**_PJIT)
def _lstm_fwd_par(n, xw_t, hh_t, c_prev, h_prev, keep_t, use_keep, mask_t, use_mask, c_out,
                  h_out, act_out):
    B = c_prev.shape[0]
    for j in prange(n):
        _lstm_fwd_rows(j * B // n, (j + 1) * B // n, xw_t, hh_t, c_prev, h_prev, keep_t,
                       use_keep, mask_t, use_mask, c_out, h_out, act_out)


def lstm_cell_forward(xw_t, hh_t, c_prev, h_prev, keep_t, mask_t, c_out, h_out, act_out):
    """Compiled ``layers.lstm.lstm_cell_forward`` (same arguments and outputs)."""
    keep, use_keep = _opt(keep_t, c_out, 2)
    mask, use_mask = _opt(mask_t, c_out, 1)
    B, H = c_prev.shape
    n = _threads_for(B, 4 * H)
    if n > 1:
        _lstm_fwd_par(n, xw_t, hh_t, c_prev, h_prev, keep, use_keep, mask, use_mask, c_out,
                      h_out, act_out)
    else:
        _lstm_fwd_rows(0, B, xw_t, hh_t, c_prev, h_prev, keep, use_keep, mask, use_mask, c_out,
                       h_out, act_out)


@njit(**_JIT)
def _lstm_bwd_rows(lo, hi, dh_t, dc_t, c_prev, act_t, keep_t, use_keep, mask_t, use_mask,
                   da_out, dc_prev_out, dh_pass_out):
    H = c_prev.shape[1]
    one = da_out.dtype.type(1.0)
    zero = da_out.dtype.type(0.0)
    for b in range(lo, hi):
        dh = dh_t[b]
        dct = dc_t[b]
        dcp = dc_prev_out[b]
        dhp = dh_pass_out[b]
        da = da_out[b]
        if use_mask and mask_t[b] == 0:
            # forward was: c_out = c_prev, h_out = h_prev (padding step)
            for k in range(4 * H):
                da[k] = zero
            for k in range(H):
                dcp[k] = dct[k]
                dhp[k] = dh[k]
            continue
        act = act_t[b]
        ai, ag, af, ao, at = (act[:H], act[H:2 * H], act[2 * H:3 * H], act[3 * H:4 * H],
                              act[4 * H:5 * H])
        dai, dag, daf, dao = da[:H], da[H:2 * H], da[2 * H:3 * H], da[3 * H:4 * H]
        cp = c_prev[b]
        kp = keep_t[b if use_keep else 0]
        for k in range(H):
            i = ai[k]
            g = ag[k]
            f = af[k]
            o = ao[k]
            tc = at[k]
            # forward was: h = o * tanh(c)
            do = dh[k] * tc
            dc = dct[k] + dh[k] * o * (one - tc * tc)
            # forward was: c = f * c_prev + i * (g * keep)
            if use_keep:
                di = dc * (g * kp[k])
                dg = dc * i * kp[k]
            else:
                di = dc * g
                dg = dc * i
            df = dc * cp[k]
            dcp[k] = dc * f
            dhp[k] = zero
            # forward was: i, g, f, o = sigmoid(a_i), tanh(a_j), sigmoid(a_f + 1), sigmoid(a_o)
            dai[k] = di * i * (one - i)
            dag[k] = dg * (one - g * g)
            daf[k] = df * f * (one - f)
            dao[k] = do * o * (one - o)


@njit(**_PJIT)
def _lstm_bwd_par(n, dh_t, dc_t, c_prev, act_t, keep_t, use_keep, mask_t, use_mask, da_out,
                  dc_prev_out, dh_pass_out):
    B = c_prev.shape[0]
    for j in prange(n):
        _lstm_bwd_rows(j * B // n, (j + 1) * B // n, dh_t, dc_t, c_prev, act_t, keep_t,
                       use_keep, mask_t, use_mask, da_out, dc_prev_out, dh_pass_out)


def lstm_cell_backward(dh_t, dc_t, c_prev, act_t, keep_t, mask_t, da_out, dc_prev_out,
                       dh_pass_out):
    """Compiled ``layers.lstm.lstm_cell_backward`` (same arguments and outputs). Pure
    arithmetic in the reference's order: the outputs match it bit for bit."""
    keep, use_keep = _opt(keep_t, da_out, 2)
    mask, use_mask = _opt(mask_t, da_out, 1)
    B, H = c_prev.shape
    n = _threads_for(B, 4 * H)
    if n > 1:
        _lstm_bwd_par(n, dh_t, dc_t, c_prev, act_t, keep, use_keep, mask, use_mask, da_out,
                      dc_prev_out, dh_pass_out)
    else:
        _lstm_bwd_rows(0, B, dh_t, dc_t, c_prev, act_t, keep, use_keep, mask, use_mask, da_out,
                       dc_prev_out, dh_pass_out)


# ---------------------------------------------------------------------------------------------
# Layer-norm LSTM (layers/layer_norm_lstm.py)

@njit(**_JIT)
def _ln_fwd_rows(lo_row, hi_row, a_t, c_prev, h_prev, keep_t, use_keep, mask_t, use_mask, gamma,
                 beta, gamma_c, beta_c, c_out, h_out, act_out, norm_out, rstd_out):
    H = c_prev.shape[1]
    dtype = c_out.dtype.type
    fb = dtype(FORGET_BIAS)
    eps = dtype(LN_EPS)
    one = dtype(1.0)
    gi, gj, gf, go = gamma[:H], gamma[H:2 * H], gamma[2 * H:3 * H], gamma[3 * H:4 * H]
    bi, bj, bf, bo = beta[:H], beta[H:2 * H], beta[2 * H:3 * H], beta[3 * H:4 * H]
    for b in range(lo_row, hi_row):
        a = a_t[b]
        act = act_out[b]
        nrm = norm_out[b]
        cp = c_prev[b]
        co = c_out[b]
        hout = h_out[b]
        kp = keep_t[b if use_keep else 0]
        # LN(a_k) of the four gate blocks (two-pass mean and variance)
        for blk in range(4):
            lo = blk * H
            mean = dtype(_sum(a, lo, H) / H)
            rstd = one / np.sqrt(dtype(_sum_sqdev(a, lo, H, mean) / H) + eps)
            rstd_out[b, blk] = rstd
            ab = a[lo:lo + H]
            nb = nrm[lo:lo + H]
            for k in range(H):
                nb[k] = (ab[k] - mean) * rstd
        ni, nj, nf, no, nc = (nrm[:H], nrm[H:2 * H], nrm[2 * H:3 * H], nrm[3 * H:4 * H],
                              nrm[4 * H:5 * H])
        ai, ag, af, ao, at = (act[:H], act[H:2 * H], act[2 * H:3 * H], act[3 * H:4 * H],
                              act[4 * H:5 * H])
        # y_k = gamma_k LN(a_k) + beta_k; the gates; c before masking
        for k in range(H):
            i = _sigmoid(ni[k] * gi[k] + bi[k])
            g = _tanh(nj[k] * gj[k] + bj[k])
            f = _sigmoid((nf[k] * gf[k] + bf[k]) + fb)
            o = _sigmoid(no[k] * go[k] + bo[k])
            gd = g * kp[k] if use_keep else g
            ai[k] = i
            ag[k] = g
            af[k] = f
            ao[k] = o
            co[k] = f * cp[k] + i * gd
        # h = o * tanh(gamma_c LN(c) + beta_c)
        mean = dtype(_sum(co, 0, H) / H)
        rstd = one / np.sqrt(dtype(_sum_sqdev(co, 0, H, mean) / H) + eps)
        rstd_out[b, 4] = rstd
        for k in range(H):
            chat = (co[k] - mean) * rstd
            nc[k] = chat
            tc = _tanh(chat * gamma_c[k] + beta_c[k])
            at[k] = tc
            hout[k] = ao[k] * tc
        if use_mask and mask_t[b] == 0:
            hp = h_prev[b]
            for k in range(H):
                co[k] = cp[k]
                hout[k] = hp[k]


@njit(**_PJIT)
def _ln_fwd_par(n, a_t, c_prev, h_prev, keep_t, use_keep, mask_t, use_mask, gamma, beta,
                gamma_c, beta_c, c_out, h_out, act_out, norm_out, rstd_out):
    B = c_prev.shape[0]
    for j in prange(n):
        _ln_fwd_rows(j * B // n, (j + 1) * B // n, a_t, c_prev, h_prev, keep_t, use_keep,
                     mask_t, use_mask, gamma, beta, gamma_c, beta_c, c_out, h_out, act_out,
                     norm_out, rstd_out)


def ln_lstm_cell_forward(a_t, c_prev, h_prev, keep_t, mask_t, gamma, beta, gamma_c, beta_c,
                         c_out, h_out, act_out, norm_out, rstd_out):
    """Compiled ``layers.layer_norm_lstm.ln_lstm_cell_forward`` (same arguments and outputs).
    Means and variances are accumulated in float64."""
    keep, use_keep = _opt(keep_t, c_out, 2)
    mask, use_mask = _opt(mask_t, c_out, 1)
    B, H = c_prev.shape
    n = _threads_for(B, 4 * H)
    if n > 1:
        _ln_fwd_par(n, a_t, c_prev, h_prev, keep, use_keep, mask, use_mask, gamma, beta,
                    gamma_c, beta_c, c_out, h_out, act_out, norm_out, rstd_out)
    else:
        _ln_fwd_rows(0, B, a_t, c_prev, h_prev, keep, use_keep, mask, use_mask, gamma, beta,
                     gamma_c, beta_c, c_out, h_out, act_out, norm_out, rstd_out)


@njit(**_JIT)
def _ln_bwd_rows(lo_row, hi_row, dh_t, dc_t, c_prev, keep_t, use_keep, mask_t, use_mask, gamma,
                 gamma_c, act_t, norm_t, rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out):
    H = c_prev.shape[1]
    dtype = da_out.dtype.type
    one = dtype(1.0)
    zero = dtype(0.0)
    for b in range(lo_row, hi_row):
        dh = dh_t[b]
        dct = dc_t[b]
        dcp = dc_prev_out[b]
        dhp = dh_pass_out[b]
        da = da_out[b]
        dy = dy_out[b]
        if use_mask and mask_t[b] == 0:
            for k in range(4 * H):
                da[k] = zero
            for k in range(5 * H):
                dy[k] = zero
            for k in range(H):
                dcp[k] = dct[k]
                dhp[k] = dh[k]
            continue
        act = act_t[b]
        nrm = norm_t[b]
        ai, ag, af, ao, at = (act[:H], act[H:2 * H], act[2 * H:3 * H], act[3 * H:4 * H],
                              act[4 * H:5 * H])
        dyi, dyj, dyf, dyo, dyc = (dy[:H], dy[H:2 * H], dy[2 * H:3 * H], dy[3 * H:4 * H],
                                   dy[4 * H:5 * H])
        nc = nrm[4 * H:5 * H]
        cp = c_prev[b]
        kp = keep_t[b if use_keep else 0]
        # forward was: h = o * tanh(y_c), y_c = gamma_c LN(c) + beta_c.
        # da[:H] holds dxhat_c = dy_c * gamma_c for the LN backward (scratch until overwritten)
        dxc = da[:H]
        for k in range(H):
            tc = at[k]
            d = dh[k] * ao[k] * (one - tc * tc)
            dyc[k] = d
            dxc[k] = d * gamma_c[k]
        # LN backward: dc = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
        m1 = dtype(_sum(dxc, 0, H) / H)
        m2 = dtype(_sum_prod(dxc, 0, nc, 0, H) / H)
        rstd = rstd_t[b, 4]
        for k in range(H):
            dc = dct[k] + rstd * (dxc[k] - m1 - nc[k] * m2)
            i = ai[k]
            g = ag[k]
            f = af[k]
            o = ao[k]
            # forward was: c = f * c_prev + i * (g * keep)
            if use_keep:
                di = dc * (g * kp[k])
                dg = dc * i * kp[k]
            else:
                di = dc * g
                dg = dc * i
            df = dc * cp[k]
            dcp[k] = dc * f
            dhp[k] = zero
            # forward was: i, g, f, o = sigmoid(y_i), tanh(y_j), sigmoid(y_f + 1), sigmoid(y_o)
            dyi[k] = di * i * (one - i)
            dyj[k] = dg * (one - g * g)
            dyf[k] = df * f * (one - f)
            dyo[k] = (dh[k] * at[k]) * o * (one - o)
        # forward was: y_k = gamma_k LN(a_k) + beta_k: da = LN backward of dxhat = dy * gamma
        for blk in range(4):
            lo = blk * H
            dab = da[lo:lo + H]
            dyb = dy[lo:lo + H]
            gb = gamma[lo:lo + H]
            nb = nrm[lo:lo + H]
            for k in range(H):
                dab[k] = dyb[k] * gb[k]
            m1 = dtype(_sum(dab, 0, H) / H)
            m2 = dtype(_sum_prod(dab, 0, nb, 0, H) / H)
            rstd = rstd_t[b, blk]
            for k in range(H):
                dab[k] = rstd * (dab[k] - m1 - nb[k] * m2)


@njit(**_PJIT)
def _ln_bwd_par(n, dh_t, dc_t, c_prev, keep_t, use_keep, mask_t, use_mask, gamma, gamma_c,
                act_t, norm_t, rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out):
    B = c_prev.shape[0]
    for j in prange(n):
        _ln_bwd_rows(j * B // n, (j + 1) * B // n, dh_t, dc_t, c_prev, keep_t, use_keep,
                     mask_t, use_mask, gamma, gamma_c, act_t, norm_t, rstd_t, da_out, dy_out,
                     dc_prev_out, dh_pass_out)


def ln_lstm_cell_backward(dh_t, dc_t, c_prev, keep_t, mask_t, gamma, gamma_c, act_t, norm_t,
                          rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out):
    """Compiled ``layers.layer_norm_lstm.ln_lstm_cell_backward`` (same arguments and outputs).
    The layer-norm backward's means are accumulated in float64."""
    keep, use_keep = _opt(keep_t, da_out, 2)
    mask, use_mask = _opt(mask_t, da_out, 1)
    B, H = c_prev.shape
    n = _threads_for(B, 4 * H)
    if n > 1:
        _ln_bwd_par(n, dh_t, dc_t, c_prev, keep, use_keep, mask, use_mask, gamma, gamma_c,
                    act_t, norm_t, rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out)
    else:
        _ln_bwd_rows(0, B, dh_t, dc_t, c_prev, keep, use_keep, mask, use_mask, gamma, gamma_c,
                     act_t, norm_t, rstd_t, da_out, dy_out, dc_prev_out, dh_pass_out)


# ---------------------------------------------------------------------------------------------
# HyperLSTM modulation (layers/hyper_lstm.py): pure arithmetic, bit-identical to the reference

@njit(**_JIT)
def _hyper_fwd_rows(lo_row, hi_row, xw_t, hh_t, alpha_t, beta_t, b, a_out):
    H = b.shape[0] // 4
    for r in range(lo_row, hi_row):
        for blk in range(4):
            lo = blk * H
            ax = alpha_t[blk, r]
            ah = alpha_t[4 + blk, r]
            bt = beta_t[blk, r]
            xw = xw_t[r, lo:lo + H]
            hh = hh_t[r, lo:lo + H]
            bb = b[lo:lo + H]
            a = a_out[r, lo:lo + H]
            for k in range(H):
                a[k] = (ax[k] * xw[k] + (ah[k] * hh[k] + bt[k])) + bb[k]


@njit(**_PJIT)
def _hyper_fwd_par(n, xw_t, hh_t, alpha_t, beta_t, b, a_out):
    B = xw_t.shape[0]
    for j in prange(n):
        _hyper_fwd_rows(j * B // n, (j + 1) * B // n, xw_t, hh_t, alpha_t, beta_t, b, a_out)


def hyper_modulate_forward(xw_t, hh_t, alpha_t, beta_t, b, a_out):
    """Compiled ``layers.hyper_lstm.hyper_modulate_forward`` (same arguments and output)."""
    B, H4 = xw_t.shape
    n = _threads_for(B, H4)
    if n > 1:
        _hyper_fwd_par(n, xw_t, hh_t, alpha_t, beta_t, b, a_out)
    else:
        _hyper_fwd_rows(0, B, xw_t, hh_t, alpha_t, beta_t, b, a_out)


@njit(**_JIT)
def _hyper_bwd_rows(lo_row, hi_row, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
    H = da_t.shape[1] // 4
    for r in range(lo_row, hi_row):
        for blk in range(4):
            lo = blk * H
            da = da_t[r, lo:lo + H]
            xw = xw_t[r, lo:lo + H]
            hh = hh_t[r, lo:lo + H]
            ax = alpha_t[blk, r]
            ah = alpha_t[4 + blk, r]
            dxw = dxw_out[r, lo:lo + H]
            dhh = dhh_out[r, lo:lo + H]
            dax = dalpha_out[blk, r]
            dah = dalpha_out[4 + blk, r]
            for k in range(H):
                d = da[k]
                # forward was: a_k = alpha_k * xw_k + (alpha_{4+k} * hh_k + beta_k) + b_k
                dxw[k] = ax[k] * d
                dhh[k] = ah[k] * d
                dax[k] = d * xw[k]
                dah[k] = d * hh[k]


@njit(**_PJIT)
def _hyper_bwd_par(n, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
    B = da_t.shape[0]
    for j in prange(n):
        _hyper_bwd_rows(j * B // n, (j + 1) * B // n, da_t, xw_t, hh_t, alpha_t, dxw_out,
                        dhh_out, dalpha_out)


def hyper_modulate_backward(da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out):
    """Compiled ``layers.hyper_lstm.hyper_modulate_backward`` (same arguments and outputs)."""
    B, H4 = da_t.shape
    n = _threads_for(B, H4)
    if n > 1:
        _hyper_bwd_par(n, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out)
    else:
        _hyper_bwd_rows(0, B, da_t, xw_t, hh_t, alpha_t, dxw_out, dhh_out, dalpha_out)


# ---------------------------------------------------------------------------------------------
# Mixture density loss (layers/mdn.py): one fused pass over the rows, computed in float64.
#
# Rows are processed in blocks of MDN_BLOCK: a block is copied transposed into float64 scratch
# ([6M + 3, rows]), so that every loop runs over the rows of the block, contiguous and long
# enough to vectorize fully (a loop over the M = 20 components of one row leaves too short a
# vector loop and a slow scalar remainder). Sums over components are elementwise across rows,
# in component order.

MDN_BLOCK = 64


@njit(**_JIT)
def _mdn_block(nr, M, yt, tt, scale, want_grad, dyt, sc, rv):
    """Loss terms of nr rows held transposed in yt [6M+3, R] (targets tt [5, R]); writes
    rv[0] = offset term times (1 - p3), rv[1] = pen term, and dyt [6M+3, R] if want_grad.
    sc [7, M, R] and rv [10, R] are float64 scratch."""
    pm, lse, pimax, logs, m, tot = rv[2], rv[3], rv[4], rv[5], rv[6], rv[7]
    offset, pen, gsum = rv[0], rv[1], rv[8]
    lpi, aa, uu, vv, ww, rr, ch = sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6]
    p0, p1, p2 = yt[0], yt[1], yt[2]
    dx, dyv, t0, t1, t2 = tt[0], tt[1], tt[2], tt[3], tt[4]
    # pen: log q = log_softmax(pen logits); loss -sum_j t_j log q_j
    for r in range(nr):
        mx = max(p0[r], max(p1[r], p2[r]))
        pm[r] = mx
        ls = _log64(_exp64(p0[r] - mx) + _exp64(p1[r] - mx) + _exp64(p2[r] - mx))
        lse[r] = ls
        pen[r] = -(t0[r] * ((p0[r] - mx) - ls) + t1[r] * ((p1[r] - mx) - ls)
                   + t2[r] * ((p2[r] - mx) - ls))
    # log pi = log_softmax(pi logits)
    for r in range(nr):
        pimax[r] = -np.inf
        logs[r] = 0.0
    for k in range(M):
        pil = yt[3 + k]
        for r in range(nr):
            pimax[r] = max(pimax[r], pil[r])
    for k in range(M):
        pil = yt[3 + k]
        for r in range(nr):
            logs[r] += _exp64(pil[r] - pimax[r])
    for r in range(nr):
        logs[r] = _log64(logs[r])
        m[r] = LOG_LOSS_EPS
    # per component: a_k = log pi_k + log N_k in the stable form of layers/mdn.py
    for k in range(M):
        pil, mx_, my_ = yt[3 + k], yt[3 + M + k], yt[3 + 2 * M + k]
        lsx, lsy, rk = yt[3 + 3 * M + k], yt[3 + 4 * M + k], yt[3 + 5 * M + k]
        lpk, ak, uk, vk, wk, rhok, chk = lpi[k], aa[k], uu[k], vv[k], ww[k], rr[k], ch[k]
        for r in range(nr):
            u = (dx[r] - mx_[r]) * _exp64(-lsx[r])
            v = (dyv[r] - my_[r]) * _exp64(-lsy[r])
            ar = abs(rk[r])
            e1 = _exp64(-ar)                       # e^-|r|
            rho = _tanh64(rk[r])
            cosh_r = 0.5 * (1.0 / e1 + e1)
            w = (u - rho * v) * cosh_r             # Z / (1 - rho^2) = w^2 + v^2
            log_1mr2 = 2.0 * (LOG_2 - ar - _log1p_small64(e1 * e1))
            log_pi = (pil[r] - pimax[r]) - logs[r]
            a = log_pi + (-0.5 * (w * w + v * v) - LOG_2PI - lsx[r] - lsy[r] - 0.5 * log_1mr2)
            lpk[r] = log_pi
            ak[r] = a
            uk[r] = u
            vk[r] = v
            wk[r] = w
            rhok[r] = rho
            chk[r] = cosh_r
            m[r] = max(m[r], a)
    # log(sum_k exp(a_k) + 1e-6): log(1e-6) is one more term of the log-sum-exp
    for r in range(nr):
        tot[r] = _exp64(LOG_LOSS_EPS - m[r])
    for k in range(M):
        ak = aa[k]
        for r in range(nr):
            tot[r] += _exp64(ak[r] - m[r])
    for r in range(nr):
        log_sum = m[r] + _log64(tot[r])
        tot[r] = log_sum                           # tot now holds log_sum
        offset[r] = -log_sum * (1.0 - t2[r])
    if not want_grad:
        return
    # pen: d/d logits = q * sum_j t_j - t
    for r in range(nr):
        tsum = t0[r] + t1[r] + t2[r]
        dyt[0, r] = (_exp64((p0[r] - pm[r]) - lse[r]) * tsum - t0[r]) * scale
        dyt[1, r] = (_exp64((p1[r] - pm[r]) - lse[r]) * tsum - t1[r]) * scale
        dyt[2, r] = (_exp64((p2[r] - pm[r]) - lse[r]) * tsum - t2[r]) * scale
        gsum[r] = 0.0
    # responsibilities gamma_k = exp(a_k - log_sum) (1 - p3), kept in aa
    for k in range(M):
        ak = aa[k]
        for r in range(nr):
            g = _exp64(ak[r] - tot[r]) * (1.0 - t2[r])
            ak[r] = g
            gsum[r] += g
    for k in range(M):
        lsx, lsy = yt[3 + 3 * M + k], yt[3 + 4 * M + k]
        gk, lpk, uk, vk, wk, rhok, chk = aa[k], lpi[k], uu[k], vv[k], ww[k], rr[k], ch[k]
        dpi, dmx, dmy = dyt[3 + k], dyt[3 + M + k], dyt[3 + 2 * M + k]
        dsx, dsy, dr = dyt[3 + 3 * M + k], dyt[3 + 4 * M + k], dyt[3 + 5 * M + k]
        for r in range(nr):
            gm = gk[r]
            u = uk[r]
            v = vk[r]
            w = wk[r]
            rho = rhok[r]
            cosh_r = chk[r]
            # forward was: log N = -(w^2 + v^2)/2 - ls_x - ls_y + log cosh(r) - log 2 pi,
            #              w = u cosh(r) - v sinh(r), u = (dx - mu_x) e^-ls_x, v likewise
            gw = gm * w
            d_u = gw * cosh_r
            d_v = gm * v - gw * (rho * cosh_r)
            dpi[r] = (gsum[r] * _exp64(lpk[r]) - gm) * scale
            dmx[r] = (-d_u * _exp64(-lsx[r])) * scale
            dmy[r] = (-d_v * _exp64(-lsy[r])) * scale
            dsx[r] = (gm - d_u * u) * scale
            dsy[r] = (gm - d_v * v) * scale
            dr[r] = (gw * (rho * w - v / cosh_r) - gm * rho) * scale


@njit(**_JIT)
def _mdn_rows(lo, hi, y, target, scale, want_grad, dy, row_loss):
    """Rows lo..hi-1: row_loss[n] = (offset term, pen term), and dy[n] if want_grad."""
    W = y.shape[1]
    M = (W - 3) // 6
    R = MDN_BLOCK
    yt = np.empty((W, R), dtype=np.float64)
    dyt = np.empty((W, R), dtype=np.float64)
    tt = np.empty((5, R), dtype=np.float64)
    sc = np.empty((7, M, R), dtype=np.float64)
    rv = np.empty((10, R), dtype=np.float64)
    dt = dy.dtype.type
    for n0 in range(lo, hi, R):
        nr = min(R, hi - n0)
        for r in range(nr):
            yr = y[n0 + r]
            for j in range(W):
                yt[j, r] = yr[j]
            tr = target[n0 + r]
            for j in range(5):
                tt[j, r] = tr[j]
        _mdn_block(nr, M, yt, tt, scale, want_grad, dyt, sc, rv)
        for r in range(nr):
            row_loss[n0 + r, 0] = rv[0, r]
            row_loss[n0 + r, 1] = rv[1, r]
        if want_grad:
            for r in range(nr):
                dr = dy[n0 + r]
                for j in range(W):
                    dr[j] = dt(dyt[j, r])


@njit(**_PJIT)
def _mdn_par(n, y, target, scale, want_grad, dy, row_loss):
    N = y.shape[0]
    for j in prange(n):
        _mdn_rows(j * N // n, (j + 1) * N // n, y, target, scale, want_grad, dy, row_loss)


def _check_mdn(y, target):
    if y.ndim != 2 or target.ndim != 2 or target.shape != (y.shape[0], 5):
        raise ValueError(f"mdn loss needs y [N, 6M+3] and target [N, 5], "
                         f"got {tuple(y.shape)} and {tuple(target.shape)}")
    width = y.shape[1]
    if width < 9 or (width - 3) % 6:
        raise ValueError(f"MDN output width must be 6M + 3 with M >= 1, got {width}")


def _mdn_run(y, target, scale, want_grad):
    _check_mdn(y, target)
    y = np.ascontiguousarray(y)
    target = np.ascontiguousarray(target, dtype=y.dtype)
    N = y.shape[0]
    dy = np.empty_like(y) if want_grad else np.empty((1, y.shape[1]), dtype=y.dtype)
    row_loss = np.empty((N, 2), dtype=np.float64)
    n = _threads_for(N, 8 * y.shape[1])
    if n > 1:
        _mdn_par(n, y, target, float(scale), want_grad, dy, row_loss)
    else:
        _mdn_rows(0, N, y, target, float(scale), want_grad, dy, row_loss)
    sums = row_loss.sum(axis=0)      # float64, the same order every call
    return y.dtype.type(sums[0]), y.dtype.type(sums[1]), dy


def mdn_loss_and_grad(y, target, scale):
    """Compiled ``layers.mdn.mdn_loss_and_grad``: (offset_sum, pen_sum, dy), the sums as 0-d
    values of y's dtype, dy a fresh array. Each row is computed in float64 and the row terms
    are summed in float64, in the same order every call (deterministic)."""
    return _mdn_run(y, target, scale, True)


def mdn_loss(y, target):
    """Compiled ``layers.mdn.mdn_loss`` (forward only): (offset_sum, pen_sum)."""
    offset_sum, pen_sum, _ = _mdn_run(y, target, 1.0, False)
    return offset_sum, pen_sum


# ---------------------------------------------------------------------------------------------
# Element-wise clipping + Adam over the flat parameter vector (optim.py), one pass

@njit(**_JIT)
def _adam_rows(lo, hi, flat, grad, m, v, clip, b1, one_m_b1, b2, one_m_b2, bc2, eps, s):
    for j in range(lo, hi):
        g = grad[j]
        if g > clip:          # nan fails both tests and stays nan, as with np.clip
            g = clip
        elif g < -clip:
            g = -clip
        mj = b1 * m[j] + one_m_b1 * g
        vj = b2 * v[j] + one_m_b2 * (g * g)
        m[j] = mj
        v[j] = vj
        flat[j] = flat[j] - (mj / (np.sqrt(vj / bc2) + eps)) * s


@njit(**_PJIT)
def _adam_par(n, flat, grad, m, v, clip, b1, one_m_b1, b2, one_m_b2, bc2, eps, s):
    P = flat.shape[0]
    for j in prange(n):
        _adam_rows(j * P // n, (j + 1) * P // n, flat, grad, m, v, clip, b1, one_m_b1, b2,
                   one_m_b2, bc2, eps, s)


def clip_adam_update(flat, grad, m, v, step, lr, clip, beta1=0.9, beta2=0.999, eps=1e-8):
    """Compiled ``optim.clip_adam_update``: same arguments and in-place updates, the same
    arithmetic in the same order with the same host-computed scalars (bit-identical)."""
    from ..optim import adam_bias_corrections
    bc1, bc2 = adam_bias_corrections(step, beta1, beta2)
    dt = flat.dtype.type
    args = (flat, grad, m, v, dt(clip), dt(beta1), dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2),
            dt(bc2), dt(eps), dt(lr / bc1))
    P = flat.shape[0]
    n = _threads_for(P, 1)
    if n > 1:
        _adam_par(n, *args)
    else:
        _adam_rows(0, P, *args)


# ---------------------------------------------------------------------------------------------
# Counter-based uniforms (noise.py), one pass

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SM_M1 = np.uint64(0xBF58476D1CE4E5B9)
_SM_M2 = np.uint64(0x94D049BB133111EB)


@njit(**_JIT)
def _hash_rows(lo, hi, key, out):
    # entry i: SplitMix64(key + (i + 1) * golden) >> 40, times 2^-24 (exact in float32);
    # unsigned 64-bit arithmetic wraps, as NumPy's uint64 does
    s30, s27, s31, s40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
    scale = np.float32(2.0 ** -24)
    for i in range(lo, hi):
        z = key + np.uint64(i + 1) * _GOLDEN
        z = (z ^ (z >> s30)) * _SM_M1
        z = (z ^ (z >> s27)) * _SM_M2
        z = z ^ (z >> s31)
        out[i] = np.float32(z >> s40) * scale


@njit(**_PJIT)
def _hash_par(n, key, out):
    N = out.shape[0]
    for j in prange(n):
        _hash_rows(j * N // n, (j + 1) * N // n, key, out)


def hash_uniform(key, out):
    """Compiled ``noise.hash_uniform``: the same signature, bit-identical uniforms (integer
    arithmetic, then an exact conversion), written into float32 ``out`` (C-contiguous)."""
    if out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("hash_uniform writes a C-contiguous float32 array")
    flat = out.reshape(-1)
    k = np.uint64(int(key) & 0xFFFFFFFFFFFFFFFF)
    n = _threads_for(flat.shape[0], 1)
    if n > 1:
        _hash_par(n, k, flat)
    else:
        _hash_rows(0, flat.shape[0], k, flat)


# ---------------------------------------------------------------------------------------------
# The kernel set

COMPILED = (
    "lstm_cell_forward", "lstm_cell_backward",
    "ln_lstm_cell_forward", "ln_lstm_cell_backward",
    "hyper_modulate_forward", "hyper_modulate_backward",
    "mdn_loss_and_grad", "mdn_loss",
    "clip_adam_update",
    "hash_uniform",
)


def kernel_set() -> SimpleNamespace:
    """The reference kernel set with every kernel of this module in place of its reference
    (any entry this module does not provide stays the reference's), and ``blas.matmul`` for
    the matrix products."""
    ks = reference.kernel_set()
    g = globals()
    for name in COMPILED:
        setattr(ks, name, g[name])
    # the products: through MKL when it is installed (blas.py), else NumPy's matmul
    ks.matmul = blas.matmul
    return ks


def warm_up(dtypes=("float32", "float64"), parallel=None) -> None:
    """Compile (or load from Numba's cache) every kernel for the given dtypes by calling each
    on small inputs: the serial row functions always, the parallel drivers too when
    ``parallel`` (default: PARALLEL). Optional: kernels otherwise compile on first use."""
    if parallel is None:
        parallel = PARALLEL
    for name in dtypes:
        dt = np.dtype(name)
        B, H, M = 2, 3, 1
        z = lambda *s: np.zeros(s, dtype=dt)  # noqa: E731
        o = lambda *s: np.ones(s, dtype=dt)  # noqa: E731
        keep, mask = o(B, H), o(B)
        lstm_f = (z(B, 4 * H), z(B, 4 * H), z(B, H), z(B, H), keep, True, mask, True,
                  z(B, H), z(B, H), z(B, 5 * H))
        lstm_b = (z(B, H), z(B, H), z(B, H), z(B, 5 * H), keep, True, mask, True,
                  z(B, 4 * H), z(B, H), z(B, H))
        ln_f = (z(B, 4 * H), z(B, H), z(B, H), keep, True, mask, True, o(4 * H), z(4 * H),
                o(H), z(H), z(B, H), z(B, H), z(B, 5 * H), z(B, 5 * H), z(B, 5))
        ln_b = (z(B, H), z(B, H), z(B, H), keep, True, mask, True, o(4 * H), o(H),
                z(B, 5 * H), z(B, 5 * H), o(B, 5), z(B, 4 * H), z(B, 5 * H), z(B, H), z(B, H))
        hyp_f = (z(B, 4 * H), z(B, 4 * H), z(8, B, H), z(4, B, H), z(4 * H), z(B, 4 * H))
        hyp_b = (z(B, 4 * H), z(B, 4 * H), z(B, 4 * H), z(8, B, H), z(B, 4 * H), z(B, 4 * H),
                 z(8, B, H))
        y = z(B, 6 * M + 3)
        t = z(B, 5)
        t[:, 2] = 1
        mdn = (y, t, 1.0, True, z(B, 6 * M + 3), np.zeros((B, 2)))
        mdn0 = (y, t, 1.0, False, z(1, 6 * M + 3), np.zeros((B, 2)))
        adam = (z(4), z(4), z(4), z(4)) + tuple(dt.type(v) for v in (1, .9, .1, .999, .001,
                                                                     .5, 1e-8, 1e-3))
        for rows, par, args in ((_lstm_fwd_rows, _lstm_fwd_par, lstm_f),
                                (_lstm_bwd_rows, _lstm_bwd_par, lstm_b),
                                (_ln_fwd_rows, _ln_fwd_par, ln_f),
                                (_ln_bwd_rows, _ln_bwd_par, ln_b),
                                (_hyper_fwd_rows, _hyper_fwd_par, hyp_f),
                                (_hyper_bwd_rows, _hyper_bwd_par, hyp_b),
                                (_mdn_rows, _mdn_par, mdn), (_mdn_rows, _mdn_par, mdn0),
                                (_adam_rows, _adam_par, adam),
                                (_hash_rows, _hash_par, (np.uint64(1), np.zeros(4, np.float32)))):
            rows(0, 1, *args)
            if parallel:
                par(1, *args)
    blas.warm_up(dtypes)
