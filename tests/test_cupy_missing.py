"""The cupy backend without CuPy or without a GPU: one clear error, never a traceback.

Runs everywhere (no GPU needed): CuPy is made unimportable (``sys.modules["cupy"] = None``, so
``import cupy`` raises ImportError) or replaced by a stand-in whose runtime reports no device.
"""
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from minisketch.backend import get_backend
from minisketch.errors import BackendError

INSTALL_HINTS = ('pip install -e ".[cuda12]"', 'pip install -e ".[cuda13]"')
ROOT = Path(__file__).resolve().parents[1]


def _fake_cupy(get_device_count):
    """A module that imports as ``cupy`` but whose CUDA runtime has no usable device."""
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=get_device_count))
    return cupy


def _raise_no_driver():
    raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")


def test_get_backend_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendError) as e:
        get_backend("cupy")
    msg = str(e.value)
    for hint in INSTALL_HINTS:
        assert hint in msg
    assert "\n" not in msg
    assert "import failed" in msg


@pytest.mark.parametrize("count,reason", [(lambda: 0, "no CUDA device found"),
                                          (_raise_no_driver, "no usable CUDA device")])
def test_get_backend_without_device(monkeypatch, count, reason):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count))
    with pytest.raises(BackendError) as e:
        get_backend("cupy")
    msg = str(e.value)
    assert reason in msg
    for hint in INSTALL_HINTS:
        assert hint in msg


def test_model_without_cupy(monkeypatch):
    import minisketch as ms
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendError, match=r"cuda13"):
        ms.SketchRNN(ms.HParams(), backend="cupy")


def _run_train_without_cupy(args, cwd):
    """``python -m minisketch.train ARGS`` in a fresh interpreter where ``import cupy`` fails."""
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.modules["cupy"] = None
        sys.argv = ["minisketch.train"] + {list(args)!r}
        runpy.run_module("minisketch.train", run_name="__main__", alter_sys=True)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_train_cli_backend_cupy_without_cupy(tmp_path):
    """One ``error:`` line naming both install commands, exit status 1, no traceback, and no
    output file written."""
    out = tmp_path / "run"
    r = _run_train_without_cupy(["--backend", "cupy", "--steps", "1", "--out", str(out)],
                                cwd=tmp_path)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), r.stderr
    for hint in INSTALL_HINTS:
        assert hint in lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == [], written
