"""fastgrad benchmark: fastgrad's compiled core against its pure-Python core,
PyTorch eager and hand-written NumPy (and optional peers).

    python bench/run.py                   # everything (~20 s for perop on 2 cores)
    python bench/run.py --quick           # fewer repeats
    python bench/run.py --only perop      # some workloads and/or implementations
    python bench/run.py --json out.json --plot ratios.png
    python bench/run.py --list            # workloads and implementations

Each (workload, size, implementation) runs in its own process; the
processes of one size are started one after another (each warms up and sizes
its timing block alone), then asked for timing blocks in turn, round-robin,
so that a burst of load on the machine hits every implementation alike.
See bench/README.md for the columns and for adding a workload.
"""
from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
# A checkout that was built in place (`python setup.py build_ext --inplace`)
# but not installed still benchmarks: fall back to its src/.
if importlib.util.find_spec("fastgrad") is None:
    _src = os.path.join(os.path.dirname(HERE), "src")
    if os.path.isdir(os.path.join(_src, "fastgrad")):
        sys.path.insert(0, _src)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (_src, os.environ.get("PYTHONPATH")) if p)

import harness                       # noqa: E402
import workloads                     # noqa: E402,F401  (registers the workloads)
from harness import BASELINE, IMPLS, WORKLOADS   # noqa: E402
import report                        # noqa: E402

DEFAULTS = {"repeats": 15, "min_time": 0.02, "warmup": 0.2}
QUICK = {"repeats": 5, "min_time": 0.02, "warmup": 0.05}


# --------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------
def select(only: str | None):
    """``--only`` patterns (comma-separated, shell-style wildcards) each match
    workload names, implementation names, or both. Workloads: those matched, or
    all if no pattern names a workload; implementations likewise."""
    all_w, all_i = list(WORKLOADS), list(IMPLS)
    if not only:
        return all_w, all_i
    pats = [p.strip() for p in only.split(",") if p.strip()]
    pick_w, pick_i = set(), set()
    for p in pats:
        w = [n for n in all_w if fnmatch.fnmatchcase(n, p)]
        i = [n for n in all_i if fnmatch.fnmatchcase(n, p)]
        if not w and not i:
            raise SystemExit(f"run.py: --only {p!r} matches no workload ({', '.join(all_w)}) "
                             f"and no implementation ({', '.join(all_i)})")
        pick_w.update(w)
        pick_i.update(i)
    return ([n for n in all_w if n in pick_w] or all_w,
            [n for n in all_i if n in pick_i] or all_i)


# --------------------------------------------------------------------------
# progress on stderr
# --------------------------------------------------------------------------
class Progress:
    def __init__(self, total_rows: int, enabled: bool = True):
        self.total = total_rows
        self.row = 0
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.width = 0

    def next_row(self, text: str):
        self.row += 1
        if self.enabled and not self.tty:
            print(f"[{self.row}/{self.total}] {text}", file=sys.stderr, flush=True)

    def show(self, text: str):
        if not (self.enabled and self.tty):
            return
        msg = f"[{self.row}/{self.total} {time.perf_counter() - self.t0:5.0f} s] {text}"
        pad = max(0, self.width - len(msg))
        self.width = len(msg)
        sys.stderr.write("\r" + msg + " " * pad)
        sys.stderr.flush()

    def done(self):
        if self.enabled and self.tty and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


# --------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------
class ChildError(RuntimeError):
    pass


