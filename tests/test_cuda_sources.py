"""The CUDA sources without a GPU: the reference constants are formatted in, and nvcc compiles
every kernel.

The compile check runs ``nvcc --ptx -arch=sm_90 --fmad=false -ftz=true`` (the options CuPy's
NVRTC gets) on each op's RawModule source with both instantiations (float, double) of every
kernel template, and on the hash kernel's elementwise body inside a minimal kernel that declares
what CuPy's ElementwiseKernel would (``key``, ``u``, the index ``i``); so a syntax or type error
fails in CI without a GPU. Skipped, with the reason, where nvcc is not installed.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess

import numpy as np
import pytest

from minisketch.kernels import constants, cuda, cupy_gpu, layer_norm_lstm, lstm, mdn, noise

NVCC = shutil.which("nvcc")
NVCC_OPTIONS = ["--ptx", "-arch=sm_90", "--fmad=false", "-ftz=true"]


def test_c_literal_reads_back_as_the_same_double():
    for x in (1.0, -2.0, 1e-3, 1e-6, 0.5, math.log(1e-6), math.log(2.0), 1e300, 2.0 ** -24,
              float(np.float32(0.1))):
        text = cuda.c_literal(x)
        assert float(text) == x, (x, text)
        assert len(text) <= len(repr(x)), (x, text)
    assert cuda.c_literal(1.0) == "1" and cuda.c_literal(1e-3) == "1e-3"
    assert cuda.render("f($A) + $B", A=0.25, B=np.uint64(255)) == "f(0.25) + 0xFFULL"
    with pytest.raises(KeyError):
        cuda.render("f($MISSING)")


def test_the_sources_take_the_reference_constants():
    """Each constant appears in its kernel's source as formatted from the Python value (and no
    placeholder is left anywhere)."""
    c = constants.values()
    assert f"+ T({cuda.c_literal(c['FORGET_BIAS'])}));" in lstm.CUDA_SOURCE
    assert f"const T eps = T({cuda.c_literal(c['LN_EPS'])});" in layer_norm_lstm.CUDA_SOURCE
    assert f"y[2] + T({cuda.c_literal(c['FORGET_BIAS'])})" in layer_norm_lstm.CUDA_SOURCE
    assert f"LOG_EPS = T({cuda.c_literal(c['LOG_LOSS_EPS'])});" in mdn.CUDA_SOURCE
    for name in ("GOLDEN", "MIX1", "MIX2"):
        assert f"0x{int(c[name]):X}ULL" in noise.CUDA_BODY
    for module in cupy_gpu.CUDA_MODULES:
        assert "$" not in module.source
    assert "$" not in noise.CUDA_BODY


def _nvcc(tmp_path, name: str, source: str) -> subprocess.Popen:
    path = os.path.join(tmp_path, f"{name}.cu")
    with open(path, "w") as f:
        f.write(source)
    return subprocess.Popen([NVCC, *NVCC_OPTIONS, "-o", path[:-3] + ".ptx", path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed")
def test_every_cuda_kernel_compiles_with_nvcc(tmp_path):
    jobs = {}
    for module in cupy_gpu.CUDA_MODULES:
        # taking a kernel's address instantiates its template for that type
        inst = "\n".join(f"void* inst_{k}_{t} = (void*){k}<{t}>;"
                         for k in module.names for t in cuda.CTYPES.values())
        jobs[module.names[0]] = _nvcc(tmp_path, module.names[0], module.source + "\n" + inst)
    jobs["hash_uniform"] = _nvcc(tmp_path, "hash_uniform", (
        "extern \"C\" __global__ void hash_uniform(const unsigned long long key, float* out,\n"
        "                                         const long long n) {\n"
        "    for (ptrdiff_t i = (ptrdiff_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;\n"
        "         i += (ptrdiff_t)blockDim.x * gridDim.x) {\n"
        "        float &u = out[i];\n" + noise.CUDA_BODY + "\n    }\n}\n"))
    failed = []
    for name, job in jobs.items():
        out, _ = job.communicate(timeout=600)
        if job.returncode != 0:
            failed.append(f"{name}:\n{out[-3000:]}")
    assert not failed, "\n".join(failed)
    for module in cupy_gpu.CUDA_MODULES:
        ptx = (tmp_path / f"{module.names[0]}.ptx").read_text()
        for k in module.names:
            assert ptx.count(f".entry _Z{len(k)}{k}I") == 2, k     # float and double
