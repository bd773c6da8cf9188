# softmax, log_softmax and cross entropy's rows natively (included by _tape.pyx)
# ---------------------------------------------------------------------------
# reference.py's rules on a C-contiguous float tensor, along one axis.  The
# tensor is `outer` blocks of (m, inner): m the length of the axis.  Along
# the last axis (inner = 1) each row is contiguous and goes through one row
# kernel: its max in packed partial maxima, exp through NumPy's SIMD exp
# loop, its sums through _pairwise (NumPy's own order: the values are the
# reference core's, bit for bit, for rows up to UL_CHUNK long).  Along any
# other axis a block is handled down its columns, a whole row of the block at
# a time (the vectorized elementwise loops), with per-column maxima and sums
# in two scratch vectors of `inner` items, summed one row after another as
# NumPy's reduction over a leading axis does.  The shift by the max is not
# guarded (as PyTorch): a row whose max is inf, -inf or NaN is NaN throughout.


cdef inline void _exp_into(const floating* x, floating* y, Py_ssize_t n, int dt) noexcept nogil:
    """y[:n] = exp(x[:n]) (y may be x): NumPy's loop, or libm's without it."""
    cdef Py_ssize_t i
    if _ul_has(UL_EXP, dt):
        _ul_unary(UL_EXP, dt, <char*>x, <char*>y, n)
    else:
        for i in range(n):
            y[i] = <floating>c_exp(x[i])


# The largest element of a row, for m > 0.  A NaN in the row may be passed over:
# it makes the row's sum NaN, and so every value of the row, all the same.  gcc
# does not turn `x > r ? x : r` into packed maxima by itself: with SSE2 (every
# x86-64) four partial maxima of whole registers, else a plain loop.
cdef extern from *:
    """
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define FG_MAX_SSE2 1
    #endif
    static inline float fg_row_max_f32(const float* x, Py_ssize_t m) {
        Py_ssize_t i = 1;
        float top = x[0];
    #ifdef FG_MAX_SSE2
        if (m >= 16) {
            __m128 a = _mm_loadu_ps(x), b = _mm_loadu_ps(x + 4);
            __m128 c = _mm_loadu_ps(x + 8), d = _mm_loadu_ps(x + 12);
            float t[4];
            int k;
            for (i = 16; i + 16 <= m; i += 16) {
                a = _mm_max_ps(_mm_loadu_ps(x + i), a);
                b = _mm_max_ps(_mm_loadu_ps(x + i + 4), b);
                c = _mm_max_ps(_mm_loadu_ps(x + i + 8), c);
                d = _mm_max_ps(_mm_loadu_ps(x + i + 12), d);
            }
            _mm_storeu_ps(t, _mm_max_ps(_mm_max_ps(a, b), _mm_max_ps(c, d)));
            top = t[0];
            for (k = 1; k < 4; k++)
                top = t[k] > top ? t[k] : top;
        }
    #endif
        for (; i < m; i++)
            top = x[i] > top ? x[i] : top;
        return top;
    }
    static inline double fg_row_max_f64(const double* x, Py_ssize_t m) {
        Py_ssize_t i = 1;
        double top = x[0];
    #ifdef FG_MAX_SSE2
        if (m >= 8) {
            __m128d a = _mm_loadu_pd(x), b = _mm_loadu_pd(x + 2);
            __m128d c = _mm_loadu_pd(x + 4), d = _mm_loadu_pd(x + 6);
            double t[2];
            for (i = 8; i + 8 <= m; i += 8) {
                a = _mm_max_pd(_mm_loadu_pd(x + i), a);
                b = _mm_max_pd(_mm_loadu_pd(x + i + 2), b);
                c = _mm_max_pd(_mm_loadu_pd(x + i + 4), c);
                d = _mm_max_pd(_mm_loadu_pd(x + i + 6), d);
            }
            _mm_storeu_pd(t, _mm_max_pd(_mm_max_pd(a, b), _mm_max_pd(c, d)));
            top = t[1] > t[0] ? t[1] : t[0];
        }
    #endif
        for (; i < m; i++)
            top = x[i] > top ? x[i] : top;
        return top;
    }
    """
    float fg_row_max_f32(const float* x, Py_ssize_t m) noexcept nogil
    double fg_row_max_f64(const double* x, Py_ssize_t m) noexcept nogil


