"""fg.save / fg.load under hostile conditions: killed writers, long names, crafted files."""
import errno
import json
import os
import random
import signal
import struct
import time
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest


def _folder(path):
    return sorted(p.name for p in path.iterdir())


def _io(fg):
    # This core's copy of the module (sys.modules holds only the last copy imported).
    return fg.io


def _tmpfile_works(folder):
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return False
    try:
        os.close(os.open(folder, flag | os.O_WRONLY, 0o600))
    except OSError:
        return False
    return True


@pytest.fixture(params=["unnamed", "named"])
def way(request, fg, tmp_path, monkeypatch):
    """Each write test runs through the unnamed file (Linux) and through the named fallback."""
    io = _io(fg)
    monkeypatch.setattr(io, "_cannot_link", set())
    if request.param == "unnamed":
        if not _tmpfile_works(tmp_path):
            pytest.skip("no O_TMPFILE here: only the named fallback runs")
    elif hasattr(os, "O_TMPFILE"):
        monkeypatch.delattr(os, "O_TMPFILE")
    return request.param


# ---------------------------------------------------------------------------
# Killed, interrupted and failing saves
# ---------------------------------------------------------------------------

def _payload(v, n):
    return {"v": v, "a": np.full(n, float(v)), "tail": [v, str(v)]}


