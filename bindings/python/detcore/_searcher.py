"""`core_context.searcher` (det_searcher_*), deprecated in Determined 0.38 as in Python."""
import ctypes
import warnings
from typing import TYPE_CHECKING, Any, Iterator, Optional

from detcore import _enums, _json
from detcore._lib import lib, to_c

if TYPE_CHECKING:
    from detcore._context import Context


class SearcherOperation:
    def __init__(self, handle: ctypes.c_void_p) -> None:
        self._h = handle

    @property
    def length(self) -> int:
        return int(lib().value_out("det_searcher_op_length", ctypes.c_int64, self._h))

    def report_progress(self, length: float) -> None:
        lib().call("det_searcher_op_report_progress", self._h, float(length))

    def report_completed(self, searcher_metric: Any) -> None:
        if isinstance(searcher_metric, (int, float)) and not isinstance(searcher_metric, bool):
            lib().call("det_searcher_op_report_completed", self._h, float(searcher_metric))
        else:
            lib().call(
                "det_searcher_op_report_completed_json", self._h, to_c(_json.dumps(searcher_metric), "searcher_metric")
            )

    def _free(self) -> None:
        if self._h is not None:
            lib().fn("det_searcher_op_free")(self._h)
            self._h = None


class SearcherContext:
    def __init__(self, ctx: "Context") -> None:
        self._ctx = ctx

    def operations(
        self,
        searcher_mode: _enums.SearcherMode = _enums.SearcherMode.WorkersAskChief,
        auto_ack: bool = True,
    ) -> Iterator[SearcherOperation]:
        warnings.warn(
            "SearcherContext.operations() was deprecated in Determined 0.38.0 and will be removed "
            "in a future version.  Instead, you should set your training length directly in your "
            "training code.",
            FutureWarning,
            stacklevel=2,
        )
        mode = _enums.code(_enums.SearcherMode, searcher_mode, "searcher_mode")
        return self._operations(mode)

    def _operations(self, mode: int) -> Iterator[SearcherOperation]:
        while True:
            h = ctypes.c_void_p()
            lib().call("det_searcher_next_op", self._ctx._handle(), mode, ctypes.byref(h))
            if not h.value:
                return
            op = SearcherOperation(h)
            try:
                yield op
            finally:
                op._free()

    def acknowledge_out_of_ops(self) -> None:
        lib().call("det_searcher_acknowledge_out_of_ops", self._ctx._handle())

    def get_configured_units(self) -> Optional[_enums.Unit]:
        return _enums.UNITS.get(lib().value_out("det_searcher_get_configured_units", ctypes.c_int32, self._ctx._handle()))