cdef inline floating _row_max(const floating* x, Py_ssize_t m) noexcept nogil:
    if floating is double:
        return fg_row_max_f64(x, m)
    else:
        return fg_row_max_f32(x, m)


cdef void _sm_row(bint log, const floating* x, floating* y, floating* p, Py_ssize_t m,
                  floating* t, int dt) noexcept nogil:
    """y[:m] = softmax (log: log_softmax) of the contiguous row x[:m], m > 0; t: a
    scratch chunk of UL_CHUNK items.  log_softmax: p (may be NULL) gets the softmax too,
    for the backward (exp(o) without a second exp)."""
    cdef Py_ssize_t i, j, k
    cdef floating top = _row_max(x, m)
    cdef floating s = 0, ls
    cdef floating* e
    for i in range(m):
        y[i] = x[i] - top
    if log:
        for j in range(0, m, 512):
            k = m - j if m - j < UL_CHUNK else UL_CHUNK
            e = p + j if p != NULL else t
            _exp_into(y + j, e, k, dt)
            s = s + _pairwise(e, k)
        ls = <floating>c_log(s)
        for i in range(m):
            y[i] = y[i] - ls
        if p != NULL:
            ls = 1 / s
            for i in range(m):
                p[i] = p[i] * ls
    else:
        _exp_into(y, y, m, dt)
        s = 1 / _pairwise(y, m)         # one division: a multiply per element is faster
        for i in range(m):
            y[i] = y[i] * s


cdef void _sm_rows_small(bint log, const floating* x, floating* y, floating* p, Py_ssize_t n,
                         Py_ssize_t m, int dt) noexcept nogil:
    """_sm_row over n contiguous rows of m with one exp call for them all: on a small
    tensor the calls cost more than the exps.  log_softmax needs p (its softmax)."""
    cdef Py_ssize_t r, i
    cdef floating top, s, ls
    cdef floating* e = p if log else y
    cdef const floating* xr
    cdef floating* yr
    cdef floating* er
    for r in range(n):
        xr = x + r * m
        yr = y + r * m
        top = _row_max(xr, m)
        for i in range(m):
            yr[i] = xr[i] - top
    _exp_into(y, e, n * m, dt)
    for r in range(n):
        yr = y + r * m
        er = e + r * m
        s = _pairwise(er, m)
        if log:
            ls = <floating>c_log(s)
            for i in range(m):
                yr[i] = yr[i] - ls
        s = 1 / s
        for i in range(m):
            er[i] = er[i] * s


cdef void _sm_row_backward(bint log, const floating* g, const floating* o, const floating* p,
                           floating* ga, Py_ssize_t m, bint write, floating* t,
                           int dt) noexcept nogil:
    """ga[:m] (= if write, else +=) the gradient of one contiguous row from its output o:
    softmax o * (g - sum(g * o)), log_softmax g - exp(o) * sum(g) (exp(o): p if saved)."""
    cdef Py_ssize_t i, j, k
    cdef floating d = 0
    cdef const floating* e
    if log:
        d = _pairwise(g, m)
        for j in range(0, m, 512):
            k = m - j if m - j < UL_CHUNK else UL_CHUNK
            if p != NULL:
                e = p + j
            else:
                _exp_into(o + j, t, k, dt)
                e = t
            if write:
                for i in range(k):
                    ga[j + i] = g[j + i] - e[i] * d
            else:
                for i in range(k):
                    ga[j + i] += g[j + i] - e[i] * d
    else:
        for j in range(0, m, 512):
            k = m - j if m - j < UL_CHUNK else UL_CHUNK
            for i in range(k):
                t[i] = g[j + i] * o[j + i]
            d = d + _pairwise(t, k)
        if write:
            for i in range(m):
                ga[i] = o[i] * (g[i] - d)
        else:
            for i in range(m):
                ga[i] += o[i] * (g[i] - d)


