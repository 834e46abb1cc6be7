"""The bindings cannot drift from include/detcore.h unnoticed: every prototype (return type, every
argument's type, pointer depth, const, integer widths, callbacks), the option structs and the
integer constants are compared with

- the Python package's declarations (bindings/python/detcore/_abi.py, generated from the header
  by bindings/python/gen_abi.py, and the ctypes types detcore._lib builds from it).

test_bindings_coverage.py checks that every function is bound at all; this file checks that
each is bound with the header's types. The `*_detects_drift` tests mutate one declaration of a
copy of the header and require the comparison to name it, so a check that can no longer fail
fails here."""
import ctypes
import re

import pytest

import gen_abi
from conftest import ROOT

from detcore import _abi, _errors, _lib

HEADER_TEXT = (ROOT / "include" / "detcore.h").read_text()


def header(text=HEADER_TEXT):
    return gen_abi.parse_header(text)


# ---- the generated module ----------------------------------------------------------------------
def abi_mismatches(h, abi=_abi):
    """What _abi.py says differently from the parsed header `h`, one line per difference."""
    out = []
    for kind, theirs, ours in (
        ("function", h.functions, abi.FUNCTIONS),
        ("callback", h.callbacks, abi.CALLBACKS),
        ("struct", h.structs, abi.STRUCTS),
        ("typedef", h.scalars, abi.SCALARS),
        ("constant", h.constants, abi.CONSTANTS),
    ):
        for name in sorted(set(theirs) | set(ours)):
            if theirs.get(name) != ours.get(name):
                out.append(f"{kind} {name}: detcore.h {theirs.get(name)!r}, _abi.py {ours.get(name)!r}")
    if set(h.opaque) != set(abi.OPAQUE):
        out.append(f"opaque types: detcore.h {sorted(h.opaque)}, _abi.py {sorted(abi.OPAQUE)}")
    return out


def test_python_abi_module_is_the_header():
    bad = abi_mismatches(header())
    assert not bad, (
        "bindings/python/detcore/_abi.py differs from include/detcore.h; regenerate it with "
        "`python bindings/python/gen_abi.py`:\n" + "\n".join(bad)
    )


def test_header_parser_reads_every_prototype():
    # Every `det_` prototype of the header is read, whatever its return type, none twice.
    named = set(re.findall(r"\b(det_[a-z0-9_]+)\(", gen_abi.strip_comments(HEADER_TEXT)))
    assert named - {"det_check_status_"} == set(header().functions)
    assert header().functions["det_train_report_scalars"] == (
        "det_status",
        (
            ("det_context *", "ctx"),
            ("const char *", "group"),
            ("int64_t", "steps_completed"),
            ("const char *const *", "names"),
            ("const double *", "values"),
            ("size_t", "n"),
        ),
    )
    assert header().callbacks["det_selector_fn"] == ("bool", (("const char *", "path"), ("void *", "userdata")))


# ---- the ctypes types, checked against the C types by their own rules ---------------------------
SCALAR = {  # C type -> (kind, bytes, signed)
    "int32_t": ("int", 4, True),
    "int64_t": ("int", 8, True),
    "uint32_t": ("int", 4, False),
    "size_t": ("int", ctypes.sizeof(ctypes.c_size_t), False),
    "double": ("float", 8, True),
    "bool": ("bool", 1, False),
}


def ctypes_scalar(t):
    if t is ctypes.c_bool:
        return ("bool", 1, False)
    if t in (ctypes.c_double, ctypes.c_float):
        return ("float", ctypes.sizeof(t), True)
    if isinstance(t, type) and issubclass(t, ctypes._SimpleCData) and t._type_ in "bBhHiIlLqQ":
        return ("int", ctypes.sizeof(t), t._type_.islower())
    return None


def is_pointer(t, target):
    return isinstance(t, type) and issubclass(t, ctypes._Pointer) and t._type_ is target


