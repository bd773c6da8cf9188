"""fastgrad's reference core: the whole of autodiff in plain Python and NumPy.

Read this file to learn how fastgrad works; the compiled core (_tape.pyx)
has the same functions, in the same order, and must behave identically.

The design, in five points:

1. A tensor *is* its graph node (as in micrograd).  Besides its value it
   remembers the op that made it (`_op`, an integer from `fastgrad._ops`),
   the op's inputs (`_inputs`: tensors, or plain Python numbers for
   constants), extra arguments (`_params`, e.g. the axis of a sum) and the
   version of each input at the time it was used (`_versions`).
   Leaves have `_op == LEAF`.  Nodes point only at their inputs, never at
   their consumers, so reference counting frees a graph as soon as nothing
   reaches it: there is no global tape.

2. Every op is one pair of functions, side by side below:
       <op>_forward(*values, *params)            -> output array
       <op>_backward(needs, g, out, *values, *params) -> one gradient per input
   `values` are the inputs' arrays (or numbers), `out` the output array,
   `g` the gradient of the output, and `needs[i]` says whether input i wants
   a gradient (so a rule can skip expensive work, e.g. the data's gradient
   in `x @ W`).  A rule may return None for an input: "no gradient".
   Rules return gradients in the shape of the *broadcast* result; the sweep
   sums them back to each input's shape in one place (`unbroadcast`).

3. `backward` sorts the nodes reachable from the root in topological order
   with an explicit stack (never recursion, so 10**5-deep chains work), then
   walks them root-first, calling each node's rule once all of its consumers
   have contributed, and accumulating gradients with `+`.

4. After the sweep the graph is released (inputs dropped, node marked), so
   intermediates are freed; a second backward through it is an error unless
   `retain_graph=True`.

5. In-place changes are tracked by a version counter; the sweep compares
   the versions of the values a rule reads (`_ops.SAVES`) with those
   recorded at forward time and refuses to use stale values.  Views (basic
   slices, reshape, permute, expand, detach) share memory with their base,
   so they share its counter too: a view keeps its base in `_base` and the
   counter lives on the base, whichever alias is changed.

6. Every tensor input of a node must still have the shape and dtype it had
   when the node was recorded: `t.data = other` may rebind a tensor to values
   of another shape, dtype or layout (as in PyTorch), which bumps its
   `_layout` counter; `check_node` compares it with the one the node recorded
   (`_layouts`).  That one door, checked before any rule runs, is what keeps
   the compiled core's C loops inside their buffers.
"""
import builtins
import math
import os
import threading

import numpy as np

from . import grad_hooks
from .._ops import (
    ABS, ADD, CAST, CAT, CLIP, CLONE, COS, CROSS_ENTROPY, DIV, EXP, EXPAND, FUNCTION, GATHER, GELU,
    INDEX, LAYER_NORM, LEAF, LEAKY_RELU, LINEAR, LOG, LOG_SOFTMAX, LOGSUMEXP, MATMUL, MAX, MAXIMUM,
    MIN, MINIMUM, MUL, NAMES, NEG, NORM, PERMUTE, POW, RELU, RESHAPE, SAVES, SIGMOID, SILU, SIN,
    SOFTMAX, SQRT, STD, SUB, SUM, TANH, VAR, WHERE,
)

BACKEND = "python"

_tensor_class = None       # fastgrad.Tensor, set by tensor.py
# Process-wide, like PyTorch's anomaly mode (fg.detect_anomaly also replaces
# Tensor.backward for every thread).
_node_hook = None          # called with every new node (fg.detect_anomaly)


class _ThreadMode(threading.local):
    """Grad mode, per thread as in PyTorch: a thread validating under no_grad
    must not stop another thread's recording.  The class attribute is what a
    new thread sees before it sets anything: grad on."""
    grad_enabled = True
    recording = False      # inside fg.compile's first call (see apply)


_mode = _ThreadMode()

# Every sweep over a graph (backward, fg.grad, a Tape's replay) holds this lock.
# Two sweeps into shared leaves would otherwise race on their .grad (NumPy
# releases the GIL inside the arithmetic); PyTorch serialises accumulation
# too.  Re-entrant: a custom Function's backward may call backward() itself.
_sweep_lock = threading.RLock()


def _new_sweep_lock():
    # A child forked while another thread of the parent was sweeping would
    # inherit the lock held by a thread it does not have: it gets a new one.
    global _sweep_lock
    _sweep_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_sweep_lock)


def set_tensor_class(cls):
    """Tell the core which class its results are (fastgrad.Tensor)."""
    global _tensor_class
    _tensor_class = cls


def set_node_hook(fn):
    """Call fn(node) for every node recorded from now on (None: stop); returns the old hook."""
    global _node_hook
    previous = _node_hook
    _node_hook = fn
    return previous


def _set_keep_values(keep):
    """fg.compile's recording, in this thread: every op on tensors becomes a node,
    also one computed from tensors that do not require grad (see apply); returns
    the old setting.  (The compiled core also keeps every value then.)"""
    previous = _mode.recording
    _mode.recording = bool(keep)
    return previous


def is_grad_enabled():
    """Whether this thread records graphs (each thread starts with True)."""
    return _mode.grad_enabled


def set_grad_enabled(mode):
    """Switch graph recording on or off in this thread; returns the previous mode."""
    on = bool(mode)
    previous = _mode.grad_enabled
    _mode.grad_enabled = on
    return previous


# ---------------------------------------------------------------------------
# Tensor storage and node
# ---------------------------------------------------------------------------

