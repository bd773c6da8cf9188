"""fg.save / fg.load: nested containers of arrays and plain values, without pickle.

    fg.save({'model': model.state_dict(), 'optim': opt.state_dict(), 'epoch': 3}, 'ckpt.fg')
    ckpt = fg.load('ckpt.fg')
    fg.save(model.state_dict(), 'model.safetensors')       # for PyTorch and others
    with open('ckpt.fg', 'rb') as f:                          # file objects, io.BytesIO too
        ckpt = fg.load(f)

Two formats: the fastgrad format (below) holds any nesting; the safetensors
format (the end of this docstring) holds one flat dict name -> array, as
PyTorch's safetensors files do.  `format=None` picks safetensors for a path
(or a file object's `name`) ending ".safetensors" in any case, else
fastgrad; `format="fastgrad"` / `format="safetensors"` choose explicitly.

The target or source is a path (str, bytes, os.PathLike) or a binary file
object: anything with .write (save) or .read (load; also io.BytesIO).  Text
files and other objects raise TypeError.  A file object is the caller's:
save writes at its position, flushes, fsyncs it when it has a file
descriptor, and neither renames nor closes it; load reads from its position
to its end, in chunks and not much further than its header declares (a
stream may be endless), with the same checks and limits as for a path, and
errors name its `name` (else its type).

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

The safetensors format (all integers little-endian):

    header_len   8 bytes   length of the JSON header, at most 100,000,000
    header       JSON:     {name: {"dtype": "F32", "shape": [2, 3],
                            "data_offsets": [begin, end]}, ...,
                            "__metadata__": {str: str}}    (optional)
                           starting with "{", padded with spaces
    data         the arrays' bytes (C order, little-endian); data_offsets
                 count from the start of this section

save writes bool, int8-64, uint8-64, float16/32/64 and complex64 arrays
(BOOL, I8..I64, U8..U64, F16, F32, F64, C64), in the dict's order in the
header and by decreasing item size in the data, so each array starts at a
multiple of its item size; the header is padded so the data starts at a
multiple of 8.  Anything but a flat dict str -> array/tensor raises
TypeError (a nested checkpoint belongs in the fastgrad format); arrays that
share memory are written as separate copies, since the format forbids
overlapping data.  `metadata=` (str -> str) becomes "__metadata__".

load returns a dict name -> ndarray in the header's order; each array is its
own writable copy in native byte order (no view of a shared buffer: a
mutation never reaches another array or the file).  BF16 is widened to
float32 (exactly); F8/F6/F4 types have no NumPy dtype and are refused.
Before any array is made the header is checked: its length against the
limit and the file, valid UTF-8 JSON without duplicate names or NaN
constants, every entry exactly dtype/shape/data_offsets with a known dtype,
a shape NumPy can hold and end - begin = shape x item size, and the spans
covering the data section exactly (no holes, no overlaps, no bytes after
it).  Every failure is a ValueError naming the path; a file with a known
size is then read straight into the arrays, so a load never needs much
more memory than the file's size.
"""
import collections.abc
import ctypes
import errno
import io
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
            return {"$": "array", "id": self.array(np.asarray(obj.numpy()), where)}
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


def save(obj, f, *, format=None, metadata=None):
    """Write `obj` to `f`, a path or a binary file object open for writing.

    Formats (`format=None` picks by name: "safetensors" when the path, or a
    file object's `name`, ends with ".safetensors" in any case, else
    "fastgrad"):

    - "fastgrad": `obj` is any nesting of dicts/lists/tuples of arrays,
      tensors and plain values (see the module docstring).
    - "safetensors": `obj` is a flat mapping str -> array or tensor, such as
      `model.state_dict()`; `metadata` is an optional dict str -> str stored
      in the file's "__metadata__".  Anything else raises TypeError.

    To a path: atomic, the file is written in full and fsynced before it
    takes the name, so a failed or interrupted save leaves the old file
    intact and nothing beside it (see the module docstring).  To a file
    object: written at its current position and flushed, fsynced when it
    has a file descriptor, never closed (it is the caller's file).  Either
    way every unsupported value raises TypeError before anything is written.
    """
    target = _target(f, "save")
    kind = _format(format, f if target is None else target, "save")
    if kind == "safetensors":
        chunks = _encode_safetensors(obj, metadata)
    else:
        if metadata is not None:
            raise TypeError("save: metadata= is for the safetensors format only (the fastgrad "
                            "format stores any nested values: put them in obj)")
        chunks = _encode(obj)
    if target is None:
        _write_to_file_object(chunks, f)
        return
    directory = os.path.dirname(os.path.abspath(target))
    if not _save_unnamed(chunks, directory, target):
        _save_named(chunks, directory, target)
    _fsync_directory(directory)


