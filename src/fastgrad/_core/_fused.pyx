# cython: language_level=3
"""Fused optimizer updates (one call performs a whole optimizer step) and the
fused kernels of the layers (at the end: the LSTM time loop, batch
normalisation in training, max pooling, the patches of a convolution).

The functions of fused_reference.py, with the same arguments, the same checks
and errors (worded there: this module calls its checks when something is
wrong) and the same arithmetic.

Design
------
A training step of a small model spends its optimizer time in per-parameter
Python and NumPy calls (~0.5-1 us per ufunc call, several per parameter),
not in arithmetic.  Here each function walks the groups once, takes the raw
data pointer of every array through the NumPy C API (PyArray_DATA /
PyArray_SIZE: a few ns; a typed memoryview costs ~0.35 us per array) and
runs one `noexcept nogil` C loop per parameter that reads and writes each
element once.

Two phases, as in fused_reference.py:

1. Gather and check (`_Plan`).  Everything the update will touch is checked,
   for every group, before anything changes; new state arrays are allocated
   but not yet stored.  Any error raises here, with nothing changed.
2. Commit.  The kernels of all groups, the step counts, storing the new state
   entries, copying back working copies and the version bumps (the core's
   TensorBase field, cimported) run in this one C call with no Python
   bytecode in between.  CPython runs signal handlers only between
   bytecodes, so a KeyboardInterrupt lands before or after the step, never
   inside it: a step is all-or-nothing.

* float32 and float64 through the `floating` fused type.  The arithmetic is
  done in the array's own type, with the Python-number hyper-parameters
  rounded to it first, in the order fused_reference.py uses, exactly as
  NumPy evaluates `p -= lr * d` on a float32 array; so the two modules agree
  to the last bit on machines without fused multiply-add contraction.
* A parameter or state array the kernels cannot take as a raw pointer
  (strided, unaligned, byte-swapped) is rare; it gets a native C-contiguous
  working copy in phase 1 that is copied back in phase 2, so the result is
  the same either way.  Such a gradient is copied once (never written).
  Read-only memory is refused in phase 1: a raw pointer would write to it.
* Big arrays run with the GIL released.
"""
cimport numpy as cnp
from cpython.dict cimport PyDict_SetItem
from libc.math cimport isfinite, pow as c_pow, sqrt as c_sqrt
from libc.stdlib cimport free, malloc

import functools

import numpy as np

from . import fused_reference as _ref
from ._tape cimport TensorBase

cnp.import_array()

ctypedef fused floating:
    float
    double

# Arrays at least this big are updated with the GIL released.
cdef Py_ssize_t NOGIL_MIN = 32768


cdef inline char* _ptr(object a, int typenum, Py_ssize_t n, bint write):
    """The raw values of `a` when the kernels can use them directly, else NULL.

    That is: an ndarray of this type and size, C-contiguous, aligned, in
    native byte order (and writeable when the kernel writes to it).
    """
    if not cnp.PyArray_Check(a):
        return NULL
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_SIZE(arr) != n:
        return NULL
    if not (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr)):
        return NULL
    if write and not cnp.PyArray_ISWRITEABLE(arr):
        return NULL
    return <char*>cnp.PyArray_DATA(arr)


cdef inline bint _same_shape(object a, object b):
    """Both ndarrays (checked by the caller), with equal shapes."""
    cdef cnp.ndarray x = <cnp.ndarray>a
    cdef cnp.ndarray y = <cnp.ndarray>b
    cdef int i, nd = cnp.PyArray_NDIM(x)
    if cnp.PyArray_NDIM(y) != nd:
        return False
    for i in range(nd):
        if cnp.PyArray_DIMS(x)[i] != cnp.PyArray_DIMS(y)[i]:
            return False
    return True


cdef inline int _typenum(object a):
    """NPY_FLOAT32 / NPY_FLOAT64 for a float ndarray, else -1."""
    if not cnp.PyArray_Check(a):
        return -1
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if t == cnp.NPY_FLOAT32 or t == cnp.NPY_FLOAT64:
        return t
    return -1


cdef inline object _native(int typenum):
    return np.float64 if typenum == cnp.NPY_FLOAT64 else np.float32


cdef inline double _num(str name, int gi, dict group, str key) except? -1.0:
    """Hyper-parameter `key` of the group as a double (checked as fused_reference does)."""
    value = group[key]
    if type(value) is float or type(value) is int:
        return <double>value
    return _ref._number(name, gi, key, value)


