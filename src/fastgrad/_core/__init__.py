"""The one place where fastgrad's core is chosen.

FASTGRAD_BACKEND=python|compiled picks one explicitly; unset (or empty), the
compiled core is used when it imports, else the reference core with one
warning.  `core` is the chosen module; both expose the same names.  `fused`
(the optimizers' one-call-per-group updates) is chosen along with it.
"""
import importlib
import os
import warnings

_VARIABLE = "FASTGRAD_BACKEND"
_choice = os.environ.get(_VARIABLE, "").strip().lower()

if _choice not in ("", "python", "compiled"):
    raise ImportError(
        "%s=%r is not a fastgrad core; use 'python' or 'compiled' (or leave it unset)"
        % (_VARIABLE, os.environ[_VARIABLE]))

# Why `core` is the one it is, for `python -m fastgrad` and bug reports.
REASON = "%s=%s" % (_VARIABLE, _choice) if _choice else \
    "%s is unset and the compiled core imports" % _VARIABLE

if _choice == "python":
    from . import reference as core
else:
    try:
        # import_module, not `from . import`: a missing extension then says "No module
        # named fastgrad._core._tape" (from-import inside this package's own
        # initialisation blames "a circular import", which sends users the wrong way).
        core = importlib.import_module("._tape", __name__)
    except ImportError as exc:
        if _choice == "compiled":
            raise ImportError(
                "%s=compiled, but the compiled core (fastgrad._core._tape) does not import: %s. "
                "Reinstall fastgrad with a C compiler available, or set %s=python."
                % (_VARIABLE, exc, _VARIABLE)) from exc
        warnings.warn(
            "fastgrad: the compiled core is not available (%s); running on the pure-Python "
            "reference core, which is much slower on small tensors. It is built when fastgrad "
            "is installed with a C compiler: install one, then reinstall with "
            "`python -m pip install --no-cache-dir --force-reinstall fastgrad`; "
            "set %s=python to choose the reference core and silence this warning"
            % (exc, _VARIABLE),
            RuntimeWarning, stacklevel=2)
        REASON = "%s is unset and the compiled core does not import: %s" % (_VARIABLE, exc)
        from . import reference as core

# The fused optimizer updates follow the core: the readable twin with the
# reference core, the compiled module with the compiled one.
if core.BACKEND == "python":
    from . import fused_reference as fused
else:
    try:
        fused = importlib.import_module("._fused", __name__)
    except ImportError as exc:
        if _choice == "compiled":
            raise ImportError(
                "%s=compiled, but the compiled optimizer updates (fastgrad._core._fused) do not "
                "import: %s. Rebuild fastgrad (python setup.py build_ext --inplace), or set %s=python."
                % (_VARIABLE, exc, _VARIABLE)) from exc
        warnings.warn(
            "fastgrad: the compiled optimizer updates are not available (%s); optimizers use "
            "the NumPy versions" % (exc,), RuntimeWarning, stacklevel=2)
        from . import fused_reference as fused

__all__ = ["core", "fused", "REASON"]
