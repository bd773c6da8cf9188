"""The two cores agree on their op list and their names, and the stub describes the compiled one.

One list of ops (`fastgrad._ops`) is the source of truth: the compiled core
declares the same codes in C (op_codes()), and every op it runs natively has
a reference rule of the same name.  Both cores define the same public
functions (reference.py is the specification; the compiled core re-exports
the checks it shares from it), and `_tape.pyi` lists every name the compiled
module defines.
"""
import ast
import os
import types


# Names only the compiled core has: what it was built with, and its op codes as compiled in.
COMPILED_ONLY = {"build_info", "op_codes"}

# Names of reference.py the compiled core reads from it instead of defining its own
# (through `_ref.<name>`): its rule tables and the helpers shared with them.
READ_FROM_REFERENCE = {"FORWARD", "BACKWARD", "FLOAT_UNARY", "VIEW_OPS", "KEEP_NODES",
                       "KEEP_ELEMENTS", "binary_dtype", "relaid_error", "replay_values",
                       "result_dtype"}


def _ops_module(package):
    # each copy of the package has its own (sys.modules holds only the last one imported)
    return package._ops


def _defined_public(module, ops):
    """Public names a module defines itself (imported functions, modules and _ops's names
    left out)."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, types.ModuleType) \
                or getattr(ops, name, None) is value:
            continue
        if callable(value) and getattr(value, "__module__", module.__name__) != module.__name__:
            continue
        names.add(name)
    return names


def _is_rule(name, ops):
    """An op code constant, an `<op>_forward` / `<op>_backward` rule, or an argument check."""
    if name.isupper() and name.lower() in ops.CODES:
        return True
    stem, _, role = name.rpartition("_")
    return (role in ("forward", "backward") and stem in ops.CODES) or name.startswith("check_")


def _stub(compiled):
    """{top-level name: set of member names (classes) or None} of _tape.pyi."""
    path = os.path.join(os.path.dirname(compiled.__file__), "_tape.pyi")
    with open(path) as f:
        tree = ast.parse(f.read())
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = None
        elif isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            names[node.name] = members
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
    return names


def _module_functions(module, ops):
    """Every function, class and public constant the module defines (private hooks too)."""
    names = _defined_public(module, ops)
    for name, value in vars(module).items():
        if name.startswith("_") and not name.startswith("__") and callable(value) \
                and getattr(value, "__module__", None) == module.__name__:
            names.add(name)
    return names


def test_compiled_op_codes_are_the_table(both):
    compiled = both[1]._core_module
    ops = _ops_module(both[1])
    assert compiled.op_codes() == ops.CODES
    assert list(ops.CODES) == list(ops.NAMES)      # codes 0, 1, 2, ... in the table's order


def test_every_op_has_a_rule_in_both_cores(both):
    reference, compiled = both[0]._core_module, both[1]._core_module
    ops = _ops_module(both[0])
    assert len(reference.FORWARD) == len(reference.BACKWARD) == len(ops.NAMES)
    for code, name in enumerate(ops.NAMES):
        if name == "leaf":
            assert reference.FORWARD[code] is None and reference.BACKWARD[code] is None
            continue
        assert reference.FORWARD[code].__name__ == name + "_forward"
        assert reference.BACKWARD[code].__name__ == name + "_backward"
        # the op function, under the name both cores give it (index_: `index` is a builtin's)
        function = "index_" if name == "index" else name
        assert callable(getattr(reference, function)), name
        assert callable(getattr(compiled, function)), name
    native = compiled._native_ops()
    assert native and set(native) <= set(ops.NAMES) - {"leaf"}
    assert native == sorted(native, key=ops.NAMES.index)


def test_both_cores_define_the_same_public_names(both):
    reference, compiled = both[0]._core_module, both[1]._core_module
    ops = _ops_module(both[0])
    ours = _defined_public(compiled, _ops_module(both[1]))
    spec = _defined_public(reference, ops)
    assert ours - spec == COMPILED_ONLY
    missing = {name for name in spec - ours if not _is_rule(name, ops)}
    # what the compiled core does not define it imports from its copy's reference.py
    shared = {name for name in missing
              if getattr(compiled, name, None) is getattr(compiled._ref, name)}
    assert missing - shared == READ_FROM_REFERENCE
    for name in READ_FROM_REFERENCE:
        assert hasattr(reference, name), name
    public = lambda cls: {n for n in dir(cls) if not n.startswith("_")}   # noqa: E731
    assert public(compiled.TensorBase) == public(reference.TensorBase)
    assert public(compiled.Tape) == public(reference.Tape) | {"root"}   # an attribute there


def test_the_stub_lists_every_name_of_the_compiled_core(both):
    compiled = both[1]._core_module
    stub = _stub(compiled)
    defined = _module_functions(compiled, _ops_module(both[1])) | {"_sweep_lock"}
    assert set(stub) == defined
    for cls in ("TensorBase", "Tape"):
        members = {n for n, v in vars(getattr(compiled, cls)).items()
                   if n not in ("__doc__", "__new__", "__module__", "__pyx_vtable__")}
        assert stub[cls] == members, cls