class Child:
    """One (workload, size, implementation) process in ``--serve`` mode."""

    def __init__(self, workload: str, impl: str, size, settings: dict, timeout: float,
                 rows: bool = False):
        launcher = IMPLS[impl].launcher
        cmd = (launcher() if launcher else []) + [
               sys.executable, os.path.abspath(__file__), "--child", workload, impl,
               "--min-time", str(settings["min_time"]), "--warmup", str(settings["warmup"])] + (
               ["--rows"] if rows else ["--size", json.dumps(size), "--serve"])
        env = dict(os.environ)
        env.update(IMPLS[impl].env)
        self.timeout = timeout
        self.own_session = bool(launcher)
        self.stderr = tempfile.TemporaryFile(mode="w+")
        # Launched children get a session of their own, so that a kill on
        # time-out reaches every process the launcher started, not just it.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env, text=True, bufsize=1,
                                     start_new_session=bool(launcher))
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _stderr_tail(self) -> str:
        try:
            self.stderr.seek(0)
            return "".join(self.stderr.read().strip().splitlines(True)[-8:])
        except Exception:
            return ""

    def ask(self, command: str | None) -> dict:
        """Send ``command`` (if any) and return the next JSON line."""
        try:
            if command is not None:
                self.proc.stdin.write(command + "\n")
                self.proc.stdin.flush()
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.close(kill=True)
            raise ChildError(f"no answer within {self.timeout:g} s") from None
        except (BrokenPipeError, OSError):
            line = None
        if line is None:
            self.proc.wait(timeout=30)
            raise ChildError(f"child exited with code {self.proc.returncode}: "
                             f"{self._stderr_tail() or '(no output)'}")
        return json.loads(line)

    def _kill(self):
        if self.own_session:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
                return
            except OSError:
                pass
        self.proc.kill()

    def close(self, kill: bool = False):
        if kill and self.proc.poll() is None:
            self._kill()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill()
            self.proc.wait()
        self.stderr.close()


class Pool:
    """The shared children of a workload with a ``child_group``: at most one per
    implementation, kept while consecutive rows have the same group."""

    def __init__(self):
        self.entries = {}     # impl -> (workload, group, child or None, hello record)

    def get(self, wl, impl, size, settings, timeout):
        """(child or None, the child's hello record) for this row's group."""
        group = (wl.name, json.dumps(wl.child_group(size)))
        entry = self.entries.get(impl)
        if entry is not None and entry[0] != group:
            self.drop(impl)
            entry = None
        if entry is None:
            child = Child(wl.name, impl, None, settings, timeout, rows=True)
            try:
                hello = child.ask(None)
            except ChildError as exc:
                hello = {"status": "error", "error": str(exc)}
            if hello.get("status") != "idle":
                child.close(kill=True)
                child = None
            entry = self.entries[impl] = (group, child, hello)
        return entry[1], entry[2]

    def drop(self, impl, kill=False):
        entry = self.entries.pop(impl, None)
        if entry is not None and entry[1] is not None:
            entry[1].close(kill=kill)

    def owns(self, child) -> bool:
        return any(e[1] is child for e in self.entries.values())

    def close(self):
        for impl in list(self.entries):
            self.drop(impl)


def run_row(wl, size, impls, settings, timeout, progress: Progress, pool: Pool = None) -> dict:
    """Time every implementation of one (workload, size); returns impl -> record."""
    label = wl.label(size)
    records, live = {}, []
    shared = wl.child_group is not None and pool is not None
    for impl in impls:
        if importlib.util.find_spec(IMPLS[impl].module) is None:
            records[impl] = {"status": "missing", "error": f"{IMPLS[impl].module} not installed"}
            continue
        progress.show(f"{wl.name} {label}: {impl} starting and warming up")
        try:
            if shared:
                child, hello = pool.get(wl, impl, size, settings, timeout)
                if child is None:
                    records[impl] = dict(hello)
                    continue
            else:
                child = Child(wl.name, impl, size, settings, timeout)
        except OSError as exc:           # e.g. a launcher that is not installed
            records[impl] = {"status": "error", "error": f"could not start: {exc}"}
            continue
        try:
            msg = child.ask("row " + json.dumps(size) if shared else None)
        except ChildError as exc:
            records[impl] = {"status": "error", "error": str(exc)}
            if shared:
                pool.drop(impl, kill=True)
            else:
                child.close(kill=True)
            continue
        if msg.get("status") == "ready":
            records[impl] = {"status": "running", "iters": msg["iters"], "info": msg["info"]}
            live.append((impl, child))
        else:
            records[impl] = msg
            if not shared:
                child.close(kill=True)

    repeats = settings["repeats"]
    for r in range(repeats):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for impl, child in order:
            progress.show(f"{wl.name} {label}: block {r + 1}/{repeats} {impl}")
            quiet = wl.settle(size) if callable(wl.settle) else wl.settle
            if quiet:
                time.sleep(quiet)
            try:
                child.ask("time")
            except ChildError as exc:
                records[impl] = {"status": "error", "error": str(exc)}
                live = [(i, c) for i, c in live if c is not child]
                if shared:
                    pool.drop(impl, kill=True)
                else:
                    child.close(kill=True)
    for impl, child in live:
        try:
            records[impl] = child.ask("done")
        except ChildError as exc:
            records[impl] = {"status": "error", "error": str(exc)}
            if shared:
                pool.drop(impl, kill=True)
                continue
        if shared and records[impl].get("status") == "error":
            pool.drop(impl, kill=True)       # it failed while timing: start afresh
        elif not shared:
            child.close()
    return records


