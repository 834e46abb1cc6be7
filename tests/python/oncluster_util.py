"""Helpers of the on-cluster tests: the fake master, info folders, running programs."""
import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from fake_master import TOKEN, FakeMaster, default_experiment_config  # noqa: E402,F401

from conftest import build_dir  # noqa: E402

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def program(name: str) -> pathlib.Path:
    p = build_dir() / "tests" / "c" / name
    if not p.exists():
        import pytest

        pytest.fail(f"{p} not built; run scripts/test.sh (or cmake --build build)")
    return p


def setup_trial(m: FakeMaster, tmp: pathlib.Path, **kw):
    """Info folder + shared_fs folders for a trial of the fake master. Returns (info_dir,
    host_path, container_path): the experiment's shared_fs host_path is `host_path` (what the
    master sees); the task sees it at `container_path` (a symlink, as the bind mount would)."""
    info = tmp / "info"
    host = tmp / "host_shared_fs"
    host.mkdir(parents=True, exist_ok=True)
    container = tmp / "determined_shared_fs"
    if not container.exists():
        container.symlink_to(host)
    m.write_info_dir(info, storage_host_path=str(host), **kw)
    return info, host, container


def in_process_task_env(monkeypatch) -> None:
    """This process's environment as a task's, for tests that load the library in-process: no
    DET_* variable of the outer environment, the fake master's token, few quick retries."""
    for k in list(os.environ):
        if k.startswith(("DET_", "DETCORE_MASTER")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("DET_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("DET_USER", "determined")
    monkeypatch.setenv("DET_RETRY_CONFIG", '{"total": 1, "backoff_factor": 0.05}')


def base_env(info: pathlib.Path, container: pathlib.Path, **extra) -> dict:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("DET_", "DETCORE_MASTER")):
            del env[k]
    env.update({
        "DET_CLUSTER_INFO_DIR": str(info),
        "DETCORE_TEST_INFO_DIR": str(info),
        "DETCORE_SHARED_FS_CONTAINER_PATH": str(container),
        "DET_SESSION_TOKEN": TOKEN,
        "DET_USER": "determined",
        "DET_RETRY_CONFIG": '{"total": 2, "backoff_factor": 0.1}',
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def normalize(v, uuids):
    """Replace storage ids by <uuid-N> (by first appearance) and report times by <time>."""
    if isinstance(v, dict):
        return {k: ("<time>" if k == "reportTime" and v[k] is not None else normalize(x, uuids))
                for k, x in v.items()}
    if isinstance(v, list):
        return [normalize(x, uuids) for x in v]
    if isinstance(v, str):
        def sub(mo):
            return uuids.setdefault(mo.group(0), f"<uuid-{len(uuids)}>")

        return UUID_RE.sub(sub, v)
    return v


def run(cmd, env, timeout=180, **kw):
    return subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


# ---- detcore through ctypes (for API and error-path tests; timing-insensitive) --------------
import ctypes  # noqa: E402


from capi import Library, Opts  # noqa: E402,F401


class DetError(Exception):
    def __init__(self, status, name, message):
        super().__init__(f"{name}: {message}")
        self.status, self.name, self.message = status, name, message


class Lib:
    """Calls into libdetcore; `call(name, *args)` raises DetError on a non-OK status."""

    def __init__(self, path):
        self.lib = Library(str(path))  # typed from include/detcore.h by the Python package

    def call(self, fn, *args):
        s = getattr(self.lib, fn)(*args)
        if s != 0:
            raise DetError(s, self.lib.det_status_name(s).decode(), self.lib.det_last_error_message().decode())

    def init(self, info_dir, **fields):
        o = Opts()
        self.call("det_init_options_default", ctypes.byref(o), ctypes.sizeof(o))
        o.disable_signal_handlers = True
        o.tensorboard_mode = 1
        o.cluster_info_dir = str(info_dir).encode()
        for k, v in fields.items():
            setattr(o, k, v.encode() if isinstance(v, str) else v)
        ctx = ctypes.c_void_p()
        self.call("det_core_init", ctypes.byref(o), ctypes.byref(ctx))
        return ctx

    def string(self, fn, *args):
        out = ctypes.c_void_p()
        self.call(fn, *args, ctypes.byref(out))
        if not out.value:
            return None
        s = ctypes.cast(out, ctypes.c_char_p).value.decode()
        self.lib.det_string_free(out)
        return s

    def value(self, fn, ctype, *args):
        out = ctype()
        self.call(fn, *args, ctypes.byref(out))
        return out.value
