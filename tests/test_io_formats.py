"""fg.save / fg.load through file objects, and the safetensors format (own code, interop)."""
import io
import json
import os
import re
import struct
import tracemalloc
import zlib

import numpy as np
import pytest


def _folder(path):
    return sorted(p.name for p in path.iterdir())


def _safetensors():
    return pytest.importorskip("safetensors", reason="the safetensors package is not installed "
                               "(pip install safetensors): interop with it is not checked")


class Writer:
    """A file object with nothing but write (no fileno, flush, seek)."""

    def __init__(self):
        self.parts = []

    def write(self, b):
        self.parts.append(bytes(b))


class Reader:
    """A file object with nothing but read, and no way to know its size."""

    def __init__(self, data, name=None):
        self._f = io.BytesIO(data)
        if name is not None:
            self.name = name

    def read(self, n=-1):
        return self._f.read(n)


def _state(rng=None):
    rng = rng or np.random.default_rng(0)
    return {"0.weight": rng.standard_normal((4, 3)).astype(np.float32),
            "0.bias": rng.standard_normal(4).astype(np.float32),
            "steps": np.array(7, dtype=np.int64),
            "mask": np.array([[True, False, True]]),
            "half": np.arange(5, dtype=np.float16),
            "empty": np.zeros((0, 3)),
            "u8": np.arange(250, 256, dtype=np.uint8),
            "i32": np.array([-(2 ** 31), 2 ** 31 - 1], dtype=np.int32),
            "u64": np.array([2 ** 64 - 1], dtype=np.uint64),
            "f64": np.array([0.1, -0.0, np.inf, np.nan]),
            "c64": np.array([1 - 2j], dtype=np.complex64)}


