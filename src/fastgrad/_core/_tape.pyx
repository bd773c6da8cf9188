# cython: language_level=3
"""fastgrad's compiled core: the functions of reference.py, in the same order.

Design
------
On small tensors the cost of autodiff is bookkeeping, not arithmetic: a
NumPy ufunc call costs ~0.5-1 us before it touches data, creating an ndarray
~60-90 ns, a cdef object ~20 ns.  So this core keeps the small-tensor path
free of NumPy calls and Python frames:

* `TensorBase` is a C struct (see _tape.pxd).  Results of native ops keep
  their values in a malloc'd block (`_buf`); an ndarray is made only when
  someone asks for the values (`.numpy()`, `.data`; it then takes the block
  over, without copying).
* Operators are C slots (`y * 0.9` never runs a Python frame).  The
  elementwise ops, full sums and their backward rules are C loops over raw
  pointers (float32 and float64 through a fused type), for operands of the
  same shape, a size-1 operand, or a Python number.
* A native node stores its inputs in two fields (`_a`, `_b`) and a constant
  (`_c`), not in a tuple: nothing is allocated per op but the result.
* Everything else (what the native paths do not take: broadcasting the
  drivers do not cover, indexing with several arrays, mixed dtypes, custom
  Functions, ...) runs the reference core's NumPy rule for that op: one
  rule per op, shared, so the two cores cannot disagree there.  Those nodes
  keep `_inputs`/`_params` as in reference.py.  So do the nodes of copying
  indexing, cat and where (_gather.pxi), whose rules are native all the
  same (`_form = FORM_LISTED`).
* The sweep is the same algorithm as reference.sweep: an iterative
  topological sort (marks in the nodes, no dict), checks first, then each
  node's rule adds its gradient into its inputs' buffers (`_g`, calloc'd on
  first use) in one fused pass (`ga[i] += g[i] * local[i]`).  A leaf's
  buffer becomes its `.grad` without a copy.
* Large transcendental forwards call NumPy's ufuncs (SIMD) into the output
  buffer; below UFUNC_MIN elements a C loop wins.

Layout, in reference.py's order
-------------------------------
  this file     op codes, thread state; tensor storage and node (TensorBase,
                apply); the elementwise dispatch (_binary, _unary and their
                node rules); the ops, one block each (an elementwise op's
                forward and derivative kernels beside its def; matmul, sum,
                linear and cross entropy with their loops, values, replay and
                backward); the table of native rules; the sweep; the replay
  _alloc.pxi    the block allocator (_mem_alloc / _mem_free)
  _loops.pxi    the loop drivers, written once and instantiated per op:
                same-shape and scalar-operand elementwise loops, in-place
                accumulate, reductions
  (end)         the native kernels kept in files of their own: _ufunc_loops.pxi,
                _pow.pxi, _broadcast.pxi, _matmul.pxi, _reduce.pxi, _views.pxi,
                _gather.pxi (an integer or bool array as the index, cat, where)
  _softmax.pxi  softmax / log_softmax along one axis, cross entropy's rows
"""
cimport cython
cimport numpy as cnp
from cpython.ref cimport PyObject, Py_DECREF, Py_REFCNT
from libc.math cimport INFINITY, NAN, fabs, erfc as c_erfc
from libc.math cimport cos as c_cos, exp as c_exp, log as c_log, pow as c_pow
from libc.math cimport sin as c_sin, sqrt as c_sqrt, tanh as c_tanh
from libc.stdlib cimport calloc, free, malloc
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

import os
import threading

import numpy as np

from . import grad_hooks as _grad_hooks
from . import reference as _ref
from .._ops import NAMES, SAVES
from .reference import (broadcast_shape, check_array, check_axis_type, check_cat,
                        check_cross_entropy, check_expand, check_layer_norm,
                        check_norm, check_spread,
                        check_index, check_linear, check_matmul,
                        check_nonempty, check_permute, check_reshape, check_softmax_axis,
                        check_where,
                        unbroadcast)

cnp.import_array()

BACKEND = "compiled"

# Op codes: the same numbers as fastgrad._ops (tests/test_agree.py checks them and
# op_codes()'s names).
cdef enum:
    LEAF = 0
    ADD = 1
    SUB = 2
    MUL = 3
    DIV = 4
    NEG = 5
    POW = 6
    MATMUL = 7
    EXP = 8
    LOG = 9
    SQRT = 10
    ABS = 11
    SIN = 12
    COS = 13
    TANH = 14
    SIGMOID = 15
    RELU = 16
    LEAKY_RELU = 17
    CLIP = 18
    SUM = 19
    MAX = 20
    MIN = 21
    LOGSUMEXP = 22
    RESHAPE = 23
    PERMUTE = 24
    EXPAND = 25
    INDEX = 26
    CAT = 27
    WHERE = 28
    MAXIMUM = 29
    MINIMUM = 30
    CAST = 31
    FUNCTION = 32
    LINEAR = 33
    CROSS_ENTROPY = 34
    CLONE = 35
    GELU = 36
    SILU = 37
    GATHER = 38
    SOFTMAX = 39
    LOG_SOFTMAX = 40
    LAYER_NORM = 41
    VAR = 42
    STD = 43
    NORM = 44
    N_OPS = 45

# dtype codes
cdef enum:
    DT_F32 = 0
    DT_F64 = 1
    DT_OTHER = 2

# Layouts of a native binary op's operands.
cdef enum:
    FORM_TT = 0      # two tensors of the same shape
    FORM_TC = 1      # tensor, Python number
    FORM_CT = 2      # Python number, tensor
    FORM_T1 = 3      # tensor, size-1 tensor
    FORM_1T = 4      # size-1 tensor, tensor
    FORM_LISTED = 5  # not an operand form: a node recorded as reference.apply records it
                     # (_inputs, _params) whose rule is the native table's row (_gather.pxi)

# Below this many elements a C loop beats a NumPy ufunc call for exp/log/...
cdef enum:
    UFUNC_MIN = 256

cdef Py_ssize_t ITEMSIZE[3]
ITEMSIZE[:] = [4, 8, 0]
cdef int TYPENUM[2]
TYPENUM[:] = [cnp.NPY_FLOAT32, cnp.NPY_FLOAT64]
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Which values each op's backward reads (from _ops.SAVES), as C flags.
cdef bint SAVES_A[N_OPS]
cdef bint SAVES_B[N_OPS]
cdef bint SAVES_OUT[N_OPS]
for _i in range(N_OPS):
    SAVES_A[_i] = "0" in SAVES[_i]
    SAVES_B[_i] = "1" in SAVES[_i]
    SAVES_OUT[_i] = "o" in SAVES[_i]

# op -> the NumPy ufunc that computes its forward on long arrays (filled by each op's block)
_UFUNCS = {}

cdef extern from "Python.h":
    ctypedef struct _PyType "PyTypeObject":
        PyObject* (*tp_new)(_PyType*, PyObject*, PyObject*)

cdef extern from *:
    """
    #ifndef FASTGRAD_BUILD
    #define FASTGRAD_BUILD "unknown build"
    #endif
    """
    const char* FASTGRAD_BUILD


def build_info():
    """How this module was compiled (Cython version, compiler, flags)."""
    return FASTGRAD_BUILD.decode()


cdef tuple _NO_ARGS = ()
cdef object _tensor_class = None     # fastgrad.Tensor, set by tensor.py
# Process-wide, like PyTorch's anomaly mode: fg.detect_anomaly also replaces
# Tensor.backward for every thread, so a per-thread hook would only cover half
# of it.  Swapping it is one pointer store under the GIL.
cdef object _node_hook = None        # called with every new node (fg.detect_anomaly)
# The references a temporary (a value no Python name holds) has when it
# reaches _binary through an operator (the interpreter's, and a's local) and
# _unary through a method call (one more: the bound call's self).  A tensor a
# name refers to has one more; tests/test_autograd.py checks both paths.
cdef Py_ssize_t TEMP_REFS_BINARY = 2
cdef Py_ssize_t TEMP_REFS_UNARY = 3
# Only arrays this big are handed on: below it a fresh block comes from the
# block cache for free and stays in cache anyway, and small graphs (the
# lectures' scalars) keep every value for fg.explain to show.
cdef Py_ssize_t TAKE_MIN = 1024
# Written only by the topological walk, always under _sweep_lock (below).
cdef long _sweep_id = 0


# Grad mode and fg.compile's recording flag are per thread, as PyTorch's grad
# mode is: a thread validating under no_grad (fit) must not stop another
# thread's recording, and one thread's recording must not change whether
# another thread's temporaries are elided.  Both live in C thread-local ints
# that start at 0 in every new thread, so 0 must mean the default: grad on,
# values not kept.  The read goes through __tls_get_addr in a shared library:
# measured with callgrind it is under 1% of the instructions of bench's perop
# workload, no slower than the global it replaced within the noise
# (docs/threads.md).
cdef extern from *:
    """
    #if defined(__cplusplus)
    #define FG_TLS thread_local
    #elif defined(_MSC_VER)
    #define FG_TLS __declspec(thread)
    #else
    #define FG_TLS _Thread_local
    #endif
    static FG_TLS int fg_grad_off = 0;
    static FG_TLS int fg_keep_values = 0;
    static inline int fg_grad_enabled(void) { return !fg_grad_off; }
    static inline void fg_set_grad_enabled(int on) { fg_grad_off = !on; }
    static inline int fg_keeps_values(void) { return fg_keep_values; }
    static inline void fg_set_keep_values(int keep) { fg_keep_values = keep != 0; }
    """
    bint fg_grad_enabled() noexcept nogil
    void fg_set_grad_enabled(bint on) noexcept nogil
    bint fg_keeps_values() noexcept nogil
    void fg_set_keep_values(bint keep) noexcept nogil


# Every sweep over a graph (backward, fg.grad, a Tape's replay) holds this lock.
# The sweep keeps scratch state in the nodes (`_g` buffers, visit marks) and
# NumPy calls inside it release the GIL, so two sweeps over shared leaves
# would interleave; serialising them is what PyTorch does for accumulation
# too.  Re-entrant: a custom Function's backward may call backward() or
# fg.grad() itself.  threading.RLock waits with the GIL released, so a thread
# blocked here never stops the holder from running.
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
    if not issubclass(cls, TensorBase):
        raise TypeError("set_tensor_class: %r does not subclass TensorBase" % (cls,))
    _tensor_class = cls


def set_node_hook(fn):
    """Call fn(node) for every node recorded from now on (None: stop); returns the old hook."""
    global _node_hook
    previous = _node_hook
    _node_hook = fn
    return previous


def is_grad_enabled():
    """Whether this thread records graphs (each thread starts with True)."""
    return fg_grad_enabled()


def set_grad_enabled(mode):
    """Switch graph recording on or off in this thread; returns the previous mode."""
    cdef bint on = bool(mode)
    previous = fg_grad_enabled()
    fg_set_grad_enabled(on)
    return previous


def op_codes():
    """{name: code} as compiled in; must equal fastgrad._ops.CODES."""
    codes = (LEAF, ADD, SUB, MUL, DIV, NEG, POW, MATMUL, EXP, LOG, SQRT, ABS, SIN, COS, TANH,
             SIGMOID, RELU, LEAKY_RELU, CLIP, SUM, MAX, MIN, LOGSUMEXP, RESHAPE, PERMUTE,
             EXPAND, INDEX, CAT, WHERE, MAXIMUM, MINIMUM, CAST, FUNCTION, LINEAR,
             CROSS_ENTROPY, CLONE, GELU, SILU, GATHER, SOFTMAX, LOG_SOFTMAX, LAYER_NORM, VAR,
             STD, NORM)
    names = ("leaf", "add", "sub", "mul", "div", "neg", "pow", "matmul", "exp", "log", "sqrt",
             "abs", "sin", "cos", "tanh", "sigmoid", "relu", "leaky_relu", "clip", "sum", "max",
             "min", "logsumexp", "reshape", "permute", "expand", "index", "cat", "where",
             "maximum", "minimum", "cast", "function", "linear", "cross_entropy", "clone",
             "gelu", "silu", "gather", "softmax", "log_softmax", "layer_norm", "var", "std",
             "norm")
    return dict(zip(names, codes))


include "_alloc.pxi"


# ---------------------------------------------------------------------------
# Tensor storage and node
# ---------------------------------------------------------------------------

cdef inline TensorBase _owner(TensorBase t):
    """The tensor that holds t's version counter: its base if t is a view."""
    return t if t._base is None else <TensorBase>t._base


cdef inline long _ver(TensorBase t) noexcept:
    return t._version if t._base is None else (<TensorBase>t._base)._version


@cython.auto_pickle(False)  # owns a raw pointer: never pickled (an ndarray pickles its values)
cdef class _Block:
    """Owns a malloc'd block on behalf of the ndarray that views it."""
    cdef void* ptr

    def __dealloc__(self):
        _mem_free(self.ptr)


@cython.trashcan(True)    # freeing a 10**5-deep chain must not recurse in C
@cython.auto_pickle(False)  # Cython would pickle the raw buffers as C strings (see Tensor)
cdef class TensorBase:
    """Values, autograd node and operators; fastgrad.Tensor adds the rest."""

    def __dealloc__(self):
        _mem_free(self._buf)
        _mem_free(self._g)
        _mem_free(self._saved)

    def _init_leaf(self, value, requires_grad=False):
        _set_array(self, value)
        if requires_grad:
            _set_requires_grad(self, True)

    # -- what the surface reads ------------------------------------------
    @property
    def shape(self):
        return self._shape

    @property
    def ndim(self):
        return len(self._shape)

    @property
    def dtype(self):
        if self._dt != DT_OTHER:
            return _DTYPES[self._dt]
        return self._arr.dtype

    # -- .data (as PyTorch: a Tensor over the same memory, outside autograd) --
    @property
    def data(self):
        return _data_view(self)

    @data.setter
    def data(self, value):
        # `p.data -= g` assigns back the tensor it got: the same memory, nothing to rebind
        if isinstance(value, TensorBase) and self._arr is not None \
                and (<TensorBase>value)._arr is self._arr:
            return
        _rebind(self, _check_data(self, value))

    # `a -= b` of two same-shape float tensors (or a tensor and a number) is one
    # C loop: `p.data -= lr * p.grad.data` is a training loop's update.  Anything
    # else, and every error, goes through Tensor._augmented (tensor.py).
    def __iadd__(self, other):
        if _inplace_native(ADD, self, other):
            return self
        return self._augmented(other, "add_")

    def __isub__(self, other):
        if _inplace_native(SUB, self, other):
            return self
        return self._augmented(other, "sub_")

    def __imul__(self, other):
        if _inplace_native(MUL, self, other):
            return self
        return self._augmented(other, "mul_")

    def __itruediv__(self, other):
        if _inplace_native(DIV, self, other):
            return self
        return self._augmented(other, "div_")
    # -- end of .data --------------------------------------------------------

    def numpy(self):
        return _array(self)

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
    def _values_dropped(self):
        """True for an intermediate whose values a consumer took over (see _can_take)."""
        return self._dropped

    @property
    def _version_counter(self):
        return _ver(self)

    def _bump_version(self):
        cdef TensorBase owner = _owner(self)
        owner._version += 1

    def _node(self):
        """(op code, inputs, params) of this node, for inspection tools."""
        return self._op, _inputs(self), _params(self)

    def retain_grad(self):
        if not self._requires_grad:
            raise RuntimeError("retain_grad: this tensor does not require grad")
        if self._op != LEAF:
            self._retains_grad = True

    def backward(self, gradient=None, retain_graph=False):
        _sweep([self], [_seed(self, gradient)], retain_graph, None)

    def __hash__(self):
        return id(self) >> 4

    # -- operators (NumPy broadcasting) ----------------------------------
    def __add__(self, other):
        return _binary(ADD, self, other)

    def __radd__(self, other):
        return _binary(ADD, other, self)

    def __sub__(self, other):
        return _binary(SUB, self, other)

    def __rsub__(self, other):
        return _binary(SUB, other, self)

    def __mul__(self, other):
        return _binary(MUL, self, other)

    def __rmul__(self, other):
        return _binary(MUL, other, self)

    def __truediv__(self, other):
        return _binary(DIV, self, other)

    def __rtruediv__(self, other):
        return _binary(DIV, other, self)

    def __pow__(self, other, mod):
        return _binary(POW, self, other)

    def __rpow__(self, other, mod):
        return _binary(POW, other, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __neg__(self):
        return _unary(NEG, self, 0, 0)

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
        return _unary(EXP, self, 0, 0)

    def log(self):
        return _unary(LOG, self, 0, 0)

    def sqrt(self):
        return _unary(SQRT, self, 0, 0)

    def abs(self):
        return _unary(ABS, self, 0, 0)

    def sin(self):
        return _unary(SIN, self, 0, 0)

    def cos(self):
        return _unary(COS, self, 0, 0)

    def tanh(self):
        return _unary(TANH, self, 0, 0)

    def sigmoid(self):
        return _unary(SIGMOID, self, 0, 0)

    def relu(self):
        return _unary(RELU, self, 0, 0)


cdef inline TensorBase _new_tensor():
    # The subclass's tp_new, called directly: `TensorBase.__new__(cls)` would
    # look `__new__` up and go through a Python-level call every time.
    cdef PyObject* obj = (<_PyType*>_tensor_class).tp_new(<_PyType*>_tensor_class,
                                                         <PyObject*>_NO_ARGS, NULL)
    if obj == NULL:
        return TensorBase.__new__(_tensor_class)     # raises the error
    t = <TensorBase>obj
    Py_DECREF(t)           # the cast took a second reference
    return t


cdef TensorBase _alloc(object shape, Py_ssize_t size, int dt):
    """A fresh leaf whose values live in a malloc'd block (uninitialised)."""
    cdef TensorBase t = _new_tensor()
    t._buf = <char*>_mem_alloc(size * ITEMSIZE[dt] if size else 1)
    if t._buf == NULL:
        raise MemoryError()
    t._data = t._buf
    t._shape = shape
    t._size = size
    t._dt = dt
    return t


cdef inline bint _can_take(TensorBase a, int consumer, Py_ssize_t temp_refs) noexcept:
    """May `consumer` write its result over a's values (and own them)?

    Temporary elision, as NumPy does for `a * b + c`: in `(y * 0.9 + 0.1).tanh()`
    the product and the sum are temporaries that nothing can read again: no
    Python name refers to them (the reference count shows only the
    interpreter's), their own backward does not read their output, and the
    consumer's backward does not read its input.  Then the consumer takes
    their block instead of allocating one: one buffer per step of a chain
    instead of three, which keeps long elementwise chains in cache.  The
    node keeps its place in the graph, marked `_dropped`.
    """
    return (a._size >= TAKE_MIN and fg_grad_enabled() and not fg_keeps_values()
            and a._requires_grad
            and a._native
            and a._buf != NULL and a._arr is None and a._data == a._buf
            and not a._retains_grad and not a._dropped
            and (a._op == ADD or a._op == SUB or a._op == MUL or a._op == DIV
                 or a._op == NEG)
            and (consumer == ADD or consumer == SUB or consumer == NEG or consumer == EXP
                 or consumer == SQRT or consumer == TANH or consumer == SIGMOID)
            and Py_REFCNT(a) <= temp_refs)


cdef TensorBase _take(TensorBase a):
    """A new tensor that owns a's block (a keeps its node, without values)."""
    cdef TensorBase t = _new_tensor()
    t._buf = a._buf
    t._data = a._data
    t._shape = a._shape
    t._size = a._size
    t._dt = a._dt
    a._buf = NULL
    a._data = NULL
    a._dropped = True
    return t


def _set_keep_values(bint keep):
    """Keep every intermediate's values in this thread (fg.compile's recording needs them);
    returns the old setting."""
    old = fg_keeps_values()
    fg_set_keep_values(keep)
    return old


cdef int _set_array(TensorBase t, object value) except -1:
    """Make the ndarray `value` the tensor's storage (no copy)."""
    cdef cnp.ndarray arr = value
    _mem_free(t._buf)
    t._buf = NULL
    t._arr = arr
    t._shape = value.shape
    t._size = value.size
    dtype = value.dtype
    if dtype == _DTYPES[0]:
        t._dt = DT_F32
    elif dtype == _DTYPES[1]:
        t._dt = DT_F64
    else:
        t._dt = DT_OTHER
    if t._dt != DT_OTHER and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr) \
            and cnp.PyArray_ISNOTSWAPPED(arr):
        t._data = <char*>cnp.PyArray_DATA(arr)
    else:
        t._data = NULL
    return 0


