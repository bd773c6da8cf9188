# The compiled core's block allocator (included by _tape.pyx).

# ---------------------------------------------------------------------------
# Memory for values and gradients
# ---------------------------------------------------------------------------
# A training step allocates and frees the same blocks every time.  With plain
# malloc, freeing a step's ~10 MB of 32 KB blocks lets glibc return the heap to
# the OS and the next step page-faults it all in again: 40% of the per-op
# workload's time at n = 4096 (perf).  So blocks of CACHE_MIN bytes or more
# are kept on per-size-class free lists (power-of-two classes, at most
# CACHE_LIMIT bytes in all) and handed out again.  Every block carries a
# 16-byte header with its class (-1: plain malloc), keeping 16-byte alignment.
# Small blocks are cached too: a free-list pop is ~20 instructions, malloc and
# free ~150 together, and the per-op workload allocates two blocks per op.
cdef enum:
    CACHE_MIN = 16
    CACHE_MIN_CLASS = 4        # log2(CACHE_MIN)
    CACHE_CLASSES = 48
    HEADER = 16

cdef void* _free_lists[CACHE_CLASSES]
cdef size_t _cached_bytes = 0
cdef size_t CACHE_LIMIT = 256 * 1024 * 1024


cdef void* _mem_alloc(size_t nbytes) noexcept:
    """A block of at least nbytes (NULL when out of memory)."""
    cdef int k = -1
    cdef size_t cap = nbytes
    cdef char* block
    if nbytes < CACHE_MIN:
        nbytes = CACHE_MIN
    if True:
        k = CACHE_MIN_CLASS
        cap = CACHE_MIN
        while cap < nbytes:
            cap <<= 1
            k += 1
        if _free_lists[k] != NULL:
            block = <char*>_free_lists[k]
            _free_lists[k] = (<void**>(block + HEADER))[0]
            _cached_bytes_sub(cap)
            return block + HEADER
    block = <char*>malloc(cap + HEADER)
    if block == NULL:
        return NULL
    (<long*>block)[0] = k
    return block + HEADER


cdef inline void _cached_bytes_sub(size_t n) noexcept:
    global _cached_bytes
    _cached_bytes -= n


cdef void _mem_free(void* ptr) noexcept:
    global _cached_bytes
    if ptr == NULL:
        return
    cdef char* block = <char*>ptr - HEADER
    cdef long k = (<long*>block)[0]
    cdef size_t cap
    if k >= 0:
        cap = (<size_t>1) << k
        if _cached_bytes + cap <= CACHE_LIMIT:
            (<void**>ptr)[0] = _free_lists[k]
            _free_lists[k] = block
            _cached_bytes += cap
            return
    free(block)


def _memory_cached():
    """Bytes held on the free lists (for tests)."""
    return _cached_bytes
