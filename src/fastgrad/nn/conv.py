"""Conv1d and Conv2d by im2col: one gather of the patches and one matrix product.

For an input of shape (N, C, *spatial) the patches are gathered from the
input flattened to (N, C * prod(spatial)) with one integer-array index of
shape (N, L, C * prod(kernel)), L being the number of output positions:
channels last, so that the patches of the whole batch are one (N * L, C * K)
matrix and the weight, flattened to (out_channels, C * K), multiplies them
in one GEMM (per group).  The index depends only on the input's shape and
the kernel configuration, so it is built once with NumPy and cached.

Padding costs no padded copy of the input: the flattened rows get one extra
column holding the padding value and every patch position that falls outside
the input points at it.  The other padding modes (reflect, replicate,
circular) only change where those positions point.  The gradient of the
gather is the scatter-add of integer-array indexing, which is exactly
col2im; it is done as a gather through a cached inverse index (see
batched_index).  A convolution is one node (`_Convolution`: gather, product,
bias and their gradients, NumPy on arrays), so it has no rule in either core
and runs on both.

The same index serves the pooling layers (nn/pooling.py, through
gather_patches), with the channels folded into the batch and -inf (max) or 0
(average) as the padding value.
"""
import functools
import math

import numpy as np

from .._core import core, fused
from ..autograd import FunctionCtx, _ArrayFunction as Function
from ..tensor import get_default_dtype, tensor as _new_tensor
from . import init
from .module import Module
from .parameter import Parameter

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _shape(t):
    return tuple(int(n) for n in t.shape)


def as_tensor(name, x):
    if isinstance(x, core.TensorBase):
        return x
    if isinstance(x, np.ndarray):
        return _new_tensor(x)
    raise TypeError("%s: expected a tensor as input, got %s" % (name, type(x).__name__))


def is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def ntuple(name, what, value, n, minimum):
    """An int or a sequence of n ints as a tuple of n ints, each >= minimum."""
    if is_int(value):
        values = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(is_int(v) for v in value):
        values = tuple(int(v) for v in value)
    else:
        raise ValueError("%s: %s must be an int or a tuple of %d ints, got %r"
                         % (name, what, n, value))
    if any(v < minimum for v in values):
        raise ValueError("%s: %s must be >= %d in every dimension, got %r"
                         % (name, what, minimum, value))
    return values


_PLANS = {}


def cached(fn, args):
    """fn(*args), remembered: the layers check their arguments and plan their work
    once per configuration, not every step.  The key holds each argument's type and
    those of a tuple's items, so that 1, 1.0 and True (equal as keys) are checked
    apart; unhashable arguments (lists) skip the cache.  Errors are not kept."""
    key = (fn,) + tuple((type(a), tuple(map(type, a)) if type(a) is tuple else (), a)
                        for a in args)
    try:
        return _PLANS[key]
    except KeyError:
        pass
    except TypeError:                                   # unhashable
        return fn(*args)
    value = fn(*args)
    if len(_PLANS) >= 1024:
        _PLANS.clear()
    _PLANS[key] = value
    return value


def _axis_positions(size, k, stride, dilation, lo, hi, mode):
    """Input position of kernel tap i at output position o, shape (k, out), and which are inside."""
    out = (size + lo + hi - dilation * (k - 1) - 1) // stride + 1
    pos = (np.arange(out) * stride)[None, :] - lo + (np.arange(k) * dilation)[:, None]
    valid = (pos >= 0) & (pos < size)
    if mode == "zeros":
        pos = np.where(valid, pos, 0)
    else:
        if mode == "reflect":
            pos = np.abs(pos)
            pos = np.where(pos >= size, 2 * (size - 1) - pos, pos)
        elif mode == "replicate":
            pos = np.clip(pos, 0, size - 1)
        else:                                   # circular
            pos = pos % size
        valid = np.ones(pos.shape, dtype=bool)
    return pos, valid


