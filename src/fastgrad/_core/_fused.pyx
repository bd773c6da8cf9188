# cython: language_level=3
"""Fused optimizer updates: one call updates every parameter of a group.

The functions of fused_reference.py, in the same order, with the same
arguments and the same arithmetic.

Design
------
A training step of a small model spends its optimizer time in per-parameter
Python and NumPy calls (~0.5-1 us per ufunc call, several per parameter),
not in arithmetic.  Here each function walks the Python lists once, takes the
raw data pointer of every array through the NumPy C API (PyArray_DATA /
PyArray_SIZE: a few ns; a typed memoryview costs ~0.35 us per array) and
runs one `noexcept nogil` C loop per parameter that reads and writes each
element once.

* float32 and float64 through the `floating` fused type.  The arithmetic is
  done in the array's own type, with the Python-number hyper-parameters
  rounded to it first, in the order fused_reference.py uses, exactly as
  NumPy evaluates `p -= lr * d` on a float32 array; so the two modules agree
  to the last bit on machines without fused multiply-add contraction.
* An array the kernels cannot take (not C-contiguous, unaligned, byte-swapped,
  read-only, or a dtype that differs from its parameter's) is rare; such a
  parameter is handed to the reference function instead, so the result is
  the same either way.
* Big arrays run with the GIL released.
"""
cimport numpy as cnp
from libc.math cimport pow as c_pow, sqrt as c_sqrt

import numpy as np

from . import fused_reference as _ref

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


cdef inline int _typenum(object p):
    """NPY_FLOAT32 / NPY_FLOAT64 for a float ndarray, else -1."""
    if not cnp.PyArray_Check(p):
        return -1
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>p)
    if t == cnp.NPY_FLOAT32 or t == cnp.NPY_FLOAT64:
        return t
    return -1


cdef inline double _next_step(object step):
    """Increment a 0-d float64 step counter in place; return the new count (-1: not usable)."""
    cdef double* s = <double*>_ptr(step, cnp.NPY_FLOAT64, 1, True)
    if s == NULL:
        return -1
    s[0] += 1
    return s[0]


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


def sgd_step(list params, list grads, momentum_buffers, double lr, double momentum,
             double dampening, double weight_decay, bint nesterov, bint maximize):
    """SGD with optional momentum, dampening, Nesterov and weight decay (see fused_reference)."""
    cdef Py_ssize_t i, n, count = len(params)
    cdef int typenum
    cdef char* pp
    cdef char* pg
    cdef char* pb
    cdef bint fresh
    cdef bint use_buf = momentum != 0
    cdef list bufs = momentum_buffers if use_buf else None
    cdef list slow = []
    if len(grads) != count or (use_buf and len(bufs) != count):
        raise ValueError("sgd_step: params, grads and momentum_buffers differ in length")
    for i in range(count):
        p = params[i]
        typenum = _typenum(p)
        n = cnp.PyArray_SIZE(<cnp.ndarray>p) if typenum >= 0 else 0
        pp = _ptr(p, typenum, n, True) if typenum >= 0 else NULL
        pg = _ptr(grads[i], typenum, n, False) if pp != NULL else NULL
        pb = NULL
        fresh = False
        if pg != NULL and use_buf:
            if bufs[i] is None:
                bufs[i] = np.empty_like(p)
                fresh = True
            pb = _ptr(bufs[i], typenum, n, True)
            if pb == NULL and fresh:
                bufs[i] = None
        if pg == NULL or (use_buf and pb == NULL):
            slow.append(i)
            continue
        if typenum == cnp.NPY_FLOAT64:
            if n >= NOGIL_MIN:
                with nogil:
                    sgd_kernel(<double*>pp, <double*>pg, <double*>pb, n, lr, momentum, dampening,
                               weight_decay, nesterov, maximize, fresh)
            else:
                sgd_kernel(<double*>pp, <double*>pg, <double*>pb, n, lr, momentum, dampening,
                           weight_decay, nesterov, maximize, fresh)
        else:
            if n >= NOGIL_MIN:
                with nogil:
                    sgd_kernel(<float*>pp, <float*>pg, <float*>pb, n, lr, momentum, dampening,
                               weight_decay, nesterov, maximize, fresh)
            else:
                sgd_kernel(<float*>pp, <float*>pg, <float*>pb, n, lr, momentum, dampening,
                           weight_decay, nesterov, maximize, fresh)
    if slow:
        sub_bufs = [bufs[i] for i in slow] if use_buf else None
        _ref.sgd_step([params[i] for i in slow], [grads[i] for i in slow], sub_bufs, lr, momentum,
                      dampening, weight_decay, nesterov, maximize)
        if use_buf:
            for k, i in enumerate(slow):
                bufs[i] = sub_bufs[k]


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


