"""Pooling layers: max and average pooling by the im2col gather of nn/conv.py, adaptive
average pooling by two averaging matrices.

Max and average pooling fold the channels into the batch, gather every window
with the patch gather of nn/conv.py (padding reads -inf for max, 0 for
average) and reduce over the window axis; windows that tile the input (2x2
stride 2, the common case) skip the gather and combine strided views.  On the
gather path the max reduction shares the gradient between tied maxima (as
fastgrad's `max` does) where torch's max_pool sends all of it to the first;
the tiled path follows torch.  They agree whenever a window's maximum is
unique (always, for continuous inputs; a tie of zeros after a ReLU gets no
gradient either way).
Adaptive average pooling over windows of uneven size is separable: rows then
columns, each one matmul by a constant (out, in) averaging matrix.
"""
import itertools
import math

import numpy as np

from .._core import fused
from ..autograd import _ArrayFunction as Function
from ..tensor import tensor as _new_tensor
from .conv import as_tensor, cached, ntuple, gather_patches, is_int, _shape
from .module import Module


def _split_input(name, nd, input):
    return _split_shape(name, nd, _shape(input))


def _split_shape(name, nd, shape):
    if len(shape) not in (nd + 1, nd + 2):
        raise ValueError("%s: expected a %dD (unbatched) or %dD (batched) input, got shape %s"
                         % (name, nd + 1, nd + 2, shape))
    lead = shape[:-nd]
    if any(n == 0 for n in shape[-nd:]):
        raise ValueError("%s: the input's spatial size must be non-zero, got shape %s"
                         % (name, shape))
    return lead, shape[-nd:]


def _window_config(name, nd, input, kernel_size, stride, padding, dilation, ceil_mode,
                   pad_rule):
    """(lead, spatial, kernel, stride, pad, dilation, hi, out) of pooling `input`, checked.

    Cached on the input's shape and the arguments (conv.cached).
    """
    args = (name, nd, _shape(input), kernel_size, stride, padding, dilation, ceil_mode,
            pad_rule)
    return cached(_window_geometry, args)


