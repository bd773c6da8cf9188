"""fg.save / fg.load: nested containers of arrays and plain values, without pickle.

    fg.save({'model': model.state_dict(), 'optim': opt.state_dict(), 'epoch': 3}, 'ckpt.fg')
    ckpt = fg.load('ckpt.fg')

What can be saved: dicts (keys str or int), lists, tuples, NumPy arrays and
scalars, tensors (loaded back as arrays), int, float, complex, bool, str and
None, nested in any way.  Loading a file never runs code: the structure is
JSON and the arrays are raw bytes read with np.frombuffer.

File layout (all integers little-endian):

    magic        8 bytes   b"FGSAVE\\x00\\x01" (format version 1)
    header_len   8 bytes   length of the JSON header
    header_crc   4 bytes   CRC-32 of the header
    data_crc     4 bytes   CRC-32 of the data section
    header       JSON:     {"data_bytes": n, "arrays": [{"dtype", "shape",
                            "offset", "nbytes"}, ...], "root": <object>}
    padding      to a multiple of 64 bytes
    data         the arrays' bytes (C order), each at a 64-byte aligned offset

In "root", JSON null/true/false/numbers/strings/arrays stand for None, bool,
int, float, str and list; every JSON object is a tagged value:
{"$": "tuple", "items": [...]}, {"$": "dict", "keys": [...], "values": [...]},
{"$": "array", "id": i}, {"$": "scalar", "id": i} (a NumPy scalar) and
{"$": "complex", "re": x, "im": y}.

Loading checks every array description (a dtype save can write: bool,
integer, float, complex or fixed-width string, never object, void/structured
or datetime, never zero-size items; a shape NumPy can hold; offset and size
inside the data section, size = shape x item size) before the first array is
made, so a small crafted file cannot make it allocate much.  Every failure is
a ValueError naming the path.

Saving is atomic and leaves no temporary file behind: the whole file is
written and flushed to disk (fsync) before it takes the target's name, so a
failed, interrupted or killed save leaves any previous file intact. On Linux
the file is written without a name (O_TMPFILE) and only then linked in under
a short temporary name and renamed over the target: a process killed while
writing (even by SIGKILL) leaves no file at all; the only moment a kill
leaves one behind is between the link and the rename (two system calls), and
what it leaves then is complete. Where unnamed files are not available (other
systems, some file systems) the file is written under a short temporary name
in the same folder, removed on any failure including KeyboardInterrupt (a
SIGKILL there does leave it). The temporary name is short whatever the
target's, so any name the file system allows can be saved to. Everything is
encoded, and every unsupported value reported (TypeError), before the disk is
touched.

Arrays are stored by value: a np.matrix or np.memmap is saved as its values
(and loads as a plain ndarray, as tensors do); a masked array is refused
(TypeError), since its mask would be lost.
"""
import ctypes
import errno
import json
import math
import os
import re
import secrets
import stat
import struct
import zlib

import numpy as np

from ._core import core

__all__ = ["save", "load"]

MAGIC = b"FGSAVE\x00\x01"
_PREFIX = struct.Struct("<8sQII")      # magic, header_len, header_crc, data_crc
ALIGN = 64
_ARRAY_KINDS = "biufcSU"              # bool, ints, floats, complex, fixed-width strings


