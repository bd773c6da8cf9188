# The compiled core's loop drivers (included by _tape.pyx).
#
# ---------------------------------------------------------------------------
# Loop drivers: written once, instantiated per op
# ---------------------------------------------------------------------------
# A native elementwise op is one block in _tape.pyx: its forward and its
# derivative as inline functions of one element, side by side
# (`exp_forward(x, p, q)`, `exp_backward(g, x, y, p, q)`; a binary op has
# `<op>_forward(a, b, one)`, `<op>_backward_a(...)`, `<op>_backward_b(...)`).
# The loops over the elements live here, once for every op:
#
#   _unary_rule / _binary_rule    an op's tag type -> its element kernels: the
#                                 native twin of reference.FORWARD / BACKWARD
#   _unary_loops / _binary_loops  one loop per role: forward, accumulate the
#                                 gradient, or write it over the incoming one
#   unary_kernel / binary_kernel  the entry: the op code -> its loops
#   unary_run / binary_run        the same over raw buffers of either float type
#
# Each op has a tag type (an empty struct) in the fused types `unary_op` and
# `binary_op`, so Cython writes the loops once per op: every specialisation
# holds only that op's kernels, each loop as simple as if it were written out
# by hand.  A run-time op code does not do that: gcc -O3 does not unswitch a
# switch on it out of the loop (measured: no loop of such a driver vectorizes),
# and inlining a driver per constant op code stopped at the compiler's growth
# limits (relu's backward 60x slower).  The strides are literals for the same
# reason: one loop with run-time strides did not vectorize and ran 2.3x slower
# than NumPy on 4096 elements.  A binary operand's stride is 1 (a tensor of
# the result's shape) or 0 (a Python number or a size-1 tensor).
#
# Broadcasting of any other shape (strided N-d loops) goes in _broadcast.pxi,
# included after this file; it reuses the element kernels through
# `_binary_rule` and an op's tag.

ctypedef fused floating:
    float
    double


cdef enum:
    # What a loop computes (the role passed down to the rule).
    FORWARD = 0         # y = f(x) / y = f(a, b)
    BACKWARD = 1        # gx (+)= g * dy/dx, gx a separate buffer
    BACKWARD_OVER = 2   # g = g * dy/dx over the incoming gradient itself (a's first gradient)
    # Which derivative of a binary op.
    WRT_A = 1
    WRT_B = 2


cdef inline void _put(floating* p, floating v, bint write) noexcept nogil:
    # `write` is loop-invariant: gcc -O3 unswitches it out of the loops below.
    if write:
        p[0] = v
    else:
        p[0] += v


# -- unary elementwise ops --------------------------------------------------

# One tag type per op: `unary_op` makes Cython write _unary_loops once per op
# (and per float type), each specialisation holding only that op's kernels.
cdef struct NegOp:
    char unused
cdef struct ExpOp:
    char unused
cdef struct LogOp:
    char unused
cdef struct SqrtOp:
    char unused
cdef struct AbsOp:
    char unused
cdef struct SinOp:
    char unused
cdef struct CosOp:
    char unused
cdef struct TanhOp:
    char unused
cdef struct SigmoidOp:
    char unused
cdef struct ReluOp:
    char unused
cdef struct LeakyReluOp:
    char unused
cdef struct ClipOp:
    char unused
cdef struct GeluOp:
    char unused
cdef struct SiluOp:
    char unused


ctypedef fused unary_op:
    NegOp
    ExpOp
    LogOp
    SqrtOp
    AbsOp
    SinOp
    CosOp
    TanhOp
    SigmoidOp
    ReluOp
    LeakyReluOp
    ClipOp
    GeluOp
    SiluOp


