"""What `run.py` prints and writes: machine info, the results table, the
targets, the JSON file and the plot.

    python bench/report.py --markdown results.json

prints the Markdown table of a saved run's wide workloads (`ops`), the one
README.md shows, without running anything again.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from typing import Dict, List, Optional

from harness import BASELINE, IMPLS, WORKLOADS

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "FASTGRAD_BACKEND")


# --------------------------------------------------------------------------
# machine info
# --------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _numpy_blas(np) -> str:
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]   # NumPy >= 1.25
        blas = deps.get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown (NumPy < 1.25: see numpy.show_config())"


def _threadpools() -> Optional[List[str]]:
    if importlib.util.find_spec("threadpoolctl") is None:
        return None
    try:
        from threadpoolctl import threadpool_info
        return [f"{p.get('internal_api')} {p.get('version') or ''} ({p.get('user_api')}): "
                f"{p.get('num_threads')} threads" for p in threadpool_info()]
    except Exception as exc:
        return [f"threadpoolctl failed: {exc}"]


def _git_commit(path: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def machine_info(with_torch: bool) -> dict:
    import numpy as np
    info = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "numpy": np.__version__,
        "numpy_blas": _numpy_blas(np),
        "thread_env": {k: os.environ.get(k) for k in THREAD_VARS},
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    spec = importlib.util.find_spec("fastgrad")
    if spec is not None and spec.origin:
        pkg = os.path.dirname(spec.origin)
        try:
            from importlib.metadata import version
            info["fastgrad"] = version("fastgrad")
        except Exception:
            info["fastgrad"] = "?"
        info["fastgrad_path"] = pkg
        commit = _git_commit(pkg)
        if commit:
            info["fastgrad_commit"] = commit
    if with_torch and importlib.util.find_spec("torch") is not None:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = {"intra_op": torch.get_num_threads(),
                                 "inter_op": torch.get_num_interop_threads()}
    pools = _threadpools()   # after the imports above, so their pools are listed
    if pools is not None:
        info["threadpools"] = pools
    return info


def format_machine(info: dict) -> str:
    lines = ["fastgrad benchmark", "=" * 18]
    add = lines.append
    add(f"platform    {info['platform']}")
    cpus = f"{info['cpu_count']} logical"
    if "cpus_usable" in info:
        cpus += f", {info['cpus_usable']} usable"
    add(f"cpu         {info['cpu']} ({cpus})")
    if "load_average" in info:
        add(f"load avg    {' '.join(str(x) for x in info['load_average'])} (1, 5, 15 min)")
    add(f"python      {info['python']}")
    add(f"numpy       {info['numpy']}, BLAS: {info['numpy_blas']}")
    for pool in info.get("threadpools", []):
        add(f"  pool      {pool}")
    if "torch" in info:
        t = info["torch_threads"]
        add(f"torch       {info['torch']}, intra-op threads {t['intra_op']} (default, unchanged), "
            f"inter-op {t['inter_op']}")
    else:
        add("torch       not installed or not selected")
    if "fastgrad" in info:
        commit = f", commit {info['fastgrad_commit']}" if "fastgrad_commit" in info else ""
        add(f"fastgrad    {info['fastgrad']} ({info['fastgrad_path']}{commit})")
    env = ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in info["thread_env"].items())
    add(f"env         {env}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------
def fmt_us(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    us = seconds * 1e6
    if us >= 10_000:                  # slow rows read better in milliseconds
        return f"{us / 1000:,.1f} ms"
    if us < 10:
        return f"{us:.2f}"
    if us < 1000:
        return f"{us:.1f}"
    return f"{us:,.0f}"


def fmt_ratio(r: Optional[float]) -> str:
    if r is None:
        return ""
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:,.0f}x"


def status_text(rec: dict) -> str:
    st = rec["status"]
    if st == "missing":
        return "not installed" if "not installed" in rec.get("error", "") or \
            "No module named" in rec.get("error", "") else "unavailable: " + _first_line(rec.get("error"))
    if st == "error":
        return "ERROR: " + _first_line(rec.get("error"))
    if rec.get("correct") is None:
        return "ok (unchecked)"
    if rec["correct"]:
        return "reference" if rec.get("is_reference") else "ok"
    return f"FAIL (max rel err {rec.get('max_rel_err', float('nan')):.1e})"


def _first_line(text: Optional[str], width: int = 60) -> str:
    lines = [ln for ln in (text or "?").strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "?"
    return line if len(line) <= width else line[:width - 3] + "..."


def format_table(results: List[dict]) -> str:
    header = ["workload", "size", "impl", "median", "min", "max", "µs/op",
              f"median / {BASELINE}", "check"]
    rows = []
    prev = None
    for rec in results:
        key = (rec["workload"], rec["label"])
        first = key != prev
        prev = key
        ok = rec["status"] == "ok"
        rows.append([
            rec["workload"] if first else "", rec["label"] if first else "", rec["impl"],
            fmt_us(rec.get("median")) if ok else "-", fmt_us(rec.get("min")) if ok else "",
            fmt_us(rec.get("max")) if ok else "", fmt_us(rec.get("per_op")) if ok else "",
            fmt_ratio(rec.get("ratio")) if ok else "", status_text(rec),
        ])
    right = {3, 4, 5, 6, 7}
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            out.append(str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i]))
        return "  ".join(out).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    prev = None
    for rec, r in zip(results, rows):
        key = (rec["workload"], rec["label"])
        if prev is not None and key != prev:
            out.append("")
        prev = key
        out.append(line(r))
    return "\n".join(out)


def _row_cells(rec: dict) -> List[str]:
    size = rec["size"]
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return [str(size[0]), str(size[1])]
    return [rec["label"], ""]


def wide_rows(results: List[dict]) -> List[dict]:
    """One dict per row of a wide workload: cells, each impl's record, the check text."""
    rows: Dict[str, dict] = {}
    for rec in results:
        row = rows.setdefault(rec["label"], {"cells": _row_cells(rec), "size": rec["size"],
                                              "by_impl": {}})
        row["by_impl"][rec["impl"]] = rec
    for row in rows.values():
        problems = []
        for impl, rec in row["by_impl"].items():
            text = status_text(rec)
            if not (text in ("ok", "reference", "ok (unchecked)")):
                problems.append(f"{impl}: {text}")
        row["check"] = "; ".join(problems) if problems else "ok"
    return list(rows.values())


