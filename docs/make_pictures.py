"""Render the pictures of docs/tutorial.md with fg.draw_graph.

    python docs/make_pictures.py

writes, next to this file:

* neuron.png:  the lecture's single neuron, gate by gate (tutorial section 6),
* mlp_231.png: the [2, 3, 1] sigmoid network built from nn.Linear and
  nn.Sigmoid, on a batch of one example (tutorial section 7).

Each box shows a node's name and op, its value, and its gradient (the
derivative of the cost with respect to that node).  Rendering needs
Graphviz's `dot` program; without it the script writes the DOT text
(neuron.dot, mlp_231.dot) instead and says how to render it elsewhere.
"""
import os
import shutil
import sys

import numpy as np

import fastgrad as fg
from fastgrad import nn

HERE = os.path.dirname(os.path.abspath(__file__))


def neuron():
    """C = (sigmoid(w0 + x0 w1 + x1 w2 + x2 w3) - y)^2 with the lecture's numbers."""
    w0, w1, w2, w3 = (fg.tensor(v, requires_grad=True) for v in (-2.0, -1.0, 0.5, 10.0))
    x0, x1, x2, y = 4.0, -2.0, 1.0, 1.0
    p1 = x0 * w1
    p2 = x1 * w2
    p3 = x2 * w3
    z = w0 + p1 + p2 + p3
    yhat = z.sigmoid()
    err = yhat - y
    C = err ** 2
    names = {"w0": w0, "w1": w1, "w2": w2, "w3": w3, "p1": p1, "p2": p2, "p3": p3,
             "z": z, "yhat": yhat, "err": err, "C": C}
    return C, names


def mlp_231():
    """The tutorial's [2, 3, 1] network (its hand-picked weights) on x = (0.3, 0.8), y = 1."""
    model = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1), nn.Sigmoid())
    model.load_state_dict({
        "0.weight": np.array([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.4]]),
        "0.bias": np.array([0.1, -0.2, 0.05]),
        "2.weight": np.array([[0.7, -0.5, 0.3]]),
        "2.bias": np.array([0.2]),
    })
    x = fg.tensor([[0.3, 0.8]])          # a batch of one example
    y = fg.tensor([[1.0]])
    z1 = model[0](x)
    a1 = model[1](z1)
    z2 = model[2](a1)
    out = model[3](z2)
    C = ((out - y) ** 2).sum()
    names = dict(model.named_parameters())
    names.update({"x": x, "z1": z1, "a1": a1, "z2": z2, "out": out, "C": C})
    return C, names


def main():
    fg.set_default_dtype(np.float64)       # the tutorial's numbers
    have_dot = shutil.which("dot") is not None
    for name, build in (("neuron", neuron), ("mlp_231", mlp_231)):
        root, names = build()
        path = os.path.join(HERE, name + (".png" if have_dot else ".dot"))
        fg.draw_graph(root, path, names=names)
        print("wrote", path)
    if not have_dot:
        print("Graphviz's `dot` was not found: wrote DOT text instead of PNGs; render them "
              "with `dot -Tpng neuron.dot -o neuron.png`", file=sys.stderr)


if __name__ == "__main__":
    main()