_FORMATS = ("fastgrad", "safetensors")


def _target(f, op):
    """The path `f` names, or None for a file object; TypeError for anything else."""
    if isinstance(f, (str, bytes, os.PathLike)):
        # As str: the temporary names are str, and os.path will not mix the two.
        return os.fsdecode(os.fspath(f))
    want, doing = ("write", "writing") if op == "save" else ("read", "reading")
    if not callable(getattr(f, want, None)):
        raise TypeError("%s: expected a path (str, bytes or os.PathLike) or a binary file object "
                        "open for %s, got %s" % (op, doing, type(f).__name__))
    name = _describe(f)
    if isinstance(f, io.TextIOBase) or (isinstance(getattr(f, "mode", None), str)
                                        and "b" not in f.mode):
        raise TypeError("%s: %s is a text-mode file; open it in binary mode ('%sb')"
                        % (op, name, "w" if op == "save" else "r"))
    if getattr(f, "closed", False) is True:
        raise ValueError("%s: %s is closed" % (op, name))
    able = getattr(f, "writable" if op == "save" else "readable", None)
    if callable(able) and not able():
        raise TypeError("%s: %s is not open for %s" % (op, name, doing))
    return None


def _describe(f):
    """How messages name a file object: its `name` when it has one, else its type."""
    name = getattr(f, "name", None)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if isinstance(name, str) and name:
        return name
    return "<%s object>" % type(f).__name__


def _format(format, f, op):
    if format is not None:
        if format not in _FORMATS:
            raise ValueError("%s: unknown format %r (expected 'fastgrad' or 'safetensors')"
                             % (op, format))
        return format
    name = f if isinstance(f, (str, bytes)) else getattr(f, "name", None)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if isinstance(name, str) and name.lower().endswith(".safetensors"):
        return "safetensors"
    return "fastgrad"


def _write_to_file_object(chunks, f):
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        while view.nbytes:
            n = f.write(view)
            if n is None and not isinstance(f, io.RawIOBase):
                break                     # a writer that does not count: it took it all
            if not n:                     # a non-blocking file that is full: never spin
                raise BlockingIOError(errno.EAGAIN, "save: %s took no bytes (a non-blocking "
                                      "file?)" % _describe(f))
            view = view[n:]
    flush = getattr(f, "flush", None)
    if callable(flush):
        flush()
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):     # io.UnsupportedOperation is both
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        # Pipes, terminals and sockets cannot be synced: nothing to make durable.
        if exc.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


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


def load(f, *, format=None):
    """Read what `save` wrote, from a path or a binary file object open for reading.

    The format is picked as `save` does (`format=None`: "safetensors" for a
    name ending ".safetensors", else "fastgrad").  A file object is read from
    its current position to its end (io.BytesIO too).

    - "fastgrad": the saved structure; arrays come back as ndarrays (also
      where tensors were saved).
    - "safetensors": a dict name -> ndarray, in the header's order.  Each
      array is its own writable, aligned copy in native byte order (no view
      of a shared buffer or of the file); BF16 is widened to float32, which
      is exact; BOOL bytes must be 0 or 1.  The "__metadata__" is not
      returned.

    Missing file: FileNotFoundError.  A truncated, corrupt, foreign or
    crafted file: ValueError naming the path (or the file object's `name`,
    else its type), raised after checking the header and before anything of
    the sizes it declares is allocated.
    """
    target = _target(f, "load")
    kind = _format(format, f if target is None else target, "load")
    if target is None:
        return _load_from(f, _describe(f), kind, bounded=True)
    with open(target, "rb") as fh:
        return _load_from(fh, target, kind,
                          bounded=not stat.S_ISREG(os.fstat(fh.fileno()).st_mode))


