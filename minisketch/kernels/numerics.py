"""Numerics for the Numba kernels: exp, tanh, sigmoid, log and float64 sums that LLVM vectorizes.

exp / tanh / sigmoid (float32 and float64) and log, log1p (float64, for the MDN) are plain
polynomial code, not libm: libm's functions are scalar calls that LLVM cannot vectorize (Numba
has no SVML here). Range reduction by powers of two (Cody & Waite), a Taylor polynomial, and
the power of two built from its exponent bits; every coefficient is derived below, not copied.
Accuracy: within 4 ulp of NumPy in float64 and 3 ulp in float32 over the whole range, overflow,
underflow, subnormals, inf and nan included (tests/test_numerics.py). In jitted code ``exp``,
``tanh`` and ``sigmoid`` pick the version of their argument's dtype; from Python they are NumPy's.

``sum64``, ``sum_sqdev64``, ``sum_prod64``: float64 sums (the layer-norm means and variances) in
eight lanes, lane j adding elements j, j + 8, ... in order, then a fixed tree. For contiguous
arrays the lanes are one LLVM ``<8 x double>`` vector, because Numba runs LLVM without its SLP
vectorizer and without fastmath LLVM may not reorder one running sum; strided arrays take the
eight-accumulator scalar loops (``*_scalar``), which give the same bits.
"""
from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .jit import serial

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
_D_LN2 = np.float64(math.log(2.0))

_F32 = np.float32
_S_ONE, _S_TWO, _S_M2, _S_TANH_FLOOR = _F32(1.0), _F32(2.0), _F32(-2.0), _F32(-20.0)
_S_EXP_LO, _S_EXP_HI = _F32(-104.0), _F32(89.0)


# ---------------------------------------------------------------------------------------------
# Elementary functions, float64 and float32 versions (scalar code that LLVM vectorizes)

@serial
def _expm1_poly64(r):
    """e^r - 1 for |r| <= ln2/2 (Taylor, Horner form)."""
    return r + r * r * (_D2 + r * (_D3 + r * (_D4 + r * (_D5 + r * (_D6 + r * (_D7 + r * (
        _D8 + r * (_D9 + r * (_D10 + r * (_D11 + r * (_D12 + r * _D13)))))))))))


@serial
def _expm1_poly32(r):
    return r + r * r * (_S2 + r * (_S3 + r * (_S4 + r * (_S5 + r * (_S6 + r * _S7)))))


@serial
def exp64(x):
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


@serial
def exp32(x):
    xc = min(max(x, _S_EXP_LO), _S_EXP_HI)
    nf = (xc * _S_LOG2E + _S_RND) - _S_RND
    r = (xc - nf * _S_LN2_HI) - nf * _S_LN2_LO
    n = np.int32(nf)
    n1 = n >> np.int32(1)
    n2 = n - n1
    e = ((_S_ONE + _expm1_poly32(r)) * _f32_from_bits((n1 + np.int32(127)) << np.int32(23))) \
        * _f32_from_bits((n2 + np.int32(127)) << np.int32(23))
    return e if x == x else x


@serial
def tanh64(x):
    """tanh(x) = -em / (2 + em) with em = e^(-2|x|) - 1, computed without cancellation."""
    y = max(-2.0 * abs(x), -40.0)                    # below -40, tanh rounds to +-1 anyway
    nf = (y * _D_LOG2E + _D_RND) - _D_RND
    r = (y - nf * _D_LN2_HI) - nf * _D_LN2_LO
    s = _f64_from_bits((np.int64(nf) + 1023) << 52)  # 2^n, n in [-58, 0]
    em = s * _expm1_poly64(r) + (s - 1.0)            # 2^n (e^r - 1) + (2^n - 1) = e^y - 1
    t = -em / (2.0 + em)
    t = t if x >= 0.0 else -t
    return t if x == x else x


@serial
def tanh32(x):
    y = max(_S_M2 * abs(x), _S_TANH_FLOOR)
    nf = (y * _S_LOG2E + _S_RND) - _S_RND
    r = (y - nf * _S_LN2_HI) - nf * _S_LN2_LO
    s = _f32_from_bits((np.int32(nf) + np.int32(127)) << np.int32(23))
    em = s * _expm1_poly32(r) + (s - _S_ONE)
    t = -em / (_S_TWO + em)
    t = t if x >= 0 else -t
    return t if x == x else x


@serial
def log64(x):
    """log(x) for x > 0 finite normal (the MDN only takes logs of sums >= 1)."""
    bits = _bits_of_f64(x)
    k = ((bits - _SQRT_HALF_BITS) >> 52)             # x = 2^k m with m in [sqrt(1/2), sqrt(2))
    m = _f64_from_bits(bits - (k << 52))
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = s2 * (_L3 + s2 * (_L5 + s2 * (_L7 + s2 * (_L9 + s2 * (_L11 + s2 * (_L13 + s2 * (
        _L15 + s2 * (_L17 + s2 * (_L19 + s2 * (_L21 + s2 * (_L23 + s2 * _L25)))))))))))
    return np.float64(k) * _D_LN2 + (2.0 * s + 2.0 * s * p)


