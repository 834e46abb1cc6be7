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
import pathlib
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, TypeVar

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
    `trial_seed`, `hparams`, and the private `_config`, `_steps_completed`, `_trial_run_id`
    (also as detcore's public `config` and `trial_run_id`). Off-cluster only `hparams` is known
    (the run's); the others are None."""

    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx

    def _int(self, name: str, ctype: Any) -> Optional[int]:
        return _known(name, lambda: int(lib().value_out(name, ctype, self._ctx._handle())))

    @property
    def hparams(self) -> Dict[str, Any]:
        return _json.loads(lib().string_out("det_info_hparams_json", self._ctx._handle()) or "{}")

    @property
    def trial_id(self) -> Optional[int]:
        return self._int("det_info_trial_id", ctypes.c_int64)

    @property
    def experiment_id(self) -> Optional[int]:
        return self._int("det_info_experiment_id", ctypes.c_int64)

    @property
    def trial_seed(self) -> Optional[int]:
        return self._int("det_info_trial_seed", ctypes.c_uint32)

    @property
    def trial_run_id(self) -> Optional[int]:
        """(detcore) 1 for the trial's first allocation, +1 for every restart."""
        return self._int("det_info_trial_run_id", ctypes.c_int64)

    @property
    def config(self) -> Optional[Dict[str, Any]]:
        """(detcore) The experiment config, as the master sent it. Its shape changes between
        Determined versions: prefer `hparams` and `info.user_data`."""
        name = "det_info_experiment_config_json"
        text = _known(name, lambda: lib().string_out(name, self._ctx._handle()))
        return None if text is None else _json.loads(text)

    # Python's private names, for code that reads them.
    _config = config
    _trial_run_id = trial_run_id

    @property
    def _steps_completed(self) -> int:
        return int(lib().value_out("det_info_steps_completed", ctypes.c_int64, self._ctx._handle()))

    def __repr__(self) -> str:
        return f"TrialInfo(trial_id={self.trial_id!r}, experiment_id={self.experiment_id!r})"


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

    def __repr__(self) -> str:
        return f"Info(on_cluster={self.on_cluster}, latest_checkpoint={self.latest_checkpoint!r})"
