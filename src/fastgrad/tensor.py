"""fastgrad.Tensor and the functions that create and combine tensors.

`Tensor` subclasses the chosen core's `TensorBase`, which holds the values,
the autograd node, the operators and the elementwise methods (so `y * 0.9`
and `y.tanh()` go straight into the core).  What is here is the convenience
surface: argument aliases (`dim=`/`axis=`), composite ops built from the
core's primitives (mean, var, softmax, ...), conversions and creation.
Composites live here once and therefore behave identically on both cores.
"""
import builtins
import copy
import math

import numpy as np

from ._core import core
from . import _interop

# ---------------------------------------------------------------------------
# Global state: default dtype and the random generator
# ---------------------------------------------------------------------------
_default_dtype = np.dtype(np.float32)
_generator = np.random.default_rng()


def set_default_dtype(dtype):
    """Set the dtype of tensors made from Python floats (float32 or float64)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError("set_default_dtype: only float32 and float64 are supported, got %s" % dtype)
    _default_dtype = dtype


def get_default_dtype():
    return _default_dtype.type


def manual_seed(seed):
    """Seed fastgrad's global generator (factories, init, dropout, shuffling)."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def get_rng_state():
    """The state of fastgrad's global generator (a dict; give it to set_rng_state)."""
    return _generator.bit_generator.state


def set_rng_state(state):
    """Put fastgrad's global generator back into a state from get_rng_state()."""
    if not isinstance(state, dict) or "bit_generator" not in state:
        raise TypeError("set_rng_state: expected a state from fg.get_rng_state(), got %s"
                        % type(state).__name__)
    generator = np.random.default_rng()
    try:
        generator.bit_generator.state = state      # checked on a fresh one: nothing half-set
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError("set_rng_state: not a state of this generator (%s)" % exc) from None
    _generator.bit_generator.state = state


def default_generator():
    """The global numpy Generator that fastgrad's random functions draw from."""
    return _generator


def _axis(axis, dim, name=None):
    if dim is not None:
        if axis is not None:
            raise TypeError("%spass either axis= or dim=, not both (got axis=%r and dim=%r)"
                            % ("" if name is None else name + ": ", axis, dim))
        return dim
    return axis


def _keep(keepdims, keepdim):
    return bool(keepdims or keepdim)


