"""docs/tutorial.md runs as written on both cores, and prints what it shows.

The tutorial is a sequence of fenced blocks: each ```python block is followed
by a ```text block holding exactly what it prints.  Here the python blocks run
in order, in one namespace per core (as in one interactive session), with
stdout captured block by block and compared line by line with the text block
after it (trailing whitespace ignored).  A python block with no text block
right after it must print nothing.

Each core is a separate copy of the package (see conftest.py), so while the
tutorial runs, `import fastgrad as fg` and `from fastgrad.data import ...`
inside the blocks are made to resolve to the fixture's copy: every module of
that copy is put in sys.modules under its own name, and monkeypatch puts the
previous entries back afterwards.
"""
import contextlib
import io
import os
import re
import sys
import types
import warnings

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TUTORIAL = os.path.normpath(os.path.join(HERE, "..", "docs", "tutorial.md"))

FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


class Block:
    def __init__(self, kind, body, line, start, end):
        self.kind = kind          # the fence's info string: 'python', 'text', ...
        self.body = body
        self.line = line          # line of tutorial.md where the block's first body line is
        self.start = start        # offsets of the whole fenced block in the file
        self.end = end


def read_tutorial():
    with open(TUTORIAL, encoding="utf-8") as f:
        return f.read()


def fenced_blocks(text):
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2, m.start(), m.end())
            for m in FENCE.finditer(text)]


def examples(text):
    """[(python block, expected output or None)]: the text block right after, if any.

    "Right after" means nothing but blank lines between the two blocks.
    """
    found = fenced_blocks(text)
    out = []
    for i, block in enumerate(found):
        if block.kind != "python":
            continue
        nxt = found[i + 1] if i + 1 < len(found) else None
        if nxt is not None and nxt.kind == "text" and not text[block.end:nxt.start].strip():
            out.append((block, nxt.body))
        else:
            out.append((block, None))
    return out


