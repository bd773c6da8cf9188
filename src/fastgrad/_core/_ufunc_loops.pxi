# NumPy's inner loops, called straight from the kernels (included by _tape.pyx)
# ---------------------------------------------------------------------------
# A ufunc call spends ~0.5-1 us in dispatch before it touches data, which is
# why small tensors used libm's scalar exp/log/... here.  But under the
# dispatch every float ufunc is a plain C function of (args, dims, steps,
# data), and NumPy picks the SIMD version for this CPU (AVX2/AVX-512 exp, log,
# sin, cos, tanh, power) when it builds the ufunc.  Looked up once at import,
# that function runs at every size with no Python call: measured 16 ns for 4
# float32 exps (libm 25 ns), 33 us for 65536 (libm 380 us, np.exp 39 us).  The
# values are those of the reference core's np.exp, bit for bit.
#
# The loops are found in the ufunc's public loop table (PyUFuncObject's
# functions/data/types, the first entry whose types are all float32 or all
# float64, the one NumPy itself resolves to) and checked against the ufunc on
# a probe array at import; a loop that is missing or disagrees stays NULL
# and the kernels fall back to their libm loops.

cnp.import_ufunc()

cdef enum:
    UL_EXP = 0
    UL_LOG = 1
    UL_SIN = 2
    UL_COS = 3
    UL_TANH = 4
    UL_POWER = 5
    UL_MAXIMUM = 6
    UL_MINIMUM = 7
    UL_COUNT = 8

# Elements per chunk when a kernel needs scratch space beside its output: on
# the stack, so it stays in L1 and needs no allocation (4 KB of doubles).
# The chunked loops step by the literal 512 (Cython makes a C loop only of a
# literal step): keep them equal.
cdef enum:
    UL_CHUNK = 512

# NumPy's loop type, declared callable without the GIL (the loops never need it)
ctypedef void (*_ul_loop)(char**, cnp.npy_intp*, cnp.npy_intp*, void*) noexcept nogil

cdef _ul_loop _ul_fn[UL_COUNT][2]
cdef void* _ul_data[UL_COUNT][2]


cdef int _ul_find(int slot, object ufunc) except -1:
    """Look up ufunc's float32 and float64 loops; keep them only if they agree with ufunc."""
    cdef cnp.ufunc f = ufunc
    cdef int i, j, k, typenum
    cdef bint match
    for k in range(2):
        _ul_fn[slot][k] = NULL
        _ul_data[slot][k] = NULL
        typenum = TYPENUM[k]
        for i in range(f.ntypes):
            match = True
            for j in range(f.nargs):
                if f.types[i * f.nargs + j] != typenum:
                    match = False
                    break
            if match:
                _ul_fn[slot][k] = <_ul_loop>f.functions[i]
                _ul_data[slot][k] = f.data[i]
                break
        if _ul_fn[slot][k] == NULL:
            continue
        # The probe: odd sizes and a value of every kind (the loops have
        # separate SIMD bodies and tails).
        probe = np.array([0.5, -1.25, 3.0, 0.0, -0.0, 2.0, np.inf, -np.inf, np.nan, 1e-3, 7.5],
                         dtype=_DTYPES[k])
        with np.errstate(all="ignore"):
            want = ufunc(probe, probe) if f.nin == 2 else ufunc(probe)
            got = np.empty_like(probe)
            if f.nin == 2:
                _ul_binary(slot, k, <char*>cnp.PyArray_DATA(probe), ITEMSIZE[k],
                           <char*>cnp.PyArray_DATA(probe), ITEMSIZE[k],
                           <char*>cnp.PyArray_DATA(got), len(probe))
            else:
                _ul_unary(slot, k, <char*>cnp.PyArray_DATA(probe), <char*>cnp.PyArray_DATA(got),
                          len(probe))
        if not np.array_equal(want, got, equal_nan=True):
            _ul_fn[slot][k] = NULL
    return 0


cdef inline bint _ul_has(int slot, int dt) noexcept nogil:
    return dt != DT_OTHER and _ul_fn[slot][dt] != NULL


cdef inline void _ul_unary(int slot, int dt, const char* x, char* y,
                           Py_ssize_t n) noexcept nogil:
    """y[:n] = ufunc(x[:n]) (contiguous; y may be x)."""
    cdef char* args[2]
    cdef cnp.npy_intp dims[1]
    cdef cnp.npy_intp steps[2]
    if n <= 0:
        return
    args[0] = <char*>x
    args[1] = y
    dims[0] = n
    steps[0] = ITEMSIZE[dt]
    steps[1] = ITEMSIZE[dt]
    _ul_fn[slot][dt](args, dims, steps, _ul_data[slot][dt])