cdef void _sm_block(bint log, const floating* x, floating* y, Py_ssize_t m, Py_ssize_t n,
                    floating* top, floating* s, floating* t, int dt) noexcept nogil:
    """y (m, n) = softmax / log_softmax of x (m, n) down its columns, n > 1, m > 0;
    top and s: scratch of n items, t: a chunk of UL_CHUNK."""
    cdef Py_ssize_t i, j, c, k
    cdef const floating* xr
    cdef floating* yr
    memcpy(top, x, n * sizeof(floating))
    for j in range(1, m):
        xr = x + j * n
        if _ul_has(UL_MAXIMUM, dt):
            _ul_binary(UL_MAXIMUM, dt, <char*>top, sizeof(floating), <char*>xr,
                       sizeof(floating), <char*>top, n)
        else:
            for i in range(n):
                if xr[i] > top[i] or xr[i] != xr[i]:
                    top[i] = xr[i]
    for j in range(m):
        xr = x + j * n
        yr = y + j * n
        for i in range(n):
            yr[i] = xr[i] - top[i]
    memset(s, 0, n * sizeof(floating))
    if log:
        for j in range(m):
            yr = y + j * n
            for c in range(0, n, 512):
                k = n - c if n - c < UL_CHUNK else UL_CHUNK
                _exp_into(yr + c, t, k, dt)
                for i in range(k):
                    s[c + i] += t[i]
        for i in range(n):
            s[i] = <floating>c_log(s[i])
        for j in range(m):
            yr = y + j * n
            for i in range(n):
                yr[i] = yr[i] - s[i]
    else:
        _exp_into(y, y, m * n, dt)
        for j in range(m):
            yr = y + j * n
            for i in range(n):
                s[i] += yr[i]
        for i in range(n):
            s[i] = 1 / s[i]
        for j in range(m):
            yr = y + j * n
            for i in range(n):
                yr[i] = yr[i] * s[i]


cdef void _sm_block_backward(bint log, const floating* g, const floating* o, floating* ga,
                             Py_ssize_t m, Py_ssize_t n, bint write, floating* d, floating* t,
                             int dt) noexcept nogil:
    """The gradient of one (m, n) block down its columns; d: scratch of n items."""
    cdef Py_ssize_t i, j, c, k
    cdef const floating* gr
    cdef const floating* orow
    cdef floating* ar
    memset(d, 0, n * sizeof(floating))
    for j in range(m):
        gr = g + j * n
        orow = o + j * n
        if log:
            for i in range(n):
                d[i] += gr[i]
        else:
            for i in range(n):
                d[i] += gr[i] * orow[i]
    for j in range(m):
        gr = g + j * n
        orow = o + j * n
        ar = ga + j * n
        if log:
            for c in range(0, n, 512):
                k = n - c if n - c < UL_CHUNK else UL_CHUNK
                _exp_into(orow + c, t, k, dt)
                if write:
                    for i in range(k):
                        ar[c + i] = gr[c + i] - t[i] * d[c + i]
                else:
                    for i in range(k):
                        ar[c + i] += gr[c + i] - t[i] * d[c + i]
        elif write:
            for i in range(n):
                ar[i] = orow[i] * (gr[i] - d[i])
        else:
            for i in range(n):
                ar[i] += orow[i] * (gr[i] - d[i])


# Up to this many elements, rows along the last axis share one exp call (_sm_rows_small).
cdef enum:
    SM_SMALL = 16384