def lines_of(output):
    """Lines without trailing whitespace, and without the blank lines at the end."""
    lines = [line.rstrip() for line in output.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def package_modules(package):
    """{module name: module} for every module of this copy of fastgrad reachable from it."""
    found, todo = {}, [package]
    while todo:
        module = todo.pop()
        if module.__name__ in found:
            continue
        found[module.__name__] = module
        for value in vars(module).values():
            if isinstance(value, types.ModuleType) and (
                    value.__name__ == "fastgrad" or value.__name__.startswith("fastgrad.")):
                todo.append(value)
    return found


def use_this_copy(fg, monkeypatch):
    """Make `import fastgrad...` inside the blocks give `fg`'s modules (undone by monkeypatch)."""
    mine = package_modules(fg)
    assert mine["fastgrad"] is fg
    for name in [n for n in sys.modules if n == "fastgrad" or n.startswith("fastgrad.")]:
        if name not in mine:
            # A module of the other core's copy: never hand it out for this one.
            monkeypatch.delitem(sys.modules, name)
    for name, module in mine.items():
        monkeypatch.setitem(sys.modules, name, module)


@contextlib.contextmanager
def global_state_restored(fg):
    """The tutorial sets the default dtype and reseeds the global generator: undo both."""
    dtype = fg.get_default_dtype()
    # manual_seed rebinds the generator that lives beside it; keep the old one to put back.
    home = getattr(fg.manual_seed, "__globals__", {})
    generator = home.get("_generator")
    try:
        yield
    finally:
        fg.set_default_dtype(dtype)
        if generator is not None:
            home["_generator"] = generator


def run_tutorial(fg, monkeypatch):
    """Run the blocks on this copy of fastgrad; yield (block, printed lines, expected lines)."""
    use_this_copy(fg, monkeypatch)
    namespace = {"__name__": "tutorial", "fg": fg}
    with global_state_restored(fg):
        for block, expected in examples(read_tutorial()):
            out = io.StringIO()
            # Padding with newlines makes tracebacks point at the lines of tutorial.md.
            code = compile("\n" * (block.line - 1) + block.body, TUTORIAL, "exec")
            with contextlib.redirect_stdout(out), warnings.catch_warnings():
                # The NaN hunt takes log(0) on purpose; NumPy warns about it.
                warnings.simplefilter("ignore", RuntimeWarning)
                exec(code, namespace)
            yield block, lines_of(out.getvalue()), (lines_of(expected) if expected else [])
    # The blocks' own imports gave this core's copy, not the other one.
    assert namespace.get("fg") is fg
    for name in ("nn", "optim"):
        if name in namespace:
            assert namespace[name] is getattr(fg, name)


def test_tutorial_runs_and_prints_what_it_shows(fg, monkeypatch):
    ran = 0
    for block, printed, expected in run_tutorial(fg, monkeypatch):
        ran += 1
        if printed != expected:
            where = "docs/tutorial.md, the python block at line %d" % block.line
            if not expected:
                pytest.fail("%s has no ```text block after it but prints:\n%s"
                            % (where, "\n".join(printed)))
            pytest.fail("%s prints:\n%s\n\nbut its ```text block shows:\n%s"
                        % (where, "\n".join(printed), "\n".join(expected)))
    assert ran >= 20


def test_fences_pair_up():
    """Every text block belongs to the python block just before it; fences are closed."""
    text = read_tutorial()
    found = fenced_blocks(text)
    assert sum(b.kind == "python" for b in found) >= 20
    for i, block in enumerate(found):
        if block.kind == "text":
            before = found[i - 1] if i else None
            assert before is not None and before.kind == "python" \
                and not text[before.end:block.start].strip(), \
                "docs/tutorial.md line %d: a text block that follows no python block" % block.line
    # An odd number of fences would leave a block open and swallow the prose after it.
    assert len(re.findall(r"^```", text, re.M)) == 2 * len(found)


def test_block_pairing_rules():
    text = ("```python\nprint(1)\n```\n\n```text\n1   \n\n```\n"
            "prose\n```python\nx = 2\n```\nmore prose\n```text\nnot this block's\n```\n")
    (first, shown), (second, none) = examples(text)
    assert first.body == "print(1)\n" and lines_of(shown) == ["1"]
    assert second.body == "x = 2\n" and none is None
    assert first.line == 2 and second.line == 11


# The lectures' numbers, in the prose and in what the blocks print (which the
# test above checks against the real output).
LECTURE_NUMBERS_IN_PROSE = [
    "x = -2, y = 5 and z = -4", "q = 3 and f = -12",      # the (x + y) z gates
    "df/dq = z = -4", "df/dz = q = 3",
    "-1/1.37² = **-0.53**", "df/dx = **0.20**",           # the sigmoid's four gates
    "b = w₀ = -2", "(-1, 0.5, 10)", "x = (4, -2, 1)",      # the neuron
    "σ(3) = 0.9526", "-0.00429", "-0.0171", "0.00857",
    "[2, 3, 1]", "⌈n/B⌉",
    "(wd/2)‖θ‖²", "1/(1 - p)",
]
LECTURE_NUMBERS_PRINTED = [
    "q = 3, f = -12", "df/dx = -4, df/dy = -4, df/dz = 3",
    "-> h: -0.5344", "-> x: 0.1966",                      # upstream at h, downstream at x
    "C = 0.002249", "dC/dW = [-0.017140, 0.008570, -0.004285]", "dC/db = -0.004285",
    "13 numbers in the gradient",
    "B = 50:  1 steps", "B =  8:  7 steps", "B =  1: 50 steps",
    "best weights restored: True",
    "values kept: [1.428571], 1/(1-p) = 1.428571",
    "in eval mode the input comes back unchanged: True",
]


def test_tutorial_has_the_lectures_numbers():
    text = read_tutorial()
    printed = "\n".join(b.body for b in fenced_blocks(text) if b.kind == "text")
    missing = [s for s in LECTURE_NUMBERS_IN_PROSE if s not in text]
    assert not missing, "docs/tutorial.md lost: %s" % missing
    missing = [s for s in LECTURE_NUMBERS_PRINTED if s not in printed]
    assert not missing, "docs/tutorial.md's outputs lost: %s" % missing
    assert "-0.53" in text and "0.20" in text


def test_pictures_are_pngs_of_modest_size():
    for name in ("neuron.png", "mlp_231.png"):
        path = os.path.join(HERE, "..", "docs", name)
        if not os.path.exists(path):
            pytest.skip("docs/%s is not rendered (run docs/make_pictures.py with Graphviz)"
                        % name)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
        assert os.path.getsize(path) < 300_000, name
        assert "](%s)" % name in read_tutorial(), "docs/tutorial.md does not show " + name
