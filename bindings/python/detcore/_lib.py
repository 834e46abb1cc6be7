"""Loading libdetcore and calling its C functions (ctypes; no compiled extension).

Every C function of detcore.h is typed from the generated module _abi (the header's
declarations as data, written by bindings/python/gen_abi.py) through one table, `ctype`. A
function that the loaded library does not export (an older libdetcore) is recorded as missing
instead of failing the import; calling it raises UnsupportedError naming the function and the
library.

Adding a C function: regenerate _abi.py (`python bindings/python/gen_abi.py`), then call it with
``lib().call("det_x", ...)`` from the Python method that wraps it. Tests that drive the C ABI
directly use `Library` too (`Library(path).det_x(...)`), never declarations of their own.
"""
import ctypes
import ctypes.util
import os
import pathlib
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from detcore import _abi, _errors

# ---- C types -----------------------------------------------------------------------------------
# Every declaration comes from include/detcore.h through the generated module _abi (see
# bindings/python/gen_abi.py); this is the one table that turns its C types into ctypes.
_SCALARS: Dict[str, Any] = {
    "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64,
    "uint32_t": ctypes.c_uint32,
    "size_t": ctypes.c_size_t,
    "double": ctypes.c_double,
    "bool": ctypes.c_bool,
}
_STRUCTS: Dict[str, Any] = {}  # det_init_options -> InitOptions, ... (filled below)
_CALLBACKS: Dict[str, Any] = {}  # det_selector_fn -> SELECTOR, ...


def ctype(spelling: str) -> Any:
    """The ctypes type for a C type as detcore.h spells it. Strings: `const char *` is an input
    (bytes), `const char **` a borrowed result (`c_char_p`), `char **` a result the caller frees
    with det_string_free (kept as `c_void_p`), `char *` a caller's buffer. Handles are `c_void_p`;
    out-parameters are POINTERs to the value type. A type outside this table raises."""
    const = spelling.startswith("const ")
    depth = spelling.count("*")
    base = spelling.split("*")[0].replace("const ", "").strip()
    base = _abi.SCALARS.get(base, base)
    if depth == 0:
        if base == "void":
            return None
        if base in _SCALARS:
            return _SCALARS[base]
        if base in _CALLBACKS:
            return _CALLBACKS[base]
    elif depth == 1:
        if base == "char":
            return ctypes.c_char_p if const else ctypes.c_void_p
        if base == "void" or base in _abi.OPAQUE:
            return ctypes.c_void_p
        if base in _SCALARS:
            return ctypes.POINTER(_SCALARS[base])
        if base in _STRUCTS:
            return ctypes.POINTER(_STRUCTS[base])
    elif depth == 2:
        if base == "char" and const:
            return ctypes.POINTER(ctypes.c_char_p)
        if base in ("char", "void") or base in _abi.OPAQUE:
            return ctypes.POINTER(ctypes.c_void_p)
    raise TypeError(f"detcore._lib.ctype: no ctypes mapping for the C type {spelling!r}")


def _callback(name: str) -> Any:
    """The CFUNCTYPE of a callback typedef; as an argument it also takes None for C's NULL."""
    ret, params = _abi.CALLBACKS[name]
    base = ctypes.CFUNCTYPE(ctype(ret), *[ctype(t) for t, _ in params])

    class Callback(base):  # type: ignore[valid-type,misc]
        _flags_ = base._flags_
        _argtypes_ = base._argtypes_
        _restype_ = base._restype_

        @classmethod
        def from_param(cls, obj: Any) -> Any:
            return cls() if obj is None else base.from_param(obj)

    Callback.__name__ = Callback.__qualname__ = name
    _CALLBACKS[name] = Callback
    return Callback


def _fields(struct: str) -> List[Tuple[str, Any]]:
    return [(name, ctype(t)) for t, name in _abi.STRUCTS[struct]]


#: det_selector_fn: bool (*)(const char *path, void *userdata)
SELECTOR = _callback("det_selector_fn")

#: det_tb_mangler_fn: bool (*)(const char *path, int32_t rank, char *name, size_t name_size, void *userdata)
MANGLER = _callback("det_tb_mangler_fn")

STORAGE_ID_LEN = _abi.CONSTANTS["DET_STORAGE_ID_LEN"]
TB_NAME_MAX = _abi.CONSTANTS["DET_TB_NAME_MAX"]


