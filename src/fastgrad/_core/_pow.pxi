# pow: a ** b natively (included by _tape.pyx; uses _ufunc_loops.pxi)
# ---------------------------------------------------------------------------
# One exponent for every element (a Python number, FORM_TC, or a size-1
# tensor, FORM_T1) is the common case: x ** 2 in a loss, x ** 0.5 in a norm.
# A libm pow per element costs ~15 ns (256 x 256: 1 ms), so the exponents
# PyTorch specialises become the same arithmetic here, in the element type,
# in loops the compiler vectorizes: 2 -> x * x, 3 -> x * x * x, -1 -> 1 / x,
# -2 -> 1 / (x * x), 0 -> 1, 1 -> x, and for a Python number (not a tensor:
# there PyTorch takes pow, which differs at -inf and -0.0) 0.5 -> sqrt,
# -0.5 -> 1 / sqrt.  Other small integers are repeated squaring in double;
# anything else, and exponent tensors, NumPy's power loop (SIMD where the
# CPU has it).  The backward rule is PyTorch's, on the same kernels:
# d/da = b * a ** (b - 1) (0 where b == 0), d/db = a ** b * log(a) (0 where
# a == 0 and b >= 0).

cdef enum:
    PK_ZERO = 0
    PK_ONE = 1
    PK_SQUARE = 2
    PK_CUBE = 3
    PK_RECIP = 4
    PK_RSQUARE = 5
    PK_SQRT = 6
    PK_RSQRT = 7
    PK_INT = 8          # another integer up to POW_INT_MAX: squarings, in double
    PK_GENERAL = 9      # NumPy's power loop (or libm)

# Larger integer exponents lose more to rounding in a chain of squarings
# than pow does (log2(k) roundings): NumPy's pow loop takes those.
cdef double POW_INT_MAX = 16


cdef inline int _pow_kind(double e, bint number) noexcept nogil:
    if e == 0:
        return PK_ZERO
    if e == 1:
        return PK_ONE
    if e == 2:
        return PK_SQUARE
    if e == 3:
        return PK_CUBE
    if e == -1:
        return PK_RECIP
    if e == -2:
        return PK_RSQUARE
    if number and e == 0.5:
        return PK_SQRT
    if number and e == -0.5:
        return PK_RSQRT
    if fabs(e) <= POW_INT_MAX and e == <double>(<long>e):
        return PK_INT
    return PK_GENERAL


cdef void _pow_int_chunk(const floating* x, floating* y, long k, bint inverse, double* acc,
                         double* p, Py_ssize_t n) noexcept nogil:
    # x ** k by squaring, each step one pass over the chunk (vectorized)
    cdef Py_ssize_t i
    for i in range(n):
        p[i] = x[i]
        acc[i] = 1
    while k:
        if k & 1:
            for i in range(n):
                acc[i] = acc[i] * p[i]
        k >>= 1
        if k:
            for i in range(n):
                p[i] = p[i] * p[i]
    if inverse:
        for i in range(n):
            y[i] = <floating>(1 / acc[i])
    else:
        for i in range(n):
            y[i] = <floating>acc[i]


cdef void pow_one(int kind, double e, const floating* x, floating* y, Py_ssize_t n,
                  int dt) noexcept nogil:
    """y[:n] = x[:n] ** e for one exponent (kind = _pow_kind(e, ...)); y may be x."""
    cdef Py_ssize_t i, j, m
    cdef floating ev = <floating>e, one = 1
    cdef floating* ebuf
    cdef double acc[UL_CHUNK]
    cdef double p[UL_CHUNK]
    if kind == PK_ZERO:
        for i in range(n):
            y[i] = one
    elif kind == PK_ONE:
        if y != x:
            memcpy(y, x, n * sizeof(floating))
    elif kind == PK_SQUARE:
        for i in range(n):
            y[i] = x[i] * x[i]
    elif kind == PK_CUBE:
        for i in range(n):
            y[i] = x[i] * x[i] * x[i]
    elif kind == PK_RECIP:
        for i in range(n):
            y[i] = one / x[i]
    elif kind == PK_RSQUARE:
        for i in range(n):
            y[i] = one / (x[i] * x[i])
    elif kind == PK_SQRT:
        for i in range(n):
            y[i] = <floating>c_sqrt(x[i])
    elif kind == PK_RSQRT:            # two roundings in the element type, as PyTorch
        for i in range(n):
            y[i] = one / <floating>c_sqrt(x[i])
    elif kind == PK_INT:
        for j in range(0, n, 512):
            m = n - j if n - j < UL_CHUNK else UL_CHUNK
            _pow_int_chunk(x + j, y + j, <long>fabs(e), e < 0, acc, p, m)
    elif _ul_has(UL_POWER, dt):
        # The exponent as a run of equal values, not a stride of 0: NumPy's
        # loop takes sqrt (reciprocal) for a repeated 0.5 (-1), which differs
        # from pow at -inf and -0.0, and a tensor exponent must be pow.
        ebuf = <floating*>acc
        for i in range(UL_CHUNK):
            ebuf[i] = ev
        for j in range(0, n, 512):
            m = n - j if n - j < UL_CHUNK else UL_CHUNK
            _ul_binary(UL_POWER, dt, <char*>(x + j), sizeof(floating), <char*>ebuf,
                       sizeof(floating), <char*>(y + j), m)
    else:
        for i in range(n):
            y[i] = <floating>c_pow(x[i], ev)