def format_wide(name: str, results: List[dict]) -> str:
    """A workload of many rows: one line per row, a time column per implementation,
    then each implementation's median over compiled's."""
    impls = [i for i in IMPLS if any(r["impl"] == i for r in results)]
    others = [i for i in impls if i != BASELINE]
    stat = WORKLOADS[name].statistic
    header = [name, "size"] + [f"{i} {stat}" for i in impls] + \
        [f"{i} / {BASELINE}" for i in others] + ["check"]
    lines = []
    for row in wide_rows(results):
        by = row["by_impl"]
        cells = list(row["cells"])
        cells += [fmt_us(by[i].get(stat)) if i in by and by[i]["status"] == "ok" else "-"
                  for i in impls]
        cells += [fmt_ratio(by[i].get("ratio")) if i in by else "" for i in others]
        cells.append(row["check"])
        lines.append(cells)
    right = set(range(2, 2 + len(impls) + len(others)))
    widths = [max(len(str(r[i])) for r in lines + [header]) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(c) for c in lines])


def format_markdown(results: List[dict], than: str = "torch-1thread") -> str:
    """The wide workloads' rows as a Markdown table, sorted by than's median over
    compiled's (the slowest against PyTorch first)."""
    out = []
    for name in dict.fromkeys(r["workload"] for r in results
                              if WORKLOADS[r["workload"]].table == "wide"):
        rows = wide_rows([r for r in results if r["workload"] == name])
        impls = [i for i in IMPLS if any(i in row["by_impl"] for row in rows)]
        key = than if than in impls else next((i for i in impls if i.startswith("torch")), None)

        def ratio(row, impl):
            rec = row["by_impl"].get(impl)
            return rec.get("ratio") if rec is not None and rec["status"] == "ok" else None

        rows.sort(key=lambda row: (ratio(row, key) is None, ratio(row, key) or 0.0))
        others = [i for i in impls if i != BASELINE]
        stat = WORKLOADS[name].statistic
        head = ["op", "size", f"{BASELINE} µs ({stat})"] + [f"{i} / {BASELINE}" for i in others] \
            + ["check"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 3) + ["---"]) + "|")
        for row in rows:
            base = row["by_impl"].get(BASELINE)
            cells = [f"`{row['cells'][0]}`", row["cells"][1],
                     fmt_us(base.get(stat)) if base and base["status"] == "ok" else "-"]
            cells += [fmt_ratio(ratio(row, i)) if ratio(row, i) is not None else "-"
                      for i in others]
            cells.append(row["check"].replace("|", "\\|"))
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def format_legend(results: List[dict], settings: dict,
                  per_workload: Optional[Dict[str, dict]] = None) -> str:
    lines = [
        f"times: µs (or ms where marked) per iteration, median / min / max over "
        f"{settings['repeats']} timing blocks of >= {settings['min_time'] * 1e3:.0f} ms each;",
        f"the blocks of one size's implementations are interleaved (one process each, same run).",
        f"median / {BASELINE}: this implementation's median over {BASELINE}'s median for the same "
        f"size (> 1x: {BASELINE} is faster).",
        f"check: the workload's result (e.g. x.grad) against the reference implementation's.",
    ]
    seen = []
    for rec in results:
        if rec["workload"] not in seen:
            seen.append(rec["workload"])
    for name in seen:
        wl = WORKLOADS[name]
        lines.append(f"{name}: {wl.description}")
        own = (per_workload or {}).get(name)
        if own is not None and own != settings:
            lines.append(f"{' ' * len(name)}  timing: {own['repeats']} blocks of >= "
                         f"{own['min_time'] * 1e3:g} ms, {own['warmup'] * 1e3:g} ms warm-up "
                         f"(this workload's own settings)")
        if wl.statistic != "median":
            lines.append(f"{' ' * len(name)}  ratios and targets compare each implementation's "
                         f"{wl.statistic} over the blocks, not the median")
        if wl.op_note:
            lines.append(f"{' ' * len(name)}  µs/op: µs per iteration / ops, {wl.op_note}")
        lines.append(f"{' ' * len(name)}  check: agrees with {wl.reference} to rtol {wl.rtol:g}"
                     + (f", atol {wl.atol:g}" if wl.atol else ""))
    impls = []
    for rec in results:
        if rec["impl"] not in impls:
            impls.append(rec["impl"])
    lines.append("impls: " + "; ".join(f"{i} = {IMPLS[i].description}" for i in impls))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------
