# matmul of strided 2-D operands without copies (included by _tape.pyx)
# ---------------------------------------------------------------------------
# `X @ W.T` multiplies by a transposed view: W.T shares W's memory, so its
# tensor has no C-contiguous pointer and used to take the reference rule (a
# Python frame, np.matmul, and NumPy's own copy for the small loops).  Here
# an operand of at most 2 dimensions is any aligned float array: its pointer
# and element strides are read from its ndarray each time a kernel runs (so
# they always describe the memory it reads; _check_node guarantees only the
# shape), the small products run C loops in the order that keeps the inner
# loop contiguous for that layout (a transposed operand is the dot-product
# form of linear), and from BLAS_MIN multiply-adds on the views go to
# np.matmul, whose BLAS call takes the transpose as a flag.

cdef struct _MM:
    char* p                 # first element
    Py_ssize_t rs, cs       # element strides of rows and columns (as a 2-D operand)
    Py_ssize_t rows, cols


cdef bint _mm_operand(TensorBase t, bint left, _MM* o) noexcept:
    """o describes t as a 2-D operand (a 1-D one is a row on the left, a column on
    the right); False if t is no float array of at most 2 dimensions."""
    cdef cnp.ndarray arr
    cdef int nd = len(t._shape)
    cdef Py_ssize_t item = ITEMSIZE[t._dt]
    cdef Py_ssize_t s0, s1
    if t._dt == DT_OTHER or nd == 0 or nd > 2 or t._size == 0:
        return False
    if t._data != NULL:
        o.p = t._data
        if nd == 2:
            o.rows = t._shape[0]
            o.cols = t._shape[1]
            o.rs = o.cols
            o.cs = 1
        else:
            o.rows = 1 if left else t._size
            o.cols = t._size if left else 1
            o.rs = t._size if left else 1
            o.cs = 1
        return True
    if t._arr is None:
        return False
    arr = <cnp.ndarray>t._arr
    if not (cnp.PyArray_ISALIGNED(arr) and cnp.PyArray_ISNOTSWAPPED(arr)):
        return False
    s0 = cnp.PyArray_STRIDES(arr)[0]
    s1 = cnp.PyArray_STRIDES(arr)[1] if nd == 2 else 0
    if s0 % item or s1 % item:
        return False
    o.p = <char*>cnp.PyArray_DATA(arr)
    if nd == 2:
        o.rows = cnp.PyArray_DIM(arr, 0)
        o.cols = cnp.PyArray_DIM(arr, 1)
        o.rs = s0 // item
        o.cs = s1 // item
    elif left:
        o.rows, o.cols, o.rs, o.cs = 1, cnp.PyArray_DIM(arr, 0), 0, s0 // item
    else:
        o.rows, o.cols, o.rs, o.cs = cnp.PyArray_DIM(arr, 0), 1, s0 // item, 0
    return True


cdef inline void _mm_dot(const floating* a, Py_ssize_t ars, Py_ssize_t acs,
                         const floating* b, Py_ssize_t brs, Py_ssize_t bcs, floating* y,
                         Py_ssize_t n, Py_ssize_t k, Py_ssize_t m) noexcept nogil:
    # y[r, o] = sum_i a[r, i] * b[i, o], the sum along i (contiguous when acs == brs == 1:
    # then in four running sums, _row_dot)
    cdef Py_ssize_t r, i, o
    cdef floating s
    for r in range(n):
        for o in range(m):
            if acs == 1 and brs == 1:
                y[r * m + o] = _row_dot(a + r * ars, b + o * bcs, k)
                continue
            s = 0
            for i in range(k):
                s += a[r * ars + i * acs] * b[i * brs + o * bcs]
            y[r * m + o] = s


cdef inline void _mm_axpy(const floating* a, Py_ssize_t ars, Py_ssize_t acs,
                          const floating* b, Py_ssize_t brs, Py_ssize_t bcs, floating* y,
                          Py_ssize_t n, Py_ssize_t k, Py_ssize_t m) noexcept nogil:
    # y[r, :] += a[r, i] * b[i, :], the inner loop along rows of b and y
    cdef Py_ssize_t r, i, o
    cdef floating av
    memset(y, 0, n * m * sizeof(floating))
    for r in range(n):
        for i in range(k):
            av = a[r * ars + i * acs]
            for o in range(m):
                y[r * m + o] += av * b[i * brs + o * bcs]


