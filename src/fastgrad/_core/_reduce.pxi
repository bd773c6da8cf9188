# sum over axes natively (included by _tape.pyx; uses _broadcast.pxi)
# ---------------------------------------------------------------------------
# A sum over axes is the broadcast of its result, read backwards: with
# `kept` the input's shape with a 1 at each summed axis, the input and the
# result are the two operands of the broadcast plan of (shape, kept).  The
# forward is then what `x + r` does for r's gradient (rows summed pairwise,
# as NumPy's sum does along the last axis; rows added one after another over
# the outer axes, as NumPy does too), and the backward is `ga + g`, g
# broadcast over the summed axes, written in place.  mean is this sum times
# 1/n (tensor.py), so it is native too.  A native SUM node over axes keeps
# the normalised axes (a tuple) in _d and keepdims in _c; the full sum keeps
# None in _d.


cdef tuple _sum_kept(tuple shape, tuple axes):
    """The input's shape with a 1 at each summed axis."""
    return tuple([1 if d in axes else shape[d] for d in range(len(shape))])


cdef tuple _sum_shape(tuple shape, tuple axes, bint keepdims):
    if keepdims:
        return _sum_kept(shape, axes)
    return tuple([shape[d] for d in range(len(shape)) if d not in axes])


cdef void _sum_axes_values(const _Plan* p, TensorBase a, TensorBase out) noexcept:
    memset(out._data, 0, out._size * ITEMSIZE[out._dt])
    if out._dt == DT_F64:
        _bc_grad(ADD, p, <double*>a._data, <double*>a._data, <double*>out._data,
                 <double*>NULL, <double*>out._data)
    else:
        _bc_grad(ADD, p, <float*>a._data, <float*>a._data, <float*>out._data,
                 <float*>NULL, <float*>out._data)


cdef object _sum_axes(TensorBase a, tuple axes, bint keepdims):
    """sum(a, axes, keepdims) natively (a contiguous float tensor), or None."""
    cdef _Plan p
    cdef TensorBase out
    if not _bc_plan(a._shape, _sum_kept(a._shape, axes), &p):
        return None
    shape = _sum_shape(a._shape, axes, keepdims)
    out = _alloc(shape, _prod(shape), a._dt)
    _sum_axes_values(&p, a, out)
    if fg_grad_enabled() and a._requires_grad:
        out._requires_grad = True
        out._op = SUM
        out._native = True
        out._form = FORM_TT
        out._a = a
        out._d = axes
        out._c = 1 if keepdims else 0
        out._va = _ver(a)
        out._la = a._layout
        if _node_hook is not None:
            _node_hook(out)
    return out


cdef Py_ssize_t _prod(tuple shape):
    cdef Py_ssize_t n = 1
    for v in shape:
        n *= <Py_ssize_t>v
    return n


cdef bint _sum_axes_plan(TensorBase node, _Plan* p) except -1:
    """The plan of a native SUM node over axes, checked against the node's own shape."""
    cdef TensorBase a = node._a
    if not _bc_plan(a._shape, _sum_kept(a._shape, node._d), p) \
            or _sum_shape(a._shape, node._d, node._c != 0) != node._shape:
        raise RuntimeError("backward: the values of '%s' were replaced through .data by an "
                           "array of another shape" % _op_name(node))
    return True


cdef bint _sum_axes_replay(TensorBase node) except -1:
    """A replay's forward of a SUM node; False if it is the full sum."""
    cdef _Plan p
    if node._d is None:
        return False
    _sum_axes_plan(node, &p)
    _sum_axes_values(&p, node._a, node)
    return True


cdef bint _sum_axes_backward(TensorBase node) except -1:
    """The backward rule of a SUM node over axes; False if it is the full sum."""
    cdef _Plan p
    cdef TensorBase a = node._a
    cdef char* ga
    if node._d is None:
        return False
    _sum_axes_plan(node, &p)
    ga = _grad_buffer(a)
    if a._dt == DT_F64:
        _bc_forward(ADD, &p, <double*>ga, <double*>node._g, <double*>ga)
    else:
        _bc_forward(ADD, &p, <float*>ga, <float*>node._g, <float*>ga)
    return True


