"""Shared pytest fixtures for the differential tests (see harness.py)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@pytest.fixture
def host_tmp_path_cleanup():
    """Hands out fresh /tmp paths (shared by native and sandboxed runs of a
    test) and removes whatever the native run left of them on the host."""
    made: list[str] = []

    def make(tag: str) -> str:
        p = harness.unique_tmp_path(tag)
        made.append(p)
        return p

    yield make
    for p in made:
        for q in (p, p + ".mapped"):
            if os.path.isdir(q) and not os.path.islink(q):
                shutil.rmtree(q, ignore_errors=True)
            elif os.path.lexists(q):
                os.unlink(q)


def pytest_collection_modifyitems(session, config, items):
    """The LTP corpus's long items first: pytest-xdist hands them out before the many short
    tests, so the workers share them and the short ones fill in after (left in file order,
    a worker could end the run alone on a queue of LTP chunks)."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/test_ltp.py::test_ltp_") else 1)