@serial
def log1p_small64(u):
    """log(1 + u) for u in [0, 1], accurate for tiny u (corrects the rounding of 1 + u)."""
    w = 1.0 + u
    return log64(w) - ((w - 1.0) - u) / w


def exp(x):
    """exp in the dtype of x. In jitted code the overload below picks exp32/exp64; called
    from plain Python it is NumPy's exp."""
    return np.exp(x)


def tanh(x):
    """tanh in the dtype of x. In jitted code the overload below picks tanh32/tanh64; called
    from plain Python it is NumPy's tanh."""
    return np.tanh(x)


@overload(exp)
def _ov_exp(x):
    if x == types.float32:
        return lambda x: exp32(x)
    if x == types.float64:
        return lambda x: exp64(x)


@overload(tanh)
def _ov_tanh(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    if x == types.float64:
        return lambda x: tanh64(x)


@serial
def sigmoid64(x):
    """1 / (1 + e^-x) as the reference writes it: e = exp(-|x|) <= 1, then 1 / (1 + e) for
    x >= 0, e / (1 + e) below (no overflow anywhere)."""
    e = exp64(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)


@serial
def sigmoid32(x):
    e = exp32(-abs(x))
    return _S_ONE / (_S_ONE + e) if x >= 0 else e / (_S_ONE + e)


def sigmoid(x):
    """sigmoid in the dtype of x. In jitted code the overload below picks sigmoid32/sigmoid64;
    called from plain Python it is the same stable formula in NumPy."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@overload(sigmoid)
def _ov_sigmoid(x):
    if x == types.float32:
        return lambda x: sigmoid32(x)
    if x == types.float64:
        return lambda x: sigmoid64(x)


# ---------------------------------------------------------------------------------------------
# Float64 sums as 8 independent accumulators (the fallback of the vector sums below, for strided
# arrays, and their definition: the same lanes, the same order, the same bits).

@serial
def sum64_scalar(v, lo, n):
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


@serial
def sum_sqdev64_scalar(v, lo, n, mean):
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


@serial
def sum_prod64_scalar(u, ulo, v, vlo, n):
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
# Float64 sums of 8 lanes held as one LLVM vector <8 x double>: lane j adds elements j, j + 8,
# ... in order, then the tree ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)): the additions and
# the order of the scalar loops above, hence their bits. Written as eight scalar sums the loop
# would stay scalar: Numba runs LLVM without its SLP vectorizer (NUMBA_SLP_VECTORIZE=0).

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


def sum64(v, lo, n):
    """sum(v[lo:lo+n]) in float64. In jitted code the overload below picks the vector lanes
    (contiguous v) or the scalar loops; called from plain Python it is the scalar loops."""
    return sum64_scalar(v, lo, n)


def sum_sqdev64(v, lo, n, mean):
    """sum((v[lo:lo+n] - mean)^2) in float64, with (v - mean) rounded to v's dtype first, as
    the reference's two-pass variance does (overloaded in jitted code like ``sum64``)."""
    return sum_sqdev64_scalar(v, lo, n, mean)


def sum_prod64(u, ulo, v, vlo, n):
    """sum(u[ulo:ulo+n] * v[vlo:vlo+n]) in float64, each product rounded to the dtype first
    (overloaded in jitted code like ``sum64``)."""
    return sum_prod64_scalar(u, ulo, v, vlo, n)


@serial
def _tree(s0, s):
    """The lanes' sum, s0 in place of lane 0: the scalar loops' order."""
    return ((s0 + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


@overload(sum64)
def _ov_sum(v, lo, n):
    if not _contiguous(v):
        return lambda v, lo, n: sum64_scalar(v, lo, n)

    def impl(v, lo, n):
        n8 = n - n % 8
        s = _lanes_sum(v, lo, v, lo, n8, 0.0)
        s0 = s[0]
        for k in range(lo + n8, lo + n):
            s0 += v[k]
        return _tree(s0, s)
    return impl


@overload(sum_sqdev64)
def _ov_sum_sqdev(v, lo, n, mean):
    if not _contiguous(v):
        return lambda v, lo, n, mean: sum_sqdev64_scalar(v, lo, n, mean)

    def impl(v, lo, n, mean):
        n8 = n - n % 8
        s = _lanes_sqdev(v, lo, v, lo, n8, mean)
        s0 = s[0]
        for k in range(lo + n8, lo + n):
            d = v[k] - mean
            s0 += np.float64(d * d)
        return _tree(s0, s)
    return impl


@overload(sum_prod64)
def _ov_sum_prod(u, ulo, v, vlo, n):
    if not (_contiguous(u) and _contiguous(v)) or u.dtype != v.dtype:
        return lambda u, ulo, v, vlo, n: sum_prod64_scalar(u, ulo, v, vlo, n)

    def impl(u, ulo, v, vlo, n):
        n8 = n - n % 8
        s = _lanes_prod(u, ulo, v, vlo, n8, 0.0)
        s0 = s[0]
        d = vlo - ulo
        for k in range(ulo + n8, ulo + n):
            s0 += np.float64(u[k] * v[k + d])
        return _tree(s0, s)
    return impl


