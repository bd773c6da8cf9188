"""Draw the tutorial's pictures with fg.draw_graph: docs/neuron.png and docs/mlp_231.png.

    python docs/make_pictures.py

Needs Graphviz's `dot` program for the PNGs; without it the DOT text is
written next to where the pictures would go (neuron.dot, mlp_231.dot), and
the script says so.
"""
import os
import shutil
import sys

import numpy as np

import fastgrad as fg
from fastgrad import nn

HERE = os.path.dirname(os.path.abspath(__file__))


def neuron():
    """The lecture's neuron: C = (sigmoid(W x + b) - y)^2 at b = -2, W = [-1, 0.5, 10]."""
    W = fg.tensor([[-1.0, 0.5, 10.0]], dtype=np.float64, requires_grad=True)
    b = fg.tensor([-2.0], dtype=np.float64, requires_grad=True)
    x = fg.tensor([[4.0], [-2.0], [1.0]], dtype=np.float64)
    y = fg.tensor([[1.0]], dtype=np.float64)
    z = W @ x + b
    yhat = z.sigmoid()
    C = (yhat - y) ** 2
    return C, {"W": W, "b": b, "z": z, "yhat": yhat, "C": C}


def mlp_231():
    """The [2, 3, 1] sigmoid network on one example, with the squared error."""
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3, dtype=np.float64), nn.Sigmoid(),
                          nn.Linear(3, 1, dtype=np.float64), nn.Sigmoid())
    x = fg.tensor([[0.3, 0.8]], dtype=np.float64)
    y = fg.tensor([[1.0]], dtype=np.float64)
    hidden = model[1](model[0](x))
    out = model[3](model[2](hidden))
    C = ((out - y) ** 2).sum()
    names = dict(model.named_parameters())
    names.update({"hidden": hidden, "out": out, "C": C})
    return C, names


def main():
    have_dot = shutil.which("dot") is not None
    for name, build in (("neuron", neuron), ("mlp_231", mlp_231)):
        root, names = build()
        path = os.path.join(HERE, name + (".png" if have_dot else ".dot"))
        fg.draw_graph(root, path, names=names)
        print("wrote", os.path.relpath(path))
    if not have_dot:
        print("Graphviz's dot is not installed: wrote the DOT text instead of PNGs "
              "(render with: dot -Tpng neuron.dot -o neuron.png)", file=sys.stderr)


if __name__ == "__main__":
    main()
