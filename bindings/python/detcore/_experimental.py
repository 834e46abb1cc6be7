"""`core_context.experimental` (det_experimental_*): Python's ExperimentalCoreContext."""
from typing import TYPE_CHECKING, Any

from detcore._lib import lib, to_c

if TYPE_CHECKING:
    from detcore._context import Context


def _checkpoint_uuid(checkpoint: Any, what: str) -> str:
    """A storage id given as a string, or the `.uuid` of an object such as determined's
    `experimental.Checkpoint`."""
    if isinstance(checkpoint, str):
        return checkpoint
    uuid = getattr(checkpoint, "uuid", None)
    if not isinstance(uuid, str):
        raise TypeError(f"{what}: expected a checkpoint uuid (str) or an object with a .uuid, got {checkpoint!r}")
    return uuid


class ExperimentalContext:
    """Link the checkpoint or model version a trial uses (e.g. for batch inference) to it, so
    that the metrics it reports are listed with that checkpoint or model version
    (`POST /api/v1/trial-source-info`). Waits for the master. Off-cluster, and in tasks that are
    not trials, nothing is recorded and a log line says so (Python's dummy context is silent)."""

    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx

    def report_task_using_checkpoint(self, checkpoint: Any) -> None:
        """`checkpoint`: determined's `Checkpoint` (anything with a `.uuid`) or a storage id."""
        uuid = _checkpoint_uuid(checkpoint, "report_task_using_checkpoint")
        lib().call("det_experimental_report_task_using_checkpoint", self._ctx._handle(), to_c(uuid, "checkpoint"))

    def report_task_using_model_version(self, model_version: Any) -> None:
        """`model_version`: determined's `ModelVersion` (anything with `.checkpoint`, `.model_id`
        and `.model_version`)."""
        checkpoint = getattr(model_version, "checkpoint", None)
        if checkpoint is None:
            raise ValueError("report_task_using_model_version: the model version has no checkpoint")
        uuid = _checkpoint_uuid(checkpoint, "report_task_using_model_version")
        lib().call(
            "det_experimental_report_task_using_model_version",
            self._ctx._handle(),
            to_c(uuid, "model_version.checkpoint"),
            int(model_version.model_id),
            int(model_version.model_version),
        )
