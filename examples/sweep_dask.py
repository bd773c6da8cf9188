"""A hyper-parameter sweep of the digits MLP on a Dask cluster.

Every (learning rate, width) pair is one independent training, sent to the
cluster as one task: the task is a plain Python function that imports
fastgrad in the worker, trains, and returns numbers. Nothing but floats and
strings crosses the network, so any Dask cluster whose workers have fastgrad
and scikit-learn installed runs it.

    python examples/sweep_dask.py --plot sweep.png            # a LocalCluster of 2 workers
    python examples/sweep_dask.py --quick                     # 4 short trainings
    python examples/sweep_dask.py --scheduler tcp://host:8786 # an existing cluster

Prints one table row per training (sorted by validation accuracy) and, with
--plot, writes validation accuracy against learning rate, one line per width
(needs matplotlib). The local cluster's workers run the same fastgrad core
as this script (FASTGRAD_BACKEND is passed to them); each row says which
core and which worker process ran it.
"""
import argparse
import functools
import os
import sys
import time

import numpy as np

GRID = {"lr": (0.01, 0.03, 0.1, 0.3), "width": (32, 64, 128, 256), "epochs": 10}
QUICK = {"lr": (0.03, 0.1), "width": (32, 64), "epochs": 2}


@functools.lru_cache(maxsize=1)
def digits_split():
    """Train / validation split of scikit-learn's bundled digits (no download), once per process."""
    from sklearn.datasets import load_digits
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    val, train = order[:360], order[360:]
    return x[train], y[train], x[val], y[val]


def train_digits(lr, width, epochs, seed=0):
    """One training: a 64-width-10 ReLU MLP, SGD with momentum 0.9, batches of 32.

    Runs wherever it is called (here or in a worker) and returns only numbers.
    """
    import fastgrad as fg
    from fastgrad import nn
    from fastgrad.data import DataLoader, TensorDataset

    x, y, x_val, y_val = digits_split()
    started = time.perf_counter()
    fg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    opt = fg.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, seed=seed)
    loss = float("nan")
    for _ in range(epochs):
        total, count = 0.0, 0
        for xb, yb in loader:
            opt.zero_grad()
            batch_loss = loss_fn(model(xb), yb)
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(yb)
            count += len(yb)
        loss = total / count
    with fg.no_grad():
        predicted = model(fg.tensor(x_val)).numpy().argmax(axis=1)
    return {"lr": lr, "width": width, "epochs": epochs, "train_loss": loss,
            "val_accuracy": float((predicted == y_val).mean()),
            "seconds": time.perf_counter() - started, "core": fg.backend(),
            "worker": "%s:%d" % (os.uname().nodename, os.getpid())}


def sweep(client, grid):
    futures = [client.submit(train_digits, lr, width, grid["epochs"], pure=False)
               for lr in grid["lr"] for width in grid["width"]]
    return client.gather(futures)


def format_table(results):
    header = "%8s %6s %7s %11s %8s %9s  %-9s %s" % (
        "lr", "width", "epochs", "train_loss", "val_acc", "seconds", "core", "worker")
    lines = [header, "-" * len(header)]
    for r in sorted(results, key=lambda r: (-r["val_accuracy"], r["train_loss"])):
        lines.append("%8g %6d %7d %11.4f %8.4f %9.2f  %-9s %s" % (
            r["lr"], r["width"], r["epochs"], r["train_loss"], r["val_accuracy"],
            r["seconds"], r["core"], r["worker"]))
    return "\n".join(lines)


def import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("sweep_dask.py: --plot needs matplotlib, which is not installed "
                         "(python -m pip install matplotlib), or leave out --plot") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_plot(plt, results, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for width in sorted({r["width"] for r in results}):
        rows = sorted((r for r in results if r["width"] == width), key=lambda r: r["lr"])
        ax.plot([r["lr"] for r in rows], [r["val_accuracy"] for r in rows], "o-",
                label="width %d" % width)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation accuracy")
    ax.set_title("digits MLP, %d epochs of SGD (momentum 0.9)" % results[0]["epochs"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot", metavar="FILE.png", help="write the sweep's plot here")
    parser.add_argument("--quick", action="store_true",
                        help="2 learning rates x 2 widths, 2 epochs each")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="an existing Dask scheduler (default: start a LocalCluster)")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of the LocalCluster (1 thread each)")
    args = parser.parse_args(argv)
    plt = import_pyplot() if args.plot else None     # fail before the sweep, not after
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise SystemExit("sweep_dask.py needs Dask's distributed scheduler: "
                         "python -m pip install 'dask[distributed]'") from None
    import fastgrad as fg

    grid = QUICK if args.quick else GRID
    started = time.perf_counter()
    if args.scheduler:
        client, cluster = Client(args.scheduler), None
    else:
        # One thread per worker: the trainings are Python-bound, so parallelism
        # comes from processes. The workers import the core this script runs.
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None,
                               env={"FASTGRAD_BACKEND": fg.backend()})
        client = Client(cluster)
    try:
        results = sweep(client, grid)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(format_table(results))
    print("%d trainings on %s in %.1f s (cluster start-up included)"
          % (len(results), args.scheduler or "a LocalCluster of %d workers" % args.workers,
             time.perf_counter() - started))
    if plt is not None:
        write_plot(plt, results, args.plot)
        print("wrote", args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