cdef object _array(TensorBase t):
    """The values as an ndarray: made on first use, taking over the block."""
    cdef cnp.npy_intp dims[64]
    cdef _Block block
    cdef cnp.ndarray arr
    cdef int i
    if t._dropped:
        raise RuntimeError(
            "the values of this intermediate '%s' were not kept: no name referred to it and "
            "backward does not need them, so the next op reused its memory" % _op_name(t))
    if t._arr is None:
        for i in range(len(t._shape)):
            dims[i] = t._shape[i]
        block = _Block.__new__(_Block)
        block.ptr = t._buf
        t._buf = NULL
        arr = cnp.PyArray_SimpleNewFromData(len(t._shape), dims, TYPENUM[t._dt], block.ptr)
        cnp.set_array_base(arr, block)
        t._arr = arr
    return t._arr


cdef TensorBase _data_view(TensorBase t):
    """t.data: a new leaf over t's memory with a version counter of its own.

    As PyTorch's: it does not require grad, and changes made through it are
    not seen by t's version counter (that is what tells it from detach()).
    No NumPy call once t has its ndarray: the fields are copied over.
    """
    cdef object arr = _array(t)        # raises for values a consumer took over
    cdef TensorBase d = _new_tensor()
    d._arr = arr
    d._data = t._data
    d._shape = t._shape
    d._size = t._size
    d._dt = t._dt
    return d


cdef object _view(char* ptr, object shape, int dt):
    """A temporary ndarray over memory owned by someone else."""
    cdef cnp.npy_intp dims[64]
    cdef int i
    for i in range(len(shape)):
        dims[i] = shape[i]
    return cnp.PyArray_SimpleNewFromData(len(shape), dims, TYPENUM[dt], ptr)


cdef TensorBase _alias(TensorBase t, TensorBase base):
    """Make t a view of base: same version counter (views of views share the root's)."""
    t._base = _owner(base)
    return t


cdef int _rebind(TensorBase t, object value) except -1:
    """t.data = value: new values (a version bump), maybe of another shape, dtype or layout.

    Anything the C loops rely on (shape, dtype, C-contiguity) that changes
    bumps `_layout`, which every node that recorded t compares at the door
    (_check_node) before a kernel reads t's memory.
    """
    cdef object shape = t._shape
    cdef object dtype = t.dtype
    cdef bint direct = t._data != NULL
    if value is t._arr:
        return 0     # the array it already holds: nothing was rebound
    _set_array(t, value)
    if t._shape != shape or value.dtype != dtype or (t._data != NULL) != direct:
        t._layout += 1
    cdef TensorBase owner = _owner(t)
    owner._version += 1
    return 0


def from_array(value, requires_grad=False):
    """Wrap an ndarray without copying it."""
    cdef TensorBase t = _new_tensor()
    _set_array(t, value)
    if requires_grad:
        _set_requires_grad(t, True)
    return t


cdef str _op_name(TensorBase t):
    if t._op == FUNCTION:
        return t._params[0].__name__
    return NAMES[t._op]


cdef int _set_requires_grad(TensorBase t, flag) except -1:
    flag = bool(flag)
    if t._op != LEAF and not t._requires_grad:
        if not flag:
            return 0
        # a node fg.compile recorded from data alone (apply): a leaf from now on, as in PyTorch
        _release(t, False)
        t._op = LEAF
        t._native = False
        t._released = False
    if t._op != LEAF and not flag:
        raise RuntimeError(
            "requires_grad: can only change the flag of a leaf tensor; "
            "use detach() to get a tensor that does not require grad")
    if flag and t._dt == DT_OTHER:
        raise RuntimeError(
            "requires_grad: only floating point tensors can require grad, "
            "got dtype %s" % t.dtype)
    t._requires_grad = flag
    return 0


cdef object _check_data(TensorBase t, value):
    if isinstance(value, TensorBase):
        value = _array(value)
    if not isinstance(value, np.ndarray):
        raise TypeError("data: expected an ndarray or a Tensor, got %s" % type(value).__name__)
    value = check_array("data", value)
    if t._requires_grad and value.dtype not in _DTYPES:
        raise TypeError("data: a tensor that requires grad needs float data, got %s" % value.dtype)
    return value


cdef object _check_grad(TensorBase t, value):
    if value is None:
        return None
    if not isinstance(value, TensorBase):
        raise TypeError("grad: expected a Tensor or None, got %s" % type(value).__name__)
    if value.shape != t._shape:
        raise RuntimeError("grad: assigned grad has shape %s but the tensor has shape %s"
                           % (tuple(value.shape), tuple(t._shape)))
    if value.dtype != t.dtype:
        raise TypeError("grad: assigned grad has dtype %s but the tensor has dtype %s; "
                        "convert it first (g.to(t.dtype))" % (value.dtype, t.dtype))
    return value


cdef object _operand(object x, name="operand"):
    """Tensors stay, Python numbers become constants, arrays become leaves."""
    if isinstance(x, TensorBase):
        return x
    if isinstance(x, (bool, int, float)):
        return x
    if isinstance(x, np.generic) and x.dtype.kind in "biuf":
        return x.item()
    return from_array(check_array(name, np.asarray(x)))


cdef inline object _value(object x):
    return _array(x) if isinstance(x, TensorBase) else x


cdef object _compare(ufunc, a, b):
    # `t == None` or `t == "x"` is not a comparison of values: NotImplemented lets
    # Python answer (False for ==, True for !=, a TypeError for <), as for torch
    for x in (a, b):
        if not isinstance(x, (TensorBase, bool, int, float, np.ndarray, np.generic, list, tuple)):
            return NotImplemented
    # a ufunc of 0-d operands returns a NumPy scalar, which no tensor may hold
    name = ufunc.__name__
    return from_array(np.asarray(ufunc(_value(_operand(a, name)), _value(_operand(b, name)))))


cdef tuple _inputs(TensorBase t):
    """The node's inputs as reference.py stores them."""
    if not t._native:
        return t._inputs if t._inputs is not None else ()
    if t._op == LINEAR:
        return (t._a, t._b) if t._d is None else (t._a, t._b, t._d)
    if t._b is None and t._form == FORM_TT:       # unary, cross_entropy
        return (t._a,)
    if t._form == FORM_TC:
        return (t._a, t._c)
    if t._form == FORM_CT:
        return (t._c, t._b)
    return (t._a, t._b)


cdef tuple _params(TensorBase t):
    if not t._native:
        return t._params if t._params is not None else ()
    if t._op == LEAKY_RELU:
        return (t._c,)
    if t._op == CLIP:
        return (None if t._c == -INFINITY else t._c, None if t._c2 == INFINITY else t._c2)
    if t._op == SUM or t._op == MAX or t._op == MIN or t._op == LOGSUMEXP:
        return (t._d, t._c != 0)                 # _d: the axes (None: all), _reduce.pxi
    if t._op == CROSS_ENTROPY:
        return (t._d, ("none", "mean", "sum")[<int>t._c])
    if t._op == GATHER:
        return (t._d, <int>t._c)
    if t._op == LAYER_NORM:
        return (<int>t._c2, t._c)
    if t._op == NORM:
        return (t._d, t._c != 0)
    if t._op == VAR or t._op == STD:
        return (t._d, t._c != 0, int(t._c2) if t._c2 == <long long>t._c2 else t._c2)
    if t._op == SOFTMAX or t._op == LOG_SOFTMAX:
        return (None if t._c < 0 else <int>t._c,)     # the axis (None: a 0-d tensor)
    if _is_view_op(t._op):
        return (t._d,)
    return ()


def apply(int op, tuple inputs, tuple params=()):
    """Run the reference rule's forward (NumPy) and, if needed, record the node."""
    values = [_value(x) for x in inputs]
    cdef TensorBase out = from_array(np.asarray(_ref.FORWARD[op](*values, *params)))
    if (op == RESHAPE or op == PERMUTE or op == EXPAND or op == INDEX) \
            and np.may_share_memory(out._arr, values[0]):
        _alias(out, inputs[0])                    # a view (reference.VIEW_OPS)
    if not fg_grad_enabled() or out._dt == DT_OTHER:
        return out
    cdef bint needs = False
    for x in inputs:
        if isinstance(x, TensorBase) and (<TensorBase>x)._requires_grad:
            needs = True
            break
    if not needs and not fg_keeps_values():      # recording: data-only nodes too (reference.apply)
        return out
    out._requires_grad = needs
    out._op = op
    out._inputs = inputs
    out._params = params
    out._versions = tuple(_ver(<TensorBase>x) if isinstance(x, TensorBase) else None
                          for x in inputs)
    out._layouts = tuple((<TensorBase>x)._layout if isinstance(x, TensorBase) else None
                         for x in inputs)
    if _node_hook is not None:
        _node_hook(out)
    return out


include "_loops.pxi"
# General NumPy broadcasting of binary ops (the strided N-d driver) goes in
# _broadcast.pxi, included here, after the drivers whose element kernels it reuses.


# ---------------------------------------------------------------------------
# Dispatch: native path when the operands allow it, reference rule otherwise
# ---------------------------------------------------------------------------

cdef inline bint _nativeable(TensorBase t):
    return t._dt != DT_OTHER and t._data != NULL


cdef object _binary(int op, object x, object y):
    cdef TensorBase a = None, b = None, out
    cdef int form, dt
    cdef double c = 0
    if isinstance(x, TensorBase) and isinstance(y, TensorBase):
        a = <TensorBase>x      # checked above: no TypeTest
        b = <TensorBase>y
        if not (_nativeable(a) and _nativeable(b) and a._dt == b._dt):
            return _binary_generic(op, a, b)
        if a._size == b._size and (a._shape is b._shape or a._shape == b._shape):
            form = FORM_TT
        elif b._size == 1 and len(b._shape) <= len(a._shape):
            form = FORM_T1
        elif a._size == 1 and len(a._shape) <= len(b._shape):
            form = FORM_1T
        else:
            out = _binary_broadcast(op, a, b)          # native: _broadcast.pxi
            if out is not None:
                return out
            return _binary_generic(op, a, b)
    elif isinstance(x, TensorBase):
        a = <TensorBase>x
        if not (_nativeable(a) and type(y) in (float, int, bool)):
            return _binary_generic(op, a, y)
        form = FORM_TC
        c = y
    else:
        if not isinstance(y, TensorBase):        # two numbers (fg.maximum(2.0, 3)): no tensor
            return _binary_generic(op, x, y)
        b = <TensorBase>y
        if not (_nativeable(b) and type(x) in (float, int, bool)):
            return _binary_generic(op, x, b)
        form = FORM_CT
        c = x
    dt = b._dt if a is None else a._dt
    if (form == FORM_TT or form == FORM_T1 or form == FORM_TC) and a is not b \
            and _can_take(a, op, TEMP_REFS_BINARY):
        _binary_kernel_forward(op, form, a, b, c, a)     # in place: reads a[i], then writes it
        out = _take(a)
    else:
        out = _alloc(b._shape if form == FORM_1T or form == FORM_CT else a._shape,
                     b._size if form == FORM_1T or form == FORM_CT else a._size, dt)
        _binary_kernel_forward(op, form, a, b, c, out)
    cdef bint needs = (a is not None and a._requires_grad) or (b is not None and b._requires_grad)
    if fg_grad_enabled() and (needs or fg_keeps_values()):
        out._requires_grad = needs
        out._op = op
        out._native = True
        out._form = form
        out._a = a
        out._b = b
        out._c = c
        if a is not None:
            out._va = _ver(a)
            out._la = a._layout
        if b is not None:
            out._vb = _ver(b)
            out._lb = b._layout
        if _node_hook is not None:
            _node_hook(out)
    return out


cdef object _binary_generic(int op, a, b):
    a, b = _operand(a, NAMES[op]), _operand(b, NAMES[op])
    broadcast_shape(NAMES[op], np.shape(_value(a)), np.shape(_value(b)))
    if isinstance(a, TensorBase) and isinstance(b, TensorBase) and \
            (<TensorBase>a)._dt == (<TensorBase>b)._dt and (<TensorBase>a)._dt != DT_OTHER:
        return apply(op, (a, b))                # one float dtype: nothing to promote
    dtype = _ref.binary_dtype(op, a, b)         # PyTorch's promotion (see reference.py)
    if isinstance(a, TensorBase) and a.dtype != dtype:
        a = cast(a, dtype)
    if isinstance(b, TensorBase) and b.dtype != dtype:
        b = cast(b, dtype)
    return apply(op, (a, b))


cdef void _operand_ptrs(int form, TensorBase a, TensorBase b, double c, void* const_slot,
                        int dt, char** pa, Py_ssize_t* sa, char** pb, Py_ssize_t* sb) noexcept:
    """Pointers and strides of the two operands; a constant goes in const_slot."""
    if dt == DT_F64:
        (<double*>const_slot)[0] = c
    else:
        (<float*>const_slot)[0] = <float>c
    pa[0] = <char*>const_slot if form == FORM_CT else a._data
    pb[0] = <char*>const_slot if form == FORM_TC else b._data
    sa[0] = 0 if form == FORM_CT or form == FORM_1T else 1
    sb[0] = 0 if form == FORM_TC or form == FORM_T1 else 1


cdef void _binary_kernel_forward(int op, int form, TensorBase a, TensorBase b, double c,
                                 TensorBase out) noexcept:
    cdef double slot
    cdef char* pa
    cdef char* pb
    cdef Py_ssize_t sa, sb
    if form == FORM_BC:                                     # native: _broadcast.pxi
        _bc_replay(op, a, b, out)
        return
    if op == POW and _pow_forward(form, a, b, c, out):      # native: _pow.pxi
        return
    _operand_ptrs(form, a, b, c, &slot, out._dt, &pa, &sa, &pb, &sb)
    binary_run(op, FORWARD, out._dt, NULL, pa, sa, pb, sb, out._data, NULL, NULL, out._size,
               False, False)