# -- max, min and logsumexp over axes ------------------------------------------------
# The same plan (input, kept shape): the input is the full operand (its rows
# contiguous), the result and any per-result scratch have the kept layout, a
# stride of 0 along the row (one result for the whole row) or 1 (one per
# element).  The rules are reference.py's: max/min propagate NaN, and their
# gradient is shared evenly by the elements equal to the result (the NaNs,
# where it is NaN); logsumexp shifts by the max (0 where it is not finite).

cdef enum:
    RD_MAX = 0        # y = max(y, x)
    RD_MIN = 1
    RD_COUNT = 2      # c += (x == y) or both NaN
    RD_EXT_GRAD = 3   # ga += hit * (g / c)
    RD_EXP_SUM = 4    # c += exp(x - y)
    RD_EXP_GRAD = 5   # ga += g * exp(x - y)
    RD_SQDEV = 6      # c += (x - y)^2       (var / std: y the mean)
    RD_DEV_GRAD = 7   # ga += g * (x - y)


cdef inline bint _hit(floating x, floating y) noexcept nogil:
    # bitwise, not `or`: no branch, so the loops below vectorize
    return (x == y) | ((x != x) & (y != y))


cdef void _rd_row(int mode, const floating* x, floating* y, const floating* g, floating* c,
                  floating* ga, Py_ssize_t s, Py_ssize_t m, floating* t, int dt) noexcept nogil:
    """One row: x and ga along it, y, g, c with stride s (0: one value for the row).
    max / min: NumPy's maximum / minimum loops (in their reduce form along a row), so
    the values (NaN, the sign of a zero among zeros) are np.max's; without them, a
    NaN wins and a tie goes to the later element."""
    cdef Py_ssize_t i, j, k, hits
    cdef int h32
    cdef floating v, w
    cdef int slot = UL_MAXIMUM if mode == RD_MAX else UL_MINIMUM
    if mode == RD_MAX or mode == RD_MIN:
        if _ul_has(slot, dt):
            if s == 0:
                _ul_reduce(slot, dt, <char*>x, <char*>y, m)
            else:
                _ul_binary(slot, dt, <char*>y, sizeof(floating), <char*>x, sizeof(floating),
                           <char*>y, m)
        elif s == 0:
            v = y[0]
            for i in range(m):
                if (x[i] >= v if mode == RD_MAX else x[i] <= v) or x[i] != x[i]:
                    v = x[i]
            y[0] = v
        else:
            for i in range(m):
                if (x[i] >= y[i] if mode == RD_MAX else x[i] <= y[i]) or x[i] != x[i]:
                    y[i] = x[i]
    elif mode == RD_COUNT:
        if s == 0:
            v = y[0]
            hits = 0
            for j in range(0, m, 32768):     # 32-bit counts, the float's width: they vectorize
                k = m - j if m - j < 32768 else 32768
                h32 = 0
                for i in range(k):
                    h32 += _hit(x[j + i], v)
                hits += h32
            c[0] += hits
        else:
            for i in range(m):
                c[i] += _hit(x[i], y[i])
    elif mode == RD_EXT_GRAD:
        if s == 0:
            v = y[0]
            w = g[0] / c[0]
            for i in range(m):
                ga[i] += (<floating>_hit(x[i], v)) * w
        else:
            for i in range(m):
                ga[i] += (<floating>_hit(x[i], y[i])) * (g[i] / c[i])
    elif mode == RD_SQDEV:
        if s == 0:
            c[0] += _centred_sq(x, y[0], m)
        else:
            for i in range(m):
                v = x[i] - y[i]
                c[i] += v * v
    elif mode == RD_DEV_GRAD:
        if s == 0:
            v = y[0]
            w = g[0]
            for i in range(m):
                ga[i] += w * (x[i] - v)
        else:
            for i in range(m):
                ga[i] += g[i] * (x[i] - y[i])
    else:                                    # exp(x - y), in chunks on NumPy's exp
        for j in range(0, m, 512):
            k = m - j if m - j < UL_CHUNK else UL_CHUNK
            for i in range(k):
                t[i] = x[j + i] - y[(j + i) * s]
            if _ul_has(UL_EXP, dt):
                _ul_unary(UL_EXP, dt, <char*>t, <char*>t, k)
            else:
                for i in range(k):
                    t[i] = <floating>c_exp(t[i])
            if mode == RD_EXP_SUM:
                if s == 0:
                    c[0] += _pairwise(t, k)
                else:
                    for i in range(k):
                        c[j + i] += t[i]
            else:
                for i in range(k):
                    ga[j + i] += g[(j + i) * s] * t[i]


