"""The bindings cannot drift from include/detcore.h unnoticed: every prototype (return type, every
argument's type, pointer depth, const, integer widths, callbacks), the option structs and the
integer constants are compared with

- the Python package's declarations (bindings/python/detcore/_abi.py, generated from the header
  by bindings/python/gen_abi.py, and the ctypes types detcore._lib builds from it), and
- the Fortran module's `bind(c)` interfaces and types (bindings/fortran/detcore.f90).

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
FORTRAN_TEXT = (ROOT / "bindings" / "fortran" / "detcore.f90").read_text()


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


# ---- Fortran ---------------------------------------------------------------------------------------
def fortran_lines(text):
    """Statements of the module: comments dropped, `&` continuations joined, lower case."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.split("!", 1)[0].rstrip() if '"' not in raw.split("!", 1)[0] else raw.rstrip()
        if not line.strip():
            continue
        line = line.strip()
        if cur:
            line = line.lstrip("&").strip()
        if line.endswith("&"):
            cur += line[:-1] + " "
            continue
        out.append((cur + line).lower())
        cur = ""
    return out


DECL = re.compile(r"^(type|integer|real|logical|character)\s*\(([^)]*)\)\s*((?:,\s*[a-z]+(?:\([^)]*\))?\s*)*)::\s*(.+)$")


def parse_decl(stmt):
    """`integer(c_int32_t), value :: a, b` -> [("integer", "c_int32_t", {"value"}, "a"), ...]."""
    m = DECL.match(stmt)
    if not m:
        return []
    kind = m.group(2).replace("kind=", "").strip()
    attrs = {a.strip() for a in re.findall(r",\s*([a-z]+(?:\([^)]*\))?)", m.group(3))}
    out = []
    for name in re.split(r",\s*(?![^()]*\))", m.group(4)):
        name = name.split("=")[0].strip()
        a = set(attrs)
        if name.endswith("(*)"):
            name, a = name[:-3].strip(), a | {"dimension(*)"}
        out.append((m.group(1), kind, frozenset(a), name))
    return out


def fortran_interfaces(text=FORTRAN_TEXT):
    """C name -> (result declaration or None for a subroutine, [argument declarations in order])."""
    stmts = fortran_lines(text)
    out = {}
    i = 0
    while i < len(stmts):
        m = re.match(r'^(function|subroutine)\s+(\w+)\s*\(([^)]*)\)\s*bind\(c,\s*name="(\w+)"\)', stmts[i])
        if not m:
            i += 1
            continue
        fname, args, cname = m.group(2), [a.strip() for a in m.group(3).split(",") if a.strip()], m.group(4)
        decls = {}
        i += 1
        while not stmts[i].startswith("end "):
            for d in parse_decl(stmts[i]):
                decls[d[3]] = d
            i += 1
        assert cname not in out, f"{cname} has two bind(c) interfaces"
        out[cname] = (decls.get(fname) if m.group(1) == "function" else None, [decls.get(a, (None, None, frozenset(), a)) for a in args])
        i += 1
    return out


F_SCALAR = {  # C scalar -> Fortran type and kinds that hold it
    "int32_t": ("integer", {"c_int32_t", "c_int"}),
    "uint32_t": ("integer", {"c_int32_t", "c_int"}),  # Fortran has no unsigned integers
    "int64_t": ("integer", {"c_int64_t", "c_long_long"}),
    "size_t": ("integer", {"c_size_t"}),
    "double": ("real", {"c_double"}),
    "bool": ("logical", {"c_bool"}),
}