def _aligned(n):
    return -(-n // ALIGN) * ALIGN


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------

class _Encoder:
    def __init__(self):
        self.specs = []        # per array: dtype, shape, offset, nbytes
        self.blobs = []        # per array: the contiguous array
        self.size = 0
        self._active = set()   # ids of the containers being encoded (cycle check)

    def array(self, arr, where):
        if isinstance(arr, np.ma.MaskedArray):
            raise TypeError("save: cannot store a masked array (numpy.ma.MaskedArray) at %s: its "
                            "mask would be lost; save a.filled(value), or a.data and "
                            "np.ma.getmaskarray(a) as two arrays" % where)
        arr = np.asarray(arr)          # other subclasses (matrix, memmap): their values
        if arr.dtype.kind not in _ARRAY_KINDS or arr.dtype.fields is not None:
            raise TypeError("save: cannot store an array of dtype %s at %s (numeric, bool and "
                            "fixed-width string arrays only; no pickle)" % (arr.dtype, where))
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")      # (np.ascontiguousarray would make a 0-d array 1-d)
        offset = _aligned(self.size)
        self.specs.append({"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset,
                           "nbytes": arr.nbytes})
        self.blobs.append(arr)
        self.size = offset + arr.nbytes
        return len(self.specs) - 1

    def encode(self, obj, where):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, np.generic):        # before int/float: np.float64 is a float
            return {"$": "scalar", "id": self.array(np.asarray(obj), where)}
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj)
        if isinstance(obj, complex):
            return {"$": "complex", "re": obj.real, "im": obj.imag}
        if isinstance(obj, core.TensorBase):
            return {"$": "array", "id": self.array(np.asarray(obj.data), where)}
        if isinstance(obj, np.ndarray):
            return {"$": "array", "id": self.array(obj, where)}
        if isinstance(obj, (list, tuple, dict)):
            if id(obj) in self._active:
                raise ValueError("save: the object contains itself at %s (a reference cycle)"
                                 % where)
            self._active.add(id(obj))
            try:
                if isinstance(obj, dict):
                    keys = [self.key(k, where) for k in obj]
                    values = [self.encode(v, "%s[%r]" % (where, k)) for k, v in obj.items()]
                    return {"$": "dict", "keys": keys, "values": values}
                items = [self.encode(v, "%s[%d]" % (where, i)) for i, v in enumerate(obj)]
                return {"$": "tuple", "items": items} if isinstance(obj, tuple) else items
            finally:
                self._active.discard(id(obj))
        raise TypeError("save: cannot store an object of type %s at %s (supported: dict, list, "
                        "tuple, ndarray, Tensor, int, float, complex, bool, str, None)"
                        % (type(obj).__name__, where))

    @staticmethod
    def key(k, where):
        if isinstance(k, str):
            return k
        if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            return int(k)
        raise TypeError("save: dict keys must be str or int, got %r (%s) in %s"
                        % (k, type(k).__name__, where))


def _encode(obj):
    """The file's bytes, as a list of chunks; raises before anything is written."""
    enc = _Encoder()
    root = enc.encode(obj, "obj")
    header = json.dumps({"data_bytes": _aligned(enc.size) if enc.size else 0,
                         "arrays": enc.specs, "root": root},
                        separators=(",", ":"), allow_nan=True).encode("utf-8")
    data_start = _aligned(_PREFIX.size + len(header))
    chunks = []
    data_crc = 0
    pos = 0
    for spec, arr in zip(enc.specs, enc.blobs):
        if spec["offset"] > pos:
            pad = b"\0" * (spec["offset"] - pos)
            chunks.append(pad)
            data_crc = zlib.crc32(pad, data_crc)
        raw = arr.reshape(-1).view(np.uint8) if arr.nbytes else b""
        chunks.append(raw)
        data_crc = zlib.crc32(raw, data_crc)
        pos = spec["offset"] + spec["nbytes"]
    tail = (_aligned(enc.size) if enc.size else 0) - pos
    if tail:
        chunks.append(b"\0" * tail)
        data_crc = zlib.crc32(b"\0" * tail, data_crc)
    prefix = _PREFIX.pack(MAGIC, len(header), zlib.crc32(header), data_crc)
    head = prefix + header + b"\0" * (data_start - _PREFIX.size - len(header))
    return [head] + chunks


def save(obj, path):
    """Write `obj` (nested dicts/lists/tuples of arrays, tensors and plain values) to `path`.

    Atomic: the file is written in full and fsynced before it takes the name
    `path`, so a failed or interrupted save leaves the old file intact and
    nothing beside it (see the module docstring).  Unsupported values raise
    TypeError before anything is written.
    """
    path = os.fspath(path)
    chunks = _encode(obj)
    directory = os.path.dirname(os.path.abspath(path))
    if not _save_unnamed(chunks, directory, path):
        _save_named(chunks, directory, path)
    _fsync_directory(directory)


# A short temporary name, whatever the length of the target's: a target name
# at the file system's limit must still be saveable.
def _temp_name(directory):
    return os.path.join(directory, ".fg%s.tmp" % secrets.token_hex(4))


# open(O_TMPFILE) fails with these where the kernel or the file system does
# not offer unnamed files; any other error (no such folder, no permission) is
# the caller's and is raised as it is.
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL}
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_cannot_link = set()       # st_dev of file systems where an unnamed file could not be named


