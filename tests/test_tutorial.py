"""docs/tutorial.md runs as written, on both cores, and prints what it shows.

Every ```python block is followed by a ```text block holding its exact output.
The blocks run in order in one namespace (as a reader pasting them into one
session would), with stdout captured; trailing whitespace is ignored.
"""
import contextlib
import io
import os
import re
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIAL = os.path.join(ROOT, "docs", "tutorial.md")


def blocks(path=TUTORIAL):
    """[(kind, code, line)] of the fenced python and text blocks, in order."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2)
            for m in re.finditer(r"^```(python|text)\n(.*?)^```", text, re.S | re.M)]


def pairs(found):
    """(code, expected output, line) for each python block; each must be followed by text."""
    out = []
    for i, (kind, code, line) in enumerate(found):
        if kind != "python":
            continue
        following = found[i + 1] if i + 1 < len(found) else None
        assert following is not None and following[0] == "text", \
            "tutorial.md line %d: a python block must be followed by a text block" % line
        out.append((code, following[1], line))
    return out


def normalized(text):
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def run(fg, monkeypatch):
    """Run every block on this copy of fastgrad; yields (line, printed, expected)."""
    monkeypatch.setitem(sys.modules, "fastgrad", fg)      # `import fastgrad as fg`: this core
    for name in ("nn", "optim", "data"):
        monkeypatch.setitem(sys.modules, "fastgrad." + name, getattr(fg, name))
    # The tutorial sets the default dtype and seeds the global generator: put both back.
    state = fg.tensor.__globals__
    saved = state["_default_dtype"], state["_generator"]
    namespace = {"__name__": "tutorial"}
    try:
        for code, expected, line in pairs(blocks()):
            out = io.StringIO()
            # The line numbers of tracebacks are the lines of tutorial.md.
            source = "\n" * (line - 1) + code
            with contextlib.redirect_stdout(out), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)    # log(0) in the anomaly part
                exec(compile(source, TUTORIAL, "exec"), namespace)
            yield line, normalized(out.getvalue()), normalized(expected)
    finally:
        state["_default_dtype"], state["_generator"] = saved


def test_every_python_block_has_its_output():
    found = blocks()
    assert sum(kind == "python" for kind, _, _ in found) >= 20
    pairs(found)


def test_tutorial_runs_and_prints_what_it_shows(fg, monkeypatch):
    for line, printed, expected in run(fg, monkeypatch):
        assert printed == expected, "tutorial.md line %d prints:\n%s" % (line, "\n".join(printed))


def test_pictures_exist_and_are_modest():
    for name in ("neuron", "mlp_231"):
        png = os.path.join(ROOT, "docs", name + ".png")
        if not os.path.exists(png):
            pytest.skip("docs/%s.png not rendered (Graphviz missing when the docs were built)"
                        % name)
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(png) < 300_000
