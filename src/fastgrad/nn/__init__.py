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

# -- sequence layers: embeddings, layer normalisation, recurrent layers, attention --
from .embedding import Embedding  # noqa: E402
from .layernorm import LayerNorm  # noqa: E402
from .rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell  # noqa: E402
from .attention import MultiheadAttention  # noqa: E402

__all__ += ["Embedding", "LayerNorm", "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell",
            "LSTMCell", "GRUCell", "MultiheadAttention"]
