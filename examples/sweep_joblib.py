"""The digits sweep of sweep_dask.py on one machine, with joblib's process pool.

The same training function, the same table and plot; joblib starts one
worker process per core (its `loky` backend), each importing fastgrad on the
core this script runs (FASTGRAD_BACKEND is set before the pool starts).

    python examples/sweep_joblib.py --plot sweep.png
    python examples/sweep_joblib.py --quick --jobs 2
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep_dask import GRID, QUICK, format_table, import_pyplot, train_digits, write_plot  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot", metavar="FILE.png", help="write the sweep's plot here")
    parser.add_argument("--quick", action="store_true",
                        help="2 learning rates x 2 widths, 2 epochs each")
    parser.add_argument("--jobs", type=int, default=-1,
                        help="worker processes (default: one per core)")
    args = parser.parse_args(argv)
    plt = import_pyplot() if args.plot else None     # fail before the sweep, not after
    try:
        from joblib import Parallel, delayed
    except ImportError:
        raise SystemExit("sweep_joblib.py needs joblib: python -m pip install joblib") from None
    import fastgrad as fg

    # loky's workers inherit this process's environment when the pool starts
    os.environ["FASTGRAD_BACKEND"] = fg.backend()
    grid = QUICK if args.quick else GRID
    started = time.perf_counter()
    results = Parallel(n_jobs=args.jobs)(
        delayed(train_digits)(lr, width, grid["epochs"])
        for lr in grid["lr"] for width in grid["width"])
    print(format_table(results))
    print("%d trainings in joblib workers in %.1f s (pool start-up included)"
          % (len(results), time.perf_counter() - started))
    if plt is not None:
        write_plot(plt, results, args.plot)
        print("wrote", args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
