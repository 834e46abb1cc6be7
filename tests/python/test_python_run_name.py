"""The Python package's default off-cluster run name is the script's, so that two scripts sharing
the default checkpoint storage never resume each other's checkpoints."""
import os
import subprocess
import sys
import textwrap

from conftest import ROOT

# Stores one checkpoint unless it resumes; prints the run name and what it resumed from.
SCRIPT = textwrap.dedent(
    """
    import detcore
    with detcore.init() as ctx:
        latest = ctx.info.latest_checkpoint
        if latest is None:
            with ctx.checkpoint.store_path({"steps_completed": 1}) as (path, sid):
                (path / "w").write_text("1")
        print(ctx.info.run_name, latest)
    """
)


def env_for(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DET_RUN_NAME", "SLURM_JOB_ID", "DETCORE_RUN_DIR")}
    env.update({
        "PYTHONPATH": str(ROOT / "bindings" / "python"),
        "XDG_DATA_HOME": str(tmp_path / "data"),  # the default storage, shared by every run here
        "DET_CLUSTER_INFO_DIR": str(tmp_path / "no-cluster"),
        "DETCORE_LOG_LEVEL": "warning",
    })
    env.update(extra)
    return env


def run(tmp_path, args, stdin=None, **extra):
    r = subprocess.run([sys.executable, *args], input=stdin, env=env_for(tmp_path, **extra), cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    name, latest = r.stdout.split()
    return name, None if latest == "None" else latest


def test_two_scripts_do_not_resume_each_other(tmp_path):
    (tmp_path / "prepare.py").write_text(SCRIPT)
    (tmp_path / "train.py").write_text(SCRIPT)
    assert run(tmp_path, ["prepare.py"]) == ("prepare", None)
    # Same default storage, another script: a fresh run (not prepare's checkpoint).
    assert run(tmp_path, ["train.py"]) == ("train", None)
    # Each resumes its own.
    name, latest = run(tmp_path, ["prepare.py"])
    assert name == "prepare" and latest is not None
    name2, latest2 = run(tmp_path, ["train.py"])
    assert name2 == "train" and latest2 is not None and latest2 != latest


def test_module_command_and_interactive_names(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "fit.py").write_text(SCRIPT)
    assert run(tmp_path, ["-m", "pkg.fit"])[0] == "fit"
    assert run(tmp_path, ["-c", SCRIPT])[0] == "python-c"
    assert run(tmp_path, ["-"], stdin=SCRIPT)[0] == "python-interactive"


def test_detcore_own_choices_come_first(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    assert run(tmp_path, ["train.py"], DET_RUN_NAME="exp7")[0] == "exp7"
    assert run(tmp_path, ["train.py"], SLURM_JOB_ID="4242")[0] == "slurm-4242"
    code = "import detcore\nwith detcore.init(run_name='given') as c:\n    print(c.info.run_name, None)"
    assert run(tmp_path, ["-c", code], DET_RUN_NAME="exp7")[0] == "given"


def test_default_run_name_rules():
    sys.path.insert(0, str(ROOT / "bindings" / "python"))
    from detcore._context import default_run_name

    saved = {k: os.environ.pop(k, None) for k in ("DET_RUN_NAME", "SLURM_JOB_ID")}
    try:
        assert default_run_name("/home/u/exp/train.py") == "train"
        assert default_run_name("train") == "train"
        assert default_run_name("") == "python-interactive"
        assert default_run_name("/x/ipykernel_launcher.py") == "python-interactive"
        assert default_run_name("a\\b.py") == "a_b"
        assert len(default_run_name("é" * 150 + ".py").encode()) <= 200
        os.environ["DET_RUN_NAME"] = "x"
        assert default_run_name("train.py") is None  # detcore decides (DET_RUN_NAME)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