class TensorBase:
    """Values, autograd node and operators; fastgrad.Tensor adds the rest."""

    __slots__ = ("_value", "_requires_grad", "_op", "_inputs", "_params",
                 "_versions", "_layouts", "_grad", "_retains_grad", "_version", "_layout",
                 "_base", "_released")

    def _init_leaf(self, value, requires_grad=False):
        self._value = value
        self._requires_grad = bool(requires_grad)
        self._op = LEAF
        self._inputs = ()
        self._params = ()
        self._versions = ()
        self._layouts = ()
        self._grad = None
        self._retains_grad = False
        self._version = 0          # in-place changes (read through _owner: views share it)
        self._layout = 0           # rebindings of .data to another shape, dtype or layout
        self._base = None          # the tensor whose memory a view shares
        self._released = False

    # -- what the surface reads ------------------------------------------
    @property
    def shape(self):
        return self._value.shape

    @property
    def ndim(self):
        return self._value.ndim

    @property
    def dtype(self):
        return self._value.dtype

    # -- .data (as PyTorch: a Tensor over the same memory, outside autograd) --
    @property
    def data(self):
        # a leaf with a version counter of its own: changes through it are not
        # seen by this tensor's counter (that is what tells it from detach())
        return from_array(self._value)

    @data.setter
    def data(self, value):
        # `p.data -= g` assigns back the tensor it got: the same memory, nothing to rebind
        if isinstance(value, TensorBase) and value._value is self._value:
            return
        _rebind(self, _check_data(self, value))

    # In place `a -= b`: Tensor._augmented (tensor.py) decides between in place
    # and a new node; the compiled core runs the common cases in one C loop first.
    def __iadd__(self, other):
        return self._augmented(other, "add_")

    def __isub__(self, other):
        return self._augmented(other, "sub_")

    def __imul__(self, other):
        return self._augmented(other, "mul_")

    def __itruediv__(self, other):
        return self._augmented(other, "div_")
    # -- end of .data --------------------------------------------------------

    def numpy(self):
        return self._value

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        _set_requires_grad(self, flag)

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = _check_grad(self, value)

    # As PyTorch: a tensor that does not require grad is a leaf (fg.compile
    # records such tensors computed from data as nodes, see apply)
    @property
    def grad_fn(self):
        return None if self._op == LEAF or not self._requires_grad else _op_name(self)

    @property
    def is_leaf(self):
        return self._op == LEAF or not self._requires_grad

    @property
    def _version_counter(self):
        return _owner(self)._version

    def _bump_version(self):
        _owner(self)._version += 1

    def _node(self):
        """(op code, inputs, params) of this node, for inspection tools."""
        return self._op, self._inputs, self._params

    def retain_grad(self):
        if not self._requires_grad:
            raise RuntimeError("retain_grad: this tensor does not require grad")
        if self._op != LEAF:
            self._retains_grad = True

    def backward(self, gradient=None, retain_graph=False):
        backward(self, gradient, retain_graph)

    __hash__ = object.__hash__

    # The storage never pickles itself (the compiled core's cannot: raw
    # buffers); fastgrad.Tensor pickles its values, without the graph.
    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle '%s.%s' object" % (type(self).__module__,
                                                          type(self).__qualname__))

    # -- operators (NumPy broadcasting) ----------------------------------
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __pow__(self, other):
        return pow(self, other)

    def __rpow__(self, other):
        return pow(other, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __neg__(self):
        return neg(self)

    def __getitem__(self, index):
        return index_(self, index)

    # Comparisons give bool tensors and are never differentiable.
    def __lt__(self, other):
        return _compare(np.less, self, other)

    def __le__(self, other):
        return _compare(np.less_equal, self, other)

    def __gt__(self, other):
        return _compare(np.greater, self, other)

    def __ge__(self, other):
        return _compare(np.greater_equal, self, other)

    def __eq__(self, other):
        return _compare(np.equal, self, other)

    def __ne__(self, other):
        return _compare(np.not_equal, self, other)

    # -- elementwise methods ---------------------------------------------
    def exp(self):
        return exp(self)

    def log(self):
        return log(self)

    def sqrt(self):
        return sqrt(self)

    def abs(self):
        return abs(self)

    def sin(self):
        return sin(self)

    def cos(self):
        return cos(self)

    def tanh(self):
        return tanh(self)

    def sigmoid(self):
        return sigmoid(self)

    def relu(self):
        return relu(self)


def _new(value):
    """A fresh leaf of the user-facing class holding `value` (an ndarray)."""
    t = _tensor_class.__new__(_tensor_class)
    t._init_leaf(value)
    return t


def from_array(value, requires_grad=False):
    """Wrap an ndarray without copying it."""
    t = _tensor_class.__new__(_tensor_class)
    t._init_leaf(value, requires_grad)
    return t


def _owner(t):
    """The tensor that holds t's version counter: its base if t is a view."""
    return t if t._base is None else t._base


def _alias(t, base):
    """Make t a view of base: same version counter (views of views share the root's)."""
    t._base = _owner(base)
    return t


def _rebind(t, value):
    """t.data = value: new values (a version bump), maybe of another shape, dtype or layout."""
    if value is t._value:
        return          # the array it already holds: nothing was rebound
    # Contiguity counts as layout too: the compiled core's loops need it, and
    # both cores must refuse the same graphs.
    if value.shape != t._value.shape or value.dtype != t._value.dtype or \
            value.flags.c_contiguous != t._value.flags.c_contiguous:
        t._layout += 1
    t._value = value
    _owner(t)._version += 1


def _op_name(t):
    if t._op == FUNCTION:
        return t._params[0].__name__
    return NAMES[t._op]


def _set_requires_grad(t, flag):
    flag = bool(flag)
    if t._op != LEAF and not t._requires_grad:
        if not flag:
            return
        # a node fg.compile recorded from data alone (apply): a leaf from now on, as in PyTorch
        _release(t)
        t._op = LEAF
        t._released = False
    if t._op != LEAF and not flag:
        raise RuntimeError(
            "requires_grad: can only change the flag of a leaf tensor; "
            "use detach() to get a tensor that does not require grad")
    if flag and t._value.dtype.kind not in "fc":
        raise RuntimeError(
            "requires_grad: only floating point tensors can require grad, "
            "got dtype %s" % t._value.dtype)
    t._requires_grad = flag


def _check_data(t, value):
    value = value._value if isinstance(value, TensorBase) else value
    if not isinstance(value, np.ndarray):
        raise TypeError("data: expected an ndarray or a Tensor, got %s" % type(value).__name__)
    value = check_array("data", value)
    if t._requires_grad and value.dtype.kind != "f":
        raise TypeError("data: a tensor that requires grad needs float data, got %s" % value.dtype)
    return value


def _check_grad(t, value):
    if value is None:
        return None
    if not isinstance(value, TensorBase):
        raise TypeError("grad: expected a Tensor or None, got %s" % type(value).__name__)
    if value.shape != t.shape:
        raise RuntimeError("grad: assigned grad has shape %s but the tensor has shape %s"
                           % (tuple(value.shape), tuple(t.shape)))
    if value.dtype != t.dtype:
        raise TypeError("grad: assigned grad has dtype %s but the tensor has dtype %s; "
                        "convert it first (g.to(t.dtype))" % (value.dtype, t.dtype))
    return value


def _operand(x, name="operand"):
    """Tensors stay, Python numbers become constants, arrays become leaves."""
    if isinstance(x, TensorBase):
        return x
    if isinstance(x, (bool, int, float)):
        return x
    if isinstance(x, np.generic) and x.dtype.kind in "biuf":
        return x.item()
    return from_array(check_array(name, np.asarray(x)))


def check_array(name, arr):
    """`arr` as a tensor may hold it, or a TypeError saying what to do instead.

    Tensors hold float32, float64, integer or bool values in native byte
    order.  A big-endian float64 array is converted, never narrowed (1e300
    stays 1e300); float16 and long double are refused rather than silently
    changed in precision; complex, object, string and date arrays are refused
    because no op could give them a gradient.
    """
    dtype = arr.dtype
    if dtype.kind not in "biuf":
        raise TypeError("%s: arrays of dtype %s are not supported; a tensor holds float32, "
                        "float64, integer or bool values" % (name, dtype))
    if dtype.kind == "f" and dtype.itemsize not in (4, 8):
        to = "float32" if dtype.itemsize < 4 else "float64"
        raise TypeError("%s: %s is not supported (fastgrad computes in float32 or float64); "
                        "convert with .astype(np.%s)" % (name, dtype.name, to))
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _value(x):
    return x._value if isinstance(x, TensorBase) else x


def _compare(ufunc, a, b):
    # `t == None` or `t == "x"` is not a comparison of values: NotImplemented lets
    # Python answer (False for ==, True for !=, a TypeError for <), as for torch
    for x in (a, b):
        if not isinstance(x, (TensorBase, bool, int, float, np.ndarray, np.generic, list, tuple)):
            return NotImplemented
    # a ufunc of 0-d operands returns a NumPy scalar, which no tensor may hold
    name = ufunc.__name__
    return from_array(np.asarray(ufunc(_value(_operand(a, name)), _value(_operand(b, name)))))


# Ops whose forward may return a view of its (first) input, as PyTorch's do.
VIEW_OPS = frozenset((RESHAPE, PERMUTE, EXPAND, INDEX))


def apply(op, inputs, params=()):
    """Run op's forward rule and, if needed, record the node."""
    values = [_value(x) for x in inputs]
    out = _new(np.asarray(FORWARD[op](*values, *params)))
    if op in VIEW_OPS and np.may_share_memory(out._value, values[0]):
        _alias(out, inputs[0])
    if not _mode.grad_enabled:
        return out
    needs = any(isinstance(x, TensorBase) and x._requires_grad for x in inputs)
    # While fg.compile records, what is computed from data alone is a node
    # too (one that does not require grad): the replay recomputes it from the
    # data's values of that call instead of keeping the recorded ones.
    if needs or _mode.recording:
        if out._value.dtype.kind != "f":
            return out          # integer results (argmax, ...) carry no gradient
        out._requires_grad = needs
        out._op = op
        out._inputs = tuple(inputs)
        out._params = tuple(params)
        out._versions = tuple(_owner(x)._version if isinstance(x, TensorBase) else None
                              for x in inputs)
        out._layouts = tuple(x._layout if isinstance(x, TensorBase) else None for x in inputs)
        if _node_hook is not None:
            _node_hook(out)
    return out


def unbroadcast(g, shape):
    """Sum a gradient of a broadcast result back to an input's `shape`."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def broadcast_shape(name, sa, sb):
    try:
        return np.broadcast_shapes(sa, sb)
    except ValueError:
        raise ValueError("%s: shapes %s and %s cannot be broadcast together"
                         % (name, sa, sb)) from None


def _binary(op, a, b):
    a, b = _operand(a, NAMES[op]), _operand(b, NAMES[op])
    broadcast_shape(NAMES[op], np.shape(_value(a)), np.shape(_value(b)))
    if _promotes(op, a, b):
        dtype = binary_dtype(op, a, b)
        a, b = (cast(x, dtype) if isinstance(x, TensorBase) and x.dtype != dtype else x
                for x in (a, b))
    return apply(op, (a, b))


def _unary(op, x, params=()):
    x = _operand(x, NAMES[op])
    if op in FLOAT_UNARY and isinstance(x, TensorBase) and x.dtype.kind != "f":
        x = cast(x, _default_float[0])
    return apply(op, (x,), params)


# -- dtype promotion, as PyTorch ----------------------------------------
# NumPy's rule differs in two ways that matter to a float32 model: an integer
# array with a float32 array gives float64, and an integer array with a Python
# float gives float64.  PyTorch ranks operands by category (bool < integer <
# float) and then by kind (tensors with dimensions, then 0-d tensors, then
# Python numbers): the result takes the highest category present, and its
# width from the highest-ranked operands of that category only.  A Python
# float, or an integer division, that makes an integer result a float gives
# the default float dtype.  Both cores call this for every binary op whose
# operands differ in dtype.
_default_float = [np.dtype(np.float32)]

# unary ops that only make sense on floats: integer inputs become the default float
FLOAT_UNARY = frozenset((EXP, LOG, SQRT, SIN, COS, TANH, SIGMOID, GELU, SILU))

_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


def set_default_float(dtype):
    """The dtype a Python float or an integer division gives (fg.set_default_dtype)."""
    _default_float[0] = np.dtype(dtype)


def _rank(x):
    """(category, kind rank, dtype or None for a Python number) of one operand."""
    # numbers first: a tensor of either core is anything else with a dtype
    if isinstance(x, (bool, np.bool_)):
        return 0, 0, None
    if isinstance(x, (int, np.integer)):
        return 1, 0, None
    if isinstance(x, (float, np.floating)):
        return 2, 0, None
    return _CATEGORY.get(x.dtype.kind, 2), (2 if x.ndim else 1), x.dtype


def result_dtype(operands):
    """The dtype PyTorch gives an elementwise op of these operands."""
    ranks = [_rank(x) for x in operands]
    category = builtins.max(r[0] for r in ranks)
    top = [r for r in ranks if r[0] == category]
    kind = builtins.max(r[1] for r in top)
    dtypes = [r[2] for r in top if r[1] == kind]
    if kind == 0:                    # only Python numbers carry the top category
        return (np.dtype(np.bool_), np.dtype(np.int64), _default_float[0])[category]
    return np.result_type(*dtypes)


def _promotes(op, a, b):
    """False when NumPy already gives PyTorch's dtype: one float dtype, or a float tensor and a number."""
    ta, tb = isinstance(a, TensorBase), isinstance(b, TensorBase)
    if ta and tb:
        return a.dtype != b.dtype or (a.dtype.kind != "f" and op == DIV)
    if not (ta or tb):
        return False
    return (a if ta else b).dtype.kind != "f"


def binary_dtype(op, a, b):
    dtype = result_dtype((a, b))
    if op == DIV and dtype.kind != "f":
        return _default_float[0]     # true division of integers, as torch.div
    return dtype


# ---------------------------------------------------------------------------
# The ops: forward and backward rule side by side
# ---------------------------------------------------------------------------

# -- add: a + b ---------------------------------------------------------
def add_forward(a, b):
    return np.add(a, b)


def add_backward(needs, g, out, a, b):
    return g, g


def add(a, b):
    return _binary(ADD, a, b)


# -- sub: a - b ---------------------------------------------------------
def sub_forward(a, b):
    return np.subtract(a, b)


def sub_backward(needs, g, out, a, b):
    return g, -g


def sub(a, b):
    return _binary(SUB, a, b)


# -- mul: a * b ---------------------------------------------------------
def mul_forward(a, b):
    return np.multiply(a, b)


def mul_backward(needs, g, out, a, b):
    return g * b, g * a


def mul(a, b):
    return _binary(MUL, a, b)


# -- div: a / b ---------------------------------------------------------
def div_forward(a, b):
    return np.true_divide(a, b)


def div_backward(needs, g, out, a, b):
    ga = g / b
    return ga, (-ga * a / b) if needs[1] else None


def div(a, b):
    return _binary(DIV, a, b)


# -- neg: -a ------------------------------------------------------------
def neg_forward(a):
    return np.negative(a)


def neg_backward(needs, g, out, a):
    return (-g,)


def neg(x):
    return _unary(NEG, x)


# -- pow: a ** b --------------------------------------------------------
def pow_forward(a, b):
    return _pow(a, b)


def _pow(a, b):
    # A Python-number exponent: PyTorch's specialisations, which the compiled
    # core's kernels share.  A square root for +-0.5 differs from pow at -inf
    # (NaN) and -0.0 (sign); the products round differently from pow in the
    # last place.  A tensor exponent (even 0-d) is pow, as in PyTorch.
    # (a NumPy scalar is a 0-d tensor's value here: b - 1 of one in pow_backward)
    if isinstance(b, (bool, int, float)) and not isinstance(b, np.generic):
        if b in (0.5, -0.5):
            root = np.sqrt(a)
            return root if b > 0 else np.true_divide(1, root, dtype=root.dtype)
        if getattr(a, "dtype", None) is not None and a.dtype.kind == "f":
            if b == 2:
                return a * a
            if b == 3:
                return a * a * a
            if b == -1:
                return np.true_divide(1, a, dtype=a.dtype)
            if b == -2:
                return np.true_divide(1, a * a, dtype=a.dtype)
    elif np.size(b) == 1 and np.shape(b) != np.shape(a):
        # NumPy's loop takes sqrt (reciprocal) for a broadcast exponent of
        # 0.5 (-1): given whole, the exponent tensor is pow's, as PyTorch's
        b = np.full(np.broadcast_shapes(np.shape(a), np.shape(b)), b, dtype=np.asarray(b).dtype)
    return np.power(a, b)


def pow_backward(needs, g, out, a, b):
    # As PyTorch: d/da = b * a**(b-1) is 0 where b == 0 (even at a = 0 or NaN);
    # d/db = a**b * log(a) is 0 where a == 0 and b >= 0 (else 0 * -inf)
    ga = gb = None
    with np.errstate(divide="ignore", invalid="ignore"):
        if needs[0]:
            ga = g * np.where(b == 0, 0.0, b * _pow(a, b - 1))
        if needs[1]:
            gb = g * np.where((a == 0) & (b >= 0), 0.0, out * np.log(a))
    return ga, gb


def pow(a, b):
    return _binary(POW, a, b)


# -- matmul: a @ b (NumPy's rules for 1-D and batched operands) ----------
def matmul_forward(a, b):
    return np.matmul(a, b)


def matmul_backward(needs, g, out, a, b):
    # Treat 1-D operands as a row (a) or a column (b), as np.matmul does.
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if b.ndim == 1:
        g2 = g2[..., None]           # first: g is 0-d when both are 1-D
    if a.ndim == 1:
        g2 = g2[..., None, :]
    ga = gb = None
    if needs[0]:
        ga = unbroadcast(np.matmul(g2, np.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
    if needs[1]:
        gb = unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape)
    return ga, gb


def matmul(a, b):
    a, b = _operand(a, "matmul"), _operand(b, "matmul")
    if not isinstance(a, TensorBase) or not isinstance(b, TensorBase):
        raise TypeError("matmul: both operands must be tensors or arrays, not scalars")
    check_matmul(a.shape, b.shape, a.dtype, b.dtype)
    return apply(MATMUL, (a, b))


def check_matmul(sa, sb, da, db):
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError("matmul: both operands need at least 1 dimension, got shapes %s and %s"
                         % (sa, sb))
    ka = sa[-1]
    kb = sb[0] if len(sb) == 1 else sb[-2]
    if ka != kb:
        raise ValueError("matmul: shapes %s and %s do not align (%d != %d)" % (sa, sb, ka, kb))
    try:
        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise ValueError("matmul: batch dimensions of shapes %s and %s cannot be broadcast"
                         % (sa, sb)) from None
    if da != db and da.kind == "f" and db.kind == "f":
        raise TypeError(
            "matmul: operands have different float dtypes (%s and %s); convert one "
            "(for example x.float() or x.double()), or call "
            "fg.set_default_dtype(np.float64) before building the model" % (da, db))


# -- exp ----------------------------------------------------------------
def exp_forward(a):
    return np.exp(a)


def exp_backward(needs, g, out, a):
    return (g * out,)


def exp(x):
    return _unary(EXP, x)


# -- log ----------------------------------------------------------------
def log_forward(a):
    return np.log(a)


def log_backward(needs, g, out, a):
    return (g / a,)


def log(x):
    return _unary(LOG, x)


# -- sqrt ---------------------------------------------------------------
def sqrt_forward(a):
    return np.sqrt(a)


def sqrt_backward(needs, g, out, a):
    return (g / (2 * out),)


def sqrt(x):
    return _unary(SQRT, x)


# -- abs ----------------------------------------------------------------
def abs_forward(a):
    return np.abs(a)


def abs_backward(needs, g, out, a):
    # sign(a) with 0 at 0 and at NaN (PyTorch's subgradient)
    return (g * ((a > 0).astype(a.dtype) - (a < 0)),)


def abs(x):
    return _unary(ABS, x)


# -- sin ----------------------------------------------------------------
def sin_forward(a):
    return np.sin(a)


def sin_backward(needs, g, out, a):
    return (g * np.cos(a),)


def sin(x):
    return _unary(SIN, x)


# -- cos ----------------------------------------------------------------
def cos_forward(a):
    return np.cos(a)


def cos_backward(needs, g, out, a):
    return (-g * np.sin(a),)


def cos(x):
    return _unary(COS, x)


# -- tanh ---------------------------------------------------------------
def tanh_forward(a):
    return np.tanh(a)


def tanh_backward(needs, g, out, a):
    return (g * (1 - out * out),)


def tanh(x):
    return _unary(TANH, x)


# -- sigmoid: 1 / (1 + exp(-a)), computed without overflow ---------------
def sigmoid_forward(a):
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(needs, g, out, a):
    return (g * out * (1 - out),)


def sigmoid(x):
    return _unary(SIGMOID, x)


# -- relu ---------------------------------------------------------------
def relu_forward(a):
    # NaN and -0.0 pass through unchanged, as in PyTorch
    return np.where(a < 0, np.zeros((), a.dtype), a)


def relu_backward(needs, g, out, a):
    # where a <= 0 the gradient is 0; a NaN input passes it on (as PyTorch)
    return (np.where(a <= 0, np.zeros((), g.dtype), g),)


def relu(x):
    return _unary(RELU, x)


# -- leaky_relu ---------------------------------------------------------
def leaky_relu_forward(a, slope):
    return np.where(a > 0, a, a * slope).astype(a.dtype, copy=False)


def leaky_relu_backward(needs, g, out, a, slope):
    return (np.where(a > 0, g, g * slope),)


def leaky_relu(x, negative_slope=0.01):
    return _unary(LEAKY_RELU, x, (float(negative_slope),))


# -- clip: gradient passes where lo <= a <= hi (as torch.clamp) ----------
def clip_forward(a, lo, hi):
    # min(max(a, lo), hi), as torch.clamp: a NaN bound gives NaN everywhere,
    # lo > hi gives hi, a NaN input stays NaN, and a zero keeps its sign
    # unless a bound replaces it
    out = a
    if lo is not None:
        out = np.where((out < lo) | (lo != lo), np.asarray(lo, a.dtype), out)
    if hi is not None:
        out = np.where((out > hi) | (hi != hi), np.asarray(hi, a.dtype), out)
    return np.array(out, dtype=a.dtype)


def clip_backward(needs, g, out, a, lo, hi):
    inside = np.ones(a.shape, dtype=bool)
    if lo is not None:
        inside &= a >= lo
    if hi is not None:
        inside &= a <= hi
    return (g * inside,)


def clip(x, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")
    return _unary(CLIP, x, (None if min is None else float(min),
                            None if max is None else float(max)))


# -- gelu: a Phi(a), Phi the standard normal distribution function ------
# Phi(a) = erfc(-a / sqrt 2) / 2: accurate in both tails, where (1 + erf) / 2
# would cancel to 0.
def _normal_cdf(a):
    try:
        from scipy.special import erfc
    except ImportError:
        erfc = np.frompyfunc(math.erfc, 1, 1)
    return np.asarray(erfc(a * -math.sqrt(0.5)), dtype=a.dtype) * 0.5


def gelu_forward(a):
    return a * _normal_cdf(a)


def gelu_backward(needs, g, out, a):
    # d/da a Phi(a) = Phi(a) + a phi(a), phi(a) = exp(-a^2 / 2) / sqrt(2 pi)
    pdf = np.exp(a * a * -0.5) * (1 / math.sqrt(2 * math.pi))
    return ((g * (_normal_cdf(a) + a * pdf)).astype(a.dtype, copy=False),)


def gelu(x):
    return _unary(GELU, x)



# -- silu: a sigmoid(a) --------------------------------------------------
def silu_forward(a):
    return a * sigmoid_forward(a)


def silu_backward(needs, g, out, a):
    s = sigmoid_forward(a)
    return (g * (s * (1 + a * (1 - s))),)


def silu(x):
    return _unary(SILU, x)


# -- gather: a's values at `index` along one axis (torch.gather) --------
# out[i, j, k] = a[index[i, j, k], j, k] for dim 0, and so on; index has a's
# number of dimensions and is no longer than a outside `dim`.  The backward
# adds each gradient element back where its value came from (repeated
# indices accumulate).  index is the op's own int64 copy (check_gather).
def _along_key(index, dim):
    key = []
    for d, n in enumerate(index.shape):
        if d == dim:
            key.append(index)
        else:
            shape = [1] * index.ndim
            shape[d] = n
            key.append(np.arange(n).reshape(shape))
    return tuple(key)


def gather_forward(a, index, dim):
    return a[_along_key(index, dim)]


def gather_backward(needs, g, out, a, index, dim):
    ga = np.zeros(a.shape, dtype=g.dtype)
    np.add.at(ga, _along_key(index, dim), g)
    return (ga,)


def check_gather(shape, dim, index):
    """(dim as a non-negative int, index as a private C-contiguous int64 array), or an error."""
    nd = len(shape)
    check_axis_type("gather", dim)
    if not -builtins.max(nd, 1) <= int(dim) < builtins.max(nd, 1):
        raise IndexError("gather: dimension %d is out of range for a tensor of %d dimension(s) "
                         "(shape %s)" % (int(dim), nd, tuple(shape)))
    dim = int(dim) % builtins.max(nd, 1)
    index = np.asarray(index)
    if index.dtype.kind not in "iu":
        raise TypeError("gather: index must be an integer (int64) tensor, got dtype %s"
                        % index.dtype)
    if index.ndim != nd:
        raise ValueError("gather: index must have as many dimensions as the input (%d), got an "
                         "index of shape %s" % (nd, index.shape))
    for d in range(nd):
        if d != dim and index.shape[d] > shape[d]:
            raise ValueError("gather: index shape %s is larger than the input's %s outside "
                             "dimension %d" % (index.shape, tuple(shape), dim))
    n = shape[dim] if nd else 1
    # as torch: no negative indices (they would silently count from the end in NumPy)
    if index.size and (index.min() < 0 or index.max() >= n):
        raise IndexError("gather: index values must be in [0, %d) for dimension %d, got values "
                         "from %d to %d" % (n, dim, index.min(), index.max()))
    return dim, np.array(index, dtype=np.int64, order="C")


def gather(x, dim, index):
    x = _operand(x, "gather")
    dim, index = check_gather(x.shape, dim, index)
    return apply(GATHER, (x,), (index, dim))


def extreme_dim(x, dim, keepdim, is_max):
    """(values, int64 indices) of max / min along dim (as torch.max(x, dim)): values are a
    gather node, so the gradient goes to the one position picked; x is not empty."""
    x = _operand(x, "max" if is_max else "min")
    pick = np.argmax if is_max else np.argmin     # the first NaN wins, as in torch
    index = np.expand_dims(pick(_value(x), axis=dim), dim)
    values, indices = apply(GATHER, (x,), (index, dim)), from_array(index)
    if not keepdim:
        shape = index.shape[:dim] + index.shape[dim + 1:]
        return reshape(values, shape), reshape(indices, shape)
    return values, indices

# -- sum ----------------------------------------------------------------
def sum_forward(a, axis, keepdims):
    return np.sum(a, axis=axis, keepdims=keepdims)


def sum_backward(needs, g, out, a, axis, keepdims):
    return (np.broadcast_to(_keep(g, a.ndim, axis, keepdims), a.shape),)


def sum(x, axis=None, keepdims=False):
    x = _operand(x, "sum")
    return apply(SUM, (x,), (normalize_axes("sum", x.shape, axis), bool(keepdims)))


def _keep(g, ndim, axis, keepdims):
    """Reinsert reduced axes (as size 1) into a reduction's gradient."""
    if keepdims or axis is None and ndim == 0:
        return g
    axes = range(ndim) if axis is None else axis
    return np.expand_dims(g, tuple(axes))


def normalize_axes(name, shape, axis):
    """Normalise an axis argument to a sorted tuple of non-negative ints, or None."""
    if axis is None:
        return None
    ndim = len(shape)
    if type(axis) is int and 0 < ndim and -ndim <= axis < ndim:
        return (axis % ndim,)         # the common call: one int axis, in range
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for ax in items:
        check_axis_type(name, ax, axis)
        ax = int(ax)
        if not -builtins.max(ndim, 1) <= ax < builtins.max(ndim, 1):
            raise ValueError("%s: axis %d is out of range for a tensor of %d dimension(s) (shape %s)"
                             % (name, ax, ndim, tuple(shape)))
        ax = ax % builtins.max(ndim, 1)
        if ax in out:
            raise ValueError("%s: axis %d appears twice in %s" % (name, ax, axis))
        out.append(ax)
    if ndim == 0:
        return None
    return tuple(sorted(out))


def check_axis_type(name, ax, axis=None):
    # int() would turn 1.5 into 1 and 'a' into a confusing error.  Integers are
    # what has __index__ (int, NumPy integers, 0-d integer tensors); bool is an
    # int to Python but never meant as an axis
    if not isinstance(ax, (bool, np.bool_)):
        try:
            type(ax).__index__(ax)
            return
        except (AttributeError, TypeError):
            pass
    raise TypeError("%s: an axis must be an int or a tuple of ints, got %r (%s)"
                    % (name, ax if axis is None else axis, type(ax).__name__))


# -- max and min over axes: the gradient is shared evenly between ties --
def max_forward(a, axis, keepdims):
    return np.max(a, axis=axis, keepdims=keepdims)


def max_backward(needs, g, out, a, axis, keepdims):
    return (_extreme_grad(g, out, a, axis, keepdims),)


def max(x, axis=None, keepdims=False):
    x = _operand(x, "max")
    check_nonempty("max", x.shape)
    return apply(MAX, (x,), (normalize_axes("max", x.shape, axis), bool(keepdims)))


def min_forward(a, axis, keepdims):
    return np.min(a, axis=axis, keepdims=keepdims)


def min_backward(needs, g, out, a, axis, keepdims):
    return (_extreme_grad(g, out, a, axis, keepdims),)


def min(x, axis=None, keepdims=False):
    x = _operand(x, "min")
    check_nonempty("min", x.shape)
    return apply(MIN, (x,), (normalize_axes("min", x.shape, axis), bool(keepdims)))


def _extreme_grad(g, out, a, axis, keepdims):
    # shared evenly by the elements equal to the result; where the result is
    # NaN, by the NaN elements (PyTorch's full max() / min())
    out = _keep(out, a.ndim, axis, keepdims)
    hit = (a == out) | (np.isnan(a) & np.isnan(out))
    count = np.sum(hit, axis=axis, keepdims=True)
    return hit * (_keep(g, a.ndim, axis, keepdims) / count)


def check_nonempty(name, shape):
    if 0 in shape:
        raise ValueError("%s: cannot reduce an empty tensor (shape %s)" % (name, tuple(shape)))


# -- logsumexp: log(sum(exp(a))), shifted by the max for stability -------
def logsumexp_forward(a, axis, keepdims):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return s if keepdims else np.squeeze(s, axis=axis)


def logsumexp_backward(needs, g, out, a, axis, keepdims):
    out = _keep(out, a.ndim, axis, keepdims)
    return (_keep(g, a.ndim, axis, keepdims) * np.exp(a - out),)


def logsumexp(x, axis=None, keepdims=False):
    x = _operand(x, "logsumexp")
    return apply(LOGSUMEXP, (x,), (normalize_axes("logsumexp", x.shape, axis), bool(keepdims)))


# -- softmax and log_softmax along one axis, shifted by the row's max -----
# As PyTorch: the shift is not guarded, so a row whose max is inf (or -inf,
# or NaN) is NaN throughout.  The backward rules read only the output:
# softmax's dx = s * (g - sum(g * s)), log_softmax's dx = g - exp(o) * sum(g).
# `axis` is one non-negative int (None: a 0-d tensor, its one element).
def _shifted(a, axis):
    if a.size == 0:
        return a * 1                   # np.max has nothing to reduce over an empty axis
    with np.errstate(invalid="ignore"):
        return a - np.max(a, axis=axis, keepdims=True)


def softmax_forward(a, axis):
    e = np.exp(_shifted(a, axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return e / np.sum(e, axis=axis, keepdims=True)


def softmax_backward(needs, g, out, a, axis):
    return (out * (g - np.sum(g * out, axis=axis, keepdims=True)),)


def log_softmax_forward(a, axis):
    shifted = _shifted(a, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def log_softmax_backward(needs, g, out, a, axis):
    return (g - np.exp(out) * np.sum(g, axis=axis, keepdims=True),)


def softmax(x, axis=-1):
    x = _operand(x, "softmax")
    return apply(SOFTMAX, (x,), (check_softmax_axis("softmax", np.shape(x), axis),))


def log_softmax(x, axis=-1):
    x = _operand(x, "log_softmax")
    return apply(LOG_SOFTMAX, (x,), (check_softmax_axis("log_softmax", np.shape(x), axis),))


def check_softmax_axis(name, shape, axis):
    """The one axis of softmax / log_softmax, non-negative (None for a 0-d tensor)."""
    check_axis_type(name, axis)            # one int: a tuple is refused here too
    axes = normalize_axes(name, shape, axis)
    return None if axes is None else axes[0]


# -- reshape (also view, flatten, squeeze, unsqueeze) ---------------------
def reshape_forward(a, shape):
    return np.reshape(a, shape)          # a view whenever the layout allows (as torch.reshape)


def reshape_backward(needs, g, out, a, shape):
    return (np.reshape(g, a.shape),)


def reshape(x, shape):
    x = _operand(x, "reshape")
    return apply(RESHAPE, (x,), (check_reshape(x.shape, shape),))


def check_reshape(old, shape):
    shape = tuple(int(n) for n in shape)
    size = int(np.prod(old))
    known = 1
    for n in shape:
        if n != -1:
            known *= n
    if shape.count(-1) > 1 or any(n < -1 for n in shape):
        raise ValueError("reshape: invalid shape %s" % (shape,))
    if shape.count(-1) == 1:
        if known == 0 or size % known:
            raise ValueError("reshape: cannot reshape a tensor of shape %s (%d elements) into %s"
                             % (tuple(old), size, shape))
        shape = tuple(size // known if n == -1 else n for n in shape)
    elif known != size:
        raise ValueError("reshape: cannot reshape a tensor of shape %s (%d elements) into %s"
                         % (tuple(old), size, shape))
    return shape


# -- permute (also transpose and T) -------------------------------------
def permute_forward(a, axes):
    return np.transpose(a, axes)         # a view


def permute_backward(needs, g, out, a, axes):
    return (np.transpose(g, np.argsort(axes)),)


def permute(x, axes):
    x = _operand(x, "permute")
    return apply(PERMUTE, (x,), (check_permute(x.shape, axes),))


def check_permute(shape, axes):
    nd = len(shape)
    axes = tuple(int(ax) for ax in axes)
    if any(not -nd <= ax < nd for ax in axes) or \
            sorted(ax % nd for ax in axes) != list(range(nd)):
        raise ValueError("permute: %s is not a permutation of the %d dimensions of shape %s"
                         % (axes, nd, tuple(shape)))
    return tuple(ax % nd for ax in axes)


# -- expand: broadcast to a larger shape ----------------------------------
def expand_forward(a, shape):
    return np.broadcast_to(a, shape)     # a read-only view: its entries alias each other


def expand_backward(needs, g, out, a, shape):
    return (g,)


def expand(x, shape):
    x = _operand(x, "expand")
    return apply(EXPAND, (x,), (check_expand(x.shape, shape),))


def check_expand(old, shape):
    old, shape = tuple(old), tuple(int(n) for n in shape)
    lead = len(shape) - len(old)
    if lead < 0:
        raise ValueError("expand: cannot expand shape %s to fewer dimensions %s" % (old, shape))
    shape = tuple(old[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(shape))
    try:
        if np.broadcast_shapes(old, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError("expand: shape %s cannot be expanded to %s (only size-1 dimensions can grow)"
                         % (old, shape)) from None
    return shape


# -- index: t[...] with slices, integers, None, Ellipsis, integer or bool arrays
def index_forward(a, key):
    out = a[key]                         # basic indexing: a view; integer/bool arrays: a copy
    return out if isinstance(out, np.ndarray) else np.array(out)


def index_backward(needs, g, out, a, key):
    ga = np.zeros(a.shape, dtype=g.dtype)
    if _is_basic(key):
        ga[key] = g
    else:
        np.add.at(ga, key, g)     # repeated indices accumulate
    return (ga,)


def index_(x, key):
    x = _operand(x, "index")
    return apply(INDEX, (x,), (check_index(x._value, key),))


def check_index(values, key):
    """The key as NumPy takes it (tensors and lists become arrays), checked."""
    items = key if isinstance(key, tuple) else (key,)
    out = []
    for k in items:
        if hasattr(k, "_init_leaf"):          # a Tensor of either core
            k = np.asarray(k.numpy())
        elif isinstance(k, list):
            k = np.asarray(k)
        if isinstance(k, np.ndarray):
            # A copy: backward scatters through this key, and the caller may
            # change their array (or tensor) in the meantime.
            k = np.array(k, copy=True)
        out.append(k)
    out = tuple(out)
    try:
        values[out]
    except IndexError as exc:
        raise IndexError("index: %s (tensor of shape %s)" % (exc, values.shape)) from None
    return out


def _is_basic(key):
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice, np.integer))
               for k in key)


# -- cat: join along an existing axis (stack is unsqueeze + cat) ---------
def cat_forward(*values_and_axis):
    *values, axis = values_and_axis
    return np.concatenate(values, axis=axis)


def cat_backward(needs, g, out, *values_and_axis):
    *values, axis = values_and_axis
    bounds = np.cumsum([v.shape[axis] for v in values])[:-1]
    return tuple(np.split(g, bounds, axis=axis))


def cat(tensors, axis=0):
    tensors = [_operand(t, "cat") for t in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    if any(not isinstance(t, TensorBase) for t in tensors):
        raise TypeError("cat: expected tensors or arrays, got a Python number")
    return apply(CAT, tuple(tensors), (check_cat([t.shape for t in tensors], axis),))


def check_cat(shapes, axis):
    check_axis_type("cat", axis)
    axis = int(axis)
    first = tuple(shapes[0])
    nd = len(first)
    if nd == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated")
    if not -nd <= axis < nd:
        raise ValueError("cat: axis %d is out of range for tensors of %d dimensions" % (axis, nd))
    axis %= nd
    for shape in shapes[1:]:
        shape = tuple(shape)
        if len(shape) != nd or any(n != m for i, (n, m) in enumerate(zip(shape, first)) if i != axis):
            raise ValueError("cat: shapes %s and %s differ outside axis %d" % (first, shape, axis))
    return axis


# -- where: cond ? a : b (cond is never differentiated) -------------------
def where_forward(cond, a, b):
    return np.where(cond, a, b)


def where_backward(needs, g, out, cond, a, b):
    return None, np.where(cond, g, 0), np.where(cond, 0, g)


def where(cond, a, b):
    cond = _operand(cond, "where")
    cond = from_array(np.asarray(_value(cond), dtype=bool))
    a, b = _operand(a, "where"), _operand(b, "where")
    check_where(cond.shape, np.shape(_value(a)), np.shape(_value(b)))
    return apply(WHERE, (cond, a, b))


def check_where(sc, sa, sb):
    try:
        np.broadcast_shapes(sc, sa, sb)
    except ValueError:
        raise ValueError("where: shapes %s, %s and %s cannot be broadcast together"
                         % (tuple(sc), tuple(sa), tuple(sb))) from None


# -- maximum and minimum: ties share the gradient (as PyTorch) -----------
def maximum_forward(a, b):
    return np.maximum(a, b)


def maximum_backward(needs, g, out, a, b):
    # only a strict loser gets 0, so a NaN on either side gives both the
    # whole gradient (PyTorch's rule)
    share = np.where(a == b, 0.5, 1.0)
    return g * share * ~(a < b), g * share * ~(b < a)


def maximum(a, b):
    return _binary(MAXIMUM, a, b)


def minimum_forward(a, b):
    return np.minimum(a, b)


def minimum_backward(needs, g, out, a, b):
    share = np.where(a == b, 0.5, 1.0)
    return g * share * ~(a > b), g * share * ~(b > a)


def minimum(a, b):
    return _binary(MINIMUM, a, b)


# -- cast: dtype conversion; the gradient is cast back --------------------
def cast_forward(a, dtype):
    return a.astype(dtype)


def cast_backward(needs, g, out, a, dtype):
    return (g.astype(a.dtype),)


def cast(x, dtype):
    x = _operand(x, "cast")
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    return apply(CAST, (x,), (dtype,))


# -- function: a user's fg.Function subclass -----------------------------
def function_forward(*values_and_fn):
    *values, fn, ctx = values_and_fn
    out = fn.forward(ctx, *values)
    return check_array("%s.forward" % fn.__name__, np.asarray(_value(out)))


def function_backward(needs, g, out, *values_and_fn):
    *values, fn, ctx = values_and_fn
    ctx.needs_input_grad = tuple(needs)
    grads = fn.backward(ctx, g)
    if not isinstance(grads, tuple):
        grads = (grads,)
    if len(grads) != len(values):
        raise RuntimeError("%s.backward returned %d gradients but forward took %d inputs"
                           % (fn.__name__, len(grads), len(values)))
    return tuple(None if gr is None or not need
                 else check_function_grad(fn.__name__, i, np.asarray(_value(gr)), np.shape(v))
                 for i, (gr, need, v) in enumerate(zip(grads, needs, values)))


def check_function_grad(name, i, gr, shape):
    """A custom Function's gradient for input i, checked against the input's shape.

    As in PyTorch, the gradient may have a shape the input broadcasts to (it is
    summed back to the input's shape); anything else is the rule's bug, caught
    here rather than as a reshape error deep in the sweep.
    """
    if gr.dtype.kind not in "biuf":
        raise TypeError("%s.backward returned a gradient of dtype %s for input %d; expected "
                        "float values" % (name, gr.dtype, i))
    shape = tuple(shape)
    fits = gr.shape == shape          # the usual case, without broadcast_shapes' cost
    if not fits:
        try:
            fits = np.broadcast_shapes(shape, gr.shape) == gr.shape
        except ValueError:
            fits = False
    if not fits:
        raise RuntimeError("%s.backward returned a gradient of shape %s for input %d, which has "
                           "shape %s; expected that shape (or one the input broadcasts to)"
                           % (name, gr.shape, i, tuple(shape)))
    return gr


def function(fn, ctx, inputs):
    inputs = tuple(_operand(x, fn.__name__) for x in inputs)
    ctx.needs_input_grad = tuple(isinstance(x, TensorBase) and x._requires_grad for x in inputs)
    return apply(FUNCTION, inputs, (fn, ctx))


# -- linear: x @ w.T + b, a whole layer in one node ------------------------
# Fused because every nn.Linear needs it: one node instead of three
# (transpose, matmul, add), and the transposed weight is never copied.
# Inputs of more than 2 dimensions are multiplied as one (rows, features)
# matrix: np.matmul of a 3-D array runs one product per leading index
# (measured: (32, 16, 32) @ (32, 96) 155 us, the same rows as 2-D 76 us).
def linear_forward(x, w, b=None):
    out = np.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
    if b is not None:
        out += b
    return out


def linear_backward(needs, g, out, x, w, b=None):
    rows_g = g.reshape(-1, g.shape[-1])          # (batch, out_features)
    rows_x = x.reshape(-1, x.shape[-1])          # (batch, in_features)
    gx = np.matmul(rows_g, w).reshape(x.shape) if needs[0] else None
    gw = rows_g.T @ rows_x if needs[1] else None
    if b is None:
        return gx, gw
    gb = rows_g.sum(axis=0) if needs[2] else None
    return gx, gw, gb


def linear(x, weight, bias=None):
    x, weight = _operand(x, "linear"), _operand(weight, "linear")
    bias = None if bias is None else _operand(bias, "linear")
    _check_linear_operands(x, weight, bias)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return apply(LINEAR, inputs)


def _check_linear_operands(x, w, b):
    for name, t in (("input", x), ("weight", w), ("bias", b)):
        if t is not None and not isinstance(t, TensorBase):
            raise TypeError("linear: %s must be a tensor, got %s" % (name, type(t).__name__))
    check_linear(x.shape, w.shape, None if b is None else b.shape,
                 [t.dtype for t in (x, w, b) if t is not None])


def check_linear(sx, sw, sb, dtypes):
    """Shapes of input, weight and bias (None: no bias) and their dtypes."""
    if len(sw) != 2:
        raise ValueError("linear: weight must be 2-D (out_features, in_features), got shape %s"
                         % (tuple(sw),))
    if len(sx) == 0 or sx[-1] != sw[1]:
        raise ValueError("linear: input of shape %s does not fit weight of shape %s: expected "
                         "%d features in the last dimension" % (tuple(sx), tuple(sw), sw[1]))
    if sb is not None and tuple(sb) != (sw[0],):
        raise ValueError("linear: bias of shape %s does not fit weight of shape %s: expected "
                         "shape (%d,)" % (tuple(sb), tuple(sw), sw[0]))
    if len(set(dtypes)) > 1:
        raise TypeError(
            "linear: input, weight and bias have different dtypes (%s); convert the input "
            "(for example x.float()), or call fg.set_default_dtype(np.float64) before "
            "building the model" % ", ".join(str(d) for d in dtypes))


# -- cross_entropy: mean/sum/none of -log softmax(z)[target], rows of z ----
# Fused because log-softmax followed by picking the target is the common
# classification loss: the backward is simply softmax(z) - onehot(target).
def _log_softmax_rows(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy_forward(z, target, reduction):
    losses = -_log_softmax_rows(z)[np.arange(len(target)), target]
    if reduction == "mean":
        return np.asarray(losses.mean(), dtype=z.dtype)
    if reduction == "sum":
        return np.asarray(losses.sum(), dtype=z.dtype)
    return losses


def cross_entropy_backward(needs, g, out, z, target, reduction):
    gz = np.exp(_log_softmax_rows(z))
    gz[np.arange(len(target)), target] -= 1
    if reduction == "mean":
        gz *= g / len(target)
    elif reduction == "sum":
        gz *= g
    else:
        gz *= g[:, None]
    return (gz,)


def cross_entropy(logits, target, reduction="mean"):
    logits = _operand(logits, "cross_entropy")
    target = check_cross_entropy(logits.shape, target, reduction)
    return apply(CROSS_ENTROPY, (logits,), (target, reduction))


def check_cross_entropy(shape, target, reduction):
    """The class targets as an int64 array, after checking them against `shape`."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError("cross_entropy: reduction must be 'mean', 'sum' or 'none', got %r"
                         % (reduction,))
    target = np.asarray(_value(target))
    if len(shape) != 2:
        raise ValueError("cross_entropy: logits must be 2-D (batch, classes), got shape %s"
                         % (tuple(shape),))
    if target.dtype.kind not in "iu":
        raise TypeError("cross_entropy: class targets must be integers, got dtype %s"
                        % target.dtype)
    if target.shape != (shape[0],):
        raise ValueError("cross_entropy: logits of shape %s need targets of shape (%d,), got %s"
                         % (tuple(shape), shape[0], target.shape))
    if shape[0] == 0:
        raise ValueError("cross_entropy: empty batch (logits of shape %s)" % (tuple(shape),))
    if target.min() < 0 or target.max() >= shape[1]:
        bad = (target < 0) | (target >= shape[1])
        raise IndexError("cross_entropy: target %d is out of range for %d classes"
                         % (target[bad][0], shape[1]))
    return np.ascontiguousarray(target, dtype=np.int64)


# -- clone: a copy that gradients flow through ----------------------------
def clone_forward(a):
    return np.array(a, copy=True)


def clone_backward(needs, g, out, a):
    return (g,)


def clone(x):
    return _unary(CLONE, x)


# -- layer_norm: (x - mean) / sqrt(var + eps) over the last k axes ----------
# The variance is the biased one, of the centred values (not E[x^2] - E[x]^2,
# which cancels catastrophically when the mean is large).  Weight and bias are
# separate ops (a broadcast mul and add).  The backward reads the input and
# recomputes the row statistics: dx = rstd (g - mean(g) - xhat mean(g xhat)).
def _layer_norm_stats(a, k, eps):
    axes = tuple(range(a.ndim - k, a.ndim))
    centred = a - np.mean(a, axis=axes, keepdims=True)
    rstd = 1 / np.sqrt(np.mean(centred * centred, axis=axes, keepdims=True) + eps)
    return axes, centred, rstd


def layer_norm_forward(a, k, eps):
    if a.size == 0:
        return np.zeros_like(a)
    _, centred, rstd = _layer_norm_stats(a, k, eps)
    return centred * rstd + 0.0         # + 0: a centred -0.0 gives +0.0, as in PyTorch


def layer_norm_backward(needs, g, out, a, k, eps):
    if a.size == 0:
        return (np.zeros_like(a),)
    axes, centred, rstd = _layer_norm_stats(a, k, eps)
    xhat = centred * rstd
    mg = np.mean(g, axis=axes, keepdims=True)
    mgx = np.mean(g * xhat, axis=axes, keepdims=True)
    return (rstd * (g - mg - xhat * mgx),)


def layer_norm(x, k, eps=1e-5):
    """Normalise x over its last k axes (weight and bias: separate ops)."""
    x = _operand(x, "layer_norm")
    if not isinstance(x, TensorBase):
        raise TypeError("layer_norm: expected a tensor, got %s" % type(x).__name__)
    k, eps = check_layer_norm(x.shape, x.dtype, k, eps)
    return apply(LAYER_NORM, (x,), (k, eps))


def check_layer_norm(shape, dtype, k, eps):
    """(k, eps) checked against a tensor's shape and dtype: float, at least k >= 1 axes."""
    if dtype.kind != "f":
        raise TypeError("layer_norm: expected a float tensor, got dtype %s" % dtype)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) \
            or not 1 <= k <= len(shape):
        raise ValueError("layer_norm: cannot normalise the last %r axes of a tensor of shape %s"
                         % (k, tuple(shape)))
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer,
                                                                  np.floating)):
        raise TypeError("layer_norm: eps must be a number, got %r" % (eps,))
    return int(k), float(eps)


# -- var and std over axes, with PyTorch's gradients -------------------------
# A composition (x - mean, squared, summed) would send the gradient back
# through the mean too: that term sums (x - mean), 0 in exact arithmetic, but
# NaN as soon as one input is infinite, making every gradient NaN.  PyTorch's
# rule is 2 (x - mean) / dof alone, and for std that over 2 std, taken as 0
# where std is 0 (not 0 / 0).  dof = count - correction; dof <= 0 gives NaN.
# Integer inputs are taken as float64 (as mean does).
def _spread_stats(a, axis, correction):
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    n = a.size if axis is None else int(np.prod([a.shape[d] for d in axis]))
    dof = n - correction
    scale = a.dtype.type(1.0 / dof if dof > 0 else np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        centred = a - np.sum(a, axis=axis, keepdims=True) / a.dtype.type(n)
        v = np.sum(centred * centred, axis=axis, keepdims=True) * scale
    return centred, v, scale


def _unkeep(v, axis, keepdims):
    if keepdims:
        return v
    return v.reshape(()) if axis is None else np.squeeze(v, axis=axis)


def var_forward(a, axis, keepdims, correction):
    return _unkeep(_spread_stats(a, axis, correction)[1], axis, keepdims)


def var_backward(needs, g, out, a, axis, keepdims, correction):
    centred, _, scale = _spread_stats(a, axis, correction)
    return (_keep(g, a.ndim, axis, keepdims) * centred * (2 * scale),)


def var(x, axis=None, keepdims=False, correction=1):
    x = _operand(x, "var")
    return apply(VAR, (x,), check_spread("var", x, axis, keepdims, correction))


def std_forward(a, axis, keepdims, correction):
    return _unkeep(np.sqrt(_spread_stats(a, axis, correction)[1]), axis, keepdims)


def std_backward(needs, g, out, a, axis, keepdims, correction):
    centred, _, scale = _spread_stats(a, axis, correction)
    s = _keep(out, a.ndim, axis, keepdims)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(s == 0, np.zeros((), s.dtype), _keep(g, a.ndim, axis, keepdims) / s)
    return (w * centred * scale,)


def std(x, axis=None, keepdims=False, correction=1):
    x = _operand(x, "std")
    return apply(STD, (x,), check_spread("std", x, axis, keepdims, correction))


def check_spread(name, x, axis, keepdims, correction):
    """var / std's parameters (axes, keepdims, correction), checked (x: the operand)."""
    if not hasattr(x, "shape"):
        raise TypeError("%s: expected a tensor, got %s" % (name, type(x).__name__))
    if isinstance(correction, (bool, np.bool_)) or not isinstance(
            correction, (int, float, np.integer, np.floating)):
        raise TypeError("%s: correction must be a number, got %r" % (name, correction))
    return normalize_axes(name, x.shape, axis), bool(keepdims), correction


# -- norm: the 2-norm over axes, sqrt(sum(x^2)) -------------------------------
# One node, for its gradient x / norm, taken as 0 where the norm is 0 (as
# PyTorch; the composition would give 0 * inf there).
def norm_forward(a, axis, keepdims):
    with np.errstate(over="ignore", invalid="ignore"):      # inf, as the sum of squares
        return _unkeep(np.sqrt(np.sum(a * a, axis=axis, keepdims=True)), axis, keepdims)


def norm_backward(needs, g, out, a, axis, keepdims):
    s = _keep(out, a.ndim, axis, keepdims)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(s == 0, np.zeros((), s.dtype), _keep(g, a.ndim, axis, keepdims) / s)
    return (w * a,)


def norm(x, axis=None, keepdims=False):
    """The 2-norm of a float tensor over axes (None: all of it)."""
    x = _operand(x, "norm")
    return apply(NORM, (x,), check_norm(x, axis, keepdims))


def check_norm(x, axis, keepdims):
    if not hasattr(x, "shape"):
        raise TypeError("norm: expected a tensor, got %s" % type(x).__name__)
    if x.dtype.kind != "f":
        raise TypeError("norm: expected a float tensor, got dtype %s" % x.dtype)
    return normalize_axes("norm", x.shape, axis), bool(keepdims)


def detach(x):
    """A new leaf sharing x's values and version counter, cut off from the graph."""
    return _alias(from_array(x._value), x)


def alias(t, base):
    """Make t (which shares base's memory) share base's version counter too (copy.copy)."""
    _alias(t, base)
    return t


FORWARD = (
    None, add_forward, sub_forward, mul_forward, div_forward, neg_forward, pow_forward,
    matmul_forward, exp_forward, log_forward, sqrt_forward, abs_forward, sin_forward,
    cos_forward, tanh_forward, sigmoid_forward, relu_forward, leaky_relu_forward,
    clip_forward, sum_forward, max_forward, min_forward, logsumexp_forward,
    reshape_forward, permute_forward, expand_forward, index_forward, cat_forward,
    where_forward, maximum_forward, minimum_forward, cast_forward, function_forward,
    linear_forward, cross_entropy_forward, clone_forward, gelu_forward,
    silu_forward, gather_forward, softmax_forward,
    log_softmax_forward, layer_norm_forward, var_forward, std_forward, norm_forward,
)
BACKWARD = (
    None, add_backward, sub_backward, mul_backward, div_backward, neg_backward, pow_backward,
    matmul_backward, exp_backward, log_backward, sqrt_backward, abs_backward, sin_backward,
    cos_backward, tanh_backward, sigmoid_backward, relu_backward, leaky_relu_backward,
    clip_backward, sum_backward, max_backward, min_backward, logsumexp_backward,
    reshape_backward, permute_backward, expand_backward, index_backward, cat_backward,
    where_backward, maximum_backward, minimum_backward, cast_backward, function_backward,
    linear_backward, cross_entropy_backward, clone_backward, gelu_backward,
    silu_backward, gather_backward, softmax_backward,
    log_softmax_backward, layer_norm_backward, var_backward, std_backward, norm_backward,
)


# ---------------------------------------------------------------------------
# The backward sweep
# ---------------------------------------------------------------------------

def topological_order(roots, data_nodes=False):
    """Nodes that need a gradient, reachable from `roots`, consumers first.

    With `data_nodes`, also the nodes computed from data alone that fg.compile
    recorded (they need no gradient, but a replay recomputes them).

    Depth-first with an explicit stack (no recursion limit).  A node is
    emitted only after all of its inputs, so the reversed emission order puts
    every node before its inputs.  A node may sit on the stack twice (two
    consumers pushed it); it is expanded once, when first found on top.
    """
    order, state = [], {}          # id -> 1 while expanding, 2 when emitted
    stack = list(roots)
    while stack:
        node = stack[-1]
        mark = state.get(id(node))
        if mark is None:
            state[id(node)] = 1
            for x in node._inputs:
                if isinstance(x, TensorBase) and (x._requires_grad or (data_nodes and
                                                  x._op != LEAF)) and id(x) not in state:
                    stack.append(x)
        else:
            stack.pop()
            if mark == 1:
                state[id(node)] = 2
                order.append(node)
    order.reverse()
    return order


def check_node(node):
    """The door every node passes before a rule reads it (backward and replay).

    Its tensor inputs still have the shape and dtype they were recorded with,
    and the values its rule reads were not changed in place since.
    """
    check_layouts(node, "backward")
    saves = SAVES[node._op]
    for i, x in enumerate(node._inputs):
        if str(i) in saves and isinstance(x, TensorBase) and \
                _owner(x)._version != node._versions[i]:
            raise _stale(node, "input %d (shape %s)" % (i, tuple(x.shape)), _owner(x)._version,
                         node._versions[i])
    if "o" in saves and _owner(node)._version != 0:
        raise _stale(node, "its output (shape %s)" % (tuple(node.shape),),
                     _owner(node)._version, 0)
    check_targets(node)


def check_layouts(node, tool):
    """Every tensor input has the shape and dtype it was recorded with."""
    for i, x in enumerate(node._inputs):
        if isinstance(x, TensorBase) and x._layout != node._layouts[i]:
            raise relaid_error(tool, i, _op_name(node), x.shape, x.dtype,
                               x._value.flags.c_contiguous)


def relaid_error(tool, i, name, shape, dtype, contiguous):
    """The error of check_layouts, the same words on both cores."""
    return RuntimeError(
        "%s: input %d of '%s' was given values of another shape, dtype or layout "
        "through .data after the graph was recorded (it now has shape %s, dtype %s%s); %s"
        % (tool, i, name, tuple(shape), dtype, "" if contiguous else ", not contiguous",
           "call fg.compile again" if tool == "compile" else "run the forward pass again"))


def check_targets(node):
    """cross_entropy keeps the caller's class targets: they must still fit the logits."""
    if node._op == CROSS_ENTROPY:
        check_cross_entropy(node._inputs[0].shape, node._params[0], node._params[1])


def _stale(node, what, now, then):
    return RuntimeError(
        "backward: %s of '%s' was modified in place after the graph was built "
        "(version %d, expected %d); use an out-of-place operation or clone() the tensor "
        "before changing it" % (what, _op_name(node), now, then))


def sweep(roots, root_grads, retain_graph=False, capture=None):
    """The reverse sweep from `roots`, seeded with `root_grads` (arrays).

    Without `capture`, gradients accumulate into `.grad` of leaves (and of
    tensors that called retain_grad()).  With `capture` (a list of tensors)
    nothing is written; the gradients of those tensors are returned.
    All checks run before any gradient is computed, and `.grad` is written
    only once the whole sweep succeeded: a failing backward changes nothing.
    """
    with _sweep_lock:
        order = topological_order(roots)
        for node in order:
            _check_released(node)
            if node._op != LEAF:
                check_node(node)
        return _sweep_ordered(order, roots, root_grads, retain_graph, capture)


def _sweep_ordered(order, roots, root_grads, retain_graph, capture):
    """The sweep itself, over nodes already ordered and checked (a Tape's replay
    skips the version checks: it recomputed every node from its inputs' current values)."""
    grads = {}
    for root, g in zip(roots, root_grads):
        grads[root] = grads[root] + g if root in grads else g
    wanted = None if capture is None else {id(t): i for i, t in enumerate(capture)}
    found = [None] * (0 if capture is None else len(capture))
    finals = []                      # (tensor, gradient) written to .grad at the end
    # -- post-accumulate-grad hooks (grad_hooks.py); `due` stays None without any:
    # {id(node): the hooked leaves final once the nodes before `node` ran; None: at the end}
    due = _hooks_schedule(order) if HOOKS.hooks and capture is None else None
    hooked = None                    # this sweep's early writes, undone if it fails
    try:
        for node in order:
            if due is not None and id(node) in due:
                hooked = _hooks_due(hooked, due.pop(id(node)), grads)
            g = grads.pop(node, None)
            if g is None:
                continue
            if wanted is not None:
                if id(node) in wanted:
                    found[wanted[id(node)]] = g
            elif node._op == LEAF or node._retains_grad:
                if due is not None and node._op == LEAF and id(node) in HOOKS.hooks:
                    hooked = HOOKS.leaf_final(hooked, node, _accumulate_grad, node, g)
                    continue
                finals.append((node, g))
            if node._op == LEAF:
                continue
            values = [_value(x) for x in node._inputs]
            needs = [isinstance(x, TensorBase) and x._requires_grad for x in node._inputs]
            in_grads = BACKWARD[node._op](needs, g, node._value, *values, *node._params)
            for x, need, gx in zip(node._inputs, needs, in_grads):
                if not need or gx is None:
                    continue
                gx = unbroadcast(np.asarray(gx), x.shape).astype(x.dtype, copy=False)
                grads[x] = grads[x] + gx if x in grads else gx
        if due is not None:
            if None in due:
                hooked = _hooks_due(hooked, due.pop(None), grads)
            if hooked is not None:
                HOOKS.finish(hooked)
    except BaseException as error:
        if hooked is not None:
            HOOKS.abort(hooked, error)
        raise
    # -- end of the hooks' part ------------------------------------------------------
    for t, g in finals:
        _accumulate_grad(t, g)
    if not retain_graph:
        keep = _keeps_structure(order)
        for node in order:
            if node._op != LEAF:
                _release(node, keep)
    return found if capture is not None else None


# A graph this small keeps its structure after backward (its inputs, not its
# gradients), so fg.explain / fg.draw_graph can still show that sweep: the
# lectures' graphs are a few scalars, and a learner calls backward() first.
# Anything bigger is freed at once, as PyTorch frees it.
KEEP_NODES = 64
KEEP_ELEMENTS = 4096


def _keeps_structure(order):
    if len(order) > KEEP_NODES:
        return False
    total = 0
    for node in order:
        total += node._value.size
    return total <= KEEP_ELEMENTS


def _check_released(node):
    if node._released:
        raise RuntimeError(
            "backward: the graph of '%s' was already freed by an earlier backward(); "
            "pass retain_graph=True to the first backward() to go through it twice"
            % _op_name(node))


def _release(node, keep_structure=False):
    if not keep_structure:
        node._inputs = ()
        node._params = ()
    node._released = True


def _accumulate_grad(t, g):
    """t.grad += g: in place, as PyTorch accumulates, where .grad's memory allows it.

    Never fails once the sweep has succeeded (so no leaf is left half
    updated): a .grad over read-only memory, or one rebound through
    `.grad.data` to another dtype or shape, is replaced by a new tensor.
    """
    old = t._grad
    if old is None:
        t._grad = from_array(np.array(g, dtype=t.dtype, copy=True))
    elif old._value.flags.writeable and old._value.dtype == t.dtype \
            and old._value.shape == t.shape:
        old._value += g
    else:
        t._grad = from_array((np.asarray(old._value, dtype=t.dtype) + g).astype(t.dtype))


# -- post-accumulate-grad hooks (grad_hooks.py) ------------------------------------

def _hooks_schedule(order):
    n = len(order)
    return {id(order[p]) if p < n else None: leaves for p, leaves in HOOKS.schedule(order)}


def _hooks_due(hooked, leaves, grads):
    """The hooked leaves whose last consumer just ran: write their .grad, run their hooks."""
    for t in leaves:
        g = grads.pop(t, None)
        if g is not None:
            hooked = HOOKS.leaf_final(hooked, t, _accumulate_grad, t, g)
    return hooked


def _grad_snapshot(t):
    old = t._grad
    if old is None:
        return t, None, None, None
    # The values too: the sweep adds into old's array in place.
    return t, old, old._value, old._value.copy()


def _grad_restore(record):
    t, old, values, saved = record
    t._grad = old
    if old is not None and values.flags.writeable:
        values[...] = saved


HOOKS = grad_hooks.Registry(_grad_snapshot, _grad_restore, lambda node: node._inputs,
                            lambda node: node._op == LEAF,
                            lambda x: isinstance(x, TensorBase), set_grad_enabled)


def register_post_accumulate_grad_hook(t, hook):
    """Call hook(t) in each backward() as soon as leaf t's .grad holds that sweep's
    gradient (before the sweep ends); returns a handle whose remove() takes it off.

    Hooks of one tensor run in the order they were registered, with recording
    off.  A backward that raises after a hook ran still leaves every .grad as
    it was (grad_hooks.py).  fg.grad() runs no hooks: it writes no .grad.
    """
    if not isinstance(t, TensorBase):
        raise TypeError("register_post_accumulate_grad_hook: expected a Tensor, got %s"
                        % type(t).__name__)
    if t._op != LEAF:
        raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor (one "
                           "without grad_fn) can have this hook; this one was computed by '%s'"
                           % _op_name(t))
    if not t._requires_grad:
        raise RuntimeError("register_post_accumulate_grad_hook: this tensor does not require "
                           "grad, so no backward ever gives it a gradient")
    return HOOKS.register(t, hook)


def queue_callback(fn):
    """From a post-accumulate-grad hook: call fn(error) once the running backward's
    nodes are all done.  error is None on success, and fn then runs before the
    other leaves' .grad are written, so raising fails the backward (and undoes
    its early writes); or it is the exception the backward raised."""
    HOOKS.queue_callback(fn)


def _seed(root, gradient):
    if not isinstance(root, TensorBase):
        raise TypeError("backward: expected a Tensor, got %s" % type(root).__name__)
    if not root._requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad and has no grad_fn; create the "
            "inputs with requires_grad=True (or call requires_grad_()) before the forward pass")
    if gradient is None:
        if root._value.size != 1:
            raise RuntimeError(
                "backward: grad can be implicitly created only for scalar outputs, but this "
                "tensor has shape %s; pass gradient= with that shape" % (tuple(root.shape),))
        return np.ones(root.shape, dtype=root.dtype)
    g = np.asarray(_value(gradient))
    if g.shape != root.shape:
        raise RuntimeError("backward: gradient has shape %s but the tensor has shape %s"
                           % (g.shape, tuple(root.shape)))
    return g.astype(root.dtype, copy=False)


def backward(root, gradient=None, retain_graph=False):
    g = _seed(root, gradient)
    sweep([root], [g], retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=False):
    """Gradients of `outputs` with respect to `inputs`, as arrays (or None)."""
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    for o in outputs:
        if not isinstance(o, TensorBase):
            raise TypeError("grad: expected tensors as outputs, got %s" % type(o).__name__)
    seeds = [_seed(o, g) for o, g in zip(outputs, grad_outputs)]
    for t in inputs:
        if not isinstance(t, TensorBase) or not t._requires_grad:
            raise RuntimeError("grad: every input must be a tensor that requires grad")
    return _repeat_captured(inputs, sweep(list(outputs), seeds, retain_graph,
                                          capture=_distinct(inputs)))


def _distinct(tensors):
    """The tensors without repeats, in order of first appearance."""
    return list({id(t): t for t in tensors}.values())


def _repeat_captured(inputs, found):
    """One gradient per entry of `inputs`: a tensor listed twice gets its gradient twice."""
    by_id = {id(t): g for t, g in zip(_distinct(inputs), found)}
    out, seen = [], set()
    for t in inputs:
        g = by_id[id(t)]
        if id(t) in seen and g is not None:
            g = g.copy()           # each returned gradient owns its memory
        seen.add(id(t))
        out.append(g)
    return out


# ---------------------------------------------------------------------------
# Replaying a recorded graph (fg.compile)
# ---------------------------------------------------------------------------

class Tape:
    """A recorded graph, replayed.

    Most training steps build the same graph every time.  A Tape keeps the
    graph of `root` (its nodes in topological order) and replays it:
    forward() recomputes every node, in place, from the current values of
    the leaves; backward() sweeps it again, keeping the graph.  What was
    computed from data alone is replayed too (apply records it while
    fg.compile records); only values outside any op (Python numbers, integer
    and bool results such as comparisons) are constants of the tape.
    """

    def __init__(self, root):
        _check_tape_root(root)
        self.root = root
        self._order = topological_order([root], True)     # consumers first

    def forward(self):
        # Under the sweep lock: another thread's replay or sweep of the same
        # tape reads the nodes' values.
        with _sweep_lock:
            for node in reversed(self._order):        # inputs before their consumers
                if node._op != LEAF:
                    _check_released(node)
                    check_layouts(node, "compile")
                    check_targets(node)
                    values = [_value(x) for x in node._inputs]
                    node._value = replay_values(node, FORWARD[node._op](*values, *node._params))
        return self.root

    def backward(self):
        seed = _seed(self.root, None)
        with _sweep_lock:
            _sweep_ordered(self._order, [self.root], [seed], True, None)


def replay_values(node, result):
    """A replayed node's new values, checked against the recorded shape and dtype.

    Rebound, not copied into: a view's values are a fresh view of its input
    (an expanded view is read-only, and a copy would lose the aliasing).
    Same input layouts give the same output layout, except for a user's
    Function, whose forward may return anything.
    """
    result = np.asarray(result)
    if result.shape != node.shape or result.dtype != node.dtype:
        raise RuntimeError(
            "compile: '%s' gave values of shape %s and dtype %s on replay, but was recorded "
            "with shape %s and dtype %s; call fg.compile again"
            % (node.grad_fn, result.shape, result.dtype, tuple(node.shape), node.dtype))
    return result


def _check_tape_root(root):
    if not isinstance(root, TensorBase) or not root._requires_grad or root._op == LEAF \
            or root._value.size != 1:
        raise ValueError("compile: the function must return a scalar tensor computed from "
                         "tensors that require grad, got %r" % (root,))