def adam_step(list params, list grads, list exp_avgs, list exp_avg_sqs, max_exp_avg_sqs,
              list steps, double lr, double beta1, double beta2, double eps, double weight_decay,
              bint amsgrad, bint maximize, bint decoupled):
    """Adam (decoupled=False) and AdamW (decoupled=True), with optional AMSGrad."""
    cdef Py_ssize_t i, n, count = len(params)
    cdef int typenum
    cdef char* pp
    cdef char* pg
    cdef char* pm
    cdef char* pv
    cdef char* px
    cdef double t
    cdef list vmaxes = max_exp_avg_sqs if amsgrad else None
    cdef list slow = []
    if len(grads) != count or len(exp_avgs) != count or len(exp_avg_sqs) != count \
            or len(steps) != count or (amsgrad and len(vmaxes) != count):
        raise ValueError("adam_step: the parameter and state lists differ in length")
    for i in range(count):
        p = params[i]
        typenum = _typenum(p)
        n = cnp.PyArray_SIZE(<cnp.ndarray>p) if typenum >= 0 else 0
        pp = _ptr(p, typenum, n, True) if typenum >= 0 else NULL
        pg = _ptr(grads[i], typenum, n, False) if pp != NULL else NULL
        pm = _ptr(exp_avgs[i], typenum, n, True) if pg != NULL else NULL
        pv = _ptr(exp_avg_sqs[i], typenum, n, True) if pm != NULL else NULL
        px = NULL
        if amsgrad and pv != NULL:
            px = _ptr(vmaxes[i], typenum, n, True)
        if pv == NULL or (amsgrad and px == NULL) \
                or _ptr(steps[i], cnp.NPY_FLOAT64, 1, True) == NULL:
            slow.append(i)
            continue
        t = _next_step(steps[i])
        if typenum == cnp.NPY_FLOAT64:
            if n >= NOGIL_MIN:
                with nogil:
                    adam_kernel(<double*>pp, <double*>pg, <double*>pm, <double*>pv, <double*>px,
                                n, lr, beta1, beta2, eps, weight_decay, maximize, decoupled, t)
            else:
                adam_kernel(<double*>pp, <double*>pg, <double*>pm, <double*>pv, <double*>px,
                            n, lr, beta1, beta2, eps, weight_decay, maximize, decoupled, t)
        else:
            if n >= NOGIL_MIN:
                with nogil:
                    adam_kernel(<float*>pp, <float*>pg, <float*>pm, <float*>pv, <float*>px,
                                n, lr, beta1, beta2, eps, weight_decay, maximize, decoupled, t)
            else:
                adam_kernel(<float*>pp, <float*>pg, <float*>pm, <float*>pv, <float*>px,
                            n, lr, beta1, beta2, eps, weight_decay, maximize, decoupled, t)
    if slow:
        _ref.adam_step([params[i] for i in slow], [grads[i] for i in slow],
                       [exp_avgs[i] for i in slow], [exp_avg_sqs[i] for i in slow],
                       [vmaxes[i] for i in slow] if amsgrad else None,
                       [steps[i] for i in slow], lr, beta1, beta2, eps, weight_decay, amsgrad,
                       maximize, decoupled)


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