@functools.lru_cache(maxsize=256)
def patch_index(channels, spatial, kernel, stride, dilation, pad_lo, pad_hi, mode):
    """The im2col index, its output spatial shape and whether it points at the padding column.

    The index has shape (channels * prod(kernel), prod(out)) and addresses a row
    of channels * prod(spatial) + 1 values, the last one being the padding value;
    rows are ordered channel-major, then kernel taps, as a flattened weight.
    """
    nd = len(spatial)
    strides = [int(np.prod(spatial[d + 1:], dtype=np.int64)) for d in range(nd)]
    flat = np.zeros((1,) * (2 * nd), dtype=np.int64)
    inside = np.ones((1,) * (2 * nd), dtype=bool)
    for d in range(nd):
        pos, valid = _axis_positions(spatial[d], kernel[d], stride[d], dilation[d],
                                     pad_lo[d], pad_hi[d], mode)
        shape = [1] * (2 * nd)
        shape[d], shape[nd + d] = pos.shape
        flat = flat + pos.reshape(shape) * strides[d]
        inside = inside & valid.reshape(shape)
    size = int(np.prod(spatial, dtype=np.int64))
    full = np.arange(channels, dtype=np.int64).reshape((-1,) + (1,) * (2 * nd)) * size + flat
    needs_pad = not bool(inside.all())
    if needs_pad:
        full = np.where(inside, full, channels * size)
    out = tuple(int(n) for n in flat.shape[nd:])
    index = np.ascontiguousarray(full.reshape(channels * int(np.prod(kernel)), -1))
    index.setflags(write=False)
    return index, out, needs_pad


@functools.lru_cache(maxsize=256)
def batched_index(batch, width, size, index_key):
    """The patch index over a whole batch, channels last, and its inverse, for rows
    `width` long of which the first `size` are the input (the rest the padding value).

    flat (batch, L, K): where each patch entry is read from, in the rows flattened to
    one vector.  inverse (m, batch * size): for each input position, the patch entries
    that read it (m at most K), padded with the index one past the last entry; col2im is
    then one gather and one sum, g_padded[inverse].sum(axis=0), measured ~4x faster
    here than np.bincount over flat and ~15x faster than np.add.at.
    """
    index = patch_index(*index_key)[0]
    flat = index.T[None, :, :] + (np.arange(batch, dtype=np.int64) * width)[:, None, None]
    positions = flat.reshape(-1)
    row, col = np.divmod(positions, width)
    real = np.flatnonzero(col < size)                  # entries that read the input itself
    target = row[real] * size + col[real]
    order = np.argsort(target, kind="stable")
    counts = np.bincount(target, minlength=batch * size)
    starts = np.cumsum(counts) - counts
    sorted_target = target[order]
    rank = np.arange(len(order)) - starts[sorted_target]
    inverse = np.full((batch * size, max(int(counts.max(initial=0)), 1)), positions.size,
                      dtype=np.int64)
    inverse[sorted_target, rank] = real[order]
    inverse = np.ascontiguousarray(inverse.T)         # summing whole rows is the fast way
    flat = np.ascontiguousarray(flat)
    flat.setflags(write=False)
    inverse.setflags(write=False)
    return flat, inverse


def _pad_rows(rows, width, fill):
    # rows (B, size) -> (B, width), the extra columns holding `fill`
    batch, size = rows.shape
    if width == size:
        return rows
    return np.concatenate([rows, np.full((batch, width - size), fill, rows.dtype)], 1)


def _col2im(g, inverse, batch, size):
    # the gradient of the patch gather: each entry's gradient summed where it was read
    padded = np.concatenate([g.reshape(-1), np.zeros(1, dtype=g.dtype)])
    return np.take(padded, inverse).sum(axis=0).reshape(batch, size)


class _Patches(Function):
    """rows (B, R) -> patches (B, L, K): rows[b, index[k, l]], where index R reads `fill`.

    The values of integer-array indexing of the padded rows, and its gradient
    (col2im).  A Function, not the index op, for speed: the op checks its key by
    indexing once more, pads through a cat node, and scatters with np.add.at;
    here the scatter is a gather through the cached inverse index.
    """

    @staticmethod
    def forward(ctx, rows, flat, inverse, width, fill):
        ctx.save_for_backward(inverse, *rows.shape)
        return np.take(_pad_rows(rows, width, fill).reshape(-1), flat)

    @staticmethod
    def backward(ctx, g):
        inverse, batch, size = ctx.saved_tensors
        return _col2im(g, inverse, batch, size), None, None, None, None