cdef int _binary_backward(TensorBase node) except -1:
    """The backward of every native binary op, for each operand form (FORM_*)."""
    cdef TensorBase a = node._a, b = node._b
    cdef char* ga = NULL
    cdef char* gb = NULL
    cdef char* pa
    cdef char* pb
    cdef Py_ssize_t sa, sb
    cdef double slot
    cdef bint wa = False, wb = False
    cdef char* g
    cdef int op = node._op
    if op == POW and _pow_backward(node):            # native: one exponent, _pow.pxi
        return 0
    if node._form == FORM_BC:                        # native: _broadcast.pxi
        return _bc_backward(node)
    if b is not None and b._data == NULL and not b._dropped:
        raise RuntimeError("backward: the values of an input of '%s' were replaced "
                           "through .data by an array of another layout" % _op_name(node))
    _operand_ptrs(node._form, a, b, node._c, &slot, node._dt, &pa, &sa, &pb, &sb)
    if (op == POW and node._form == FORM_TT and sa == 1 and sb == 1
            and _ul_has(UL_POWER, node._dt) and _ul_has(UL_LOG, node._dt)):
        return _pow_tensor_backward(node, pa, pb)     # native: exponent tensors, _pow.pxi
    # As for unary ops: a's first gradient may be computed in place over
    # the output's gradient buffer (after b's, which reads it).
    if a is not None and a._requires_grad and a._g == NULL and sa == 1 and a is not b:
        g = node._g
        if b is not None and b._requires_grad:
            gb = _grad_buffer_raw(b, &wb)
            if wb and sb == 0:
                memset(gb, 0, ITEMSIZE[b._dt])
                wb = False
            binary_run(op, BACKWARD, node._dt, g, pa, sa, pb, sb, node._data, NULL, gb,
                       node._size, False, wb)
        a._g = g
        node._g = NULL
        if op == ADD or op == SUB:
            return 0                      # d(a + b)/da = 1: the buffer is the gradient
        binary_run(op, BACKWARD_OVER, node._dt, g, pa, sa, pb, sb, node._data, g, NULL,
                   node._size, False, False)
        return 0
    # A fresh buffer is written, not added to, unless it is a broadcast
    # (stride 0) operand whose gradient is a sum: that one starts at zero.
    if a is not None and a._requires_grad:
        ga = _grad_buffer_raw(a, &wa)
        if wa and sa == 0:
            memset(ga, 0, ITEMSIZE[a._dt])
            wa = False
    if b is not None and b._requires_grad:
        gb = _grad_buffer_raw(b, &wb)
        if wb and sb == 0:
            memset(gb, 0, ITEMSIZE[b._dt])
            wb = False
    binary_run(op, BACKWARD, node._dt, node._g, pa, sa, pb, sb, node._data, ga, gb,
               node._size, wa, wb)
    return 0


cdef int _binary_replay(TensorBase node) except -1:
    _binary_kernel_forward(node._op, node._form, node._a, node._b, node._c, node)
    return 0


# -- in place through .data: `a -= b` ------------------------------------------
cdef bint _inplace_native(int op, TensorBase t, object other) except -1:
    """Do `t op= other` in one C loop if the operands allow it; False: take the general path.

    Only what the general path (Tensor._augmented) would do in place anyway:
    t outside autograd (or grad mode off), writeable C-contiguous float
    values, other a number or a tensor of t's shape and dtype whose memory is
    t's own or does not overlap it (NumPy would copy an overlapping operand
    first).  The same loops as the out-of-place op, so the values agree.
    """
    cdef TensorBase b = None
    cdef double c = 0
    cdef int form
    cdef Py_ssize_t nbytes
    if t._data == NULL or t._dt == DT_OTHER or (t._requires_grad and fg_grad_enabled()):
        return False
    if t._arr is not None and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>t._arr):
        return False
    if isinstance(other, TensorBase):
        b = <TensorBase>other
        if not (_nativeable(b) and b._dt == t._dt):
            return False
        if b._size == t._size and (b._shape is t._shape or b._shape == t._shape):
            form = FORM_TT
        elif b._size == 1 and len(b._shape) <= len(t._shape):
            form = FORM_T1
        else:
            return False
        nbytes = ITEMSIZE[t._dt]
        if not (b._data == t._data and b._size == t._size) \
                and b._data < t._data + t._size * nbytes and t._data < b._data + b._size * nbytes:
            return False
    elif type(other) is float:
        form = FORM_TC
        c = other
    elif type(other) is int and -(1 << 53) <= other <= (1 << 53):   # exact as a double
        form = FORM_TC
        c = other
    else:
        return False
    _binary_kernel_forward(op, form, t, b, c, t)
    cdef TensorBase owner = _owner(t)
    owner._version += 1
    return True
# -- end of in place through .data ---------------------------------------------


cdef int _unary_values(int op, TensorBase a, TensorBase out, double p, double q) except -1:
    if _unary_loop(op, a, out):                 # native: NumPy's inner loops, _ufunc_loops.pxi
        return 0
    if a._size >= UFUNC_MIN and op in _UFUNCS:
        # NumPy's SIMD loops beat libm on long arrays; write straight into out.
        # (out passed positionally: a keyword costs a dict per call)
        (<object>_UFUNCS[op])(_view(a._data, a._shape, a._dt), _view(out._data, a._shape, a._dt))
    else:
        unary_run(op, FORWARD, a._dt, NULL, a._data, out._data, NULL, a._size, p, q)
    return 0


cdef object _unary(int op, object x, double p, double q):
    cdef TensorBase a, out
    if not isinstance(x, TensorBase) or not _nativeable(<TensorBase>x):
        x = _operand(x, NAMES[op])
        if op in _ref.FLOAT_UNARY and isinstance(x, TensorBase) and x.dtype.kind != "f":
            x = cast(x, _ref._default_float[0])
        if op == LEAKY_RELU:
            return apply(op, (x,), (p,))
        if op == CLIP:
            return apply(op, (x,), (None if p == -INFINITY else p, None if q == INFINITY else q))
        return apply(op, (x,))
    a = <TensorBase>x
    if _can_take(a, op, TEMP_REFS_UNARY):
        _unary_values(op, a, a, p, q)                     # in place, elementwise
        out = _take(a)
    else:
        out = _alloc(a._shape, a._size, a._dt)
        _unary_values(op, a, out, p, q)
    if fg_grad_enabled() and (a._requires_grad or fg_keeps_values()):
        out._requires_grad = a._requires_grad
        out._op = op
        out._native = True
        out._form = FORM_TT
        out._a = a
        out._c = p
        out._c2 = q
        out._va = _ver(a)
        out._la = a._layout
        if _node_hook is not None:
            _node_hook(out)
    return out


cdef int _unary_backward(TensorBase node) except -1:
    """The backward of every native unary op: gx (+)= g * f'(x), one pass."""
    cdef TensorBase a = node._a
    cdef char* g = node._g
    cdef char* ga = a._g
    cdef bint fresh = ga == NULL
    if fresh:
        # The input's first gradient: computed in place over the output's
        # gradient buffer, which is then handed down the chain.  No new
        # block, and the memory stays in cache (n = 4096: -9% per op).
        ga = g
        a._g = g
        node._g = NULL
    if _unary_backward_loop(node._op, a, g, ga, fresh):   # native: sin/cos, _ufunc_loops.pxi
        return 0
    unary_run(node._op, BACKWARD_OVER if fresh else BACKWARD, a._dt, g, a._data, node._data, ga,
              a._size, node._c, node._c2)
    return 0


cdef int _unary_replay(TensorBase node) except -1:
    _unary_values(node._op, node._a, node, node._c, node._c2)
    return 0


# ---------------------------------------------------------------------------
# The ops, in reference.py's order
# ---------------------------------------------------------------------------

# -- add ---------------------------------------------------------------------
cdef inline floating add_forward(floating a, floating b, bint one) noexcept nogil:
    return a + b