def rmsprop_step(list params, list grads, list square_avgs, grad_avgs, momentum_buffers,
                 list steps, double lr, double alpha, double eps, double weight_decay,
                 double momentum, bint centered, bint maximize):
    """RMSprop, optionally centered and with momentum (see fused_reference)."""
    cdef Py_ssize_t i, n, count = len(params)
    cdef int typenum
    cdef char* pp
    cdef char* pg
    cdef char* pv
    cdef char* pa
    cdef char* pb
    cdef bint use_buf = momentum > 0
    cdef list gavgs = grad_avgs if centered else None
    cdef list bufs = momentum_buffers if use_buf else None
    cdef list slow = []
    if len(grads) != count or len(square_avgs) != count or len(steps) != count \
            or (centered and len(gavgs) != count) or (use_buf and len(bufs) != count):
        raise ValueError("rmsprop_step: the parameter and state lists differ in length")
    for i in range(count):
        p = params[i]
        typenum = _typenum(p)
        n = cnp.PyArray_SIZE(<cnp.ndarray>p) if typenum >= 0 else 0
        pp = _ptr(p, typenum, n, True) if typenum >= 0 else NULL
        pg = _ptr(grads[i], typenum, n, False) if pp != NULL else NULL
        pv = _ptr(square_avgs[i], typenum, n, True) if pg != NULL else NULL
        pa = _ptr(gavgs[i], typenum, n, True) if centered and pv != NULL else NULL
        pb = _ptr(bufs[i], typenum, n, True) if use_buf and pv != NULL else NULL
        if pv == NULL or (centered and pa == NULL) or (use_buf and pb == NULL) \
                or _next_step(steps[i]) < 0:
            slow.append(i)
            continue
        if typenum == cnp.NPY_FLOAT64:
            if n >= NOGIL_MIN:
                with nogil:
                    rmsprop_kernel(<double*>pp, <double*>pg, <double*>pv, <double*>pa,
                                   <double*>pb, n, lr, alpha, eps, weight_decay, momentum,
                                   maximize)
            else:
                rmsprop_kernel(<double*>pp, <double*>pg, <double*>pv, <double*>pa, <double*>pb,
                               n, lr, alpha, eps, weight_decay, momentum, maximize)
        else:
            if n >= NOGIL_MIN:
                with nogil:
                    rmsprop_kernel(<float*>pp, <float*>pg, <float*>pv, <float*>pa, <float*>pb,
                                   n, lr, alpha, eps, weight_decay, momentum, maximize)
            else:
                rmsprop_kernel(<float*>pp, <float*>pg, <float*>pv, <float*>pa, <float*>pb,
                               n, lr, alpha, eps, weight_decay, momentum, maximize)
    if slow:
        _ref.rmsprop_step([params[i] for i in slow], [grads[i] for i in slow],
                          [square_avgs[i] for i in slow],
                          [gavgs[i] for i in slow] if centered else None,
                          [bufs[i] for i in slow] if use_buf else None,
                          [steps[i] for i in slow], lr, alpha, eps, weight_decay, momentum,
                          centered, maximize)


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


def adagrad_step(list params, list grads, list state_sums, list steps, double lr,
                 double lr_decay, double weight_decay, double eps, bint maximize):
    """Adagrad with learning-rate decay (see fused_reference)."""
    cdef Py_ssize_t i, n, count = len(params)
    cdef int typenum
    cdef char* pp
    cdef char* pg
    cdef char* ps
    cdef double t
    cdef list slow = []
    if len(grads) != count or len(state_sums) != count or len(steps) != count:
        raise ValueError("adagrad_step: the parameter and state lists differ in length")
    for i in range(count):
        p = params[i]
        typenum = _typenum(p)
        n = cnp.PyArray_SIZE(<cnp.ndarray>p) if typenum >= 0 else 0
        pp = _ptr(p, typenum, n, True) if typenum >= 0 else NULL
        pg = _ptr(grads[i], typenum, n, False) if pp != NULL else NULL
        ps = _ptr(state_sums[i], typenum, n, True) if pg != NULL else NULL
        if ps == NULL or _ptr(steps[i], cnp.NPY_FLOAT64, 1, True) == NULL:
            slow.append(i)
            continue
        t = _next_step(steps[i])
        if typenum == cnp.NPY_FLOAT64:
            if n >= NOGIL_MIN:
                with nogil:
                    adagrad_kernel(<double*>pp, <double*>pg, <double*>ps, n, lr, lr_decay,
                                   weight_decay, eps, maximize, t)
            else:
                adagrad_kernel(<double*>pp, <double*>pg, <double*>ps, n, lr, lr_decay,
                               weight_decay, eps, maximize, t)
        else:
            if n >= NOGIL_MIN:
                with nogil:
                    adagrad_kernel(<float*>pp, <float*>pg, <float*>ps, n, lr, lr_decay,
                                   weight_decay, eps, maximize, t)
            else:
                adagrad_kernel(<float*>pp, <float*>pg, <float*>ps, n, lr, lr_decay,
                               weight_decay, eps, maximize, t)
    if slow:
        _ref.adagrad_step([params[i] for i in slow], [grads[i] for i in slow],
                          [state_sums[i] for i in slow], [steps[i] for i in slow], lr, lr_decay,
                          weight_decay, eps, maximize)