class DistributedConfig(ctypes.Structure):
    """det_distributed_config (fields appended only, as the C struct)."""

    _fields_ = _fields("det_distributed_config")


_STRUCTS["det_distributed_config"] = DistributedConfig


class InitOptions(ctypes.Structure):
    """det_init_options (fields appended only, as the C struct)."""

    _fields_ = _fields("det_init_options")


_STRUCTS["det_init_options"] = InitOptions

# ---- every C function: name -> (restype, argtypes) ---------------------------------------------
SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
    name: (ctype(ret), [ctype(t) for t, _ in params]) for name, (ret, params) in _abi.FUNCTIONS.items()
}


# ---- argument conversion ---------------------------------------------------------------------------
def to_c(value: Any, what: str) -> Optional[bytes]:
    """A str / os.PathLike / bytes as NUL-terminated UTF-8 for C (None stays None). NUL bytes and
    text that is not valid UTF-8 (lone surrogates) are refused, never truncated."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        try:
            b = value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _errors.InvalidArgumentError(
                _errors.DET_ERR_INVALID_ARGUMENT, f"{what} is not valid UTF-8: {e}"
            ) from None
    elif isinstance(value, bytes):
        b = value
    else:
        raise TypeError(f"{what} must be a str or os.PathLike, not {type(value).__name__}")
    if b"\0" in b:
        raise _errors.InvalidArgumentError(_errors.DET_ERR_INVALID_ARGUMENT, f"{what} contains a NUL byte")
    return b


def from_c(p: Union[int, bytes, None]) -> Optional[str]:
    """A borrowed C string, as an address or as the bytes of a `c_char_p` (NULL -> None)."""
    if not p:
        return None
    raw = p if isinstance(p, bytes) else ctypes.string_at(p)
    return raw.decode("utf-8", "surrogateescape")


class _Callback:
    """A Python callable called from C: an exception cannot cross the C frames, so it is kept
    and re-raised by `raise_if_failed` once the C call has returned."""

    def __init__(self, fn: Optional[Callable[..., Any]]) -> None:
        self.fn = fn
        self.error: Optional[BaseException] = None

    def raise_if_failed(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err


class Selector(_Callback):
    """A Python selector as a det_selector_fn. Exceptions it raises stop the selection and are
    re-raised by `raise_if_failed` after the C call returns."""

    def __init__(self, fn: Optional[Callable[[str], bool]]) -> None:
        super().__init__(fn)
        self.cfunc = SELECTOR(self._call) if fn is not None else SELECTOR()

    def _call(self, path: bytes, _userdata: Any) -> bool:
        if self.error is not None:
            return False
        try:
            return bool(self.fn(path.decode("utf-8", "surrogateescape")))  # type: ignore[misc]
        except BaseException as e:  # noqa: B902 - re-raised by raise_if_failed
            self.error = e
            return False


class Mangler(_Callback):
    """A Python name mangler `fn(relative_name, rank) -> new_name` as a det_tb_mangler_fn. An
    exception it raises (or a name that does not fit) abandons the upload call; `raise_if_failed`
    re-raises it after the C call returns."""

    def __init__(self, fn: Optional[Callable[[str, int], Any]]) -> None:
        super().__init__(fn)
        self.cfunc = MANGLER(self._call) if fn is not None else MANGLER()

    def _call(self, path: bytes, rank: int, name: int, name_size: int, _userdata: Any) -> bool:
        if self.error is not None:
            return False
        rel = path.decode("utf-8", "surrogateescape")
        try:
            new = self.fn(rel, rank)  # type: ignore[misc]
            if new is None:
                raise TypeError(f"the mangler returned None for {rel!r}; return the name to store it under")
            b = to_c(new, f"the mangler's name for {rel!r}")
            assert b is not None
            if len(b) >= name_size:
                raise _errors.InvalidArgumentError(
                    _errors.DET_ERR_INVALID_ARGUMENT,
                    f"the mangler's name for {rel!r} is {len(b)} bytes; at most {name_size - 1} "
                    "(DET_TB_NAME_MAX - 1) fit",
                )
            ctypes.memmove(name, b + b"\0", len(b) + 1)
            return True
        except BaseException as e:  # noqa: B902 - re-raised by raise_if_failed
            self.error = e
            return False


# ---- the library -------------------------------------------------------------------------------------
class Library:
    """A loaded libdetcore with its functions typed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cdll = ctypes.CDLL(path)
        self.functions: Dict[str, Any] = {}
        self.missing: List[str] = []
        for name, (restype, argtypes) in SIGNATURES.items():
            try:
                f = getattr(self.cdll, name)
            except AttributeError:
                self.missing.append(name)
                continue
            f.restype = restype
            f.argtypes = argtypes
            self.functions[name] = f

    def fn(self, name: str) -> Any:
        f = self.functions.get(name)
        if f is None:
            if name in SIGNATURES:
                why = f"libdetcore at {self.path} does not export {name} (an older library?)"
            else:
                why = f"{name} is not bound by this detcore Python package"
            raise _errors.UnsupportedError(_errors.DET_ERR_UNSUPPORTED, f"{name}: {why}")
        return f

    def __getattr__(self, name: str) -> Any:
        """`lib.det_x` is `lib.fn("det_x")`, the typed C function (for tests and tools that call
        the C ABI directly, with the package's declarations)."""
        if name.startswith("det_"):
            return self.fn(name)
        raise AttributeError(name)

    def has(self, name: str) -> bool:
        return name in self.functions

    def last_error(self) -> str:
        f = self.functions.get("det_last_error_message")
        if f is None:
            return "(libdetcore gives no error message)"
        return (f() or b"").decode("utf-8", "replace")

    def check(self, status: int) -> None:
        if status != 0:
            raise _errors.error_for(status, self.last_error())

    def call(self, name: str, *args: Any) -> None:
        """Call a function that returns det_status; raise its error on failure."""
        self.check(self.fn(name)(*args))

    def take_string(self, p: ctypes.c_void_p) -> Optional[str]:
        """Copy and free a `char **out` result (NULL -> None)."""
        if not p.value:
            return None
        try:
            return ctypes.string_at(p.value).decode("utf-8", "surrogateescape")
        finally:
            self.fn("det_string_free")(p)

    def string_out(self, name: str, *args: Any) -> Optional[str]:
        """Call `name(*args, char **out)` and return the string."""
        out = ctypes.c_void_p()
        self.call(name, *args, ctypes.byref(out))
        return self.take_string(out)

    def value_out(self, name: str, ctype: Any, *args: Any) -> Any:
        """Call `name(*args, T *out)` and return the value."""
        out = ctype()
        self.call(name, *args, ctypes.byref(out))
        return out.value

    def bytes_list(self, list_ptr: ctypes.c_void_p) -> Optional[List[bytes]]:
        """Copy and free a det_bytes_list (NULL -> None)."""
        if not list_ptr.value:
            return None
        try:
            n = self.value_out("det_bytes_list_len", ctypes.c_size_t, list_ptr)
            items = []
            for i in range(n):
                data, length = ctypes.c_void_p(), ctypes.c_size_t()
                self.call("det_bytes_list_get", list_ptr, i, ctypes.byref(data), ctypes.byref(length))
                items.append(ctypes.string_at(data.value, length.value) if length.value else b"")
            return items
        finally:
            self.fn("det_bytes_list_free")(list_ptr)