def gather_patches(rows, index_key, fill):
    """rows (B, R) -> (B, L, K) patches for patch_index(*index_key), padding reading `fill`."""
    index, out, needs_pad = patch_index(*index_key)
    size = rows.shape[1]
    width = size + (1 if needs_pad else 0)
    flat, inverse = batched_index(rows.shape[0], width, size, index_key)
    return _Patches.apply(rows, flat, inverse, width, float(fill)), index, out


class _TapPatches:
    """The patches of a zero-padded convolution of up to two dimensions: the core's
    fused im2col / col2im (a 1-d one is a 2-d one of height 1)."""

    def __init__(self, plane, kernel, stride, pad, dilation, out):
        if len(plane) == 1:                   # height 1: one row, one tap, no padding
            plane, kernel, stride, pad, dilation, out = (
                (first,) + t for first, t in zip((1, 1, 1, 0, 1, 1),
                                                  (plane, kernel, stride, pad, dilation, out)))
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel, stride, pad, dilation, out
        self.plane = plane
        self.geometry = (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)

    def gather(self, x):
        x = x.reshape(x.shape[:2] + self.plane)
        return fused.im2col(x, *self.geometry)

    def scatter(self, g, shape):
        return fused.col2im(g, shape[:2] + self.plane, *self.geometry).reshape(shape)


class _IndexPatches:
    """The patches of any padding mode, through the cached index of batched_index."""

    def __init__(self, flat, inverse, width):
        self.flat, self.inverse, self.width = flat, inverse, width

    def gather(self, x):
        rows = x.reshape(x.shape[0], -1)
        cols = np.take(_pad_rows(rows, self.width, 0.0).reshape(-1), self.flat)
        return cols.reshape(-1, cols.shape[-1])

    def scatter(self, g, shape):
        return _col2im(g, self.inverse, shape[0], int(np.prod(shape[1:]))).reshape(shape)