def ctype_problem(c, t, h):
    """Why ctypes type `t` cannot stand for C type `c` (None when it can)."""
    depth = c.count("*")
    const = c.startswith("const ")
    base = c.split("*")[0].replace("const ", "").strip()
    base = h.scalars.get(base, base)
    if depth == 0:
        if base == "void":
            return None if t is None else f"void must be None, not {t}"
        if base in SCALAR:
            return None if ctypes_scalar(t) == SCALAR[base] else f"{c} needs {SCALAR[base]}, got {ctypes_scalar(t)} ({t})"
        if base in h.callbacks:
            if not hasattr(t, "_argtypes_"):
                return f"{c} needs a CFUNCTYPE, got {t}"
            ret, params = h.callbacks[base]
            if len(t._argtypes_) != len(params):
                return f"{c}: {len(params)} parameters in C, {len(t._argtypes_)} in ctypes"
            for (pc, pn), pt in zip(params, t._argtypes_):
                p = ctype_problem(pc, pt, h)
                if p:
                    return f"{c} parameter {pn}: {p}"
            return ctype_problem(ret, t._restype_, h)
        return f"unknown C type {c}"
    if depth == 1:
        if base == "char":
            # `const char *` is an input (bytes); a `char *` buffer that C writes is no bytes object.
            want = ctypes.c_char_p if const else ctypes.c_void_p
            return None if t is want else f"{c} needs {want.__name__}, got {t}"
        if base == "void" or base in h.opaque:
            return None if t is ctypes.c_void_p else f"{c} needs c_void_p, got {t}"
        if base in SCALAR:
            if not (isinstance(t, type) and issubclass(t, ctypes._Pointer)):
                return f"{c} needs a POINTER, got {t}"
            return None if ctypes_scalar(t._type_) == SCALAR[base] else f"{c} points to {SCALAR[base]}, got {t}"
        if base in h.structs:
            if not (isinstance(t, type) and issubclass(t, ctypes._Pointer)):
                return f"{c} needs a POINTER to a Structure, got {t}"
            return struct_problem(base, t._type_, h)
        return f"unknown C type {c}"
    if depth == 2:
        if base == "char" and const:  # borrowed strings (`const char **out`), arrays of names
            return None if is_pointer(t, ctypes.c_char_p) else f"{c} needs POINTER(c_char_p), got {t}"
        if base in ("char", "void") or base in h.opaque:  # owned strings, handles, buffers
            return None if is_pointer(t, ctypes.c_void_p) else f"{c} needs POINTER(c_void_p), got {t}"
    return f"no rule for the C type {c}"


def struct_problem(name, st, h):
    fields = h.structs[name]
    got = getattr(st, "_fields_", None)
    if got is None or [n for n, _ in got] != [n for _, n in fields]:
        return f"{name}: fields {[n for _, n in fields]}, ctypes {got and [n for n, _ in got]}"
    for (c, n), (_, t) in zip(fields, got):
        p = ctype_problem(c, t, h)
        if p:
            return f"{name}.{n}: {p}"
    return None


def ctypes_mismatches(h, signatures):
    out = []
    for name, (ret, params) in sorted(h.functions.items()):
        if name not in signatures:
            out.append(f"{name}: not declared")
            continue
        restype, argtypes = signatures[name]
        p = ctype_problem(ret, restype, h)
        if p:
            out.append(f"{name} returns: {p}")
        if len(argtypes) != len(params):
            out.append(f"{name}: {len(params)} arguments in detcore.h, {len(argtypes)} declared")
            continue
        for i, ((c, pname), t) in enumerate(zip(params, argtypes)):
            p = ctype_problem(c, t, h)
            if p:
                out.append(f"{name} argument {i + 1} ({pname}): {p}")
    out += [f"{n}: not in detcore.h" for n in sorted(set(signatures) - set(h.functions))]
    return out


def test_ctypes_signatures_match_header():
    bad = ctypes_mismatches(header(), _lib.SIGNATURES)
    assert not bad, "detcore._lib.SIGNATURES disagrees with include/detcore.h:\n" + "\n".join(bad)