cdef inline double _pow_exponent(int form, TensorBase b, double c, int dt) noexcept:
    """The one exponent of FORM_TC / FORM_T1, as the element type holds it."""
    if form == FORM_T1:
        return (<double*>b._data)[0] if dt == DT_F64 else (<float*>b._data)[0]
    return c if dt == DT_F64 else <float>c


cdef bint _pow_forward(int form, TensorBase a, TensorBase b, double c,
                       TensorBase out) noexcept:
    """out = a ** b natively; False: not handled (the caller's loops run)."""
    cdef int dt = out._dt
    cdef double e, slot
    cdef char* pa
    cdef char* pb
    cdef Py_ssize_t sa, sb
    if form == FORM_TC or form == FORM_T1:
        e = _pow_exponent(form, b, c, dt)
        if dt == DT_F64:
            pow_one(_pow_kind(e, form == FORM_TC), e, <double*>a._data, <double*>out._data,
                    out._size, dt)
        else:
            pow_one(_pow_kind(e, form == FORM_TC), e, <float*>a._data, <float*>out._data,
                    out._size, dt)
        return True
    if not _ul_has(UL_POWER, dt):
        return False
    # exponent tensors (and number ** tensor): NumPy's loop, strides in bytes
    _operand_ptrs(form, a, b, c, &slot, dt, &pa, &sa, &pb, &sb)
    _ul_binary(UL_POWER, dt, pa, sa * ITEMSIZE[dt], pb, sb * ITEMSIZE[dt], out._data,
               out._size)
    return True


cdef void _pow_base_grad_chunk(int kind, double d, floating ev, const floating* g,
                               const floating* x, floating* ga, floating* t, Py_ssize_t n,
                               bint write, int dt) noexcept nogil:
    # ga (= or +=) g * (b * x ** (b - 1)), PyTorch's order of operations
    cdef Py_ssize_t i
    pow_one(kind, d, x, t, n, dt)
    if write:
        for i in range(n):
            ga[i] = g[i] * (ev * t[i])
    else:
        for i in range(n):
            ga[i] += g[i] * (ev * t[i])


cdef double _pow_exp_grad_chunk(const floating* g, const floating* x, const floating* y,
                                floating* t, double e, Py_ssize_t n, int dt) noexcept nogil:
    # sum of g * (y * log(x)), 0 where x == 0 and b >= 0 (else 0 * -inf)
    cdef Py_ssize_t i
    cdef double s = 0
    if _ul_has(UL_LOG, dt):
        _ul_unary(UL_LOG, dt, <char*>x, <char*>t, n)
    else:
        for i in range(n):
            t[i] = <floating>c_log(x[i])
    for i in range(n):
        if x[i] != 0 or not (e >= 0):
            s += g[i] * (y[i] * t[i])
    return s


