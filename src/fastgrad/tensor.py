"""fastgrad.Tensor and the functions that create and combine tensors.

`Tensor` subclasses the chosen core's `TensorBase`, which holds the values,
the autograd node, the operators and the elementwise methods (so `y * 0.9`
and `y.tanh()` go straight into the core).  What is here is the convenience
surface: argument aliases (`dim=`/`axis=`), composite ops built from the
core's primitives (mean, var, softmax, ...), conversions and creation.
Composites live here once and therefore behave identically on both cores.
"""
import builtins
import collections
import copy
import math
import string

import numpy as np

from ._core import core
from ._core.reference import _along_key     # the NumPy key gather and scatter share
from . import _interop
from . import _device
from ._device import device

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
    core.set_default_float(dtype)


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
        data = data.numpy()
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

    def __init__(self, *args, dtype=None, requires_grad=False, device=None):
        # As torch.Tensor: sizes make a new (zero-filled) tensor of that shape,
        # data is converted to the default float dtype (fg.tensor keeps ints)
        _device.check("Tensor", device)
        dtype = _default_dtype if dtype is None else dtype
        if not args:
            arr = np.empty((0,), dtype=_dtype("Tensor", dtype))
        elif builtins.all(_is_int(a) for a in args) and not isinstance(args[0], core.TensorBase):
            arr = np.zeros(_size_args("Tensor", args), dtype=_dtype("Tensor", dtype))
        elif len(args) == 1:
            arr = _to_array(args[0], dtype)
        else:
            raise TypeError("Tensor: expected sizes (ints) or one piece of data, got %d "
                            "arguments" % len(args))
        _check_requires_grad(arr, requires_grad)
        self._init_leaf(arr, requires_grad)

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
        return self.numpy().item()

    def tolist(self):
        return self.numpy().tolist()

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        if dtype is not None and arr.dtype != dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError("the truth value of a tensor with %d elements is ambiguous; "
                               "use .any() or .all()" % self.numel())
        return bool(self.numpy())

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
        return int(self.numpy())

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
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = ["dtype=%s" % self.dtype]
        if self.grad_fn is not None:
            extra.append("grad_fn=<%s>" % self.grad_fn)
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(%s, %s)" % (body, ", ".join(extra))

    # -- devices (the CPU only) and Python protocols -----------------------------
    @property
    def device(self):
        return _device.CPU

    is_cuda = False

    def cpu(self):
        return self

    def cuda(self, device=None, non_blocking=False):
        raise _device._unavailable("cuda", "cuda" if device is None else device)

    # torch hashes a tensor by identity (== is elementwise)
    def __hash__(self):
        return id(self)

    def __contains__(self, element):
        if isinstance(element, (core.TensorBase, bool, int, float, np.number)):
            return bool(np.any(self.numpy() == _values(element)))
        raise RuntimeError("__contains__: only a number or a tensor can be looked for in a "
                           "tensor, got %s" % type(element).__name__)

    def __reversed__(self):
        return self if self.ndim == 0 else self.flip(0)

    def __abs__(self):
        return core.abs(self)

    # -- autograd ------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    def register_post_accumulate_grad_hook(self, hook):
        """Call hook(self) in each backward() as soon as this leaf's .grad holds that
        backward's gradient, while the rest of the sweep still runs (as torch's).

        Returns a handle: handle.remove() takes the hook off.  Hooks run with
        recording off, a tensor's in the order they were registered.  If the
        backward raises after a hook ran, every .grad is put back as it was
        before it.  fg.grad() runs no hooks (it writes no .grad).
        """
        return core.register_post_accumulate_grad_hook(self, hook)

    def detach(self):
        """A new leaf sharing these values (and the version counter), cut off from the graph."""
        return core.detach(self)

    def clone(self):
        """A differentiable copy."""
        return core.clone(self)

    # -- dtype conversion (differentiable: the gradient is cast back) ----------
    def to(self, *args, dtype=None, device=None, non_blocking=False, copy=False):
        """As torch: to(dtype), to(device), to(device, dtype), to(other), to(dtype=, device=)."""
        if len(args) > 2:
            raise TypeError("to: expected at most a device and a dtype, got %d arguments"
                            % len(args))
        for a in args:
            if isinstance(a, core.TensorBase):
                if len(args) > 1:
                    raise TypeError("to: a tensor to match cannot come with other arguments")
                dtype = a.dtype
            elif isinstance(a, (str, _device.device)):
                if device is not None:
                    raise TypeError("to: the device was given twice")
                device = a
            else:
                if dtype is not None:
                    raise TypeError("to: the dtype was given twice")
                dtype = a
        _device.check("to", device)
        out = self if dtype is None else core.cast(self, _dtype("to", dtype))
        return core.clone(out) if copy and out is self else out

    def astype(self, dtype):
        return core.cast(self, _dtype("astype", dtype))

    def float(self):
        return core.cast(self, np.float32)

    def double(self):
        return core.cast(self, np.float64)

    def long(self):
        return core.cast(self, np.int64)

    def int(self):
        return core.cast(self, np.int32)

    def bool(self):
        return core.cast(self, np.bool_)

    def half(self):
        return core.cast(self, _dtype("half", np.float16))

    def type(self, dtype=None):
        """Without a dtype the type's name (torch's names: 'fastgrad.FloatTensor', ...); with one, to(dtype)."""
        if dtype is None:
            return "fastgrad.%s" % _TYPE_NAMES.get(self.dtype, str(self.dtype))
        if isinstance(dtype, str):
            names = {v: k for k, v in _TYPE_NAMES.items()}
            key = dtype.rsplit(".", 1)[-1]
            if key not in names:
                raise ValueError("type: unknown type name %r (expected one of %s)"
                                 % (dtype, ", ".join(sorted(names))))
            dtype = names[key]
        return core.cast(self, _dtype("type", dtype))

    # -- reductions ------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return core.sum(self, _axis(axis, dim, "sum"), _keep(keepdims, keepdim))

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        axis = _axis(axis, dim, "mean")
        n = _count(self, axis, "mean")
        return core.sum(self, axis, _keep(keepdims, keepdim)) * (1.0 / n if n else math.nan)

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        """The largest value; with a dim, (values, indices) along it; with a tensor, maximum."""
        return _extreme(self, "max", dim, axis, keepdim or keepdims)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        """The smallest value; with a dim, (values, indices) along it; with a tensor, minimum."""
        return _extreme(self, "min", dim, axis, keepdim or keepdims)

    def amax(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        """The largest values over one or more axes (ties share the gradient)."""
        return core.max(self, _axis(axis, dim, "amax"), _keep(keepdims, keepdim))

    def amin(self, dim=None, keepdim=False, *, axis=None, keepdims=False):
        return core.min(self, _axis(axis, dim, "amin"), _keep(keepdims, keepdim))

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
        """exp(x - max) / sum(exp(x - max)) along one axis (default: the last)."""
        if dim is not None or axis is None:
            axis = _axis(axis, dim, "softmax")
        return core.softmax(self, -1 if axis is None else axis)

    def log_softmax(self, axis=None, *, dim=None):
        """(x - max) - log(sum(exp(x - max))) along one axis (default: the last).

        Shifted by the max, as PyTorch: a row whose max is inf is NaN throughout.
        """
        if dim is not None or axis is None:
            axis = _axis(axis, dim, "log_softmax")
        return core.log_softmax(self, -1 if axis is None else axis)

    def argmax(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        axis = _one_axis("argmax", self, _axis(axis, dim, "argmax"))
        return core.from_array(np.asarray(np.argmax(self.numpy(), axis=axis,
                                                    keepdims=_keep(keepdims, keepdim))))

    def argmin(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        axis = _one_axis("argmin", self, _axis(axis, dim, "argmin"))
        return core.from_array(np.asarray(np.argmin(self.numpy(), axis=axis,
                                                    keepdims=_keep(keepdims, keepdim))))

    # -- elementwise with arguments --------------------------------------------
    def leaky_relu(self, negative_slope=0.01):
        return core.leaky_relu(self, _number("leaky_relu", "negative_slope", negative_slope))

    def clip(self, min=None, max=None):
        return core.clip(self, _number("clip", "min", min, True), _number("clip", "max", max, True))

    def clamp(self, min=None, max=None):
        return clamp(self, min, max)

    def clamp_(self, min=None, max=None):
        lo, hi = _number("clamp_", "min", min, True), _number("clamp_", "max", max, True)
        if lo is None and hi is None:
            raise ValueError("clamp_: at least one of min and max must be given")
        values = self._inplace("clamp_")
        np.clip(values, lo, hi, out=values)
        return self._changed()

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
        nd = len(self.shape)
        if nd < 2:
            return self
        return core.permute(self, _REVERSED_AXES[nd] if nd < 8 else tuple(range(nd))[::-1])

    def squeeze(self, dim=None, *, axis=None):
        dim = _axis(axis, dim)
        shape = self.shape
        if type(dim) is int and -len(shape) <= dim < len(shape):   # the common call, in short
            d = dim % len(shape)
            return core.reshape(self, shape[:d] + shape[d + 1:] if shape[d] == 1 else shape)
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
        core.check_axis_type("unsqueeze", dim)
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
        values = self.numpy()
        if not values.flags.writeable:
            raise ValueError("%s: this tensor's memory is read-only (for example a read-only "
                             "np.memmap or np.frombuffer of bytes); use the out-of-place form, "
                             "or clone() it first" % name)
        return values

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
        values = self._inplace("setitem")
        values[core.check_index(values, key)] = _values(value)
        self._changed()

    # `y += x` (the core's __iadd__ and friends end here) rebinds y to a new
    # node when autograd tracks y (the common `loss += term` idiom keeps
    # working); otherwise it really is in place.
    def _augmented(self, other, name):
        if core.is_grad_enabled() and self.requires_grad and not self.is_leaf:
            return _OUT_OF_PLACE[name](self, other)
        return getattr(Tensor, name)(self, other)

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
        return core.alias(_rebuild_tensor(type(self), np.asarray(self.numpy()), self.requires_grad,
                                          _attributes(self)), self)

    def __deepcopy__(self, memo):
        return _deepcopy_leaf(self, memo, keep_grad=True)


_OUT_OF_PLACE = {"add_": core.add, "sub_": core.sub, "mul_": core.mul, "div_": core.div}


def _values(x):
    return x.numpy() if isinstance(x, core.TensorBase) else x


def _spread(x, name, axis, keepdims, dim, keepdim, correction, ddof, unbiased):
    """var or std as one node of the core, with PyTorch's gradients (see reference.py)."""
    fn = core.var if name == "var" else core.std
    return fn(x, _axis(axis, dim, name), _keep(keepdims, keepdim),
              _correction(correction, ddof, unbiased))


class _RuleCtx:
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
    if builtins.any(n < 0 for n in shape):
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


_REVERSED_AXES = tuple(tuple(range(nd))[::-1] for nd in range(8))     # x.T's permutations


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

def tensor(data, dtype=None, requires_grad=False, *, device=None):
    """A new tensor holding a copy of `data` (a number, nested list or array)."""
    _device.check("tensor", device)
    arr = _to_array(data, dtype)
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def _typed(name, dtype):
    def make(*args, requires_grad=False, device=None):
        # fg.LongTensor([1, 2]), fg.FloatTensor(2, 3): torch.Tensor's rules with a fixed dtype
        return Tensor(*args, dtype=dtype, requires_grad=requires_grad, device=device)
    make.__name__ = make.__qualname__ = name
    make.__doc__ = "A %s tensor from data or sizes, as torch.%s." % (np.dtype(dtype), name)
    return make


FloatTensor = _typed("FloatTensor", np.float32)
DoubleTensor = _typed("DoubleTensor", np.float64)
LongTensor = _typed("LongTensor", np.int64)
IntTensor = _typed("IntTensor", np.int32)
BoolTensor = _typed("BoolTensor", np.bool_)

# torch's type names, for t.type()
_TYPE_NAMES = {np.dtype(np.float32): "FloatTensor", np.dtype(np.float64): "DoubleTensor",
               np.dtype(np.int64): "LongTensor", np.dtype(np.int32): "IntTensor",
               np.dtype(np.int16): "ShortTensor", np.dtype(np.int8): "CharTensor",
               np.dtype(np.uint8): "ByteTensor", np.dtype(np.bool_): "BoolTensor"}


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


def _filled(name, shape, value, dtype, requires_grad, device=None):
    _device.check(name, device)
    arr = np.full(_size_args(name, shape), value, dtype=_factory_dtype(name, dtype))
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def zeros(*shape, dtype=None, requires_grad=False, device=None):
    return _filled("zeros", shape, 0, dtype, requires_grad, device)


def ones(*shape, dtype=None, requires_grad=False, device=None):
    return _filled("ones", shape, 1, dtype, requires_grad, device)


def empty(*shape, dtype=None, requires_grad=False, device=None):
    return _filled("empty", shape, 0, dtype, requires_grad, device)


def full(shape, fill_value, dtype=None, requires_grad=False, *, device=None):
    if isinstance(fill_value, core.TensorBase) and fill_value.numel() == 1:
        fill_value = fill_value.item()
    if isinstance(fill_value, (bool, np.bool_)):
        dtype = np.bool_ if dtype is None else dtype
    elif isinstance(fill_value, (int, np.integer)):
        dtype = np.int64 if dtype is None else dtype
    elif not isinstance(fill_value, (float, np.floating)):
        raise TypeError("full: fill_value must be a number, got %r (%s)"
                        % (fill_value, type(fill_value).__name__))
    return _filled("full", (shape,), fill_value, dtype, requires_grad, device)


def _like(name, t, value, dtype, requires_grad, device=None):
    if not isinstance(t, (core.TensorBase, np.ndarray)):
        raise TypeError("%s: expected a tensor or an ndarray, got %s" % (name, type(t).__name__))
    dtype = np.asarray(t).dtype if dtype is None else dtype
    return _filled(name, (tuple(t.shape),), value, dtype, requires_grad, device)


def zeros_like(t, dtype=None, requires_grad=False, *, device=None):
    return _like("zeros_like", t, 0, dtype, requires_grad, device)


def ones_like(t, dtype=None, requires_grad=False, *, device=None):
    return _like("ones_like", t, 1, dtype, requires_grad, device)


def empty_like(t, dtype=None, requires_grad=False, *, device=None):
    return _like("empty_like", t, 0, dtype, requires_grad, device)


def full_like(t, fill_value, dtype=None, requires_grad=False, *, device=None):
    value = _number("full_like", "fill_value", fill_value)
    return _like("full_like", t, value, dtype, requires_grad, device)


def rand_like(t, dtype=None, requires_grad=False, *, device=None):
    if not isinstance(t, (core.TensorBase, np.ndarray)):
        raise TypeError("rand_like: expected a tensor, got %s" % type(t).__name__)
    return rand(tuple(t.shape), dtype=t.dtype if dtype is None else dtype,
                requires_grad=requires_grad, device=device, _name="rand_like")


def randn_like(t, dtype=None, requires_grad=False, *, device=None):
    if not isinstance(t, (core.TensorBase, np.ndarray)):
        raise TypeError("randn_like: expected a tensor, got %s" % type(t).__name__)
    return randn(tuple(t.shape), dtype=t.dtype if dtype is None else dtype,
                 requires_grad=requires_grad, device=device, _name="randn_like")


def arange(start, end=None, step=1, dtype=None, requires_grad=False, *, device=None):
    _device.check("arange", device)
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
        integral = builtins.all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if integral else _default_dtype
    arr = np.arange(start, end, step, dtype=_dtype("arange", dtype))
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False, *, device=None):
    _device.check("eye", device)
    size = _size_args("eye", (n,) if m is None else (n, m))
    arr = np.eye(*size, dtype=_factory_dtype("eye", dtype))
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def _float_dtype(name, dtype):
    dtype = _factory_dtype(name, dtype)
    if dtype.kind != "f":
        raise TypeError("%s: the dtype must be float32 or float64, got %s" % (name, dtype))
    return dtype


def randn(*shape, dtype=None, requires_grad=False, device=None, _name="randn"):
    _device.check(_name, device)
    dtype = _float_dtype(_name, dtype)
    arr = _generator.standard_normal(_size_args(_name, shape)).astype(dtype)
    return core.from_array(arr, requires_grad)


def rand(*shape, dtype=None, requires_grad=False, device=None, _name="rand"):
    _device.check(_name, device)
    dtype = _float_dtype(_name, dtype)
    arr = _generator.random(_size_args(_name, shape)).astype(dtype)
    return core.from_array(arr, requires_grad)


def linspace(start, end, steps, dtype=None, requires_grad=False, *, device=None):
    """`steps` evenly spaced values from start to end, both included (as torch.linspace)."""
    _device.check("linspace", device)
    start = _number("linspace", "start", start)
    end = _number("linspace", "end", end)
    if not _is_int(steps):
        raise TypeError("linspace: steps must be an int, got %r (%s)"
                        % (steps, type(steps).__name__))
    if int(steps) < 0:
        raise ValueError("linspace: steps must be non-negative, got %d" % int(steps))
    dtype = _factory_dtype("linspace", dtype)
    arr = np.linspace(start, end, int(steps), dtype=np.float64)
    if dtype.kind != "f":
        arr = np.trunc(arr)            # as torch: an integer dtype truncates
    arr = arr.astype(dtype)
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def randperm(n, dtype=np.int64, requires_grad=False, *, device=None):
    """A random permutation of 0 .. n-1 from fastgrad's generator."""
    _device.check("randperm", device)
    if not _is_int(n) or int(n) < 0:
        raise ValueError("randperm: n must be a non-negative int, got %r" % (n,))
    arr = _generator.permutation(int(n)).astype(_dtype("randperm", dtype))
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def randint(low, high=None, size=(), dtype=np.int64, *, device=None):
    _device.check("randint", device)
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
        cond = condition.numpy()
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


def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    return _t(x).sum(axis, keepdims, dim=dim, keepdim=keepdim)


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    return _t(x).mean(axis, keepdims, dim=dim, keepdim=keepdim)


def max(x, dim=None, keepdim=False, *, axis=None, keepdims=False):
    """As torch.max: the value, (values, indices) with a dim, or maximum(x, other)."""
    return _t(x).max(dim, keepdim, axis=axis, keepdims=keepdims)


def min(x, dim=None, keepdim=False, *, axis=None, keepdims=False):
    return _t(x).min(dim, keepdim, axis=axis, keepdims=keepdims)


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
    if type(tensors) is list or type(tensors) is tuple:       # the common case, at once:
        dtype = None                                            # tensors of one dtype
        for t in tensors:
            if not isinstance(t, core.TensorBase) or (dtype is not None and t.dtype != dtype):
                break
            dtype = t.dtype
        else:
            if dtype is not None:
                return list(tensors)
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
    if type(axis) is not int:
        core.check_axis_type("stack", axis)
        axis = int(axis)
    tensors = _joined("stack", tensors)
    nd = tensors[0].ndim + 1
    if not -nd <= axis < nd:
        raise ValueError("stack: axis %d is out of range for stacking tensors of shape %s "
                         "(expected %d to %d)" % (axis, tuple(tensors[0].shape), -nd, nd - 1))
    shape = tensors[0].shape
    for t in tensors:
        if t.shape != shape:
            raise ValueError("stack: all tensors must have the same shape, got %s and %s"
                             % (tuple(shape), tuple(t.shape)))
    axis %= nd
    if axis < nd - 1:       # joined along that axis, their memory is the stack's already
        return core.reshape(core.cat(list(tensors), axis),
                            shape[:axis] + (len(tensors),) + shape[axis:])
    shape = shape[:axis] + (1,) + shape[axis:]            # each one unsqueezed: a view
    return core.cat([core.reshape(t, shape) for t in tensors], axis)


# ---------------------------------------------------------------------------
# PyTorch's tensor ops (function and method forms)
# ---------------------------------------------------------------------------
# Most are compositions of the core's primitives, so they are differentiable
# and behave the same on both cores with no rule of their own: flip is a
# negative-step slice (a view), split and chunk are slices, repeat is expand
# then reshape, tril / triu / masked_fill are where(), gather / index_select /
# roll / the non-constant pads are integer-array indexing (whose backward
# scatter-adds).  Where no exact composition exists the op is one Function
# node with its NumPy forward and backward side by side (cumsum, einsum,
# scatter, scatter_add, norm, and the zero-gradient round / floor / ceil /
# sign): fg.compile replays those like any other node.

def _rule(name, forward, backward, inputs):
    """One Function node: forward(ctx, *arrays) -> array, backward(ctx, g) -> gradients."""
    rule = type(name, (), {"forward": staticmethod(forward), "backward": staticmethod(backward)})
    return core.function(rule, _RuleCtx(), inputs)


def _dim(name, t, dim):
    """One axis of t, checked, as a non-negative int (a 0-d tensor takes 0 and -1)."""
    nd = builtins.max(t.ndim, 1)
    if type(dim) is int and -nd <= dim < nd:
        return dim % nd               # the common call, checked in short
    core.check_axis_type(name, dim)
    if not -nd <= int(dim) < nd:
        raise IndexError("%s: dimension %d is out of range for a tensor of %d dimension(s) "
                         "(shape %s); expected %d to %d"
                         % (name, int(dim), t.ndim, tuple(t.shape), -nd, nd - 1))
    return int(dim) % nd


def _index_array(name, index, what="index"):
    """An integer tensor or array as an int64 ndarray, or a TypeError naming `name`."""
    values = np.asarray(_values(index)) if isinstance(index, (core.TensorBase, np.ndarray,
                                                                list, tuple)) else None
    if values is None or values.dtype.kind not in "iu":
        raise TypeError("%s: %s must be an integer (int64) tensor, got %s"
                        % (name, what, type(index).__name__ if values is None else
                           "dtype %s" % values.dtype))
    return values.astype(np.int64, copy=False)


def _gather_index(name, t, dim, index, src_shape=None):
    if index.ndim != t.ndim:
        raise ValueError("%s: index must have as many dimensions as the input (%d), got an "
                         "index of shape %s" % (name, t.ndim, index.shape))
    for d in range(t.ndim):
        if d != dim and index.shape[d] > t.shape[d]:
            raise ValueError("%s: index shape %s is larger than the input's %s outside "
                             "dimension %d" % (name, index.shape, tuple(t.shape), dim))
        if src_shape is not None and index.shape[d] > src_shape[d]:
            raise ValueError("%s: index shape %s is larger than src's %s in dimension %d"
                             % (name, index.shape, tuple(src_shape), d))
    n = t.shape[dim] if t.ndim else 1
    # as torch: no negative indices (they would silently count from the end in NumPy)
    if index.size and (index.min() < 0 or index.max() >= n):
        raise IndexError("%s: index values must be in [0, %d) for dimension %d, got values "
                         "from %d to %d" % (name, n, dim, index.min(), index.max()))
    return _along_key(index, dim)


def gather(input, dim, index):
    """out[i][j] = input[i][index[i][j]] along `dim`, as torch.gather (differentiable)."""
    t = _t(input)
    dim = _dim("gather", t, dim)
    index = _index_array("gather", index)
    if t.ndim == 0:
        return t.reshape(1)[index.reshape(-1)].reshape(index.shape)
    return core.gather(t, dim, index)


def take_along_dim(input, indices, dim):
    return gather(input, dim, indices)


def index_select(input, dim, index):
    t = _t(input)
    dim = _dim("index_select", t, dim)
    index = _index_array("index_select", index)
    if index.ndim > 1:
        raise ValueError("index_select: index must be 1-d, got shape %s" % (index.shape,))
    n = t.shape[dim] if t.ndim else 1
    # negatives are refused here (NumPy would count them from the end); too
    # large an index, by the indexing itself (its error becomes ours)
    if index.size and index.min() < 0:
        _index_select_range(n, dim, index)
    try:
        if t.ndim == 0:
            return t.reshape(1)[index.reshape(-1)].reshape(index.shape)
        return t[(slice(None),) * dim + (index.reshape(-1),)]
    except IndexError:
        _index_select_range(n, dim, index)
        raise


def _index_select_range(n, dim, index):
    if index.size and (index.min() < 0 or index.max() >= n):
        raise IndexError("index_select: index values must be in [0, %d) for dimension %d, "
                         "got values from %d to %d" % (n, dim, index.min(), index.max()))


def _scatter(name, input, dim, index, src, reduce_add):
    t = _t(input)
    dim = _dim(name, t, dim)
    index = _index_array(name, index)
    if isinstance(src, (core.TensorBase, np.ndarray, list)):
        src = _t(src)
        src_shape = src.shape
    else:
        src = _number(name, "src", src)
        src_shape = None
    key = _gather_index(name, t, dim, index, src_shape)
    part = tuple(slice(0, n) for n in index.shape)     # src beyond the index is not used

    def forward(ctx, a, *b):
        value = b[0][part] if b else src
        out = np.array(a, copy=True)
        if reduce_add:
            np.add.at(out, key, np.broadcast_to(value, index.shape).astype(out.dtype))
        else:
            out[key] = value
        return out

    def backward(ctx, g):
        if reduce_add:
            ga = g
        else:
            ga = np.array(g, copy=True)
            ga[key] = 0              # overwritten values do not reach the output
        if src_shape is None:
            return (ga,)
        gb = np.zeros(src_shape, dtype=g.dtype)
        gb[part] = g[key]
        return ga, gb

    inputs = (t,) if src_shape is None else (t, src)
    if src_shape is not None and src.dtype != t.dtype:
        inputs = (t, src.to(t.dtype))
    return _rule(name, forward, backward, inputs)


def scatter(input, dim, index, src=None, *, value=None):
    """A copy of input with src (a tensor or a number) written at index along dim."""
    if (src is None) == (value is None):
        raise TypeError("scatter: pass exactly one of src and value")
    return _scatter("scatter", input, dim, index, value if src is None else src, False)


def scatter_add(input, dim, index, src):
    """A copy of input with src added at index along dim (repeated indices add up)."""
    return _scatter("scatter_add", input, dim, index, src, True)


def masked_fill(input, mask, value):
    """input with `value` where mask is True (mask broadcasts; the gradient skips those)."""
    t = _t(input)
    if (type(value) is float or type(value) is int) and isinstance(mask, core.TensorBase) \
            and mask.dtype == np.bool_ and mask.shape == t.shape and t.dtype.kind == "f":
        return core.where(mask, value, t)       # the common call, checked in short
    m = _mask("masked_fill", t, mask)
    value = _fill_value("masked_fill", value, t.dtype)
    return core.where(m, value, t)


def _mask(name, t, mask):
    m = np.asarray(_values(mask)) if isinstance(mask, (core.TensorBase, np.ndarray,
                                                         list)) else None
    if m is None or m.dtype != np.bool_:
        raise TypeError("%s: mask must be a bool tensor, got %s"
                        % (name, type(mask).__name__ if m is None else "dtype %s" % m.dtype))
    try:
        if np.broadcast_shapes(m.shape, t.shape) != tuple(t.shape):
            raise ValueError
    except ValueError:
        raise ValueError("%s: mask of shape %s does not broadcast to the input's shape %s"
                         % (name, m.shape, tuple(t.shape))) from None
    return m


def _fill_value(name, value, dtype):
    if isinstance(value, core.TensorBase):
        if value.numel() != 1 or value.ndim:
            raise ValueError("%s: value must be a number or a 0-d tensor, got shape %s"
                             % (name, tuple(value.shape)))
        return value.to(dtype) if value.requires_grad else np.asarray(value.numpy(), dtype=dtype)
    return np.asarray(_number(name, "value", value)).astype(dtype)


def _masked_fill_(self, mask, value):
    m = _mask("masked_fill_", self, mask)
    value = _fill_value("masked_fill_", _values(value) if isinstance(value, core.TensorBase)
                        else value, self.dtype)
    values = self._inplace("masked_fill_")
    np.copyto(values, value, where=np.broadcast_to(m, values.shape))
    return self._changed()


def _normal_(self, mean=0.0, std=1.0):
    mean, std = _number("normal_", "mean", mean), _number("normal_", "std", std)
    if std < 0:
        raise ValueError("normal_: std must be non-negative, got %r" % std)
    values = self._inplace("normal_")
    values[...] = _generator.normal(mean, std, values.shape)
    return self._changed()


def _uniform_(self, a=0.0, b=1.0):
    a, b = _number("uniform_", "a", a), _number("uniform_", "b", b)
    if a > b:
        raise ValueError("uniform_: expected a <= b, got a=%r and b=%r" % (a, b))
    values = self._inplace("uniform_")
    values[...] = _generator.uniform(a, b, values.shape)
    return self._changed()


_ValuesIndices = {}


def _pair(name, values, indices):
    """(values, indices) as a named tuple, as torch.return_types.<name>."""
    cls = _ValuesIndices.get(name)
    if cls is None:
        cls = _ValuesIndices[name] = collections.namedtuple(name, ["values", "indices"])
    if not isinstance(indices, core.TensorBase):
        indices = core.from_array(np.asarray(indices, dtype=np.int64))
    return cls(values, indices)


def _extreme(t, name, dim, axis, keepdim):
    if isinstance(dim, core.TensorBase) or isinstance(axis, core.TensorBase):
        other = dim if axis is None else axis
        return core.maximum(t, other) if name == "max" else core.minimum(t, other)
    dim = _axis(axis, dim, name)
    if dim is None:
        return (core.max if name == "max" else core.min)(t)
    if isinstance(dim, (tuple, list)):
        core.normalize_axes(name, t.shape, dim)       # a malformed axis: the usual message
        raise TypeError("%s: dim must be one int, got %r; use a%s for several dimensions"
                        % (name, dim, name))
    d = _dim(name, t, dim)
    core.check_nonempty(name, t.shape)
    if t.ndim == 0:
        values, idx = core.extreme_dim(t.reshape(1), 0, False, name == "max")
        return _pair(name, values.reshape(()), idx.reshape(()))
    values, idx = core.extreme_dim(t, d, keepdim, name == "max")
    return _pair(name, values, idx)


def amax(x, dim=None, keepdim=False, *, axis=None, keepdims=False):
    return _t(x).amax(dim, keepdim, axis=axis, keepdims=keepdims)


def amin(x, dim=None, keepdim=False, *, axis=None, keepdims=False):
    return _t(x).amin(dim, keepdim, axis=axis, keepdims=keepdims)


def _sort_indices(name, data, dim, descending, stable=True):
    if data.ndim == 0:
        return np.zeros((), dtype=np.int64)
    if not descending:
        return np.argsort(data, axis=dim, kind="stable")
    # descending and stable, NaN first (torch sorts NaN as the largest value):
    # the reverse of a stable ascending sort of the reversed data
    n = data.shape[dim]
    flipped = np.flip(data, axis=dim)
    order = np.flip(np.argsort(flipped, axis=dim, kind="stable"), axis=dim)
    return (n - 1) - order


def sort(input, dim=-1, descending=False, stable=False):
    """(values, indices) sorted along dim; values differentiable (NaN sorts last, as torch)."""
    t = _t(input)
    d = _dim("sort", t, dim)
    idx = _sort_indices("sort", t.numpy(), d, descending)
    values = t if t.ndim == 0 else gather(t, d, idx)
    return _pair("sort", values, idx)


def argsort(input, dim=-1, descending=False, stable=False):
    t = _t(input)
    d = _dim("argsort", t, dim)
    return core.from_array(np.asarray(_sort_indices("argsort", t.numpy(), d, descending),
                                      dtype=np.int64))


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The k largest (or smallest) values along dim and their indices, as torch.topk."""
    t = _t(input)
    d = _dim("topk", t, dim)
    if not _is_int(k):
        raise TypeError("topk: k must be an int, got %r (%s)" % (k, type(k).__name__))
    n = t.shape[d] if t.ndim else 1
    if not 0 <= int(k) <= n:
        raise ValueError("topk: k=%d is out of range for dimension %d of size %d (shape %s)"
                         % (int(k), d, n, tuple(t.shape)))
    if t.ndim == 0:
        return _pair("topk", t, np.zeros((), np.int64))
    idx = np.take(_sort_indices("topk", t.numpy(), d, largest), np.arange(int(k)), axis=d)
    return _pair("topk", gather(t, d, idx), idx)


def cumsum(input, dim, *, dtype=None):
    """Running sums along dim; the gradient is the reversed running sum of the gradient."""
    t = _t(input)
    d = _dim("cumsum", t, dim)
    if dtype is not None:
        t = t.to(_dtype("cumsum", dtype))

    def forward(ctx, a):
        out_dtype = a.dtype if a.dtype.kind == "f" else np.int64    # as torch: ints sum in int64
        return np.cumsum(a.reshape(-1) if a.ndim == 0 else a, axis=d,
                         dtype=out_dtype).reshape(a.shape)

    def backward(ctx, g):
        if g.ndim == 0:
            return (g,)
        return (np.flip(np.cumsum(np.flip(g, d), axis=d), d),)

    return _rule("cumsum", forward, backward, (t,))


def _triangle(name, input, diagonal, upper):
    t = _t(input)
    if t.ndim < 2:
        raise ValueError("%s: expected a tensor of at least 2 dimensions, got shape %s"
                         % (name, tuple(t.shape)))
    if not _is_int(diagonal):
        raise TypeError("%s: diagonal must be an int, got %r" % (name, diagonal))
    rows, cols = t.shape[-2:]
    keep = np.tri(rows, cols, int(diagonal) - (1 if upper else 0), dtype=bool)
    if upper:
        keep = ~keep
    return core.where(keep, t, np.zeros((), dtype=t.dtype))


def tril(input, diagonal=0):
    return _triangle("tril", input, diagonal, False)


def triu(input, diagonal=0):
    return _triangle("triu", input, diagonal, True)


def _dims(name, t, dims):
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    out = tuple(_dim(name, t, d) for d in dims)
    if len(set(out)) != len(out):
        raise ValueError("%s: dims %s repeat a dimension" % (name, dims))
    return out


def flip(input, *dims):
    """input reversed along dims (a view, as NumPy: negative strides)."""
    t = _t(input)
    dims = _dims("flip", t, dims[0] if len(dims) == 1 else dims)
    if t.ndim == 0:
        return t.reshape(())
    key = [slice(None)] * t.ndim
    for d in dims:
        key[d] = slice(None, None, -1)
    return t[tuple(key)]


def roll(input, shifts, dims=None):
    t = _t(input)
    if dims is None:
        if not _is_int(shifts):
            raise TypeError("roll: without dims, shifts must be one int, got %r" % (shifts,))
        return roll(t.reshape(-1), shifts, 0).reshape(t.shape)
    shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
    dims_t = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(shifts) != len(dims_t):
        raise ValueError("roll: shifts and dims must have the same length, got %d and %d"
                         % (len(shifts), len(dims_t)))
    out = t
    for s, d in zip(shifts, dims_t):
        if not _is_int(s):
            raise TypeError("roll: shifts must be ints, got %r" % (s,))
        d = _dim("roll", t, d)
        if t.ndim == 0:
            continue
        n = t.shape[d]
        if n == 0 or int(s) % n == 0:
            continue
        idx = (np.arange(n) - int(s)) % n
        out = out[(slice(None),) * d + (idx,)]
    return out


def split(tensor, split_size_or_sections, dim=0):
    """Pieces of `split_size_or_sections` elements (the last may be smaller), or of the given sizes."""
    t = _t(tensor)
    d = _dim("split", t, dim)
    if t.ndim == 0:
        raise ValueError("split: cannot split a 0-d tensor")
    n = t.shape[d]
    if _is_int(split_size_or_sections):
        size = int(split_size_or_sections)
        if size <= 0 and not (size == 0 and n == 0):
            raise ValueError("split: split_size must be positive, got %d" % size)
        sizes = [builtins.min(size, n - i) for i in range(0, n, size)] if n else [0]
    elif isinstance(split_size_or_sections, (list, tuple)):
        sizes = list(split_size_or_sections)
        if not builtins.all(_is_int(s) and int(s) >= 0 for s in sizes):
            raise ValueError("split: sections must be non-negative ints, got %r" % (sizes,))
        if builtins.sum(int(s) for s in sizes) != n:
            raise ValueError("split: sizes %s sum to %d, but dimension %d has size %d"
                             % (list(sizes), builtins.sum(int(s) for s in sizes), d, n))
    else:
        raise TypeError("split: expected an int or a list of ints, got %r"
                        % (split_size_or_sections,))
    out, start = [], 0
    for s in sizes:
        out.append(t[(slice(None),) * d + (slice(start, start + int(s)),)])
        start += int(s)
    return tuple(out)


def chunk(input, chunks, dim=0):
    """At most `chunks` pieces of ceil(n / chunks) elements, as torch.chunk."""
    t = _t(input)
    if not _is_int(chunks) or int(chunks) <= 0:
        raise ValueError("chunk: chunks must be a positive int, got %r" % (chunks,))
    d = _dim("chunk", t, dim)
    if t.ndim == 0:
        raise ValueError("chunk: cannot chunk a 0-d tensor")
    n = t.shape[d]
    if n == 0:
        return split(t, [0], d)
    return split(t, -(-n // int(chunks)), d)


def repeat(input, *sizes):
    """input tiled sizes[i] times along each dim (as torch's Tensor.repeat)."""
    t = _t(input)
    sizes = _shape_args(sizes)
    if not builtins.all(_is_int(s) and int(s) >= 0 for s in sizes):
        raise ValueError("repeat: repeats must be non-negative ints, got %r" % (sizes,))
    if len(sizes) < t.ndim:
        raise ValueError("repeat: %d repeats given for a tensor of %d dimensions (shape %s); "
                         "give at least one per dimension" % (len(sizes), t.ndim, tuple(t.shape)))
    shape = (1,) * (len(sizes) - t.ndim) + tuple(t.shape)
    spread = []
    for r, n in zip(sizes, shape):
        spread += [int(r), n]
    ones = []
    for n in shape:
        ones += [1, n]
    return t.reshape(ones).expand(spread).reshape([int(r) * n for r, n in zip(sizes, shape)])


def contiguous(input):
    t = _t(input)
    return t if t.numpy().flags.c_contiguous else core.clone(t)


def _zero_grad_unary(name, fn):
    # torch gives these a gradient of zero everywhere (they are flat almost everywhere)
    def op(input, *args):
        t = _t(input)
        if t.dtype.kind != "f" and name != "sign":
            return t.clone()          # integers are already whole
        return _rule(name, lambda ctx, a: np.asarray(fn(a, *args)),
                     lambda ctx, g: (np.zeros_like(g),), (t,))
    op.__name__ = op.__qualname__ = name
    return op


floor = _zero_grad_unary("floor", np.floor)
ceil = _zero_grad_unary("ceil", np.ceil)
# sign(NaN) is 0, as torch
sign = _zero_grad_unary("sign", lambda a: np.nan_to_num(np.sign(a), nan=0.0, posinf=1.0, neginf=-1.0)
                        if a.dtype.kind != "b" else a.copy())


def round(input, decimals=0):
    """Round half to even (as torch.round); the gradient is zero."""
    if not _is_int(decimals):
        raise TypeError("round: decimals must be an int, got %r" % (decimals,))
    return _zero_grad_unary("round", np.round)(input, int(decimals))


def clamp(x, min=None, max=None):
    """x limited to [min, max]; min and max may be numbers or tensors (broadcast)."""
    if not isinstance(min, core.TensorBase) and not isinstance(max, core.TensorBase):
        return core.clip(x, _number("clamp", "min", min, True), _number("clamp", "max", max, True))
    t = _t(x)
    out = t
    # with tensor bounds the gradient goes to whichever value is kept, x on a tie (as torch)
    if min is not None:
        out = core.where(_values(out < min), min, out)
    if max is not None:
        out = core.where(_values(out > max), max, out)
    return out


def _pnorm(t, p, axes, keep, name):
    def forward(ctx, a):
        with np.errstate(over="ignore", invalid="ignore"):
            return _pnorm_values(ctx, a)

    def _pnorm_values(ctx, a):
        absa = np.abs(a)
        if p == 2:
            s = np.sqrt(np.sum(a * a, axis=axes, keepdims=True))
        elif p == 1:
            s = np.sum(absa, axis=axes, keepdims=True)
        else:
            s = np.sum(absa ** p, axis=axes, keepdims=True) ** (1.0 / p)
        ctx.s = s
        return s if keep else np.squeeze(s, axis=axes) if axes is not None else s.reshape(())

    def backward(ctx, g):
        a, s = ctx.a, ctx.s
        g = np.reshape(g, s.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            if p == 1:
                return (g * np.sign(a),)
            # x |x|^(p-2) / s^(p-1), taken as 0 where the norm is 0 (as torch)
            scale = np.where(s == 0, np.zeros((), s.dtype), g / s ** (p - 1))
            return (scale * a * np.abs(a) ** (p - 2) if p != 2 else scale * a,)

    def forward_saving(ctx, a):
        ctx.a = a
        return forward(ctx, a)

    return _rule(name, forward_saving, backward, (t,))


def norm(input, p="fro", dim=None, keepdim=False, *, axis=None, keepdims=False):
    """The p-norm over dim (all elements by default): 'fro' or 2, 1, any p > 0, inf, -inf."""
    t = _t(input)
    if t.dtype.kind != "f":
        raise TypeError("norm: expected a float tensor, got dtype %s" % t.dtype)
    axes = core.normalize_axes("norm", t.shape, _axis(axis, dim, "norm"))
    keep = _keep(keepdims, keepdim)
    if p == "fro" or p is None:
        p = 2
    if isinstance(p, str) or not isinstance(p, (int, float, np.integer, np.floating)) \
            or isinstance(p, bool):
        raise ValueError("norm: p must be a number or 'fro', got %r" % (p,))
    if p == math.inf:
        return core.max(core.abs(t), axes, keep)
    if p == -math.inf:
        return core.min(core.abs(t), axes, keep)
    if p <= 0:
        raise ValueError("norm: p must be positive (or inf), got %r" % (p,))
    if p == 2:
        return core.norm(t, axes, keep)           # one node of the core
    return _pnorm(t, float(p), axes, keep, "norm")


def _check_einsum(equation, shapes):
    """The equation with explicit output and '...' spelled as letters, checked."""
    if not isinstance(equation, str):
        raise TypeError("einsum: the equation must be a string, got %s" % type(equation).__name__)
    eq = equation.replace(" ", "")
    if eq.count("->") > 1:
        raise ValueError("einsum: equation %r has more than one '->'" % equation)
    lhs, arrow, out = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise ValueError("einsum: equation %r names %d operand(s) but %d were given"
                         % (equation, len(ins), len(shapes)))
    used = set(c for c in eq if c.isalpha())
    spare = [c for c in string.ascii_letters if c not in used]
    n_ell = 0
    for sub, shape in zip(ins, shapes):
        if "..." in sub:
            n_ell = builtins.max(n_ell, len(shape) - (len(sub) - 3))
    ell = "".join(spare[:n_ell])
    subs = []
    for i, (sub, shape) in enumerate(zip(ins, shapes)):
        letters = sub.replace("...", "")
        if not builtins.all(c.isalpha() for c in letters) or sub.count("...") > 1:
            raise ValueError("einsum: operand %d's subscripts %r must be letters (and at most "
                             "one '...')" % (i, sub))
        if "..." in sub:
            k = len(shape) - len(letters)
            if k < 0:
                raise ValueError("einsum: operand %d has %d dimension(s), fewer than its "
                                 "subscripts %r" % (i, len(shape), sub))
            sub = sub.replace("...", ell[n_ell - k:] if k else "")
        if len(sub) != len(shape):
            raise ValueError("einsum: operand %d has shape %s (%d dimensions) but subscripts %r"
                             % (i, tuple(shape), len(shape), ins[i]))
        subs.append(sub)
    if arrow:
        out = out.replace("...", ell)
        if not builtins.all(c.isalpha() for c in out) or len(set(out)) != len(out):
            raise ValueError("einsum: the output subscripts %r must be distinct letters" % out)
        missing = [c for c in out if not builtins.any(c in s for s in subs)]
        if missing:
            raise ValueError("einsum: output subscript %r appears in no operand" % missing[0])
    else:
        counts = collections.Counter("".join(subs))
        out = ell + "".join(sorted(c for c in counts if counts[c] == 1 and c not in ell))
    sizes = {}
    for i, (sub, shape) in enumerate(zip(subs, shapes)):
        for c, n in zip(sub, shape):
            if sizes.get(c, n) != n and 1 not in (n, sizes[c]):
                raise ValueError("einsum: subscript %r has size %d in operand %d but %d "
                                 "elsewhere" % (c, n, i, sizes[c]))
            sizes[c] = builtins.max(sizes.get(c, n), n) if n != 1 else sizes.get(c, n)
    return subs, out


def einsum(equation, *operands):
    """Einstein summation, as torch.einsum (differentiable in every operand)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum: expected at least one operand")
    tensors = [_t(x) for x in operands]
    subs, out = _check_einsum(equation, [x.shape for x in tensors])
    dtype = _promoted([x.dtype for x in tensors])
    tensors = [x if x.dtype == dtype else x.to(dtype) for x in tensors]
    spec = ",".join(subs) + "->" + out

    def forward(ctx, *values):
        ctx.values = values
        return np.einsum(spec, *values, optimize=len(values) > 2)

    def backward(ctx, g):
        grads = []
        for i, (sub, a) in enumerate(zip(subs, ctx.values)):
            if not ctx.needs_input_grad[i]:
                grads.append(None)
                continue
            others = [s for j, s in enumerate(subs) if j != i]
            known = set(out).union(*others)
            unique = "".join(dict.fromkeys(sub))
            wanted = "".join(c for c in unique if c in known)
            terms = [out] + others
            vals = [g] + [v for j, v in enumerate(ctx.values) if j != i]
            part = np.einsum(",".join(terms) + "->" + wanted, *vals, optimize=len(vals) > 2)
            # letters only this operand has were summed away: the gradient is constant along them
            full_shape = [a.shape[sub.index(c)] for c in unique]
            shape = [part.shape[wanted.index(c)] if c in wanted else 1 for c in unique]
            part = np.transpose(part, [wanted.index(c) for c in unique if c in wanted]) \
                if wanted else part
            part = part.reshape(shape)
            # a size-1 dimension that broadcast against a larger one: sum back
            axes = tuple(k for k, (m, n) in enumerate(zip(full_shape, shape)) if m == 1 and n != 1)
            if axes:
                part = part.sum(axis=axes, keepdims=True)
            part = np.broadcast_to(part, full_shape)
            if len(unique) == len(sub):
                grads.append(np.ascontiguousarray(part))
            else:
                # repeated letters (a diagonal): write onto the diagonal of zeros
                ga = np.zeros(a.shape, dtype=g.dtype)
                np.einsum(sub + "->" + unique, ga)[...] = part
                grads.append(ga)
        return tuple(grads)

    try:
        return _rule("einsum", forward, backward, tuple(tensors))
    except ValueError as exc:
        if str(exc).startswith("einsum:"):
            raise
        raise ValueError("einsum: %s (equation %r, shapes %s)"
                         % (exc, equation, [tuple(x.shape) for x in tensors])) from None


def mm(input, mat2):
    a, b = _t(input), _t(mat2)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError("mm: expected two 2-d tensors, got shapes %s and %s"
                         % (tuple(a.shape), tuple(b.shape)))
    return core.matmul(a, b)


def bmm(input, mat2):
    a, b = _t(input), _t(mat2)
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ValueError("bmm: expected two 3-d tensors with the same batch size, got shapes "
                         "%s and %s" % (tuple(a.shape), tuple(b.shape)))
    return core.matmul(a, b)


def t(input):
    x = _t(input)
    if x.ndim > 2:
        raise ValueError("t: expects a tensor of at most 2 dimensions, got shape %s (use "
                         "transpose(dim0, dim1))" % (tuple(x.shape),))
    return x.T


def pow(input, exponent):
    return core.pow(input, exponent)


def _comparison(name, op):
    def compare(input, other):
        result = op(_t(input), other)
        if result is NotImplemented:
            raise TypeError("%s: cannot compare a tensor with %s" % (name, type(other).__name__))
        return result
    compare.__name__ = compare.__qualname__ = name
    return compare


eq = _comparison("eq", lambda a, b: a.__eq__(b))
ne = _comparison("ne", lambda a, b: a.__ne__(b))
lt = _comparison("lt", lambda a, b: a.__lt__(b))
le = _comparison("le", lambda a, b: a.__le__(b))
gt = _comparison("gt", lambda a, b: a.__gt__(b))
ge = _comparison("ge", lambda a, b: a.__ge__(b))


def _elementwise_test(name, fn):
    def test(input):
        return core.from_array(np.asarray(fn(_t(input).numpy())))
    test.__name__ = test.__qualname__ = name
    return test


isnan = _elementwise_test("isnan", np.isnan)
isinf = _elementwise_test("isinf", np.isinf)
isfinite = _elementwise_test("isfinite", np.isfinite)


def _logical(name, fn):
    def reduce(input, dim=None, keepdim=False, *, axis=None, keepdims=False):
        t = _t(input)
        axes = core.normalize_axes(name, t.shape, _axis(axis, dim, name))
        return core.from_array(np.asarray(fn(t.numpy(), axis=axes,
                                             keepdims=_keep(keepdims, keepdim))))
    reduce.__name__ = reduce.__qualname__ = name
    return reduce


any = _logical("any", np.any)
all = _logical("all", np.all)


def nonzero(input, *, as_tuple=False):
    t = _t(input)
    where_ = np.nonzero(t.numpy().reshape(1) if t.ndim == 0 else t.numpy())
    if as_tuple:
        return tuple(core.from_array(w.astype(np.int64)) for w in where_)
    return core.from_array(np.stack(where_, axis=1).astype(np.int64)
                           if where_ else np.zeros((0, 0), np.int64))


def multinomial(input, num_samples, replacement=False):
    """Indices drawn from the rows of `input` (non-negative weights), as torch.multinomial."""
    t = _t(input)
    if t.ndim not in (1, 2):
        raise ValueError("multinomial: expected a 1-d or 2-d tensor of weights, got shape %s"
                         % (tuple(t.shape),))
    if not _is_int(num_samples) or int(num_samples) <= 0:
        raise ValueError("multinomial: num_samples must be a positive int, got %r"
                         % (num_samples,))
    k = int(num_samples)
    w = np.asarray(t.numpy(), dtype=np.float64).reshape(-1, t.shape[-1])
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("multinomial: weights must be finite and non-negative")
    totals = w.sum(axis=1)
    if np.any(totals <= 0):
        raise ValueError("multinomial: every row of weights must have a positive sum")
    if not replacement and np.any(np.count_nonzero(w, axis=1) < k):
        raise ValueError("multinomial: cannot draw %d samples without replacement from a row "
                         "with fewer non-zero weights" % k)
    rows = [_generator.choice(w.shape[1], size=k, replace=bool(replacement), p=row / row.sum())
            for row in w]
    out = np.array(rows, dtype=np.int64).reshape(t.shape[:-1] + (k,))
    return core.from_array(out)


def one_hot(tensor, num_classes=-1):
    """int64 tensor with one more dimension, 1 at each value's class (as F.one_hot)."""
    values = _index_array("one_hot", tensor, "the input")
    if not _is_int(num_classes):
        raise TypeError("one_hot: num_classes must be an int, got %r" % (num_classes,))
    n = int(num_classes)
    if values.size and values.min() < 0:
        raise ValueError("one_hot: class values must be non-negative, got %d" % values.min())
    if n == -1:
        n = int(values.max()) + 1 if values.size else 0
    elif values.size and values.max() >= n:
        raise ValueError("one_hot: class value %d is out of range for num_classes=%d"
                         % (values.max(), n))
    return core.from_array((values[..., None] == np.arange(n)).astype(np.int64))


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input, pad, mode="constant", value=None):
    """Pad the last len(pad) // 2 dimensions, as F.pad: pad = (left, right, top, bottom, ...)."""
    t = _t(input)
    if not isinstance(pad, (tuple, list)) or len(pad) % 2 or \
            not builtins.all(_is_int(p) for p in pad):
        raise ValueError("pad: pad must be a tuple of an even number of ints, got %r" % (pad,))
    if len(pad) // 2 > t.ndim:
        raise ValueError("pad: %d values pad %d dimensions but the input has %d (shape %s)"
                         % (len(pad), len(pad) // 2, t.ndim, tuple(t.shape)))
    if mode not in _PAD_MODES:
        raise ValueError("pad: mode must be one of %s, got %r" % (", ".join(_PAD_MODES), mode))
    if value is not None and mode != "constant":
        raise ValueError("pad: value is only used with mode='constant'")
    out = t
    for i in range(len(pad) // 2):
        d = t.ndim - 1 - i
        left, right = int(pad[2 * i]), int(pad[2 * i + 1])
        n = out.shape[d]
        if n + left + right < 0:
            raise ValueError("pad: padding %s makes dimension %d of size %d negative"
                             % ((left, right), d, n))
        lead = (slice(None),) * d
        if mode == "constant":
            # negative padding crops, as torch
            out = out[lead + (slice(builtins.max(-left, 0), n - builtins.max(-right, 0)),)]
            fill = 0 if value is None else value
            parts = []
            for k in (builtins.max(left, 0), None, builtins.max(right, 0)):
                if k is None:
                    parts.append(out)
                elif k:
                    shape = list(out.shape)
                    shape[d] = k
                    parts.append(full(tuple(shape), float(fill) if out.dtype.kind == "f"
                                      else fill, dtype=out.dtype))
            out = core.cat(parts, d) if len(parts) > 1 else out
            continue
        if left < 0 or right < 0:
            raise ValueError("pad: negative padding needs mode='constant', got %r" % (pad,))
        pos = np.arange(-left, n + right)
        if mode == "replicate":
            idx = np.clip(pos, 0, n - 1)
        elif mode == "circular":
            if left > n or right > n:
                raise ValueError("pad: circular padding %s is larger than dimension %d of size %d"
                                 % ((left, right), d, n))
            idx = pos % n
        else:
            if left >= n or right >= n:
                raise ValueError("pad: reflect padding %s must be smaller than dimension %d of "
                                 "size %d" % ((left, right), d, n))
            period = 2 * (n - 1)
            idx = np.abs(pos) % period if period else np.zeros_like(pos)
            idx = np.where(idx >= n, period - idx, idx)
        if n == 0:
            raise ValueError("pad: cannot %s-pad an empty dimension %d" % (mode, d))
        out = out[lead + (idx,)]
    return out


# The method forms (t.gather(dim, index), ...): the same functions, `self` first.
for _name in ("gather", "index_select", "scatter", "scatter_add", "masked_fill", "sort",
              "argsort", "topk", "cumsum", "tril", "triu", "roll", "split", "chunk", "repeat",
              "contiguous", "floor", "ceil", "sign", "round", "norm", "mm", "bmm", "t", "pow",
              "eq", "ne", "lt", "le", "gt", "ge", "isnan", "isinf", "isfinite", "any", "all",
              "nonzero", "multinomial", "einsum", "take_along_dim"):
    if _name != "einsum":
        setattr(Tensor, _name, globals()[_name])
del _name


def _flip_method(self, *dims):
    return flip(self, *dims)


Tensor.flip = _flip_method
Tensor.masked_fill_ = _masked_fill_
Tensor.normal_ = _normal_
Tensor.uniform_ = _uniform_


# ---------------------------------------------------------------------------
# Pickling and copying (see Tensor.__reduce_ex__)
# ---------------------------------------------------------------------------

def _own_values(t):
    """Just t's elements as one C-contiguous ndarray (not any base they live in)."""
    values = np.asarray(t.numpy())
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
    new = _rebuild_tensor(type(t), np.array(t.numpy(), order="C", copy=True), t.requires_grad)
    # Registered before the grad and the attributes are copied, so that they
    # may refer back to t and still get this one copy.
    memo[id(t)] = new
    if keep_grad and t.grad is not None:
        new.grad = copy.deepcopy(t.grad, memo)
    attributes = _attributes(t)
    if attributes:
        new.__dict__.update(copy.deepcopy(attributes, memo))
    return new
