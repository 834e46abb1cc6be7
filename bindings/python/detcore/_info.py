"""`core_context.info` (det_info_*): Python's `ClusterInfo`, with `ClusterInfo.trial` as `TrialInfo`.

Python's `core_context.info` is None off-cluster. detcore has info off-cluster too: the
hyperparameters (init(hparams=...) or DET_HPARAMS) and the latest checkpoint of the run, so the
same code resumes on a laptop, a Slurm cluster or a Determined cluster. Test
`core_context.info.on_cluster` where Python code tests `info is None`.

What only a Determined cluster knows (`cluster_id`, `trial.trial_id`, `container_addrs`, ...) is
None off-cluster (the lists are empty), and the trial's values are None in on-cluster tasks that
are not trials, where Python's `info.trial` raises RuntimeError. Any other failure (a closed
context) raises."""
import ctypes
import os
import pathlib
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, TypeVar, Union

from detcore import _errors, _json
from detcore._lib import lib

if TYPE_CHECKING:
    from detcore._context import Context

T = TypeVar("T")


def _known(name: str, fn: Callable[[], T]) -> Optional[T]:
    """`fn()` (which calls the C function `name`), or None when detcore says the value is only
    known on-cluster (DET_ERR_UNSUPPORTED). A library without `name` still raises
    UnsupportedError naming it."""
    lib().fn(name)
    try:
        return fn()
    except _errors.UnsupportedError:
        return None


class TrialInfo:
    """Python's `TrialInfo` (`core_context.info.trial`): `trial_id`, `experiment_id`,
    `trial_seed`, `hparams`, and the private `_config`, `_steps_completed`, `_trial_run_id`,
    `_debug`, `_inter_node_network_interface` (also as detcore's public `config`,
    `trial_run_id`, `debug`, `inter_node_network_interface`). Off-cluster only `hparams` is known
    (the run's); the others are None. `get_cluster_info().trial` is one too, read from the files."""

    def __init__(self, ctx: "Optional[Context]", _data: Optional[Dict[str, Any]] = None) -> None:
        self._ctx = ctx
        self._data = _data  # trial.json's values (get_cluster_info), else the context's getters

    def _int(self, name: str, ctype: Any, key: str) -> Optional[int]:
        if self._data is not None:
            return self._data[key]
        return _known(name, lambda: int(lib().value_out(name, ctype, self._ctx._handle())))

    @property
    def hparams(self) -> Dict[str, Any]:
        if self._data is not None:
            return self._data["hparams"]
        return _json.loads(lib().string_out("det_info_hparams_json", self._ctx._handle()) or "{}")

    @property
    def trial_id(self) -> Optional[int]:
        return self._int("det_info_trial_id", ctypes.c_int64, "trial_id")

    @property
    def experiment_id(self) -> Optional[int]:
        return self._int("det_info_experiment_id", ctypes.c_int64, "experiment_id")

    @property
    def trial_seed(self) -> Optional[int]:
        return self._int("det_info_trial_seed", ctypes.c_uint32, "trial_seed")

    @property
    def trial_run_id(self) -> Optional[int]:
        """(detcore) 1 for the trial's first allocation, +1 for every restart."""
        return self._int("det_info_trial_run_id", ctypes.c_int64, "trial_run_id")

    @property
    def config(self) -> Optional[Dict[str, Any]]:
        """(detcore) The experiment config, as the master sent it. Its shape changes between
        Determined versions: prefer `hparams` and `info.user_data`."""
        if self._data is not None:
            return self._data["config"]
        name = "det_info_experiment_config_json"
        text = _known(name, lambda: lib().string_out(name, self._ctx._handle()))
        return None if text is None else _json.loads(text)

    @property
    def debug(self) -> Optional[bool]:
        """(detcore) The experiment config's `debug` flag."""
        if self._data is not None:
            return self._data["debug"]
        name = "det_info_trial_debug"
        return _known(name, lambda: bool(lib().value_out(name, ctypes.c_bool, self._ctx._handle())))

    @property
    def inter_node_network_interface(self) -> Optional[str]:
        """(detcore) The network interface the experiment config names for traffic between
        nodes (None when none is set)."""
        if self._data is not None:
            return self._data["inter_node_network_interface"]
        name = "det_info_inter_node_network_interface"
        return _known(name, lambda: lib().string_out(name, self._ctx._handle()))

    # Python's private names, for code that reads them.
    _config = config
    _trial_run_id = trial_run_id
    _debug = debug
    _inter_node_network_interface = inter_node_network_interface

    @property
    def _steps_completed(self) -> int:
        if self._data is not None:
            return self._data["steps_completed"]
        return int(lib().value_out("det_info_steps_completed", ctypes.c_int64, self._ctx._handle()))

    def __repr__(self) -> str:
        return f"TrialInfo(trial_id={self.trial_id!r}, experiment_id={self.experiment_id!r})"