def _window_geometry(name, nd, shape, kernel_size, stride, padding, dilation, ceil_mode,
                     pad_rule):
    kernel = ntuple(name, "kernel_size", kernel_size, nd, 1)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) \
        else ntuple(name, "stride", stride, nd, 1)
    pad = ntuple(name, "padding", padding, nd, 0)
    dilation = ntuple(name, "dilation", dilation, nd, 1)
    if any(p > k // 2 for p, k in zip(pad, kernel)):
        raise ValueError("%s: padding should be at most half of the %s, got padding=%s and "
                         "kernel_size=%s" % (name, pad_rule, pad, kernel))
    lead, spatial = _split_shape(name, nd, shape)
    out, hi = [], []
    for size, k, s, p, d in zip(spatial, kernel, stride, pad, dilation):
        span = d * (k - 1) + 1
        room = size + 2 * p - span
        n = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (n - 1) * s >= size + p:
            n -= 1                    # the last window must start inside the input or left pad
        out.append(n)
        # the high-side extent that yields n windows (windows past the input read padding)
        hi.append((n - 1) * s + span - size - p)
    if any(n < 1 for n in out):
        raise ValueError("%s: the output would be empty: input of shape %s with kernel_size=%s, "
                         "stride=%s, padding=%s, dilation=%s gives output size %s"
                         % (name, shape, kernel, stride, pad, dilation, tuple(out)))
    return lead, spatial, kernel, stride, pad, dilation, tuple(hi), tuple(out)


def _windows(input, lead, spatial, kernel, stride, pad, dilation, hi, fill):
    """Every window, shape (B, L, K): B = the leading axes folded, L = the output positions."""
    key = (1, spatial, kernel, stride, dilation, pad, hi, "zeros")
    cols, index, _ = gather_patches(input.reshape(-1, int(np.prod(spatial))), key, fill)
    return cols, index


def _tile(spatial, kernel, stride, pad, dilation, out):
    """Whether the windows tile the input exactly: stride = kernel, no padding or
    dilation, sizes divisible (the common 2x2 case).  Pooling then needs no gather
    and no scatter."""
    return (stride == kernel and not any(pad) and all(d == 1 for d in dilation)
            and all(o * k == s for o, k, s in zip(out, kernel, spatial)))


def _tiles(input, kernel):
    """The prod(kernel) strided views input[..., i::k1, j::k2] of tiling windows, one
    per window offset: average pooling is their sum, measured 17x faster than NumPy's
    sum over the two window axes of a reshaped input, which strides badly."""
    return [input[(Ellipsis,) + tuple(slice(i, None, k) for i, k in zip(offset, kernel))]
            for offset in itertools.product(*(range(k) for k in kernel))]


class _TiledMax(Function):
    """The maximum over tiling windows (_tile), by the core's fused kernels
    (fused_reference.max_pool2d_forward / _backward; C loops on the compiled core).

    A Function so that, as torch's max_pool, the whole gradient of a window goes
    to one element, its first maximum in scan order (the first NaN where there is
    one); a tree of `maximum` nodes would share it between ties, and cost three
    nodes per 2x2 window.  1-d windows are 2-d ones of height 1.
    """

    @staticmethod
    def forward(ctx, x, *kernel):
        kh, kw = kernel if len(kernel) == 2 else (1, kernel[0])
        lead = x.shape[:x.ndim - len(kernel)]
        height = x.shape[-2] if len(kernel) == 2 else 1
        out, arg = fused.max_pool2d_forward(x.reshape(-1, height, x.shape[-1]), kh, kw)
        ctx.save_for_backward(arg, kh, kw, x.shape, len(kernel))
        return out.reshape(lead + tuple(s // k for s, k in zip(x.shape[len(lead):], kernel)))

    @staticmethod
    def backward(ctx, g):
        arg, kh, kw, shape, nd = ctx.saved_tensors
        gx = fused.max_pool2d_backward(g.reshape(arg.shape), arg, kh, kw).reshape(shape)
        return (gx,) + (None,) * nd


def _pairwise(combine, views):
    # a balanced tree of additions
    while len(views) > 1:
        views = [combine(views[i], views[i + 1]) if i + 1 < len(views) else views[i]
                 for i in range(0, len(views), 2)]
    return views[0]


def max_pool(name, nd, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
             return_indices=False):
    input = as_tensor(name, input)
    lead, spatial, kernel, stride, pad, dilation, hi, out = _window_config(
        name, nd, input, kernel_size, stride, padding, dilation, ceil_mode,
        "effective kernel size")
    if not return_indices and _tile(spatial, kernel, stride, pad, dilation, out):
        return _TiledMax.apply(input, *kernel)
    cols, index = _windows(input, lead, spatial, kernel, stride, pad, dilation, hi, -math.inf)
    result = cols.amax(axis=2).reshape(lead + out)
    if not return_indices:
        return result
    # torch's indices: the flat position of the maximum inside its (unpadded) input plane
    first = np.argmax(cols.numpy(), axis=2)
    where = index[first, np.arange(index.shape[1])[None, :]]
    return result, _new_tensor(where.reshape(lead + out).astype(np.int64))


def avg_pool(name, nd, input, kernel_size, stride=None, padding=0, ceil_mode=False,
             count_include_pad=True, divisor_override=None):
    input = as_tensor(name, input)
    if divisor_override is not None and (not is_int(divisor_override) or divisor_override == 0):
        raise ValueError("%s: divisor_override must be a non-zero integer or None, got %r"
                         % (name, divisor_override))
    lead, spatial, kernel, stride, pad, dilation, hi, out = _window_config(
        name, nd, input, kernel_size, stride, padding, 1, ceil_mode, "kernel size")
    if _tile(spatial, kernel, stride, pad, (1,) * nd, out):
        total = _pairwise(lambda a, b: a + b, _tiles(input, kernel)).reshape(lead + (-1,))
    else:
        cols, _ = _windows(input, lead, spatial, kernel, stride, pad, dilation, hi, 0.0)
        total = cols.sum(axis=2)
    if divisor_override is not None:
        divisor = np.full(total.shape[-1], float(divisor_override))
    else:
        # torch's divisor: the window clipped to the padded input (count_include_pad), or
        # to the input itself
        divisor = np.ones((1,) * nd)
        for d, (size, k, s, p, n) in enumerate(zip(spatial, kernel, stride, pad, out)):
            start = np.arange(n) * s - p
            end = np.minimum(start + k, size + p)
            if not count_include_pad:
                start, end = np.maximum(start, 0), np.minimum(end, size)
            shape = [1] * nd
            shape[d] = n
            divisor = divisor * (end - start).reshape(shape)
        divisor = divisor.reshape(-1)
    return (total / divisor.astype(input.dtype)).reshape(lead + out)


def _averaging_matrix(size, n, dtype):
    # torch's adaptive windows: [floor(i * size / n), ceil((i + 1) * size / n))
    m = np.zeros((n, size), dtype=dtype)
    for i in range(n):
        start, end = (i * size) // n, -(-((i + 1) * size) // n)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(name, nd, input, output_size):
    input = as_tensor(name, input)
    lead, spatial = _split_input(name, nd, input)
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * nd
    if len(sizes) != nd or not all(s is None or (is_int(s) and s > 0) for s in sizes):
        raise ValueError("%s: output_size must be a positive int or a tuple of %d positive ints "
                         "(or None to keep a size), got %r" % (name, nd, output_size))
    sizes = tuple(spatial[d] if s is None else int(s) for d, s in enumerate(sizes))
    x = input
    if nd == 2:
        rows = _new_tensor(_averaging_matrix(spatial[0], sizes[0], input.dtype))
        x = rows @ x                                              # (..., oh, W)
    cols = _new_tensor(np.ascontiguousarray(
        _averaging_matrix(spatial[-1], sizes[-1], input.dtype).T))
    return x @ cols


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                    return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                    return_indices)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    return avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                    count_include_pad)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    return avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                    count_include_pad, divisor_override)