def evaluate_targets(results: List[dict]) -> List[dict]:
    by_key: Dict[tuple, dict] = {(r["workload"], r["label"], r["impl"]): r for r in results}
    rows_seen = []
    for r in results:
        if (r["workload"], r["size"], r["label"]) not in rows_seen:
            rows_seen.append((r["workload"], r["size"], r["label"]))
    out = []
    for name in dict.fromkeys(n for n, _, _ in rows_seen):
        for target in WORKLOADS[name].group_targets:
            entry = _group_target(target, name, [(s, l) for n, s, l in rows_seen if n == name],
                                  by_key)
            if entry is not None:
                out.append(entry)
    for name, size, label in rows_seen:
        for target in WORKLOADS[name].targets:
            if not target.applies_to(size):
                continue
            a = by_key.get((name, label, target.impl))
            b = by_key.get((name, label, target.than))
            entry = {"workload": name, "size": size, "label": label, "target": target.text(),
                     "impl": target.impl, "than": target.than, "factor": target.factor}
            if a is None or b is None:
                continue     # an implementation was not selected (--only): not a result
            missing = [r for r in (a, b) if r["status"] != "ok"]
            if missing:
                entry.update(verdict="SKIP", why=f"{missing[0]['impl']}: {status_text(missing[0])}")
            elif a.get("correct") is False or b.get("correct") is False:
                bad = a if a.get("correct") is False else b
                entry.update(verdict="FAIL", why=f"{bad['impl']} gives a wrong result")
            else:
                ratio = b["value"] / a["value"]
                entry["ratio"] = ratio
                ok = target.passes(ratio)
                if target.factor < 1:    # a ceiling reads better the other way round
                    need = ("<" if target.strict else "<=") + f" {1 / target.factor:.3g}x"
                    why = f"{target.impl} / {target.than} = {1 / ratio:.3f}x (need {need})"
                else:
                    need = (">" if target.strict else ">=") + f" {target.factor:g}x"
                    why = f"{target.than} / {target.impl} = {fmt_ratio(ratio)} (need {need})"
                entry.update(verdict="PASS" if ok else "FAIL", why=why)
            out.append(entry)
    return out


def _group_target(target, name: str, rows, by_key) -> Optional[dict]:
    """One verdict for a GroupTarget over the workload's rows (None: not selected)."""
    import statistics
    ratios, skipped, wrong = [], [], []
    for size, label in rows:
        if not target.where(size):
            continue
        a = by_key.get((name, label, target.impl))
        b = by_key.get((name, label, target.than))
        if a is None or b is None:
            continue
        if a["status"] != "ok" or b["status"] != "ok":
            skipped.append(label)
        elif a.get("correct") is False or b.get("correct") is False:
            wrong.append(label)
        else:
            ratios.append((b["value"] / a["value"], label))
    if not (ratios or skipped or wrong):
        return None
    entry = {"workload": name, "size": None, "label": target.name, "target": target.text(),
             "impl": target.impl, "than": target.than, "factor": target.factor,
             "stat": target.stat, "ratios": {label: r for r, label in ratios}}
    if not ratios:
        entry.update(verdict="SKIP", why=f"no row has both {target.impl} and {target.than}")
        return entry
    ratios.sort()
    extra = ""
    if skipped:
        extra += f"; {len(skipped)} rows skipped (an implementation missing or broken)"
    if wrong:
        extra += f"; {len(wrong)} rows wrong: {', '.join(wrong[:3])}"
    if target.stat == "median":
        med = statistics.median(r for r, _ in ratios)
        entry["ratio"] = med
        ok = med >= target.factor and not wrong
        why = (f"median {target.than} / {target.impl} = {fmt_ratio(med)} over {len(ratios)} rows "
               f"(need >= {target.factor:g}x)")
    else:
        below = [(r, label) for r, label in ratios if r < target.factor]
        entry["ratio"] = ratios[0][0]
        ok = not below and not wrong
        worst = ", ".join(f"{label} {fmt_ratio(r)}" for r, label in ratios[:4])
        if below:
            why = (f"{len(below)} of {len(ratios)} rows below {target.factor:g}x; "
                   f"worst {target.than} / {target.impl}: {worst}")
        else:
            why = f"all {len(ratios)} rows >= {target.factor:g}x; lowest: {worst}"
    entry.update(verdict="PASS" if ok else "FAIL", why=why + extra)
    return entry


