"""Build the detcore Python package with libdetcore inside it.

setuptools-rust runs `cargo` on detcore's crate (the repository root when building from a clone,
the `crate/` folder of an sdist) and puts the shared library in the package as
`detcore/libdetcore.so`, stripped of debug info. The package calls it through ctypes only, so the
wheel does not depend on the Python version: it is tagged `py3-none-<platform>` (run
`auditwheel repair` on it for a `manylinux` tag).

    pip install ./bindings/python                   # needs Rust (cargo) and a C linker
    pip wheel --no-deps -w dist ./bindings/python   # a wheel to install where Rust is absent
    python -m build --sdist bindings/python         # an sdist that carries the crate

CARGO_TARGET_DIR chooses cargo's target folder (default: the crate's `target/`).
"""
import os
import pathlib
import shutil

from setuptools import setup
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension, Strip, build_rust

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = pathlib.Path(__file__).resolve().parent
SDIST_CRATE = "crate"
# What cargo needs to build libdetcore (copied into an sdist's crate/ folder).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml"]
CRATE_TREES = ["src"]


def crate_dir() -> pathlib.Path:
    """The crate: an sdist's copy, else the repository this folder lives in."""
    if (HERE / SDIST_CRATE / "Cargo.toml").is_file():
        return HERE / SDIST_CRATE
    root = HERE.parent.parent
    if not (root / "Cargo.toml").is_file():
        raise SystemExit(f"detcore: cannot find detcore's Cargo.toml in {HERE / SDIST_CRATE} or {root}")
    return root


class build_rust_named(build_rust):
    """Install the library as detcore/libdetcore.so rather than under a Python extension-module
    name (it is a plain C library loaded with ctypes, not an extension module)."""

    def get_dylib_ext_path(self, ext, target_fname):
        path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(path), "libdetcore.so")


class bdist_wheel_any_python(bdist_wheel):
    """One wheel per platform, for every Python 3: nothing in it uses the Python C API."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


class sdist_with_crate(sdist):
    """Put the crate's sources into the sdist, so that building from it compiles libdetcore."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        src, dst = crate_dir(), pathlib.Path(base_dir) / SDIST_CRATE
        dst.mkdir(exist_ok=True)
        for f in CRATE_FILES:
            shutil.copy2(src / f, dst / f)
        for t in CRATE_TREES:
            shutil.copytree(src / t, dst / t, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.orig", "*.rej"))


setup(
    rust_extensions=[
        RustExtension(
            "detcore.libdetcore",
            path=str(crate_dir() / "Cargo.toml"),
            binding=Binding.NoBinding,
            strip=Strip.Debug,
            py_limited_api=False,
            args=["--locked"],
        )
    ],
    cmdclass={
        "build_rust": build_rust_named,
        "bdist_wheel": bdist_wheel_any_python,
        "sdist": sdist_with_crate,
    },
    zip_safe=False,
)