def _save_unnamed(chunks, directory, path):
    """Linux: write an unnamed file, then name it.  False when that is not possible here.

    Until it is linked in, the file has no name: a process killed during the
    write leaves nothing behind (the kernel frees the inode).  The only window
    with a visible temporary name is between the link and the rename.
    """
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or os.stat(directory).st_dev in _cannot_link:
        return False
    try:
        fd = os.open(directory, flag | os.O_WRONLY | _CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno in _NO_TMPFILE:
            return False
        raise
    try:
        _write_all(fd, chunks)
        os.fsync(fd)
        tmp = _link_in(fd, directory)
        if tmp is None:
            # Remembered, so later saves here do not write everything twice.
            _cannot_link.add(os.fstat(fd).st_dev)
            return False
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
    finally:
        os.close(fd)
    return True


def _link_in(fd, directory):
    """Give the unnamed file `fd` a short temporary name in `directory`; None if impossible."""
    for _ in range(100):
        tmp = _temp_name(directory)
        for link in (_link_proc, _link_empty_path):
            try:
                link(fd, tmp)
                return tmp
            except FileExistsError:
                break                      # name taken: try another name
            except OSError:
                continue                   # this way is refused here: try the next
        else:
            return None                    # every way was refused
    raise FileExistsError(errno.EEXIST, "save: no free temporary name in %s" % directory)


def _link_proc(fd, tmp):
    # The documented way for unprivileged processes; needs /proc, and some
    # kernels refuse it across mounts (EXDEV) where the next way works.
    os.link("/proc/self/fd/%d" % fd, tmp)


_libc = []


def _link_empty_path(fd, tmp):
    # linkat(fd, "", AT_FDCWD, tmp, AT_EMPTY_PATH): no /proc needed, but older
    # kernels ask for CAP_DAC_READ_SEARCH; os.link cannot pass the flag.
    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    libc = _libc[0]
    at_fdcwd, at_empty_path = -100, 0x1000
    if libc.linkat(fd, b"", at_fdcwd, os.fsencode(tmp), at_empty_path) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), tmp)


def _save_named(chunks, directory, path):
    """Elsewhere: a named temporary file, removed on any failure (KeyboardInterrupt too)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = _temp_name(directory)
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "save: no free temporary name in %s" % directory)
    try:
        try:
            _write_all(fd, chunks)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _write_all(fd, chunks):
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        while view.nbytes:
            view = view[os.write(fd, view):]


def _unlink_quietly(name):
    try:
        os.unlink(name)
    except OSError:
        pass


def _fsync_directory(directory):
    # Makes the rename itself durable on POSIX; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

class _Corrupt(Exception):
    pass


def load(path):
    """Read what `save` wrote.  Arrays come back as ndarrays (also where tensors were saved).

    Missing file: FileNotFoundError.  A truncated, corrupt or foreign file:
    ValueError naming the path.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = _read(f)
    try:
        return _decode(raw)
    except _Corrupt as exc:
        raise ValueError("load: %s is not a readable fastgrad file: %s" % (path, exc)) from None
    except RecursionError:
        raise ValueError("load: %s is not a readable fastgrad file: its structure is nested too "
                         "deeply" % path) from None


def _read(f):
    """The file's bytes; from a pipe or a device, no more than its header declares, plus one."""
    if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        return f.read()
    # Reading to the end would never stop on /dev/zero or an endless pipe.
    buf = bytearray()
    want = None
    while want is None or len(buf) <= want:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        buf += chunk
        if want is None:
            want = _declared_size(buf)
    return bytes(buf)


