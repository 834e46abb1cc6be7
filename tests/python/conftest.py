"""Shared pytest fixtures: where the built library and programs are, fresh temp folders."""
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("DETCORE_BUILD_DIR", ROOT / "build"))


def lib_path() -> pathlib.Path:
    p = os.environ.get("DETCORE_LIB")
    return pathlib.Path(p) if p else build_dir() / "cargo" / "release" / "libdetcore.so"


@pytest.fixture(scope="session")
def detcore_lib() -> pathlib.Path:
    p = lib_path()
    if not p.exists():
        pytest.fail(f"libdetcore not built at {p}; run scripts/test.sh (or set DETCORE_LIB)")
    return p


# The Python package is tested from the working tree (tests/python/test_python_package.py also
# pip-installs it); it finds the built library through DETCORE_LIB.
sys.path.insert(0, str(ROOT / "bindings" / "python"))
os.environ.setdefault("DETCORE_LIB", str(lib_path()))