def fortran_problem(c, d, h):
    """Why the Fortran dummy argument `d` cannot stand for a C parameter of type `c`."""
    ftype, kind, attrs, _ = d
    if ftype is None:
        return "not declared"
    value = "value" in attrs
    array = "dimension(*)" in attrs
    intent = next((a for a in attrs if a.startswith("intent")), None)
    depth = c.count("*")
    const = c.startswith("const ")
    base = c.split("*")[0].replace("const ", "").strip()
    base = h.scalars.get(base, base)
    if ftype == "type" and kind == "c_ptr" and value and not array:
        # An address passed by value: any pointer to data (a handle, a buffer, a nullable string)
        # and arrays of strings; but a `T **` out-parameter needs the address of a c_ptr.
        if depth == 1 or c == "const char *const *":
            return None
        return f"{c} is no pointer; type(c_ptr), value passes an address" if depth == 0 else (
            f"{c} is an out-parameter: type(c_ptr) by reference (intent(inout)), not value")
    if depth == 0:
        if base in h.callbacks:
            return None if (ftype, kind, value) == ("type", "c_funptr", True) else f"{c} needs type(c_funptr), value"
        if base in F_SCALAR:
            want = F_SCALAR[base]
            if ftype != want[0] or kind not in want[1]:
                return f"{c} needs {want[0]}({'|'.join(sorted(want[1]))}), got {ftype}({kind})"
            return None if value and not array else f"{c} is passed by value: add `value`"
        return f"unknown C type {c}"
    if value:
        return f"{c} is a pointer: by value only as type(c_ptr)"
    # Passed by reference: the Fortran object is what the C pointer points to (depth - 1 left).
    if const and depth == 1 and intent in ("intent(out)", "intent(inout)"):
        return f"{c} is const: the argument cannot be {intent}"
    if not const and depth >= 1 and intent == "intent(in)":
        return f"{c} is written by C: the argument cannot be intent(in)"
    if depth == 1:
        if base == "char":
            return None if (ftype, kind, array) == ("character", "c_char", True) else f"{c} needs character(kind=c_char), dimension(*)"
        if base in F_SCALAR:
            want = F_SCALAR[base]
            return None if ftype == want[0] and kind in want[1] else f"{c} needs {want[0]}({'|'.join(sorted(want[1]))}) by reference, got {ftype}({kind})"
        if base in h.structs:
            return None if (ftype, kind) == ("type", base) else f"{c} needs type({base}) by reference"
        if base == "void" or base in h.opaque:
            return f"{c} is a handle or buffer: pass it as type(c_ptr), value"
        return f"unknown C type {c}"
    if depth == 2:
        return None if (ftype, kind) == ("type", "c_ptr") else f"{c} needs type(c_ptr) by reference, got {ftype}({kind})"
    return f"no rule for {c}"


def fortran_mismatches(h, interfaces):
    out = []
    for name, (ret, params) in sorted(h.functions.items()):
        if name not in interfaces:
            out.append(f"{name}: no bind(c) interface")
            continue
        fret, fargs = interfaces[name]
        if ret == "void":
            if fret is not None:
                out.append(f"{name} returns void: make it a subroutine")
        elif fret is None:
            out.append(f"{name} returns {ret}: make it a function")
        else:
            rbase = h.scalars.get(ret, ret)
            if "*" in ret:
                if fret[:2] != ("type", "c_ptr"):
                    out.append(f"{name} returns {ret}: the result must be type(c_ptr), got {fret[0]}({fret[1]})")
            elif fortran_problem(rbase, (fret[0], fret[1], frozenset({"value"}), name), h):
                out.append(f"{name} returns {ret}: got {fret[0]}({fret[1]})")
        if [n for _, n in params] != [d[3] for d in fargs] and len(params) != len(fargs):
            out.append(f"{name}: {len(params)} arguments in detcore.h {[n for _, n in params]}, "
                       f"{len(fargs)} in Fortran {[d[3] for d in fargs]}")
            continue
        for i, ((c, pname), d) in enumerate(zip(params, fargs)):
            p = fortran_problem(c, d, h)
            if p:
                out.append(f"{name} argument {i + 1} ({pname} / {d[3]}): {p}")
    extra = {n for n in interfaces if n.startswith("det_")} - set(h.functions)  # (libc's strlen is bound too)
    out += [f"{n}: bind(c) to a name detcore.h lacks" for n in sorted(extra)]
    return out


def test_fortran_interfaces_match_header():
    interfaces = fortran_interfaces()
    assert len(interfaces) > 100
    bad = fortran_mismatches(header(), interfaces)
    assert not bad, "bindings/fortran/detcore.f90 disagrees with include/detcore.h:\n" + "\n".join(bad)


def fortran_types(text=FORTRAN_TEXT):
    """bind(c) derived types: name -> [component declarations in order]."""
    out, cur = {}, None
    for s in fortran_lines(text):
        m = re.match(r"^type\s*,\s*bind\(c\)\s*(?:,\s*public\s*)?::\s*(\w+)$", s)
        if m:
            cur = out.setdefault(m.group(1), [])
        elif cur is not None and s.startswith("end type"):
            cur = None
        elif cur is not None:
            cur.extend(parse_decl(s))
    return out