def _load_from(f, name, kind, bounded):
    if kind == "safetensors":
        return _load_safetensors(f, name)
    raw = _read(f, bounded)
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError("load: %s returned %s from read(); open it in binary mode"
                        % (name, type(raw).__name__))
    try:
        return _decode(raw)
    except _Corrupt as exc:
        raise ValueError("load: %s is not a readable fastgrad file: %s" % (name, exc)) from None
    except RecursionError:
        raise ValueError("load: %s is not a readable fastgrad file: its structure is nested too "
                         "deeply" % name) from None


def _read(f, bounded):
    """The file's bytes; when `bounded`, no more than its header declares, plus one chunk.

    A regular file is read whole.  Anything else (a pipe, a device such as
    /dev/zero, a file object that may be a decompressing stream) is read in
    chunks, and only as far as the header declares: reading to the end
    would never stop on an endless stream.
    """
    if not bounded:
        return f.read()
    buf = bytearray()
    want = None
    while want is None or len(buf) <= want:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        if isinstance(chunk, str):
            return chunk                   # the caller says what is wrong
        buf += chunk
        if want is None:
            want = _declared_size(buf)
    return buf                             # a bytearray: no second copy


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
        if raw[8:9] == b"{":
            raise _Corrupt("it does not start with the fastgrad header (a safetensors file? "
                           "name it .safetensors or pass format='safetensors')")
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


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------

# The format's names for the dtypes NumPy has, and the reverse.  BF16 has no
# NumPy dtype but widens exactly to float32; the other names the format
# knows have none either and are refused with that reason.
_ST_DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2",
              "F16": "<f2", "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8",
              "I64": "<i8", "F64": "<f8", "C64": "<c8"}
_ST_NAMES = {np.dtype(v).newbyteorder("=") if v[0] == "<" else np.dtype(v): k
             for k, v in _ST_DTYPES.items()}
_ST_WIDENED = {"BF16": 2}                       # read as uint16 and widened to float32
_ST_NO_NUMPY = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"}
_ST_HEADER_LIMIT = 100_000_000                  # the format's limit on the JSON header
_ST_ALIGN = 8
_ST_ENTRY = {"dtype", "shape", "data_offsets"}
_CHUNK = 1 << 20


def _st_dtype_name(arr, where):
    dt = arr.dtype
    if dt.kind in "biufc" and dt.fields is None:
        name = _ST_NAMES.get(dt.newbyteorder("=") if dt.byteorder in "<>" else dt)
        if name is not None:
            return name
    raise TypeError("save: the safetensors format cannot hold %s of dtype %s (it holds bool, "
                    "int8-64, uint8-64, float16/32/64 and complex64; cast it, or use the .fg "
                    "format)" % (where, dt))


def _encode_safetensors(obj, metadata):
    """The file's bytes, as a list of chunks; raises before anything is written."""
    if not isinstance(obj, collections.abc.Mapping):
        raise TypeError("save: the safetensors format holds one flat dict of name -> array or "
                        "tensor, got %s (use the .fg format, or save model.state_dict())"
                        % type(obj).__name__)
    entries = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError("save: safetensors names must be str, got %r (%s)"
                            % (key, type(key).__name__))
        where = "obj[%r]" % key
        if key == "__metadata__":
            raise TypeError("save: %s: the name '__metadata__' is reserved by the safetensors "
                            "format (pass metadata= instead)" % where)
        if isinstance(value, core.TensorBase):
            arr = np.asarray(value.numpy())
        elif isinstance(value, np.ma.MaskedArray):
            raise TypeError("save: cannot store a masked array (numpy.ma.MaskedArray) at %s: its "
                            "mask would be lost" % where)
        elif isinstance(value, (np.ndarray, np.generic)):
            arr = np.asarray(value)
        else:
            raise TypeError("save: the safetensors format holds only arrays and tensors, not %s "
                            "at %s (a nested checkpoint? use the .fg format, or save "
                            "model.state_dict())" % (type(value).__name__, where))
        name = _st_dtype_name(arr, where)
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not _LITTLE):
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        # Every array is written by value: views of one base become separate
        # copies, as the format forbids overlapping data.
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")
        entries.append((key, name, arr))
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("save: metadata must be a dict of str -> str, got %s"
                            % (type(metadata).__name__ if not isinstance(metadata, dict)
                               else "a dict with non-str keys or values"))
    # The data in decreasing item size: each array then starts at a multiple
    # of its item size (the data section itself starts at a multiple of 8),
    # for readers that map the file.  The header keeps the dict's order.
    order = sorted(range(len(entries)), key=lambda i: -entries[i][2].dtype.itemsize)
    offsets = [None] * len(entries)
    pos = 0
    for i in order:
        offsets[i] = [pos, pos + entries[i][2].nbytes]
        pos += entries[i][2].nbytes
    header = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    for (key, name, arr), span in zip(entries, offsets):
        header[key] = {"dtype": name, "shape": list(arr.shape), "data_offsets": span}
    try:
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TypeError("save: a name or metadata string is not valid Unicode (%s)" % exc) from None
    text += b" " * (-(8 + len(text)) % _ST_ALIGN)
    if len(text) > _ST_HEADER_LIMIT:
        raise ValueError("save: the safetensors header would be %d bytes, over the format's "
                         "limit of %d" % (len(text), _ST_HEADER_LIMIT))
    chunks = [struct.pack("<Q", len(text)) + text]
    for i in order:
        arr = entries[i][2]
        if arr.nbytes:
            chunks.append(arr.reshape(-1).view(np.uint8))
    return chunks


