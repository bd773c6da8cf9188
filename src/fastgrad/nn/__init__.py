"""fastgrad.nn: modules, layers, losses and initialisers, as in torch.nn."""
from . import functional, init
from .parameter import Parameter
from .module import Module, Sequential, ModuleList
from .layers import (Linear, Identity, ReLU, Sigmoid, Tanh, LeakyReLU, Softmax, LogSoftmax,
                     Flatten, Dropout)
from .loss import (MSELoss, L1Loss, BCELoss, BCEWithLogitsLoss, NLLLoss, CrossEntropyLoss)

# -- containers, convolution, pooling, batch norm, more activations and losses ----
from .module import ModuleDict, ParameterList, ParameterDict
from .conv import Conv1d, Conv2d
from .pooling import (MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d,
                      AdaptiveAvgPool2d)
from .normalization import BatchNorm1d, BatchNorm2d
from .activation import GELU, SiLU, ELU, Softplus, Hardtanh, PReLU
from .loss import SmoothL1Loss, HuberLoss, KLDivLoss
from . import utils
# ---------------------------------------------------------------------------------

__all__ = ["functional", "init", "Parameter", "Module", "Sequential", "ModuleList", "Linear",
           "Identity", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "Softmax", "LogSoftmax",
           "Flatten", "Dropout", "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss",
           "CrossEntropyLoss"]
__all__ += ["ModuleDict", "ParameterList", "ParameterDict", "Conv1d", "Conv2d", "MaxPool1d",
            "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
            "BatchNorm1d", "BatchNorm2d", "GELU", "SiLU", "ELU", "Softplus", "Hardtanh", "PReLU",
            "SmoothL1Loss", "HuberLoss", "KLDivLoss", "utils"]

# -- sequence layers: embeddings, layer normalisation, recurrent layers, attention --
from .embedding import Embedding  # noqa: E402
from .layernorm import LayerNorm  # noqa: E402
from .rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell  # noqa: E402
from .attention import MultiheadAttention  # noqa: E402

__all__ += ["Embedding", "LayerNorm", "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell",
            "LSTMCell", "GRUCell", "MultiheadAttention"]