cdef inline void _ul_binary(int slot, int dt, const char* a, Py_ssize_t sa, const char* b,
                            Py_ssize_t sb, char* y, Py_ssize_t n) noexcept nogil:
    """y[i] = ufunc(a[i * sa], b[i * sb]) (byte strides; 0 repeats one value)."""
    cdef char* args[3]
    cdef cnp.npy_intp dims[1]
    cdef cnp.npy_intp steps[3]
    if n <= 0:
        return
    args[0] = <char*>a
    args[1] = <char*>b
    args[2] = y
    dims[0] = n
    steps[0] = sa
    steps[1] = sb
    steps[2] = ITEMSIZE[dt]
    _ul_fn[slot][dt](args, dims, steps, _ul_data[slot][dt])


cdef inline void _ul_reduce(int slot, int dt, const char* x, char* acc,
                            Py_ssize_t n) noexcept nogil:
    """acc[0] = ufunc(... ufunc(acc[0], x[0]) ..., x[n-1]): NumPy's reduce form of a
    binary loop (output and first input the same cell, stride 0), SIMD for max / min."""
    cdef char* args[3]
    cdef cnp.npy_intp dims[1]
    cdef cnp.npy_intp steps[3]
    if n <= 0:
        return
    args[0] = acc
    args[1] = <char*>x
    args[2] = acc
    dims[0] = n
    steps[0] = 0
    steps[1] = ITEMSIZE[dt]
    steps[2] = 0
    _ul_fn[slot][dt](args, dims, steps, _ul_data[slot][dt])


_ul_find(UL_EXP, np.exp)
_ul_find(UL_LOG, np.log)
_ul_find(UL_SIN, np.sin)
_ul_find(UL_COS, np.cos)
_ul_find(UL_TANH, np.tanh)
_ul_find(UL_POWER, np.power)
_ul_find(UL_MAXIMUM, np.maximum)
_ul_find(UL_MINIMUM, np.minimum)


# -- argmax / argmin of a row ---------------------------------------------------
# Under np.argmax is each dtype's own argmax function (its ArrFuncs; SIMD for
# float32 and float64): the first index of the largest element, a NaN counting
# as the largest (the first NaN), which is torch.max(x, dim)'s index.  Looked
# up once and checked on a probe (NaN, ties, -0.0 against 0.0); NULL: the
# kernels' own scan.

ctypedef int (*_ul_arg)(void*, cnp.npy_intp, cnp.npy_intp*, void*) noexcept nogil

cdef extern from *:
    """
    static void* fg_arg_function(PyObject* descr, int is_max) {
        PyArray_ArrFuncs* f = PyDataType_GetArrFuncs((PyArray_Descr*)descr);
        if (f == NULL) return NULL;
        return is_max ? (void*)f->argmax : (void*)f->argmin;
    }
    """
    void* fg_arg_function(object descr, int is_max)

cdef _ul_arg _ul_arg_fn[2][2]         # [is_max][dt]


cdef int _ul_find_arg() except -1:
    cdef int k, is_max
    cdef cnp.npy_intp got
    cdef cnp.ndarray probe
    for k in range(2):
        for is_max in range(2):
            _ul_arg_fn[is_max][k] = <_ul_arg>fg_arg_function(_DTYPES[k], is_max)
            if _ul_arg_fn[is_max][k] == NULL:
                continue
            pick = np.argmax if is_max else np.argmin
            for values in ([-0.0, 0.0, 1.0, 1.0, -1.0, -1.0], [0.0, -0.0, 2.0, 2.0, -3.0],
                           [1.0, float("nan"), 3.0, float("nan")], [float("nan")],
                           list(np.linspace(-1, 1, 37)) + [1.0, -1.0] * 20):
                probe = np.ascontiguousarray(values, dtype=_DTYPES[k])
                got = -1
                _ul_arg_fn[is_max][k](cnp.PyArray_DATA(probe), probe.size, &got, NULL)
                if got != pick(probe):
                    _ul_arg_fn[is_max][k] = NULL
                    break
    return 0


_ul_find_arg()


def _ufunc_loops():
    """Which NumPy inner loops the kernels call directly ({name: (float32, float64)}, for tests)."""
    names = ("exp", "log", "sin", "cos", "tanh", "power", "maximum", "minimum")
    found = {names[i]: (_ul_fn[i][0] != NULL, _ul_fn[i][1] != NULL) for i in range(UL_COUNT)}
    found["argmax"] = (_ul_arg_fn[1][0] != NULL, _ul_arg_fn[1][1] != NULL)
    found["argmin"] = (_ul_arg_fn[0][0] != NULL, _ul_arg_fn[0][1] != NULL)
    return found