cdef inline floating add_backward_a(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    return g


cdef inline floating add_backward_b(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    return g


def add(a, b):
    return _binary(ADD, a, b)


# -- sub ---------------------------------------------------------------------
cdef inline floating sub_forward(floating a, floating b, bint one) noexcept nogil:
    return a - b


cdef inline floating sub_backward_a(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    return g


cdef inline floating sub_backward_b(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    return -g


def sub(a, b):
    return _binary(SUB, a, b)


# -- mul ---------------------------------------------------------------------
cdef inline floating mul_forward(floating a, floating b, bint one) noexcept nogil:
    return a * b


cdef inline floating mul_backward_a(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    return g * b


cdef inline floating mul_backward_b(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    return g * a


def mul(a, b):
    return _binary(MUL, a, b)


# -- div ---------------------------------------------------------------------
cdef inline floating div_forward(floating a, floating b, bint one) noexcept nogil:
    return a / b


cdef inline floating div_backward_a(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    return g / b


cdef inline floating div_backward_b(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    return -(g / b) * a / b


def div(a, b):
    return _binary(DIV, a, b)


# -- neg ---------------------------------------------------------------------
cdef inline floating neg_forward(floating x, double p, double q) noexcept nogil:
    return -x


cdef inline floating neg_backward(floating g, floating x, floating y, double p,
                                  double q) noexcept nogil:
    return -g


def neg(x):
    return _unary(NEG, x, 0, 0)


# -- pow ---------------------------------------------------------------------
cdef inline double _pow_one(double a, double b) noexcept nogil:
    # One exponent for every element (a number, or a size-1 tensor: the kernel
    # cannot tell them apart): PyTorch takes a square root for +-0.5, which
    # differs from pow at -inf (NaN) and -0.0 (sign), so we do too.
    if b == 0.5:
        return c_sqrt(a)
    if b == -0.5:
        return 1.0 / c_sqrt(a)
    return c_pow(a, b)


cdef inline floating pow_forward(floating a, floating b, bint one) noexcept nogil:
    return <floating>(_pow_one(a, b) if one else c_pow(a, b))


cdef inline floating pow_backward_a(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    # As PyTorch: d/da is 0 where b == 0 (even at a = 0 or NaN)
    cdef double bv = b
    return <floating>(g * bv * (_pow_one(a, bv - 1) if one else c_pow(a, bv - 1))) \
        if bv != 0 else 0


cdef inline floating pow_backward_b(floating g, floating a, floating b, floating y,
                                    bint one) noexcept nogil:
    # d/db is 0 where a == 0 and b >= 0 (0 * -inf there otherwise)
    cdef double av = a
    return <floating>(g * (y * c_log(av))) if (av != 0 or not (b >= 0)) else 0


def pow(a, b):
    return _binary(POW, a, b)


# -- matmul ------------------------------------------------------------------
# C loops for small shapes, BLAS (through NumPy) for big.
# A NumPy matmul call costs ~1.5 us before it multiplies anything, so small
# products (the lectures' networks, batch-1 SGD) run these loops; from
# BLAS_MIN multiply-adds on, BLAS wins (bench/ measures the crossover).
cdef Py_ssize_t BLAS_MIN = 8192


def _set_blas_min(Py_ssize_t n):
    """Set the C-loop/BLAS crossover (multiply-adds); returns the old one (for bench/)."""
    global BLAS_MIN
    old = BLAS_MIN
    BLAS_MIN = n
    return old


cdef inline floating _row_dot(const floating* x, const floating* y, Py_ssize_t n) noexcept nogil:
    """sum(x[i] * y[i]) in four running sums (no chain through memory)."""
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        s0 += x[i] * y[i]
        s1 += x[i + 1] * y[i + 1]
        s2 += x[i + 2] * y[i + 2]
        s3 += x[i + 3] * y[i + 3]
        i += 4
    while i < n:
        s0 += x[i] * y[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef void matmul_forward(const floating* a, const floating* b, floating* y, Py_ssize_t n,
                         Py_ssize_t k, Py_ssize_t m) noexcept nogil:
    """y (n, m) = a (n, k) @ b (k, m); the inner loop runs along rows of b and y
    (for a vector b, along rows of a: a dot per row)."""
    cdef Py_ssize_t r, i, o
    cdef floating av
    if m == 1:
        _mm_dot(a, k, 1, b, 1, 1, y, n, k, 1)         # _matmul.pxi
        return
    memset(y, 0, n * m * sizeof(floating))
    for r in range(n):
        for i in range(k):
            av = a[r * k + i]
            for o in range(m):
                y[r * m + o] += av * b[i * m + o]


cdef void matmul_backward(const floating* g, const floating* a, const floating* b, floating* ga,
                          floating* gb, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m) noexcept nogil:
    """ga += g @ b.T and gb += a.T @ g (either may be NULL)."""
    cdef Py_ssize_t r, i, o
    cdef floating s, av
    if m == 1:          # b a vector: ga an outer product, gb a sum of a's rows
        for r in range(n):
            av = g[r]
            if ga != NULL:
                for i in range(k):
                    ga[r * k + i] += av * b[i]
            if gb != NULL:
                for i in range(k):
                    gb[i] += av * a[r * k + i]
        return
    if ga != NULL:
        for r in range(n):
            for i in range(k):
                s = 0
                for o in range(m):
                    s += g[r * m + o] * b[i * m + o]
                ga[r * k + i] += s
    if gb != NULL:
        for r in range(n):
            for i in range(k):
                av = a[r * k + i]
                for o in range(m):
                    gb[i * m + o] += av * g[r * m + o]


def matmul(a, b):
    a, b = _operand(a, "matmul"), _operand(b, "matmul")
    if not isinstance(a, TensorBase) or not isinstance(b, TensorBase):
        raise TypeError("matmul: both operands must be tensors or arrays, not scalars")
    cdef TensorBase ta = a, tb = b, out
    if not _mm_plain(ta, tb):                       # else the checks cannot fail
        check_matmul(a.shape, b.shape, a.dtype, b.dtype)
    if _mm_strided_case(ta, tb):                    # native: strided operands, _matmul.pxi
        out = _matmul_strided(ta, tb)
        if out is not None:
            return out
    if _bmm_case(ta, tb):                           # native: batched operands, _matmul.pxi
        return _bmm(ta, tb)
    if not (_nativeable(ta) and _nativeable(tb) and ta._dt == tb._dt
            and len(tb._shape) <= 2):
        return apply(MATMUL, (a, b))
    # 1-D operands are a row (a) or a column (b): the same memory as 2-D; an
    # N-d a against a 2-D b is its rows stacked, (n, k) @ (k, m)
    cdef Py_ssize_t k = ta._shape[len(ta._shape) - 1]
    cdef Py_ssize_t n = ta._size // k if k else 0
    cdef Py_ssize_t m = tb._size // k if k else 0
    if k == 0 or n == 0 or m == 0:
        return apply(MATMUL, (a, b))
    shape = (tuple(ta._shape)[:len(ta._shape) - 1] if len(ta._shape) >= 2 else ()) + \
            ((tb._shape[1],) if len(tb._shape) == 2 else ())
    out = _alloc(shape, n * m, ta._dt)
    _matmul_values(ta, tb, out)
    if fg_grad_enabled() and (ta._requires_grad or tb._requires_grad or fg_keeps_values()):
        _record(out, MATMUL, ta, tb, None)
        out._requires_grad = ta._requires_grad or tb._requires_grad
    return out


cdef int _matmul_values(TensorBase ta, TensorBase tb, TensorBase out) except -1:
    """out = a @ b for native (b at most 2-D, contiguous) operands."""
    if _mm_replay(ta, tb, out):                 # native: strided operands, _matmul.pxi
        return 0
    if len(tb._shape) > 2:                      # native: batched operands, _matmul.pxi
        return _bmm_values(ta, tb, out)
    cdef Py_ssize_t k = ta._shape[len(ta._shape) - 1]
    cdef Py_ssize_t n = ta._size // k, m = tb._size // k
    if n * k * m >= BLAS_MIN:
        if m == 1:      # a matrix-vector product: gemv (as (k, 1) NumPy takes a slower path)
            np.matmul(_view(ta._data, (n, k), ta._dt), _view(tb._data, (k,), ta._dt),
                      out=_view(out._data, (n,), ta._dt))
        else:
            np.matmul(_view(ta._data, (n, k), ta._dt), _view(tb._data, (k, m), ta._dt),
                      out=_view(out._data, (n, m), ta._dt))
    elif ta._dt == DT_F64:
        matmul_forward(<double*>ta._data, <double*>tb._data, <double*>out._data, n, k, m)
    else:
        matmul_forward(<float*>ta._data, <float*>tb._data, <float*>out._data, n, k, m)
    return 0


cdef int _matmul_replay(TensorBase node) except -1:
    return _matmul_values(node._a, node._b, node)


cdef int _record(TensorBase out, int op, TensorBase a, TensorBase b, object d) except -1:
    """Make `out` a native node of `op` over tensors a, b (and d)."""
    out._requires_grad = True
    out._op = op
    out._native = True
    out._form = FORM_TT
    out._a = a
    out._b = b
    out._d = d
    out._va = _ver(a)
    out._la = a._layout
    if b is not None:
        out._vb = _ver(b)
        out._lb = b._layout
    if isinstance(d, TensorBase):
        out._vd = _ver(<TensorBase>d)
        out._ld = (<TensorBase>d)._layout
    if _node_hook is not None:
        _node_hook(out)
    return 0


cdef int _product_into(char* dst, bint fresh, int dt, Py_ssize_t n, object product) except -1:
    """dst (n items) = product if fresh, else dst += product (an array of dtype dt)."""
    cdef cnp.ndarray arr = np.ascontiguousarray(product, dtype=_DTYPES[dt])
    cdef char* src = <char*>cnp.PyArray_DATA(arr)
    if fresh:
        memcpy(dst, src, n * ITEMSIZE[dt])
    else:
        add_into(dt, dst, src, n)
    return 0


cdef int _matmul_backward(TensorBase node) except -1:
    cdef TensorBase a = node._a, b = node._b
    if len(b._shape) > 2:                       # native: batched operands, _matmul.pxi
        return _bmm_backward(node)
    cdef Py_ssize_t k = a._shape[len(a._shape) - 1]
    cdef Py_ssize_t n = a._size // k, m = b._size // k
    cdef bint fresh_a = False, fresh_b = False
    cdef char* ga = _grad_buffer_raw(a, &fresh_a) if a._requires_grad else NULL
    cdef char* gb = _grad_buffer_raw(b, &fresh_b) if b._requires_grad else NULL
    cdef int dt = a._dt
    if n * k * m >= BLAS_MIN:
        g = _view(node._g, (n, m), dt)
        # a product whose inner size is 1 is an outer product: np.multiply, not
        # matmul's loop for it (x @ v's gradient of x: 65536 elements 6x faster)
        if ga != NULL:
            if m == 1:
                prod = np.multiply(g, _view(b._data, (1, k), dt),
                                   out=_view(ga, (n, k), dt) if fresh_a else None)
            else:
                prod = np.matmul(g, _view(b._data, (k, m), dt).T,
                                 out=_view(ga, (n, k), dt) if fresh_a else None)
            if not fresh_a:
                _product_into(ga, False, dt, n * k, prod)
        if gb != NULL:
            if n == 1:
                prod = np.multiply(_view(a._data, (k, 1), dt), g,
                                   out=_view(gb, (k, m), dt) if fresh_b else None)
            else:
                prod = np.matmul(_view(a._data, (n, k), dt).T, g,
                                 out=_view(gb, (k, m), dt) if fresh_b else None)
            if not fresh_b:
                _product_into(gb, False, dt, k * m, prod)
        return 0
    _zero_if_fresh(ga, fresh_a, n * k * ITEMSIZE[dt])
    _zero_if_fresh(gb, fresh_b, k * m * ITEMSIZE[dt])
    if dt == DT_F64:
        matmul_backward(<double*>node._g, <double*>a._data, <double*>b._data, <double*>ga,
                        <double*>gb, n, k, m)
    else:
        matmul_backward(<float*>node._g, <float*>a._data, <float*>b._data, <float*>ga,
                        <float*>gb, n, k, m)
    return 0


cdef inline void _zero_if_fresh(char* buf, bint fresh, size_t nbytes) noexcept:
    if buf != NULL and fresh:
        memset(buf, 0, nbytes)


# -- exp ---------------------------------------------------------------------
cdef inline floating exp_forward(floating x, double p, double q) noexcept nogil:
    return <floating>c_exp(x)


cdef inline floating exp_backward(floating g, floating x, floating y, double p,
                                  double q) noexcept nogil:
    return g * y


_UFUNCS[EXP] = np.exp


def exp(x):
    return _unary(EXP, x, 0, 0)


# -- log ---------------------------------------------------------------------
cdef inline floating log_forward(floating x, double p, double q) noexcept nogil:
    return <floating>c_log(x)


cdef inline floating log_backward(floating g, floating x, floating y, double p,
                                  double q) noexcept nogil:
    return g / x


_UFUNCS[LOG] = np.log


def log(x):
    return _unary(LOG, x, 0, 0)


# -- sqrt --------------------------------------------------------------------
cdef inline floating sqrt_forward(floating x, double p, double q) noexcept nogil:
    return <floating>c_sqrt(x)


cdef inline floating sqrt_backward(floating g, floating x, floating y, double p,
                                   double q) noexcept nogil:
    return g / (2 * y)


_UFUNCS[SQRT] = np.sqrt


def sqrt(x):
    return _unary(SQRT, x, 0, 0)


# -- abs ---------------------------------------------------------------------
cdef inline floating abs_forward(floating x, double p, double q) noexcept nogil:
    return <floating>fabs(x)


cdef inline floating abs_backward(floating g, floating x, floating y, double p,
                                  double q) noexcept nogil:
    return g * <floating>((x > 0) - (x < 0))


def abs(x):
    return _unary(ABS, x, 0, 0)


# -- sin ---------------------------------------------------------------------
cdef inline floating sin_forward(floating x, double p, double q) noexcept nogil:
    return <floating>c_sin(x)


cdef inline floating sin_backward(floating g, floating x, floating y, double p,
                                  double q) noexcept nogil:
    return g * <floating>c_cos(x)


_UFUNCS[SIN] = np.sin


def sin(x):
    return _unary(SIN, x, 0, 0)


# -- cos ---------------------------------------------------------------------
cdef inline floating cos_forward(floating x, double p, double q) noexcept nogil:
    return <floating>c_cos(x)


cdef inline floating cos_backward(floating g, floating x, floating y, double p,
                                  double q) noexcept nogil:
    return -(g * <floating>c_sin(x))


_UFUNCS[COS] = np.cos


def cos(x):
    return _unary(COS, x, 0, 0)


# -- tanh --------------------------------------------------------------------
cdef inline floating tanh_forward(floating x, double p, double q) noexcept nogil:
    return <floating>c_tanh(x)


cdef inline floating tanh_backward(floating g, floating x, floating y, double p,
                                   double q) noexcept nogil:
    return g * (1 - y * y)


_UFUNCS[TANH] = np.tanh


def tanh(x):
    return _unary(TANH, x, 0, 0)


# -- sigmoid -----------------------------------------------------------------
cdef inline double _sigmoid(double x) noexcept nogil:
    # exp of a non-positive number only: no overflow for large |x|
    cdef double e
    if x >= 0:
        return 1.0 / (1.0 + c_exp(-x))
    e = c_exp(x)
    return e / (1.0 + e)


cdef inline floating sigmoid_forward(floating x, double p, double q) noexcept nogil:
    return <floating>_sigmoid(x)


cdef inline floating sigmoid_backward(floating g, floating x, floating y, double p,
                                      double q) noexcept nogil:
    return g * y * (1 - y)


def sigmoid(x):
    return _unary(SIGMOID, x, 0, 0)


# -- relu --------------------------------------------------------------------
cdef inline floating relu_forward(floating x, double p, double q) noexcept nogil:
    # NaN and -0.0 pass (as torch)
    return 0 if x < 0 else x


cdef inline floating relu_backward(floating g, floating x, floating y, double p,
                                   double q) noexcept nogil:
    # NaN passes the gradient, as torch
    return 0 if x <= 0 else g


def relu(x):
    return _unary(RELU, x, 0, 0)


# -- leaky_relu --------------------------------------------------------------
cdef inline floating leaky_relu_forward(floating x, double p, double q) noexcept nogil:
    # the slope in the element type, as torch and NumPy (reference) multiply: a
    # float32 product of doubles would differ in the last bit and not vectorize
    return x if x > 0 else x * <floating>p


cdef inline floating leaky_relu_backward(floating g, floating x, floating y, double p,
                                         double q) noexcept nogil:
    return g if x > 0 else g * <floating>p


def leaky_relu(x, negative_slope=0.01):
    return _unary(LEAKY_RELU, x, float(negative_slope), 0)


# -- clip --------------------------------------------------------------------
cdef inline double _clip(double x, double p, double q) noexcept nogil:
    # p and q are not NaN (clip sends a NaN bound to the reference rule): two
    # selects without a branch, so the loop vectorizes
    cdef double t = p if x < p else x
    return q if t > q else t


cdef inline floating clip_forward(floating x, double p, double q) noexcept nogil:
    # min(max(x, p), q) as torch.clamp: p > q gives q, NaN x stays NaN
    return <floating>_clip(x, p, q)


cdef inline floating clip_backward(floating g, floating x, floating y, double p,
                                   double q) noexcept nogil:
    return g if p <= x <= q else 0


def clip(x, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")
    cdef double lo = -INFINITY if min is None else float(min)
    cdef double hi = INFINITY if max is None else float(max)
    if lo != lo or hi != hi:         # a NaN bound: every value NaN, as torch.clamp gives
        x = _operand(x, "clip")
        return apply(CLIP, (x,), (None if min is None else lo, None if max is None else hi))
    return _unary(CLIP, x, lo, hi)


# -- gelu --------------------------------------------------------------------
# x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (accurate in both tails, where
# (1 + erf) / 2 cancels).  float64: libm's erfc and exp, element by element.
# float32: libm has no vector erf, so the kernels below are written for the
# vectorizer: e = exp(-x^2 / 2) by range reduction (2^k from the exponent
# bits, a degree-7 polynomial on |r| <= ln 2 / 2), and erfc(z) exp(z^2) as a
# polynomial in t = 1 / (1 + z / 2) (coefficients fitted here to 8e-8 relative
# error on z in [0, 10]): no libm call, one division, about 3 float32 ulps of
# gelu in all.  The loops are compiled three times, for plain x86-64, AVX2 +
# FMA (x86-64-v3) and AVX-512 (x86-64-v4), one picked by the CPU's features at
# load time, so a wheel built for any x86-64 machine still runs 8 or 16 lanes
# wide where it can (measured here: 47 us for 65536 gelus on AVX2, 22 on AVX-512).
cdef double SQRT_HALF = 0.7071067811865476
cdef double INV_SQRT_2PI = 0.3989422804014327

cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
    #if __GNUC__ >= 12
    #define FG_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define FG_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
    #endif
    #else
    #define FG_SIMD_CLONES
    #endif
    #if defined(__GNUC__)
    #define FG_ALWAYS_INLINE CYTHON_INLINE __attribute__((always_inline))
    #else
    #define FG_ALWAYS_INLINE CYTHON_INLINE
    #endif
    #include <string.h>

    /* exp(v) for v <= 0 (or NaN) in float32, 0 once it is below the smallest normal float:
       e^v = 2^k e^r, k = round(v / ln 2), |r| <= ln 2 / 2, e^r by its Taylor polynomial
       to r^7 (relative error below 6e-9), 2^k written into the exponent bits */
    static FG_ALWAYS_INLINE float fg_expneg32(float v) {
        v = v > -104.0f ? v : -104.0f;               /* NaN too: its callers are NaN anyway */
        float k = (v * 1.44269504f + 12582912.0f) - 12582912.0f;   /* round to nearest */
        float r = (v - k * 0.693145752f) - k * 1.42860677e-06f;    /* ln 2 in two parts */
        float p = 1.98412698e-04f;
        p = p * r + 1.38888889e-03f;
        p = p * r + 8.33333333e-03f;
        p = p * r + 4.16666667e-02f;
        p = p * r + 1.66666667e-01f;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        k = k > -127.0f ? k : -127.0f;               /* 2^-127: exponent bits 0, so 0 */
        int bits = ((int)k + 127) << 23;
        float scale;
        memcpy(&scale, &bits, sizeof scale);
        return p * scale;
    }

    static FG_ALWAYS_INLINE float fg_gauss32(float x) {
        return fg_expneg32(-0.5f * x * x);
    }

    /* Phi(x) given e = exp(-x*x/2): Phi(-|x|) = e erfcx(|x| / sqrt 2) / 2 */
    static FG_ALWAYS_INLINE float fg_gelu_cdf32(float x, float e) {
        float z = (x < 0 ? -x : x) * 0.70710678f;
        float t = 1.0f / (1.0f + 0.5f * z);
        float p = 8.0254037897e-03f;
        p = p * t - 1.0222394556e-01f;
        p = p * t + 3.8439308656e-01f;
        p = p * t - 6.1712633818e-01f;
        p = p * t + 3.8257974763e-01f;
        p = p * t - 8.0304539557e-02f;
        p = p * t + 2.2022419685e-01f;
        p = p * t + 2.3960188770e-01f;
        p = p * t + 2.8276195362e-01f;
        p = p * t + 2.8206846845e-01f;
        float tail = 0.5f * e * (p * t);
        return x >= 0 ? 1.0f - tail : tail;
    }

    static FG_ALWAYS_INLINE float fg_gelu32(float x) {
        return x * fg_gelu_cdf32(x, fg_gauss32(x));
    }

    static FG_ALWAYS_INLINE float fg_gelu_grad32(float x) {
        float e = fg_gauss32(x);
        return fg_gelu_cdf32(x, e) + x * e * 0.3989422804014327f;
    }

    /* role 0: y = gelu(x); 1: y += g gelu'(x); 2: y = g gelu'(x) (y may be g) */
    FG_SIMD_CLONES
    static void fg_gelu_f32(const float* x, const float* g, float* y, Py_ssize_t n, int role) {
        Py_ssize_t i;
        if (role == 0) {
            for (i = 0; i < n; i++)
                y[i] = fg_gelu32(x[i]);
        } else if (role == 1) {
            for (i = 0; i < n; i++)
                y[i] += g[i] * fg_gelu_grad32(x[i]);
        } else {
            for (i = 0; i < n; i++)
                y[i] = g[i] * fg_gelu_grad32(x[i]);
        }
    }
    """
    float fg_gelu32(float x) noexcept nogil
    float fg_gelu_grad32(float x) noexcept nogil
    void fg_gelu_f32(const float* x, const float* g, float* y, Py_ssize_t n, int role) noexcept nogil


cdef inline floating gelu_forward(floating x, double p, double q) noexcept nogil:
    if floating is float:
        return fg_gelu32(x)
    return x * 0.5 * c_erfc(-x * SQRT_HALF)


cdef inline floating gelu_backward(floating g, floating x, floating y, double p,
                                   double q) noexcept nogil:
    if floating is float:
        return g * fg_gelu_grad32(x)
    return g * (0.5 * c_erfc(-x * SQRT_HALF) + x * c_exp(-0.5 * x * x) * INV_SQRT_2PI)


def gelu(x):
    return _unary(GELU, x, 0, 0)


# -- silu --------------------------------------------------------------------
# x sigmoid(x); d/dx = s (1 + x (1 - s)).  One op rather than x * x.sigmoid():
# one node, one pass each way.  float64: libm's exp; float32: the gelu block's
# exp, so the loops vectorize (compiled for plain x86-64, AVX2 and AVX-512).
cdef extern from *:
    """
    /* sigmoid(x) in float32 from e = exp(-|x|): no overflow, one division */
    static FG_ALWAYS_INLINE float fg_sigmoid32(float x) {
        float e = fg_expneg32(x < 0 ? x : -x);
        float s = (x >= 0 ? 1.0f : e) / (1.0f + e);
        return x == x ? s : x;                        /* NaN stays NaN */
    }

    static FG_ALWAYS_INLINE float fg_silu_grad32(float x) {
        float s = fg_sigmoid32(x);
        return s * (1.0f + x * (1.0f - s));
    }

    /* sigmoid's float32 loops (here: the sigmoid block comes before the exp they need).
       role 0: y = sigmoid(x); 1: gx += g y (1 - y); 2: gx = g y (1 - y) (gx may be g) */
    FG_SIMD_CLONES
    static void fg_sigmoid_f32(const float* x, const float* g, const float* y, float* out,
                               Py_ssize_t n, int role) {
        Py_ssize_t i;
        if (role == 0) {
            for (i = 0; i < n; i++)
                out[i] = fg_sigmoid32(x[i]);
        } else if (role == 1) {
            for (i = 0; i < n; i++)
                out[i] += g[i] * y[i] * (1.0f - y[i]);
        } else {
            for (i = 0; i < n; i++)
                out[i] = g[i] * y[i] * (1.0f - y[i]);
        }
    }

    /* role 0: y = silu(x); 1: y += g silu'(x); 2: y = g silu'(x) (y may be g) */
    FG_SIMD_CLONES
    static void fg_silu_f32(const float* x, const float* g, float* y, Py_ssize_t n, int role) {
        Py_ssize_t i;
        if (role == 0) {
            for (i = 0; i < n; i++)
                y[i] = x[i] * fg_sigmoid32(x[i]);
        } else if (role == 1) {
            for (i = 0; i < n; i++)
                y[i] += g[i] * fg_silu_grad32(x[i]);
        } else {
            for (i = 0; i < n; i++)
                y[i] = g[i] * fg_silu_grad32(x[i]);
        }
    }
    """
    float fg_sigmoid32(float x) noexcept nogil
    float fg_silu_grad32(float x) noexcept nogil
    void fg_sigmoid_f32(const float* x, const float* g, const float* y, float* out, Py_ssize_t n,
                        int role) noexcept nogil
    void fg_silu_f32(const float* x, const float* g, float* y, Py_ssize_t n, int role) noexcept nogil


cdef inline floating silu_forward(floating x, double p, double q) noexcept nogil:
    if floating is float:
        return x * fg_sigmoid32(x)
    return x * _sigmoid(x)


cdef inline floating silu_backward(floating g, floating x, floating y, double p,
                                   double q) noexcept nogil:
    cdef double s
    if floating is float:
        return g * fg_silu_grad32(x)
    s = _sigmoid(x)
    return g * (s * (1 + x * (1 - s)))


def silu(x):
    return _unary(SILU, x, 0, 0)


# -- gather --------------------------------------------------------------------
# Native when the index has the input's shape outside `dim` (what max/min over a
# dim and most torch.gather calls use): the input seen as (outer, n, inner), the
# index and the result as (outer, k, inner).  The index is the node's own int64
# copy, bounds-checked once (reference.check_gather); the one door checks the
# input's layout before the kernels read it, so its shape is the recorded one.
cdef void gather_forward(const floating* x, const long long* idx, floating* y,
                         Py_ssize_t outer, Py_ssize_t n, Py_ssize_t k,
                         Py_ssize_t inner) noexcept nogil:
    cdef Py_ssize_t o, j, i
    cdef const floating* src
    cdef const long long* row
    cdef floating* dst
    for o in range(outer):
        src = x + o * n * inner
        for j in range(k):
            row = idx + (o * k + j) * inner
            dst = y + (o * k + j) * inner
            for i in range(inner):
                dst[i] = src[row[i] * inner + i]


cdef void gather_backward(const floating* g, const long long* idx, floating* gx,
                          Py_ssize_t outer, Py_ssize_t n, Py_ssize_t k,
                          Py_ssize_t inner) noexcept nogil:
    cdef Py_ssize_t o, j, i
    cdef floating* dst
    cdef const long long* row
    cdef const floating* src
    for o in range(outer):
        dst = gx + o * n * inner
        for j in range(k):
            row = idx + (o * k + j) * inner
            src = g + (o * k + j) * inner
            for i in range(inner):
                dst[row[i] * inner + i] += src[i]


cdef bint _gather_native(TensorBase x, int dim, cnp.ndarray index):
    cdef Py_ssize_t d
    if not _nativeable(x):
        return False
    for d in range(len(x._shape)):
        if d != dim and index.shape[d] != x._shape[d]:
            return False
    return True


cdef void _gather_dims(TensorBase x, int dim, cnp.ndarray index, Py_ssize_t* outer,
                       Py_ssize_t* n, Py_ssize_t* k, Py_ssize_t* inner) noexcept:
    cdef Py_ssize_t d, o = 1, i = 1
    for d in range(dim):
        o *= x._shape[d]
    for d in range(dim + 1, len(x._shape)):
        i *= x._shape[d]
    outer[0] = o
    n[0] = x._shape[dim]
    k[0] = index.shape[dim]
    inner[0] = i


cdef int _gather_values(TensorBase x, int dim, cnp.ndarray index, TensorBase out) except -1:
    cdef Py_ssize_t outer, n, k, inner
    _gather_dims(x, dim, index, &outer, &n, &k, &inner)
    cdef const long long* idx = <const long long*>cnp.PyArray_DATA(index)
    if x._dt == DT_F64:
        gather_forward(<double*>x._data, idx, <double*>out._data, outer, n, k, inner)
    else:
        gather_forward(<float*>x._data, idx, <float*>out._data, outer, n, k, inner)
    return 0


def gather(x, dim, index):
    x = _operand(x, "gather")
    dim, index = _ref.check_gather(x.shape, dim, index)
    cdef TensorBase a = x, out
    if not _gather_native(a, dim, index):
        return apply(GATHER, (x,), (index, dim))
    out = _alloc(tuple(index.shape), index.size, a._dt)
    _gather_values(a, dim, index, out)
    if fg_grad_enabled() and (a._requires_grad or fg_keeps_values()):
        _record(out, GATHER, a, None, index)
        out._c = dim
        out._requires_grad = a._requires_grad
    return out


cdef bint _scan32(const float* src, const float* y, long long* idx, Py_ssize_t n,
                  Py_ssize_t inner) noexcept nogil:
    """idx[i] = the first j with src[j, i] a hit of y[i] (src: n rows of inner), through
    32-bit indices, the float's own width, so that the select vectorizes; False: no memory."""
    cdef int* ix = <int*>malloc(inner * sizeof(int))
    cdef Py_ssize_t i, j
    cdef int jj
    if ix == NULL:
        return False
    for i in range(inner):
        ix[i] = <int>(n - 1)
    for j in range(n - 2, -1, -1):           # backwards: the first hit is written last
        jj = <int>j
        for i in range(inner):
            ix[i] = jj if _hit(src[j * inner + i], y[i]) else ix[i]
    for i in range(inner):
        idx[i] = ix[i]
    free(ix)
    return True


cdef void extreme_dim_forward(const floating* x, long long* idx, floating* y, Py_ssize_t outer,
                              Py_ssize_t n, Py_ssize_t inner, bint is_max, int dt) noexcept nogil:
    # y[o, i] = the max (min) of x[o, :, i] and idx its first position, NaN winning
    # (torch): the values by NumPy's maximum / minimum loops (SIMD), then the first
    # element equal to them, then y read back at idx (so -0.0 and 0.0 stay apart)
    cdef Py_ssize_t o, j, i
    cdef const floating* src
    cdef int slot = UL_MAXIMUM if is_max else UL_MINIMUM
    cdef bint simd = _ul_has(slot, dt)
    cdef _ul_arg arg = _ul_arg_fn[1 if is_max else 0][dt]
    cdef cnp.npy_intp at
    cdef floating v, b
    cdef long long* ix
    for o in range(outer):
        src = x + o * n * inner
        if inner == 1 and arg != NULL:      # NumPy's argmax / argmin of the row
            at = 0
            arg(<void*>src, n, &at, NULL)
            idx[o] = at
            y[o] = src[at]
            continue
        memcpy(y + o * inner, src, inner * sizeof(floating))
        if inner == 1:
            if simd:
                _ul_reduce(slot, dt, <char*>(src + 1), <char*>(y + o), n - 1)
            else:
                for j in range(1, n):
                    v = src[j]
                    b = y[o]
                    if b == b and (v != v or (v > b if is_max else v < b)):
                        y[o] = v
            j = 0
            while j < n - 1 and not _hit(src[j], y[o]):
                j += 1
            idx[o] = j
            y[o] = src[j]
            continue
        for j in range(1, n):
            if simd:
                _ul_binary(slot, dt, <char*>(y + o * inner), sizeof(floating),
                           <char*>(src + j * inner), sizeof(floating), <char*>(y + o * inner),
                           inner)
            else:
                for i in range(inner):
                    v = src[j * inner + i]
                    b = y[o * inner + i]
                    if b == b and (v != v or (v > b if is_max else v < b)):
                        y[o * inner + i] = v
        ix = idx + o * inner
        if not (floating is float and n < 2147483647 and _scan32(src, y + o * inner, ix, n,
                                                                 inner)):
            for i in range(inner):
                ix[i] = n - 1
            for j in range(n - 2, -1, -1):       # backwards: the first hit is written last
                for i in range(inner):
                    ix[i] = j if _hit(src[j * inner + i], y[o * inner + i]) else ix[i]
        for i in range(inner):
            y[o * inner + i] = src[idx[o * inner + i] * inner + i]


def extreme_dim(x, int dim, bint keepdim, bint is_max):
    """(values, int64 indices) of max / min along dim (as torch.max(x, dim)): values are a
    gather node, so the gradient goes to the one position picked; x is not empty."""
    x = _operand(x, "max" if is_max else "min")
    cdef TensorBase a = x, out
    cdef Py_ssize_t outer, n, k, inner
    shape = list(a._shape)
    if not _nativeable(a):              # other dtypes, strided values: as reference.extreme_dim
        pick = np.argmax if is_max else np.argmin
        picked = np.expand_dims(pick(_value(x), axis=dim), dim)
        out, indices = apply(GATHER, (x,), (picked, dim)), from_array(picked)
        if not keepdim:
            del shape[dim]
            return reshape(out, tuple(shape)), reshape(indices, tuple(shape))
        return out, indices
    shape[dim] = 1
    cdef cnp.ndarray index = np.empty(shape, dtype=np.int64)
    out = _alloc(tuple(shape), index.size, a._dt)
    _gather_dims(a, dim, index, &outer, &n, &k, &inner)
    if a._dt == DT_F64:
        extreme_dim_forward(<double*>a._data, <long long*>cnp.PyArray_DATA(index),
                            <double*>out._data, outer, n, inner, is_max, DT_F64)
    else:
        extreme_dim_forward(<float*>a._data, <long long*>cnp.PyArray_DATA(index),
                            <float*>out._data, outer, n, inner, is_max, DT_F32)
    if fg_grad_enabled() and (a._requires_grad or fg_keeps_values()):
        _record(out, GATHER, a, None, index)
        out._c = dim
        out._requires_grad = a._requires_grad
    indices = from_array(index)
    if not keepdim:
        del shape[dim]
        return reshape(out, tuple(shape)), reshape(indices, tuple(shape))
    return out, indices


cdef int _gather_dim_replay(TensorBase node) except -1:
    return _gather_values(node._a, <int>node._c, node._d, node)


cdef int _gather_dim_backward(TensorBase node) except -1:
    cdef TensorBase a = node._a
    cdef cnp.ndarray index = node._d
    cdef Py_ssize_t outer, n, k, inner
    _gather_dims(a, <int>node._c, index, &outer, &n, &k, &inner)
    cdef const long long* idx = <const long long*>cnp.PyArray_DATA(index)
    cdef char* ga = _grad_buffer(a)
    if a._dt == DT_F64:
        gather_backward(<double*>node._g, idx, <double*>ga, outer, n, k, inner)
    else:
        gather_backward(<float*>node._g, idx, <float*>ga, outer, n, k, inner)
    return 0


# -- sum ---------------------------------------------------------------------
cdef void sum_forward(const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    # NumPy's order in the element type, so a full sum equals np.sum bit for
    # bit (a float32 sum that overflows is inf, as in NumPy and PyTorch).
    # The total starts at +0, so a sum of -0.0s is +0.0, as in both.
    y[0] = 0
    y[0] += _pairwise(x, n)


cdef void sum_backward(const floating* g, floating* gx, Py_ssize_t n, bint write) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gv = g[0]
    for i in range(n):
        _put(&gx[i], gv, write)



cdef object _normalize_axes(str name, tuple shape, object axis):
    """reference.normalize_axes, its common call (one int axis in range) in short."""
    cdef Py_ssize_t nd = len(shape)
    if type(axis) is int and nd > 0 and -nd <= axis < nd:
        return (axis % nd,)
    return _ref.normalize_axes(name, shape, axis)


def normalize_axes(name, shape, axis):
    """reference.normalize_axes (an axis argument as a sorted tuple of axes, or None)."""
    if type(shape) is tuple:
        return _normalize_axes(name, shape, axis)
    return _ref.normalize_axes(name, shape, axis)


def sum(x, axis=None, keepdims=False):
    cdef TensorBase a, out
    x = _operand(x, "sum")
    axis = _normalize_axes("sum", x.shape, axis)
    if axis is not None and isinstance(x, TensorBase) and _nativeable(<TensorBase>x):
        out = _sum_axes(<TensorBase>x, axis, bool(keepdims))     # native: _reduce.pxi
        if out is not None:
            return out
    # the full sum is native for strided inputs too (a transpose: _views.pxi)
    if axis is not None or not isinstance(x, TensorBase) or (<TensorBase>x)._dt == DT_OTHER:
        return apply(SUM, (x,), (axis, bool(keepdims)))
    a = x
    if a._data == NULL:
        _array(a)                    # raises for values a consumer took over
    out = _alloc((1,) * len(a._shape) if keepdims else (), 1, a._dt)
    _sum_values(a, out)
    if fg_grad_enabled() and (a._requires_grad or fg_keeps_values()):
        out._requires_grad = a._requires_grad
        out._op = SUM
        out._native = True
        out._form = FORM_TT
        out._a = a
        out._c = 1 if keepdims else 0
        out._va = _ver(a)
        out._la = a._layout
        if _node_hook is not None:
            _node_hook(out)
    return out


cdef int _sum_values(TensorBase a, TensorBase out) except -1:
    if a._data == NULL:
        return _strided_sum(<cnp.ndarray>a._arr, out)
    if a._dt == DT_F64:
        sum_forward(<double*>a._data, <double*>out._data, a._size)
    else:
        sum_forward(<float*>a._data, <float*>out._data, a._size)
    return 0


cdef int _sum_replay(TensorBase node) except -1:
    if _sum_axes_replay(node):                      # native: over axes, _reduce.pxi
        return 0
    return _sum_values(node._a, node)


cdef int _sum_backward(TensorBase node) except -1:
    cdef TensorBase a = node._a
    cdef bint fresh = False
    if _sum_axes_backward(node):                    # native: over axes, _reduce.pxi
        return 0
    cdef char* ga = _grad_buffer_raw(a, &fresh)
    if a._dt == DT_F64:
        sum_backward(<double*>node._g, <double*>ga, a._size, fresh)
    else:
        sum_backward(<float*>node._g, <float*>ga, a._size, fresh)
    return 0


# -- max ... where: the reference rules, through apply ----------------------
def max(x, axis=None, keepdims=False):
    x = _operand(x, "max")
    check_nonempty("max", x.shape)
    axis = _normalize_axes("max", x.shape, axis)
    if isinstance(x, TensorBase) and _nativeable(<TensorBase>x):    # native: _reduce.pxi
        out = _reduce(MAX, <TensorBase>x, axis, bool(keepdims))
        if out is not None:
            return out
    return apply(MAX, (x,), (axis, bool(keepdims)))


def min(x, axis=None, keepdims=False):
    x = _operand(x, "min")
    check_nonempty("min", x.shape)
    axis = _normalize_axes("min", x.shape, axis)
    if isinstance(x, TensorBase) and _nativeable(<TensorBase>x):    # native: _reduce.pxi
        out = _reduce(MIN, <TensorBase>x, axis, bool(keepdims))
        if out is not None:
            return out
    return apply(MIN, (x,), (axis, bool(keepdims)))


def logsumexp(x, axis=None, keepdims=False):
    x = _operand(x, "logsumexp")
    axis = _normalize_axes("logsumexp", x.shape, axis)
    if isinstance(x, TensorBase) and _nativeable(<TensorBase>x):    # native: _reduce.pxi
        out = _reduce(LOGSUMEXP, <TensorBase>x, axis, bool(keepdims))
        if out is not None:
            return out
    return apply(LOGSUMEXP, (x,), (axis, bool(keepdims)))


# -- softmax, log_softmax: natively along any axis of a contiguous tensor (_softmax.pxi)
cdef object _softmax_axis(str name, object x, object axis):
    """check_softmax_axis's result; a plain int axis of a tensor is checked here in C."""
    cdef Py_ssize_t nd, ax
    if type(axis) is int and isinstance(x, TensorBase) and -64 <= axis <= 64:
        nd = len((<TensorBase>x)._shape)
        ax = axis
        if -(nd if nd > 1 else 1) <= ax < (nd if nd > 1 else 1):
            return None if nd == 0 else (ax + nd if ax < 0 else ax)
    return check_softmax_axis(name, x.shape if isinstance(x, TensorBase) else np.shape(x),
                              axis)


def softmax(x, axis=-1):
    x = _operand(x, "softmax")
    ax = _softmax_axis("softmax", x, axis)
    if isinstance(x, TensorBase) and _nativeable(<TensorBase>x):
        return _softmax_native(SOFTMAX, <TensorBase>x, ax)
    return apply(SOFTMAX, (x,), (ax,))


def log_softmax(x, axis=-1):
    x = _operand(x, "log_softmax")
    ax = _softmax_axis("log_softmax", x, axis)
    if isinstance(x, TensorBase) and _nativeable(<TensorBase>x):
        return _softmax_native(LOG_SOFTMAX, <TensorBase>x, ax)
    return apply(LOG_SOFTMAX, (x,), (ax,))


# -- reshape, permute, expand, index: views natively (_views.pxi) ------------
def reshape(x, shape):
    x = _operand(x, "reshape")
    if isinstance(x, TensorBase):
        return _view_op(RESHAPE, <TensorBase>x,
                        _reshape_shape((<TensorBase>x)._shape, (<TensorBase>x)._size, shape))
    return apply(RESHAPE, (x,), (check_reshape(np.shape(x), shape),))


def permute(x, axes):
    x = _operand(x, "permute")
    if isinstance(x, TensorBase):
        return _view_op(PERMUTE, <TensorBase>x, _permute_axes((<TensorBase>x)._shape, axes))
    return apply(PERMUTE, (x,), (check_permute(np.shape(x), axes),))


def expand(x, shape):
    x = _operand(x, "expand")
    if isinstance(x, TensorBase):
        return _view_op(EXPAND, <TensorBase>x, _expand_shape((<TensorBase>x)._shape, shape))
    return apply(EXPAND, (x,), (check_expand(np.shape(x), shape),))


def index_(x, key):
    x = _operand(x, "index")
    if isinstance(x, TensorBase):
        if _basic_key(key):
            try:
                out = _view_op(INDEX, <TensorBase>x, key)
            except IndexError:
                out = None                  # the reference's check says what is wrong
        else:
            out = _gather(<TensorBase>x, key)       # an array key: _gather.pxi
        if out is not None:
            return out
    return apply(INDEX, (x,), (check_index(_value(x), key),))


# -- cat and where: natively for one float dtype and C-contiguous inputs (_gather.pxi) --
def cat(tensors, axis=0):
    cdef list ts = []
    for t in tensors:
        ts.append(_operand(t, "cat"))
    if not ts:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    for t in ts:
        if not isinstance(t, TensorBase):
            raise TypeError("cat: expected tensors or arrays, got a Python number")
    out = _cat(ts, axis)
    if out is not None:
        return out
    return apply(CAT, tuple(ts), (check_cat([t.shape for t in ts], axis),))


def where(cond, a, b):
    if cnp.PyArray_Check(cond) and cnp.PyArray_TYPE(<cnp.ndarray>cond) == cnp.NPY_BOOL:
        cond = from_array(cond)                   # what the two lines below give, at once
    else:
        cond = _operand(cond, "where")
        cond = from_array(np.asarray(_value(cond), dtype=bool))
    a, b = _operand(a, "where"), _operand(b, "where")
    out = _where(<TensorBase>cond, a, b)
    if out is not None:
        return out
    check_where(cond.shape, np.shape(_value(a)), np.shape(_value(b)))
    return apply(WHERE, (cond, a, b))


def set_default_float(dtype):
    """The dtype a Python float or an integer division gives (fg.set_default_dtype)."""
    _ref.set_default_float(dtype)


# -- maximum -----------------------------------------------------------------
cdef inline floating _max_share(floating a, floating b) noexcept nogil:
    # d maximum(a, b) / da (swap a and b for db; minimum swaps the comparison).
    # Ties share the gradient; a NaN on either side gives both inputs the whole
    # of it (PyTorch's rule: only a strict loser gets 0).  0, 0.5 and 1 are
    # exact in either type, so the product is the same as in double, and the
    # loop stays in the element type (vectorized).
    return 0 if a < b else (0.5 if a == b else 1)


cdef inline floating maximum_forward(floating a, floating b, bint one) noexcept nogil:
    # NaN on either side propagates; a tie gives b: maximum(0.0, -0.0) is -0.0
    return a if ((a > b) | (a != a)) else b     # `|`, not `or`: no branch, so it vectorizes


cdef inline floating maximum_backward_a(floating g, floating a, floating b, floating y,
                                        bint one) noexcept nogil:
    return g * _max_share(a, b)


cdef inline floating maximum_backward_b(floating g, floating a, floating b, floating y,
                                        bint one) noexcept nogil:
    return g * _max_share(b, a)


def maximum(a, b):
    return _binary(MAXIMUM, a, b)


# -- minimum -----------------------------------------------------------------
cdef inline floating minimum_forward(floating a, floating b, bint one) noexcept nogil:
    return a if ((a < b) | (a != a)) else b


cdef inline floating minimum_backward_a(floating g, floating a, floating b, floating y,
                                        bint one) noexcept nogil:
    return g * _max_share(b, a)


cdef inline floating minimum_backward_b(floating g, floating a, floating b, floating y,
                                        bint one) noexcept nogil:
    return g * _max_share(a, b)


def minimum(a, b):
    return _binary(MINIMUM, a, b)


# -- cast, function, clone, detach, alias ----------------------------------
def cast(x, dtype):
    x = _operand(x, "cast")
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    return apply(CAST, (x,), (dtype,))


def function(fn, ctx, inputs):
    inputs = tuple(_operand(x, fn.__name__) for x in inputs)
    ctx.needs_input_grad = tuple(isinstance(x, TensorBase) and (<TensorBase>x)._requires_grad
                                 for x in inputs)
    return apply(FUNCTION, inputs, (fn, ctx))


def clone(x):
    return apply(CLONE, (_operand(x, "clone"),))


def detach(x):
    """A new leaf sharing x's values and version counter, cut off from the graph."""
    cdef TensorBase t = from_array(_array(<TensorBase>x))
    return _alias(t, <TensorBase>x)


def alias(TensorBase t, TensorBase base):
    """Make t (which shares base's memory) share base's version counter too (copy.copy)."""
    return _alias(t, base)


# -- linear ------------------------------------------------------------------
cdef void linear_forward(const floating* x, const floating* w, const floating* bias, floating* y,
                         Py_ssize_t n, Py_ssize_t k, Py_ssize_t m) noexcept nogil:
    """y (n, m) = x (n, k) @ w (m, k).T + bias (m) (bias may be NULL)."""
    cdef Py_ssize_t r, i, o
    cdef floating s
    for r in range(n):
        for o in range(m):
            s = bias[o] if bias != NULL else 0
            for i in range(k):
                s += x[r * k + i] * w[o * k + i]
            y[r * m + o] = s


cdef void linear_backward(const floating* g, const floating* x, const floating* w, floating* gx,
                          floating* gw, floating* gb, Py_ssize_t n, Py_ssize_t k,
                          Py_ssize_t m) noexcept nogil:
    """gx += g @ w, gw += g.T @ x, gb += column sums of g (any may be NULL)."""
    cdef Py_ssize_t r, i, o
    cdef floating gv
    for r in range(n):
        for o in range(m):
            gv = g[r * m + o]
            if gx != NULL:
                for i in range(k):
                    gx[r * k + i] += gv * w[o * k + i]
            if gw != NULL:
                for i in range(k):
                    gw[o * k + i] += gv * x[r * k + i]
            if gb != NULL:
                gb[o] += gv


def linear(x, weight, bias=None):
    x, weight = _operand(x, "linear"), _operand(weight, "linear")
    bias = None if bias is None else _operand(bias, "linear")
    for name, t in (("input", x), ("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, TensorBase):
            raise TypeError("linear: %s must be a tensor, got %s" % (name, type(t).__name__))
    check_linear(x.shape, weight.shape, None if bias is None else bias.shape,
                 [t.dtype for t in (x, weight, bias) if t is not None])
    cdef TensorBase tx = x, tw = weight, tb = bias, out
    if not (_nativeable(tx) and _nativeable(tw) and tw._dt == tx._dt
            and (tb is None or (_nativeable(tb) and tb._dt == tx._dt))) \
            or tx._size == 0 or tw._size == 0:
        return apply(LINEAR, (x, weight) if bias is None else (x, weight, bias))
    cdef Py_ssize_t k = tw._shape[1], m = tw._shape[0]
    cdef Py_ssize_t n = tx._size // k
    cdef int dt = tx._dt
    out = _alloc(tuple(tx._shape)[:len(tx._shape) - 1] + (m,), n * m, dt)
    _linear_values(tx, tw, tb, out)
    cdef bint needs = tx._requires_grad or tw._requires_grad or \
        (tb is not None and tb._requires_grad)
    if fg_grad_enabled() and (needs or fg_keeps_values()):
        _record(out, LINEAR, tx, tw, tb)
        out._requires_grad = needs
    return out


cdef int _linear_values(TensorBase tx, TensorBase tw, TensorBase tb, TensorBase out) except -1:
    """out = x @ w.T + b (tb may be None) for native operands."""
    cdef Py_ssize_t k = tw._shape[1], m = tw._shape[0]
    cdef Py_ssize_t n = tx._size // k
    cdef int dt = tx._dt
    if n * k * m >= BLAS_MIN:
        y = _view(out._data, (n, m), dt)
        np.matmul(_view(tx._data, (n, k), dt), _view(tw._data, (m, k), dt).T, out=y)
        if tb is not None:
            np.add(y, _view(tb._data, (m,), dt), out=y)
    elif dt == DT_F64:
        linear_forward(<double*>tx._data, <double*>tw._data,
                       <double*>(tb._data if tb is not None else NULL), <double*>out._data, n, k, m)
    else:
        linear_forward(<float*>tx._data, <float*>tw._data,
                       <float*>(tb._data if tb is not None else NULL), <float*>out._data, n, k, m)
    return 0


cdef int _linear_replay(TensorBase node) except -1:
    return _linear_values(node._a, node._b, node._d, node)


cdef int _linear_backward(TensorBase node) except -1:
    cdef TensorBase x = node._a, w = node._b, b = node._d
    cdef Py_ssize_t k = w._shape[1], m = w._shape[0]
    cdef Py_ssize_t n = x._size // k
    cdef bint fresh_x = False, fresh_w = False
    cdef char* gx = _grad_buffer_raw(x, &fresh_x) if x._requires_grad else NULL
    cdef char* gw = _grad_buffer_raw(w, &fresh_w) if w._requires_grad else NULL
    cdef char* gb = _grad_buffer(b) if b is not None and b._requires_grad else NULL
    cdef int dt = x._dt
    if n * k * m >= BLAS_MIN:
        g = _view(node._g, (n, m), dt)
        if gx != NULL:
            if fresh_x:
                np.matmul(g, _view(w._data, (m, k), dt), out=_view(gx, (n, k), dt))
            else:
                _product_into(gx, False, dt, n * k, np.matmul(g, _view(w._data, (m, k), dt)))
        if gw != NULL:
            if fresh_w:
                np.matmul(g.T, _view(x._data, (n, k), dt), out=_view(gw, (m, k), dt))
            else:
                _product_into(gw, False, dt, m * k, np.matmul(g.T, _view(x._data, (n, k), dt)))
        if gb != NULL:             # the bias: column sums of g, a loop the compiler vectorizes
            if dt == DT_F64:
                column_sums(<double*>node._g, <double*>gb, n, m)
            else:
                column_sums(<float*>node._g, <float*>gb, n, m)
        return 0
    _zero_if_fresh(gx, fresh_x, n * k * ITEMSIZE[dt])
    _zero_if_fresh(gw, fresh_w, m * k * ITEMSIZE[dt])
    if dt == DT_F64:
        linear_backward(<double*>node._g, <double*>x._data, <double*>w._data, <double*>gx,
                        <double*>gw, <double*>gb, n, k, m)
    else:
        linear_backward(<float*>node._g, <float*>x._data, <float*>w._data, <float*>gx,
                        <float*>gw, <float*>gb, n, k, m)
    return 0


# -- cross_entropy -----------------------------------------------------------
# Rows of logits against class targets.  The forward is log-softmax per row
# (_ce_row, _softmax.pxi: NumPy's max and exp loops); a recorded node keeps
# the rows' softmax, (n, c) in the logits' dtype, in its `_saved` block (freed
# with the node or when backward releases the graph; a replay rewrites it),
# so the backward is one pass, (softmax - onehot) times the incoming gradient.
cdef double cross_entropy_forward(const floating* z, const long long* target, floating* losses,
                                  floating* p, Py_ssize_t n, Py_ssize_t c,
                                  int dt) noexcept nogil:
    """losses[r] = logsumexp(z[r]) - z[r, target[r]] (losses may be NULL), p (n, c; may be
    NULL) = softmax of the rows; returns the losses' sum."""
    cdef Py_ssize_t r
    cdef double loss, total = 0
    cdef double t[UL_CHUNK]
    for r in range(n):
        loss = _ce_row(z + r * c, target[r], p + r * c if p != NULL else NULL, c,
                       <floating*>t, dt)
        if losses != NULL:
            losses[r] = <floating>loss
        total += loss
    return total


cdef void cross_entropy_backward(const floating* g, Py_ssize_t g_step, double scale,
                                 const floating* p, const long long* target, floating* gz,
                                 Py_ssize_t n, Py_ssize_t c, bint write) noexcept nogil:
    """gz[r] (= if write, else +=) g[r * g_step] * scale * (p[r] - onehot(target[r])),
    p the saved softmax of the rows."""
    cdef Py_ssize_t r, j
    cdef floating w
    cdef floating* row
    cdef const floating* pr
    for r in range(n):
        w = <floating>(g[r * g_step] * scale)
        row = gz + r * c
        pr = p + r * c
        if write:
            for j in range(c):
                row[j] = w * pr[j]
        else:
            for j in range(c):
                row[j] += w * pr[j]
        row[target[r]] -= w


cdef dict _REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


cdef object _class_targets(logits, target, reduction):
    """check_cross_entropy's result, with its common case checked here in C: an int64
    C-contiguous target array of the right length, every class in range.  Anything
    else (or anything wrong) goes through check_cross_entropy, which says what."""
    cdef cnp.ndarray arr
    cdef const long long* t
    cdef Py_ssize_t i, n, c
    cdef TensorBase z
    if isinstance(target, TensorBase):
        target = _array(<TensorBase>target)
    if isinstance(logits, TensorBase) and cnp.PyArray_Check(target) \
            and (reduction == "mean" or reduction == "sum" or reduction == "none"):
        z = <TensorBase>logits
        arr = <cnp.ndarray>target
        if len(z._shape) == 2 and cnp.PyArray_TYPE(arr) == cnp.NPY_INT64 \
                and cnp.PyArray_NDIM(arr) == 1 and cnp.PyArray_IS_C_CONTIGUOUS(arr):
            n = z._shape[0]
            c = z._shape[1]
            if n > 0 and cnp.PyArray_DIM(arr, 0) == n:
                t = <const long long*>cnp.PyArray_DATA(arr)
                for i in range(n):
                    if t[i] < 0 or t[i] >= c:
                        break
                else:
                    return arr
    return check_cross_entropy(logits.shape, target, reduction)


def cross_entropy(logits, target, reduction="mean"):
    logits = _operand(logits, "cross_entropy")
    target = _class_targets(logits, target, reduction)
    cdef TensorBase z = logits, out
    if not _nativeable(z):
        return apply(CROSS_ENTROPY, (logits,), (target, reduction))
    cdef Py_ssize_t n = z._shape[0], c = z._shape[1]
    cdef int code = _REDUCTIONS[reduction]
    cdef long long* t = <long long*>cnp.PyArray_DATA(target)
    cdef char* saved = NULL
    cdef bint record = fg_grad_enabled() and (z._requires_grad or fg_keeps_values())
    out = _alloc((n,) if code == 0 else (), n if code == 0 else 1, z._dt)
    if record:
        saved = <char*>_mem_alloc(n * c * ITEMSIZE[z._dt] if n * c else 1)
        if saved == NULL:
            raise MemoryError()
        out._saved = saved            # owned by out from here on
    _cross_entropy_values(z, t, out, code, saved)
    if record:
        _record(out, CROSS_ENTROPY, z, None, target)
        out._c = code
        out._requires_grad = z._requires_grad
    return out


cdef int _cross_entropy_values(TensorBase z, long long* t, TensorBase out, int code,
                               char* saved) except -1:
    cdef Py_ssize_t n = z._shape[0], c = z._shape[1]
    cdef double total
    if z._dt == DT_F64:
        total = cross_entropy_forward(<double*>z._data, t,
                                      <double*>out._data if code == 0 else NULL,
                                      <double*>saved, n, c, DT_F64)
        if code:
            (<double*>out._data)[0] = total / n if code == 1 else total
    else:
        total = cross_entropy_forward(<float*>z._data, t,
                                      <float*>out._data if code == 0 else NULL,
                                      <float*>saved, n, c, DT_F32)
        if code:
            (<float*>out._data)[0] = <float>(total / n if code == 1 else total)
    return 0


cdef int _cross_entropy_saved(TensorBase node) except -1:
    """The node's block for the rows' softmax (made if it has none)."""
    cdef TensorBase z = node._a
    cdef Py_ssize_t size = z._shape[0] * z._shape[1]
    if node._saved == NULL:
        node._saved = <char*>_mem_alloc(size * ITEMSIZE[z._dt] if size else 1)
        if node._saved == NULL:
            raise MemoryError()
    return 0


cdef int _cross_entropy_replay(TensorBase node) except -1:
    _cross_entropy_saved(node)
    return _cross_entropy_values(node._a, <long long*>cnp.PyArray_DATA(<cnp.ndarray>node._d),
                                 node, <int>node._c, node._saved)


cdef int _cross_entropy_backward(TensorBase node) except -1:
    cdef TensorBase z = node._a
    cdef Py_ssize_t n = z._shape[0], c = z._shape[1]
    cdef int code = <int>node._c
    cdef double scale = 1.0 / n if code == 1 else 1.0
    cdef Py_ssize_t step = 1 if code == 0 else 0
    cdef long long* t = <long long*>cnp.PyArray_DATA(<cnp.ndarray>node._d)
    cdef bint fresh = False
    cdef char* gz
    if node._saved == NULL:          # recorded without it: compute the softmax now
        _cross_entropy_saved(node)
        _cross_entropy_values(z, t, _alloc((n,), n, z._dt), 0, node._saved)
    gz = _grad_buffer_raw(z, &fresh)
    if z._dt == DT_F64:
        cross_entropy_backward(<double*>node._g, step, scale, <double*>node._saved, t,
                               <double*>gz, n, c, fresh)
    else:
        cross_entropy_backward(<float*>node._g, step, scale, <float*>node._saved, t,
                               <float*>gz, n, c, fresh)
    return 0


# -- layer_norm: rows of the last k axes, natively for C-contiguous floats ------
# A node keeps eps in _c and k in _c2.  Each row: its mean, then the biased
# variance of the centred values (eight interleaved partial sums, so the loops
# vectorize), rstd = 1 / sqrt(var + eps), y = (x - mean) rstd.  The backward
# reads the row's mean and rstd, kept by the forward in a block in _d (a
# replay rewrites them), and follows reference.py's rule in its order of
# operations: dx = rstd (g - mean(g) - xhat mean(g xhat)).
cdef floating _centred_sq(const floating* x, floating mu, Py_ssize_t n) noexcept nogil:
    """sum of (x[i] - mu)^2, in eight partial sums."""
    cdef Py_ssize_t i, j, m = n - n % 8
    cdef floating r[8]
    cdef floating s = 0, d
    for j in range(8):
        r[j] = 0
    for i in range(0, m, 8):
        for j in range(8):
            d = x[i + j] - mu
            r[j] = r[j] + d * d
    for i in range(m, n):
        d = x[i] - mu
        s = s + d * d
    return ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])) + s


cdef void _ln_stats(const floating* x, Py_ssize_t m, double eps, floating* mu,
                    floating* rstd) noexcept nogil:
    mu[0] = _pairwise(x, m) / <floating>m
    rstd[0] = 1 / <floating>c_sqrt(_centred_sq(x, mu[0], m) / <floating>m + <floating>eps)


cdef void layer_norm_forward(const floating* x, floating* y, floating* stats, Py_ssize_t rows,
                             Py_ssize_t m, double eps) noexcept nogil:
    """y = (x - mean) rstd per row; stats (if not NULL) keeps each row's mean and rstd."""
    cdef Py_ssize_t r, i
    cdef floating mu, rstd
    cdef const floating* xr
    cdef floating* yr
    for r in range(rows):
        xr = x + r * m
        yr = y + r * m
        _ln_stats(xr, m, eps, &mu, &rstd)
        if stats != NULL:
            stats[2 * r] = mu
            stats[2 * r + 1] = rstd
        for i in range(m):
            yr[i] = (xr[i] - mu) * rstd + 0     # -0.0 becomes +0.0 (reference.py)


cdef floating _centred_dot(const floating* a, const floating* x, floating mu, floating r,
                           Py_ssize_t n) noexcept nogil:
    """sum of a[i] ((x[i] - mu) r), in eight partial sums."""
    cdef Py_ssize_t i, j, m = n - n % 8
    cdef floating p[8]
    cdef floating s = 0
    for j in range(8):
        p[j] = 0
    for i in range(0, m, 8):
        for j in range(8):
            p[j] = p[j] + a[i + j] * ((x[i + j] - mu) * r)
    for i in range(m, n):
        s = s + a[i] * ((x[i] - mu) * r)
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7])) + s


cdef void layer_norm_backward(const floating* g, const floating* x, const floating* stats,
                              floating* gx, Py_ssize_t rows, Py_ssize_t m, double eps,
                              bint fresh) noexcept nogil:
    """gx (+)= the rows' gradients; stats: the forward's means and rstds (NULL: recomputed)."""
    cdef Py_ssize_t r, i
    cdef floating mu, rstd, mg, k
    cdef const floating* xr
    cdef const floating* gr
    cdef floating* out
    for r in range(rows):
        xr = x + r * m
        gr = g + r * m
        out = gx + r * m
        if stats != NULL:
            mu = stats[2 * r]
            rstd = stats[2 * r + 1]
        else:
            _ln_stats(xr, m, eps, &mu, &rstd)
        mg = _pairwise(gr, m) / <floating>m
        k = _centred_dot(gr, xr, mu, rstd, m) / <floating>m        # mean(g xhat)
        if fresh:
            for i in range(m):
                out[i] = rstd * (gr[i] - mg - (xr[i] - mu) * rstd * k)
        else:
            for i in range(m):
                out[i] += rstd * (gr[i] - mg - (xr[i] - mu) * rstd * k)


def layer_norm(x, k, eps=1e-5):
    """Normalise x over its last k axes (weight and bias: separate ops)."""
    cdef TensorBase a, out
    x = _operand(x, "layer_norm")
    if not isinstance(x, TensorBase):
        raise TypeError("layer_norm: expected a tensor, got %s" % type(x).__name__)
    a = x
    if not (type(k) is int and type(eps) is float and a._dt != DT_OTHER
            and 1 <= <Py_ssize_t>k <= len(a._shape)):      # else: the checks in full
        k, eps = check_layer_norm(x.shape, x.dtype, k, eps)
    if not _nativeable(a) or a._size == 0:
        return apply(LAYER_NORM, (x,), (k, eps))
    out = _alloc(a._shape, a._size, a._dt)
    out._c = eps
    out._c2 = k
    if fg_grad_enabled() and a._requires_grad:
        out._d = _layer_norm_stats(out, a)
        _layer_norm_values(a, out)
        _record(out, LAYER_NORM, a, None, out._d)
    else:
        _layer_norm_values(a, out)
    return out


cdef _Block _layer_norm_stats(TensorBase node, TensorBase a):
    """A block for the mean and rstd of each row of a node (the backward reads them)."""
    cdef Py_ssize_t rows = a._size // _layer_norm_row(node, a)
    cdef _Block block = _Block.__new__(_Block)
    block.ptr = _mem_alloc(2 * rows * ITEMSIZE[a._dt])
    if block.ptr == NULL:
        raise MemoryError()
    return block


cdef Py_ssize_t _layer_norm_row(TensorBase node, TensorBase a) except -1:
    """The row length of a layer_norm node over a, checked against both shapes."""
    cdef Py_ssize_t k = <Py_ssize_t>node._c2, m = 1, d
    cdef Py_ssize_t nd = len(a._shape)
    if node._shape != a._shape or node._size != a._size or not 1 <= k <= nd or a._size == 0:
        raise RuntimeError("backward: the values of '%s' were replaced through .data by an "
                           "array of another shape" % _op_name(node))
    for d in range(nd - k, nd):
        m *= <Py_ssize_t>a._shape[d]
    return m


cdef inline char* _stats_of(TensorBase node) noexcept:
    return <char*>(<_Block>node._d).ptr if isinstance(node._d, _Block) else NULL


cdef int _layer_norm_values(TensorBase a, TensorBase out) except -1:
    cdef Py_ssize_t m = _layer_norm_row(out, a)
    cdef char* stats = _stats_of(out)       # sized by the rows of a when recorded
    if a._dt == DT_F64:
        layer_norm_forward(<double*>a._data, <double*>out._data, <double*>stats, a._size // m,
                           m, out._c)
    else:
        layer_norm_forward(<float*>a._data, <float*>out._data, <float*>stats, a._size // m, m,
                           out._c)
    return 0


cdef int _layer_norm_replay(TensorBase node) except -1:
    return _layer_norm_values(node._a, node)


cdef int _layer_norm_backward(TensorBase node) except -1:
    cdef TensorBase a = node._a
    cdef Py_ssize_t m = _layer_norm_row(node, a)
    cdef bint fresh = False
    cdef char* stats = _stats_of(node)      # a is unchanged since (SAVES "0": _check_node)
    cdef char* ga = _grad_buffer_raw(a, &fresh)
    if a._dt == DT_F64:
        layer_norm_backward(<double*>node._g, <double*>a._data, <double*>stats, <double*>ga,
                            a._size // m, m, node._c, fresh)
    else:
        layer_norm_backward(<float*>node._g, <float*>a._data, <float*>stats, <float*>ga,
                            a._size // m, m, node._c, fresh)
    return 0


# -- var and std over axes: natively for C-contiguous floats (_reduce.pxi) -------
cdef object _spread_params(object x, object axis, object keepdims, object correction):
    """var / std's parameters for the common call (one int axis or None, an int
    correction), or None: then check_spread checks them in full."""
    cdef Py_ssize_t nd, ax
    if not isinstance(x, TensorBase) or type(correction) is not int:
        return None
    nd = len((<TensorBase>x)._shape)
    if axis is None:
        return (None, bool(keepdims), correction)
    if type(axis) is not int or nd == 0:
        return None
    ax = axis
    if not -nd <= ax < nd:
        return None
    if ax < 0:
        ax += nd
    return ((ax,), bool(keepdims), correction)


def var(x, axis=None, keepdims=False, correction=1):
    x = _operand(x, "var")
    params = _spread_params(x, axis, keepdims, correction)
    if params is None:
        params = check_spread("var", x, axis, keepdims, correction)
    if _nativeable(<TensorBase>x):
        out = _spread(VAR, <TensorBase>x, params[0], params[1], params[2])
        if out is not None:
            return out
    return apply(VAR, (x,), params)


def std(x, axis=None, keepdims=False, correction=1):
    x = _operand(x, "std")
    params = _spread_params(x, axis, keepdims, correction)
    if params is None:
        params = check_spread("std", x, axis, keepdims, correction)
    if _nativeable(<TensorBase>x):
        out = _spread(STD, <TensorBase>x, params[0], params[1], params[2])
        if out is not None:
            return out
    return apply(STD, (x,), params)



# -- norm: the 2-norm over axes, on var / std's loops (_reduce.pxi) --------------
def norm(x, axis=None, keepdims=False):
    """The 2-norm of a float tensor over axes (None: all of it)."""
    x = _operand(x, "norm")
    params = check_norm(x, axis, keepdims)
    if _nativeable(<TensorBase>x):
        out = _spread(NORM, <TensorBase>x, params[0], params[1], 0)
        if out is not None:
            return out
    return apply(NORM, (x,), params)

# ---------------------------------------------------------------------------
# The native rules of each op (reference.FORWARD / BACKWARD's twins)
# ---------------------------------------------------------------------------
# A node made by a native kernel (`_native`) is replayed and differentiated by
# these; every other node by the reference rule (apply, _generic_backward).
# One row per op with a native kernel, in _ops.py's order.
ctypedef int (*node_rule)(TensorBase node) except -1

cdef node_rule NATIVE_REPLAY[N_OPS]      # recompute the node's values in place
cdef node_rule NATIVE_BACKWARD[N_OPS]    # add the node's gradient into its inputs'


cdef void _native(int op, node_rule replay, node_rule backward) noexcept:
    NATIVE_REPLAY[op] = replay
    NATIVE_BACKWARD[op] = backward


_native(ADD, _binary_replay, _binary_backward)
_native(SUB, _binary_replay, _binary_backward)
_native(MUL, _binary_replay, _binary_backward)
_native(DIV, _binary_replay, _binary_backward)
_native(NEG, _unary_replay, _unary_backward)
_native(POW, _binary_replay, _binary_backward)
_native(MATMUL, _matmul_replay, _matmul_backward)
_native(EXP, _unary_replay, _unary_backward)
_native(LOG, _unary_replay, _unary_backward)
_native(SQRT, _unary_replay, _unary_backward)
_native(ABS, _unary_replay, _unary_backward)
_native(SIN, _unary_replay, _unary_backward)
_native(COS, _unary_replay, _unary_backward)
_native(TANH, _unary_replay, _unary_backward)
_native(SIGMOID, _unary_replay, _unary_backward)
_native(RELU, _unary_replay, _unary_backward)
_native(LEAKY_RELU, _unary_replay, _unary_backward)
_native(CLIP, _unary_replay, _unary_backward)
_native(GELU, _unary_replay, _unary_backward)
_native(SILU, _unary_replay, _unary_backward)
_native(GATHER, _gather_dim_replay, _gather_dim_backward)
_native(SUM, _sum_replay, _sum_backward)
_native(MAX, _reduce_replay, _reduce_backward)              # native: _reduce.pxi
_native(MIN, _reduce_replay, _reduce_backward)
_native(LOGSUMEXP, _reduce_replay, _reduce_backward)
_native(RESHAPE, _view_replay, _view_backward)                # native: _views.pxi
_native(PERMUTE, _view_replay, _view_backward)
_native(EXPAND, _view_replay, _view_backward)
_native(INDEX, _index_replay, _index_backward)              # views, or a gather: _gather.pxi
_native(CAT, _cat_replay, _cat_backward)                      # native: _gather.pxi
_native(WHERE, _where_replay, _where_backward)
_native(MAXIMUM, _binary_replay, _binary_backward)
_native(MINIMUM, _binary_replay, _binary_backward)
_native(LINEAR, _linear_replay, _linear_backward)
_native(CROSS_ENTROPY, _cross_entropy_replay, _cross_entropy_backward)
_native(LAYER_NORM, _layer_norm_replay, _layer_norm_backward)
_native(VAR, _spread_replay, _spread_backward)                   # native: _reduce.pxi
_native(STD, _spread_replay, _spread_backward)
_native(NORM, _spread_replay, _spread_backward)
_native(SOFTMAX, _softmax_replay, _softmax_backward)                # native: _softmax.pxi
_native(LOG_SOFTMAX, _softmax_replay, _softmax_backward)


def _native_ops():
    """Names of the ops with native kernels (for tests)."""
    return [NAMES[op] for op in range(N_OPS) if NATIVE_BACKWARD[op] != NULL]


# ---------------------------------------------------------------------------
# The backward sweep
# ---------------------------------------------------------------------------

cdef inline bint _wants_grad(object x):
    return isinstance(x, TensorBase) and (<TensorBase>x)._requires_grad


def topological_order(roots, data_nodes=False):
    """Nodes that need a gradient, reachable from `roots`, consumers first.

    The algorithm of reference.topological_order, with the visit state kept
    in the nodes (`_mark` = this sweep's id, `_stage`) instead of a dict.
    """
    # Under the sweep lock: two walks marking the same nodes at once would
    # overwrite each other's marks.  A walk holds the GIL but can still be
    # interleaved: a list it grows may start a garbage collection, whose
    # finalizers run Python code.
    with _sweep_lock:
        return _topological_order(roots, data_nodes)


cdef inline bint _walks(object x, bint data_nodes):
    # data_nodes (a Tape): also the nodes fg.compile recorded from data alone
    return (<TensorBase>x)._requires_grad or (data_nodes and (<TensorBase>x)._op != LEAF)


cdef list _topological_order(roots, bint data_nodes=False):
    global _sweep_id
    _sweep_id += 1
    cdef long mark = _sweep_id
    cdef list order = []
    cdef list stack = list(roots)
    cdef TensorBase node
    while stack:
        node = stack[len(stack) - 1]
        if node._mark != mark:
            node._mark = mark
            node._stage = 1
            if node._native:
                if node._a is not None and _walks(node._a, data_nodes) \
                        and (<TensorBase>node._a)._mark != mark:
                    stack.append(node._a)
                if node._b is not None and _walks(node._b, data_nodes) \
                        and (<TensorBase>node._b)._mark != mark:
                    stack.append(node._b)
                if node._op == LINEAR and node._d is not None \
                        and _walks(node._d, data_nodes) \
                        and (<TensorBase>node._d)._mark != mark:
                    stack.append(node._d)
            elif node._inputs is not None:
                for x in node._inputs:
                    if isinstance(x, TensorBase) and _walks(x, data_nodes) \
                            and (<TensorBase>x)._mark != mark:
                        stack.append(x)
        else:
            stack.pop()
            if node._stage == 1:
                node._stage = 2
                order.append(node)
    order.reverse()
    return order


cdef int _check_node(TensorBase node, bint replay) except -1:
    """The door every node passes before a rule or a kernel reads it (backward, replay).

    The algorithm of reference.check_node: the tensor inputs still have the
    layout (shape, dtype, C-contiguity) the node recorded, so every pointer
    and size a kernel derives from them is inside their buffers; at backward
    the values the rule reads were not changed in place since; and
    cross_entropy's class targets (the caller's array) still fit the logits.
    """
    cdef int op = node._op
    if op == LEAF:
        return 0
    if node._native:
        if node._a is not None and (<TensorBase>node._a)._layout != node._la:
            raise _relaid(node, 0, node._a, replay)
        if node._b is not None and (<TensorBase>node._b)._layout != node._lb:
            raise _relaid(node, 1, node._b, replay)
        if isinstance(node._d, TensorBase) and (<TensorBase>node._d)._layout != node._ld:
            raise _relaid(node, 2, node._d, replay)
    else:
        for i, x in enumerate(node._inputs):
            if isinstance(x, TensorBase) and (<TensorBase>x)._layout != node._layouts[i]:
                raise _relaid(node, i, x, replay)
    if op == CROSS_ENTROPY:
        _check_targets(node)
    if replay:
        return 0                # a replay recomputes every value from the current inputs
    if node._native:
        if SAVES_A[op] and node._a is not None and _ver(<TensorBase>node._a) != node._va:
            raise _stale(node, "input 0 (shape %s)" % (tuple(node._a.shape),),
                         _ver(<TensorBase>node._a), node._va)
        if SAVES_B[op] and node._b is not None and _ver(<TensorBase>node._b) != node._vb:
            raise _stale(node, "input 1 (shape %s)" % (tuple(node._b.shape),),
                         _ver(<TensorBase>node._b), node._vb)
    else:
        saves = SAVES[op]
        for i, x in enumerate(node._inputs):
            if str(i) in saves and isinstance(x, TensorBase) and \
                    _ver(<TensorBase>x) != node._versions[i]:
                raise _stale(node, "input %d (shape %s)" % (i, tuple(x.shape)),
                             _ver(<TensorBase>x), node._versions[i])
    if SAVES_OUT[op] and _ver(node) != 0:
        raise _stale(node, "its output (shape %s)" % (tuple(node._shape),), _ver(node), 0)
    return 0


cdef object _relaid(TensorBase node, int i, x, bint replay):
    return _ref.relaid_error("compile" if replay else "backward", i, _op_name(node), x.shape,
                             x.dtype, (<TensorBase>x)._data != NULL
                             or (<TensorBase>x)._dt == DT_OTHER)


cdef int _check_targets(TensorBase node) except -1:
    """cross_entropy's targets, as recorded, against its logits: checked again here,
    since the caller may have written into (or reshaped) the array since."""
    if not node._native:
        check_cross_entropy(node._inputs[0].shape, node._params[0], node._params[1])
        return 0
    cdef TensorBase z = node._a
    cdef object target = node._d
    cdef cnp.ndarray arr
    cdef const long long* t
    cdef Py_ssize_t i, n = z._shape[0], c = z._shape[1]
    if cnp.PyArray_Check(target):
        arr = <cnp.ndarray>target
        if cnp.PyArray_TYPE(arr) == cnp.NPY_INT64 and cnp.PyArray_NDIM(arr) == 1 \
                and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr) \
                and cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_DIM(arr, 0) == n:
            t = <const long long*>cnp.PyArray_DATA(arr)
            for i in range(n):
                if t[i] < 0 or t[i] >= c:
                    break
            else:
                return 0
    # Something is off: the reference check says what (or, for a layout the
    # loop does not take, gives the targets as an int64 contiguous copy).
    node._d = check_cross_entropy(z._shape, target, ("none", "mean", "sum")[<int>node._c])
    return 0


cdef object _stale(TensorBase node, what, now, then):
    return RuntimeError(
        "backward: %s of '%s' was modified in place after the graph was built "
        "(version %d, expected %d); use an out-of-place operation or clone() the tensor "
        "before changing it" % (what, _op_name(node), now, then))


cdef char* _grad_buffer(TensorBase t) except NULL:
    """The tensor's gradient buffer for this sweep, zeroed on first use."""
    cdef size_t nbytes
    if t._g == NULL:
        nbytes = (t._size if t._size else 1) * ITEMSIZE[t._dt]
        t._g = <char*>_mem_alloc(nbytes)
        if t._g == NULL:
            raise MemoryError()
        memset(t._g, 0, nbytes)
    return t._g


cdef char* _grad_buffer_raw(TensorBase t, bint* fresh) except NULL:
    """The gradient buffer, uninitialised when new (*fresh set): the caller writes it whole."""
    fresh[0] = t._g == NULL
    if t._g == NULL:
        t._g = <char*>_mem_alloc((t._size if t._size else 1) * ITEMSIZE[t._dt])
        if t._g == NULL:
            raise MemoryError()
    return t._g


cdef int _add_array(TensorBase t, object gx) except -1:
    """t's gradient buffer += gx (an array of t's broadcast result)."""
    cdef cnp.ndarray arr = np.ascontiguousarray(unbroadcast(np.asarray(gx), t._shape),
                                                dtype=_DTYPES[t._dt])
    cdef Py_ssize_t n = t._size
    if cnp.PyArray_SIZE(arr) != n:          # the copies below read n items of arr
        raise RuntimeError("backward: a gradient of shape %s does not fit the input of shape %s"
                           % (np.shape(gx), tuple(t._shape)))
    if t._g == NULL:
        t._g = <char*>_mem_alloc(n * ITEMSIZE[t._dt] if n else 1)
        if t._g == NULL:
            raise MemoryError()
        memcpy(t._g, cnp.PyArray_DATA(arr), n * ITEMSIZE[t._dt])
        return 0
    add_into(t._dt, t._g, <char*>cnp.PyArray_DATA(arr), n)
    return 0


cdef int _native_backward(TensorBase node) except -1:
    """The node's native rule (NATIVE_BACKWARD, the twin of reference.BACKWARD)."""
    cdef TensorBase a = node._a
    # Strided matmul operands have no raw pointer to check: their rule reads the
    # arrays' own strides (native: _matmul.pxi).
    if node._op == MATMUL and _mm_backward(node):
        return 0
    if SAVES_A[node._op] and a is not None and a._data == NULL and not a._dropped:
        raise RuntimeError("backward: the values of an input of '%s' were replaced through "
                           ".data by an array of another layout" % _op_name(node))
    if NATIVE_BACKWARD[node._op] == NULL:      # a native kernel without its row below
        raise SystemError("backward: '%s' has no native backward rule" % _op_name(node))
    return NATIVE_BACKWARD[node._op](node)


cdef int _generic_backward(TensorBase node) except -1:
    if node._form == FORM_LISTED:        # recorded as apply does, a native rule (_gather.pxi)
        return NATIVE_BACKWARD[node._op](node)
    return _reference_backward(node)


cdef int _reference_backward(TensorBase node) except -1:
    """The reference core's rule for the node (its inputs and params as apply keeps them)."""
    inputs = node._inputs
    values = [_value(x) for x in inputs]
    needs = [_wants_grad(x) for x in inputs]
    g = _view(node._g, node._shape, node._dt)
    in_grads = _ref.BACKWARD[node._op](needs, g, _array(node), *values, *node._params)
    for x, need, gx in zip(inputs, needs, in_grads):
        if need and gx is not None:
            _add_array(x, gx)
    return 0


cdef object _grad_copy(TensorBase t):
    return np.array(_view(t._g, t._shape, t._dt), copy=True)


cdef int _accumulate_grad(TensorBase t) except -1:
    """Move the sweep's gradient buffer of a leaf into .grad (no copy if new)."""
    cdef TensorBase gt
    if t._grad is None:
        gt = _new_tensor()
        gt._buf = t._g
        gt._data = t._g
        gt._shape = t._shape
        gt._size = t._size
        gt._dt = t._dt
        t._g = NULL
        t._grad = gt
        return 0
    gt = t._grad
    if _writable_as(gt, t):
        add_into(t._dt, gt._data, t._g, t._size)
    else:
        _replace_grad(t, _view(t._g, t._shape, t._dt))
    _mem_free(t._g)
    t._g = NULL
    return 0


cdef bint _writable_as(TensorBase gt, TensorBase t):
    """May the sweep add into gt's memory directly, as t's gradient?"""
    return (gt._dt == t._dt and gt._data != NULL and gt._size == t._size
            and gt._shape == t._shape
            and (gt._arr is None or cnp.PyArray_ISWRITEABLE(<cnp.ndarray>gt._arr)))


cdef int _replace_grad(TensorBase t, object g) except -1:
    """t.grad = t.grad + g, out of place: for a .grad over read-only memory, or one
    rebound through .grad.data to another dtype, shape or layout (never written into)."""
    old = _array(<TensorBase>t._grad)
    t._grad = from_array((np.asarray(old, dtype=_DTYPES[t._dt]) + g).astype(_DTYPES[t._dt]))
    return 0


def sweep(roots, root_grads, retain_graph=False, capture=None):
    """The reverse sweep; the same contract as reference.sweep."""
    return _sweep(roots, root_grads, retain_graph, capture)


cdef object _sweep(roots, root_grads, bint retain_graph, capture):
    cdef list order
    cdef TensorBase node
    with _sweep_lock:
        order = _topological_order(roots)
        for node in order:
            _check_released(node)
            _check_node(node, False)
        return _sweep_ordered(order, roots, root_grads, retain_graph, capture)


cdef object _sweep_ordered(list order, roots, root_grads, bint retain_graph, capture):
    """The sweep over an order already computed and checked (sweep, Tape.backward)."""
    if _hooked_leaves and capture is None:        # post-accumulate-grad hooks: below
        return _sweep_hooked(order, roots, root_grads, retain_graph)
    cdef TensorBase node
    cdef list finals = []
    wanted = found = None
    if capture is not None:
        wanted = {id(t): i for i, t in enumerate(capture)}
        found = [None] * len(capture)
    try:
        _add_seeds(roots, root_grads)
        for node in order:
            if node._g == NULL:
                continue
            if wanted is not None:
                if id(node) in wanted:
                    found[wanted[id(node)]] = _grad_copy(node)
            elif node._op == LEAF:
                finals.append(node)
                continue
            elif node._retains_grad:
                finals.append((node, _grad_copy(node)))
            if node._op == LEAF:
                continue
            if node._native:
                _native_backward(node)
            else:
                _generic_backward(node)
            _mem_free(node._g)
            node._g = NULL
        for item in finals:
            if isinstance(item, tuple):
                node = item[0]
                _accumulate_grad_array(node, item[1])
            else:
                _accumulate_grad(item)
    finally:
        for node in order:
            _mem_free(node._g)
            node._g = NULL
    if not retain_graph:
        keep = _keeps_structure(order)
        for node in order:
            if node._op != LEAF:
                _release(node, keep)
    return found if capture is not None else None


# -- post-accumulate-grad hooks (grad_hooks.py) --------------------------------------
# _sweep_hooked is _sweep_ordered's loop (keep the two in step) for a sweep that
# writes .grad while some tensor has hooks: a hooked leaf's .grad is written, and
# its hooks run, right after its last consumer; the nodes run in segments between
# those moments.  A separate function, so that the sweep without hooks pays one
# test per sweep and nothing per node.

@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _sweep_hooked(list order, roots, root_grads, bint retain_graph):
    cdef TensorBase node
    cdef list finals = []
    cdef Py_ssize_t k, start = 0, stop, n = len(order), seg = 0, segments
    # [(position, leaves)]: the hooked leaves final before order[position] runs
    cdef list due = HOOKS.schedule(order)
    hooked = None                    # this sweep's early writes, undone if it fails
    segments = len(due)
    try:
        _add_seeds(roots, root_grads)
        while True:
            stop = (<tuple>due[seg])[0] if seg < segments else n
            for k in range(start, stop):
                node = order[k]
                if node._g == NULL:
                    continue
                if node._op == LEAF:
                    if id(node) in _hooked_leaves:       # a root: no consumer ran it
                        hooked = HOOKS.leaf_final(hooked, node, _accumulate_leaf, node)
                    else:
                        finals.append(node)
                    continue
                if node._retains_grad:
                    finals.append((node, _grad_copy(node)))
                if node._native:
                    _native_backward(node)
                else:
                    _generic_backward(node)
                _mem_free(node._g)
                node._g = NULL
            if seg == segments:
                break
            hooked = _hooks_due(hooked, (<tuple>due[seg])[1])
            seg += 1
            start = stop
        if hooked is not None:
            HOOKS.finish(hooked)     # callbacks: may still fail the sweep
        for item in finals:
            if isinstance(item, tuple):
                node = item[0]
                _accumulate_grad_array(node, item[1])
            else:
                _accumulate_grad(item)
    except BaseException as error:
        if hooked is not None:
            HOOKS.abort(hooked, error)
        raise
    finally:
        for node in order:
            _mem_free(node._g)
            node._g = NULL
    if not retain_graph:
        keep = _keeps_structure(order)
        for node in order:
            if node._op != LEAF:
                _release(node, keep)
    return None


# Graphs up to this size keep their structure after backward (reference.KEEP_*).
cdef Py_ssize_t KEEP_NODES = _ref.KEEP_NODES
cdef Py_ssize_t KEEP_ELEMENTS = _ref.KEEP_ELEMENTS


cdef bint _keeps_structure(list order):
    """reference._keeps_structure: small graphs keep their inputs for fg.explain."""
    cdef TensorBase node
    cdef Py_ssize_t total = 0
    if len(order) > KEEP_NODES:
        return False
    for node in order:
        total += node._size
    return total <= KEEP_ELEMENTS


cdef int _accumulate_grad_array(TensorBase t, object g) except -1:
    if t._grad is None:
        t._grad = from_array(g)
    elif _writable_as(<TensorBase>t._grad, t):
        arr = _array(t._grad)
        arr += g
    else:
        _replace_grad(t, g)
    return 0


cdef int _check_released(TensorBase node) except -1:
    if node._released:
        raise RuntimeError(
            "backward: the graph of '%s' was already freed by an earlier backward(); "
            "pass retain_graph=True to the first backward() to go through it twice"
            % _op_name(node))
    return 0


cdef void _release(TensorBase node, bint keep_structure) noexcept:
    if not keep_structure:
        _mem_free(node._saved)
        node._saved = NULL
        node._a = None
        node._b = None
        node._d = None
        node._inputs = ()
        node._params = ()
        node._versions = ()
        node._layouts = ()
    node._released = True


# -- post-accumulate-grad hooks (reference.py's twins; the logic is grad_hooks.py) ----

cdef object _hooks_due(object hooked, list leaves):
    cdef TensorBase t
    for t in leaves:
        if t._g != NULL:
            hooked = HOOKS.leaf_final(hooked, t, _accumulate_leaf, t)
    return hooked


def _accumulate_leaf(TensorBase t):
    _accumulate_grad(t)


def _grad_snapshot(TensorBase t):
    old = t._grad
    if old is None:
        return t, None, None, None
    values = _array(<TensorBase>old)      # the sweep adds into this memory in place
    return t, old, values, np.array(values, copy=True)


def _grad_restore(record):
    cdef TensorBase t = record[0]
    old, values, saved = record[1], record[2], record[3]
    t._grad = old
    if old is not None and values.flags.writeable:
        values[...] = saved


def _node_inputs(TensorBase node):
    return _inputs(node)


def _is_leaf(TensorBase node):
    return node._op == LEAF


def _is_tensor(x):
    return isinstance(x, TensorBase)


HOOKS = _grad_hooks.Registry(_grad_snapshot, _grad_restore, _node_inputs, _is_leaf, _is_tensor,
                             set_grad_enabled)
cdef dict _hooked_leaves = HOOKS.hooks       # the same dict: the sweep's one test


def register_post_accumulate_grad_hook(t, hook):
    """reference.register_post_accumulate_grad_hook: hook(t) once leaf t's .grad is final."""
    if not isinstance(t, TensorBase):
        raise TypeError("register_post_accumulate_grad_hook: expected a Tensor, got %s"
                        % type(t).__name__)
    if (<TensorBase>t)._op != LEAF:
        raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor (one "
                           "without grad_fn) can have this hook; this one was computed by '%s'"
                           % _op_name(t))
    if not (<TensorBase>t)._requires_grad:
        raise RuntimeError("register_post_accumulate_grad_hook: this tensor does not require "
                           "grad, so no backward ever gives it a gradient")
    return HOOKS.register(t, hook)


def queue_callback(fn):
    """reference.queue_callback: fn(error) once the running backward's nodes are done."""
    HOOKS.queue_callback(fn)


def backward(root, gradient=None, retain_graph=False):
    g = _ref._seed(root, gradient) if not isinstance(root, TensorBase) else _seed(root, gradient)
    _sweep([root], [g], retain_graph, None)


# backward()'s implicit seed of a one-element float32/float64 root: a 1 written
# into its gradient buffer (_add_seed), without the NumPy array np.ones would be.
cdef object _ONE = object()


cdef int _add_seeds(roots, root_grads) except -1:
    """_add_seed for each root and its gradient, paired as zip pairs them (without
    zip's iterator and tuples: a measurable part of a small graph's backward)."""
    cdef Py_ssize_t i, n = len(roots) if len(roots) < len(root_grads) else len(root_grads)
    for i in range(n):
        _add_seed(roots[i], root_grads[i])
    return 0


cdef int _add_seed(TensorBase t, object g) except -1:
    """The sweep's start: t's gradient buffer += g (an array, or _ONE for a 1)."""
    if g is not _ONE:
        return _add_array(t, g)
    if t._g == NULL:
        t._g = <char*>_mem_alloc(ITEMSIZE[t._dt])
        if t._g == NULL:
            raise MemoryError()
        memset(t._g, 0, ITEMSIZE[t._dt])
    if t._dt == DT_F64:
        (<double*>t._g)[0] += 1.0
    else:
        (<float*>t._g)[0] += 1.0
    return 0


cdef object _seed(TensorBase root, gradient):
    if not root._requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad and has no grad_fn; create the "
            "inputs with requires_grad=True (or call requires_grad_()) before the forward pass")
    if gradient is None:
        if root._size != 1:
            raise RuntimeError(
                "backward: grad can be implicitly created only for scalar outputs, but this "
                "tensor has shape %s; pass gradient= with that shape" % (tuple(root._shape),))
        if root._dt != DT_OTHER:
            return _ONE
        return np.ones(root._shape, dtype=root.dtype)
    g = np.asarray(_value(gradient))
    if g.shape != root._shape:
        raise RuntimeError("backward: gradient has shape %s but the tensor has shape %s"
                           % (g.shape, tuple(root._shape)))
    return g.astype(root.dtype, copy=False)


def grad(outputs, inputs, grad_outputs=None, retain_graph=False):
    """Gradients of `outputs` with respect to `inputs`, as arrays (or None)."""
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    for o in outputs:
        if not isinstance(o, TensorBase):
            raise TypeError("grad: expected tensors as outputs, got %s" % type(o).__name__)
    seeds = [_seed(o, g) for o, g in zip(outputs, grad_outputs)]
    for t in inputs:
        if not isinstance(t, TensorBase) or not (<TensorBase>t)._requires_grad:
            raise RuntimeError("grad: every input must be a tensor that requires grad")
    return _ref._repeat_captured(inputs, _sweep(list(outputs), seeds, retain_graph,
                                                _ref._distinct(inputs)))


# ---------------------------------------------------------------------------
# Replaying a recorded graph (fg.compile)
# ---------------------------------------------------------------------------

cdef int _replay_forward(TensorBase node) except -1:
    """Recompute a native node's values, in place, from its inputs' current values."""
    _check_node(node, True)
    if node._arr is not None and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>node._arr) \
            and not (node._native and _is_view_op(node._op)):        # a view's replay rebinds it (_views.pxi)
        raise RuntimeError("compile: the values of '%s' were rebound through .data to read-only "
                           "memory; the replay cannot write them" % _op_name(node))
    if NATIVE_REPLAY[node._op] == NULL:
        raise SystemError("compile: '%s' has no native replay rule" % _op_name(node))
    return NATIVE_REPLAY[node._op](node)


cdef int _replay_values(TensorBase node, object result) except -1:
    """A generic node's recomputed values become its storage (reference.replay_values):
    only in the layout recorded, which its consumers' kernels were set up for."""
    cdef bint direct = node._data != NULL
    result = _ref.replay_values(node, result)
    if direct and not result.flags.c_contiguous:
        result = result.copy()           # (np.ascontiguousarray would make a 0-d array 1-d)
    _set_array(node, result)
    return 0


@cython.auto_pickle(False)  # a tape is its graph in memory: not picklable
cdef class Tape:
    """A recorded graph, replayed: the same functions as reference.Tape.

    forward() recomputes every node from the current values of the leaves
    (C kernels over the nodes' own buffers: no Python object per op);
    backward() is the sweep over the recorded order, keeping the graph.
    """
    cdef readonly object root
    cdef list _order            # consumers first, as topological_order gives
    cdef list _layouts          # each node's own layout when recorded

    def __init__(self, root):
        _check_tape_root(root)
        with _sweep_lock:
            order = _topological_order([root], True)
        for node in order:
            if (<TensorBase>node)._dropped:
                raise ValueError("compile: the graph was built without keeping every "
                                 "intermediate's values; build it inside fg.compile")
        self.root = root
        self._order = order
        self._layouts = [(<TensorBase>node)._layout for node in order]

    def forward(self):
        # Under the sweep lock: the replay writes the nodes' values in place,
        # which another thread's replay or sweep of the same tape reads.
        cdef Py_ssize_t i
        cdef TensorBase node
        with _sweep_lock:
            for i in range(len(self._order) - 1, -1, -1):
                node = <TensorBase>self._order[i]
                if node._op == LEAF:
                    continue
                _check_released(node)
                if node._layout != <long>self._layouts[i]:
                    raise RuntimeError("compile: the values of '%s' were rebound through .data "
                                       "to another shape or dtype; call fg.compile again"
                                       % _op_name(node))
                if node._native or node._form == FORM_LISTED:
                    _replay_forward(node)
                else:           # the reference rule; its result becomes the node's values
                    _check_node(node, True)
                    values = [_value(x) for x in node._inputs]
                    _replay_values(node, _ref.FORWARD[node._op](*values, *node._params))
        return self.root

    def backward(self):
        seed = _seed(self.root, None)
        with _sweep_lock:
            _sweep_ordered(self._order, [self.root], [seed], True, None)


cdef int _check_tape_root(root) except -1:
    if not isinstance(root, TensorBase) or not (<TensorBase>root)._requires_grad \
            or (<TensorBase>root)._op == LEAF or (<TensorBase>root)._size != 1:
        raise ValueError("compile: the function must return a scalar tensor computed from "
                         "tensors that require grad, got %r" % (root,))
    return 0


# ---------------------------------------------------------------------------
# Native kernels kept in files of their own (each says what it covers)
# ---------------------------------------------------------------------------
include "_ufunc_loops.pxi"
include "_pow.pxi"
include "_broadcast.pxi"
include "_matmul.pxi"
include "_reduce.pxi"
include "_views.pxi"
include "_gather.pxi"
include "_softmax.pxi"
