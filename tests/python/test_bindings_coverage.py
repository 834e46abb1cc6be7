"""Every C function of include/detcore.h is bound by the C++ header, the Fortran module and the
Python package. When this fails after a new function was added to the C API, add it to each
binding as docs/bindings.md ("Adding a C function") describes."""
import re

from conftest import ROOT

# C functions the C++ header deliberately leaves to the C API (it has better C++ forms).
CPP_NOT_WRAPPED = {
    "det_last_error_copy",  # det::Error carries the message
    "det_version_number",  # DET_VERSION_NUMBER / det::version()
}


def c_functions():
    text = (ROOT / "include" / "detcore.h").read_text()
    names = re.findall(r"^(?:det_status|const char \*|void|uint32_t)\s*(det_[a-z0-9_]+)\(", text, re.M)
    assert len(names) > 50, names
    return names


def test_python_binds_every_function():
    from detcore import _lib

    missing = [n for n in c_functions() if n not in _lib.SIGNATURES]
    assert not missing, f"add to SIGNATURES in bindings/python/detcore/_lib.py: {missing}"
    extra = [n for n in _lib.SIGNATURES if n not in c_functions()]
    assert not extra, f"SIGNATURES has functions detcore.h lacks: {extra}"


def test_fortran_binds_every_function():
    text = (ROOT / "bindings" / "fortran" / "detcore.f90").read_text()
    bound = set(re.findall(r'bind\(c, name="(det_[a-z0-9_]+)"\)', text))
    missing = [n for n in c_functions() if n not in bound]
    assert not missing, f"add bind(c) interfaces to bindings/fortran/detcore.f90: {missing}"
    public = re.split(r"\n\s*(?:abstract\s+)?interface\s*\n", text.split("public :: det_ckpt_store_path_begin", 1)[1], 1)[0]
    unexported = [n for n in c_functions() if not re.search(rf"\b{n}\b", public) and n != "det_ckpt_store_path_begin"]
    assert not unexported, f"add to the public list of the C interfaces in detcore.f90: {unexported}"


def test_cpp_wraps_every_function():
    text = (ROOT / "include" / "detcore.hpp").read_text()
    missing = [n for n in c_functions() if n not in CPP_NOT_WRAPPED and not re.search(rf"\b{n}\b", text)]
    assert not missing, f"wrap in include/detcore.hpp (or list in CPP_NOT_WRAPPED with a reason): {missing}"
