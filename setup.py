"""Build the compiled core, fastgrad._core._tape.

Switches (environment variables):
  FASTGRAD_NO_EXT=1   skip the extension: a pure-Python install (reference core)
  FASTGRAD_DEBUG=1    Cython bounds/wraparound checks on, -O0 -g
  FASTGRAD_SANITIZE=1 both extensions built with AddressSanitizer (gcc/clang);
                      see CONTRIBUTING.md for how to run the tests on that build
A failed compile does not fail the install: the package then runs on the
reference core and says so once at import.
"""
import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTGRAD_DEBUG") == "1"
NO_EXT = os.environ.get("FASTGRAD_NO_EXT") == "1"
SANITIZE = os.environ.get("FASTGRAD_SANITIZE") == "1"

# The one place compiler directives live.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}


class OptionalBuildExt(build_ext):
    """Compile if we can; fall back to the pure-Python core if we cannot."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        sys.stderr.write(
            "WARNING: fastgrad's compiled core could not be built: %s.\n"
            "  Installing the pure-Python core only (correct, but much slower on small "
            "tensors).\n"
            "  To get the compiled core, install a C compiler (gcc or clang; on Windows the "
            "MSVC Build Tools) and the Python headers, then reinstall without pip's cache of "
            "this build:\n"
            "    python -m pip install --no-cache-dir --force-reinstall fastgrad   "
            "(from a checkout: python -m pip install --no-cache-dir --force-reinstall .)\n"
            % (exc,)
        )


def extensions():
    if NO_EXT:
        return []
    try:
        import numpy
        from Cython.Build import cythonize
    except ImportError as exc:
        sys.stderr.write("WARNING: %s; installing the pure-Python core only.\n" % exc)
        return []
    if sys.platform == "win32":
        cflags = ["/Od"] if DEBUG else ["/O2"]
    else:
        # -fno-math-errno: sqrt never sets errno, so loops with sqrt can be
        # vectorized; the results are the same (sqrt is exact either way).
        cflags = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-math-errno"]
    ldflags = []
    if SANITIZE and sys.platform != "win32":
        # -O1 keeps reports readable and the run bearable; frame pointers give
        # whole stacks.  The link flag makes the module ask for the runtime.
        cflags = ["-fsanitize=address", "-fno-omit-frame-pointer", "-g",
                  "-O0" if DEBUG else "-O1"]
        ldflags = ["-fsanitize=address"]
    import Cython
    import sysconfig
    # What `python -m fastgrad` reports about the build, compiled into the module.
    build = "Cython %s, %s, %s%s" % (Cython.__version__, sysconfig.get_config_var("CC") or "cc",
                                     " ".join(cflags), ", debug checks on" if DEBUG else "")
    ext = Extension(
        "fastgrad._core._tape",
        ["src/fastgrad/_core/_tape.pyx"],
        # the kernels _tape.pyx includes: an edit to one of them rebuilds the module
        depends=sorted(glob.glob("src/fastgrad/_core/*.pxi")),
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("FASTGRAD_BUILD", '"%s"' % build.replace('"', "'"))],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    # The fused optimizer updates: a module of its own, built with the same options.
    fused = Extension(
        "fastgrad._core._fused",
        ["src/fastgrad/_core/_fused.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    return cythonize([ext, fused], compiler_directives=DIRECTIVES, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
