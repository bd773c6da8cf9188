"""fg.save / fg.load: round trips, no pickle, atomic writes, damaged files."""
import json
import math
import os
import struct
import zlib

import numpy as np
import pytest


def _same(a, b):
    """Deep equality that also checks container types, dtypes and shapes."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and (a == b or (a != a and b != b))
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def _nested():
    rng = np.random.default_rng(0)
    return {
        "model": {"0.weight": rng.standard_normal((3, 2)).astype(np.float32),
                  "0.bias": np.zeros(3, dtype=np.float32)},
        "optim": {"state": {0: {"step": np.array(3.0), "exp_avg": rng.standard_normal(4)}},
                  "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1],
                                    "amsgrad": False, "name": None}]},
        "epoch": 3,
        "big": 2 ** 70,
        "floats": [0.1, -0.0, math.inf, -math.inf, math.nan, 1e-310],
        "complex": 1 - 2j,
        "scalars": (np.float32(1.5), np.int64(-7), np.bool_(True), np.float64(0.3)),
        "arrays": [np.arange(6, dtype=np.int32).reshape(2, 3).T,      # not contiguous
                   np.array(2.5), np.zeros((0, 4)), np.array([True, False]),
                   np.array([1 + 1j], dtype=np.complex64), np.array(["ab", "c"]),
                   np.arange(4, dtype=">f8")],
        "empty": ({}, [], ()),
        "text": "héllo",
        -1: "negative int key",
    }


def test_round_trip_nested(fg, tmp_path):
    obj = _nested()
    fg.save(obj, tmp_path / "a.fg")
    back = fg.load(tmp_path / "a.fg")
    _same(obj, back)
    assert isinstance(back["optim"]["param_groups"][0]["betas"], tuple)
    assert list(back["optim"]["state"]) == [0]                       # int keys stay int
    assert back["arrays"][0].flags.c_contiguous and back["arrays"][0].flags.writeable


def test_tensors_load_as_arrays(fg, tmp_path):
    t = fg.tensor(np.array([[1.0, 2.0]]), requires_grad=True)
    y = t * 3.0                                       # a computed tensor too
    fg.save({"t": t, "y": [y]}, str(tmp_path / "t.fg"))
    back = fg.load(str(tmp_path / "t.fg"))
    assert type(back["t"]) is np.ndarray and back["t"].dtype == np.float64
    np.testing.assert_array_equal(back["t"], [[1.0, 2.0]])
    np.testing.assert_array_equal(back["y"][0], [[3.0, 6.0]])


def test_top_level_values(fg, tmp_path):
    for obj in (None, 5, "x", np.ones(3), (1, [2, (3,)]), True, 0.25):
        fg.save(obj, tmp_path / "v.fg")
        _same(obj, fg.load(tmp_path / "v.fg"))


def test_no_pickle_in_the_file(fg, tmp_path):
    fg.save({"a": np.arange(3.0), "b": ("x", 1)}, tmp_path / "a.fg")
    raw = (tmp_path / "a.fg").read_bytes()
    assert raw.startswith(b"FGSAVE")
    assert b"\x80\x04" not in raw and b"\x80\x05" not in raw     # pickle protocol markers


def _rewrite_header(path, change):
    """Edit the JSON header of a saved file, keeping its checksums valid."""
    raw = path.read_bytes()
    magic, n, _, data_crc = struct.unpack_from("<8sQII", raw)
    header = json.loads(raw[24:24 + n])
    change(header)
    new = json.dumps(header).encode()
    start = -(-(24 + n) // 64) * 64
    new_start = -(-(24 + len(new)) // 64) * 64
    out = struct.pack("<8sQII", magic, len(new), zlib.crc32(new), data_crc) + new
    out += b"\0" * (new_start - len(out)) + raw[start:]
    path.write_bytes(out)


@pytest.mark.parametrize("change", [
    lambda h: h["arrays"][0].update(dtype="|O"),                  # object arrays: never
    lambda h: h["arrays"][0].update(shape=[100]),                 # bytes do not fit
    lambda h: h["arrays"][0].update(offset=-8),
    lambda h: h.update(root={"$": "pickle", "data": "..."}),      # unknown tag
    lambda h: h.update(root={"$": "array", "id": 5}),             # no such array
    lambda h: h.pop("root"),
], ids=["object-dtype", "bad-shape", "bad-offset", "unknown-tag", "bad-id", "no-root"])
def test_crafted_headers_are_refused(fg, tmp_path, change):
    path = tmp_path / "a.fg"
    fg.save({"a": np.arange(3.0)}, path)
    _rewrite_header(path, change)
    with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
        fg.load(path)


def test_missing_file(fg, tmp_path):
    with pytest.raises(FileNotFoundError):
        fg.load(tmp_path / "nope.fg")


def test_truncated_file(fg, tmp_path):
    path = tmp_path / "a.fg"
    fg.save({"w": np.arange(100.0), "n": 1}, path)
    raw = path.read_bytes()
    for cut in (0, 5, 20, 30, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="a.fg"):
            fg.load(path)


def test_corrupt_file(fg, tmp_path):
    path = tmp_path / "a.fg"
    fg.save({"w": np.arange(100.0), "n": 1}, path)
    raw = bytearray(path.read_bytes())
    for position in (30, len(raw) - 10):               # in the header, in the data
        damaged = bytearray(raw)
        damaged[position] ^= 0xFF
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match="a.fg.*(checksum|JSON)"):
            fg.load(path)
    path.write_bytes(bytes(raw) + b"extra")
    with pytest.raises(ValueError, match="unexpected bytes"):
        fg.load(path)


def test_foreign_files(fg, tmp_path):
    np.save(tmp_path / "x.npy", np.arange(3))
    (tmp_path / "t.txt").write_text("hello world, this is not a checkpoint\n")
    for name in ("x.npy", "t.txt"):
        with pytest.raises(ValueError, match=name):
            fg.load(tmp_path / name)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("bad", [{1, 2}, object(), {"k": [1, {(1, 2): 3}]}, {True: 1},
                                 np.array([None], dtype=object)],
                         ids=["set", "object", "tuple-key", "bool-key", "object-array"])
def test_unsupported_values_raise_before_writing(fg, tmp_path, bad):
    path = tmp_path / "a.fg"
    fg.save({"good": np.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="save"):
        fg.save({"x": [1, bad]}, path)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == ["a.fg"]


def test_reference_cycle_is_refused(fg, tmp_path):
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="cycle"):
        fg.save(loop, tmp_path / "a.fg")
    assert _leftovers(tmp_path) == []
    shared = [1]
    fg.save([shared, shared], tmp_path / "a.fg")             # shared, not cyclic: fine
    assert fg.load(tmp_path / "a.fg") == [[1], [1]]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_keeps_old_file_and_no_temp(fg, tmp_path, monkeypatch, failing):
    path = tmp_path / "a.fg"
    fg.save({"version": 1}, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="simulated"):
        fg.save({"version": 2, "w": np.ones(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == ["a.fg"]
    assert fg.load(path) == {"version": 1}


def test_save_replaces_and_keeps_permissions_sane(fg, tmp_path):
    path = tmp_path / "a.fg"
    fg.save([1], path)
    fg.save([2], path)
    assert fg.load(path) == [2]
    assert _leftovers(tmp_path) == ["a.fg"]
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
