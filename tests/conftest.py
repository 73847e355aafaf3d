"""Shared test helpers: where the real third-party data lives (../shared/data, never in the repo)."""
from __future__ import annotations

import os

# The tests multiply small matrices: one BLAS thread is faster than two fighting over a busy
# machine (a 2-thread OpenBLAS on an oversubscribed 2-core box was seen 20x slower). Set before
# NumPy is first imported by a test module; subprocesses (CLI and lesson tests) inherit it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data, or skip the test with the reason it is missing."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (real datasets live in ../shared/data, outside the repo)")
    return path


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real datasets live in ../shared/data)")
    return SHARED_DATA
