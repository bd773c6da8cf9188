"""Instructions per step of a bench workload, counted by callgrind (repeatable on a busy machine).

    python tools/callgrind_steps.py perop 1 compiled
    python tools/callgrind_steps.py mlp231 1 compiled --src /path/to/other/checkout/src

Runs the workload's runner under `valgrind --tool=callgrind` twice, with a short
and a longer number of steps, and prints the difference divided by the extra
steps, so start-up and warm-up cancel out (the garbage collector is off while
the counted steps run).  `--src` puts another checkout's
`src/` first on the path, which compares two builds in one go.  Timing stays in
bench/run.py; this is for when the timings are too noisy to compare.
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import gc, sys
sys.path.insert(0, {bench!r})
import harness, workloads   # noqa: F401  (workloads register themselves)
w = harness.WORKLOADS[{workload!r}]
size = w.sizes[[str(s) for s in w.sizes].index({size!r})]
step, _ = w.runners[{impl!r}](size)
for _ in range(3):
    step()
gc.collect()
gc.disable()     # a collector pass landing in one count and not the other is noise
for _ in range({steps}):
    step()
"""


def count(workload, size, impl, steps, src):
    # One BLAS thread: idle worker threads spinning would be counted too.
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    env["FASTGRAD_BACKEND"] = "python" if impl.startswith("python") else "compiled"
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    code = CHILD.format(bench=os.path.join(ROOT, "bench"), workload=workload, size=str(size),
                        impl=impl, steps=steps)
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    found = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if not found:
        raise SystemExit("callgrind printed no total:\n" + out.stderr[-2000:])
    return int(found.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("size")
    parser.add_argument("impl", nargs="?", default="compiled")
    parser.add_argument("--steps", type=int, nargs=2, default=(5, 25), metavar=("SHORT", "LONG"))
    parser.add_argument("--src", help="a checkout's src/ to import fastgrad from")
    args = parser.parse_args()
    short, long = args.steps
    a = count(args.workload, args.size, args.impl, short, args.src)
    b = count(args.workload, args.size, args.impl, long, args.src)
    print("%s %s %s: %.1f k instructions per step" % (args.workload, args.size, args.impl,
                                                      (b - a) / (long - short) / 1e3))


if __name__ == "__main__":
    main()
