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

Saving is atomic: the file is written under a temporary name in the same
folder, flushed to disk (fsync) and renamed over the target, so a failed or
interrupted save leaves any previous file intact; the temporary file is
removed on failure.  Everything is encoded, and every unsupported value
reported (TypeError), before the disk is touched.
"""
import json
import math
import os
import secrets
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

    Atomic: a temporary file in the same folder is written, fsynced and renamed
    over `path`; on any failure the old file is untouched and the temporary
    file removed.  Unsupported values raise TypeError before anything is written.
    """
    path = os.fspath(path)
    chunks = _encode(obj)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.%s.tmp" % (os.path.basename(path), secrets.token_hex(8)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


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
        raw = f.read()
    try:
        return _decode(raw)
    except _Corrupt as exc:
        raise ValueError("load: %s is not a readable fastgrad file: %s" % (path, exc)) from None
    except RecursionError:
        raise ValueError("load: %s is not a readable fastgrad file: its structure is nested too "
                         "deeply" % path) from None


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
    arrays = [_array(spec, data, data_bytes, i) for i, spec in enumerate(specs)]
    return _Decoder(arrays).decode(header["root"])


def _is_count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _array(spec, data, data_bytes, i):
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "offset", "nbytes"}:
        raise _Corrupt("array %d: bad description %r" % (i, spec))
    try:
        dtype = np.dtype(spec["dtype"]) if isinstance(spec["dtype"], str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
        raise _Corrupt("array %d: unsupported dtype %r" % (i, spec["dtype"]))
    shape = spec["shape"]
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise _Corrupt("array %d: bad shape %r" % (i, shape))
    offset, nbytes = spec["offset"], spec["nbytes"]
    if not (_is_count(offset) and _is_count(nbytes)) or offset + nbytes > data_bytes \
            or nbytes != math.prod(shape) * dtype.itemsize:
        raise _Corrupt("array %d: its bytes (offset %r, %r bytes for shape %s, dtype %s) do not "
                       "fit the data section" % (i, offset, nbytes, shape, dtype))
    if nbytes == 0:
        return np.zeros(shape, dtype=dtype)
    flat = np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset)
    return flat.reshape(shape).copy()


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
            return complex(node["re"], node["im"])
        raise _Corrupt("unknown entry %r in the structure" % (str(node)[:80],))


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)
