"""Seeing the chain rule at work: explain, draw_graph, gradcheck, detect_anomaly.

The lectures draw a computational graph whose nodes carry a value, and whose
reverse sweep hands each node an *upstream* gradient (d loss / d node), which
the node multiplies by its *local* gradient (d node / d input) to pass a
*downstream* gradient to each input.  These tools show exactly that.

They work on both cores the same way: every node tells what it is through
`t._node()` -> (op code, inputs, params), and the sweep here applies the
reference core's backward rule of each op (NumPy, readable, the same rules
the compiled core implements in C) without touching any `.grad`.
"""
import os
import shutil
import subprocess
import sys
import weakref

import numpy as np

from ._core import core, reference as _rules
from ._ops import CODES as _CODES
from .autograd import enable_grad as _enable_grad, grad as _grad, no_grad as _no_grad
from .nn import Module as _Module
from .tensor import Tensor, tensor as _tensor

__all__ = ["explain", "sweep", "draw_graph", "gradcheck", "GradcheckError", "detect_anomaly"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------
# the sweep, computed here
# ---------------------------------------------------------------------------
class Step:
    """One node of the reverse sweep: what explain prints in one row."""

    def __init__(self, tensor, op, inputs, params):
        self.tensor = tensor
        self.op = op                  # op name, 'leaf' for inputs and parameters
        self.inputs = inputs          # the node's inputs (tensors or numbers)
        self.params = params
        self.upstream = None          # d root / d this node (array)
        self.local = []               # per input: d node / d input (array or None)
        self.downstream = []          # per input: upstream x local (array or None)


def _graph(root):
    """Nodes reachable from root through inputs that require grad, consumers first."""
    if not isinstance(root, core.TensorBase):
        raise TypeError("expected a tensor, got %s" % type(root).__name__)
    return core.topological_order([root])      # the order the core's own sweep uses


def _check_alive(t):
    code, inputs, _ = t._node()
    if t.grad_fn is not None and (not inputs or any(x is None for x in inputs)):
        raise RuntimeError(
            "the graph through '%s' was freed by backward(); call backward(retain_graph=True) to "
            "keep it for explain/draw_graph, or call them before backward" % t.grad_fn)


def sweep(root, gradient=None, tool="explain"):
    """The reverse sweep from `root` as a list of Steps (consumers first); touches no .grad.

    Each Step holds the node's upstream gradient and, per input, the local
    gradient (see `_local`; None where no array describes it) and the
    downstream gradient (the rule applied to the upstream gradient, summed
    back to the input's shape as the cores' sweep does).  `tool` names the
    caller in error messages.
    """
    order = _graph(root)
    if not root.requires_grad:
        raise RuntimeError("%s: this tensor does not require grad, so no graph was recorded; "
                           "create the inputs with requires_grad=True before the forward pass"
                           % tool)
    for t in order:
        _check_alive(t)
    if gradient is None:
        if root.numpy().size != 1:
            raise RuntimeError("%s: the root has shape %s; pass gradient= for a root that is "
                               "not a scalar" % (tool, tuple(root.shape)))
        seed = np.ones(root.shape, dtype=root.dtype)
    else:
        seed = np.asarray(gradient.numpy() if isinstance(gradient, core.TensorBase) else gradient,
                          dtype=root.dtype)
        if seed.shape != tuple(root.shape):
            raise RuntimeError("%s: gradient has shape %s but the root has shape %s"
                               % (tool, seed.shape, tuple(root.shape)))
    upstream = {id(root): seed}
    steps = []
    with np.errstate(all="ignore"):
        for t in order:
            code, inputs, params = t._node()
            step = Step(t, t.grad_fn or "leaf", inputs, params)
            step.upstream = upstream.get(id(t))
            steps.append(step)
            if t.grad_fn is None or step.upstream is None:
                continue
            values = [_values(x) if isinstance(x, core.TensorBase) else x for x in inputs]
            needs = [isinstance(x, core.TensorBase) and x.requires_grad for x in inputs]
            rule = _rules.BACKWARD[code]
            out = _values(t)
            down = rule(needs, step.upstream, out, *values, *params)
            local = _local(rule, code, needs, out, values, params)
            for i, x in enumerate(inputs):
                d = None
                if needs[i] and down[i] is not None:
                    # as the cores' sweep does: back to the input's shape and dtype
                    d = _rules.unbroadcast(np.asarray(down[i]), tuple(x.shape)).astype(
                        x.dtype, copy=False)
                step.downstream.append(d)
                step.local.append(None if d is None or local is None or local[i] is None
                                  else _local_shape(np.asarray(local[i]), x, out))
                if d is not None:
                    key = id(x)
                    upstream[key] = d if key not in upstream else upstream[key] + d
    return steps


_FUNCTION = _rules.FUNCTION     # a user's Function: its backward is not called twice

# Ops whose output entry i depends on entry i of each input only: their local
# gradient is an array of the same shape (the diagonal of the Jacobian).
_ELEMENTWISE = frozenset(_CODES[name] for name in (
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs", "sin", "cos", "tanh",
    "sigmoid", "relu", "leaky_relu", "clip", "where", "maximum", "minimum", "cast"))


def _local(rule, code, needs, out, values, params):
    """d node / d input for each input, where that is an array, else None.

    Every rule is linear in its upstream gradient, so the rule applied to
    ones gives the local gradient of an elementwise op, and the whole
    gradient of a one-element output.  Any other op (matmul with a matrix
    out, reductions along an axis, ...) applies a Jacobian that no single
    array of local gradients describes: none is shown.
    """
    if code == _FUNCTION or (out.size != 1 and code not in _ELEMENTWISE):
        return None
    return rule(needs, np.ones(out.shape, dtype=out.dtype), out, *values, *params)


def _local_shape(local, x, out):
    if out.size == 1:                     # the gradient of one number: the input's shape
        return _rules.unbroadcast(local, tuple(x.shape))
    return np.broadcast_to(local, out.shape)


def _values(t):
    """t's values, or zeros of its shape for an intermediate whose memory the next op reused.

    The compiled core lets an op write over a temporary that no name refers to
    and that backward never reads (as NumPy does with `a * b + c`); such a
    node has no values left to show (explain says "(not kept)"), and neither
    its own backward rule nor its consumer's reads them: the zeros only carry
    the shape and dtype.
    """
    if getattr(t, "_values_dropped", False):
        return np.zeros(t.shape, dtype=t.dtype)
    return t.numpy()


def _shown(t):
    return "(not kept)" if getattr(t, "_values_dropped", False) else _fmt(t.numpy())


# ---------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------
def _fmt(a):
    """A number for scalars; shape, norm and a few entries for bigger arrays."""
    if a is None:
        return ""
    a = np.asarray(a)
    if a.size == 1:
        v = a.item()
        return "%.4g" % v if isinstance(v, float) else str(v)
    flat = a.ravel()
    head = ", ".join("%.3g" % v for v in flat[:3])
    more = ", ..." if flat.size > 3 else ""
    norm = float(np.sqrt(np.sum(np.square(flat.astype(np.float64)))))
    return "%s |%.3g| [%s%s]" % ("x".join(map(str, a.shape)) or "()", norm, head, more)


def _names(steps, names, frame):
    """Display names: the caller's variable names where a node has one, else #k.

    `names` (a dict name -> tensor, or a Module) comes first; then the
    caller's variables holding tensors; then the parameters of the caller's
    Modules, as 'model.0.weight'.
    """
    found = {}
    if names:
        items = names.named_parameters() if _is_module(names) else dict(names).items()
        for name, t in items:
            found.setdefault(id(t), name)
    if frame is not None:
        modules = []
        for scope in (frame.f_locals, frame.f_globals):
            for name, value in list(scope.items()):
                if name.startswith("_"):
                    continue
                if isinstance(value, core.TensorBase):
                    found.setdefault(id(value), name)
                elif _is_module(value):
                    modules.append((name, value))
        for name, module in modules:
            for pname, p in module.named_parameters():
                found.setdefault(id(p), "%s.%s" % (name, pname))
    return [found.get(id(s.tensor), "#%d" % i) for i, s in enumerate(steps)]


def _is_module(value):
    return isinstance(value, _Module)


def explain(t, gradient=None, names=None):
    """The reverse sweep from `t` as a table (a str), one row per node in sweep order.

    Columns, in the lectures' words: the node, its op, its value, the
    upstream gradient it receives (d t / d node), and for each input the
    local gradient (d node / d input) and the downstream gradient it sends
    (upstream x local).  Nodes are named after the caller's variables when
    they have one (or by `names`, a dict name -> tensor), else #k.  Nothing
    is printed and no `.grad` is touched; after `backward(retain_graph=True)`
    it shows the same sweep that backward ran.
    """
    steps = sweep(t, gradient)
    labels = _names(steps, names, sys._getframe(1))
    index = {id(s.tensor): i for i, s in enumerate(steps)}
    header = ["node", "op", "value", "upstream", "local", "downstream"]
    rows = []
    for i, s in enumerate(steps):
        first = [labels[i], s.op, _shown(s.tensor), _fmt(s.upstream)]
        pairs = []
        for x, local, down in zip(s.inputs, s.local, s.downstream):
            if down is None:
                continue
            target = labels[index[id(x)]] if id(x) in index else "?"
            pairs.append(("d%s/d%s = %s" % (labels[i], target, _fmt(local))
                          if local is not None else "",
                          "-> %s: %s" % (target, _fmt(down))))
        if not pairs:
            rows.append(first + ["", ""])
        for k, (local, down) in enumerate(pairs):
            rows.append((first if k == 0 else [""] * 4) + [local, down])
    widths = [max(len(str(r[c])) for r in rows + [header]) for c in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# draw_graph
# ---------------------------------------------------------------------------
def _dot_text(s):
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _field(s):
    """Text for one field of a record label: the record syntax's own characters escaped."""
    s = _dot_text(s)
    for ch in "{}|<>":
        s = s.replace(ch, "\\" + ch)
    return s


def draw_graph(t, path=None, names=None):
    """The computational graph behind `t` as Graphviz DOT text (returned).

    Each node shows its name or op, its value and its gradient (d t / d node,
    computed without touching .grad); constants appear as small grey nodes.
    `path` ending in .dot writes the text; .png or .svg renders it with
    Graphviz's `dot` program (a RuntimeError names Graphviz if it is missing).
    """
    seed = None if t.numpy().size == 1 else np.ones(t.shape, dtype=t.dtype)
    steps = sweep(t, seed, tool="draw_graph")
    labels = _names(steps, names, sys._getframe(1))
    index = {id(s.tensor): i for i, s in enumerate(steps)}
    lines = ["digraph fastgrad {", "  rankdir=LR;",
             '  node [shape=record, fontname="Helvetica", fontsize=11];']
    consts = 0
    for i, s in enumerate(steps):
        # With rankdir=LR a record's top-level fields stack vertically (the
        # picture stays narrow); braces put name and op side by side.
        title = _field(labels[i]) if s.op == "leaf" else s.op if labels[i].startswith("#") \
            else "{ %s | %s }" % (_field(labels[i]), _field(s.op))
        label = "%s | value %s | grad %s" % (title, _field(_shown(s.tensor)),
                                            _field(_fmt(s.upstream)))
        style = ', style=filled, fillcolor="#dbe9f6"' if s.op == "leaf" else ""
        lines.append('  n%d [label="%s"%s];' % (i, label, style))
    for i, s in enumerate(steps):
        for x in s.inputs:
            if isinstance(x, core.TensorBase) and id(x) in index:
                lines.append("  n%d -> n%d;" % (index[id(x)], i))
            elif x is not None and not isinstance(x, (tuple, list, dict)):
                value = _shown(x) if isinstance(x, core.TensorBase) else _fmt(x)
                lines.append('  c%d [label="%s", shape=plaintext, fontcolor="#777777"];'
                             % (consts, _dot_text(value)))
                lines.append("  c%d -> n%d [color=\"#aaaaaa\"];" % (consts, i))
                consts += 1
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if path is not None:
        _write_graph(text, os.fspath(path))
    return text


def _write_graph(text, path):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".dot":
        with open(path, "w") as f:
            f.write(text)
        return
    if ext not in (".png", ".svg"):
        raise ValueError("draw_graph: path must end in .dot, .png or .svg, got %r" % (path,))
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("draw_graph: rendering %s needs Graphviz's `dot` program, which is not "
                           "on PATH; install Graphviz (https://graphviz.org/download/) or write "
                           "a .dot file instead" % ext)
    result = subprocess.run([dot, "-T" + ext[1:], "-o", path], input=text.encode(),
                            capture_output=True)
    if result.returncode:
        raise RuntimeError("draw_graph: Graphviz failed: %s" % result.stderr.decode().strip())


# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------
class GradcheckError(RuntimeError):
    """Autodiff and finite differences disagree (the message lists the worst entries)."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Compare autodiff with central finite differences, in float64.

    `fn(*inputs)` returns a tensor or a tuple of tensors.  For every input
    that requires grad, the full Jacobian from autodiff (one backward per
    output element, through fg.grad) is compared with the numeric one
    ((f(x + eps) - f(x - eps)) / 2 eps per input element).  Returns True, or
    raises GradcheckError listing the worst entries.  The inputs, their
    values and their .grad are left as they were (the checks run on float64
    copies).
    """
    if not callable(fn):
        raise TypeError("gradcheck: fn must be callable, got %s" % type(fn).__name__)
    if not eps > 0 or not atol >= 0 or not rtol >= 0:
        raise ValueError("gradcheck: need eps > 0, atol >= 0 and rtol >= 0, got eps=%r, atol=%r, "
                         "rtol=%r" % (eps, atol, rtol))
    if isinstance(inputs, core.TensorBase):
        inputs = (inputs,)
    inputs = tuple(inputs)
    copies = []
    for x in inputs:
        if isinstance(x, core.TensorBase) and x.dtype.kind == "f":
            copies.append(_tensor(x.numpy(), dtype=np.float64, requires_grad=x.requires_grad))
        else:
            copies.append(x)
    wanted = [i for i, x in enumerate(copies)
              if isinstance(x, core.TensorBase) and x.requires_grad]
    if not wanted:
        raise ValueError("gradcheck: no input requires grad")

    def outputs():
        out = fn(*copies)
        if not isinstance(out, (core.TensorBase, tuple, list)):
            raise TypeError("gradcheck: fn must return a tensor or a tuple of tensors, got %s"
                            % type(out).__name__)
        out = (out,) if isinstance(out, core.TensorBase) else tuple(out)
        for o in out:
            if not isinstance(o, core.TensorBase):
                raise TypeError("gradcheck: fn must return tensors, got %s" % type(o).__name__)
        return out

    with _enable_grad():                    # gradcheck inside no_grad still needs a graph
        outs = outputs()
    sizes = [o.numpy().size for o in outs]
    total = sum(sizes)
    analytic = {i: np.zeros((total, copies[i].numpy().size)) for i in wanted}
    row = 0
    for o in outs:
        if not o.requires_grad:
            row += o.numpy().size
            continue
        for k in range(o.numpy().size):
            seed = np.zeros(o.shape, dtype=o.dtype)
            seed.flat[k] = 1
            grads = _grad(o, [copies[i] for i in wanted], _tensor(seed), retain_graph=True)
            for i, g in zip(wanted, grads):
                if g is not None:
                    analytic[i][row] = g.numpy().ravel()
            row += 1

    def values():
        with _no_grad():
            return np.concatenate([np.asarray(o.numpy(), dtype=np.float64).ravel()
                                   for o in outputs()])

    failures = []
    for i in wanted:
        x = copies[i].numpy()
        numeric = np.zeros_like(analytic[i])
        for j in range(x.size):
            old = x.flat[j]
            x.flat[j] = old + eps
            up = values()
            x.flat[j] = old - eps
            down = values()
            x.flat[j] = old
            numeric[:, j] = (up - down) / (2 * eps)
        a = analytic[i]
        err = np.abs(a - numeric) - (atol + rtol * np.abs(numeric))
        bad = np.argwhere(~(err <= 0))
        if len(bad):
            worst = sorted(bad.tolist(), key=lambda rc: -np.nan_to_num(err[rc[0], rc[1]],
                                                                        nan=np.inf))[:5]
            entries = ["  output entry %d, input index %s: analytic %.6g, numeric %.6g"
                       % (r, tuple(int(k) for k in np.unravel_index(c, x.shape)), a[r, c],
                          numeric[r, c]) for r, c in worst]
            failures.append("input %d (shape %s): %d of %d Jacobian entries differ; worst:\n%s"
                            % (i, tuple(x.shape), len(bad), a.size, "\n".join(entries)))
    if failures:
        raise GradcheckError("gradcheck: autodiff and finite differences disagree "
                             "(atol=%g, rtol=%g, eps=%g)\n%s"
                             % (atol, rtol, eps, "\n".join(failures)))
    return True


# ---------------------------------------------------------------------------
# detect_anomaly
# ---------------------------------------------------------------------------
def _user_site():
    """file:line of the innermost frame outside fastgrad."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep):
            return "%s:%d" % (filename, frame.f_lineno)
        frame = frame.f_back
    return "unknown location"


class detect_anomaly:
    """`with fg.detect_anomaly():` find the forward op behind a NaN or inf gradient.

    Inside the block every recorded node remembers where (file:line) it was
    created, and `backward()` first runs the sweep in Python, checking each
    downstream gradient: the first op whose backward turns a finite upstream
    gradient into NaN or inf raises a RuntimeError naming the op and where it
    was created.  Much slower than a plain backward: a debugging aid.
    """

    _active = 0

    def __init__(self):
        self._sites = {}            # id(node) -> (weak reference to the node, file:line)
        self._saved_hook = None
        self._saved_backward = None

    def __enter__(self):
        sites = self._sites

        def hook(node):
            sites[id(node)] = (weakref.ref(node), _user_site())
            if previous is not None:
                previous(node)

        previous = core.set_node_hook(hook)
        self._saved_hook = previous
        original = Tensor.__dict__.get("backward")
        self._saved_backward = original
        checker = self
        # Whatever backward was in place (fastgrad.distributed's, say) still runs.
        run = original if original is not None else core.TensorBase.backward

        def backward(t, gradient=None, retain_graph=False):
            checker.check(t, gradient)
            return run(t, gradient, retain_graph)

        Tensor.backward = backward
        return self

    def __exit__(self, *exc):
        core.set_node_hook(self._saved_hook)
        self._sites.clear()
        if self._saved_backward is None:
            del Tensor.backward
        else:
            Tensor.backward = self._saved_backward
        return False

    def check(self, root, gradient=None):
        """Raise if the sweep from root produces a NaN or inf gradient."""
        if not root.requires_grad:
            return          # backward itself explains this mistake
        try:
            steps = sweep(root, gradient)
        except RuntimeError:
            return          # e.g. a freed graph: backward gives the error
        for s in steps:
            if s.upstream is None or not np.all(np.isfinite(s.upstream)):
                continue
            for x, down in zip(s.inputs, s.downstream):
                if down is not None and not np.all(np.isfinite(down)):
                    kind = "NaN" if np.any(np.isnan(down)) else "inf"
                    ref, site = self._sites.get(id(s.tensor), (None, None))
                    if ref is None or ref() is not s.tensor:
                        site = "a place outside detect_anomaly()"
                    raise RuntimeError(
                        "detect_anomaly: the backward of '%s' produced %s (its input of shape %s "
                        "gets a non-finite gradient from a finite upstream one); the '%s' was "
                        "created at %s" % (s.op, kind, tuple(np.shape(down)), s.op, site))
