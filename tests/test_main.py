"""`python -m fastgrad` says which core runs and why."""
import os
import shutil
import subprocess
import sys

import pytest



def _report(backend):
    env = dict(os.environ)
    env.pop("FASTGRAD_BACKEND", None)
    if backend is not None:
        env["FASTGRAD_BACKEND"] = backend
    return subprocess.run([sys.executable, "-m", "fastgrad"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_report_names_the_core_and_the_reason():
    out = _report("python")
    assert out.returncode == 0, out.stderr
    assert "core: python (FASTGRAD_BACKEND=python)" in out.stdout
    if os.environ.get("FASTGRAD_TEST_PURE_ONLY") == "1":
        pytest.skip("FASTGRAD_TEST_PURE_ONLY=1: the compiled core is not under test")
    out = _report(None)
    assert "core: compiled (FASTGRAD_BACKEND is unset and the compiled core imports)" in out.stdout
    assert "compiled core: built (Cython" in out.stdout


SHOW_WARNINGS = r"""
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastgrad as fg
print(fg.backend())
for w in caught:
    print("WARNING", w.message)
"""


def test_without_the_extension_the_warning_says_what_to_do(tmp_path):
    # the package as a compiler-less install leaves it: no compiled modules
    import fastgrad
    package = os.path.dirname(os.path.abspath(fastgrad.__file__))
    shutil.copytree(package, tmp_path / "fastgrad",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("FASTGRAD_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", SHOW_WARNINGS], env=env, capture_output=True,
                         text=True, timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "python"
    warning = " ".join(line for line in lines if line.startswith("WARNING"))
    assert "No module named 'fastgrad._core._tape'" in warning
    assert "C compiler" in warning and "--no-cache-dir --force-reinstall" in warning
    assert "circular import" not in warning