def _check_payload(obj, n):
    v = obj["v"]
    assert obj["tail"] == [v, str(v)]
    assert obj["a"].shape == (n,) and (obj["a"] == v).all()
    return v


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_during_save_leaves_the_old_or_new_file_and_nothing_else(fg, tmp_path):
    """20 writers killed by SIGKILL at random moments while saving 4 MB over a good file.

    Each child saves new versions over the file in a loop, so a kill lands in
    some save (encoding, writing, fsync, naming).  The parent first stops the
    child (SIGSTOP) at the random moment and looks at the folder: the only
    moment a second file may exist is between the link and the rename, and
    then it must be complete; the child then runs on and is stopped again.
    A kill of the stopped child is a kill at exactly that moment.
    """
    if not _tmpfile_works(tmp_path):
        pytest.skip("no O_TMPFILE on this system: a SIGKILL mid-write leaves the temporary file")
    n = 1 << 19                                          # 4 MB of float64
    path = tmp_path / "ckpt.fg"
    fg.save(_payload(0, n), path)
    start = time.perf_counter()
    fg.save(_payload(0, n), path)                        # the scale of the random moments
    scale = max(time.perf_counter() - start, 1e-3)
    rnd = random.Random(1234)
    newest = 0
    for run in range(20):
        first = newest + 1
        pid = os.fork()
        if pid == 0:                                     # the child: save, save, save...
            try:
                deadline = time.monotonic() + 60
                v = first
                while time.monotonic() < deadline:
                    fg.save(_payload(v, n), path)
                    v += 1
            finally:
                os._exit(0)
        reaped = False
        try:
            for _ in range(100):
                time.sleep(rnd.uniform(0, 2 * scale))
                os.kill(pid, signal.SIGSTOP)
                status = os.waitpid(pid, os.WUNTRACED)[1]
                if not os.WIFSTOPPED(status):            # it ended on its own (never expected)
                    reaped = True
                    break
                others = [name for name in _folder(tmp_path) if name != "ckpt.fg"]
                if not others:
                    break
                # Stopped between link and rename: the named file is complete.
                assert len(others) == 1 and len(others[0]) < 20, others
                assert _check_payload(fg.load(tmp_path / others[0]), n) >= first
                os.kill(pid, signal.SIGCONT)
        finally:
            if not reaped:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        assert _folder(tmp_path) == ["ckpt.fg"], "run %d left %s" % (run, _folder(tmp_path))
        v = _check_payload(fg.load(path), n)
        assert v >= newest
        newest = v


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_interrupted_save_keeps_old_file_and_leaves_nothing(fg, tmp_path, monkeypatch, way,
                                                           failing, error):
    path = tmp_path / "a.fg"
    fg.save({"version": 1}, path)
    before = path.read_bytes()
    real = getattr(os, failing)
    calls = []

    def interrupt(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2 or failing != "write":      # mid-way through the chunks
            raise error("interrupted (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, failing, interrupt)
    with pytest.raises(error, match="simulated"):
        fg.save({"version": 2, "w": np.ones(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _folder(tmp_path) == ["a.fg"]


def test_temporary_name_is_short_and_in_the_same_folder(fg, tmp_path, monkeypatch, way):
    made = []
    real_replace = os.replace

    def replace(src, dst):
        made.append(os.fspath(src))
        assert os.path.exists(src) and os.path.getsize(src) > 0     # complete before it is named
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    fg.save({"w": np.ones(10)}, tmp_path / ("x" * 200))
    (tmp,) = made
    assert os.path.dirname(tmp) == str(tmp_path)
    assert len(os.path.basename(tmp)) <= 16 and os.path.basename(tmp).startswith(".")
    assert _folder(tmp_path) == ["x" * 200]


def test_unnamed_file_refused_by_the_file_system_falls_back(fg, tmp_path, monkeypatch):
    if not hasattr(os, "O_TMPFILE"):
        pytest.skip("no O_TMPFILE on this system")
    io = _io(fg)
    monkeypatch.setattr(io, "_cannot_link", set())
    real_open = os.open
    for code in (errno.EOPNOTSUPP, errno.EISDIR):
        def refuse(name, flags, *args, **kwargs):
            if flags & os.O_TMPFILE == os.O_TMPFILE:
                raise OSError(code, os.strerror(code))
            return real_open(name, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
        fg.save([code, np.arange(3)], tmp_path / "a.fg")
        monkeypatch.setattr(os, "open", real_open)
        back = fg.load(tmp_path / "a.fg")
        assert back[0] == code and back[1].tolist() == [0, 1, 2]
        assert _folder(tmp_path) == ["a.fg"]


def test_unnamed_file_that_cannot_be_linked_falls_back(fg, tmp_path, monkeypatch):
    if not _tmpfile_works(tmp_path):
        pytest.skip("no O_TMPFILE here")
    io = _io(fg)
    monkeypatch.setattr(io, "_cannot_link", set())
    tries = []

    def refuse(fd, tmp):
        tries.append(tmp)
        raise PermissionError(errno.EPERM, "not permitted (simulated)")

    monkeypatch.setattr(io, "_link_proc", refuse)
    monkeypatch.setattr(io, "_link_empty_path", refuse)
    for v in (1, 2):
        fg.save({"v": v}, tmp_path / "a.fg")
        assert fg.load(tmp_path / "a.fg") == {"v": v}
        assert _folder(tmp_path) == ["a.fg"]
    assert len(tries) == 2                 # the second save went straight to the named file


def test_folder_errors_are_raised_as_they_are(fg, tmp_path, way):
    with pytest.raises(FileNotFoundError):
        fg.save([1], tmp_path / "missing" / "a.fg")
    (tmp_path / "d.fg").mkdir()
    with pytest.raises(OSError):
        fg.save([1], tmp_path / "d.fg")                 # the target is a folder
    assert _folder(tmp_path) == ["d.fg"]


def test_names_up_to_the_file_system_limit(fg, tmp_path, way):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    for length in sorted({249, 252, limit}):
        name = ("n%d" % length).ljust(length, "x")
        fg.save({"name": name, "w": np.arange(4.0)}, tmp_path / name)
        fg.save({"name": name, "w": np.arange(5.0)}, tmp_path / name)     # over an old file
        back = fg.load(tmp_path / name)
        assert back["name"] == name and back["w"].tolist() == [0, 1, 2, 3, 4]
    assert sorted(len(p) for p in _folder(tmp_path)) == sorted({249, 252, limit})


# ---------------------------------------------------------------------------
# Ndarray subclasses
# ---------------------------------------------------------------------------

def test_masked_array_is_refused_with_what_to_do(fg, tmp_path):
    m = np.ma.array([1.0, 2.0, 3.0], mask=[False, True, False])
    for obj in (m, {"w": [m]}, np.ma.masked):
        with pytest.raises(TypeError, match=r"masked array.*mask would be lost.*filled"):
            fg.save(obj, tmp_path / "a.fg")
    assert _folder(tmp_path) == []
    # What the message suggests works.
    fg.save({"data": m.data, "mask": np.ma.getmaskarray(m)}, tmp_path / "a.fg")
    back = fg.load(tmp_path / "a.fg")
    np.testing.assert_array_equal(np.ma.array(back["data"], mask=back["mask"]).filled(0),
                                  [1, 0, 3])


def test_matrix_and_memmap_save_their_values(fg, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        mat = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    mm = np.memmap(tmp_path / "raw.bin", dtype=np.int32, mode="w+", shape=(3, 2))
    mm[:] = np.arange(6).reshape(3, 2)
    fg.save({"mat": mat, "mm": mm, "col": mat[:, 1], "mmT": mm.T}, tmp_path / "a.fg")
    back = fg.load(tmp_path / "a.fg")
    for key, want in (("mat", np.asarray(mat)), ("mm", np.asarray(mm)),
                      ("col", np.asarray(mat[:, 1])), ("mmT", np.asarray(mm).T)):
        assert type(back[key]) is np.ndarray
        assert back[key].dtype == want.dtype and back[key].shape == want.shape
        np.testing.assert_array_equal(back[key], want)
    del mm


# ---------------------------------------------------------------------------
# Crafted files
# ---------------------------------------------------------------------------

def _craft(path, arrays, root=None, data=b""):
    """A file with valid checksums whose header declares `arrays`."""
    header = json.dumps({"data_bytes": len(data), "arrays": arrays,
                         "root": root if root is not None else
                         [{"$": "array", "id": i} for i in range(len(arrays))]},
                        separators=(",", ":")).encode()
    head = struct.pack("<8sQII", b"FGSAVE\x00\x01", len(header), zlib.crc32(header),
                       zlib.crc32(data)) + header
    head += b"\0" * (-len(head) % 64)
    path.write_bytes(head + data)
    return path


def _spec(dtype, shape, nbytes=0, offset=0):
    return {"dtype": dtype, "shape": shape, "offset": offset, "nbytes": nbytes}


HUGE = [
    _spec("|S0", [1 << 50]),                      # zero-size items: nbytes 0 for any shape
    _spec("<U0", [1 << 40, 1 << 20]),
    _spec("|V0", [1 << 50]),
    _spec("<f8", [0, 1 << 62, 1 << 62]),          # empty, yet no array NumPy can describe
    _spec("<f8", [1 << 40], nbytes=8 << 40),      # bytes the file does not have
    _spec("<f8", [1 << 61], nbytes=1 << 64),
    _spec("|S100000000000", [1 << 30], nbytes=1 << 60),
]


@pytest.mark.parametrize("spec", HUGE, ids=lambda s: "%s%s" % (s["dtype"], s["shape"][:3]))
def test_small_crafted_file_declaring_a_huge_array_fails_fast(fg, tmp_path, spec):
    path = _craft(tmp_path / "evil.fg", [spec])
    assert path.stat().st_size <= 192
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="evil.fg") as info:
            fg.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak                   # nothing of the declared size was made
    assert "array 0" in str(info.value)


@pytest.mark.parametrize("dtype", ["|O", "|O8", "|V8", "<M8[ns]", "<m8[s]", "<M8",
                                   "[('a', '<f8')]", "<f8,<i4", "(2,)<f8", "float64", "f8",
                                   "<f3", "<i16", "|b0", 7, None, ["<f8"]])
def test_non_numeric_or_unknown_dtypes_are_refused(fg, tmp_path, dtype):
    path = _craft(tmp_path / "d.fg", [_spec(dtype, [1], nbytes=8)], data=b"\0" * 64)
    with pytest.raises(ValueError, match=r"d\.fg.*array 0: unsupported dtype"):
        fg.load(path)


def test_every_array_is_checked_before_any_is_made(fg, tmp_path, monkeypatch):
    good = _spec("<f8", [8], nbytes=64)
    path = _craft(tmp_path / "a.fg", [good, good, _spec("<f8", [9], nbytes=72)],
                  data=b"\0" * 64)
    made = []
    real = np.frombuffer
    monkeypatch.setattr(np, "frombuffer", lambda *a, **k: made.append(1) or real(*a, **k))
    with pytest.raises(ValueError, match=r"a\.fg.*array 2"):
        fg.load(path)
    assert made == []


@pytest.mark.parametrize("spec", [
    _spec("<f8", [2], nbytes=8),                  # shape x itemsize != nbytes
    _spec("<f8", [1], nbytes=8, offset=64),       # past the end
    _spec("<f8", [1], nbytes=8, offset=60),       # straddles the end
    _spec("<f8", [-1], nbytes=8),
    _spec("<f8", [1.0], nbytes=8),
    _spec("<f8", [True], nbytes=8),
    _spec("<f8", "1", nbytes=8),
    _spec("<U1", [1], nbytes=1),                  # a unicode item is 4 bytes
    _spec("|u1", [0] * 65),                       # more dimensions than NumPy has
], ids=["size", "past-end", "straddles", "negative", "float", "bool", "str", "unicode",
        "dims"])
def test_inconsistent_sizes_are_refused_with_the_path(fg, tmp_path, spec):
    path = _craft(tmp_path / "s.fg", [spec], data=b"\0" * 64)
    with pytest.raises(ValueError, match=r"s\.fg.*array 0"):
        fg.load(path)


def test_structure_errors_name_the_path(fg, tmp_path):
    one = [_spec("<f8", [2], nbytes=16)]
    for root in ({"$": "complex", "re": 10 ** 400, "im": 0},
                 {"$": "scalar", "id": 0},               # a scalar must be 0-d
                 {"$": "dict", "keys": [1.5], "values": [1]},
                 {"$": "array", "id": True}):
        path = _craft(tmp_path / "r.fg", one, root=root, data=b"\0" * 64)
        with pytest.raises(ValueError, match=r"r\.fg"):
            fg.load(path)


def test_crafted_but_valid_files_load(fg, tmp_path):
    """The checks refuse only what save cannot write: edge cases save does write still load."""
    arrays = [_spec("<f8", [0, 1 << 40]), _spec("|S3", [2], nbytes=6),
              _spec("<U2", [1], nbytes=8, offset=8), _spec(">i4", [], nbytes=4, offset=16),
              _spec("|b1", [1] * 32, nbytes=1, offset=20)]
    data = b"abcdef\0\0" + "hé".encode("utf-32-le") + struct.pack(">i", -5) + b"\x01"
    data += b"\0" * (-len(data) % 64)
    back = fg.load(_craft(tmp_path / "ok.fg", arrays, data=data))
    assert back[0].shape == (0, 1 << 40)
    assert back[1].tolist() == [b"abc", b"def"] and back[2].tolist() == ["hé"]
    assert back[3] == -5 and back[3].dtype == np.dtype(">i4") and back[4].item() is True


# ---------------------------------------------------------------------------
# Files that are not regular files
# ---------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("head, extra", [("file", 0), ("file", 64), ("zeros", 64)],
                         ids=["exact", "long-tail", "zeros"])
def test_load_from_a_pipe_reads_only_what_the_header_declares(fg, tmp_path, head, extra):
    """A pipe (or a device such as /dev/zero) is read only as far as the header says."""
    import threading
    fg.save({"w": np.arange(1000.0)}, tmp_path / "a.fg")
    good = (tmp_path / "a.fg").read_bytes() if head == "file" else b""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    written = []

    def feed():
        with open(fifo, "wb", buffering=0) as f:
            try:
                f.write(good)
                for _ in range(extra):                    # MB of zeros after it
                    f.write(b"\0" * (1 << 20))
                    written.append(1)
                f.flush()
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    if extra:
        why = "unexpected bytes" if head == "file" else "does not start with the fastgrad header"
        with pytest.raises(ValueError, match="pipe.*" + why):
            fg.load(fifo)
    else:
        np.testing.assert_array_equal(fg.load(fifo)["w"], np.arange(1000.0))
    writer.join(10)
    assert not writer.is_alive()
    assert len(written) < 8              # the reader stopped soon after the declared end
