"""The README's code runs as written, and prints what the README shows."""
import contextlib
import io
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```(python|text)\n(.*?)```", text, re.S)


def test_readme_python_blocks_run_and_print_what_is_shown(fg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                       # the training example writes a checkpoint
    monkeypatch.setitem(sys.modules, "fastgrad", fg)  # `import fastgrad as fg`: this core
    for name in ("nn", "optim", "data"):
        monkeypatch.setitem(sys.modules, "fastgrad." + name, getattr(fg, name))
    namespace = {}
    found = blocks()
    assert sum(kind == "python" for kind, _ in found) >= 3
    for i, (kind, code) in enumerate(found):
        if kind != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md block %d" % i, "exec"), namespace)
        following = found[i + 1] if i + 1 < len(found) else None
        if following is not None and following[0] == "text":
            shown = [line.rstrip() for line in following[1].strip().splitlines()]
            assert [line.rstrip() for line in out.getvalue().strip().splitlines()] == shown
    assert (tmp_path / "checkpoint.fg").exists()
    assert len(namespace["history"]) == 20