cdef void _rd_rows(int mode, const _Plan* p, const floating* x, floating* y, const floating* g,
                   floating* c, floating* ga, int dt) noexcept nogil:
    cdef Py_ssize_t idx[BC_MAXDIM]
    cdef Py_ssize_t oa = 0, ob = 0, row, m = p.n[p.nd - 1], s = p.sb[p.nd - 1]
    cdef double t[UL_CHUNK]
    if p.size == 0:
        return
    memset(idx, 0, p.nd * sizeof(Py_ssize_t))
    for row in range(p.size // m):
        _rd_row(mode, x + row * m, y + ob, g + ob if g != NULL else NULL,
                c + ob if c != NULL else NULL, ga + row * m if ga != NULL else NULL, s, m,
                <floating*>t, dt)
        _bc_next(p, idx, &oa, &ob)


cdef void _rd_fill(floating* y, Py_ssize_t n, floating v) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = v


cdef void _rd_forward(int op, const _Plan* p, const floating* x, floating* y, Py_ssize_t n,
                      floating* scratch, int dt) noexcept nogil:
    """y (n results) = max / min / logsumexp of x over the plan's broadcast axes."""
    cdef Py_ssize_t i
    _rd_fill(y, n, -INFINITY if op != MIN else INFINITY)
    _rd_rows(RD_MIN if op == MIN else RD_MAX, p, x, y, <floating*>NULL, <floating*>NULL,
             <floating*>NULL, dt)
    if op != LOGSUMEXP:
        return
    for i in range(n):
        if not (fabs(y[i]) < INFINITY):      # not finite (inf or NaN): no shift
            y[i] = 0
    _rd_fill(scratch, n, 0)
    _rd_rows(RD_EXP_SUM, p, x, y, <floating*>NULL, scratch, <floating*>NULL, dt)
    if _ul_has(UL_LOG, dt):
        _ul_unary(UL_LOG, dt, <char*>scratch, <char*>scratch, n)
    else:
        for i in range(n):
            scratch[i] = <floating>c_log(scratch[i])
    for i in range(n):
        y[i] = scratch[i] + y[i]


cdef int _rd_values(int op, const _Plan* p, TensorBase a, TensorBase out) except -1:
    cdef char* scratch = NULL
    if op == LOGSUMEXP:
        scratch = <char*>_mem_alloc(out._size * ITEMSIZE[out._dt] if out._size else 1)
        if scratch == NULL:
            raise MemoryError()
    if out._dt == DT_F64:
        _rd_forward(op, p, <double*>a._data, <double*>out._data, out._size, <double*>scratch,
                    DT_F64)
    else:
        _rd_forward(op, p, <float*>a._data, <float*>out._data, out._size, <float*>scratch,
                    DT_F32)
    _mem_free(scratch)
    return 0


cdef tuple _rd_axes(TensorBase a, object axes):
    return tuple(range(len(a._shape))) if axes is None else axes


cdef object _reduce(int op, TensorBase a, object axes, bint keepdims):
    """max / min / logsumexp of a over axes (None: all) natively, or None (empty, ...)."""
    cdef _Plan p
    cdef TensorBase out
    cdef tuple ax = _rd_axes(a, axes)
    if a._size == 0 or not _bc_plan(a._shape, _sum_kept(a._shape, ax), &p):
        return None
    shape = _sum_shape(a._shape, ax, keepdims)
    out = _alloc(shape, _prod(shape), a._dt)
    _rd_values(op, &p, a, out)
    if fg_grad_enabled() and a._requires_grad:
        _record(out, op, a, None, None)
        out._d = axes
        out._c = 1 if keepdims else 0
    return out


cdef bint _reduce_plan(TensorBase node, _Plan* p) except -1:
    cdef TensorBase a = node._a
    cdef tuple ax = _rd_axes(a, node._d)
    if not _bc_plan(a._shape, _sum_kept(a._shape, ax), p) \
            or _sum_shape(a._shape, ax, node._c != 0) != node._shape or a._size == 0:
        raise RuntimeError("backward: the values of '%s' were replaced through .data by an "
                           "array of another shape" % _op_name(node))
    return True


cdef int _reduce_replay(TensorBase node) except -1:
    """The replay rule of a native max / min / logsumexp node (NATIVE_REPLAY's row)."""
    cdef _Plan p
    _reduce_plan(node, &p)
    _rd_values(node._op, &p, node._a, node)
    return 0


cdef int _reduce_backward(TensorBase node) except -1:
    """The backward rule of a native max / min / logsumexp node (NATIVE_BACKWARD's row)."""
    cdef _Plan p
    cdef TensorBase a = node._a
    cdef char* ga
    cdef char* count
    cdef int op = node._op
    if node._data == NULL:
        raise RuntimeError("backward: the values of '%s' were replaced through .data by an "
                           "array of another layout" % _op_name(node))
    _reduce_plan(node, &p)
    ga = _grad_buffer(a)
    if op == LOGSUMEXP:
        if a._dt == DT_F64:
            _rd_rows(RD_EXP_GRAD, &p, <double*>a._data, <double*>node._data,
                     <double*>node._g, <double*>NULL, <double*>ga, DT_F64)
        else:
            _rd_rows(RD_EXP_GRAD, &p, <float*>a._data, <float*>node._data,
                     <float*>node._g, <float*>NULL, <float*>ga, DT_F32)
        return 0
    count = <char*>calloc(node._size if node._size else 1, ITEMSIZE[a._dt])
    if count == NULL:
        raise MemoryError()
    if a._dt == DT_F64:
        _rd_rows(RD_COUNT, &p, <double*>a._data, <double*>node._data, <double*>NULL,
                 <double*>count, <double*>NULL, DT_F64)
        _rd_rows(RD_EXT_GRAD, &p, <double*>a._data, <double*>node._data, <double*>node._g,
                 <double*>count, <double*>ga, DT_F64)
    else:
        _rd_rows(RD_COUNT, &p, <float*>a._data, <float*>node._data, <float*>NULL,
                 <float*>count, <float*>NULL, DT_F32)
        _rd_rows(RD_EXT_GRAD, &p, <float*>a._data, <float*>node._data, <float*>node._g,
                 <float*>count, <float*>ga, DT_F32)
    free(count)
    return 0


# -- var and std over axes ------------------------------------------------------
# The same plan again.  The mean is the sum of the plan (as _sum_axes) over
# the count, the result the sum of squared deviations from it (RD_SQDEV)
# times 1 / dof (NaN for dof <= 0), and for std its square root.  The
# backward recomputes the mean and adds w (x - mean) into the input's
# gradient, w = 2 g / dof for var and g / (dof std) for std (0 where std is
# 0): PyTorch's rules, which send nothing back through the mean.  A node
# keeps the axes (None: all) in _d, keepdims in _c and the correction in _c2.
# norm (the 2-norm) is std with a mean of 0 and a scale of 1.

cdef double _spread_scale(int op, TensorBase a, tuple ax, double correction):
    cdef double n = 1, dof
    if op == NORM:
        return 1.0
    for d in ax:
        n *= <Py_ssize_t>a._shape[d]
    dof = n - correction
    return 1.0 / dof if dof > 0 else NAN


cdef void _spread_mean(const _Plan* p, const floating* x, floating* mean, Py_ssize_t k,
                       floating n) noexcept nogil:
    cdef Py_ssize_t i
    memset(mean, 0, k * sizeof(floating))
    _bc_grad(ADD, p, x, x, mean, <floating*>NULL, mean)
    for i in range(k):
        mean[i] = mean[i] / n


cdef void _spread_forward(int op, const _Plan* p, const floating* x, floating* y,
                          floating* mean, Py_ssize_t k, floating n, floating scale,
                          int dt) noexcept nogil:
    cdef Py_ssize_t i
    if op == NORM:
        memset(mean, 0, k * sizeof(floating))
    else:
        _spread_mean(p, x, mean, k, n)
    memset(y, 0, k * sizeof(floating))
    _rd_rows(RD_SQDEV, p, x, mean, <floating*>NULL, y, <floating*>NULL, dt)
    for i in range(k):
        y[i] = y[i] * scale
    if op != VAR:
        for i in range(k):
            y[i] = <floating>c_sqrt(y[i])


cdef void _spread_grad(int op, const _Plan* p, const floating* x, const floating* y,
                       const floating* g, floating* ga, floating* mean, floating* w,
                       Py_ssize_t k, floating n, floating scale, int dt) noexcept nogil:
    cdef Py_ssize_t i
    if op == NORM:
        memset(mean, 0, k * sizeof(floating))
    else:
        _spread_mean(p, x, mean, k, n)
    if op != VAR:
        for i in range(k):
            w[i] = 0 if y[i] == 0 else g[i] / y[i] * scale
    else:
        for i in range(k):
            w[i] = g[i] * (2 * scale)
    _rd_rows(RD_DEV_GRAD, p, x, mean, w, <floating*>NULL, ga, dt)


cdef int _spread_values(int op, const _Plan* p, TensorBase a, TensorBase out) except -1:
    cdef tuple ax = _rd_axes(a, out._d)
    cdef double scale = _spread_scale(op, a, ax, out._c2)
    cdef Py_ssize_t k = out._size
    cdef double n = <double>(a._size // k) if k else 1
    cdef char* mean = <char*>_mem_alloc(k * ITEMSIZE[a._dt] if k else 1)
    if mean == NULL:
        raise MemoryError()
    if a._dt == DT_F64:
        _spread_forward(op, p, <double*>a._data,
                        <double*>out._data, <double*>mean, k, n, scale, DT_F64)
    else:
        _spread_forward(op, p, <float*>a._data,
                        <float*>out._data, <float*>mean, k, n, <float>scale, DT_F32)
    _mem_free(mean)
    return 0


cdef object _spread(int op, TensorBase a, object axes, bint keepdims, object correction):
    """var / std of a over axes (None: all) natively, or None (empty, ...)."""
    cdef _Plan p
    cdef TensorBase out
    cdef tuple ax = _rd_axes(a, axes)
    if a._size == 0 or not _bc_plan(a._shape, _sum_kept(a._shape, ax), &p):
        return None
    shape = _sum_shape(a._shape, ax, keepdims)
    out = _alloc(shape, _prod(shape), a._dt)
    out._d = axes
    out._c = 1 if keepdims else 0
    out._c2 = float(correction)
    _spread_values(op, &p, a, out)
    if fg_grad_enabled() and a._requires_grad:
        _record(out, op, a, None, axes)
    return out


cdef int _spread_plan(TensorBase node, _Plan* p) except -1:
    return _reduce_plan(node, p)


cdef int _spread_replay(TensorBase node) except -1:
    """The replay rule of a native var / std node (NATIVE_REPLAY's row)."""
    cdef _Plan p
    _spread_plan(node, &p)
    _spread_values(node._op, &p, node._a, node)
    return 0


cdef int _spread_backward(TensorBase node) except -1:
    """The backward rule of a native var / std node (NATIVE_BACKWARD's row)."""
    cdef _Plan p
    cdef TensorBase a = node._a
    cdef Py_ssize_t k = node._size
    cdef double n, scale
    cdef char* ga
    cdef char* scratch
    if node._data == NULL and node._op != VAR:
        raise RuntimeError("backward: the values of '%s' were replaced through .data by an "
                           "array of another layout" % _op_name(node))
    _spread_plan(node, &p)
    scale = _spread_scale(node._op, a, _rd_axes(a, node._d), node._c2)
    n = <double>(a._size // k) if k else 1
    ga = _grad_buffer(a)
    scratch = <char*>_mem_alloc(2 * k * ITEMSIZE[a._dt] if k else 1)
    if scratch == NULL:
        raise MemoryError()
    if a._dt == DT_F64:
        _spread_grad(node._op, &p, <double*>a._data, <double*>node._data, <double*>node._g,
                     <double*>ga, <double*>scratch, <double*>scratch + k, k, n, scale, DT_F64)
    else:
        _spread_grad(node._op, &p, <float*>a._data, <float*>node._data, <float*>node._g,
                     <float*>ga, <float*>scratch, <float*>scratch + k, k, n, <float>scale,
                     DT_F32)
    _mem_free(scratch)
    return 0