cdef void mm_forward(const floating* a, Py_ssize_t ars, Py_ssize_t acs, const floating* b,
                     Py_ssize_t brs, Py_ssize_t bcs, floating* y, Py_ssize_t n, Py_ssize_t k,
                     Py_ssize_t m) noexcept nogil:
    """y (n, m, contiguous) = a @ b for strided a (n, k) and b (k, m)."""
    if bcs == 1:                          # rows of b contiguous: the axpy form
        _mm_axpy(a, ars, acs, b, brs, 1, y, n, k, m)
    elif acs == 1 and brs == 1:           # x @ w.T: both along i, the dot form
        _mm_dot(a, ars, 1, b, 1, bcs, y, n, k, m)
    else:
        _mm_dot(a, ars, acs, b, brs, bcs, y, n, k, m)


cdef void mm_backward(const floating* g, const floating* a, Py_ssize_t ars, Py_ssize_t acs,
                      const floating* b, Py_ssize_t brs, Py_ssize_t bcs, floating* ga,
                      floating* gb, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m) noexcept nogil:
    """ga (n, k) += g @ b.T and gb (k, m) += a.T @ g, the buffers contiguous (either NULL)."""
    cdef Py_ssize_t r, i, o
    cdef floating s, gv, av
    if ga != NULL:
        if brs == 1:                      # b's columns contiguous: along i
            for r in range(n):
                for o in range(m):
                    gv = g[r * m + o]
                    for i in range(k):
                        ga[r * k + i] += gv * b[i + o * bcs]
        else:
            for r in range(n):
                for i in range(k):
                    s = 0
                    for o in range(m):
                        s += g[r * m + o] * b[i * brs + o * bcs]
                    ga[r * k + i] += s
    if gb != NULL:                        # along rows of g and gb, whatever a's layout
        for r in range(n):
            for i in range(k):
                av = a[r * ars + i * acs]
                for o in range(m):
                    gb[i * m + o] += av * g[r * m + o]


cdef bint _mm_strided_case(TensorBase a, TensorBase b) noexcept:
    """Both float operands of one dtype, at most 2-D, non-empty, one not C-contiguous."""
    return (a._dt != DT_OTHER and a._dt == b._dt and (a._data == NULL or b._data == NULL)
            and 0 < len(a._shape) <= 2 and 0 < len(b._shape) <= 2
            and a._size > 0 and b._size > 0)


cdef object _matmul_strided(TensorBase a, TensorBase b):
    """a @ b for strided operands (see above), or None when a layout does not fit."""
    cdef _MM oa, ob
    cdef TensorBase out
    if not (_mm_operand(a, True, &oa) and _mm_operand(b, False, &ob)) or oa.cols != ob.rows:
        return None
    shape = ((a._shape[0],) if len(a._shape) == 2 else ()) + \
            ((b._shape[1],) if len(b._shape) == 2 else ())
    out = _alloc(shape, oa.rows * ob.cols, a._dt)
    _mm_values(&oa, &ob, a, b, out)
    if fg_grad_enabled() and (a._requires_grad or b._requires_grad):
        _record(out, MATMUL, a, b, None)
    return out


cdef int _mm_values(_MM* oa, _MM* ob, TensorBase a, TensorBase b, TensorBase out) except -1:
    cdef Py_ssize_t n = oa.rows, k = oa.cols, m = ob.cols
    cdef int dt = a._dt
    if n * k * m >= BLAS_MIN:
        np.matmul(_mm_array(a, True), _mm_array(b, False), out=_view(out._data, (n, m), dt))
    elif dt == DT_F64:
        mm_forward(<double*>oa.p, oa.rs, oa.cs, <double*>ob.p, ob.rs, ob.cs,
                   <double*>out._data, n, k, m)
    else:
        mm_forward(<float*>oa.p, oa.rs, oa.cs, <float*>ob.p, ob.rs, ob.cs,
                   <float*>out._data, n, k, m)
    return 0


cdef object _mm_array(TensorBase t, bint left):
    """t's values as a 2-D ndarray (a view: 1-D operands as a row / a column)."""
    arr = _array(t)
    if len(t._shape) == 1:
        return arr[None, :] if left else arr[:, None]
    return arr


