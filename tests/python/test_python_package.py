"""`pip install ./bindings/python` works, and the installed package finds libdetcore next to
itself (no DETCORE_LIB) or through DETCORE_LIB."""
import os
import shutil
import subprocess
import sys
import textwrap

from conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, detcore
    print(detcore.__file__)
    print(detcore.library_path())
    d = pathlib.Path(sys.argv[1])
    with detcore.init(checkpoint_storage=d / "c", run_dir=d / "run", cluster_info_dir="/nonexistent") as ctx:
        with ctx.checkpoint.store_path({"steps_completed": 1}) as (path, sid):
            (path / "x").write_text("y")
        with ctx.checkpoint.restore_path(sid) as path:
            assert (path / "x").read_text() == "y"
    print("OK")
    """
)


def test_pip_install_and_library_next_to_package(tmp_path, detcore_lib):
    site = tmp_path / "site"
    # From a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "bindings" / "python", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so*"))
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert (site / "detcore" / "__init__.py").exists() and (site / "detcore" / "py.typed").exists()

    env = {k: v for k, v in os.environ.items() if k not in ("DETCORE_LIB", "PYTHONPATH", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(site)
    run = lambda e: subprocess.run(  # noqa: E731
        [sys.executable, "-c", SCRIPT, str(tmp_path)], env=e, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )

    # Through DETCORE_LIB.
    r = run({**env, "DETCORE_LIB": str(detcore_lib)})
    assert r.returncode == 0, r.stderr
    pkg, libpath, ok = r.stdout.split()
    assert pkg.startswith(str(site)) and libpath == str(detcore_lib) and ok == "OK"

    # Next to the package, found without any variable.
    shutil.copy(detcore_lib, site / "detcore" / "libdetcore.so")
    r = run(env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == str(site / "detcore" / "libdetcore.so")