def workload_settings(wl, settings: dict, given: dict) -> dict:
    """The run's settings as this workload adjusts them, except those the user gave."""
    if wl.settings is None:
        return settings
    out = dict(settings)
    out.update(wl.settings(dict(settings)))
    out.update(given)
    return out


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------
def summarise(wl, size, impls, records) -> list:
    """Records of one row -> result dicts with statistics, correctness and ratios."""
    import numpy as np

    label = wl.label(size)
    ref = None
    ref_rec = records.get(wl.reference)
    if ref_rec is not None and ref_rec.get("status") == "ok":
        ref = np.asarray(ref_rec["check"], dtype=np.float64).reshape(ref_rec["check_shape"])
    elif ref_rec is None:
        try:   # the reference was not selected: compute its value here, untimed
            ref = harness.reference_value(wl, size)
        except Exception:
            ref = None

    out = []
    for impl in impls:
        rec = dict(records[impl])
        rec.update(workload=wl.name, size=size, label=label, impl=impl)
        if rec["status"] == "ok":
            times = rec["times"]
            rec["median"] = statistics.median(times)
            rec["min"], rec["max"] = min(times), max(times)
            rec["value"] = rec[wl.statistic]        # what ratios and targets compare
            rec["per_op"] = rec["median"] / wl.ops(size) if wl.ops else None
            got = np.asarray(rec.pop("check"), dtype=np.float64).reshape(rec.pop("check_shape"))
            rec["is_reference"] = impl == wl.reference
            if ref is None:
                rec["correct"] = None
            elif got.shape != ref.shape:
                rec["correct"], rec["max_rel_err"] = False, float("inf")
            else:
                err = np.abs(got - ref)
                rel = err / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
                rec["max_rel_err"] = float(rel.max()) if rel.size else 0.0
                rec["correct"] = bool(np.all(np.isfinite(got))
                                      and np.all(err <= wl.atol + wl.rtol * np.abs(ref)))
        out.append(rec)
    base = next((r for r in out if r["impl"] == BASELINE and r["status"] == "ok"), None)
    for r in out:
        r["ratio"] = r["value"] / base["value"] if base and r["status"] == "ok" else None
    return out


