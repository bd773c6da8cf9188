"""One fixture runs every test on both cores.

The core is chosen once, when fastgrad is imported, so each core gets its own
copy of the package: `load_fastgrad(name)` imports fastgrad with
FASTGRAD_BACKEND=name into a fresh set of module objects and caches it.  Tests
use the `fg` fixture (and `fg.nn`, `fg.optim`, `fg.data`, ...) instead of a
module-level `import fastgrad`.

The compiled core must import: a test run on the reference core alone would
hide a broken build.  Set FASTGRAD_TEST_PURE_ONLY=1 to run the reference core
only (a machine without a C compiler).
"""
import importlib
import os
import sys

import numpy as np
import pytest

BACKENDS = ("python", "compiled")
_loaded = {}


def load_fastgrad(backend):
    if backend in _loaded:
        return _loaded[backend]
    for name in [m for m in sys.modules if m == "fastgrad" or m.startswith("fastgrad.")]:
        del sys.modules[name]
    previous = os.environ.get("FASTGRAD_BACKEND")
    os.environ["FASTGRAD_BACKEND"] = backend
    try:
        module = importlib.import_module("fastgrad")
    finally:
        if previous is None:
            del os.environ["FASTGRAD_BACKEND"]
        else:
            os.environ["FASTGRAD_BACKEND"] = previous
    assert module.backend() == backend
    _loaded[backend] = module
    return module


def _backend_params():
    if os.environ.get("FASTGRAD_TEST_PURE_ONLY") == "1":
        return ["python"]
    return list(BACKENDS)


@pytest.fixture(params=_backend_params())
def fg(request):
    """The fastgrad package running on one core; tests run once per core."""
    return load_fastgrad(request.param)


@pytest.fixture
def both():
    """Both copies, for tests that compare the cores with each other."""
    if os.environ.get("FASTGRAD_TEST_PURE_ONLY") == "1":
        pytest.skip("FASTGRAD_TEST_PURE_ONLY=1: the compiled core is not under test")
    return load_fastgrad("python"), load_fastgrad("compiled")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _torch_version():
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def pytest_report_header(config):
    torch_version = _torch_version()
    return ["fastgrad cores under test: " + ", ".join(_backend_params()),
            "PyTorch oracle: " + ("torch %s" % torch_version if torch_version else
                                  "not installed (the tests that compare with PyTorch are "
                                  "skipped; python -m pip install torch runs them)")]


def pytest_terminal_summary(terminalreporter):
    """Say why tests were skipped, grouped by reason, and how to run them."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.replace("Skipped: ", "")
        reasons[reason] = reasons.get(reason, 0) + 1
    terminalreporter.section("why tests were skipped")
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        hint = ""
        if "torch" in reason:
            hint = " (python -m pip install torch runs them)"
        terminalreporter.write_line("%5d  %s%s" % (count, reason, hint))