def _cluster_info_data(info_dir: Optional[Union[str, os.PathLike]]) -> Optional[Dict[str, Any]]:
    text = lib().string_out("det_cluster_info_json", None if info_dir is None else os.fsencode(info_dir))
    return None if text is None else _json.loads(text)


class ClusterInfo:
    """Python's `ClusterInfo`, as `get_cluster_info()` returns it: what the task container's info
    files say, read once. Attributes: `master_url` (canonical), `cluster_id`, `agent_id`,
    `slot_ids`, `task_id`, `allocation_id`, `session_token` (a credential: do not log it),
    `task_type`, `master_cert_name`, `master_cert_file`; properties as Python's:
    `latest_checkpoint` (None for tasks that are not trials), `user_data`, `trial` (RuntimeError
    for tasks that are not trials), `container_addrs`, `container_slot_counts`,
    `container_rank`, `gpu_uuids` (empty without resources.json, where Python asserts)."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.master_url: str = data["master_url"]
        self.cluster_id: str = data["cluster_id"]
        self.agent_id: str = data["agent_id"]
        self.slot_ids: List[int] = data["slot_ids"]
        self.task_id: str = data["task_id"]
        self.allocation_id: str = data["allocation_id"]
        self.session_token: str = data["session_token"]
        self.task_type: str = data["task_type"]
        self.master_cert_name: Optional[str] = data["master_cert_name"]
        self.master_cert_file: Optional[str] = data["master_cert_file"]
        self._latest_checkpoint: Optional[str] = data["latest_checkpoint"]
        self._trial_info = None if data["trial"] is None else TrialInfo(None, _data=data["trial"])
        self._rendezvous = data["rendezvous"]
        self._resources = data["resources"]

    @property
    def latest_checkpoint(self) -> Optional[str]:
        return self._latest_checkpoint if self.task_type == "TRIAL" else None

    @property
    def user_data(self) -> Dict[str, Any]:
        if self.task_type != "TRIAL":
            return {}
        return self.trial._config.get("data", {})

    @property
    def trial(self) -> TrialInfo:
        if self.task_type != "TRIAL":
            raise RuntimeError(
                f'you cannot use the .trial property when .task_type ("{self.task_type}") != "TRIAL"'
            )
        assert self._trial_info is not None  # detcore refuses a trial without trial.json
        return self._trial_info

    @property
    def container_addrs(self) -> List[str]:
        if self.task_type != "TRIAL":
            return ["127.0.0.1"]
        return self._rendezvous["container_addrs"]

    @property
    def container_slot_counts(self) -> List[int]:
        if self.task_type != "TRIAL":
            return [len(self.slot_ids)]
        return self._rendezvous["container_slot_counts"]

    @property
    def container_rank(self) -> int:
        if self.task_type != "TRIAL":
            return 0
        return self._rendezvous["container_rank"]

    @property
    def gpu_uuids(self) -> List[str]:
        return [] if self._resources is None else self._resources["gpu_uuids"]

    def __repr__(self) -> str:
        return f"ClusterInfo(task_type={self.task_type!r}, task_id={self.task_id!r}, allocation_id={self.allocation_id!r})"


def get_cluster_info(info_dir: Optional[Union[str, os.PathLike]] = None) -> Optional[ClusterInfo]:
    """`determined.get_cluster_info()`: the task's ClusterInfo, or None when not running in a
    Determined task. The info files are read from `info_dir`, else `$DET_CLUSTER_INFO_DIR`, else
    `/run/determined/info` (Python reads only the last), and checked as init() checks them (a
    broken file raises InvalidArgumentError naming it). Unlike Python, it is read again at every
    call."""
    data = _cluster_info_data(info_dir)
    return None if data is None else ClusterInfo(data)


class Info:
    """Python's `ClusterInfo` (`core_context.info`), off-cluster too (see the module's docs)."""

    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx
        self.trial = TrialInfo(ctx)

    def _str(self, name: str) -> Optional[str]:
        return _known(name, lambda: lib().string_out(name, self._ctx._handle()))

    def _list(self, count: str, item: Callable[[int], T]) -> List[T]:
        n = _known(count, lambda: int(lib().value_out(count, ctypes.c_size_t, self._ctx._handle())))
        return [item(i) for i in range(n or 0)]

    @property
    def on_cluster(self) -> bool:
        return bool(lib().value_out("det_info_is_on_cluster", ctypes.c_bool, self._ctx._handle()))

    @property
    def latest_checkpoint(self) -> Optional[str]:
        """The storage id to resume from (None: a fresh start)."""
        return lib().string_out("det_info_latest_checkpoint", self._ctx._handle())

    @property
    def steps_completed(self) -> int:
        """`steps_completed` of the latest checkpoint (0 without one)."""
        return int(lib().value_out("det_info_steps_completed", ctypes.c_int64, self._ctx._handle()))

    @property
    def hparams(self) -> Dict[str, Any]:
        """Shortcut for `trial.hparams`."""
        return self.trial.hparams

    @property
    def run_name(self) -> Optional[str]:
        """Off-cluster run name (None on-cluster)."""
        return lib().string_out("det_info_run_name", self._ctx._handle())

    @property
    def run_dir(self) -> Optional[pathlib.Path]:
        """Off-cluster run folder with metrics.jsonl (None on-cluster)."""
        d = lib().string_out("det_info_run_dir", self._ctx._handle())
        return pathlib.Path(d) if d else None

    # ---- ClusterInfo (None / [] off-cluster) ----
    @property
    def master_url(self) -> Optional[str]:
        """The master's URL, canonical (`scheme://host:port[/prefix]`)."""
        return self._str("det_info_master_url")

    @property
    def cluster_id(self) -> Optional[str]:
        return self._str("det_info_cluster_id")

    @property
    def agent_id(self) -> Optional[str]:
        """The agent (node) this container runs on."""
        return self._str("det_info_agent_id")

    @property
    def task_id(self) -> Optional[str]:
        return self._str("det_info_task_id")

    @property
    def allocation_id(self) -> Optional[str]:
        """Changes with every restart of the trial."""
        return self._str("det_info_allocation_id")

    @property
    def task_type(self) -> Optional[str]:
        """"TRIAL", "NOTEBOOK", "SHELL", "COMMAND", "TENSORBOARD", "CHECKPOINT_GC", ..."""
        return self._str("det_info_task_type")

    @property
    def user_data(self) -> Optional[Dict[str, Any]]:
        """The experiment config's `data` field ({} for tasks that are not trials)."""
        text = self._str("det_info_user_data_json")
        return None if text is None else _json.loads(text)

    @property
    def slot_ids(self) -> List[int]:
        """The slot ids assigned to this container."""
        h = self._ctx._handle()
        return self._list(
            "det_info_slot_id_count", lambda i: int(lib().value_out("det_info_slot_id", ctypes.c_int32, h, i))
        )

    @property
    def container_addrs(self) -> List[str]:
        """The addresses of all containers of the allocation, in container-rank order (the first
        is the chief's)."""
        h = self._ctx._handle()
        return self._list(
            "det_info_container_count", lambda i: lib().string_out("det_info_container_addr", h, i) or ""
        )

    @property
    def container_slot_counts(self) -> List[int]:
        """The slot count of every container, in container-rank order."""
        h = self._ctx._handle()
        return self._list(
            "det_info_container_count",
            lambda i: int(lib().value_out("det_info_container_slot_count", ctypes.c_int32, h, i)),
        )

    @property
    def container_rank(self) -> Optional[int]:
        """This container's rank among the allocation's containers."""
        name = "det_info_container_rank"
        return _known(name, lambda: int(lib().value_out(name, ctypes.c_int32, self._ctx._handle())))

    @property
    def gpu_uuids(self) -> List[str]:
        """The UUIDs of this container's GPUs."""
        h = self._ctx._handle()
        return self._list("det_info_gpu_uuid_count", lambda i: lib().string_out("det_info_gpu_uuid", h, i) or "")

    def _cluster(self) -> Optional[ClusterInfo]:
        return get_cluster_info(self._ctx._cluster_info_dir) if self.on_cluster else None

    @property
    def master_cert_name(self) -> Optional[str]:
        """The name on the master's certificate, when cluster.json gives one."""
        c = self._cluster()
        return None if c is None else c.master_cert_name

    @property
    def master_cert_file(self) -> Optional[str]:
        """The master's certificate file ("noverify": not verified), when cluster.json gives one."""
        c = self._cluster()
        return None if c is None else c.master_cert_file

    @property
    def session_token(self) -> Optional[str]:
        """The task's session token from cluster.json (a credential: do not log it)."""
        c = self._cluster()
        return None if c is None else c.session_token

    def __repr__(self) -> str:
        return f"Info(on_cluster={self.on_cluster}, latest_checkpoint={self.latest_checkpoint!r})"
