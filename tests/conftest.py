"""Shared test helpers: where the real third-party data lives (../shared/data, never in the repo)."""
from __future__ import annotations

from pathlib import Path

import pytest

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