def format_notes(results) -> str:
    """The figures some runners report besides their time (harness: a runner's notes())."""
    lines = []
    for r in results:
        notes = (r.get("info") or {}).get("notes") if r["status"] == "ok" else None
        if notes:
            text = ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                             for key, value in notes.items())
            lines.append(f"  {r['workload']} {r['label']} {r['impl']}: {text}")
    return "notes:\n" + "\n".join(lines) if lines else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="fastgrad benchmark: compiled core vs pure-Python core vs PyTorch vs NumPy.")
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK['repeats']} timing blocks instead of {DEFAULTS['repeats']}, "
                         f"shorter warm-up")
    ap.add_argument("--only", metavar="PATTERN[,PATTERN]",
                    help="workloads and/or implementations to run (names or wildcards), "
                         "e.g. 'perop' or 'compiled,torch'")
    ap.add_argument("--json", metavar="FILE", help="write all results and machine info as JSON")
    ap.add_argument("--markdown", metavar="FILE",
                    help="write the ops workload's table (sorted by the ratio to PyTorch) as "
                         "Markdown ('-' for stdout)")
    ap.add_argument("--plot", metavar="FILE.png",
                    help="bar chart of each implementation's time over compiled's (needs matplotlib)")
    ap.add_argument("--repeats", type=int, help="timing blocks per implementation")
    ap.add_argument("--min-time", type=float, help="seconds each timing block lasts at least")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up per implementation")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds to wait for any one answer of a child (default 600)")
    ap.add_argument("--list", action="store_true", help="list workloads and implementations")
    ap.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    ap.add_argument("--child", nargs=2, metavar=("WORKLOAD", "IMPL"), help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rows", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    settings = dict(QUICK if args.quick else DEFAULTS)
    given = {key: getattr(args, key) for key in ("repeats", "min_time", "warmup")
             if getattr(args, key) is not None}
    settings.update(given)
    if settings["repeats"] < 1 or settings["min_time"] <= 0 or settings["warmup"] < 0:
        ap.error(f"need --repeats >= 1, --min-time > 0 and --warmup >= 0, got {settings}")

    if args.child:
        workload, impl = args.child
        if workload not in WORKLOADS or impl not in WORKLOADS[workload].runners:
            ap.error(f"--child: no runner for workload {workload!r} and implementation {impl!r}")
        size = json.loads(args.size) if args.size is not None else WORKLOADS[workload].sizes[0]
        return harness.child_main(workload, impl, size, repeats=settings["repeats"],
                                  min_time=settings["min_time"], warmup=settings["warmup"],
                                  serve=args.serve, rows=args.rows)

    if args.list:
        for name, wl in WORKLOADS.items():
            print(f"{name}: {wl.description}")
            print(f"  sizes: {', '.join(wl.label(s) for s in wl.sizes)}; "
                  f"implementations: {', '.join(i for i in IMPLS if i in wl.runners)}")
        for name, impl in IMPLS.items():
            found = importlib.util.find_spec(impl.module) is not None
            print(f"impl {name}: {impl.description}{'' if found else ' (not installed)'}")
        return 0

    if args.plot and not report.plot_available():
        ap.error("--plot needs matplotlib, which is not installed "
                 "(python -m pip install matplotlib), or leave out --plot")

    names, impls = select(args.only)
    rows = [(WORKLOADS[n], s) for n in names for s in WORKLOADS[n].sizes]
    row_impls = {n: [i for i in impls if i in WORKLOADS[n].runners] for n in names}

    started = time.localtime()
    machine = report.machine_info(with_torch=any("torch" in v for v in row_impls.values()))
    print(report.format_machine(machine))
    print(flush=True)

    progress = Progress(len(rows), enabled=not args.no_progress)
    results = []
    pool = Pool()
    used = {}
    try:
        for wl, size in rows:
            if wl.name not in used:
                pool.close()                 # the previous workload's shared children
            progress.next_row(f"{wl.name} {wl.label(size)}: {', '.join(row_impls[wl.name])}")
            wl_settings = workload_settings(wl, settings, given)
            used[wl.name] = wl_settings
            records = run_row(wl, size, row_impls[wl.name], wl_settings, args.timeout, progress,
                              pool)
            results.extend(summarise(wl, size, row_impls[wl.name], records))
    finally:
        pool.close()
        progress.done()

    targets = report.evaluate_targets(results)
    long_rows = [r for r in results if WORKLOADS[r["workload"]].table != "wide"]
    wide_rows = [r for r in results if WORKLOADS[r["workload"]].table == "wide"]
    if long_rows:
        print(report.format_table(long_rows))
    for name in dict.fromkeys(r["workload"] for r in wide_rows):
        print()
        print(report.format_wide(name, [r for r in wide_rows if r["workload"] == name]))
    print()
    print(report.format_legend(results, settings, used))
    print()
    print(report.format_targets(targets))
    notes = format_notes(results)
    if notes:
        print()
        print(notes)

    if args.markdown:
        text = report.format_markdown(results)
        if args.markdown == "-":
            print()
            print(text)
        else:
            with open(args.markdown, "w") as f:
                f.write(text + "\n")
            print(f"\nwrote {args.markdown}")
    if args.json:
        run_settings = dict(settings, quick=args.quick, only=args.only, per_workload=used,
                            started=time.strftime("%Y-%m-%dT%H:%M:%S%z", started))
        report.write_json(args.json, machine, run_settings, results, targets)
        print(f"\nwrote {args.json}")
    if args.plot:
        try:
            report.write_plot(args.plot, results)
            print(f"wrote {args.plot}")
        except ValueError as exc:
            print(f"run.py: no plot: {exc}", file=sys.stderr)

    bad = [r for r in results if r["status"] == "error" or r.get("correct") is False]
    if bad:
        print(f"\n{len(bad)} implementation(s) failed or gave wrong results: "
              + ", ".join(f"{r['workload']} {r['label']} {r['impl']}" for r in bad),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
