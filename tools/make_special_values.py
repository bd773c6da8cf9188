"""Write tests/data/special_values.json: PyTorch's results for the special-value cases.

tests/test_special_values.py compares fastgrad with PyTorch on every op over
inputs built from nan, inf, -inf, 0 and -0.0.  Where PyTorch is not installed
it compares with this table instead: for each case and dtype, the forward
values and the gradients of the inputs, each as [shape, flat values].  Numbers are written in
the shortest form that reads back to the same value in the case's dtype
(NaN and Infinity as Python's json module writes them).

Run from the repository root after changing the cases:
    python tools/make_special_values.py
"""
import importlib.util
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_cases():
    path = os.path.join(ROOT, "tests", "test_special_values.py")
    spec = importlib.util.spec_from_file_location("special_values_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shortest(values, dtype):
    kind = np.float32 if dtype == "float32" else np.float64
    return [float(str(kind(v))) for v in values]


def main():
    module = load_cases()
    table = {}
    for case in module.CASES:
        for dtype in module.DTYPES:
            results = module.torch_results(case, dtype)
            table["%s|%s" % (case[0], dtype)] = [[list(r.shape), shortest(r.ravel(), dtype)]
                                                 for r in results]
    path = os.path.join(ROOT, "tests", "data", "special_values.json")
    with open(path, "w") as f:
        f.write("{\n")
        f.write(",\n".join("%s: %s" % (json.dumps(key), json.dumps(value, separators=(",", ":")))
                           for key, value in table.items()))
        f.write("\n}\n")
    print("wrote %s: %d entries, %d bytes, torch %s"
          % (path, len(table), os.path.getsize(path), torch.__version__), file=sys.stderr)


if __name__ == "__main__":
    main()
