"""fastgrad.Tensor and the functions that create and combine tensors.

`Tensor` subclasses the chosen core's `TensorBase`, which holds the values,
the autograd node, the operators and the elementwise methods (so `y * 0.9`
and `y.tanh()` go straight into the core).  What is here is the convenience
surface: argument aliases (`dim=`/`axis=`), composite ops built from the
core's primitives (mean, var, softmax, ...), conversions and creation.
Composites live here once and therefore behave identically on both cores.
"""
import builtins
import math

import numpy as np

from ._core import core

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


def default_generator():
    """The global numpy Generator that fastgrad's random functions draw from."""
    return _generator


def _axis(axis, dim):
    if dim is not None:
        if axis is not None:
            raise TypeError("pass either axis= or dim=, not both")
        return dim
    return axis


def _keep(keepdims, keepdim):
    return bool(keepdims or keepdim)


def _to_array(data, dtype=None):
    """The array `fg.tensor(data, dtype)` holds (always a fresh copy)."""
    if isinstance(data, core.TensorBase):
        data = data.data
    if dtype is not None:
        return np.array(data, dtype=np.dtype(dtype), copy=True)
    arr = np.array(data, copy=True)
    if arr.dtype.kind == "f" and isinstance(data, (np.ndarray, np.generic)) \
            and arr.dtype in (np.float32, np.float64):
        return arr
    if arr.dtype.kind == "f":
        return arr.astype(_default_dtype)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "b":
        return arr
    raise TypeError("tensor: cannot make a tensor from data of dtype %s" % arr.dtype)