cdef inline floating _unary_rule(unary_op* op, bint fwd, floating g, floating x, floating y,
                                 double p, double q) noexcept nogil:
    """The element kernels of each native unary op (resolved when Cython compiles)."""
    if unary_op is NegOp:
        return neg_forward(x, p, q) if fwd else neg_backward(g, x, y, p, q)
    elif unary_op is ExpOp:
        return exp_forward(x, p, q) if fwd else exp_backward(g, x, y, p, q)
    elif unary_op is LogOp:
        return log_forward(x, p, q) if fwd else log_backward(g, x, y, p, q)
    elif unary_op is SqrtOp:
        return sqrt_forward(x, p, q) if fwd else sqrt_backward(g, x, y, p, q)
    elif unary_op is AbsOp:
        return abs_forward(x, p, q) if fwd else abs_backward(g, x, y, p, q)
    elif unary_op is SinOp:
        return sin_forward(x, p, q) if fwd else sin_backward(g, x, y, p, q)
    elif unary_op is CosOp:
        return cos_forward(x, p, q) if fwd else cos_backward(g, x, y, p, q)
    elif unary_op is TanhOp:
        return tanh_forward(x, p, q) if fwd else tanh_backward(g, x, y, p, q)
    elif unary_op is SigmoidOp:
        return sigmoid_forward(x, p, q) if fwd else sigmoid_backward(g, x, y, p, q)
    elif unary_op is ReluOp:
        return relu_forward(x, p, q) if fwd else relu_backward(g, x, y, p, q)
    elif unary_op is LeakyReluOp:
        return leaky_relu_forward(x, p, q) if fwd else leaky_relu_backward(g, x, y, p, q)
    elif unary_op is ClipOp:
        return clip_forward(x, p, q) if fwd else clip_backward(g, x, y, p, q)
    elif unary_op is GeluOp:
        return gelu_forward(x, p, q) if fwd else gelu_backward(g, x, y, p, q)
    elif unary_op is SiluOp:
        return silu_forward(x, p, q) if fwd else silu_backward(g, x, y, p, q)


cdef void _unary_loops(unary_op* op, int role, const floating* g, const floating* x, floating* y,
                       floating* gx, Py_ssize_t n, double p, double q) noexcept nogil:
    cdef Py_ssize_t i
    if role == FORWARD:
        for i in range(n):
            y[i] = _unary_rule(op, True, 0, x[i], 0, p, q)
    elif role == BACKWARD:
        for i in range(n):
            gx[i] += _unary_rule(op, False, g[i], x[i], y[i], p, q)
    else:
        # One pointer for the gradient read and the one written: with two
        # pointers to one buffer the compiler's overlap check sends the loop
        # down its scalar path, where a data-dependent select (relu on random
        # signs) mispredicts every other element (measured: 1024 x 512 float32
        # relu backward 2.6 ms; vectorized, as here, 0.2 ms).
        if gx != g:
            memcpy(gx, g, n * sizeof(floating))
        for i in range(n):
            gx[i] = _unary_rule(op, False, gx[i], x[i], y[i], p, q)