def candidates() -> Iterator[str]:
    """Where libdetcore is looked for, in order: $DETCORE_LIB (only there, when set), next to
    this package, then the system's library search path."""
    env = os.environ.get("DETCORE_LIB")
    if env:
        yield env
        return
    here = pathlib.Path(__file__).resolve().parent
    for d in (here, here / "lib"):
        for name in ("libdetcore.so", "libdetcore.so.1", "libdetcore.dylib"):
            if (d / name).exists():
                yield str(d / name)
    found = ctypes.util.find_library("detcore")
    if found:
        yield found
    yield "libdetcore.so.1"
    yield "libdetcore.so"


_lock = threading.Lock()
_lib: Optional[Library] = None


def lib() -> Library:
    """The loaded library (loaded on first use)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            tried = []
            for c in candidates():
                try:
                    _lib = Library(c)
                    break
                except OSError as e:
                    tried.append(f"{c} ({e})")
            else:
                raise _errors.LibraryNotFoundError(
                    "cannot load libdetcore; set DETCORE_LIB to its path, put libdetcore.so next to "
                    "the detcore package, or add its folder to LD_LIBRARY_PATH. Tried: " + "; ".join(tried)
                )
    return _lib


def signals_array(signals: Sequence[int]) -> Any:
    return (ctypes.c_int32 * max(1, len(signals)))(*[int(s) for s in signals])
