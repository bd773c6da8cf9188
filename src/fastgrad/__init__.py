"""fastgrad: reverse-mode automatic differentiation on NumPy, with a compiled tape."""
from ._version import __version__
from ._core import core as _core_module
from .tensor import (
    Tensor, tensor, from_numpy, zeros, ones, full, empty, zeros_like, ones_like, arange, eye,
    randn, rand, randint, manual_seed, get_rng_state, set_rng_state, set_default_dtype,
    get_default_dtype,
    exp, log, sqrt, abs, sin, cos, tanh, sigmoid, relu, leaky_relu, clip, clamp,
    sum, mean, max, min, var, std, logsumexp, softmax, log_softmax, argmax, argmin,
    reshape, view, flatten, transpose, permute, squeeze, unsqueeze, expand,
    cat, concatenate, stack, where, maximum, minimum, matmul,
    FloatTensor, DoubleTensor, LongTensor, IntTensor, BoolTensor,
    empty_like, full_like, rand_like, randn_like, linspace, randperm,
    amax, amin, pow, mm, bmm, t, einsum, gather, take_along_dim, scatter, scatter_add,
    index_select, masked_fill, topk, sort, argsort, cumsum, tril, triu, roll, split, chunk,
    contiguous, flip, repeat, eq, ne, lt, le, gt, ge, round, floor, ceil, sign, norm,
    multinomial, nonzero, any, all, isnan, isinf, isfinite, one_hot, pad,
)
from ._device import device, cuda
from .autograd import (no_grad, enable_grad, set_grad_enabled, is_grad_enabled, inference_mode,
                       grad, Function, compile)

# Subpackages and helpers (each line added with its module).
from . import nn, optim, data, utils, distributed
from .training import fit, History, EarlyStopping, Callback
from .io import save, load
from .inspect import explain, draw_graph, gradcheck, GradcheckError, detect_anomaly
from ._summary import summary, ModelSummary
from ._interop import from_dlpack


# dtype names, as torch's (they are the NumPy dtypes); float16 is refused where it is used
from numpy import float32, float64, float16, int64, int32, int16, int8, uint8
from numpy import bool_ as bool
float = float32
double = float64
half = float16
long = int64
int = int32
short = int16


def backend() -> str:
    """'compiled' or 'python': the core this process runs on."""
    return _core_module.BACKEND


# What `from fastgrad import *` gives, and what type checkers take as re-exported.
__all__ = [
    "__version__", "Tensor", "tensor", "from_numpy", "zeros", "ones", "full", "empty",
    "zeros_like", "ones_like", "arange", "eye", "randn", "rand", "randint", "manual_seed",
    "get_rng_state", "set_rng_state", "set_default_dtype", "get_default_dtype", "exp", "log",
    "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "leaky_relu", "clip", "clamp",
    "sum", "mean", "max", "min", "var", "std", "logsumexp", "softmax", "log_softmax", "argmax",
    "argmin", "reshape", "view", "flatten", "transpose", "permute", "squeeze", "unsqueeze",
    "expand", "cat", "concatenate", "stack", "where", "maximum", "minimum", "matmul",
    "FloatTensor", "DoubleTensor", "LongTensor", "IntTensor", "BoolTensor", "empty_like",
    "full_like", "rand_like", "randn_like", "linspace", "randperm", "amax", "amin", "pow",
    "mm", "bmm", "t", "einsum", "gather", "take_along_dim", "scatter", "scatter_add",
    "index_select", "masked_fill", "topk", "sort", "argsort", "cumsum", "tril", "triu", "roll",
    "split", "chunk", "contiguous", "flip", "repeat", "eq", "ne", "lt", "le", "gt", "ge",
    "round", "floor", "ceil", "sign", "norm", "multinomial", "nonzero", "any", "all", "isnan",
    "isinf", "isfinite", "one_hot", "pad", "device", "cuda", "no_grad", "enable_grad",
    "set_grad_enabled", "is_grad_enabled", "inference_mode", "grad", "Function", "compile",
    "nn", "optim", "data", "utils", "distributed", "fit", "History", "EarlyStopping",
    "Callback", "save", "load", "explain", "draw_graph", "gradcheck", "GradcheckError",
    "detect_anomaly", "summary", "ModelSummary", "from_dlpack", "float32", "float64",
    "float16", "int64", "int32", "int16", "int8", "uint8", "bool", "float", "double", "half",
    "long", "int", "short", "backend",
]