class Tensor(core.TensorBase):
    """An n-dimensional array of numbers that records how it was computed."""

    # NumPy must hand `ndarray * tensor` to our reflected operators.
    __array_ufunc__ = None

    def __init__(self, data, dtype=None, requires_grad=False):
        arr = _to_array(data, dtype)
        _check_requires_grad(arr, requires_grad)
        self._init_leaf(arr, requires_grad)

    # -- information -------------------------------------------------------
    def size(self, dim=None):
        if dim is None:
            return tuple(self.shape)
        return self.shape[dim]

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
        """A new leaf sharing these values, cut off from the graph."""
        return core.from_array(self.data)

    def clone(self):
        """A differentiable copy."""
        return core.reshape(self, self.shape)

    # -- dtype conversion (differentiable: the gradient is cast back) ----------
    def to(self, dtype):
        return core.cast(self, dtype)

    astype = to

    def float(self):
        return core.cast(self, np.float32)

    def double(self):
        return core.cast(self, np.float64)

    def long(self):
        return core.cast(self, np.int64)

    # -- reductions ------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return core.sum(self, _axis(axis, dim), _keep(keepdims, keepdim))

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        axis = _axis(axis, dim)
        n = _count(self, axis)
        return core.sum(self, axis, _keep(keepdims, keepdim)) * (1.0 / n if n else math.nan)

    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return core.max(self, _axis(axis, dim), _keep(keepdims, keepdim))

    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return core.min(self, _axis(axis, dim), _keep(keepdims, keepdim))

    def var(self, axis=None, keepdims=False, *, dim=None, keepdim=False, correction=None,
            ddof=None, unbiased=None):
        return _spread(self, "var", axis, keepdims, dim, keepdim, correction, ddof, unbiased)

    def std(self, axis=None, keepdims=False, *, dim=None, keepdim=False, correction=None,
            ddof=None, unbiased=None):
        return _spread(self, "std", axis, keepdims, dim, keepdim, correction, ddof, unbiased)

    def logsumexp(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return core.logsumexp(self, _axis(axis, dim), _keep(keepdims, keepdim))

    def softmax(self, axis=None, *, dim=None):
        return core.exp(self.log_softmax(axis, dim=dim))

    def log_softmax(self, axis=None, *, dim=None):
        axis = _axis(axis, dim)
        return self - core.logsumexp(self, -1 if axis is None else axis, True)

    def argmax(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return Tensor(np.argmax(self.data, axis=_axis(axis, dim), keepdims=_keep(keepdims, keepdim)))

    def argmin(self, axis=None, keepdims=False, *, dim=None, keepdim=False):
        return Tensor(np.argmin(self.data, axis=_axis(axis, dim), keepdims=_keep(keepdims, keepdim)))

    # -- elementwise with arguments --------------------------------------------
    def leaky_relu(self, negative_slope=0.01):
        return core.leaky_relu(self, negative_slope)

    def clip(self, min=None, max=None):
        return core.clip(self, min, max)

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
        if self.ndim == 0:
            return core.reshape(self, (1,))
        start, end = start_dim % self.ndim, end_dim % self.ndim
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
    axis = core.normalize_axes(name, x.shape, _axis(axis, dim))
    keep = _keep(keepdims, keepdim)
    dof = _count(x, axis) - _correction(correction, ddof, unbiased)
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


def _count(t, axis):
    if axis is None:
        return t.numel()
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    nd = builtins.max(t.ndim, 1)
    return int(math.prod(t.shape[a % nd] for a in axes)) if t.ndim else 1


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
    """A tensor that shares memory with `array`."""
    if not isinstance(array, np.ndarray):
        raise TypeError("from_numpy: expected an ndarray, got %s" % type(array).__name__)
    return core.from_array(array)


def _filled(shape, value, dtype, requires_grad):
    dtype = np.dtype(dtype) if dtype is not None else _default_dtype
    arr = np.full(_shape_args(shape), value, dtype=dtype)
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def zeros(*shape, dtype=None, requires_grad=False):
    return _filled(shape, 0, dtype, requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    return _filled(shape, 1, dtype, requires_grad)


def empty(*shape, dtype=None, requires_grad=False):
    return _filled(shape, 0, dtype, requires_grad)


def full(shape, fill_value, dtype=None, requires_grad=False):
    if dtype is None and isinstance(fill_value, (bool, int, np.integer)):
        dtype = np.bool_ if isinstance(fill_value, bool) else np.int64
    return _filled((shape,) if isinstance(shape, int) else (tuple(shape),), fill_value, dtype,
                   requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return _filled((tuple(np.shape(t)),), 0, dtype or np.asarray(t).dtype, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return _filled((tuple(np.shape(t)),), 1, dtype or np.asarray(t).dtype, requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        integral = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if integral else _default_dtype
    arr = np.arange(start, end, step, dtype=dtype)
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False):
    arr = np.eye(n, m, dtype=dtype or _default_dtype)
    _check_requires_grad(arr, requires_grad)
    return core.from_array(arr, requires_grad)


def randn(*shape, dtype=None, requires_grad=False):
    arr = _generator.standard_normal(_shape_args(shape)).astype(dtype or _default_dtype)
    return core.from_array(arr, requires_grad)


def rand(*shape, dtype=None, requires_grad=False):
    arr = _generator.random(_shape_args(shape)).astype(dtype or _default_dtype)
    return core.from_array(arr, requires_grad)


def randint(low, high=None, size=(), dtype=np.int64):
    if high is None:
        low, high = 0, low
    return core.from_array(_generator.integers(low, high, size=size).astype(dtype))


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
where = core.where


def leaky_relu(x, negative_slope=0.01):
    return core.leaky_relu(x, negative_slope)


def clip(x, min=None, max=None):
    return core.clip(x, min, max)


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


def cat(tensors, axis=None, *, dim=None):
    axis = _axis(axis, dim)
    return core.cat(list(tensors), 0 if axis is None else axis)


concatenate = cat


def stack(tensors, axis=None, *, dim=None):
    axis = _axis(axis, dim)
    axis = 0 if axis is None else axis
    tensors = [_t(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError("stack: all tensors must have the same shape, got %s and %s"
                             % (tuple(tensors[0].shape), tuple(t.shape)))
    return core.cat([t.unsqueeze(axis) for t in tensors], axis % (tensors[0].ndim + 1))