_LITTLE = np.little_endian


def _remaining(f):
    """Bytes left in `f` from its position, when that can be known for sure; else None."""
    if isinstance(f, io.BytesIO):
        return len(f.getbuffer()) - f.tell()
    if isinstance(f, (io.BufferedReader, io.BufferedRandom, io.FileIO)):
        try:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode):
                return st.st_size - f.tell()
        except (OSError, ValueError):
            pass
    return None


def _read_upto(f, n, name):
    """Up to `n` bytes, in chunks: no more memory than the file actually holds."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(n - len(buf), _CHUNK))
        if not chunk:
            break
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError("load: %s returned %s from read(); open it in binary mode"
                            % (name, type(chunk).__name__))
        if len(chunk) > n - len(buf):
            raise TypeError("load: %s returned %d bytes from read(%d)"
                            % (name, len(chunk), n - len(buf)))
        buf += chunk
    return buf


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Corrupt("the name %r appears twice in the header" % k[:80])
        out[k] = v
    return out


def _bad_constant(text):
    raise _Corrupt("the header holds %s, which is not JSON" % text)


def _st_check_entry(key, entry):
    """dtype, shape, count, begin, end of one tensor, checked; allocates nothing."""
    what = "tensor %r" % key[:80]
    if not isinstance(entry, dict) or set(entry) != _ST_ENTRY:
        raise _Corrupt("%s: bad description %r (expected the keys dtype, shape, data_offsets)"
                       % (what, str(entry)[:80]))
    text = entry["dtype"]
    if text in _ST_DTYPES:
        dtype = np.dtype(_ST_DTYPES[text])
    elif text in _ST_WIDENED:
        dtype = np.dtype("<u2")
    elif text in _ST_NO_NUMPY:
        raise _Corrupt("%s: dtype %s has no NumPy equivalent (readable: %s, BF16)"
                       % (what, text, ", ".join(_ST_DTYPES)))
    else:
        raise _Corrupt("%s: unknown dtype %r" % (what, str(text)[:40]))
    shape = entry["shape"]
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS \
            or not all(_is_count(n) for n in shape):
        raise _Corrupt("%s: bad shape %r" % (what, str(shape)[:80]))
    extent = dtype.itemsize
    for n in shape:
        extent *= max(n, 1)
        if extent > _MAX_INTP:
            raise _Corrupt("%s: shape %s is too large for dtype %s" % (what, str(shape)[:80], text))
    count = math.prod(shape)
    span = entry["data_offsets"]
    if not (isinstance(span, list) and len(span) == 2 and all(_is_count(x) for x in span)
            and span[0] <= span[1]):
        raise _Corrupt("%s: bad data_offsets %r" % (what, str(span)[:80]))
    if span[1] - span[0] != count * dtype.itemsize:
        raise _Corrupt("%s: data_offsets %s hold %d bytes, but shape %s of %s needs %d"
                       % (what, span, span[1] - span[0], shape, text, count * dtype.itemsize))
    return text, dtype, tuple(shape), count, span[0], span[1]


def _st_header(f, name, remaining):
    """The checked tensor list and the data section's size, before any tensor is made."""
    prefix = _read_upto(f, 8, name)
    if len(prefix) < 8:
        raise _Corrupt("truncated: %d bytes, less than the 8-byte header length" % len(prefix))
    (n,) = struct.unpack("<Q", prefix)
    if n > _ST_HEADER_LIMIT:
        raise _Corrupt("header length %d is over the format's limit of %d bytes (not a "
                       "safetensors file?)" % (n, _ST_HEADER_LIMIT))
    if remaining is not None and 8 + n > remaining:
        raise _Corrupt("truncated: the header needs %d bytes, the file has %d" % (8 + n, remaining))
    raw = _read_upto(f, n, name)
    if len(raw) < n:
        raise _Corrupt("truncated: the header needs %d bytes, the file has %d" % (8 + n, 8 + len(raw)))
    if raw[:1] != b"{":
        raise _Corrupt("the header does not start with '{' (not a safetensors file?)")
    try:
        header = json.loads(bytes(raw).decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_constant=_bad_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Corrupt("the header is not valid JSON (%s)" % exc) from None
    except RecursionError:
        raise _Corrupt("the header is nested too deeply") from None
    if not isinstance(header, dict):
        raise _Corrupt("the header is not a JSON object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(
            isinstance(v, str) for v in meta.values())):
        raise _Corrupt("__metadata__ must map str to str, got %r" % str(meta)[:80])
    tensors = [(key, _st_check_entry(key, entry)) for key, entry in header.items()
               if key != "__metadata__"]
    # The data section must be covered exactly: no holes, no overlaps.
    pos = 0
    for key, (_, _, _, _, begin, end) in sorted(tensors, key=lambda t: (t[1][4], t[1][5])):
        if begin != pos:
            raise _Corrupt("tensor %r: data_offsets [%d, %d] %s (the data must be covered "
                           "without holes or overlaps)"
                           % (key[:80], begin, end, "overlap another tensor's" if begin < pos
                              else "leave a hole at %d" % pos))
        pos = end
    if remaining is not None:
        have = remaining - 8 - n
        if have < pos:
            raise _Corrupt("truncated: the data section needs %d bytes, the file has %d"
                           % (pos, have))
        if have > pos:
            raise _Corrupt("%d unexpected bytes after the data" % (have - pos))
    return tensors, pos