def _declared_size(buf):
    """The size the header at the start of `buf` declares; None while it is incomplete.

    Whatever cannot be a fastgrad header gives 0: reading stops, and _decode
    says what is wrong.
    """
    if len(buf) < _PREFIX.size:
        return None
    magic, header_len = _PREFIX.unpack_from(buf)[:2]
    if magic[:6] != MAGIC[:6]:
        return 0
    if len(buf) < _PREFIX.size + header_len:
        return None
    try:
        data_bytes = json.loads(bytes(buf[_PREFIX.size:_PREFIX.size + header_len]))["data_bytes"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return 0
    return _aligned(_PREFIX.size + header_len) + data_bytes if _is_count(data_bytes) else 0


def _decode(raw):
    if len(raw) < _PREFIX.size or raw[:6] != MAGIC[:6]:
        raise _Corrupt("it does not start with the fastgrad header (a different format?)")
    magic, header_len, header_crc, data_crc = _PREFIX.unpack_from(raw)
    if magic != MAGIC:
        raise _Corrupt("unknown format version %d (this fastgrad reads version %d)"
                       % (magic[-1], MAGIC[-1]))
    if _PREFIX.size + header_len > len(raw):
        raise _Corrupt("truncated: the header needs %d bytes, the file has %d"
                       % (_PREFIX.size + header_len, len(raw)))
    header_bytes = raw[_PREFIX.size:_PREFIX.size + header_len]
    if zlib.crc32(header_bytes) != header_crc:
        raise _Corrupt("the header's checksum does not match (the file is damaged)")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Corrupt("the header is not valid JSON (%s)" % exc) from None
    if not isinstance(header, dict) or not {"data_bytes", "arrays", "root"} <= set(header):
        raise _Corrupt("the header lacks data_bytes/arrays/root")
    data_bytes = header["data_bytes"]
    if not _is_count(data_bytes):
        raise _Corrupt("bad data size %r" % (data_bytes,))
    data_start = _aligned(_PREFIX.size + header_len)
    expected = data_start + data_bytes
    if len(raw) < expected:
        raise _Corrupt("truncated: %d bytes, expected %d" % (len(raw), expected))
    if len(raw) > expected:
        raise _Corrupt("%d unexpected bytes after the data" % (len(raw) - expected))
    data = memoryview(raw)[data_start:]
    if zlib.crc32(data) != data_crc:
        raise _Corrupt("the data's checksum does not match (the file is damaged)")
    specs = header["arrays"]
    if not isinstance(specs, list):
        raise _Corrupt("'arrays' is not a list")
    # Every description is checked before the first array is made.
    checked = [_check_array(spec, data_bytes, i) for i, spec in enumerate(specs)]
    arrays = [_array(c, data) for c in checked]
    return _Decoder(arrays).decode(header["root"])


def _is_count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


# What save writes for a dtype: byte order, kind, item size.  Anything else
# (object, void/structured, datetime, sub-arrays, dtype expressions) is refused
# before NumPy is asked to parse it.
_DTYPE_STR = re.compile(r"[<>|][%s][0-9]{1,12}\Z" % _ARRAY_KINDS)
# The running NumPy's limit on dimensions (what save can write, and no more).
_MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32
_MAX_INTP = np.iinfo(np.intp).max


def _check_array(spec, data_bytes, i):
    """The dtype and shape `spec` declares, checked against the data section; allocates nothing."""
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "offset", "nbytes"}:
        raise _Corrupt("array %d: bad description %r" % (i, str(spec)[:80]))
    text = spec["dtype"]
    dtype = None
    if isinstance(text, str) and _DTYPE_STR.match(text):
        try:
            dtype = np.dtype(text)
        except (TypeError, ValueError, OverflowError):
            pass
    if dtype is None or dtype.fields is not None:
        raise _Corrupt("array %d: unsupported dtype %r (numeric, bool and fixed-width string "
                       "dtypes only)" % (i, str(text)[:40]))
    if dtype.itemsize == 0:
        raise _Corrupt("array %d: dtype %r has zero-size items" % (i, text))
    shape = spec["shape"]
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS \
            or not all(_is_count(n) for n in shape):
        raise _Corrupt("array %d: bad shape %r" % (i, str(shape)[:80]))
    # Even an empty array must be one NumPy can describe: the product of its
    # non-zero dimensions, in bytes, has to fit an intp.
    extent = dtype.itemsize
    for n in shape:
        extent *= max(n, 1)
        if extent > _MAX_INTP:
            raise _Corrupt("array %d: shape %s is too large for dtype %s"
                           % (i, str(shape)[:80], dtype))
    count = math.prod(shape)
    offset, nbytes = spec["offset"], spec["nbytes"]
    if not (_is_count(offset) and _is_count(nbytes)) or nbytes != count * dtype.itemsize \
            or offset + nbytes > data_bytes:
        raise _Corrupt("array %d: its bytes (offset %r, %r bytes for shape %s, dtype %s) do not "
                       "fit the data section of %d bytes"
                       % (i, offset, nbytes, shape, dtype, data_bytes))
    return dtype, tuple(shape), count, offset


def _array(checked, data):
    dtype, shape, count, offset = checked
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape).copy()


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(item) for item in node]
        if not isinstance(node, dict):
            raise _Corrupt("unexpected value %r in the structure" % (node,))
        tag = node.get("$")
        if tag == "tuple" and isinstance(node.get("items"), list):
            return tuple(self.decode(item) for item in node["items"])
        keys, values = node.get("keys"), node.get("values")
        if tag == "dict" and isinstance(keys, list) and isinstance(values, list) \
                and len(keys) == len(values):
            for k in keys:
                if not isinstance(k, str) and not _is_int(k):
                    raise _Corrupt("dict key %r is neither str nor int" % (k,))
            return {k: self.decode(v) for k, v in zip(keys, values)}
        if tag in ("array", "scalar") and _is_int(node.get("id")) \
                and 0 <= node["id"] < len(self.arrays):
            arr = self.arrays[node["id"]]
            if tag == "array":
                return arr
            if arr.ndim != 0:
                raise _Corrupt("scalar %d has shape %s" % (node["id"], arr.shape))
            return arr[()]
        if tag == "complex" and isinstance(node.get("re"), (int, float)) \
                and isinstance(node.get("im"), (int, float)):
            try:
                return complex(node["re"], node["im"])
            except OverflowError:          # an int too large for a float
                raise _Corrupt("complex value %r is out of range" % (str(node)[:80],)) from None
        raise _Corrupt("unknown entry %r in the structure" % (str(node)[:80],))


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)