cdef bint _mm_replay(TensorBase a, TensorBase b, TensorBase out) except -1:
    """A replay's forward of a matmul node with a strided operand; False: not one."""
    cdef _MM oa, ob
    if a._data != NULL and b._data != NULL:
        return False
    if not (_mm_operand(a, True, &oa) and _mm_operand(b, False, &ob)) \
            or oa.cols != ob.rows or oa.rows * ob.cols != out._size:
        raise RuntimeError("compile: the values of an input of 'matmul' were replaced "
                           "through .data by an array of another layout")
    _mm_values(&oa, &ob, a, b, out)
    return True


cdef bint _mm_backward(TensorBase node) except -1:
    """matmul's backward rule when an operand is strided; False: both contiguous."""
    cdef TensorBase a = node._a, b = node._b
    cdef _MM oa, ob
    cdef Py_ssize_t n, k, m
    cdef bint fresh_a = False, fresh_b = False
    cdef char* ga = NULL
    cdef char* gb = NULL
    cdef int dt = node._dt
    if a._data != NULL and b._data != NULL:
        return False
    if not (_mm_operand(a, True, &oa) and _mm_operand(b, False, &ob)) \
            or oa.cols != ob.rows or oa.rows * ob.cols != node._size:
        raise RuntimeError("backward: the values of an input of 'matmul' were replaced "
                           "through .data by an array of another layout")
    n, k, m = oa.rows, oa.cols, ob.cols
    if a._requires_grad:
        ga = _grad_buffer_raw(a, &fresh_a)
    if b._requires_grad:
        gb = _grad_buffer_raw(b, &fresh_b)
    if n * k * m >= BLAS_MIN:
        g = _view(node._g, (n, m), dt)
        if ga != NULL:
            prod = np.matmul(g, _mm_array(b, False).T, out=_view(ga, (n, k), dt)
                             if fresh_a else None)
            if not fresh_a:
                _product_into(ga, False, dt, n * k, prod)
        if gb != NULL:
            prod = np.matmul(_mm_array(a, True).T, g, out=_view(gb, (k, m), dt)
                             if fresh_b else None)
            if not fresh_b:
                _product_into(gb, False, dt, k * m, prod)
        return True
    _zero_if_fresh(ga, fresh_a, n * k * ITEMSIZE[dt])
    _zero_if_fresh(gb, fresh_b, k * m * ITEMSIZE[dt])
    if dt == DT_F64:
        mm_backward(<double*>node._g, <double*>oa.p, oa.rs, oa.cs, <double*>ob.p, ob.rs, ob.cs,
                    <double*>ga, <double*>gb, n, k, m)
    else:
        mm_backward(<float*>node._g, <float*>oa.p, oa.rs, oa.cs, <float*>ob.p, ob.rs, ob.cs,
                    <float*>ga, <float*>gb, n, k, m)
    return True


# -- batched operands: (..., n, k) @ (..., k, m), the same batch shape ------
# Both C-contiguous, so batch i of each is a block at a fixed step: the 2-D
# kernels above run once per batch (or one np.matmul over the 3-D views
# from BLAS_MIN multiply-adds per batch).  Broadcast batch shapes and
# strided batched operands (attention's k.transpose(-2, -1)) take the
# reference rule.

cdef bint _mm_plain(TensorBase a, TensorBase b) noexcept:
    """Float operands of one dtype whose shapes check_matmul would pass without
    looking further: b 1-D or 2-D (no batch to broadcast), the inner sizes equal."""
    cdef Py_ssize_t na = len(a._shape), nb = len(b._shape)
    return (a._dt != DT_OTHER and a._dt == b._dt and na >= 1 and 1 <= nb <= 2
            and <Py_ssize_t>a._shape[na - 1] == <Py_ssize_t>b._shape[0])


cdef bint _bmm_case(TensorBase a, TensorBase b):
    cdef Py_ssize_t na = len(a._shape), nb = len(b._shape)
    return (_nativeable(a) and _nativeable(b) and a._dt == b._dt and na >= 3 and na == nb
            and tuple(a._shape)[:na - 2] == tuple(b._shape)[:nb - 2]
            and a._size > 0 and b._size > 0)