def _load_safetensors(f, name):
    remaining = _remaining(f)
    try:
        tensors, size = _st_header(f, name, remaining)
        if remaining is None:
            # Size unknown: read what arrives, no more than declared (plus one byte).
            data = _read_upto(f, size, name)
            if len(data) < size:
                raise _Corrupt("truncated: the data section needs %d bytes, the file has %d"
                               % (size, len(data)))
            if _read_upto(f, 1, name):
                raise _Corrupt("unexpected bytes after the data")
            return {key: _st_array(c, data) for key, c in tensors}
        # Size known and checked: each array is read straight into its own memory.
        out = {}
        for key, c in sorted(tensors, key=lambda t: t[1][4]):
            out[key] = _st_fill(f, c, name)
        return {key: out[key] for key, _ in tensors}
    except _Corrupt as exc:
        raise ValueError("load: %s is not a readable safetensors file: %s" % (name, exc)) from None


def _st_finish(text, arr, shape):
    if text == "BF16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    elif text == "BOOL":
        if arr.size and arr.view(np.uint8).max() > 1:
            raise _Corrupt("a BOOL tensor holds bytes other than 0 and 1")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr.reshape(shape)


def _st_array(checked, data):
    text, dtype, shape, count, begin, _ = checked
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=begin).copy() if count \
        else np.zeros(0, dtype=dtype)
    return _st_finish(text, arr, shape)


def _st_fill(f, checked, name):
    text, dtype, shape, count, begin, end = checked
    arr = np.empty(count, dtype=dtype)
    view = memoryview(arr.view(np.uint8))
    pos = 0
    readinto = getattr(f, "readinto", None)
    while pos < view.nbytes:
        n = readinto(view[pos:pos + _CHUNK * 64])
        if not n:
            raise _Corrupt("the file ended early (did it change while being read?)")
        pos += n
    return _st_finish(text, arr, shape)