def _same_arrays(a, b):
    assert list(a) == list(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape, (k, x.dtype, y.dtype, x.shape, y.shape)
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------
# File objects, fastgrad format
# ---------------------------------------------------------------------------

def test_bytesio_round_trip_at_its_position(fg):
    obj = {"w": np.arange(6.0).reshape(2, 3), "epoch": 3, "t": ("a", None)}
    f = io.BytesIO()
    f.write(b"prefix")
    fg.save(obj, f)
    assert not f.closed
    f.seek(6)
    back = fg.load(f)
    np.testing.assert_array_equal(back["w"], obj["w"])
    assert back["epoch"] == 3 and back["t"] == ("a", None)
    assert f.getvalue().startswith(b"prefixFGSAVE")


def test_real_file_objects_are_synced_and_left_open(fg, tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    path = tmp_path / "a.fg"
    with open(path, "wb") as f:
        fg.save({"v": 1}, f)
        assert not f.closed and synced == [f.fileno()]
        fg.save([2], f)                                    # the caller's file: appended to
    with open(path, "rb") as f:
        with pytest.raises(ValueError, match=r"a\.fg.*unexpected bytes"):
            fg.load(f)                                     # reads to the end: two saves
    assert _folder(tmp_path) == ["a.fg"]                   # no temporary, no rename
    raw = path.read_bytes()
    one = io.BytesIO()
    fg.save({"v": 1}, one)
    assert raw.startswith(one.getvalue())
    with open(path, "rb") as f:
        f.seek(len(one.getvalue()))
        assert fg.load(f) == [2]
        assert f.read() == b""


def test_bytes_paths(fg, tmp_path):
    for name in ("a.fg", "a.safetensors"):
        path = os.fsencode(tmp_path / name)
        fg.save({"w": np.arange(3.0)}, path)
        assert fg.load(path)["w"].tolist() == [0.0, 1.0, 2.0]
    assert (tmp_path / "a.safetensors").read_bytes()[8:9] == b"{"
    assert _folder(tmp_path) == ["a.fg", "a.safetensors"]


@pytest.mark.skipif(not hasattr(os, "pipe"), reason="needs os.pipe")
@pytest.mark.parametrize("fmt", ["fastgrad", "safetensors"])
def test_pipes_cannot_be_synced_and_need_not_be(fg, fmt):
    r, w = os.pipe()
    with open(w, "wb") as f:                          # fsync on a pipe: EINVAL, ignored
        fg.save({"w": np.arange(5.0)}, f, format=fmt)
    with open(r, "rb") as f:
        assert fg.load(f, format=fmt)["w"].tolist() == [0, 1, 2, 3, 4]
    r, w = os.pipe()
    with open(w, "wb") as f:
        f.write(b"\0" * 100)
    with open(r, "rb") as f, pytest.raises(ValueError, match="BufferedReader object>"):
        fg.load(f, format=fmt)


def test_a_full_non_blocking_file_raises_instead_of_spinning(fg):
    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            return None                            # would block, nothing taken

    with pytest.raises(BlockingIOError, match="Full object> took no bytes"):
        fg.save({"a": 1}, Full())


def test_safetensors_accepts_any_mapping(fg, tmp_path):
    import types
    sd = types.MappingProxyType({"w": np.arange(3, dtype=np.int16)})
    fg.save(sd, tmp_path / "m.safetensors")
    _same_arrays(dict(sd), fg.load(tmp_path / "m.safetensors"))


def test_minimal_file_objects(fg, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    w = Writer()
    fg.save({"a": np.arange(3), "b": 1.5}, w)
    assert synced == []                                    # no fileno: nothing to sync
    back = fg.load(Reader(b"".join(w.parts)))
    assert back["a"].tolist() == [0, 1, 2] and back["b"] == 1.5


@pytest.mark.parametrize("make", [lambda p: open(p, "w"), lambda p: io.StringIO()],
                         ids=["open-w", "StringIO"])
def test_text_files_are_refused_for_save(fg, tmp_path, make):
    f = make(tmp_path / "t.fg")
    with f, pytest.raises(TypeError, match="text-mode.*binary mode"):
        fg.save({"a": 1}, f)


def test_text_files_are_refused_for_load(fg, tmp_path):
    (tmp_path / "t.fg").write_text("hello")
    for f in (open(tmp_path / "t.fg"), io.StringIO("hello")):
        with f, pytest.raises(TypeError, match="text-mode.*binary mode"):
            fg.load(f)
    for fmt in ("fastgrad", "safetensors"):
        with pytest.raises(TypeError, match="returned str.*binary mode"):
            fg.load(type("R", (), {"read": lambda self, n=-1: "text"})(), format=fmt)


@pytest.mark.parametrize("bad", [3, None, [b"x"], object(), 1.5], ids=str)
def test_other_objects_are_refused(fg, bad):
    with pytest.raises(TypeError, match=r"save: expected a path .* or a binary file object"):
        fg.save({"a": 1}, bad)
    with pytest.raises(TypeError, match=r"load: expected a path .* or a binary file object"):
        fg.load(bad)


def test_wrong_direction_and_closed_files(fg, tmp_path):
    path = tmp_path / "a.fg"
    fg.save([1], path)
    with open(path, "rb") as f:
        with pytest.raises(TypeError, match=r"a\.fg is not open for writing"):
            fg.save([2], f)
    with open(path, "ab") as f:
        with pytest.raises(TypeError, match=r"a\.fg is not open for reading"):
            fg.load(f)
    f = io.BytesIO()
    f.close()
    with pytest.raises(ValueError, match="BytesIO object> is closed"):
        fg.save([1], f)
    assert fg.load(path) == [1]


def test_unsupported_values_write_nothing_to_the_file_object(fg):
    f = io.BytesIO()
    for bad, fmt in (({"x": {1, 2}}, None), ({"x": {"nested": np.ones(2)}}, "safetensors")):
        with pytest.raises(TypeError, match="save"):
            fg.save(bad, f, format=fmt)
    assert f.getvalue() == b""


def _craft_fg(arrays, data=b""):
    header = json.dumps({"data_bytes": len(data), "arrays": arrays,
                         "root": [{"$": "array", "id": i} for i in range(len(arrays))]}).encode()
    head = struct.pack("<8sQII", b"FGSAVE\x00\x01", len(header), zlib.crc32(header),
                       zlib.crc32(data)) + header
    return head + b"\0" * (-len(head) % 64) + data


@pytest.mark.parametrize("spec", [
    {"dtype": "<f8", "shape": [1 << 40], "offset": 0, "nbytes": 8 << 40},
    {"dtype": "|S0", "shape": [1 << 50], "offset": 0, "nbytes": 0},
    {"dtype": "<f8", "shape": [0, 1 << 62, 1 << 62], "offset": 0, "nbytes": 0},
], ids=["past-end", "zero-size-items", "empty-too-large"])
@pytest.mark.parametrize("how", ["bytesio", "stream"])
def test_crafted_fastgrad_file_objects_fail_fast_and_are_named(fg, spec, how):
    raw = _craft_fg([spec])
    f = io.BytesIO(raw) if how == "bytesio" else Reader(raw, name="evil-stream")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"(BytesIO object>|evil-stream).*array 0"):
            fg.load(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_endless_stream_is_read_only_as_far_as_declared(fg):
    raw = io.BytesIO()
    fg.save({"w": np.arange(100.0)}, raw)
    raw.seek(0)
    reads = []

    class Endless:
        """The file's bytes, then zeros without end."""

        def read(self, n=-1):
            reads.append(n)
            n = 1 << 20 if n < 0 else min(n, 1 << 20)
            return (raw.read(n) or b"\0" * n).ljust(n, b"\0")

    with pytest.raises(ValueError, match="Endless object>.*unexpected bytes"):
        fg.load(Endless())
    assert len(reads) <= 3
    raw = io.BytesIO()
    fg.save({"w": np.arange(100.0)}, raw, format="safetensors")
    raw.seek(0)
    reads.clear()
    with pytest.raises(ValueError, match="Endless object>.*unexpected bytes after the data"):
        fg.load(Endless(), format="safetensors")
    assert len(reads) <= 4


def test_format_keyword(fg, tmp_path):
    with pytest.raises(ValueError, match="unknown format 'npz'"):
        fg.save({"a": np.ones(1)}, tmp_path / "a.fg", format="npz")
    with pytest.raises(ValueError, match="unknown format"):
        fg.load(tmp_path / "a.fg", format="SAFETENSORS")
    with pytest.raises(TypeError, match="metadata= is for the safetensors format only"):
        fg.save({"a": np.ones(1)}, tmp_path / "a.fg", metadata={"k": "v"})
    assert _folder(tmp_path) == []
    # Explicit formats override the name, both ways.
    fg.save({"a": np.ones(2)}, tmp_path / "x.safetensors", format="fastgrad")
    assert (tmp_path / "x.safetensors").read_bytes().startswith(b"FGSAVE")
    assert fg.load(tmp_path / "x.safetensors", format="fastgrad")["a"].tolist() == [1, 1]
    with pytest.raises(ValueError, match=r"x\.safetensors is not a readable safetensors file"):
        fg.load(tmp_path / "x.safetensors")
    fg.save({"a": np.ones(2)}, tmp_path / "x.bin", format="safetensors")
    assert fg.load(tmp_path / "x.bin", format="safetensors")["a"].tolist() == [1, 1]
    with pytest.raises(ValueError, match=r"x\.bin is not a readable fastgrad file.*a "
                       r"safetensors file\? name it \.safetensors or pass format='safetensors'"):
        fg.load(tmp_path / "x.bin")


def test_file_object_name_picks_the_format(fg, tmp_path):
    sd = {"w": np.arange(4, dtype=np.float32)}
    with open(tmp_path / "m.SafeTensors", "wb") as f:
        fg.save(sd, f)
    assert (tmp_path / "m.SafeTensors").read_bytes()[8:9] == b"{"
    with open(tmp_path / "m.SafeTensors", "rb") as f:
        _same_arrays(fg.load(f), sd)
    f = io.BytesIO()
    fg.save(sd, f, format="safetensors")
    f.seek(0)
    _same_arrays(fg.load(f, format="safetensors"), sd)
    _same_arrays(fg.load(Reader(f.getvalue()), format="safetensors"), sd)


# ---------------------------------------------------------------------------
# safetensors: what save writes, what it refuses
# ---------------------------------------------------------------------------

def _parse(raw):
    """Our own reading of a safetensors file, from its specification."""
    (n,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8:8 + n])
    return n, header, raw[8 + n:]


def test_safetensors_layout_follows_the_specification(fg, tmp_path):
    sd = _state()
    fg.save(sd, tmp_path / "m.safetensors", metadata={"format": "np", "note": "héllo"})
    raw = (tmp_path / "m.safetensors").read_bytes()
    n, header, data = _parse(raw)
    assert raw[8:9] == b"{" and (8 + n) % 8 == 0
    assert header.pop("__metadata__") == {"format": "np", "note": "héllo"}
    assert list(header) == list(sd)                               # the dict's order
    names = {"float32": "F32", "int64": "I64", "bool": "BOOL", "float16": "F16",
             "float64": "F64", "uint8": "U8", "int32": "I32", "uint64": "U64",
             "complex64": "C64"}
    spans = []
    for key, arr in sd.items():
        entry = header[key]
        assert set(entry) == {"dtype", "shape", "data_offsets"}
        assert entry["dtype"] == names[arr.dtype.name] and entry["shape"] == list(arr.shape)
        begin, end = entry["data_offsets"]
        assert data[begin:end] == arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        assert begin % arr.dtype.itemsize == 0                    # aligned for mapping readers
        spans.append((begin, end))
    pos = 0
    for begin, end in sorted(spans):                              # covered, no holes/overlaps
        assert begin == pos
        pos = end
    assert pos == len(data)


def test_safetensors_round_trip(fg, tmp_path):
    sd = _state()
    fg.save(sd, tmp_path / "m.safetensors")
    back = fg.load(tmp_path / "m.safetensors")
    _same_arrays(sd, back)
    for arr in back.values():
        assert type(arr) is np.ndarray and arr.flags.writeable and arr.flags.c_contiguous
        assert arr.flags.aligned and arr.dtype.isnative
    before = {k: v.copy() for k, v in back.items()}
    back["0.weight"][...] = 0                                     # copies: nothing else moves
    for k in back:
        if k != "0.weight":
            np.testing.assert_array_equal(back[k], before[k])


def test_tensors_views_and_byte_order(fg, tmp_path):
    base = fg.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    sd = {"base": base, "T": base.T, "row": base[1], "y": base * 2.0,
          "big": big, "bigT": big.T, "scalar": np.float32(2.5)}
    fg.save(sd, tmp_path / "v.safetensors")
    _, header, data = _parse((tmp_path / "v.safetensors").read_bytes())
    assert header["big"]["dtype"] == "I32"
    assert data[slice(*header["big"]["data_offsets"])] == np.arange(6, dtype="<i4").tobytes()
    back = fg.load(tmp_path / "v.safetensors")
    want = {"base": np.arange(12.0).reshape(3, 4), "T": np.arange(12.0).reshape(3, 4).T,
            "row": np.arange(4.0, 8.0), "y": np.arange(12.0).reshape(3, 4) * 2,
            "big": np.arange(6, dtype=np.int32).reshape(2, 3),
            "bigT": np.arange(6, dtype=np.int32).reshape(2, 3).T,
            "scalar": np.array(2.5, dtype=np.float32)}
    _same_arrays(want, back)


@pytest.mark.parametrize("how", ["path", "file-object"])
def test_safetensors_load_reads_straight_into_the_arrays(fg, tmp_path, how):
    sd = {"a": np.ones(1 << 19), "b": np.arange(1 << 18, dtype=np.int32)}     # 5 MB
    path = tmp_path / "big.safetensors"
    fg.save(sd, path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        tracemalloc.start()
        try:
            back = fg.load(path) if how == "path" else fg.load(f)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    _same_arrays(sd, back)
    assert peak < size + (1 << 20), (peak, size)          # the arrays, and no copy of the file


def test_model_state_dict_round_trip(fg, tmp_path):
    fg.manual_seed(0)
    model = fg.nn.Sequential(fg.nn.Linear(3, 5), fg.nn.Tanh(), fg.nn.Linear(5, 2))
    fg.save(model.state_dict(), tmp_path / "m.safetensors")
    other = fg.nn.Sequential(fg.nn.Linear(3, 5), fg.nn.Tanh(), fg.nn.Linear(5, 2))
    other.load_state_dict(fg.load(tmp_path / "m.safetensors"))
    x = fg.tensor(np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32))
    np.testing.assert_array_equal(other(x).numpy(), model(x).numpy())


@pytest.mark.parametrize("bad, match", [
    ({"model": {"w": np.ones(2)}, "epoch": 3},
     r"holds only arrays and tensors, not dict at obj\['model'\].*use the \.fg format, or save "
     r"model\.state_dict\(\)"),
    ([np.ones(2)], r"one flat dict of name -> array or tensor, got list.*use the \.fg format"),
    ({"w": 1.5}, r"not float at obj\['w'\]"),
    ({"w": [1.0, 2.0]}, r"not list at obj\['w'\]"),
    ({0: np.ones(2)}, r"names must be str, got 0 \(int\)"),
    ({"w": np.ones(2, dtype=np.complex128)}, r"cannot hold obj\['w'\] of dtype complex128"),
    ({"w": np.array(["ab"])}, r"cannot hold obj\['w'\] of dtype <U2"),
    ({"w": np.array([None], dtype=object)}, r"of dtype object"),
    ({"w": np.ones(2, dtype="datetime64[s]")}, r"of dtype datetime64"),
    ({"w": np.ma.array([1.0], mask=[True])}, r"masked array"),
    ({"__metadata__": np.ones(1)}, r"'__metadata__' is reserved"),
], ids=["nested", "list", "float", "list-value", "int-key", "complex128", "str", "object",
        "datetime", "masked", "reserved"])
def test_safetensors_refuses_what_it_cannot_hold(fg, tmp_path, bad, match):
    path = tmp_path / "m.safetensors"
    fg.save({"old": np.ones(1)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=match):
        fg.save(bad, path)
    assert path.read_bytes() == before and _folder(tmp_path) == ["m.safetensors"]


@pytest.mark.parametrize("meta", [{"k": 1}, {1: "v"}, ["k", "v"], "k=v"], ids=str)
def test_metadata_must_map_str_to_str(fg, tmp_path, meta):
    with pytest.raises(TypeError, match="metadata must be a dict of str -> str"):
        fg.save({"w": np.ones(1)}, tmp_path / "m.safetensors", metadata=meta)
    assert _folder(tmp_path) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_safetensors_save_is_atomic(fg, tmp_path, monkeypatch, failing):
    path = tmp_path / "m.safetensors"
    fg.save({"v": np.ones(1)}, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="simulated"):
        fg.save({"v": np.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and _folder(tmp_path) == ["m.safetensors"]


# ---------------------------------------------------------------------------
# safetensors: interop with the safetensors package (and PyTorch)
# ---------------------------------------------------------------------------

def test_our_files_load_in_safetensors_numpy(fg, tmp_path):
    _safetensors()
    from safetensors import safe_open
    from safetensors.numpy import load_file
    sd = _state()
    base = np.arange(12.0)
    sd.update(base=base, view=base[2:8].reshape(2, 3), strided=base[::3])   # shared memory
    fg.save(sd, tmp_path / "m.safetensors", metadata={"epoch": "3"})
    back = load_file(str(tmp_path / "m.safetensors"))
    _same_arrays(sd, {k: back[k] for k in sd})
    with safe_open(str(tmp_path / "m.safetensors"), framework="np") as f:
        assert f.metadata() == {"epoch": "3"}
    f = io.BytesIO()
    fg.save(sd, f, format="safetensors")
    from safetensors.numpy import load
    back = load(f.getvalue())
    _same_arrays(sd, {k: back[k] for k in sd})


def test_our_files_load_into_a_torch_model(fg, tmp_path):
    _safetensors()
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    fg.manual_seed(3)
    model = fg.nn.Sequential(fg.nn.Linear(4, 8), fg.nn.Tanh(), fg.nn.Linear(8, 3))
    fg.save(model.state_dict(), tmp_path / "m.safetensors")
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    net.load_state_dict(load_file(str(tmp_path / "m.safetensors")))       # strict
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = model(fg.tensor(x)).numpy()
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_files_written_by_safetensors_numpy_load(fg, tmp_path):
    _safetensors()
    from safetensors.numpy import save, save_file
    sd = _state()
    save_file(sd, str(tmp_path / "n.safetensors"), metadata={"a": "b"})
    back = fg.load(tmp_path / "n.safetensors")
    assert sorted(back) == sorted(sd)
    _same_arrays(sd, {k: back[k] for k in sd})
    raw = save(sd)
    for f in (io.BytesIO(raw), Reader(raw)):
        back = fg.load(f, format="safetensors")
        _same_arrays(sd, {k: back[k] for k in sd})


def test_files_written_by_safetensors_torch_load(fg, tmp_path):
    _safetensors()
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(3, 4, generator=g), "d": torch.randn(2, dtype=torch.float64,
                                                                    generator=g),
               "bf": torch.randn(5, generator=g).to(torch.bfloat16),
               "h": torch.randn(2, 2, generator=g).half(), "i": torch.arange(-3, 3),
               "b": torch.tensor([True, False, True]), "u": torch.arange(4, dtype=torch.uint8),
               "s": torch.tensor(1.5), "e": torch.zeros(0, 2)}
    save_file(tensors, str(tmp_path / "t.safetensors"))
    back = fg.load(tmp_path / "t.safetensors")
    assert sorted(back) == sorted(tensors)
    for k, t in tensors.items():
        want = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        assert back[k].dtype == want.dtype and back[k].shape == want.shape, k
        np.testing.assert_array_equal(back[k], want)
    # and into a fastgrad model of the same architecture
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    save_file(net.state_dict(), str(tmp_path / "net.safetensors"))
    model = fg.nn.Sequential(fg.nn.Linear(3, 6), fg.nn.ReLU(), fg.nn.Linear(6, 2))
    model.load_state_dict(fg.load(tmp_path / "net.safetensors"))
    x = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(fg.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# safetensors: malformed and crafted files
# ---------------------------------------------------------------------------

def _st(header, data=b"", length=None, pad=True):
    """A safetensors file with this header (a dict, or raw bytes) and data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        raw += b" " * (-(8 + len(raw)) % 8)
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


MALFORMED = {
    "empty-file": (b"", "less than the 8-byte header length"),
    "short-length": (b"\x10\x00\x00", "less than the 8-byte header length"),
    "huge-header-length": (struct.pack("<Q", 1 << 62) + b"{}", "over the format's limit"),
    "over-limit": (struct.pack("<Q", 100_000_001) + b"{}", "over the format's limit"),
    "header-past-end": (struct.pack("<Q", 50_000_000) + b'{"a":1}', "truncated: the header"),
    "not-json": (_st(b"{not json"), "not valid JSON"),
    "not-an-object": (_st(b"[1, 2]"), r"does not start with '\{'"),
    "not-utf8": (_st(b'{"\xff": 1}'), "not valid JSON"),
    "nan": (_st(b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 0]}}'),
            "NaN, which is not JSON"),
    "duplicate": (_st(b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
                      b'"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', b"ab"),
                  "'a' appears twice"),
    "past-end": (_st({"a": _t("F32", [4], 0, 16)}, b"\0" * 8), "truncated: the data section"),
    "huge-past-end": (_st({"a": _t("F64", [1 << 40], 0, 8 << 40)}, b"\0" * 8),
                      "truncated: the data section needs 8796093022208"),
    "huge-many": (_st({"a%d" % i: _t("F64", [1 << 30], (8 << 30) * i, (8 << 30) * (i + 1))
                       for i in range(40)}), "truncated: the data section"),
    "overlap": (_st({"a": _t("F32", [2], 0, 8), "b": _t("F32", [2], 4, 12)}, b"\0" * 12),
                r"tensor 'b': data_offsets \[4, 12\] overlap"),
    "same-span": (_st({"a": _t("F32", [2], 0, 8), "b": _t("F32", [2], 0, 8)}, b"\0" * 8),
                  "overlap"),
    "hole": (_st({"a": _t("F32", [1], 0, 4), "b": _t("F32", [1], 8, 12)}, b"\0" * 12),
             "leave a hole at 4"),
    "not-from-zero": (_st({"a": _t("U8", [4], 4, 8)}, b"\0" * 8), "leave a hole at 0"),
    "trailing": (_st({"a": _t("U8", [4], 0, 4)}, b"\0" * 6), "unexpected bytes after the data"),
    "unknown-dtype": (_st({"a": _t("F128", [1], 0, 16)}, b"\0" * 16), "unknown dtype 'F128'"),
    "numpy-name": (_st({"a": _t("float32", [1], 0, 4)}, b"\0" * 4), "unknown dtype 'float32'"),
    "dtype-not-str": (_st({"a": _t(7, [1], 0, 4)}, b"\0" * 4), "unknown dtype '7'"),
    "fp8": (_st({"a": _t("F8_E4M3", [4], 0, 4)}, b"\0" * 4), "F8_E4M3 has no NumPy equivalent"),
    "size-mismatch": (_st({"a": _t("F32", [3], 0, 8)}, b"\0" * 8),
                      r"hold 8 bytes, but shape \[3\] of F32 needs 12"),
    "reversed": (_st({"a": _t("U8", [0], 8, 0)}, b"\0" * 8), "bad data_offsets"),
    "negative": (_st({"a": _t("U8", [-1], 0, 0)}), "bad shape"),
    "bool-dim": (_st({"a": _t("U8", [True], 0, 1)}, b"\0"), "bad shape"),
    "float-offset": (_st({"a": _t("U8", [1], 0.0, 1)}, b"\0"), "bad data_offsets"),
    "too-many-dims": (_st({"a": _t("U8", [1] * 65, 0, 1)}, b"\0"), "bad shape"),
    "empty-too-large": (_st({"a": _t("F64", [0, 1 << 62, 1 << 62], 0, 0)}), "too large"),
    "extra-key": (_st({"a": dict(_t("U8", [1], 0, 1), extra=1)}, b"\0"), "bad description"),
    "missing-key": (_st({"a": {"dtype": "U8", "shape": [1]}}, b"\0"), "bad description"),
    "entry-not-dict": (_st({"a": [1, 2]}), "bad description"),
    "metadata": (_st({"__metadata__": {"k": 1}}), "__metadata__ must map str to str"),
    "bool-bytes": (_st({"a": _t("BOOL", [2], 0, 2)}, b"\x01\x02"), "bytes other than 0 and 1"),
    "deep": (_st(b"{" + b'"a":[' * 100000 + b"]" * 100000 + b"}"), "JSON|deeply"),
}


@pytest.mark.parametrize("how", ["path", "bytesio", "stream"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_safetensors_fail_before_allocating(fg, tmp_path, case, how):
    raw, match = MALFORMED[case]
    if how == "path":
        source = tmp_path / "evil.safetensors"
        source.write_bytes(raw)
        named = str(source)
    elif how == "bytesio":
        source, named = io.BytesIO(raw), "<BytesIO object>"
    else:
        source, named = Reader(raw, name="evil-stream"), "evil-stream"
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            fg.load(source, format="safetensors")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (1 << 20) + 4 * len(raw), peak     # nothing of the declared sizes was made
    msg = str(info.value)
    assert msg.startswith("load: %s is not a readable safetensors file: " % named), msg
    assert re.search(match, msg), msg


def test_safetensors_edge_cases_that_are_valid(fg, tmp_path):
    """The checks refuse what the specification forbids, not what it allows."""
    data = struct.pack("<f", 1.5) + b"\x01\x00" + b"\x07"
    header = {"__metadata__": None, "s": _t("F32", [], 0, 4), "e": _t("F64", [0, 5], 4, 4),
              "b": _t("BOOL", [2], 4, 6), "z": _t("U8", [1, 1], 6, 7),
              "e2": _t("I64", [3, 0], 7, 7), "": _t("U8", [0], 7, 7)}
    raw = _st(json.dumps(header, indent=2).encode() + b"   ", data)   # whitespace, padding
    for source in (io.BytesIO(raw), Reader(raw)):
        back = fg.load(source, format="safetensors")
        assert list(back) == ["s", "e", "b", "z", "e2", ""]
        assert back["s"].shape == () and back["s"] == 1.5 and back["s"].dtype == np.float32
        assert back["e"].shape == (0, 5) and back["e2"].shape == (3, 0)
        assert back["b"].tolist() == [True, False] and back["z"].tolist() == [[7]]
    bf = np.array([1.0, -2.5, 3.140625, np.inf], dtype=np.float32)
    raw = _st({"h": _t("BF16", [4], 0, 8)}, (bf.view("<u4") >> 16).astype("<u2").tobytes())
    back = fg.load(io.BytesIO(raw), format="safetensors")["h"]
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, bf)