def _dtype(name, dtype):
    """`dtype` as a NumPy dtype a tensor can hold, or a TypeError naming `name`."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError("%s: %r is not a dtype (use for example np.float32, np.float64, "
                        "np.int64 or bool)" % (name, dtype)) from None
    # an empty array of that dtype goes through the same check as data does
    return core.check_array(name, np.empty(0, dtype=dt)).dtype


def _to_array(data, dtype=None):
    """The array `fg.tensor(data, dtype)` holds (always a fresh copy)."""
    if isinstance(data, core.TensorBase):
        data = data.data
    elif data is None:
        raise TypeError("tensor: expected a number, a (nested) list or an array, got None")
    if dtype is not None:
        dtype = _dtype("tensor", dtype)
        if isinstance(data, np.ndarray):
            core.check_array("tensor", data)
        return np.array(data, dtype=dtype, copy=True)
    try:
        arr = np.array(data, copy=True)
    except ValueError as exc:                  # ragged nested lists
        raise ValueError("tensor: cannot make a tensor from this data: %s" % exc) from None
    arr = core.check_array("tensor", arr)
    if arr.dtype.kind == "f":
        # an array's own float dtype is kept (float32 or float64, after check_array);
        # Python floats and lists get the default
        if isinstance(data, (np.ndarray, np.generic)):
            return arr
        return arr.astype(_default_dtype)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return arr


_core_data = core.TensorBase.data


class Tensor(core.TensorBase):
    """An n-dimensional array of numbers that records how it was computed."""

    # -- among other array libraries (see _interop.py) ---------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # np.exp(t), and `ndarray * tensor`: fastgrad's op, differentiable
        return _interop.array_ufunc(ufunc, method, inputs, kwargs)

    def __dlpack__(self, *, stream=None, **kwargs):
        if stream is not None:
            raise BufferError("__dlpack__: fastgrad tensors live on the CPU; stream must be None")
        if self.requires_grad:      # as PyTorch: the other library would bypass autograd
            raise RuntimeError("__dlpack__: cannot export a tensor that requires grad; export "
                               "t.detach() instead")
        return self.numpy().__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.numpy().__dlpack_device__()

    def __init__(self, data, dtype=None, requires_grad=False):
        arr = _to_array(data, dtype)
        _check_requires_grad(arr, requires_grad)
        self._init_leaf(arr, requires_grad)

    # `t.data = array` goes through the same dtype check as fg.tensor; reading
    # stays the core's own getter, called without a Python frame
    def _set_data(self, value):
        if isinstance(value, np.ndarray):
            value = core.check_array("data", value)
        _core_data.__set__(self, value)

    data = property(_core_data.__get__, _set_data, doc=_core_data.__doc__)
    del _set_data

    # -- information -------------------------------------------------------
    def size(self, dim=None):
        if dim is None:
            return tuple(self.shape)
        core.check_axis_type("size", dim)
        if not -self.ndim <= int(dim) < self.ndim:
            raise IndexError("size: dimension %d is out of range for a tensor of %d dimension(s) "
                             "(shape %s)" % (int(dim), self.ndim, tuple(self.shape)))
        return self.shape[int(dim)]

    def numel(self):
        return int(math.prod(self.shape))

    def dim(self):
        return self.ndim

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def item(self):
        if self.numel() != 1:
            raise ValueError("item: only a tensor with one element can be converted to a "
                             "Python number, this one has shape %s" % (self.shape,))
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        arr = self.data
        if dtype is not None and arr.dtype != dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError("the truth value of a tensor with %d elements is ambiguous; "
                               "use .any() or .all()" % self.numel())
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        # 0-d only: NumPy treats any object with __index__ as an integer index,
        # so a one-element 1-d tensor must stay an array index there
        if self.ndim != 0 or self.dtype.kind not in "biu":
            raise TypeError("__index__: only a 0-d integer or bool tensor can be used as an "
                            "index, got a tensor of dtype %s and shape %s (use int(t) to "
                            "convert a float)" % (self.dtype, tuple(self.shape)))
        return int(self.data)

    def __format__(self, spec):
        # as PyTorch: a 0-d tensor formats as its value (f"{loss:.4f}"); so does a
        # one-element tensor given a number format
        if self.ndim == 0 or (spec and self.numel() == 1):
            return format(self.item(), spec)
        if not spec:
            return str(self)
        raise TypeError("format: only a tensor with one element formats as a number (%r), "
                        "this one has shape %s; format t.tolist() or t.numpy() instead"
                        % (spec, tuple(self.shape)))

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ["dtype=%s" % self.dtype]
        if self.grad_fn is not None:
            extra.append("grad_fn=<%s>" % self.grad_fn)
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(%s, %s)" % (body, ", ".join(extra))

    def any(self):
        return Tensor(np.any(self.data))

    def all(self):
        return Tensor(np.all(self.data))

    # -- autograd ------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    def detach(self):
        """A new leaf sharing these values (and the version counter), cut off from the graph."""
        return core.detach(self)

    def clone(self):
        """A differentiable copy."""
        return core.clone(self)

    # -- dtype conversion (differentiable: the gradient is cast back) ----------
    def to(self, dtype):
        return core.cast(self, _dtype("to", dtype))

    astype = to

    def float(self):
        return core.cast(self, np.float32)

    def double(self):
        return core.cast(self, np.float64)

    def long(self):
        return core.cast(self, np.int64)

    # -- reductions ------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return core.sum(self, _axis(axis, dim, "sum"), _keep(keepdims, keepdim))

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        axis = _axis(axis, dim, "mean")
        n = _count(self, axis, "mean")
        return core.sum(self, axis, _keep(keepdims, keepdim)) * (1.0 / n if n else math.nan)

    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return core.max(self, _axis(axis, dim, "max"), _keep(keepdims, keepdim))

    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return core.min(self, _axis(axis, dim, "min"), _keep(keepdims, keepdim))

    def var(self, axis=None, keepdims=False, *, dim=None, keepdim=False, correction=None,
            ddof=None, unbiased=None):
        return _spread(self, "var", axis, keepdims, dim, keepdim, correction, ddof, unbiased)

    def std(self, axis=None, keepdims=False, *, dim=None, keepdim=False, correction=None,
            ddof=None, unbiased=None):
        return _spread(self, "std", axis, keepdims, dim, keepdim, correction, ddof, unbiased)

    def logsumexp(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return _logsumexp(self, _axis(axis, dim, "logsumexp"), _keep(keepdims, keepdim),
                          "logsumexp")

    def softmax(self, axis=None, *, dim=None):
        return core.exp(self.log_softmax(axis, dim=dim))

    def log_softmax(self, axis=None, *, dim=None):
        axis = _axis(axis, dim, "log_softmax")
        return self - _logsumexp(self, -1 if axis is None else axis, True, "log_softmax")

    def argmax(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        axis = _one_axis("argmax", self, _axis(axis, dim, "argmax"))
        return Tensor(np.argmax(self.data, axis=axis, keepdims=_keep(keepdims, keepdim)))

    def argmin(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        axis = _one_axis("argmin", self, _axis(axis, dim, "argmin"))
        return Tensor(np.argmin(self.data, axis=axis, keepdims=_keep(keepdims, keepdim)))

    # -- elementwise with arguments --------------------------------------------
    def leaky_relu(self, negative_slope=0.01):
        return core.leaky_relu(self, _number("leaky_relu", "negative_slope", negative_slope))

    def clip(self, min=None, max=None):
        return core.clip(self, _number("clip", "min", min, True), _number("clip", "max", max, True))

    clamp = clip

    def maximum(self, other):
        return core.maximum(self, other)

    def minimum(self, other):
        return core.minimum(self, other)

    def matmul(self, other):
        return core.matmul(self, other)

    def softplus(self):
        # log(1 + e^x) = max(x, 0) + log1p(e^t) with t = min(x, -x) = -|x|, so
        # e^t <= 1 never overflows.  maximum and minimum split the gradient at
        # their tie x = 0 (1/2 + (1/2 - 1/2) * ...), where relu and abs would
        # each give 0: the gradient is sigmoid(x) everywhere, 0.5 at 0, as in
        # PyTorch.  No where() on the values: fg.compile replays every step.
        e = core.exp(core.minimum(self, -self))
        w = e + 1
        # log1p(e) without a log1p op: log(w) is off by the rounding of
        # w = 1 + e, which (w - 1) - e gives exactly; log(w) - that / w is
        # good to O(eps^2), and exactly e where w rounds to 1
        return core.maximum(self, 0.0) + (core.log(w) - ((w - 1) - e) / w)

    # -- shapes ------------------------------------------------------------------
    def reshape(self, *shape):
        return core.reshape(self, _shape_args(shape))

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        nd = builtins.max(self.ndim, 1)          # a 0-d tensor takes dims -1 and 0, as torch
        for name, d in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not _is_int(d):
                raise TypeError("flatten: %s must be an int, got %r (%s)"
                                % (name, d, type(d).__name__))
            if not -nd <= int(d) < nd:
                raise ValueError("flatten: %s %d is out of range for a tensor of %d dimension(s) "
                                 "(shape %s); expected %d to %d"
                                 % (name, d, self.ndim, tuple(self.shape), -nd, nd - 1))
        if self.ndim == 0:
            return core.reshape(self, (1,))
        start, end = int(start_dim) % self.ndim, int(end_dim) % self.ndim
        if start > end:
            raise ValueError("flatten: start_dim %d comes after end_dim %d" % (start_dim, end_dim))
        shape = self.shape[:start] + (-1,) + self.shape[end + 1:]
        if self.numel() == 0:
            shape = self.shape[:start] + (int(math.prod(self.shape[start:end + 1])),) + self.shape[end + 1:]
        return core.reshape(self, shape)

    def permute(self, *dims):
        return core.permute(self, _shape_args(dims))

    def transpose(self, dim0=None, dim1=None):
        if self.ndim < 2 and dim0 is None:
            return self
        if dim0 is None:
            dim0, dim1 = -2, -1
        nd = self.ndim
        for d in (dim0, dim1):
            if not -nd <= d < nd:
                raise ValueError("transpose: dimension %d is out of range for shape %s"
                                 % (d, tuple(self.shape)))
        axes = list(range(nd))
        axes[dim0 % nd], axes[dim1 % nd] = axes[dim1 % nd], axes[dim0 % nd]
        return core.permute(self, axes)

    @property
    def T(self):
        if self.ndim < 2:
            return self
        return core.permute(self, tuple(reversed(range(self.ndim))))

    def squeeze(self, dim=None, *, axis=None):
        dim = _axis(axis, dim)
        if dim is None:
            shape = tuple(n for n in self.shape if n != 1)
        else:
            dims = dim if isinstance(dim, (tuple, list)) else (dim,)
            nd = builtins.max(self.ndim, 1)
            for d in dims:
                if not -nd <= d < nd:
                    raise ValueError("squeeze: dimension %d is out of range for shape %s"
                                     % (d, tuple(self.shape)))
            drop = {d % nd for d in dims if self.ndim and self.shape[d % nd] == 1}
            shape = tuple(n for i, n in enumerate(self.shape) if i not in drop)
        return core.reshape(self, shape)

    def unsqueeze(self, dim):
        nd = self.ndim + 1
        if not -nd <= dim < nd:
            raise ValueError("unsqueeze: dimension %d is out of range for shape %s (expected "
                             "%d to %d)" % (dim, tuple(self.shape), -nd, nd - 1))
        dim %= nd
        return core.reshape(self, self.shape[:dim] + (1,) + self.shape[dim:])

    def expand(self, *shape):
        return core.expand(self, _shape_args(shape))

    def expand_as(self, other):
        return core.expand(self, other.shape)

    # -- in place (never on a tensor that autograd is tracking) -----------------
    def _inplace(self, name):
        if core.is_grad_enabled() and self.requires_grad:
            if self.is_leaf:
                raise RuntimeError(
                    "%s: a leaf tensor that requires grad cannot be changed in place while "
                    "gradients are recorded; do it inside `with fg.no_grad():` or through .data"
                    % name)
            raise RuntimeError(
                "%s: changing a tensor in place while autograd tracks it is not supported; "
                "use the out-of-place form (y = y + 1)" % name)
        return self.data

    def _changed(self):
        self._bump_version()
        return self

    def add_(self, other, alpha=1):
        values = self._inplace("add_")
        values += _values(other) * alpha if alpha != 1 else _values(other)
        return self._changed()

    def sub_(self, other, alpha=1):
        values = self._inplace("sub_")
        values -= _values(other) * alpha if alpha != 1 else _values(other)
        return self._changed()

    def mul_(self, other):
        values = self._inplace("mul_")
        values *= _values(other)
        return self._changed()

    def div_(self, other):
        values = self._inplace("div_")
        values /= _values(other)
        return self._changed()

    def zero_(self):
        self._inplace("zero_")[...] = 0
        return self._changed()

    def fill_(self, value):
        self._inplace("fill_")[...] = _values(value)
        return self._changed()

    def copy_(self, src):
        self._inplace("copy_")[...] = _values(src)
        return self._changed()

    def __setitem__(self, key, value):
        values = self._inplace("__setitem__")
        values[core.check_index(values, key)] = _values(value)
        self._changed()

    # `y += x` rebinds y to a new node when autograd tracks y (the common
    # `loss += term` idiom keeps working); otherwise it really is in place.
    def _augmented(self, other, name, method, out_of_place):
        if core.is_grad_enabled() and self.requires_grad and not self.is_leaf:
            return out_of_place(self, other)
        return method(self, other)

    def __iadd__(self, other):
        return self._augmented(other, "add_", Tensor.add_, core.add)

    def __isub__(self, other):
        return self._augmented(other, "sub_", Tensor.sub_, core.sub)

    def __imul__(self, other):
        return self._augmented(other, "mul_", Tensor.mul_, core.mul)

    def __itruediv__(self, other):
        return self._augmented(other, "div_", Tensor.div_, core.div)

    # -- pickling and copying --------------------------------------------------
    # PyTorch's rules.  pickle keeps the values, dtype, shape, requires_grad,
    # the class and the Python attributes, never the graph nor .grad: a
    # non-leaf comes back as a leaf.  The pickle names only `fastgrad.tensor`
    # (and the class by its module path), never a core, so it loads on
    # whichever core the receiving process runs.  The core's C fields are never
    # pickled directly (raw buffers; the compiled core opts out of Cython's
    # generated pickling).
    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor,
                (type(self), _own_values(self), self.requires_grad, _attributes(self)))

    def __copy__(self):
        # A new leaf over the same values and version counter, as torch's
        # copy.copy; the grad and the graph stay behind, the attributes are shared.
        return core.alias(_rebuild_tensor(type(self), np.asarray(self.data), self.requires_grad,
                                          _attributes(self)), self)

    def __deepcopy__(self, memo):
        return _deepcopy_leaf(self, memo, keep_grad=True)


def _values(x):
    return x.data if isinstance(x, core.TensorBase) else x


def _spread(x, name, axis, keepdims, dim, keepdim, correction, ddof, unbiased):
    """var or std as one node, with PyTorch's gradients.

    A composition (x - mean, squared, summed) would send the gradient back
    through the mean too: that term sums (x - mean), 0 in exact arithmetic,
    but NaN as soon as one input is infinite, making every gradient NaN.
    PyTorch's rule is 2 (x - mean) / dof alone, and for std that over
    2 std, taken as 0 where std is 0 (not 0 / 0).  The rule is a Function
    node (NumPy forward and backward), so fg.compile replays it.
    """
    axis = core.normalize_axes(name, x.shape, _axis(axis, dim, name))
    keep = _keep(keepdims, keepdim)
    dof = _count(x, axis, name) - _correction(correction, ddof, unbiased)
    scale = 1.0 / dof if dof > 0 else math.nan
    root = name == "std"

    class Spread:
        @staticmethod
        def forward(ctx, a):
            if a.dtype.kind != "f":
                a = a.astype(np.float64)        # as mean: integers average to float64
            centred = a - np.mean(a, axis=axis, keepdims=True)
            v = np.sum(centred * centred, axis=axis, keepdims=True) * a.dtype.type(scale)
            kept = np.sqrt(v) if root else v
            ctx.centred, ctx.kept = centred, kept
            return kept if keep else kept.reshape(np.sum(a, axis=axis).shape)

        @staticmethod
        def backward(ctx, g):
            g = np.reshape(g, ctx.kept.shape)
            if root:
                s = ctx.kept
                with np.errstate(divide="ignore", invalid="ignore"):
                    g = np.where(s == 0, np.zeros((), s.dtype), g / (2 * s))
            return g * ctx.centred * ctx.centred.dtype.type(2 * scale)

    Spread.__name__ = name
    return core.function(Spread, _SpreadCtx(), (x,))


class _SpreadCtx:
    needs_input_grad = ()


def _count(t, axis, name="mean"):
    """How many elements a reduction over `axis` takes together (the axis is checked)."""
    axes = core.normalize_axes(name, t.shape, axis)
    if axes is None:
        return t.numel() if axis is None or t.ndim else 1
    return int(math.prod(t.shape[a] for a in axes))


def _logsumexp(t, axis, keepdims, name):
    axes = core.normalize_axes(name, t.shape, axis)
    reduced = t.shape if axes is None else [t.shape[a] for a in axes]
    if 0 in reduced:
        # log of an empty sum is -inf (as torch); the core's max-shift needs an element.
        # sum() keeps the result in the graph, so backward still reaches t
        return core.sum(t, axis, keepdims) - math.inf
    return core.logsumexp(t, axis, keepdims)


def _one_axis(name, t, axis):
    """A single axis (argmax, argmin), checked; None stays None."""
    if axis is None:
        return None
    core.check_axis_type(name, axis)
    core.normalize_axes(name, t.shape, axis)
    return int(axis)


def _number(name, what, value, optional=False):
    if value is None and optional:
        return None
    if isinstance(value, core.TensorBase) and value.numel() == 1:
        return value.item()
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError("%s: %s must be a number, got %r (%s)"
                        % (name, what, value, type(value).__name__))
    return value


def _is_int(x):
    """An integer as Python indexes with it (int, NumPy integer, 0-d integer tensor), not bool."""
    if isinstance(x, (bool, np.bool_)):
        return False
    try:
        type(x).__index__(x)
    except (AttributeError, TypeError):
        return False
    return True


def _size_args(name, args):
    """The shape given to a factory as `*shape` or one tuple/list, checked."""
    shape = _shape_args(args)
    for n in shape:
        if not _is_int(n):
            raise TypeError("%s: a size must be a sequence of ints, got %r (%s in it)"
                            % (name, args[0] if len(args) == 1 else args, type(n).__name__))
    shape = tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise ValueError("%s: sizes must be non-negative, got %s" % (name, shape))
    return shape


def _correction(correction, ddof, unbiased):
    given = [v for v in (correction, ddof) if v is not None]
    if len(given) > 1:
        raise TypeError("var: pass either correction= or ddof=, not both")
    if given:
        return given[0]
    if unbiased is not None:
        return 1 if unbiased else 0
    return 1


def _shape_args(args):
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def _check_requires_grad(arr, requires_grad):
    if requires_grad and arr.dtype.kind != "f":
        raise RuntimeError("tensor: only floating point tensors can require grad, got dtype %s"
                           % arr.dtype)


core.set_tensor_class(Tensor)


def _t(x):
    return x if isinstance(x, core.TensorBase) else tensor(x)


# ---------------------------------------------------------------------------
# Creation
# ---------------------------------------------------------------------------

def tensor(data, dtype=None, requires_grad=False):
    """A new tensor holding a copy of `data` (a number, nested list or array)."""
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def from_numpy(array):
    """A tensor that shares memory with `array`.

    The array's dtype is kept (float32, float64, any integer or bool, as
    torch.from_numpy).  An array in non-native byte order is converted to
    native order first, which copies it: the cores compute in native order.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError("from_numpy: expected an ndarray, got %s" % type(array).__name__)
    return core.from_array(core.check_array("from_numpy", array))