cdef int _pow_backward(TensorBase node) except -1:
    """pow's backward for one exponent (FORM_TC, FORM_T1); returns 0 for other forms
    (the caller's loops run), 1 when done."""
    cdef int form = node._form
    cdef TensorBase a = node._a, b = node._b
    cdef int dt = node._dt
    cdef Py_ssize_t n = node._size, j, m
    cdef double e, d, s = 0
    cdef int kind
    cdef bint write
    cdef char* g
    cdef char* ga
    cdef char* gb
    cdef double scratch[UL_CHUNK]
    if form != FORM_TC and form != FORM_T1:
        return 0
    if b is not None and b._data == NULL and not b._dropped:
        raise RuntimeError("backward: the values of an input of '%s' were replaced "
                           "through .data by an array of another layout" % _op_name(node))
    e = _pow_exponent(form, b, node._c, dt)
    # the exponent's gradient first: it reads node._g, which a's may overwrite
    if b is not None and b._requires_grad:
        for j in range(0, n, 512):
            m = n - j if n - j < UL_CHUNK else UL_CHUNK
            if dt == DT_F64:
                s += _pow_exp_grad_chunk((<double*>node._g) + j, (<double*>a._data) + j,
                                         (<double*>node._data) + j, <double*>scratch, e, m, dt)
            else:
                s += _pow_exp_grad_chunk((<float*>node._g) + j, (<float*>a._data) + j,
                                         (<float*>node._data) + j, <float*>scratch, e, m, dt)
        gb = _grad_buffer(b)
        if dt == DT_F64:
            (<double*>gb)[0] += s
        else:
            (<float*>gb)[0] += <float>s
    if a is None or not a._requires_grad:
        return 1
    if a._g == NULL:
        # a's first gradient, over the incoming one (as the other binary ops)
        g = ga = node._g
        a._g = node._g
        node._g = NULL
        write = True
    else:
        g = node._g
        ga = a._g
        write = False
    if e == 0:                          # d/da is 0, even at a = 0 or NaN
        if write:
            memset(ga, 0, n * ITEMSIZE[dt])
        return 1
    d = e - 1 if dt == DT_F64 else <float>(e - 1)
    kind = _pow_kind(d, form == FORM_TC)
    for j in range(0, n, 512):
        m = n - j if n - j < UL_CHUNK else UL_CHUNK
        if dt == DT_F64:
            _pow_base_grad_chunk(kind, d, <double>e, (<double*>g) + j, (<double*>a._data) + j,
                                 (<double*>ga) + j, <double*>scratch, m, write, dt)
        else:
            _pow_base_grad_chunk(kind, d, <float>e, (<float*>g) + j, (<float*>a._data) + j,
                                 (<float*>ga) + j, <float*>scratch, m, write, dt)
    return 1


# Exponent tensors of the output's shape (both operands contiguous): the
# backward in chunks through NumPy's SIMD log and pow loops, in the element
# type and the reference rule's order of operations (per element, libm's pow
# and log in double cost ~15 ns each: 256 x 256 took about 1 ms).
cdef void _pow_tensor_grad_chunk(const floating* g, const floating* x, const floating* e,
                                 const floating* y, floating* ga, floating* gb, floating* t,
                                 Py_ssize_t n, bint wa, bint wb, int dt) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating zero = 0
    if ga != NULL:
        for i in range(n):
            t[i] = e[i] - 1
        _ul_binary(UL_POWER, dt, <char*>x, sizeof(floating), <char*>t, sizeof(floating),
                   <char*>t, n)
        for i in range(n):
            _put(&ga[i], g[i] * (e[i] * t[i]) if e[i] != 0 else zero, wa)
    if gb != NULL:
        _ul_unary(UL_LOG, dt, <char*>x, <char*>t, n)
        for i in range(n):
            _put(&gb[i], g[i] * (y[i] * t[i]) if (x[i] != 0 or not (e[i] >= 0)) else zero, wb)


cdef int _pow_tensor_backward(TensorBase node, char* pa, char* pb) except -1:
    """pow's backward for a tensor exponent, a and b contiguous of the output's shape."""
    cdef TensorBase a = node._a, b = node._b
    cdef int dt = node._dt
    cdef Py_ssize_t n = node._size, j, m, k = ITEMSIZE[dt]
    cdef char* ga = NULL
    cdef char* gb = NULL
    cdef bint wa = False, wb = False
    cdef double scratch[UL_CHUNK]
    if a._requires_grad:
        ga = _grad_buffer_raw(a, &wa)
    if b._requires_grad:
        gb = _grad_buffer_raw(b, &wb)
        if gb == ga:                     # x ** x: one buffer, a's part written first
            wb = False
    for j in range(0, n, UL_CHUNK):
        m = n - j if n - j < UL_CHUNK else UL_CHUNK
        if dt == DT_F64:
            _pow_tensor_grad_chunk(<double*>(node._g + j * k), <double*>(pa + j * k),
                                   <double*>(pb + j * k), <double*>(node._data + j * k),
                                   <double*>(ga + j * k) if ga != NULL else NULL,
                                   <double*>(gb + j * k) if gb != NULL else NULL,
                                   <double*>scratch, m, wa, wb, dt)
        else:
            _pow_tensor_grad_chunk(<float*>(node._g + j * k), <float*>(pa + j * k),
                                   <float*>(pb + j * k), <float*>(node._data + j * k),
                                   <float*>(ga + j * k) if ga != NULL else NULL,
                                   <float*>(gb + j * k) if gb != NULL else NULL,
                                   <float*>scratch, m, wa, wb, dt)
    return 0