class _Convolution(Function):
    """x (N, C, *spatial), weight (O, C/g, *kernel)[, bias (O,)] -> (N, O, L), the
    patches from ctx.patches (_TapPatches or _IndexPatches).

    The patches (N*L, C*K) of the batch times the flattened weight, one GEMM per
    group (measured 1.2-2.5x faster on the digits CNN's shapes than one product per
    sample, at one BLAS thread and at two), then the bias.  Backward: the weight's
    gradient is g^T @ patches, the bias's the sum of g over the batch and positions,
    the input's col2im of g @ weight.
    """

    @staticmethod
    def forward(ctx, x, weight, groups, bias=None):
        cols = ctx.patches.gather(x)                                     # (N*L, C*K)
        n, (nl, taps) = x.shape[0], cols.shape
        o = weight.shape[0]
        per = cols.reshape(nl, groups, taps // groups).transpose(1, 0, 2)     # (g, NL, t)
        w = weight.reshape(groups, o // groups, taps // groups)
        y = np.matmul(per, w.transpose(0, 2, 1))                          # (g, NL, O/g)
        y = y.transpose(1, 0, 2).reshape(n, nl // n, o)
        if bias is not None:
            y += bias                                     # y is the product's own memory
        ctx.save_for_backward(per, w, weight.shape, x.shape, bias is not None)
        return np.ascontiguousarray(y.transpose(0, 2, 1))

    @staticmethod
    def backward(ctx, g):
        per, w, wshape, xshape, has_bias = ctx.saved_tensors
        groups, nl, t = per.shape
        o = w.shape[0] * w.shape[1]
        g3 = g.reshape(xshape[0], o, -1)                                  # (N, O, L)
        gy = np.ascontiguousarray(g3.transpose(0, 2, 1)).reshape(nl, groups, -1)
        gy = gy.transpose(1, 0, 2)                                        # (g, NL, O/g)
        gw = None
        if ctx.needs_input_grad[1]:
            gw = np.matmul(gy.transpose(0, 2, 1), per).reshape(wshape)
        gb = np.einsum("nol->o", g3) if has_bias and ctx.needs_input_grad[3] else None
        gx = None
        if ctx.needs_input_grad[0]:
            gcols = np.matmul(gy, w).transpose(1, 0, 2).reshape(nl, -1)   # (NL, C*K)
            gx = ctx.patches.scatter(gcols, xshape)
        return (gx, gw, None) + ((gb,) if has_bias else ())


def resolve_padding(name, padding, nd, kernel, dilation, stride):
    """(pad_lo, pad_hi) per spatial dimension from an int, a tuple, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * nd, (0,) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("%s: padding='same' is not supported for strided convolutions "
                                 "(stride=%s)" % (name, stride))
            # the total d*(k-1); when odd, the extra one goes after, as torch does
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            lo = tuple(t // 2 for t in total)
            return lo, tuple(t - l for t, l in zip(total, lo))
        raise ValueError("%s: padding must be 'valid', 'same', an int or a tuple of %d ints, "
                         "got %r" % (name, nd, padding))
    pad = ntuple(name, "padding", padding, nd, 0)
    return pad, pad


def check_padding_mode(name, padding_mode):
    if padding_mode not in PADDING_MODES:
        raise ValueError("%s: padding_mode must be one of %s, got %r"
                         % (name, ", ".join(repr(m) for m in PADDING_MODES), padding_mode))


def convolution(name, nd, input, weight, bias, stride, padding, dilation, groups,
                padding_mode="zeros"):
    """The N-d convolution (cross-correlation, as torch) of input by weight, im2col style."""
    input = as_tensor(name, input)
    if not isinstance(weight, core.TensorBase):
        raise TypeError("%s: weight must be a tensor, got %s" % (name, type(weight).__name__))
    if bias is not None and not isinstance(bias, core.TensorBase):
        raise TypeError("%s: bias must be a tensor or None, got %s" % (name, type(bias).__name__))
    # The shapes and arguments are checked and the patches planned once per
    # configuration (a layer repeats its own every step); arguments that cannot be
    # hashed (lists) skip the cache.
    args = (name, nd, _shape(input), _shape(weight), None if bias is None else _shape(bias),
            stride, padding, dilation, groups, padding_mode)
    unbatched, batched, out, patches = cached(_conv_plan, args)
    if input.dtype != weight.dtype:
        raise TypeError("%s: input dtype %s and weight dtype %s differ; convert the input "
                        "(x.float() or x.double()) or the layer (.float() or .double())"
                        % (name, input.dtype, weight.dtype))
    ctx = FunctionCtx()
    ctx.patches = patches
    x = input.reshape(batched) if unbatched else input
    y = core.function(_Convolution, ctx, (x, weight, groups) + (() if bias is None else (bias,)))
    y = y.reshape(out)
    return y[0] if unbatched else y


def _conv_plan(name, nd, shape, wshape, bshape, stride, padding, dilation, groups,
               padding_mode):
    """(unbatched, the batched input shape, the output shape, the patches) of a
    convolution, every shape and argument checked."""
    if len(wshape) != nd + 2:
        raise ValueError("%s: weight must have %d dimensions (out_channels, in_channels/groups, "
                         "kernel...), got shape %s" % (name, nd + 2, wshape))
    if not is_int(groups) or groups < 1:
        raise ValueError("%s: groups must be a positive integer, got %r" % (name, groups))
    stride = ntuple(name, "stride", stride, nd, 1)
    dilation = ntuple(name, "dilation", dilation, nd, 1)
    check_padding_mode(name, padding_mode)
    kernel = wshape[2:]
    lo, hi = resolve_padding(name, padding, nd, kernel, dilation, stride)
    input_shape = shape
    unbatched = len(shape) == nd + 1
    if len(shape) not in (nd + 1, nd + 2):
        raise ValueError("%s: expected a %dD (unbatched) or %dD (batched) input, got shape %s"
                         % (name, nd + 1, nd + 2, shape))
    if unbatched:
        shape = (1,) + shape
    batch, channels, spatial = shape[0], shape[1], shape[2:]
    out_channels = wshape[0]
    if out_channels % groups:
        raise ValueError("%s: groups=%d must divide the weight's out_channels %d (weight of "
                         "shape %s)" % (name, groups, out_channels, wshape))
    if wshape[1] * groups != channels:
        raise ValueError("%s: expected input with %d channels (weight of shape %s, groups=%d), "
                         "got input of shape %s with %d channels"
                         % (name, wshape[1] * groups, wshape, groups, input_shape, channels))
    if bshape is not None and bshape != (out_channels,):
        raise ValueError("%s: bias must have shape (%d,) for a weight of shape %s, got %s"
                         % (name, out_channels, wshape, bshape))
    padded = tuple(s + a + b for s, a, b in zip(spatial, lo, hi))
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    if any(p < k for p, k in zip(padded, span)):
        raise ValueError("%s: the kernel %s (%s with dilation %s) is larger than the padded "
                         "input %s (input of shape %s, padding %s)"
                         % (name, kernel, span, dilation, padded, input_shape,
                            lo if lo == hi else (lo, hi)))
    if padding_mode == "reflect" and any(max(a, b) >= s for a, b, s in zip(lo, hi, spatial)):
        raise ValueError("%s: padding_mode='reflect' needs padding smaller than the input in "
                         "every dimension, got padding %s for input size %s"
                         % (name, lo if lo == hi else (lo, hi), spatial))
    if padding_mode == "circular" and any(max(a, b) > s for a, b, s in zip(lo, hi, spatial)):
        raise ValueError("%s: padding_mode='circular' needs padding at most the input size in "
                         "every dimension, got padding %s for input size %s"
                         % (name, lo if lo == hi else (lo, hi), spatial))
    out = tuple((p - k) // s + 1 for p, k, s in zip(padded, span, stride))
    if padding_mode == "zeros" and nd <= 2:
        patches = _TapPatches(spatial, kernel, stride, lo, dilation, out)
    else:
        key = (channels, spatial, kernel, stride, dilation, lo, hi, padding_mode)
        needs_pad = patch_index(*key)[2]
        size = channels * int(np.prod(spatial, dtype=np.int64))
        width = size + (1 if needs_pad else 0)
        patches = _IndexPatches(*batched_index(batch, width, size, key), width)
    return unbatched, shape, (batch, out_channels) + out, patches


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution over (N, C, L) or (C, L), as torch.nn.functional.conv1d."""
    return convolution("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution over (N, C, H, W) or (C, H, W), as torch.nn.functional.conv2d."""
    return convolution("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


class _ConvNd(Module):
    _nd = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=None):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        for what, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not is_int(value) or value < 1:
                raise ValueError("%s: %s must be a positive integer, got %r" % (name, what, value))
        if not is_int(groups) or groups < 1:
            raise ValueError("%s: groups must be a positive integer, got %r" % (name, groups))
        if in_channels % groups:
            raise ValueError("%s: in_channels=%d must be divisible by groups=%d"
                             % (name, in_channels, groups))
        if out_channels % groups:
            raise ValueError("%s: out_channels=%d must be divisible by groups=%d"
                             % (name, out_channels, groups))
        kernel = ntuple(name, "kernel_size", kernel_size, nd, 1)
        stride = ntuple(name, "stride", stride, nd, 1)
        dilation = ntuple(name, "dilation", dilation, nd, 1)
        check_padding_mode(name, padding_mode)
        resolve_padding(name, padding, nd, kernel, dilation, stride)   # checks it
        dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
        if dtype.kind != "f":
            raise TypeError("%s: dtype must be float32 or float64, got %s" % (name, dtype))
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.dilation = kernel, stride, dilation
        self.padding = padding if isinstance(padding, str) else ntuple(name, "padding",
                                                                       padding, nd, 0)
        self.groups, self.padding_mode = int(groups), padding_mode
        self.weight = Parameter(np.empty((out_channels, in_channels // groups) + kernel,
                                         dtype=dtype))
        self.bias = Parameter(np.empty((out_channels,), dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # torch's init: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        # and the bias from the same range; weight drawn first
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * int(np.prod(self.kernel_size))
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return convolution(type(self).__name__, self._nd, input, self.weight, self.bias,
                           self.stride, self.padding, self.dilation, self.groups,
                           self.padding_mode)

    def extra_repr(self):
        text = "%d, %d, kernel_size=%s, stride=%s" % (self.in_channels, self.out_channels,
                                                      self.kernel_size, self.stride)
        if self.padding != (0,) * self._nd:
            text += ", padding=%r" % (self.padding,)
        if self.dilation != (1,) * self._nd:
            text += ", dilation=%s" % (self.dilation,)
        if self.groups != 1:
            text += ", groups=%d" % self.groups
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += ", padding_mode=%r" % self.padding_mode
        return text


class Conv1d(_ConvNd):
    """1-d convolution over (N, C, L) inputs, as torch.nn.Conv1d (weight (out, in/groups, k))."""
    _nd = 1


class Conv2d(_ConvNd):
    """2-d convolution over (N, C, H, W) inputs, as torch.nn.Conv2d
    (weight (out, in/groups, kh, kw))."""
    _nd = 2