cdef void _sm_geometry(tuple shape, int axis, Py_ssize_t* outer, Py_ssize_t* m,
                       Py_ssize_t* inner) noexcept:
    """shape as (outer, m, inner) around `axis` (-1: a 0-d tensor, one row of one)."""
    cdef Py_ssize_t d
    outer[0] = 1
    m[0] = 1
    inner[0] = 1
    if axis < 0:
        return
    for d in range(len(shape)):
        if d < axis:
            outer[0] *= <Py_ssize_t>shape[d]
        elif d == axis:
            m[0] = <Py_ssize_t>shape[d]
        else:
            inner[0] *= <Py_ssize_t>shape[d]


cdef int _sm_run(bint log, bint backward, int dt, const char* x, char* y, const char* g,
                 char* p, bint write, Py_ssize_t outer, Py_ssize_t m,
                 Py_ssize_t inner) except -1:
    """Forward: y = op(x).  Backward: y (= or +=) the gradient from g and the output x.
    p: log_softmax's saved softmax (rows along the last axis only; else NULL)."""
    cdef double t[UL_CHUNK]
    cdef char* scratch = NULL
    cdef Py_ssize_t r, step = m * inner * ITEMSIZE[dt]
    if outer * m * inner == 0:
        return 0
    if inner == 1 and not backward and outer > 1 and outer * m <= SM_SMALL:
        if log and p == NULL:                   # log_softmax's softmax, thrown away after
            scratch = <char*>_mem_alloc(outer * m * ITEMSIZE[dt])
            if scratch == NULL:
                raise MemoryError()
            p = scratch
        if dt == DT_F64:
            _sm_rows_small(log, <double*>x, <double*>y, <double*>p, outer, m, DT_F64)
        else:
            _sm_rows_small(log, <float*>x, <float*>y, <float*>p, outer, m, DT_F32)
        _mem_free(scratch)
        return 0
    if inner == 1:
        for r in range(outer):
            if dt == DT_F64:
                if backward:
                    _sm_row_backward(log, <double*>(g + r * step), <double*>(x + r * step),
                                     <double*>(p + r * step) if p != NULL else NULL,
                                     <double*>(y + r * step), m, write, <double*>t, DT_F64)
                else:
                    _sm_row(log, <double*>(x + r * step), <double*>(y + r * step),
                            <double*>(p + r * step) if p != NULL else NULL, m,
                            <double*>t, DT_F64)
            else:
                if backward:
                    _sm_row_backward(log, <float*>(g + r * step), <float*>(x + r * step),
                                     <float*>(p + r * step) if p != NULL else NULL,
                                     <float*>(y + r * step), m, write, <float*>t, DT_F32)
                else:
                    _sm_row(log, <float*>(x + r * step), <float*>(y + r * step),
                            <float*>(p + r * step) if p != NULL else NULL, m,
                            <float*>t, DT_F32)
        return 0
    scratch = <char*>_mem_alloc(2 * inner * ITEMSIZE[dt])
    if scratch == NULL:
        raise MemoryError()
    for r in range(outer):
        if dt == DT_F64:
            if backward:
                _sm_block_backward(log, <double*>(g + r * step), <double*>(x + r * step),
                                   <double*>(y + r * step), m, inner, write,
                                   <double*>scratch, <double*>t, DT_F64)
            else:
                _sm_block(log, <double*>(x + r * step), <double*>(y + r * step), m, inner,
                          <double*>scratch, (<double*>scratch) + inner, <double*>t, DT_F64)
        else:
            if backward:
                _sm_block_backward(log, <float*>(g + r * step), <float*>(x + r * step),
                                   <float*>(y + r * step), m, inner, write,
                                   <float*>scratch, <float*>t, DT_F32)
            else:
                _sm_block(log, <float*>(x + r * step), <float*>(y + r * step), m, inner,
                          <float*>scratch, (<float*>scratch) + inner, <float*>t, DT_F32)
    _mem_free(scratch)
    return 0


