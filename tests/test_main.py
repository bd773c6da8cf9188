"""`python -m fastgrad` says which core runs and why."""
import os
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