def _factory_dtype(name, dtype):
    return _default_dtype if dtype is None else _dtype(name, dtype)


def _filled(name, shape, value, dtype, requires_grad):
    arr = np.full(_size_args(name, shape), value, dtype=_factory_dtype(name, dtype))
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def zeros(*shape, dtype=None, requires_grad=False):
    return _filled("zeros", shape, 0, dtype, requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    return _filled("ones", shape, 1, dtype, requires_grad)


def empty(*shape, dtype=None, requires_grad=False):
    return _filled("empty", shape, 0, dtype, requires_grad)


def full(shape, fill_value, dtype=None, requires_grad=False):
    if isinstance(fill_value, core.TensorBase) and fill_value.numel() == 1:
        fill_value = fill_value.item()
    if isinstance(fill_value, (bool, np.bool_)):
        dtype = np.bool_ if dtype is None else dtype
    elif isinstance(fill_value, (int, np.integer)):
        dtype = np.int64 if dtype is None else dtype
    elif not isinstance(fill_value, (float, np.floating)):
        raise TypeError("full: fill_value must be a number, got %r (%s)"
                        % (fill_value, type(fill_value).__name__))
    return _filled("full", (shape,), fill_value, dtype, requires_grad)


def _like(name, t, value, dtype, requires_grad):
    if not isinstance(t, (core.TensorBase, np.ndarray)):
        raise TypeError("%s: expected a tensor or an ndarray, got %s" % (name, type(t).__name__))
    dtype = np.asarray(t).dtype if dtype is None else dtype
    return _filled(name, (tuple(t.shape),), value, dtype, requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return _like("zeros_like", t, 0, dtype, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return _like("ones_like", t, 1, dtype, requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    for what, v in (("start", start), ("end", end), ("step", step)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                                  np.floating)):
            raise TypeError("arange: %s must be a number, got %r (%s)"
                            % (what, v, type(v).__name__))
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        integral = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if integral else _default_dtype
    arr = np.arange(start, end, step, dtype=_dtype("arange", dtype))
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False):
    size = _size_args("eye", (n,) if m is None else (n, m))
    arr = np.eye(*size, dtype=_factory_dtype("eye", dtype))
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def _float_dtype(name, dtype):
    dtype = _factory_dtype(name, dtype)
    if dtype.kind != "f":
        raise TypeError("%s: the dtype must be float32 or float64, got %s" % (name, dtype))
    return dtype


def randn(*shape, dtype=None, requires_grad=False):
    dtype = _float_dtype("randn", dtype)
    arr = _generator.standard_normal(_size_args("randn", shape)).astype(dtype)
    return core.from_array(arr, requires_grad)


def rand(*shape, dtype=None, requires_grad=False):
    dtype = _float_dtype("rand", dtype)
    arr = _generator.random(_size_args("rand", shape)).astype(dtype)
    return core.from_array(arr, requires_grad)


def randint(low, high=None, size=(), dtype=np.int64):
    if high is None:
        low, high = 0, low
    for what, v in (("low", low), ("high", high)):
        if not _is_int(v):
            raise TypeError("randint: %s must be an int, got %r (%s)"
                            % (what, v, type(v).__name__))
    size = _size_args("randint", (size,))
    return core.from_array(_generator.integers(low, high, size=size).astype(
        _dtype("randint", dtype)))


# ---------------------------------------------------------------------------
# Functions: fg.f(t, ...) spellings of the methods
# ---------------------------------------------------------------------------
# The elementwise ones are the core's own functions (no extra Python frame).
exp = core.exp
log = core.log
sqrt = core.sqrt
abs = core.abs
sin = core.sin
cos = core.cos
tanh = core.tanh
sigmoid = core.sigmoid
relu = core.relu
matmul = core.matmul
maximum = core.maximum
minimum = core.minimum


def where(condition, input, other):
    """input where condition holds, else other (broadcast; only input and other get gradients)."""
    if isinstance(condition, core.TensorBase):
        cond = condition.data
    elif isinstance(condition, (np.ndarray, list, tuple, bool, np.bool_)):
        cond = np.asarray(condition)
    else:
        raise TypeError("where: condition must be a bool tensor or array, got %s"
                        % type(condition).__name__)
    if cond.dtype.kind not in "biu":
        raise TypeError("where: condition must be bool (or integer), got dtype %s" % cond.dtype)
    return core.where(cond, _where_operand("input", input), _where_operand("other", other))


def _where_operand(what, x):
    if isinstance(x, (core.TensorBase, bool, int, float, np.number)):
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        return core.check_array("where", np.asarray(x))
    raise TypeError("where: %s must be a tensor, an array or a number, got %s"
                    % (what, type(x).__name__))


def leaky_relu(x, negative_slope=0.01):
    return core.leaky_relu(x, _number("leaky_relu", "negative_slope", negative_slope))


def clip(x, min=None, max=None):
    return core.clip(x, _number("clip", "min", min, True), _number("clip", "max", max, True))


clamp = clip


def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    return _t(x).sum(axis, keepdims, dim=dim, keepdim=keepdim)


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    return _t(x).mean(axis, keepdims, dim=dim, keepdim=keepdim)


def max(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    return _t(x).max(axis, keepdims, dim=dim, keepdim=keepdim)


def min(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    return _t(x).min(axis, keepdims, dim=dim, keepdim=keepdim)


def var(x, axis=None, keepdims=False, *, dim=None, keepdim=False, correction=None, ddof=None,
        unbiased=None):
    return _t(x).var(axis, keepdims, dim=dim, keepdim=keepdim, correction=correction, ddof=ddof,
                     unbiased=unbiased)


def std(x, axis=None, keepdims=False, *, dim=None, keepdim=False, correction=None, ddof=None,
        unbiased=None):
    return _t(x).std(axis, keepdims, dim=dim, keepdim=keepdim, correction=correction, ddof=ddof,
                     unbiased=unbiased)


def logsumexp(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    return _t(x).logsumexp(axis, keepdims, dim=dim, keepdim=keepdim)


def softmax(x, axis=None, *, dim=None):
    return _t(x).softmax(axis, dim=dim)


def log_softmax(x, axis=None, *, dim=None):
    return _t(x).log_softmax(axis, dim=dim)


def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    return _t(x).argmax(axis, keepdims, dim=dim, keepdim=keepdim)


def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    return _t(x).argmin(axis, keepdims, dim=dim, keepdim=keepdim)


def reshape(x, *shape):
    return _t(x).reshape(*shape)


def view(x, *shape):
    return _t(x).reshape(*shape)


def flatten(x, start_dim=0, end_dim=-1):
    return _t(x).flatten(start_dim, end_dim)


def transpose(x, dim0=None, dim1=None):
    return _t(x).transpose(dim0, dim1)


def permute(x, *dims):
    return _t(x).permute(*dims)


def squeeze(x, dim=None):
    return _t(x).squeeze(dim)


def unsqueeze(x, dim):
    return _t(x).unsqueeze(dim)


def expand(x, *shape):
    return _t(x).expand(*shape)


def _joined(name, tensors):
    """The tensors to cat or stack, checked and brought to one dtype.

    PyTorch's promotion, not NumPy's: float32 with int64 stays float32 (NumPy
    would give float64); the cast is differentiable, so float32 inputs still
    get float32 gradients when a float64 input widens the result.
    """
    if isinstance(tensors, (core.TensorBase, np.ndarray)) or \
            not isinstance(tensors, (list, tuple)):
        raise TypeError("%s: expected a list or tuple of tensors, got %s"
                        % (name, type(tensors).__name__))
    out = []
    for i, t in enumerate(tensors):
        if not isinstance(t, (core.TensorBase, np.ndarray, list)):
            raise TypeError("%s: expected a list or tuple of tensors, got %s at position %d"
                            % (name, type(t).__name__, i))
        out.append(t if isinstance(t, core.TensorBase) else tensor(t))
    if not out:
        raise ValueError("%s: expected a non-empty sequence of tensors" % name)
    dtype = _promoted([t.dtype for t in out])
    return [t if t.dtype == dtype else core.cast(t, dtype) for t in out]


def _promoted(dtypes):
    floats = [d for d in dtypes if d.kind == "f"]
    if floats:
        return np.result_type(*floats)
    return np.result_type(*dtypes)


def cat(tensors, axis=None, *, dim=None):
    axis = _axis(axis, dim, "cat")
    tensors = _joined("cat", tensors)
    return core.cat(tensors, 0 if axis is None else axis)


concatenate = cat


def stack(tensors, axis=None, *, dim=None):
    axis = _axis(axis, dim, "stack")
    axis = 0 if axis is None else axis
    core.check_axis_type("stack", axis)
    axis = int(axis)
    tensors = _joined("stack", tensors)
    nd = tensors[0].ndim + 1
    if not -nd <= axis < nd:
        raise ValueError("stack: axis %d is out of range for stacking tensors of shape %s "
                         "(expected %d to %d)" % (axis, tuple(tensors[0].shape), -nd, nd - 1))
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError("stack: all tensors must have the same shape, got %s and %s"
                             % (tuple(tensors[0].shape), tuple(t.shape)))
    return core.cat([t.unsqueeze(axis) for t in tensors], axis % (tensors[0].ndim + 1))


# ---------------------------------------------------------------------------
# Pickling and copying (see Tensor.__reduce_ex__)
# ---------------------------------------------------------------------------

def _own_values(t):
    """Just t's elements as one C-contiguous ndarray (not any base they live in)."""
    values = np.asarray(t.data)
    # numpy pickles a contiguous array's own elements only, so a slice of a
    # big array does not drag its base along; anything else is copied first
    # (np.ascontiguousarray would turn a 0-d array into a 1-d one).
    return values if values.flags.c_contiguous else values.copy(order="C")


def _attributes(t):
    """t's Python attributes (a subclass's or a user's), or None."""
    attributes = getattr(t, "__dict__", None)
    return dict(attributes) if attributes else None


def _rebuild_tensor(cls, values, requires_grad, attributes=None):
    """A leaf of class `cls` holding `values`: what an unpickled tensor becomes.

    `__init__` is not called (a subclass may take other arguments), as in
    PyTorch.  Named in pickles as `fastgrad.tensor._rebuild_tensor`: keep the
    name and the arguments stable, old pickles call it.
    """
    if not (isinstance(cls, type) and issubclass(cls, Tensor)):
        raise TypeError("unpickling a tensor: %r is not a subclass of this fastgrad's Tensor "
                        "(two copies of fastgrad in one process?)" % (cls,))
    if not isinstance(values, np.ndarray):
        raise TypeError("unpickling a tensor: expected its values as an ndarray, got %s"
                        % type(values).__name__)
    if type(values) is not np.ndarray or not values.flags.writeable:
        # joblib hands big arrays to its workers as read-only memory maps, and
        # out-of-band pickle buffers may be read-only: a tensor needs values
        # of its own that it can change in place (optimizers do).
        values = np.array(values, copy=True)
    _check_requires_grad(values, requires_grad)
    t = cls.__new__(cls)
    t._init_leaf(values, requires_grad)
    if attributes:
        t.__dict__.update(attributes)
    return t


def _deepcopy_leaf(t, memo, keep_grad):
    if id(t) in memo:
        return memo[id(t)]
    # Only a leaf: a copy of a non-leaf would have to copy its graph too,
    # which PyTorch refuses in the same words.
    if not t.is_leaf:
        raise RuntimeError(
            "deepcopy: only tensors created explicitly by the user (graph leaves) support the "
            "deepcopy protocol; this tensor was made by '%s'. Deep-copy t.detach() instead "
            "(a leaf with the same values)" % t.grad_fn)
    new = _rebuild_tensor(type(t), np.array(t.data, order="C", copy=True), t.requires_grad)
    # Registered before the grad and the attributes are copied, so that they
    # may refer back to t and still get this one copy.
    memo[id(t)] = new
    if keep_grad and t.grad is not None:
        new.grad = copy.deepcopy(t.grad, memo)
    attributes = _attributes(t)
    if attributes:
        new.__dict__.update(copy.deepcopy(attributes, memo))
    return new