def test_fortran_structs_match_header():
    h = header()
    types = fortran_types()
    for name, fields in h.structs.items():
        comps = types.get(name)
        assert comps is not None, f"detcore.f90 has no bind(c) type {name}"
        assert [n for _, n in fields] == [d[3] for d in comps], f"{name}: the fields differ (order counts)"
        for (c, n), d in zip(fields, comps):
            # A component holds the value itself: a pointer is type(c_ptr), a scalar its kind.
            p = fortran_problem(c, (d[0], d[1], frozenset({"value"}), n), h)
            assert p is None, f"{name}.{n}: {p}"


def test_fortran_constants_match_header():
    h = header()
    consts = {}
    for s in fortran_lines(FORTRAN_TEXT):
        if ", parameter" in s and "::" in s:
            for m in re.finditer(r"\b(det_[a-z0-9_]+)\s*=\s*(-?\d+)", s.split("::", 1)[1]):
                consts[m.group(1).upper()] = int(m.group(2))
    missing = sorted(set(h.constants) - set(consts) - {"DET_VERSION_MAJOR", "DET_VERSION_MINOR", "DET_VERSION_PATCH", "DET_ABI_VERSION"})
    assert not missing, f"add to detcore.f90: {missing}"
    wrong = {n: (h.constants[n], v) for n, v in consts.items() if n in h.constants and h.constants[n] != v}
    assert not wrong, f"detcore.f90 constants differ from detcore.h (header, Fortran): {wrong}"


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


@pytest.mark.parametrize("fn,old,new", MUTATIONS)
def test_fortran_check_detects_drift(fn, old, new):
    bad = fortran_mismatches(header(drifted(fn, old, new)), fortran_interfaces())
    assert any(fn in line for line in bad), f"the Fortran check missed a drifted {fn}"


FORTRAN_MUTATIONS = [
    ("integer(c_int64_t), value :: steps_completed", "integer(c_int32_t), value :: steps_completed"),
    ("logical(c_bool), value :: shard", "integer(c_int32_t), value :: shard"),
    ("real(c_double), value :: progress", "real(c_double) :: progress"),  # value vs reference
    ("integer(c_int64_t), intent(inout) :: out", "integer(c_int32_t), intent(inout) :: out"),
    ("type(c_ptr), intent(inout) :: out\n      integer(c_int32_t) :: det_ckpt_store_path_begin\n",
     "type(c_ptr), value :: out\n      integer(c_int32_t) :: det_ckpt_store_path_begin\n"),  # T ** by value
    ("character(kind=c_char), dimension(*), intent(in) :: metadata_json\n      logical(c_bool), value :: shard",
     "character(kind=c_char), dimension(*), intent(in) :: metadata_json"),  # an argument missing
    ("integer(c_int32_t) :: det_ckpt_wait\n", "integer(c_int64_t) :: det_ckpt_wait\n"),  # result kind
]


@pytest.mark.parametrize("old,new", FORTRAN_MUTATIONS)
def test_fortran_check_detects_a_drifted_interface(old, new):
    assert old in FORTRAN_TEXT, old
    bad = fortran_mismatches(header(), fortran_interfaces(FORTRAN_TEXT.replace(old, new, 1)))
    assert bad, f"the Fortran check missed `{old}` -> `{new}`"


def test_python_check_detects_a_drifted_declaration():
    sig = dict(_lib.SIGNATURES)
    restype, argtypes = sig["det_ckpt_store_path_end_mode"]
    sig["det_ckpt_store_path_end_mode"] = (restype, [argtypes[0], ctypes.c_int64, argtypes[2]])
    assert any("det_ckpt_store_path_end_mode argument 2" in b for b in ctypes_mismatches(header(), sig))
    sig = dict(_lib.SIGNATURES)
    restype, argtypes = sig["det_ckpt_store_path"]
    sig["det_ckpt_store_path"] = (restype, [argtypes[0], ctypes.POINTER(ctypes.c_void_p)])  # const char ** as owned
    assert any("det_ckpt_store_path argument 2" in b for b in ctypes_mismatches(header(), sig))
