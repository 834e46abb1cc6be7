"""Shared pytest fixtures: where the built library and programs are, fresh temp folders."""
import os
import pathlib

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