def test_ctypes_structs_and_callbacks_match_header():
    h = header()
    assert struct_problem("det_init_options", _lib.InitOptions, h) is None
    assert struct_problem("det_distributed_config", _lib.DistributedConfig, h) is None
    assert ctype_problem("det_selector_fn", _lib.SELECTOR, h) is None
    assert ctype_problem("det_tb_mangler_fn", _lib.MANGLER, h) is None


def test_loaded_library_functions_carry_the_declarations(detcore_lib):
    lib = _lib.Library(str(detcore_lib))
    assert not lib.missing, f"libdetcore does not export {lib.missing}"
    for name, (restype, argtypes) in _lib.SIGNATURES.items():
        f = getattr(lib.cdll, name)
        assert f.restype is restype and list(f.argtypes) == list(argtypes), name
    # A wrong argument is refused by ctypes before C sees it: `int64_t steps_completed` is no string.
    with pytest.raises(ctypes.ArgumentError):
        lib.det_train_report_validation_metrics(None, b"7", b"{}")


def test_python_constants_match_header():
    h = header()
    errors = {n: getattr(_errors, n) for n in dir(_errors) if re.fullmatch(r"DET_(OK|ERR_[A-Z_]+)", n)}
    assert errors, "detcore._errors defines no DET_ERR_* constants?"
    assert {n: h.constants.get(n) for n in errors} == errors
    assert _lib.STORAGE_ID_LEN == h.constants["DET_STORAGE_ID_LEN"]
    assert _lib.TB_NAME_MAX == h.constants["DET_TB_NAME_MAX"]


# ---- the checks fail on drift ---------------------------------------------------------------------
MUTATIONS = [
    # (function, what the header says, what a drifted header says)
    ("det_ckpt_store_path_end_mode", "int32_t upload_mode", "int64_t upload_mode"),  # width
    ("det_ckpt_store_path_begin", "bool shard", "int32_t shard"),  # bool vs int
    ("det_ckpt_get_metadata", "const char *storage_id", "char *storage_id"),  # const
    ("det_info_steps_completed", "int64_t *out", "int64_t **out"),  # pointer depth
    ("det_train_report_progress", "double progress", "float progress"),  # unknown type
    ("det_ckpt_upload", "det_selector_fn selector", "void *selector"),  # callback
    ("det_dist_barrier", "det_context *ctx)", "det_context *ctx, int32_t extra)"),  # argument count
]


def drifted(fn, old, new):
    start = HEADER_TEXT.index(f" {fn}(")
    end = HEADER_TEXT.index(";", start)
    proto = HEADER_TEXT[start:end]
    assert old in proto, (fn, old)
    return HEADER_TEXT[:start] + proto.replace(old, new, 1) + HEADER_TEXT[end:]


@pytest.mark.parametrize("fn,old,new", MUTATIONS)
def test_python_checks_detect_drift(fn, old, new):
    h = header(drifted(fn, old, new))
    assert any(fn in line for line in abi_mismatches(h)), "the _abi.py check missed a drifted header"
    assert any(fn in line for line in ctypes_mismatches(h, _lib.SIGNATURES)), "the ctypes check missed it"


def test_python_check_detects_a_drifted_declaration():
    sig = dict(_lib.SIGNATURES)
    restype, argtypes = sig["det_ckpt_store_path_end_mode"]
    sig["det_ckpt_store_path_end_mode"] = (restype, [argtypes[0], ctypes.c_int64, argtypes[2]])
    assert any("det_ckpt_store_path_end_mode argument 2" in b for b in ctypes_mismatches(header(), sig))
    sig = dict(_lib.SIGNATURES)
    restype, argtypes = sig["det_ckpt_store_path"]
    sig["det_ckpt_store_path"] = (restype, [argtypes[0], ctypes.POINTER(ctypes.c_void_p)])  # const char ** as owned
    assert any("det_ckpt_store_path argument 2" in b for b in ctypes_mismatches(header(), sig))