def adaptive_avg_pool1d(input, output_size):
    return adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input, output_size):
    return adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


class _MaxPoolNd(Module):
    _nd = 0

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        self.kernel_size = ntuple(name, "kernel_size", kernel_size, nd, 1)
        self.stride = self.kernel_size if stride is None else ntuple(name, "stride", stride, nd, 1)
        self.padding = ntuple(name, "padding", padding, nd, 0)
        self.dilation = ntuple(name, "dilation", dilation, nd, 1)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError("%s: padding should be at most half of the effective kernel size, "
                             "got padding=%s and kernel_size=%s"
                             % (name, self.padding, self.kernel_size))
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)

    def forward(self, input):
        return max_pool(type(self).__name__, self._nd, input, self.kernel_size, self.stride,
                        self.padding, self.dilation, self.ceil_mode, self.return_indices)

    def extra_repr(self):
        return "kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s" % (
            self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)


class MaxPool1d(_MaxPoolNd):
    _nd = 1


class MaxPool2d(_MaxPoolNd):
    _nd = 2


class _AvgPoolNd(Module):
    _nd = 0

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        self.kernel_size = ntuple(name, "kernel_size", kernel_size, nd, 1)
        self.stride = self.kernel_size if stride is None else ntuple(name, "stride", stride, nd, 1)
        self.padding = ntuple(name, "padding", padding, nd, 0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError("%s: padding should be at most half of the kernel size, got "
                             "padding=%s and kernel_size=%s"
                             % (name, self.padding, self.kernel_size))
        if divisor_override is not None and (not is_int(divisor_override)
                                             or divisor_override == 0):
            raise ValueError("%s: divisor_override must be a non-zero integer or None, got %r"
                             % (name, divisor_override))
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self.divisor_override = divisor_override

    def forward(self, input):
        if self._nd == 1:
            return avg_pool(type(self).__name__, 1, input, self.kernel_size, self.stride,
                            self.padding, self.ceil_mode, self.count_include_pad)
        return avg_pool(type(self).__name__, 2, input, self.kernel_size, self.stride,
                        self.padding, self.ceil_mode, self.count_include_pad,
                        self.divisor_override)

    def extra_repr(self):
        return "kernel_size=%s, stride=%s, padding=%s" % (self.kernel_size, self.stride,
                                                          self.padding)


class AvgPool1d(_AvgPoolNd):
    _nd = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


class AvgPool2d(_AvgPoolNd):
    _nd = 2


class _AdaptiveAvgPoolNd(Module):
    _nd = 0

    def __init__(self, output_size):
        super().__init__()
        nd = self._nd
        sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * nd
        if len(sizes) != nd or not all(s is None or (is_int(s) and s > 0) for s in sizes):
            raise ValueError("%s: output_size must be a positive int or a tuple of %d positive "
                             "ints (or None to keep a size), got %r"
                             % (type(self).__name__, nd, output_size))
        self.output_size = output_size

    def forward(self, input):
        return adaptive_avg_pool(type(self).__name__, self._nd, input, self.output_size)

    def extra_repr(self):
        return "output_size=%r" % (self.output_size,)


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    _nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    _nd = 2
