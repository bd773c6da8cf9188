"""Tensors among other array libraries: NumPy ufuncs and DLPack.

* `np.exp(t)` and friends: NumPy hands a ufunc call with a tensor operand to
  `Tensor.__array_ufunc__`, which runs fastgrad's own op, so the result is a
  differentiable tensor.  A ufunc fastgrad has no op for, a ufunc method
  other than a plain call (`np.add.reduce`, `np.add.at`, ...) or an `out=`
  argument raises TypeError saying what to do, rather than quietly giving an
  ndarray that autograd cannot see.
* DLPack: `t.__dlpack__()` exports the tensor's memory (zero copy) through
  NumPy's exporter, so `np.from_dlpack(t)` and `torch.from_dlpack(t)` share
  it; `fg.from_dlpack(x)` imports any CPU DLPack producer (a NumPy array, a
  PyTorch tensor, ...) as a tensor sharing its memory.  As with `.data`,
  writes made through the other library are not seen by autograd's version
  counter.
"""
import numpy as np

from ._core import core

__all__ = ["array_ufunc", "from_dlpack"]


def _ufunc_ops():
    # ufunc -> fastgrad op taking the ufunc's positional operands
    ops = {
        np.add: core.add, np.subtract: core.sub, np.multiply: core.mul,
        np.true_divide: core.div, np.negative: core.neg, np.power: core.pow,
        np.matmul: core.matmul, np.exp: core.exp, np.log: core.log, np.sqrt: core.sqrt,
        np.absolute: core.abs, np.sin: core.sin, np.cos: core.cos, np.tanh: core.tanh,
        np.maximum: core.maximum, np.minimum: core.minimum,
    }
    for ufunc in (np.less, np.less_equal, np.greater, np.greater_equal, np.equal,
                  np.not_equal, np.isnan, np.isinf, np.isfinite, np.sign, np.floor, np.ceil):
        ops[ufunc] = None          # not differentiable: computed on the values
    return ops


_OPS = _ufunc_ops()


def _values(x):
    return x.numpy() if isinstance(x, core.TensorBase) else x


def array_ufunc(ufunc, method, inputs, kwargs):
    """Tensor.__array_ufunc__: NumPy's ufunc call with tensor operands."""
    name = "np." + ufunc.__name__
    if method != "__call__":
        raise TypeError("%s.%s on a tensor: only plain calls of NumPy ufuncs are supported; use "
                        "the tensor's methods (t.sum(), ...) or apply it to t.numpy()"
                        % (name, method))
    if kwargs.get("out") is not None:
        raise TypeError("%s(..., out=...) on a tensor: fastgrad does not write into given outputs; "
                        "assign the result instead, or use t.numpy() for NumPy's in-place form"
                        % name)
    extra = sorted(k for k in kwargs if k != "out")
    if ufunc not in _OPS:
        raise TypeError("%s is not a differentiable op of fastgrad; apply it to t.numpy() to "
                        "compute it on the values (no gradient)" % name)
    op = _OPS[ufunc]
    if extra:
        raise TypeError("%s on a tensor: the arguments %s are not supported"
                        % (name, ", ".join(extra)))
    if op is None:
        result = ufunc(*[_values(x) for x in inputs])
        return core.from_array(np.asarray(result))
    return op(*inputs)


def from_dlpack(x):
    """A tensor sharing the memory of `x`, any object that exports DLPack on the CPU."""
    if isinstance(x, core.TensorBase):
        return x.detach()
    if not hasattr(x, "__dlpack__"):
        raise TypeError("from_dlpack: %s does not export DLPack (no __dlpack__ method)"
                        % type(x).__name__)
    try:
        arr = np.from_dlpack(x)
    except (BufferError, RuntimeError, TypeError) as exc:
        raise TypeError("from_dlpack: could not import %s: %s" % (type(x).__name__, exc)) from None
    if arr.dtype.kind not in "biuf":
        raise TypeError("from_dlpack: fastgrad has no tensors of dtype %s" % arr.dtype)
    return core.from_array(arr)
