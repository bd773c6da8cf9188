"""Optimizers and learning-rate schedules with torch.optim's names, defaults and formulas.

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad(); loss.backward(); opt.step()

Each `step()` is one call of `fastgrad._core.fused` covering every group
(compiled C loops, or the NumPy twin on the reference core); it checks every
gradient, parameter and state array before it changes anything.  Adamax,
NAdam and Adadelta update with a NumPy loop per parameter on both cores,
after the same checks.
"""
from . import lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .lbfgs import LBFGS
from .nadam import NAdam
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam",
           "Adadelta", "LBFGS", "lr_scheduler"]