cdef object _softmax_native(int op, TensorBase a, object axis):
    """softmax / log_softmax of a (contiguous float) along axis (None: 0-d), as a node.
    A log_softmax node over rows along the last axis keeps their softmax in its `_saved`
    block (freed with the node or when backward releases the graph): its backward then
    needs no exp."""
    cdef Py_ssize_t outer, m, inner
    cdef int ax = -1 if axis is None else <int>axis
    cdef TensorBase out = _alloc(a._shape, a._size, a._dt)
    cdef bint record = fg_grad_enabled() and (a._requires_grad or fg_keeps_values())
    _sm_geometry(a._shape, ax, &outer, &m, &inner)
    if record and op == LOG_SOFTMAX and inner == 1 and a._size:
        out._saved = <char*>_mem_alloc(a._size * ITEMSIZE[a._dt])
        if out._saved == NULL:
            raise MemoryError()
    _sm_run(op == LOG_SOFTMAX, False, a._dt, a._data, out._data, NULL, out._saved, False,
            outer, m, inner)
    if record:
        _record(out, op, a, None, None)
        out._c = ax
        out._requires_grad = a._requires_grad
    return out


cdef int _softmax_check(TensorBase node) except -1:
    """The node's own values still have its input's shape and dtype, contiguous."""
    cdef TensorBase a = node._a
    if node._data == NULL or node._dt != a._dt or node._shape != a._shape:
        raise RuntimeError("backward: the values of '%s' were replaced through .data by an "
                           "array of another shape, dtype or layout" % _op_name(node))
    return 0


cdef int _softmax_replay(TensorBase node) except -1:
    """The replay rule of a native softmax / log_softmax node (NATIVE_REPLAY's row)."""
    cdef Py_ssize_t outer, m, inner
    cdef TensorBase a = node._a
    _softmax_check(node)
    _sm_geometry(a._shape, <int>node._c, &outer, &m, &inner)
    _sm_run(node._op == LOG_SOFTMAX, False, a._dt, a._data, node._data, NULL,
            node._saved if inner == 1 else NULL, False, outer, m, inner)
    return 0


cdef int _softmax_backward(TensorBase node) except -1:
    """The backward rule of a native softmax / log_softmax node: it reads only its output
    (and log_softmax's saved softmax)."""
    cdef Py_ssize_t outer, m, inner
    cdef TensorBase a = node._a
    cdef bint fresh = False
    cdef char* ga
    _softmax_check(node)
    _sm_geometry(a._shape, <int>node._c, &outer, &m, &inner)
    ga = _grad_buffer_raw(a, &fresh)
    _sm_run(node._op == LOG_SOFTMAX, True, a._dt, node._data, ga, node._g,
            node._saved if inner == 1 else NULL, fresh, outer, m, inner)
    return 0


# -- cross entropy's rows ------------------------------------------------------

cdef double _ce_row(const floating* z, Py_ssize_t target, floating* p, Py_ssize_t c,
                    floating* t, int dt) noexcept nogil:
    """-log_softmax(z[:c])[target]; p (c items, may be NULL) gets softmax(z) for the
    backward; t: a scratch chunk of UL_CHUNK items."""
    cdef Py_ssize_t i, j, k
    cdef floating top = _row_max(z, c)
    cdef floating s = 0, ls
    if p != NULL:
        for i in range(c):
            p[i] = z[i] - top
        _exp_into(p, p, c, dt)
        s = _pairwise(p, c)
        ls = 1 / s
        for i in range(c):
            p[i] = p[i] * ls
    else:
        for j in range(0, c, 512):
            k = c - j if c - j < UL_CHUNK else UL_CHUNK
            for i in range(k):
                t[i] = z[j + i] - top
            _exp_into(t, t, k, dt)
            s = s + _pairwise(t, k)
    return c_log(s) - (<double>z[target] - top)
