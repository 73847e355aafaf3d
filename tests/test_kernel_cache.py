"""Numba's disk cache across files: a kernel is recompiled when a function it calls in another
file, or a reference constant it reads, changes (``kernels/jit.py``, "The disk cache").

Numba checks a cached function against its own source file only, and a kernel carries compiled
copies of its callees (``kernels/numerics.py``) and of the constants it reads. The checks run on
a temporary copy of the package, each in a fresh Python process (the only way to load from
Numba's cache), on the LSTM forward kernel: ``kernels/lstm.py`` calls ``numerics.sigmoid`` and
reads FORGET_BIAS from ``layers/lstm.py``. The control run shows the hazard is real: with the
cache folder held fixed, an edited ``numerics.py`` leaves the stale kernel in place.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

PACKAGE = Path(__file__).resolve().parents[1] / "minisketch"

# Runs the LSTM forward kernel (float64) on fixed inputs; prints its h, the reference's h (the
# reference module of the same copy) and the cache folder. argv[1], if given, pins the folder.
SCRIPT = r"""
import json, sys
from minisketch.kernels import jit
if len(sys.argv) > 1:
    jit.CACHE_DIR = sys.argv[1]
import numpy as np
import minisketch
from minisketch.kernels import lstm
from minisketch.layers import lstm as ref
rng = np.random.default_rng(0)
B, H = 3, 5
args = (rng.standard_normal((B, 4 * H)), rng.standard_normal((B, 4 * H)),
        rng.standard_normal((B, H)), rng.standard_normal((B, H)), None, None)
got = [np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))]
want = [np.empty((B, H)), np.empty((B, H)), np.empty((B, 5 * H))]
lstm.lstm_cell_forward_numba(*args, *got)
ref.lstm_cell_forward(*args, *want)
print(json.dumps({"h": got[1].tolist(), "ref_h": want[1].tolist(), "package": minisketch.__file__,
                  "cache_dir": jit.CACHE_DIR}))
"""


def run(root: Path, *argv) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(root)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *argv], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["package"].startswith(str(root)), out["package"]     # the copy, not the tree
    return out


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name}: expected one {old!r}"
    path.write_text(text.replace(old, new))


def cached_files(folder: str, name: str) -> list:
    return [p for p in Path(folder).rglob("*.nbi") if name in p.name]


def test_an_edited_callee_or_constant_recompiles_the_kernel(tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(PACKAGE, root / "minisketch",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pinned = str(tmp_path / "pinned")

    first = run(root)
    assert np.allclose(first["h"], first["ref_h"], rtol=1e-12, atol=0)
    assert cached_files(first["cache_dir"], "_lstm_fwd_rows"), "the kernel was not cached"
    base = run(root, pinned)
    assert base["h"] == first["h"]

    # the callee in numerics.py changes (sigmoid halved): same input, different h
    edit(root / "minisketch" / "kernels" / "numerics.py",
         "return 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)",
         "return 0.5 / (1.0 + e) if x >= 0.0 else 0.5 * e / (1.0 + e)")
    stale = run(root, pinned)
    assert stale["h"] == first["h"], ("control: with the folder fixed, Numba loads the stale "
                                      "kernel from its cache (if it stops doing so, this test "
                                      "needs another control)")
    fresh = run(root)
    assert fresh["cache_dir"] != first["cache_dir"]
    assert not np.allclose(fresh["h"], first["h"]), "the edited callee was not compiled in"

    # a reference constant changes: the kernel follows the reference again
    defined = [p for p in (root / "minisketch").rglob("*.py")
               if "kernels" not in p.parts and "\nFORGET_BIAS = 1.0" in p.read_text()]
    assert len(defined) == 1, defined
    edit(defined[0], "\nFORGET_BIAS = 1.0", "\nFORGET_BIAS = 2.0")
    edit(root / "minisketch" / "kernels" / "numerics.py",
         "return 0.5 / (1.0 + e) if x >= 0.0 else 0.5 * e / (1.0 + e)",
         "return 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)")
    bias2 = run(root)
    assert bias2["cache_dir"] not in (first["cache_dir"], fresh["cache_dir"])
    assert not np.allclose(bias2["ref_h"], first["ref_h"])
    assert np.allclose(bias2["h"], bias2["ref_h"], rtol=1e-12, atol=0), \
        "the kernel did not pick up the new FORGET_BIAS"