cdef object _bmm(TensorBase a, TensorBase b):
    cdef Py_ssize_t nd = len(a._shape)
    shape = tuple(a._shape)[:nd - 1] + (b._shape[nd - 1],)
    cdef TensorBase out = _alloc(shape, _prod(shape), a._dt)
    _bmm_values(a, b, out)
    if fg_grad_enabled() and (a._requires_grad or b._requires_grad or fg_keeps_values()):
        _record(out, MATMUL, a, b, None)
        out._requires_grad = a._requires_grad or b._requires_grad
    return out


cdef int _bmm_dims(TensorBase a, TensorBase b, Py_ssize_t* dims) except -1:
    """dims = batches, n, k, m, checked against the operands' sizes."""
    cdef Py_ssize_t nd = len(a._shape)
    dims[1] = a._shape[nd - 2]
    dims[2] = a._shape[nd - 1]
    dims[3] = b._shape[nd - 1]
    dims[0] = a._size // (dims[1] * dims[2])
    if len(b._shape) != nd or dims[0] * dims[2] * dims[3] != b._size \
            or <Py_ssize_t>b._shape[nd - 2] != dims[2]:
        raise SystemError("matmul: batched operands of shapes %s and %s do not match"
                          % (a._shape, b._shape))
    return 0


cdef int _bmm_values(TensorBase a, TensorBase b, TensorBase out) except -1:
    cdef Py_ssize_t d[4]
    cdef Py_ssize_t i
    _bmm_dims(a, b, d)
    cdef Py_ssize_t B = d[0], n = d[1], k = d[2], m = d[3]
    if out._size != B * n * m:
        raise SystemError("matmul: the result does not fit the operands")
    if n * k * m >= BLAS_MIN:
        np.matmul(_view(a._data, (B, n, k), a._dt), _view(b._data, (B, k, m), a._dt),
                  out=_view(out._data, (B, n, m), a._dt))
        return 0
    for i in range(B):
        if a._dt == DT_F64:
            matmul_forward(<double*>a._data + i * n * k, <double*>b._data + i * k * m,
                           <double*>out._data + i * n * m, n, k, m)
        else:
            matmul_forward(<float*>a._data + i * n * k, <float*>b._data + i * k * m,
                           <float*>out._data + i * n * m, n, k, m)
    return 0


cdef int _bmm_backward(TensorBase node) except -1:
    cdef TensorBase a = node._a, b = node._b
    cdef Py_ssize_t d[4]
    cdef Py_ssize_t i
    _bmm_dims(a, b, d)
    cdef Py_ssize_t B = d[0], n = d[1], k = d[2], m = d[3]
    if node._size != B * n * m:                 # before any gradient buffer is made
        raise SystemError("backward: the gradient of 'matmul' does not fit its operands")
    cdef bint fresh_a = False, fresh_b = False
    cdef char* ga = _grad_buffer_raw(a, &fresh_a) if a._requires_grad else NULL
    cdef char* gb = _grad_buffer_raw(b, &fresh_b) if b._requires_grad else NULL
    cdef int dt = a._dt
    if n * k * m >= BLAS_MIN:
        g = _view(node._g, (B, n, m), dt)
        if ga != NULL:
            _product_into(ga, fresh_a, dt, B * n * k,
                          np.matmul(g, _view(b._data, (B, k, m), dt).swapaxes(1, 2)))
        if gb != NULL:
            _product_into(gb, fresh_b, dt, B * k * m,
                          np.matmul(_view(a._data, (B, n, k), dt).swapaxes(1, 2), g))
        return 0
    _zero_if_fresh(ga, fresh_a, B * n * k * ITEMSIZE[dt])
    _zero_if_fresh(gb, fresh_b, B * k * m * ITEMSIZE[dt])
    for i in range(B):
        if dt == DT_F64:
            matmul_backward(<double*>node._g + i * n * m, <double*>a._data + i * n * k,
                            <double*>b._data + i * k * m,
                            <double*>ga + i * n * k if ga != NULL else NULL,
                            <double*>gb + i * k * m if gb != NULL else NULL, n, k, m)
        else:
            matmul_backward(<float*>node._g + i * n * m, <float*>a._data + i * n * k,
                            <float*>b._data + i * k * m,
                            <float*>ga + i * n * k if ga != NULL else NULL,
                            <float*>gb + i * k * m if gb != NULL else NULL, n, k, m)
    return 0
