"""The C++ header and the Fortran module on-cluster: tests/cpp/info_dump.cpp and
tests/fortran/info_dump.f90 run against the fake master with a trial's info files (and a task
that is not a trial), and what they print of the cluster info is compared with determined's own
ClusterInfo read from the same files (also as one JSON object, `get_cluster_info()` without a
context); their alerts reach the master's webhook endpoint, their experimental trial source
infos the master, and their TensorBoard files the experiment's storage layout."""
import json
import shutil
import tempfile
import uuid

import pytest

from conftest import build_dir
from oncluster_util import FakeMaster, base_env, run, setup_trial

_info = pytest.importorskip("determined._info")

PROGRAMS = {"cpp": ("cpp", "info_dump_cpp"), "fortran": ("fortran", "info_dump_fortran")}


def program(lang):
    sub, name = PROGRAMS[lang]
    p = build_dir() / "tests" / sub / name
    if not p.exists():
        if lang == "fortran":
            pytest.skip(f"{p} not built (no Fortran compiler found by CMake)")
        pytest.fail(f"{p} not built; run scripts/test.sh (or cmake --build build)")
    return p


def reference_info(info_dir):
    def load(name):
        return json.loads((info_dir / name).read_text())

    return _info.ClusterInfo(
        trial_info=_info.TrialInfo(**load("trial.json")),
        rendezvous_info=_info.RendezvousInfo(**load("rendezvous.json")),
        resources_info=_info.ResourcesInfo(**load("resources.json")),
        **load("cluster.json"),
    )


@pytest.fixture()
def trial(tmp_path):
    aid = f"7.{uuid.uuid4().hex[:8]}.1"  # the TensorBoard folder is $TMPDIR/tensorboard-<aid>-0
    m = FakeMaster(allocation_id=aid).start()
    info, host, container = setup_trial(m, tmp_path)
    m.write_info_dir(info, storage_host_path=str(host), slot_ids=(3,))
    for name, changes in (("resources.json", {"gpu_uuids": ["GPU-aaaa", "GPU-bbbb"]}),
                          ("trial.json", {"trial_seed": 4_000_000_000, "debug": True,
                                          "inter_node_network_interface": "ib0"})):
        d = json.loads((info / name).read_text())
        d.update(changes)
        (info / name).write_text(json.dumps(d))
    m.info_dir, m.host, m.container = info, host, container
    yield m
    m.stop()
    shutil.rmtree(f"{tempfile.gettempdir()}/tensorboard-{aid}-0", ignore_errors=True)


def dump(lang, m):
    r = run([program(lang)], base_env(m.info_dir, m.container), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def check_cluster_info_json(j, ref):
    """The JSON of det_cluster_info_json against determined's ClusterInfo."""
    for key in ("master_url", "cluster_id", "agent_id", "slot_ids", "task_id", "allocation_id", "session_token",
                "task_type", "master_cert_name", "master_cert_file"):
        assert j[key] == getattr(ref, key), key
    if ref.task_type == "TRIAL":
        for key in ("trial_id", "experiment_id", "trial_seed", "hparams"):
            assert j["trial"][key] == getattr(ref.trial, key), key
        for key in ("config", "steps_completed", "trial_run_id", "debug", "inter_node_network_interface"):
            assert j["trial"][key] == getattr(ref.trial, "_" + key), key
        for key in ("container_addrs", "container_rank", "container_slot_counts"):
            assert j["rendezvous"][key] == getattr(ref, key), key
    assert j["resources"]["gpu_uuids"] == ref.gpu_uuids


@pytest.mark.parametrize("lang", ["cpp", "fortran"])
def test_trial_info_alert_and_tensorboard(lang, trial):
    ref = reference_info(trial.info_dir)
    got = dump(lang, trial)
    assert got["on_cluster"] in ("1", "T")
    for key in ("task_type", "task_id", "allocation_id", "cluster_id", "agent_id", "master_url"):
        assert got[key] == getattr(ref, key), key
    for key in ("trial_id", "experiment_id", "trial_seed"):
        assert got[key] == str(getattr(ref.trial, key)), key
    assert got["trial_seed"] == "4000000000"
    assert got["trial_run_id"] == str(ref.trial._trial_run_id)
    assert got["container_rank"] == str(ref.container_rank)
    assert json.loads(got["user_data_json"]) == ref.user_data
    assert json.loads(got["experiment_config_json"]) == ref.trial._config
    assert got["container_addrs"] == ",".join(ref.container_addrs)
    assert got["container_slot_counts"] == ",".join(map(str, ref.container_slot_counts))
    assert got["slot_ids"] == ",".join(map(str, ref.slot_ids)) == "3"
    assert got["gpu_uuids"] == ",".join(ref.gpu_uuids) == "GPU-aaaa,GPU-bbbb"
    assert got["tensorboard_path"] == f"{tempfile.gettempdir()}/tensorboard-{trial.allocation_id}-0"
    assert got["trial_debug"] == "true" and got["inter_node_network_interface"] == "ib0"
    assert (ref.trial._debug, ref.trial._inter_node_network_interface) == (True, "ib0")
    check_cluster_info_json(json.loads(got["cluster_info_json"]), ref)
    sid = trial.trial_source_infos[0]["checkpointUuid"]
    base = {"checkpointUuid": sid, "trialId": 7, "trialSourceInfoType": "TRIAL_SOURCE_INFO_TYPE_INFERENCE"}
    assert trial.trial_source_infos == [base, {**base, "modelId": 5, "modelVersion": 3}]

    title, level = {"cpp": ("from C++", "LOG_LEVEL_WARNING"), "fortran": ("from Fortran", "LOG_LEVEL_ERROR")}[lang]
    assert trial.alerts == [{"data": {"description": "info_dump", "level": level, "title": title},
                             "experimentId": 3, "trialId": 7}]
    synced = trial.host / "fake-cluster" / "tensorboard" / "experiment" / "3" / "trial" / "7"
    files = [p for p in synced.rglob("events.out.tfevents.*")]
    assert len(files) == 1, files
    prefix = "cpp-rank0/" if lang == "cpp" else ""  # the C++ program renames with a mangler
    assert files[0].relative_to(synced).as_posix().startswith(prefix + "events.out.tfevents.")
    assert f"{lang}/x".encode() in files[0].read_bytes()


@pytest.mark.parametrize("lang", ["cpp", "fortran"])
def test_task_that_is_not_a_trial(lang, trial, tmp_path):
    trial.write_info_dir(trial.info_dir, storage_host_path=str(trial.host), task_type="COMMAND")
    ref = reference_info(trial.info_dir)
    r = run([program(lang)], {**base_env(trial.info_dir, trial.container), "XDG_DATA_HOME": str(tmp_path / "xdg"),
                               "DETCORE_RUN_DIR": str(tmp_path / "run")}, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert got["task_type"] == "COMMAND"
    for key in ("trial_id", "experiment_id", "trial_seed", "trial_run_id", "experiment_config_json"):
        assert got[key] == "<none>", key  # Python's info.trial raises here
    assert json.loads(got["user_data_json"]) == ref.user_data == {}
    assert got["container_addrs"] == ",".join(ref.container_addrs) == "127.0.0.1"
    assert got["container_rank"] == str(ref.container_rank) == "0"
    assert got["cluster_id"] == ref.cluster_id
    assert got["trial_debug"] == "<none>" and got["inter_node_network_interface"] == "<none>"
    check_cluster_info_json(json.loads(got["cluster_info_json"]), ref)
    assert trial.requests() == []
