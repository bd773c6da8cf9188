"""fastgrad.nn: modules, layers, losses and initialisers, as in torch.nn."""
from . import functional, init
from .parameter import Parameter
from .module import Module, Sequential, ModuleList
from .layers import (Linear, Identity, ReLU, Sigmoid, Tanh, LeakyReLU, Softmax, LogSoftmax,
                     Flatten, Dropout)
from .loss import (MSELoss, L1Loss, BCELoss, BCEWithLogitsLoss, NLLLoss, CrossEntropyLoss)

__all__ = ["functional", "init", "Parameter", "Module", "Sequential", "ModuleList", "Linear",
           "Identity", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "Softmax", "LogSoftmax",
           "Flatten", "Dropout", "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss",
           "CrossEntropyLoss"]
