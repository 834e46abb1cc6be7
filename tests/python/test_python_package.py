"""The Python package as users get it: an sdist that carries the crate, a wheel built from it
by cargo (through setuptools-rust) with libdetcore inside, made manylinux by auditwheel, then
installed into a fresh venv on a PATH without Rust and run (the tutorial script) with no
DETCORE_LIB: the library inside the package is found. DETCORE_LIB still overrides it.

Costs one release build of libdetcore (cargo's target folder <build>/cargo-wheel keeps the
dependencies between runs: ~1 min the first time on 2 cores, ~30 s after a change of detcore)."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT, build_dir

# What cargo needs, copied into a clean tree (as a fresh clone has it).
CRATE = ["Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml", "src", "bindings/python"]


def sh(args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, f"{args}:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}"
    return r.stdout


def build_requirements_installed():
    """bindings/python/pyproject.toml's build requirements, which the wheel is built with here."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version
    import importlib.metadata as md

    reqs = tomllib.loads((ROOT / "bindings/python/pyproject.toml").read_text())["build-system"]["requires"]
    for r in map(Requirement, reqs):
        assert Version(md.version(r.name)) in r.specifier, f"{r} is not what this venv has ({md.version(r.name)})"


def no_rust_path():
    """PATH without any folder that holds cargo or rustc."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not any(os.path.exists(os.path.join(d, x)) for x in ("cargo", "rustc"))]
    return os.pathsep.join(dirs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if sys.version_info < (3, 11):
        pytest.skip("tomllib")
    build_requirements_installed()
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "clone"
    for rel in CRATE:
        src, dst = ROOT / rel, tree / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "*.so*"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    dist = work / "dist"
    # The sdist carries the crate (crate/), so the wheel built from it compiles libdetcore.
    sh([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", dist, tree / "bindings/python"])
    (sdist,) = dist.glob("detcore-*.tar.gz")
    env = dict(os.environ, CARGO_TARGET_DIR=str(build_dir() / "cargo-wheel"))
    env.pop("DETCORE_LIB", None)
    sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
        "-w", dist, sdist], env=env)
    (plain,) = dist.glob("detcore-*-py3-none-linux_*.whl")
    # manylinux: auditwheel checks what the library links against and tags the wheel.
    sh([sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", work / "repaired", plain],
       env=dict(os.environ, PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"))
    (repaired,) = (work / "repaired").glob("*.whl")
    return sdist, repaired


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory):
    _, whl = wheel
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    sh([sys.executable, "-m", "venv", venv])
    py = venv / "bin" / "python"
    sh([py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--disable-pip-version-check", whl])
    return py


def test_sdist_carries_the_crate_and_the_wheel_the_library(wheel, tmp_path):
    sdist, whl = wheel
    names = subprocess.run(["tar", "tzf", str(sdist)], capture_output=True, text=True, check=True).stdout.split()
    for f in ("crate/Cargo.toml", "crate/Cargo.lock", "crate/build.rs", "crate/src/lib.rs", "setup.py", "detcore/__init__.py"):
        assert any(n.endswith("/" + f) for n in names), f
    # One wheel for every Python 3, manylinux-tagged.
    assert re.fullmatch(r"detcore-0\.1\.0-py3-none-manylinux_\d+_\d+_x86_64(\.manylinux\w+)*\.whl", whl.name), whl.name
    with zipfile.ZipFile(whl) as z:
        libs = [n for n in z.namelist() if "libdetcore" in n]
        assert libs == ["detcore/libdetcore.so"], z.namelist()
        data = z.read("detcore/libdetcore.so")
    assert len(data) < 12 << 20, f"libdetcore.so in the wheel is {len(data) >> 20} MiB: not stripped?"
    so = tmp_path / "libdetcore.so"
    so.write_bytes(data)
    sections = sh(["readelf", "-S", "-W", so])
    assert ".text" in sections and ".debug_info" not in sections, "debug info left in the wheel's library"
    assert "Library soname: [libdetcore.so.1]" in sh(["readelf", "-d", so])


TUTORIAL = ROOT / "tests" / "python" / "core_tutorial.py"


def run_fresh(py, tmp_path, args, **env_extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DETCORE_LIB", "LD_LIBRARY_PATH", "PYTHONPATH", "CARGO_HOME", "RUSTUP_HOME")}
    env.update(PATH=no_rust_path(), DETCORE_LOG_LEVEL="warning", DET_CLUSTER_INFO_DIR=str(tmp_path / "none"))
    env.update(env_extra)
    return subprocess.run([str(py), *map(str, args)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


def test_fresh_venv_without_rust_runs_the_tutorial(fresh_venv, tmp_path):
    assert shutil.which("cargo", path=no_rust_path()) is None
    tut = tmp_path / "core_tutorial.py"
    shutil.copy(TUTORIAL, tut)
    storage = tmp_path / "ckpts"
    # Preempted part way, then resumed from its checkpoint.
    r = run_fresh(fresh_venv, tmp_path, [tut, "--impl", "detcore", "--storage", storage, "--stop-after", "20"])
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["x"] == 60
    r = run_fresh(fresh_venv, tmp_path, [tut, "--impl", "detcore", "--storage", storage, "--latest", first["last"]])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["x"] == 150  # 50 steps of 3: the same as an uninterrupted run

    # The library is the one inside the installed package.
    r = run_fresh(fresh_venv, tmp_path, ["-c", "import detcore; print(detcore.__file__); print(detcore.library_path())"])
    assert r.returncode == 0, r.stderr
    pkg, lib = r.stdout.split()
    assert pathlib.Path(lib) == pathlib.Path(pkg).parent / "libdetcore.so"
    assert "site-packages" in lib


def test_detcore_lib_still_overrides(fresh_venv, tmp_path, detcore_lib):
    code = "import detcore; print(detcore.library_path())"
    r = run_fresh(fresh_venv, tmp_path, ["-c", code], DETCORE_LIB=str(detcore_lib))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(detcore_lib)
    # Set but wrong: an error naming it, never a silent fallback to the packaged library.
    r = run_fresh(fresh_venv, tmp_path, ["-c", code], DETCORE_LIB=str(tmp_path / "missing.so"))
    assert r.returncode != 0
    assert "LibraryNotFoundError" in r.stderr and "missing.so" in r.stderr
