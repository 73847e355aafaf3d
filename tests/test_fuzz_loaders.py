"""Fuzz test of every file loader (tests/fuzz_loaders.py), in a subprocess.

Bounds: the subprocess runs under RLIMIT_AS = 1 GiB (the interpreter with NumPy, hypothesis
and minisketch takes about 170 MB of it), so any allocation that a declared size asks for
fails there; its peak resident memory must stay below ``MAX_RSS_MB``; the whole run takes
about ten seconds on one core (``EXAMPLES`` examples per file kind, a fixed hypothesis seed).
A crash (segfault) is a non-zero exit; any exception but a MinisketchError fails hypothesis,
which prints the smallest file that caused it. ``MINISKETCH_FUZZ_EXAMPLES`` and
``MINISKETCH_FUZZ_SEED`` run it longer or with other files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = int(os.environ.get("MINISKETCH_FUZZ_EXAMPLES", "60"))
SEED = int(os.environ.get("MINISKETCH_FUZZ_SEED", "0"))
MAX_RSS_MB = 400


def test_every_loader_survives_hostile_files():
    script = Path(__file__).with_name("fuzz_loaders.py")
    r = subprocess.run([sys.executable, str(script), str(EXAMPLES), str(SEED)],
                       capture_output=True, text=True, timeout=900)
    report = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, (f"exit {r.returncode} (negative: killed by a signal)\n"
                               f"{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
    summary = json.loads(report)
    assert summary["calls"] > 20 * EXAMPLES
    assert summary["max_rss_mb"] < MAX_RSS_MB, summary