cdef Py_ssize_t _first_nonfinite(const floating* g, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite(g[i]):
            return i
    return -1


# ---------------------------------------------------------------------------
# Phase 1: the plan of a step
# ---------------------------------------------------------------------------

cdef struct Item:
    int typenum          # NPY_FLOAT32 or NPY_FLOAT64
    int group            # index into the plan's hyper-parameters
    bint fresh           # SGD: the momentum buffer is made by this step
    Py_ssize_t n
    char* p              # the values (or their working copy)
    char* g              # the gradient (or its native C-contiguous copy)
    char* a              # state arrays; which ones is the optimizer's business
    char* b
    char* c
    double* step         # the step count, or NULL


cdef class _Plan:
    """Everything one step will write, gathered and checked before anything changes."""
    cdef Item* items
    cdef Py_ssize_t count, capacity
    cdef void* hyper        # one hyper-parameter struct per group
    cdef dict state         # the optimizer's state (a dict, or a subclass such as defaultdict)
    cdef list bumps         # tensors whose version counters go up
    cdef list entries       # (state dict, key, array): state made by this step
    cdef list new_states    # (tensor, dict): state dicts made by this step
    cdef list copies        # (array, working copy): copied back after the kernels
    cdef list keep          # gradient copies the pointers point into
    cdef object cur         # the values of the parameter being added

    def __dealloc__(self):
        free(self.items)
        free(self.hyper)

    cdef Item* add(self, str name, int gi, int pi, object p, bint check_finite) except? NULL:
        """Check parameter `pi` of group `gi` and plan its update; NULL if it has no gradient."""
        cdef TensorBase t
        cdef Item* it
        cdef int typenum
        cdef Py_ssize_t n, bad
        cdef char* pv
        cdef char* pg
        if not isinstance(p, TensorBase):
            _ref._values(name, gi, pi, p)      # raises
        t = <TensorBase>p
        grad = t._grad
        if grad is None:
            return NULL
        v = t._arr if t._arr is not None else t.numpy()
        g = (<TensorBase>grad)._arr if isinstance(grad, TensorBase) else None
        if g is None:
            g = grad.numpy()
        typenum = _typenum(v)
        n = cnp.PyArray_SIZE(<cnp.ndarray>v) if typenum >= 0 else 0
        pv = _ptr(v, typenum, n, True) if typenum >= 0 else NULL
        pg = _ptr(g, typenum, n, False) if pv != NULL else NULL
        if pg == NULL or not _same_shape(v, g):
            v, g = _ref._values(name, gi, pi, p)   # raises for a real problem
            typenum = _typenum(v)
            n = cnp.PyArray_SIZE(<cnp.ndarray>v)
            pv = _ptr(v, typenum, n, True)
            if pv == NULL:
                pv = self._working_copy(v, typenum)
            pg = _ptr(g, typenum, n, False)
            if pg == NULL:
                g = np.array(g, dtype=_native(typenum), order="C")
                if self.keep is None:
                    self.keep = []
                self.keep.append(g)
                pg = <char*>cnp.PyArray_DATA(<cnp.ndarray>g)
        if self.count >= self.capacity:
            raise RuntimeError("%s: the parameter groups changed while the step was gathered"
                               % name)
        if check_finite:
            if typenum == cnp.NPY_FLOAT64:
                bad = _first_nonfinite(<double*>pg, n)
            else:
                bad = _first_nonfinite(<float*>pg, n)
            if bad >= 0:
                _ref._finite(name, gi, pi, g)                 # raises
        it = &self.items[self.count]
        self.count += 1
        it.typenum = typenum
        it.group = gi
        it.fresh = False
        it.n = n
        it.p = pv
        it.g = pg
        it.a = it.b = it.c = NULL
        it.step = NULL
        self.bumps.append(p)
        self.cur = v
        return it

    cdef char* _working_copy(self, object a, int typenum) except? NULL:
        w = np.array(a, dtype=_native(typenum), order="C")
        if self.copies is None:
            self.copies = []
        self.copies.append((a, w))
        return <char*>cnp.PyArray_DATA(<cnp.ndarray>w)

    cdef dict state_of(self, str name, int gi, int pi, object p):
        """The parameter's state dict; a new one (stored at commit) if it has none."""
        st = self.state.get(p)
        if st is None:
            st = {}
            if self.new_states is None:
                self.new_states = []
            self.new_states.append((p, st))
        elif not isinstance(st, dict):
            _ref._state_of(name, gi, pi, self.state, p)     # raises
        return <dict>st

    cdef void _entry(self, dict st, str key, object a):
        if self.entries is None:
            self.entries = []
        self.entries.append((st, key, a))

    cdef char* array(self, str name, int gi, int pi, dict st, str key, Item* it,
                     object fill) except? NULL:
        """Pointer to state array `key`; made when missing (zeros, `fill`, or empty if None)."""
        cdef char* pa
        a = st.get(key)
        v = self.cur
        if a is None:
            if fill is None:
                a = np.empty(v.shape, dtype=_native(it.typenum))
            else:
                a = np.full(v.shape, fill, dtype=_native(it.typenum))
            self._entry(st, key, a)
            return <char*>cnp.PyArray_DATA(<cnp.ndarray>a)
        pa = _ptr(a, it.typenum, it.n, True)
        if pa != NULL and _same_shape(a, v):
            return pa
        a = _ref._state_array(name, gi, pi, st, key, v)     # raises for a real problem
        return self._working_copy(a, it.typenum)

    cdef double* step(self, str name, int gi, int pi, dict st) except? NULL:
        """Pointer to the 'step' count (a new 0-d float64 array when missing)."""
        cdef char* ps
        s = st.get("step")
        if s is None:
            s = np.zeros((), dtype=np.float64)
            self._entry(st, "step", s)
            return <double*>cnp.PyArray_DATA(<cnp.ndarray>s)
        ps = _ptr(s, cnp.NPY_FLOAT64, 1, True)
        if ps != NULL and cnp.PyArray_NDIM(<cnp.ndarray>s) == 0:
            return <double*>ps
        s = _ref._state_step(name, gi, pi, st)              # raises for a real problem
        return <double*>self._working_copy(s, cnp.NPY_FLOAT64)

    cdef int commit(self) except -1:
        """Phase 2 after the kernels: no Python bytecode runs in here."""
        if self.copies is not None:
            for a, w in self.copies:
                cnp.PyArray_CopyInto(<cnp.ndarray>a, <cnp.ndarray>w)
        if self.entries is not None:
            for st, key, a in self.entries:
                PyDict_SetItem(st, key, a)
        if self.new_states is not None:
            for p, st in self.new_states:
                PyDict_SetItem(self.state, p, st)
        for p in self.bumps:
            (<TensorBase>p)._version += 1
        return 0


cdef _Plan _new_plan(str name, list groups, object state, size_t hyper_size):
    cdef dict group
    cdef _Plan plan = _Plan.__new__(_Plan)
    cdef Py_ssize_t total = 0
    if not isinstance(state, dict):
        raise TypeError("%s: the optimizer's state must be a dict, got %s"
                        % (name, type(state).__name__))
    for group in groups:
        total += len(group["params"])
    plan.items = <Item*>malloc((total + 1) * sizeof(Item))
    plan.hyper = malloc((len(groups) + 1) * hyper_size)
    if plan.items == NULL or plan.hyper == NULL:
        raise MemoryError()
    plan.capacity = total
    plan.state = <dict>state
    plan.bumps = []
    return plan


# ---------------------------------------------------------------------------
# SGD
# ---------------------------------------------------------------------------

cdef void sgd_kernel(floating* p, const floating* g, floating* buf, Py_ssize_t n, double lr,
                     double momentum, double dampening, double weight_decay, bint nesterov,
                     bint maximize, bint fresh) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, b
    cdef floating f_lr = <floating>lr
    cdef floating f_mu = <floating>momentum
    cdef floating f_keep = <floating>(1 - dampening)
    cdef floating f_wd = <floating>weight_decay
    # The common cases first, as loops without branches so that the compiler
    # vectorizes them (the general loop below runs ~5x slower); the same
    # arithmetic in the same order, so the results are identical.
    if weight_decay == 0 and not maximize and not fresh:
        if momentum == 0:
            for i in range(n):
                p[i] = p[i] - f_lr * g[i]
            return
        if not nesterov:
            for i in range(n):
                b = buf[i] * f_mu + f_keep * g[i]
                buf[i] = b
                p[i] = p[i] - f_lr * b
            return
    for i in range(n):
        d = -g[i] if maximize else g[i]
        if weight_decay != 0:
            d = d + f_wd * p[i]
        if momentum != 0:
            if fresh:
                b = d
            else:
                b = buf[i] * f_mu + f_keep * d
            buf[i] = b
            if nesterov:
                d = d + f_mu * b
            else:
                d = b
        p[i] = p[i] - f_lr * d


cdef struct SGDHyper:
    double lr, momentum, dampening, weight_decay
    bint nesterov, maximize


cdef void _sgd_item(Item* it, SGDHyper* h) noexcept nogil:
    if it.typenum == cnp.NPY_FLOAT64:
        sgd_kernel(<double*>it.p, <double*>it.g, <double*>it.a, it.n, h.lr, h.momentum,
                   h.dampening, h.weight_decay, h.nesterov, h.maximize, it.fresh)
    else:
        sgd_kernel(<float*>it.p, <float*>it.g, <float*>it.a, it.n, h.lr, h.momentum,
                   h.dampening, h.weight_decay, h.nesterov, h.maximize, it.fresh)


def sgd_step(str name, list groups, state, bint check_finite=False):
    """SGD with optional momentum, dampening, Nesterov and weight decay (see fused_reference)."""
    cdef _Plan plan = _new_plan(name, groups, state, sizeof(SGDHyper))
    cdef SGDHyper* hy = <SGDHyper*>plan.hyper
    cdef SGDHyper* h
    cdef Item* it
    cdef int gi, pi
    cdef dict group, st
    cdef Py_ssize_t k
    for gi in range(len(groups)):
        group = groups[gi]
        h = &hy[gi]
        h.lr = _num(name, gi, group, "lr")
        h.momentum = _num(name, gi, group, "momentum")
        h.dampening = _num(name, gi, group, "dampening")
        h.weight_decay = _num(name, gi, group, "weight_decay")
        h.nesterov = group["nesterov"]
        h.maximize = group["maximize"]
    for gi in range(len(groups)):
        group = groups[gi]
        h = &hy[gi]
        pi = 0
        for p in group["params"]:
            it = plan.add(name, gi, pi, p, check_finite)
            if it != NULL and h.momentum != 0:
                st = plan.state_of(name, gi, pi, p)
                it.fresh = st.get("momentum_buffer") is None
                it.a = plan.array(name, gi, pi, st, "momentum_buffer", it, None)
            pi += 1
    # Phase 2: no Python bytecode from here on.
    for k in range(plan.count):
        it = &plan.items[k]
        if it.n >= NOGIL_MIN:
            with nogil:
                _sgd_item(it, &hy[it.group])
        else:
            _sgd_item(it, &hy[it.group])
    plan.commit()


# ---------------------------------------------------------------------------
# Adam and AdamW
# ---------------------------------------------------------------------------

cdef void adam_kernel(floating* p, const floating* g, floating* m, floating* v, floating* vmax,
                      Py_ssize_t n, double lr, double beta1, double beta2, double eps,
                      double weight_decay, bint maximize, bint decoupled,
                      double t) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi, vi, denom
    cdef double step_size = lr / (1 - c_pow(beta1, t))
    cdef double bias_correction2_sqrt = c_sqrt(1 - c_pow(beta2, t))
    cdef floating f_step = <floating>step_size
    cdef floating f_bc2 = <floating>bias_correction2_sqrt
    cdef floating f_eps = <floating>eps
    cdef floating f_wd = <floating>weight_decay
    cdef floating f_shrink = <floating>(1 - lr * weight_decay)
    cdef floating f_b1c = <floating>(1 - beta1)
    cdef floating f_b2 = <floating>beta2
    cdef floating f_b2c = <floating>(1 - beta2)
    if weight_decay == 0 and not maximize and vmax == NULL:
        # the common case as a branch-free loop the compiler vectorizes; same arithmetic
        for i in range(n):
            gi = g[i]
            m[i] = m[i] + f_b1c * (gi - m[i])
            vi = v[i] * f_b2 + f_b2c * gi * gi
            v[i] = vi
            denom = <floating>c_sqrt(vi) / f_bc2 + f_eps
            p[i] = p[i] - f_step * (m[i] / denom)
        return
    for i in range(n):
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0:
            if decoupled:
                p[i] = p[i] * f_shrink
            else:
                gi = gi + f_wd * p[i]
        m[i] = m[i] + f_b1c * (gi - m[i])
        vi = v[i] * f_b2 + f_b2c * gi * gi
        v[i] = vi
        if vmax != NULL:
            if vi > vmax[i] or vi != vi:      # np.maximum propagates NaN
                vmax[i] = vi
            vi = vmax[i]
        denom = <floating>c_sqrt(vi) / f_bc2 + f_eps
        p[i] = p[i] - f_step * (m[i] / denom)


cdef struct AdamHyper:
    double lr, beta1, beta2, eps, weight_decay
    bint amsgrad, maximize, decoupled


cdef void _adam_item(Item* it, AdamHyper* h) noexcept nogil:
    it.step[0] += 1
    if it.typenum == cnp.NPY_FLOAT64:
        adam_kernel(<double*>it.p, <double*>it.g, <double*>it.a, <double*>it.b, <double*>it.c,
                    it.n, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.maximize,
                    h.decoupled, it.step[0])
    else:
        adam_kernel(<float*>it.p, <float*>it.g, <float*>it.a, <float*>it.b, <float*>it.c,
                    it.n, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.maximize,
                    h.decoupled, it.step[0])


def adam_step(str name, list groups, state, bint check_finite=False, bint decoupled=False):
    """Adam (decoupled=False) and AdamW (decoupled=True), with optional AMSGrad."""
    cdef _Plan plan = _new_plan(name, groups, state, sizeof(AdamHyper))
    cdef AdamHyper* hy = <AdamHyper*>plan.hyper
    cdef AdamHyper* h
    cdef Item* it
    cdef int gi, pi
    cdef dict group, st
    cdef Py_ssize_t k
    for gi in range(len(groups)):
        group = groups[gi]
        h = &hy[gi]
        h.lr = _num(name, gi, group, "lr")
        h.eps = _num(name, gi, group, "eps")
        h.weight_decay = _num(name, gi, group, "weight_decay")
        betas = group["betas"]
        if not (type(betas) is tuple and len(<tuple>betas) == 2
                and type(betas[0]) is float and type(betas[1]) is float):
            betas = _ref._betas(name, gi, group)
        h.beta1 = betas[0]
        h.beta2 = betas[1]
        h.amsgrad = group["amsgrad"]
        h.maximize = group["maximize"]
        h.decoupled = decoupled
    for gi in range(len(groups)):
        group = groups[gi]
        h = &hy[gi]
        pi = 0
        for p in group["params"]:
            it = plan.add(name, gi, pi, p, check_finite)
            if it != NULL:
                st = plan.state_of(name, gi, pi, p)
                it.a = plan.array(name, gi, pi, st, "exp_avg", it, 0.0)
                it.b = plan.array(name, gi, pi, st, "exp_avg_sq", it, 0.0)
                if h.amsgrad:
                    it.c = plan.array(name, gi, pi, st, "max_exp_avg_sq", it, 0.0)
                it.step = plan.step(name, gi, pi, st)
            pi += 1
    # Phase 2: no Python bytecode from here on.
    for k in range(plan.count):
        it = &plan.items[k]
        if it.n >= NOGIL_MIN:
            with nogil:
                _adam_item(it, &hy[it.group])
        else:
            _adam_item(it, &hy[it.group])
    plan.commit()


# ---------------------------------------------------------------------------
# RMSprop
# ---------------------------------------------------------------------------

cdef void rmsprop_kernel(floating* p, const floating* g, floating* v, floating* gavg,
                         floating* buf, Py_ssize_t n, double lr, double alpha, double eps,
                         double weight_decay, double momentum, bint maximize) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi, avg
    cdef floating f_lr = <floating>lr
    cdef floating f_alpha = <floating>alpha
    cdef floating f_keep = <floating>(1 - alpha)
    cdef floating f_eps = <floating>eps
    cdef floating f_wd = <floating>weight_decay
    cdef floating f_mu = <floating>momentum
    for i in range(n):
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0:
            gi = gi + f_wd * p[i]
        v[i] = v[i] * f_alpha + f_keep * gi * gi
        if gavg != NULL:
            gavg[i] = gavg[i] + f_keep * (gi - gavg[i])
            avg = <floating>c_sqrt(v[i] - gavg[i] * gavg[i])
        else:
            avg = <floating>c_sqrt(v[i])
        avg = avg + f_eps
        if buf != NULL:
            buf[i] = buf[i] * f_mu + gi / avg
            p[i] = p[i] - f_lr * buf[i]
        else:
            p[i] = p[i] - f_lr * (gi / avg)


cdef struct RMSpropHyper:
    double lr, alpha, eps, weight_decay, momentum
    bint centered, maximize


cdef void _rmsprop_item(Item* it, RMSpropHyper* h) noexcept nogil:
    it.step[0] += 1
    if it.typenum == cnp.NPY_FLOAT64:
        rmsprop_kernel(<double*>it.p, <double*>it.g, <double*>it.a, <double*>it.b,
                       <double*>it.c, it.n, h.lr, h.alpha, h.eps, h.weight_decay, h.momentum,
                       h.maximize)
    else:
        rmsprop_kernel(<float*>it.p, <float*>it.g, <float*>it.a, <float*>it.b, <float*>it.c,
                       it.n, h.lr, h.alpha, h.eps, h.weight_decay, h.momentum, h.maximize)


def rmsprop_step(str name, list groups, state, bint check_finite=False):
    """RMSprop, optionally centered and with momentum (see fused_reference)."""
    cdef _Plan plan = _new_plan(name, groups, state, sizeof(RMSpropHyper))
    cdef RMSpropHyper* hy = <RMSpropHyper*>plan.hyper
    cdef RMSpropHyper* h
    cdef Item* it
    cdef int gi, pi
    cdef dict group, st
    cdef Py_ssize_t k
    for gi in range(len(groups)):
        group = groups[gi]
        h = &hy[gi]
        h.lr = _num(name, gi, group, "lr")
        h.alpha = _num(name, gi, group, "alpha")
        h.eps = _num(name, gi, group, "eps")
        h.weight_decay = _num(name, gi, group, "weight_decay")
        h.momentum = _num(name, gi, group, "momentum")
        h.centered = group["centered"]
        h.maximize = group["maximize"]
    for gi in range(len(groups)):
        group = groups[gi]
        h = &hy[gi]
        pi = 0
        for p in group["params"]:
            it = plan.add(name, gi, pi, p, check_finite)
            if it != NULL:
                st = plan.state_of(name, gi, pi, p)
                it.a = plan.array(name, gi, pi, st, "square_avg", it, 0.0)
                if h.momentum > 0:
                    it.c = plan.array(name, gi, pi, st, "momentum_buffer", it, 0.0)
                if h.centered:
                    it.b = plan.array(name, gi, pi, st, "grad_avg", it, 0.0)
                it.step = plan.step(name, gi, pi, st)
            pi += 1
    # Phase 2: no Python bytecode from here on.
    for k in range(plan.count):
        it = &plan.items[k]
        if it.n >= NOGIL_MIN:
            with nogil:
                _rmsprop_item(it, &hy[it.group])
        else:
            _rmsprop_item(it, &hy[it.group])
    plan.commit()


# ---------------------------------------------------------------------------
# Adagrad
# ---------------------------------------------------------------------------

cdef void adagrad_kernel(floating* p, const floating* g, floating* s, Py_ssize_t n, double lr,
                         double lr_decay, double weight_decay, double eps, bint maximize,
                         double t) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi, std
    cdef floating f_clr = <floating>(lr / (1 + (t - 1) * lr_decay))
    cdef floating f_eps = <floating>eps
    cdef floating f_wd = <floating>weight_decay
    for i in range(n):
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0:
            gi = gi + f_wd * p[i]
        s[i] = s[i] + gi * gi
        std = <floating>c_sqrt(s[i]) + f_eps
        p[i] = p[i] - f_clr * (gi / std)


cdef struct AdagradHyper:
    double lr, lr_decay, weight_decay, eps, initial
    bint maximize


cdef void _adagrad_item(Item* it, AdagradHyper* h) noexcept nogil:
    it.step[0] += 1
    if it.typenum == cnp.NPY_FLOAT64:
        adagrad_kernel(<double*>it.p, <double*>it.g, <double*>it.a, it.n, h.lr, h.lr_decay,
                       h.weight_decay, h.eps, h.maximize, it.step[0])
    else:
        adagrad_kernel(<float*>it.p, <float*>it.g, <float*>it.a, it.n, h.lr, h.lr_decay,
                       h.weight_decay, h.eps, h.maximize, it.step[0])


def adagrad_step(str name, list groups, state, bint check_finite=False):
    """Adagrad with learning-rate decay (see fused_reference)."""
    cdef _Plan plan = _new_plan(name, groups, state, sizeof(AdagradHyper))
    cdef AdagradHyper* hy = <AdagradHyper*>plan.hyper
    cdef AdagradHyper* h
    cdef Item* it
    cdef int gi, pi
    cdef dict group, st
    cdef Py_ssize_t k
    for gi in range(len(groups)):
        group = groups[gi]
        h = &hy[gi]
        h.lr = _num(name, gi, group, "lr")
        h.lr_decay = _num(name, gi, group, "lr_decay")
        h.weight_decay = _num(name, gi, group, "weight_decay")
        h.eps = _num(name, gi, group, "eps")
        h.initial = _num(name, gi, group, "initial_accumulator_value")
        h.maximize = group["maximize"]
    for gi in range(len(groups)):
        group = groups[gi]
        h = &hy[gi]
        pi = 0
        for p in group["params"]:
            it = plan.add(name, gi, pi, p, check_finite)
            if it != NULL:
                st = plan.state_of(name, gi, pi, p)
                it.a = plan.array(name, gi, pi, st, "sum", it, h.initial)
                it.step = plan.step(name, gi, pi, st)
            pi += 1
    # Phase 2: no Python bytecode from here on.
    for k in range(plan.count):
        it = &plan.items[k]
        if it.n >= NOGIL_MIN:
            with nogil:
                _adagrad_item(it, &hy[it.group])
        else:
            _adagrad_item(it, &hy[it.group])
    plan.commit()


# ---------------------------------------------------------------------------
# The LSTM layer's time loop (fused_reference.lstm_forward / lstm_backward)
# ---------------------------------------------------------------------------
# The matrix products of each step go to np.matmul (BLAS) into preallocated
# outputs; the cell arithmetic of a step is one pass of C over its N x H
# values.  The transcendental parts go to NumPy's tanh loop over a whole step
# (SIMD), the sigmoid gates as sigmoid(x) = (1 + tanh(x / 2)) / 2.  Arrays the
# loops cannot take (mixed or non-float dtypes, shapes that do not fit) take
# the reference functions, which promote or raise as NumPy does.

cdef void _lstm_pre(floating* a, const floating* hw, Py_ssize_t N, Py_ssize_t H) noexcept nogil:
    """a += hw over one step's (N, 4H) gates; the sigmoid gates (i, f, o) halved."""
    cdef Py_ssize_t n, j
    cdef floating half = 0.5
    cdef floating* ar
    cdef const floating* hr
    for n in range(N):
        ar = a + n * 4 * H
        hr = hw + n * 4 * H
        for j in range(2 * H):
            ar[j] = half * (ar[j] + hr[j])
        for j in range(2 * H, 3 * H):
            ar[j] = ar[j] + hr[j]
        for j in range(3 * H, 4 * H):
            ar[j] = half * (ar[j] + hr[j])


cdef void _lstm_cell(floating* a, const floating* c_prev, floating* c,
                     Py_ssize_t N, Py_ssize_t H) noexcept nogil:
    """tanh(x/2) -> sigmoid for i, f, o; then c = f c_prev + i g."""
    cdef Py_ssize_t n, j
    cdef floating half = 0.5
    cdef floating* ar
    for n in range(N):
        ar = a + n * 4 * H
        for j in range(2 * H):
            ar[j] = half + half * ar[j]
        for j in range(3 * H, 4 * H):
            ar[j] = half + half * ar[j]
        for j in range(H):
            c[n * H + j] = ar[H + j] * c_prev[n * H + j] + ar[j] * ar[2 * H + j]


cdef void _lstm_h(const floating* a, const floating* tc, floating* h,
                  Py_ssize_t N, Py_ssize_t H) noexcept nogil:
    cdef Py_ssize_t n, j
    cdef const floating* o
    for n in range(N):
        o = a + n * 4 * H + 3 * H
        for j in range(H):
            h[n * H + j] = o[j] * tc[n * H + j]


cdef void _lstm_back(const floating* gh, const floating* gc, floating* dh, floating* dc,
                     const floating* a, const floating* tc, const floating* c_prev,
                     floating* dg, Py_ssize_t N, Py_ssize_t H) noexcept nogil:
    """One step of the reverse sweep: dgates of step t, and dc for step t - 1.

    dh holds dgates_{t+1} W_hh (the caller overwrites it afterwards)."""
    cdef Py_ssize_t n, j, r, k
    cdef floating i, f, g, o, t, h_, c_
    for n in range(N):
        r = n * 4 * H
        for j in range(H):
            k = n * H + j
            i = a[r + j]
            f = a[r + H + j]
            g = a[r + 2 * H + j]
            o = a[r + 3 * H + j]
            t = tc[k]
            h_ = gh[k] + dh[k]
            c_ = gc[k] + dc[k] + h_ * o * (1 - t * t)
            dg[r + j] = c_ * g * i * (1 - i)
            dg[r + H + j] = c_ * c_prev[k] * f * (1 - f)
            dg[r + 2 * H + j] = c_ * i * (1 - g * g)
            dg[r + 3 * H + j] = h_ * t * o * (1 - o)
            dc[k] = c_ * f


cdef inline char* _data(object a):
    """The first element of an ndarray these loops made C-contiguous (or allocated)."""
    return <char*>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef bint _fits(list arrays, int typenum, tuple shapes):
    cdef Py_ssize_t k
    for k in range(len(arrays)):
        a = arrays[k]
        if _typenum(a) != typenum or a.shape != shapes[k]:
            return False
    return True


def lstm_forward(xproj, h0, c0, w_hh, b_hh=None):
    cdef int typenum = _typenum(xproj)
    if typenum < 0 or cnp.PyArray_NDIM(<cnp.ndarray>xproj) != 3:
        return _ref.lstm_forward(xproj, h0, c0, w_hh, b_hh)
    cdef Py_ssize_t T = xproj.shape[0], N = xproj.shape[1], G = xproj.shape[2]
    cdef Py_ssize_t H = G // 4, t
    arrays = [h0, c0, w_hh]
    shapes = ((N, H), (N, H), (G, H))
    if b_hh is not None:
        arrays.append(b_hh)
        shapes += ((G,),)
    if G % 4 or not _fits(arrays, typenum, shapes):
        return _ref.lstm_forward(xproj, h0, c0, w_hh, b_hh)
    dtype = _native(typenum)
    out = np.empty((2, T, N, H), dtype=dtype)
    acts = np.empty((T, N, G), dtype=dtype)
    tc = np.empty((T, N, H), dtype=dtype)
    hw = np.empty((N, G), dtype=dtype)
    if b_hh is None:
        np.copyto(acts, xproj)
    else:
        np.add(xproj, b_hh, out=acts)
    c_start = np.ascontiguousarray(c0)
    w_t = w_hh.T
    cdef char* pa = _data(acts)
    cdef char* po = _data(out)
    cdef char* pt = _data(tc)
    cdef char* phw = _data(hw)
    cdef char* pc0 = _data(c_start)
    cdef Py_ssize_t ga = N * G, gh = N * H
    h = h0
    for t in range(T):
        np.matmul(h, w_t, out=hw)
        if typenum == cnp.NPY_FLOAT32:
            _lstm_pre(<float*>pa + t * ga, <float*>phw, N, H)
        else:
            _lstm_pre(<double*>pa + t * ga, <double*>phw, N, H)
        step = acts[t]
        np.tanh(step, out=step)
        if typenum == cnp.NPY_FLOAT32:
            _lstm_cell(<float*>pa + t * ga,
                       (<float*>po + (T + t - 1) * gh) if t else <float*>pc0,
                       <float*>po + (T + t) * gh, N, H)
        else:
            _lstm_cell(<double*>pa + t * ga,
                       (<double*>po + (T + t - 1) * gh) if t else <double*>pc0,
                       <double*>po + (T + t) * gh, N, H)
        np.tanh(out[1, t], out=tc[t])
        if typenum == cnp.NPY_FLOAT32:
            _lstm_h(<float*>pa + t * ga, <float*>pt + t * gh, <float*>po + t * gh, N, H)
        else:
            _lstm_h(<double*>pa + t * ga, <double*>pt + t * gh, <double*>po + t * gh, N, H)
        h = out[0, t]
    return out, acts, tc


def lstm_backward(grad, out, acts, tc, h0, c0, w_hh, bint with_bias=True):
    cdef int typenum = _typenum(acts)
    if typenum < 0 or cnp.PyArray_NDIM(<cnp.ndarray>tc) != 3:
        return _ref.lstm_backward(grad, out, acts, tc, h0, c0, w_hh, with_bias)
    cdef Py_ssize_t T = tc.shape[0], N = tc.shape[1], H = tc.shape[2], G = 4 * H, t
    if not _fits([grad, out, acts, tc, h0, c0, w_hh], typenum,
                      ((2, T, N, H), (2, T, N, H), (T, N, G), (T, N, H), (N, H), (N, H), (G, H))):
        return _ref.lstm_backward(grad, out, acts, tc, h0, c0, w_hh, with_bias)
    dtype = _native(typenum)
    # every array the C loops read as a raw pointer is C-contiguous here
    grad = np.ascontiguousarray(grad)
    out = np.ascontiguousarray(out)
    acts = np.ascontiguousarray(acts)
    tc = np.ascontiguousarray(tc)
    c_start = np.ascontiguousarray(c0)
    dgates = np.empty((T, N, G), dtype=dtype)
    dh = np.zeros((N, H), dtype=dtype)
    dc = np.zeros((N, H), dtype=dtype)
    cdef char* pg = _data(grad)
    cdef char* po = _data(out)
    cdef char* pa = _data(acts)
    cdef char* pt = _data(tc)
    cdef char* pc0 = _data(c_start)
    cdef char* pd = _data(dgates)
    cdef char* pdh = _data(dh)
    cdef char* pdc = _data(dc)
    cdef Py_ssize_t ga = N * G, gh = N * H
    for t in range(T - 1, -1, -1):
        if typenum == cnp.NPY_FLOAT32:
            _lstm_back(<float*>pg + t * gh, <float*>pg + (T + t) * gh, <float*>pdh,
                       <float*>pdc, <float*>pa + t * ga, <float*>pt + t * gh,
                       (<float*>po + (T + t - 1) * gh) if t else <float*>pc0,
                       <float*>pd + t * ga, N, H)
        else:
            _lstm_back(<double*>pg + t * gh, <double*>pg + (T + t) * gh, <double*>pdh,
                       <double*>pdc, <double*>pa + t * ga, <double*>pt + t * gh,
                       (<double*>po + (T + t - 1) * gh) if t else <double*>pc0,
                       <double*>pd + t * ga, N, H)
        np.matmul(dgates[t], w_hh, out=dh)
    d_w = dgates[0].T @ h0
    if T > 1:
        d_w += dgates[1:].reshape(-1, G).T @ out[0, :-1].reshape(-1, H)
    d_b = dgates.sum(axis=(0, 1)) if with_bias else None
    return dgates, dh, dc, d_w, d_b


# ---------------------------------------------------------------------------
# Batch normalisation in training (fused_reference.batch_norm_forward / _backward)
# ---------------------------------------------------------------------------
# One pass of C per channel for each statistic, sums in double.  Arrays the loops
# cannot take (mixed or non-float dtypes) take the reference functions.

# The sums run four independent accumulators: one chain of dependent additions
# would bound a pass by the adder's latency (measured 3x slower on (32, 16, 64)).

cdef inline double _sum(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        a0 += x[i]
        a1 += x[i + 1]
        a2 += x[i + 2]
        a3 += x[i + 3]
        i += 4
    while i < n:
        a0 += x[i]
        i += 1
    return (a0 + a1) + (a2 + a3)


cdef inline double _sum_sq(const floating* x, Py_ssize_t n, floating m) noexcept nogil:
    """sum (x - m)^2, the difference taken in the array's type as NumPy does."""
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, d0, d1, d2, d3
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        d0 = x[i] - m
        d1 = x[i + 1] - m
        d2 = x[i + 2] - m
        d3 = x[i + 3] - m
        a0 += d0 * d0
        a1 += d1 * d1
        a2 += d2 * d2
        a3 += d3 * d3
        i += 4
    while i < n:
        d0 = x[i] - m
        a0 += d0 * d0
        i += 1
    return (a0 + a1) + (a2 + a3)


cdef inline double _dot(const floating* x, const floating* y, Py_ssize_t n) noexcept nogil:
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= n:
        a0 += <double>x[i] * y[i]
        a1 += <double>x[i + 1] * y[i + 1]
        a2 += <double>x[i + 2] * y[i + 2]
        a3 += <double>x[i + 3] * y[i + 3]
        i += 4
    while i < n:
        a0 += <double>x[i] * y[i]
        i += 1
    return (a0 + a1) + (a2 + a3)


cdef void _bn_forward(const floating* x, const floating* w, const floating* b, floating* y,
                      floating* xhat, floating* mean, floating* var, floating* invstd,
                      Py_ssize_t N, Py_ssize_t C, Py_ssize_t L, double eps) noexcept nogil:
    cdef Py_ssize_t n, c, l, k
    cdef double s
    cdef floating mf, rf, wf, bf
    for c in range(C):
        s = 0.0
        for n in range(N):
            s += _sum(x + (n * C + c) * L, L)
        mf = <floating>(s / (N * L))
        s = 0.0
        for n in range(N):
            s += _sum_sq(x + (n * C + c) * L, L, mf)
        mean[c] = mf
        var[c] = <floating>(s / (N * L))
        rf = <floating>(1.0 / c_sqrt(<double>var[c] + eps))
        invstd[c] = rf
        wf = w[c]
        bf = b[c]
        for n in range(N):
            k = (n * C + c) * L
            for l in range(L):
                xhat[k + l] = (x[k + l] - mf) * rf
                y[k + l] = xhat[k + l] * wf + bf


cdef void _bn_backward(const floating* g, const floating* xhat, const floating* invstd,
                       const floating* w, floating* dx, floating* dw, floating* db,
                       Py_ssize_t N, Py_ssize_t C, Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t n, c, l, k
    cdef double sb, sw
    cdef floating scale, cnt, fb, fw
    for c in range(C):
        sb = 0.0
        sw = 0.0
        for n in range(N):
            k = (n * C + c) * L
            sb += _sum(g + k, L)
            sw += _dot(g + k, xhat + k, L)
        fb = <floating>sb
        fw = <floating>sw
        db[c] = fb
        dw[c] = fw
        if dx != NULL:
            cnt = <floating>(N * L)
            scale = w[c] * invstd[c] / cnt
            for n in range(N):
                k = (n * C + c) * L
                for l in range(L):
                    dx[k + l] = scale * (cnt * g[k + l] - fb - xhat[k + l] * fw)


def batch_norm_forward(x, weight, bias, double eps):
    cdef int typenum = _typenum(x)
    if (typenum < 0 or x.ndim != 3 or not _fits([weight, bias], typenum,
                                                     ((x.shape[1],), (x.shape[1],)))):
        return _ref.batch_norm_forward(x, weight, bias, eps)
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = x.shape[2]
    dtype = _native(typenum)
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight)
    bias = np.ascontiguousarray(bias)
    y = np.empty((N, C, L), dtype=dtype)
    xhat = np.empty((N, C, L), dtype=dtype)
    stats = np.empty((3, C), dtype=dtype)
    cdef char* px = _data(x)
    cdef char* pw = _data(weight)
    cdef char* pb = _data(bias)
    cdef char* py = _data(y)
    cdef char* ph = _data(xhat)
    cdef char* ps = _data(stats)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _bn_forward(<float*>px, <float*>pw, <float*>pb, <float*>py, <float*>ph,
                        <float*>ps, <float*>ps + C, <float*>ps + 2 * C, N, C, L, eps)
        else:
            _bn_forward(<double*>px, <double*>pw, <double*>pb, <double*>py, <double*>ph,
                        <double*>ps, <double*>ps + C, <double*>ps + 2 * C, N, C, L, eps)
    return y, xhat, stats[0], stats[1], stats[2]


def batch_norm_backward(g, xhat, invstd, weight, bint input_grad=True):
    cdef int typenum = _typenum(xhat)
    if (typenum < 0 or xhat.ndim != 3
            or not _fits([g, invstd, weight], typenum,
                              (xhat.shape, (xhat.shape[1],), (xhat.shape[1],)))):
        return _ref.batch_norm_backward(g, xhat, invstd, weight, input_grad)
    cdef Py_ssize_t N = xhat.shape[0], C = xhat.shape[1], L = xhat.shape[2]
    dtype = _native(typenum)
    g = np.ascontiguousarray(g)
    xhat = np.ascontiguousarray(xhat)
    invstd = np.ascontiguousarray(invstd)
    weight = np.ascontiguousarray(weight)
    sums = np.empty((2, C), dtype=dtype)
    dx = np.empty((N, C, L), dtype=dtype) if input_grad else None
    cdef char* pg = _data(g)
    cdef char* ph = _data(xhat)
    cdef char* pi = _data(invstd)
    cdef char* pw = _data(weight)
    cdef char* ps = _data(sums)
    cdef char* pd = _data(dx) if input_grad else NULL
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _bn_backward(<float*>pg, <float*>ph, <float*>pi, <float*>pw, <float*>pd,
                         <float*>ps + C, <float*>ps, N, C, L)
        else:
            _bn_backward(<double*>pg, <double*>ph, <double*>pi, <double*>pw, <double*>pd,
                         <double*>ps + C, <double*>ps, N, C, L)
    return dx, sums[1], sums[0]


# ---------------------------------------------------------------------------
# Max pooling over windows that tile the input (fused_reference.max_pool2d_*)
# ---------------------------------------------------------------------------

cdef void _pool_forward(const floating* x, floating* out, cnp.int64_t* arg, Py_ssize_t B,
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw) noexcept nogil:
    cdef Py_ssize_t b, i, j, a, e, k, OH = H // kh, OW = W // kw, best, gt
    cdef const floating* row
    cdef floating m, v
    cdef int nan
    for b in range(B):
        for i in range(OH):
            for j in range(OW):
                row = x + (b * H + i * kh) * W + j * kw
                m = row[0]
                best = 0
                nan = m != m
                # The first maximum, without branches (on random data they are
                # unpredictable: measured 4x slower): a max instruction for the
                # value, a mask for the offset.  A window holding a NaN takes the
                # loop below, where the first NaN wins.
                if kh == 2 and kw == 2:             # the common case, unrolled
                    v = row[1]
                    gt = v > m
                    best ^= (best ^ 1) & -gt
                    m = v if v > m else m
                    nan |= v != v
                    v = row[W]
                    gt = v > m
                    best ^= (best ^ 2) & -gt
                    m = v if v > m else m
                    nan |= v != v
                    v = row[W + 1]
                    gt = v > m
                    best ^= (best ^ 3) & -gt
                    m = v if v > m else m
                    nan |= v != v
                else:
                    for a in range(kh):
                        for e in range(kw):
                            v = row[a * W + e]
                            gt = v > m
                            best ^= (best ^ (a * kw + e)) & -gt
                            m = v if v > m else m
                            nan |= v != v
                if nan:
                    best = -1
                    for k in range(kh * kw):
                        v = row[(k // kw) * W + k % kw]
                        if v != v:
                            best = k
                            m = v
                            break
                out[(b * OH + i) * OW + j] = m
                arg[(b * OH + i) * OW + j] = best


cdef void _pool_backward(const floating* g, const cnp.int64_t* arg, floating* dx, Py_ssize_t B,
                         Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw) noexcept nogil:
    cdef Py_ssize_t b, i, j, k, OH = H // kh, OW = W // kw
    for k in range(B * H * W):
        dx[k] = 0
    for b in range(B):
        for i in range(OH):
            for j in range(OW):
                k = (b * OH + i) * OW + j
                dx[(b * H + i * kh + arg[k] // kw) * W + j * kw + arg[k] % kw] = g[k]


def max_pool2d_forward(x, Py_ssize_t kh, Py_ssize_t kw):
    cdef int typenum = _typenum(x)
    if typenum < 0 or x.ndim != 3 or kh < 1 or kw < 1 or x.shape[1] % kh or x.shape[2] % kw:
        return _ref.max_pool2d_forward(x, kh, kw)
    cdef Py_ssize_t B = x.shape[0], H = x.shape[1], W = x.shape[2]
    x = np.ascontiguousarray(x)
    out = np.empty((B, H // kh, W // kw), dtype=_native(typenum))
    arg = np.empty((B, H // kh, W // kw), dtype=np.int64)
    cdef char* px = _data(x)
    cdef char* po = _data(out)
    cdef char* pa = _data(arg)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _pool_forward(<float*>px, <float*>po, <cnp.int64_t*>pa, B, H, W, kh, kw)
        else:
            _pool_forward(<double*>px, <double*>po, <cnp.int64_t*>pa, B, H, W, kh, kw)
    return out, arg


def max_pool2d_backward(g, arg, Py_ssize_t kh, Py_ssize_t kw):
    cdef int typenum = _typenum(g)
    if (typenum < 0 or g.ndim != 3 or kh < 1 or kw < 1 or not cnp.PyArray_Check(arg)
            or cnp.PyArray_TYPE(<cnp.ndarray>arg) != cnp.NPY_INT64 or arg.shape != g.shape):
        return _ref.max_pool2d_backward(g, arg, kh, kw)
    # every offset must lie inside its window: a raw pointer write depends on it
    if arg.size and (int(arg.min()) < 0 or int(arg.max()) >= kh * kw):
        raise ValueError("max_pool2d_backward: window offsets must lie in [0, %d)" % (kh * kw))
    cdef Py_ssize_t B = g.shape[0], H = g.shape[1] * kh, W = g.shape[2] * kw
    g = np.ascontiguousarray(g)
    arg = np.ascontiguousarray(arg)
    dx = np.empty((B, H, W), dtype=_native(typenum))
    cdef char* pg = _data(g)
    cdef char* pa = _data(arg)
    cdef char* pd = _data(dx)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _pool_backward(<float*>pg, <cnp.int64_t*>pa, <float*>pd, B, H, W, kh, kw)
        else:
            _pool_backward(<double*>pg, <cnp.int64_t*>pa, <double*>pd, B, H, W, kh, kw)
    return dx


# ---------------------------------------------------------------------------
# The patches of a 2-d convolution with zero padding (fused_reference.im2col / col2im)
# ---------------------------------------------------------------------------

cdef void _im2col(const floating* x, floating* cols, const Py_ssize_t* off, Py_ssize_t N,
                  Py_ssize_t C, Py_ssize_t HW, Py_ssize_t L, Py_ssize_t K,
                  bint back) noexcept nogil:
    """cols[(n, l), (c, t)] = x[n, c][off[l, t]], or 0 where off is -1 (outside x);
    with `back`, the reverse: x[n, c][off[l, t]] += cols[...] (x zeroed by the caller).

    off, the offset of each output position's kernel taps inside one channel plane,
    is the same for every sample and channel: a small table that stays in L1, where
    walking the six loops of the geometry costs more than the copies (measured 1.6x
    on the digits CNN's second layer)."""
    cdef Py_ssize_t n, l, c, t, o
    cdef floating* out = cols
    cdef floating* plane
    cdef const Py_ssize_t* row
    for n in range(N):
        for l in range(L):
            row = off + l * K
            for c in range(C):
                plane = <floating*>x + (n * C + c) * HW
                if back:
                    for t in range(K):
                        o = row[t]
                        if o >= 0:
                            plane[o] += out[t]
                else:
                    for t in range(K):
                        o = row[t]
                        out[t] = plane[o if o >= 0 else 0] if o >= 0 else 0
                out += K


@functools.lru_cache(maxsize=256)
def _tap_offsets(Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw,
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                 Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW):
    """off (OH * OW, kh * kw): ih * W + iw of each tap, -1 outside the plane (cached,
    read-only)."""
    ih = (np.arange(OH) * sh - ph)[:, None, None, None] + (np.arange(kh) * dh)[None, None, :, None]
    iw = (np.arange(OW) * sw - pw)[None, :, None, None] + (np.arange(kw) * dw)[None, None, None, :]
    inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    off = np.ascontiguousarray(np.where(inside, ih * W + iw, -1).reshape(OH * OW, kh * kw),
                               dtype=np.intp)
    off.setflags(write=False)
    return off


cdef tuple _conv_geometry(tuple shape, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                          Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                          Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW):
    # every size positive: the loops index with them
    if len(shape) != 4 or min(shape) < 1 or min(kh, kw, sh, sw, dh, dw, OH, OW) < 1 \
            or min(ph, pw) < 0:
        raise ValueError("im2col: bad geometry: shape %s, kernel %s, stride %s, padding %s, "
                         "dilation %s, output %s" % (shape, (kh, kw), (sh, sw), (ph, pw),
                                                     (dh, dw), (OH, OW)))
    return shape


def im2col(x, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
           Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t OH, Py_ssize_t OW):
    cdef int typenum = _typenum(x)
    if typenum < 0:
        return _ref.im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW)
    _conv_geometry(x.shape, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW)
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    x = np.ascontiguousarray(x)
    cols = np.empty((N * OH * OW, C * kh * kw), dtype=_native(typenum))
    off = _tap_offsets(H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW)
    cdef char* px = _data(x)
    cdef char* pc = _data(cols)
    cdef Py_ssize_t* po = <Py_ssize_t*>_data(off)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _im2col(<float*>px, <float*>pc, po, N, C, H * W, OH * OW, kh * kw, False)
        else:
            _im2col(<double*>px, <double*>pc, po, N, C, H * W, OH * OW, kh * kw, False)
    return cols


def col2im(g, shape, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
           Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t OH,
           Py_ssize_t OW):
    cdef int typenum = _typenum(g)
    shape = _conv_geometry(tuple(int(s) for s in shape), kh, kw, sh, sw, ph, pw, dh, dw,
                           OH, OW)
    cdef Py_ssize_t N = shape[0], C = shape[1], H = shape[2], W = shape[3]
    if typenum < 0 or g.size != N * OH * OW * C * kh * kw:
        return _ref.col2im(g, shape, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW)
    g = np.ascontiguousarray(g)
    dx = np.zeros(shape, dtype=_native(typenum))
    off = _tap_offsets(H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW)
    cdef char* pg = _data(g)
    cdef char* pd = _data(dx)
    cdef Py_ssize_t* po = <Py_ssize_t*>_data(off)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _im2col(<float*>pd, <float*>pg, po, N, C, H * W, OH * OW, kh * kw, True)
        else:
            _im2col(<double*>pd, <double*>pg, po, N, C, H * W, OH * OW, kh * kw, True)
    return dx