# -- the unary ops on those loops ---------------------------------------------

cdef inline int _ul_slot(int op) noexcept nogil:
    if op == EXP:
        return UL_EXP
    if op == LOG:
        return UL_LOG
    if op == SIN:
        return UL_SIN
    if op == COS:
        return UL_COS
    if op == TANH:
        return UL_TANH
    return -1


cdef void _sigmoid_chunk(const floating* x, floating* y, floating* e, Py_ssize_t n,
                         int dt) noexcept nogil:
    # reference.sigmoid_forward's formula on NumPy's exp: the same values.
    # x is read again after the exp (its sign), so e is scratch: x may be y.
    # One division of a selected numerator, in the element type: a branch
    # per element mispredicts on random signs, and two divisions under a
    # condition are not merged into one vector loop (they may trap).
    cdef Py_ssize_t i
    cdef floating one = 1
    for i in range(n):
        e[i] = -fabs(x[i])
    _ul_unary(UL_EXP, dt, <char*>e, <char*>e, n)
    for i in range(n):
        y[i] = (one if x[i] >= 0 else e[i]) / (one + e[i])


cdef bint _unary_loop(int op, TensorBase a, TensorBase out) noexcept:
    """out = op(a) through NumPy's inner loop, if op has one here; False: not handled."""
    cdef int slot = _ul_slot(op)
    cdef Py_ssize_t i, m
    cdef double scratch[UL_CHUNK]
    if slot >= 0:
        if not _ul_has(slot, a._dt):
            return False
        _ul_unary(slot, a._dt, a._data, out._data, a._size)
        return True
    if op == SQRT:
        # the C loop vectorizes (sqrt is one instruction): no ufunc call at any size
        if a._dt == DT_F64:
            unary_kernel(op, FORWARD, <double*>NULL, <double*>a._data, <double*>out._data,
                         <double*>NULL, a._size, 0, 0)
        else:
            unary_kernel(op, FORWARD, <float*>NULL, <float*>a._data, <float*>out._data,
                         <float*>NULL, a._size, 0, 0)
        return True
    if op == SIGMOID and a._dt == DT_F64 and _ul_has(UL_EXP, a._dt):   # float32: unary_kernel
        # in chunks: out may be a (an elided temporary), whose signs are read after exp
        for i in range(0, a._size, 512):
            m = a._size - i if a._size - i < UL_CHUNK else UL_CHUNK
            if a._dt == DT_F64:
                _sigmoid_chunk((<double*>a._data) + i, (<double*>out._data) + i,
                               <double*>scratch, m, DT_F64)
            else:
                _sigmoid_chunk((<float*>a._data) + i, (<float*>out._data) + i,
                               <float*>scratch, m, DT_F32)
        return True
    return False


cdef void _trig_grad_chunk(int op, const floating* g, const floating* x, floating* gx,
                           floating* t, Py_ssize_t n, bint write, int dt) noexcept nogil:
    # sin' = cos, cos' = -sin: the derivative from NumPy's loop, then one
    # vectorized pass (gx may be g: the in-place first gradient)
    cdef Py_ssize_t i
    _ul_unary(UL_COS if op == SIN else UL_SIN, dt, <char*>x, <char*>t, n)
    if op == SIN:
        if write:
            for i in range(n):
                gx[i] = g[i] * t[i]
        else:
            for i in range(n):
                gx[i] += g[i] * t[i]
    else:
        if write:
            for i in range(n):
                gx[i] = -(g[i] * t[i])
        else:
            for i in range(n):
                gx[i] += -(g[i] * t[i])


cdef bint _unary_backward_loop(int op, TensorBase a, char* g, char* ga, bint write) noexcept:
    """ga (= or +=) g * op'(a) for sin/cos through NumPy's loops; False: not handled."""
    cdef Py_ssize_t i, m
    cdef double scratch[UL_CHUNK]
    if not ((op == SIN and _ul_has(UL_COS, a._dt)) or (op == COS and _ul_has(UL_SIN, a._dt))):
        return False
    for i in range(0, a._size, 512):
        m = a._size - i if a._size - i < UL_CHUNK else UL_CHUNK
        if a._dt == DT_F64:
            _trig_grad_chunk(op, (<double*>g) + i, (<double*>a._data) + i, (<double*>ga) + i,
                             <double*>scratch, m, write, DT_F64)
        else:
            _trig_grad_chunk(op, (<float*>g) + i, (<float*>a._data) + i, (<float*>ga) + i,
                             <float*>scratch, m, write, DT_F32)
    return True