cdef void unary_kernel(int op, int role, const floating* g, const floating* x, floating* y,
                       floating* gx, Py_ssize_t n, double p, double q) noexcept nogil:
    """FORWARD: y = f(x); BACKWARD: gx += g * f'(x); BACKWARD_OVER: gx = g * f'(x) (a
    fresh buffer, usually g's own).  y is the op's output in all three (backward reads it)."""
    if op == NEG:
        _unary_loops(<NegOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == EXP:
        _unary_loops(<ExpOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == LOG:
        _unary_loops(<LogOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == SQRT:
        _unary_loops(<SqrtOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == ABS:
        _unary_loops(<AbsOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == SIN:
        _unary_loops(<SinOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == COS:
        _unary_loops(<CosOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == TANH:
        _unary_loops(<TanhOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == SIGMOID:
        if floating is float:       # the silu block's loops (AVX2 / AVX-512 where the CPU has them)
            fg_sigmoid_f32(x, g, y, y if role == FORWARD else gx, n,
                           0 if role == FORWARD else 1 if role == BACKWARD else 2)
        else:
            _unary_loops(<SigmoidOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == RELU:
        _unary_loops(<ReluOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == LEAKY_RELU:
        _unary_loops(<LeakyReluOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == CLIP:
        _unary_loops(<ClipOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == GELU:
        if floating is float:       # the op block's own loops (AVX2 / AVX-512 where the CPU has them)
            if role == FORWARD:
                fg_gelu_f32(x, NULL, y, n, 0)
            else:
                fg_gelu_f32(x, g, gx, n, 1 if role == BACKWARD else 2)
        else:
            _unary_loops(<GeluOp*>NULL, role, g, x, y, gx, n, p, q)
    elif op == SILU:
        if floating is float:
            if role == FORWARD:
                fg_silu_f32(x, NULL, y, n, 0)
            else:
                fg_silu_f32(x, g, gx, n, 1 if role == BACKWARD else 2)
        else:
            _unary_loops(<SiluOp*>NULL, role, g, x, y, gx, n, p, q)


cdef inline void unary_run(int op, int role, int dt, const char* g, const char* x, char* y,
                           char* gx, Py_ssize_t n, double p, double q) noexcept nogil:
    """unary_kernel over raw buffers of dtype dt."""
    if dt == DT_F64:
        unary_kernel(op, role, <const double*>g, <const double*>x, <double*>y, <double*>gx,
                     n, p, q)
    else:
        unary_kernel(op, role, <const float*>g, <const float*>x, <float*>y, <float*>gx,
                     n, p, q)


# -- binary elementwise ops -------------------------------------------------

cdef struct AddOp:
    char unused
cdef struct SubOp:
    char unused
cdef struct MulOp:
    char unused
cdef struct DivOp:
    char unused
cdef struct PowOp:
    char unused
cdef struct MaximumOp:
    char unused
cdef struct MinimumOp:
    char unused


ctypedef fused binary_op:
    AddOp
    SubOp
    MulOp
    DivOp
    PowOp
    MaximumOp
    MinimumOp


cdef inline floating _binary_rule(binary_op* op, int role, floating g, floating a, floating b,
                                  floating y, bint one) noexcept nogil:
    """The element kernels of each native binary op (resolved when Cython compiles).

    role FORWARD: the value; WRT_A / WRT_B: g times the derivative.  `one`:
    b is the same for every element (stride 0: pow's exponent rule).
    """
    if binary_op is AddOp:
        return add_forward(a, b, one) if role == FORWARD else \
            add_backward_a(g, a, b, y, one) if role == WRT_A else \
            add_backward_b(g, a, b, y, one)
    elif binary_op is SubOp:
        return sub_forward(a, b, one) if role == FORWARD else \
            sub_backward_a(g, a, b, y, one) if role == WRT_A else \
            sub_backward_b(g, a, b, y, one)
    elif binary_op is MulOp:
        return mul_forward(a, b, one) if role == FORWARD else \
            mul_backward_a(g, a, b, y, one) if role == WRT_A else \
            mul_backward_b(g, a, b, y, one)
    elif binary_op is DivOp:
        return div_forward(a, b, one) if role == FORWARD else \
            div_backward_a(g, a, b, y, one) if role == WRT_A else \
            div_backward_b(g, a, b, y, one)
    elif binary_op is PowOp:
        return pow_forward(a, b, one) if role == FORWARD else \
            pow_backward_a(g, a, b, y, one) if role == WRT_A else \
            pow_backward_b(g, a, b, y, one)
    elif binary_op is MaximumOp:
        return maximum_forward(a, b, one) if role == FORWARD else \
            maximum_backward_a(g, a, b, y, one) if role == WRT_A else \
            maximum_backward_b(g, a, b, y, one)
    elif binary_op is MinimumOp:
        return minimum_forward(a, b, one) if role == FORWARD else \
            minimum_backward_a(g, a, b, y, one) if role == WRT_A else \
            minimum_backward_b(g, a, b, y, one)


cdef inline void _binary_body(binary_op* op, int role, const floating* g, const floating* a,
                              Py_ssize_t sa, const floating* b, Py_ssize_t sb, floating* y,
                              floating* ga, floating* gb, Py_ssize_t n, bint wa,
                              bint wb) noexcept nogil:
    """A stride of 0 is a broadcast size-1 operand: its gradient sums over i.
    wa / wb: the buffer is fresh, so write (=) instead of adding (stride 1 only)."""
    cdef Py_ssize_t i
    if role == FORWARD:
        for i in range(n):
            y[i] = _binary_rule(op, FORWARD, 0, a[i * sa], b[i * sb], 0, sb == 0)
    elif role == BACKWARD:
        # one loop per input: each stays simple enough to vectorize
        if ga != NULL:
            for i in range(n):
                _put(&ga[i * sa], _binary_rule(op, WRT_A, g[i], a[i * sa], b[i * sb], y[i],
                                               sb == 0), wa)
        if gb != NULL:
            for i in range(n):
                _put(&gb[i * sb], _binary_rule(op, WRT_B, g[i], a[i * sa], b[i * sb], y[i],
                                               sb == 0), wb)
    else:
        # a's first gradient over the incoming one, ga being g (a's stride is 1);
        # one pointer read and written, as in _unary_loops
        for i in range(n):
            ga[i] = _binary_rule(op, WRT_A, ga[i], a[i * sa], b[i * sb], y[i], sb == 0)


cdef void _binary_loops(binary_op* op, int role, const floating* g, const floating* a,
                        Py_ssize_t sa, const floating* b, Py_ssize_t sb, floating* y,
                        floating* ga, floating* gb, Py_ssize_t n, bint wa, bint wb) noexcept nogil:
    # The same-shape and scalar-operand drivers: the four stride layouts as literals.
    if sa == 1 and sb == 1:
        _binary_body(op, role, g, a, 1, b, 1, y, ga, gb, n, wa, wb)
    elif sa == 1:
        _binary_body(op, role, g, a, 1, b, 0, y, ga, gb, n, wa, False)
    elif sb == 1:
        _binary_body(op, role, g, a, 0, b, 1, y, ga, gb, n, False, wb)
    else:
        _binary_body(op, role, g, a, 0, b, 0, y, ga, gb, n, False, False)


cdef void binary_kernel(int op, int role, const floating* g, const floating* a, Py_ssize_t sa,
                        const floating* b, Py_ssize_t sb, floating* y, floating* ga,
                        floating* gb, Py_ssize_t n, bint wa, bint wb) noexcept nogil:
    """FORWARD: y = f(a, b); BACKWARD: ga (+)= g * df/da, gb (+)= g * df/db (NULL skips
    an input); BACKWARD_OVER: ga = ga * df/da over the incoming gradient (sa == 1)."""
    if op == ADD:
        _binary_loops(<AddOp*>NULL, role, g, a, sa, b, sb, y, ga, gb, n, wa, wb)
    elif op == SUB:
        _binary_loops(<SubOp*>NULL, role, g, a, sa, b, sb, y, ga, gb, n, wa, wb)
    elif op == MUL:
        _binary_loops(<MulOp*>NULL, role, g, a, sa, b, sb, y, ga, gb, n, wa, wb)
    elif op == DIV:
        _binary_loops(<DivOp*>NULL, role, g, a, sa, b, sb, y, ga, gb, n, wa, wb)
    elif op == POW:
        _binary_loops(<PowOp*>NULL, role, g, a, sa, b, sb, y, ga, gb, n, wa, wb)
    elif op == MAXIMUM:
        _binary_loops(<MaximumOp*>NULL, role, g, a, sa, b, sb, y, ga, gb, n, wa, wb)
    elif op == MINIMUM:
        _binary_loops(<MinimumOp*>NULL, role, g, a, sa, b, sb, y, ga, gb, n, wa, wb)


cdef inline void binary_run(int op, int role, int dt, const char* g, const char* a,
                            Py_ssize_t sa, const char* b, Py_ssize_t sb, char* y, char* ga,
                            char* gb, Py_ssize_t n, bint wa, bint wb) noexcept nogil:
    """binary_kernel over raw buffers of dtype dt."""
    if dt == DT_F64:
        binary_kernel(op, role, <const double*>g, <const double*>a, sa, <const double*>b, sb,
                      <double*>y, <double*>ga, <double*>gb, n, wa, wb)
    else:
        binary_kernel(op, role, <const float*>g, <const float*>a, sa, <const float*>b, sb,
                      <float*>y, <float*>ga, <float*>gb, n, wa, wb)


# -- in-place accumulate ----------------------------------------------------

cdef void add_into(int dt, char* dst, const char* src, Py_ssize_t n) noexcept nogil:
    """dst[i] += src[i] (n items of dtype dt): every gradient that arrives as an array."""
    cdef Py_ssize_t i
    if dt == DT_F64:
        for i in range(n):
            (<double*>dst)[i] += (<const double*>src)[i]
    else:
        for i in range(n):
            (<float*>dst)[i] += (<const float*>src)[i]


# -- reductions -------------------------------------------------------------

cdef floating _pairwise(const floating* x, Py_ssize_t n) noexcept nogil:
    """NumPy's pairwise sum: a plain loop below 8 items; up to 128, eight
    interleaved partial sums (a loop the compiler vectorizes) combined as a
    tree, then the tail; above, halves cut at a multiple of 8."""
    cdef Py_ssize_t i, m
    cdef floating r0, r1, r2, r3, r4, r5, r6, r7, s
    if n < 8:
        s = 0
        for i in range(n):
            s = s + x[i]
        return s
    if n <= 128:
        r0 = x[0]
        r1 = x[1]
        r2 = x[2]
        r3 = x[3]
        r4 = x[4]
        r5 = x[5]
        r6 = x[6]
        r7 = x[7]
        m = n - n % 8
        for i in range(8, m, 8):
            r0 = r0 + x[i]
            r1 = r1 + x[i + 1]
            r2 = r2 + x[i + 2]
            r3 = r3 + x[i + 3]
            r4 = r4 + x[i + 4]
            r5 = r5 + x[i + 5]
            r6 = r6 + x[i + 6]
            r7 = r7 + x[i + 7]
        s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for i in range(m, n):
            s = s + x[i]
        return s
    m = n // 2
    m -= m % 8
    return _pairwise(x, m) + _pairwise(x + m, n - m)


cdef void column_sums(const floating* g, floating* out, Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """out (m) += the column sums of g (n, m), row by row (contiguous inner loop)."""
    cdef Py_ssize_t r, o
    for r in range(n):
        for o in range(m):
            out[o] += g[r * m + o]