def format_targets(entries: List[dict]) -> str:
    if not entries:
        return "targets: none for the selected workloads and implementations"
    lines = ["targets"]
    w_label = max(len(f"{e['workload']} {e['label']}") for e in entries)
    w_text = max(len(e["target"]) for e in entries)
    for e in entries:
        where = f"{e['workload']} {e['label']}".ljust(w_label)
        lines.append(f"  {e['verdict']:4}  {where}  {e['target'].ljust(w_text)}  {e['why']}")
    counts = {v: sum(e["verdict"] == v for e in entries) for v in ("PASS", "FAIL", "SKIP")}
    lines.append("  " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# JSON and plot
# --------------------------------------------------------------------------
def write_json(path: str, machine: dict, settings: dict, results: List[dict],
               targets: List[dict]) -> None:
    keep = ("workload", "size", "label", "impl", "status", "error", "iters", "info",
            "median", "min", "max", "value", "per_op", "ratio", "correct", "is_reference",
            "max_rel_err", "times")
    clean = []
    for r in results:
        rec = {k: r[k] for k in keep if k in r}
        for k in ("median", "min", "max", "value", "per_op"):
            if k in rec and rec[k] is not None:
                rec[k + "_us"] = rec.pop(k) * 1e6
        if "times" in rec:
            rec["times_us"] = [t * 1e6 for t in rec.pop("times")]
        rec["check"] = status_text(r)
        clean.append(rec)
    doc = {"machine": machine, "settings": settings, "results": clean, "targets": targets}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def read_json(path: str) -> List[dict]:
    """The results of a file write_json wrote, as run.py holds them (seconds)."""
    with open(path) as f:
        doc = json.load(f)
    results = []
    for rec in doc["results"]:
        rec = dict(rec)
        for k in ("median", "min", "max", "value", "per_op"):
            if k + "_us" in rec:
                value = rec.pop(k + "_us")
                rec[k] = None if value is None else value / 1e6
        if "times_us" in rec:
            rec["times"] = [t / 1e6 for t in rec.pop("times_us")]
        rec.pop("check", None)
        results.append(rec)
    return results


def plot_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def write_plot(path: str, results: List[dict]) -> None:
    """Grouped bars, one group per (workload, size): each implementation's median
    over compiled's, on a log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    # A wide workload has hundreds of rows: its Markdown table (--markdown) shows them.
    results = [r for r in results if WORKLOADS[r["workload"]].table != "wide"]
    groups = []
    for r in results:
        key = f"{r['workload']}\n{r['label']}"
        if key not in groups:
            groups.append(key)
    impls = [i for i in IMPLS if any(r["impl"] == i and r.get("ratio") for r in results)]
    if not impls:
        raise ValueError("nothing to plot: no implementation has a ratio to "
                         f"{BASELINE} (was {BASELINE} selected?)")
    width = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.5))
    for j, impl in enumerate(impls):
        xs, ys = [], []
        for g, key in enumerate(groups):
            for r in results:
                if f"{r['workload']}\n{r['label']}" == key and r["impl"] == impl and r.get("ratio"):
                    xs.append(g + (j - (len(impls) - 1) / 2) * width)
                    ys.append(r["ratio"])
        bars = ax.bar(xs, ys, width, label=impl)
        for bar, y in zip(bars, ys):
            ax.annotate(fmt_ratio(y), (bar.get_x() + bar.get_width() / 2, y), ha="center",
                        va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(f"median time / {BASELINE} median (log)")
    ax.set_title(f"fastgrad benchmark: time relative to {BASELINE} (higher = {BASELINE} faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="tables from a saved run (run.py --json FILE)")
    ap.add_argument("--markdown", metavar="RESULTS.json", required=True,
                    help="print the wide workloads' table as Markdown, sorted by the ratio to "
                         "PyTorch at one thread")
    args = ap.parse_args(argv)
    print(format_markdown(read_json(args.markdown)))
    return 0


if __name__ == "__main__":
    import workloads  # noqa: F401  (registers the workloads, for their settings)
    sys.exit(main())
