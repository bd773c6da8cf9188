"""`python -m fastgrad`: what is installed and which core runs."""
import platform
import sys

import numpy as np

import fastgrad as fg


def _blas():
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return "%s %s" % (blas.get("name", "?"), blas.get("version", ""))
    except Exception:       # older NumPy: no dict mode
        return "unknown"


def report():
    from fastgrad._core import REASON
    lines = ["fastgrad %s" % fg.__version__,
             "core: %s (%s)" % (fg.backend(), REASON)]
    try:
        from fastgrad._core import _tape
        lines.append("compiled core: built (%s)" % _tape.build_info())
    except ImportError as exc:
        lines.append("compiled core: not available (%s)" % exc)
    lines += ["Python %s (%s)" % (platform.python_version(), sys.executable),
              "NumPy %s, BLAS: %s" % (np.__version__, _blas()),
              "platform: %s" % platform.platform()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
